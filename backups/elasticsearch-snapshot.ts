// Optional part of a backup set: an Elasticsearch snapshot of C2's message indices, taken through the
// cluster's own snapshot repository. The snapshot data stays in that repository; the manifest records
// which snapshot belongs to the set.
import { Client, type ClientOptions } from '@elastic/elasticsearch';
import { BackupError } from './exit-codes.ts';
import { redactUrl } from '../lib/log.ts';

export interface ElasticsearchSnapshotOptions {
  /** Cluster URL(s), e.g. http://127.0.0.1:9200 */
  node: string | string[];
  repository: string;
  /** Register the repository first (e.g. {type: 'fs', settings: {location: '/snapshots'}}); else it must exist. */
  registerRepository?: { type: string; settings: Record<string, unknown> };
  /** Index pattern (default C2's 'messages-*'). */
  indices?: string;
  snapshotName: string;
  /** For tests (elasticsearch-mock) and custom transports. */
  clientOptions?: Partial<ClientOptions>;
}

export interface ElasticsearchSnapshotRecord {
  repository: string;
  snapshot: string;
  state: string;
  indices: string[];
  startedAt?: string;
  finishedAt?: string;
}

export async function snapshotElasticsearch(opts: ElasticsearchSnapshotOptions): Promise<ElasticsearchSnapshotRecord> {
  const client = new Client({ node: opts.node, ...opts.clientOptions } as ClientOptions);
  const where = redactUrl(Array.isArray(opts.node) ? opts.node.join(',') : opts.node);
  const step = async <T>(what: string, fn: () => Promise<T>): Promise<T> => {
    try { return await fn(); } catch (e) {
      const meta = (e as { meta?: { body?: { error?: { reason?: string } } } }).meta;
      const reason = meta?.body?.error?.reason ?? (e as Error).message;
      throw new BackupError('sourceUnreachable', `Elasticsearch ${where}: ${what} failed: ${reason}`);
    }
  };
  try {
    if (opts.registerRepository) {
      await step(`registering snapshot repository ${opts.repository}`, () =>
        client.snapshot.createRepository({ repository: opts.repository, body: opts.registerRepository! }));
    }
    await step(`verifying snapshot repository ${opts.repository} (register it, or pass its settings)`, () =>
      client.snapshot.verifyRepository({ repository: opts.repository }));
    const res = await step(`snapshot ${opts.snapshotName}`, () => client.snapshot.create({
      repository: opts.repository, snapshot: opts.snapshotName, wait_for_completion: true,
      body: { indices: opts.indices ?? 'messages-*', ignore_unavailable: true, include_global_state: false },
    }));
    const snap = (res.body as { snapshot?: { snapshot: string; state: string; indices?: string[]; start_time?: string; end_time?: string } }).snapshot;
    if (!snap) throw new BackupError('sourceUnreachable', `Elasticsearch ${where}: snapshot ${opts.snapshotName} returned no snapshot description`);
    if (snap.state !== 'SUCCESS') throw new BackupError('sourceUnreachable', `Elasticsearch ${where}: snapshot ${snap.snapshot} ended in state ${snap.state}`);
    return {
      repository: opts.repository, snapshot: snap.snapshot, state: snap.state, indices: snap.indices ?? [],
      ...(snap.start_time ? { startedAt: snap.start_time } : {}), ...(snap.end_time ? { finishedAt: snap.end_time } : {}),
    };
  } finally {
    await client.close().catch(() => undefined);
  }
}
