// Steps 3 and 4 of a resync: settle topics left in doubt by a killed run, then rotate every topic the
// restored database had, once, and (on C2 builds that only store the new key) push it to each
// linked device through the link call, paced per device.
import { forEachBounded, RetriesExhaustedError } from '../../lib/retry-with-backoff.ts';
import { createProgressLine } from '../../lib/progress-line.ts';
import { check, pushKeyToDevice, type ResyncRun } from './resync-run.ts';

export async function rotateTopics(run: ResyncRun): Promise<void> {
  const createdSet = new Set(run.createdTopics);
  const todo = run.existingTopics.filter((t) => !run.journal.rotated.has(t) && !createdSet.has(t));
  const alreadyRotated = run.existingTopics.filter((t) => run.journal.rotated.has(t)).length;
  if (run.dryRun) {
    run.rotation.wouldRotate = todo;
    return;
  }
  const { toRotate, pushOnly } = await settleInDoubt(run, todo);
  run.rotation.alreadyRotated = alreadyRotated + (todo.length - toRotate.length) + [...pushOnly].filter((t) => toRotate.includes(t)).length;
  const linkMap = run.pushKeys && toRotate.length ? await linkedClientsOf(run, toRotate) : undefined;
  const digests = run.opts.probe ? await run.opts.probe.digests(toRotate.filter((t) => !pushOnly.has(t))) : undefined;
  const progress = createProgressLine('rotating topic keys', toRotate.length);
  let completed = 0;
  await forEachBounded(toRotate, run.concurrency, async (topic) => {
    if (await rotateOne(run, topic, !pushOnly.has(topic), linkMap, digests?.get(topic))) completed++;
    const done = completed + run.rotation.failed.length;
    progress.tick(done, run.rotation.failed.length);
    if (done % 1000 === 0) run.log.info('resync.progress', { rotated: run.rotation.rotated, pushes: run.rotation.pushes, failed: run.rotation.failed.length, total: toRotate.length });
  }, run.opts.signal);
  progress.end();
  if (run.pushKeys) {
    run.checks.push(check('keys-pushed-to-devices', run.rotation.failed.length === 0, `this C2 stores a rotated key without sending it (2019 builds); the resync sent each new key to every linked client itself: ${run.rotation.pushes} SetTopicKey pushes`));
  }
  run.rotation.interrupted = !!run.opts.signal?.aborted && completed + run.rotation.failed.length < toRotate.length;
  if (run.rotation.interrupted) {
    run.checks.push(check('all-topics-rotated', false, `interrupted after ${completed} of ${toRotate.length} topics; re-run with the same --journal to finish the rest`));
  }
}

/**
 * In-doubt topics from a killed run: if the sealed key in the database changed since the `begin`,
 * the rotation happened (only its pushes may be missing); else it must be rotated again.
 */
async function settleInDoubt(run: ResyncRun, todo: string[]): Promise<{ toRotate: string[]; pushOnly: Set<string> }> {
  const { journal, writer } = run;
  const doubtful = todo.filter((t) => journal.inDoubt.has(t));
  const digests = run.opts.probe && doubtful.length ? await run.opts.probe.digests(doubtful) : undefined;
  const toRotate: string[] = [];
  const pushOnly = new Set<string>(journal.rotatedNotPushed);
  for (const t of todo) {
    const doubt = journal.inDoubt.get(t);
    if (doubt?.keyDigest && digests?.has(t) && digests.get(t) !== doubt.keyDigest) {
      run.log.info('resync.in-doubt.confirmed', { topic: t });
      if (run.pushKeys) {
        writer!.append({ type: 'rotated', topic: t, at: run.at(), attempts: 0, confirmedBy: 'database' });
        pushOnly.add(t);
      } else {
        writer!.append({ type: 'done', topic: t, at: run.at(), attempts: 0, confirmedBy: 'database' });
        journal.rotated.add(t);
        continue;
      }
    } else if (doubt) run.rotation.inDoubtRotatedAgain.push(t);
    toRotate.push(t);
  }
  return { toRotate, pushOnly };
}

/**
 * Who must receive each new key: from the restored database in one query, else through the API
 * from whichever side needs fewer paged calls (per client when there are fewer clients than topics).
 */
async function linkedClientsOf(run: ResyncRun, topics: string[]): Promise<Map<string, string[]> | undefined> {
  if (run.opts.probe?.clientsByTopic) return run.opts.probe.clientsByTopic(topics);
  if (run.counts.clients + run.clientsCreated.length >= topics.length) return undefined;
  const m = new Map<string, string[]>();
  const wanted = new Set(topics);
  await forEachBounded(await run.c2.listClients(), run.concurrency, async (name) => {
    const { value } = await run.call(`list topics of ${name}`, () => run.c2.topicsOfClient(name));
    for (const t of value) {
      if (!wanted.has(t)) continue;
      const list = m.get(t);
      if (list) list.push(name); else m.set(t, [name]);
    }
  });
  return m;
}

/** Rotate one topic (journalled before and after) and push its key; false when it failed. */
async function rotateOne(run: ResyncRun, topic: string, rotateNow: boolean, linkMap: Map<string, string[]> | undefined, keyDigest?: string): Promise<boolean> {
  const { writer } = run;
  let attempts = 0;
  try {
    if (rotateNow) {
      // On disk before the request leaves: a crash after this point leaves the topic in doubt, never forgotten.
      await writer!.appendDurable({ type: 'begin', topic, at: run.at(), ...(keyDigest ? { keyDigest } : {}) });
      ({ attempts } = await run.call(`rotate ${topic}`, () => run.c2.newTopic(topic)));
      if (run.pushKeys) writer!.append({ type: 'rotated', topic, at: run.at(), attempts, confirmedBy: 'api' });
      else for (const name of run.delivery?.ledger.devicesOfTopic(topic) ?? []) run.delivery!.ledger.recordPush(name, topic);
    }
    let pushedTo: number | undefined;
    if (run.pushKeys) {
      const clients = linkMap ? (linkMap.get(topic) ?? []) : (await run.call(`list clients of ${topic}`, () => run.c2.clientsOfTopic(topic))).value;
      for (const name of clients) await pushKeyToDevice(run, name, topic);
      pushedTo = clients.length;
      run.rotation.pushes += clients.length;
    }
    writer!.append({ type: 'done', topic, at: run.at(), attempts, confirmedBy: 'api', ...(pushedTo !== undefined ? { pushedTo } : {}) });
    if (rotateNow) {
      run.rotation.rotated++;
      run.opts.onRotated?.(topic, run.rotation.rotated);
    }
    return true;
  } catch (e) {
    const error = e instanceof RetriesExhaustedError ? e.message : (e as Error)?.message ?? String(e);
    writer!.append({ type: 'failed', topic, at: run.at(), attempts: e instanceof RetriesExhaustedError ? e.attempts : 1, error });
    run.rotation.failed.push({ topic, error });
    run.log.error('resync.topic.failed', { topic, error });
    return false;
  }
}
