// dashboards/install.ts against an Elasticsearch stand-in (@elastic/elasticsearch-mock with state and
// Elasticsearch-like read-backs) and a Kibana stand-in (node:http on 127.0.0.1) that records requests.
import { describe, it, expect, beforeEach, afterEach } from 'vitest';
import { installDashboards, installElasticsearchAssets, installKibanaObjects, containsDesired } from '../../dashboards/install.ts';
import { buildElasticsearchAssets } from '../../dashboards/elasticsearch/index-templates.ts';
import { buildSavedObjects } from '../../dashboards/kibana/saved-objects.ts';
import { createMemoryLogger } from '../../lib/log.ts';
import { createElasticsearchStandIn, startKibanaStandIn } from './stand-ins.ts';

const count = (changes: { action: string }[], action: string) => changes.filter((c) => c.action === action).length;

describe('elasticsearch install', () => {
  it('creates every policy, template and the rollover alias on an empty cluster, then changes nothing on a second run', async () => {
    const es = createElasticsearchStandIn();
    const assets = buildElasticsearchAssets();
    const first = await installElasticsearchAssets(es.client, assets, { logger: createMemoryLogger() });
    expect(first.map((c) => `${c.kind}:${c.name}:${c.action}`)).toEqual([
      'ilm_policy:e4-messages:create', 'ilm_policy:e4-c2-logs:create', 'ilm_policy:e4ops-logs:create',
      'component_template:e4-settings-common:create', 'component_template:e4-c2-logs-mappings:create', 'component_template:e4ops-logs-mappings:create',
      'index_template:e4-c2-logs:create', 'index_template:e4ops-logs:create',
      'legacy_template:e4-messages:create',
      'rollover_alias:e4ops-logs:create',
    ]);
    // C2's typed `message` requests need the typed legacy mapping
    const legacyPut = es.requests.find((r) => r.method === 'PUT' && r.path === '/_template/e4-messages')!;
    expect(legacyPut.querystring.include_type_name).toBe('true');
    expect(Object.keys((legacyPut.body as any).mappings)).toEqual(['message']);
    expect(es.state.indices.get('e4ops-logs-000001')?.aliases).toEqual({ 'e4ops-logs': { is_write_index: true } });

    const writesAfterFirst = es.writes().length;
    const second = await installElasticsearchAssets(es.client, assets, { logger: createMemoryLogger() });
    expect(count(second, 'unchanged')).toBe(second.length);
    expect(es.writes().length).toBe(writesAfterFirst);
  });

  it('updates only what a changed setting touches (message retention 30 → 7 days)', async () => {
    const es = createElasticsearchStandIn();
    await installElasticsearchAssets(es.client, buildElasticsearchAssets(), { logger: createMemoryLogger() });
    const before = es.writes().length;
    const changes = await installElasticsearchAssets(es.client, buildElasticsearchAssets({ messagesRetentionDays: 7 }), { logger: createMemoryLogger() });
    expect(changes.filter((c) => c.action !== 'unchanged')).toEqual([{ target: 'elasticsearch', kind: 'ilm_policy', name: 'e4-messages', action: 'update' }]);
    const newWrites = es.writes().slice(before);
    expect(newWrites.map((w) => `${w.method} ${w.path}`)).toEqual(['PUT /_ilm/policy/e4-messages']);
    expect((newWrites[0].body as any).policy.phases.delete.min_age).toBe('7d');
  });

  it('notices drift made by hand on the server and puts it back', async () => {
    const es = createElasticsearchStandIn();
    await installElasticsearchAssets(es.client, buildElasticsearchAssets(), { logger: createMemoryLogger() });
    es.state.legacy.get('e4-messages').mappings.message.properties.topic = { type: 'text' };
    const changes = await installElasticsearchAssets(es.client, buildElasticsearchAssets(), { logger: createMemoryLogger() });
    expect(changes.filter((c) => c.action !== 'unchanged').map((c) => c.name)).toEqual(['e4-messages']);
    expect(es.state.legacy.get('e4-messages').mappings.message.properties.topic.type).toBe('keyword');
  });

  it('--dry-run reads and reports but writes nothing', async () => {
    const es = createElasticsearchStandIn();
    const changes = await installElasticsearchAssets(es.client, buildElasticsearchAssets(), { dryRun: true, logger: createMemoryLogger() });
    expect(count(changes, 'create')).toBe(changes.length);
    expect(es.writes()).toEqual([]);
    expect(es.requests.length).toBeGreaterThan(5);
  });

  it('refuses to bootstrap the rollover alias over a concrete index of that name, saying how to fix it', async () => {
    const es = createElasticsearchStandIn();
    es.state.indices.set('e4ops-logs', { aliases: {} });
    await expect(installElasticsearchAssets(es.client, buildElasticsearchAssets(), { logger: createMemoryLogger() }))
      .rejects.toThrow(/"e4ops-logs" is a concrete index.*Reindex/);
  });
});

describe('kibana install', () => {
  let kibana: Awaited<ReturnType<typeof startKibanaStandIn>>;
  beforeEach(async () => { kibana = await startKibanaStandIn(); });
  afterEach(async () => { await kibana.close(); });

  it('imports every object in one overwrite import with kbn-xsrf, then nothing on the second run', async () => {
    const objects = buildSavedObjects();
    const first = await installKibanaObjects(objects, { kibanaUrl: kibana.url, logger: createMemoryLogger() });
    expect(count(first, 'create')).toBe(objects.length);
    expect(kibana.imports()).toHaveLength(1);
    const imp = kibana.imports()[0];
    expect(imp.url).toBe('/api/saved_objects/_import?overwrite=true');
    expect(imp.headers['kbn-xsrf']).toBeTruthy();
    expect(imp.headers['content-type']).toMatch(/^multipart\/form-data; boundary=/);
    expect(kibana.objects.size).toBe(objects.length);

    // the stand-in rewrites visState and adds fields like Kibana's migrations do: still "unchanged"
    const second = await installKibanaObjects(objects, { kibanaUrl: kibana.url, logger: createMemoryLogger() });
    expect(count(second, 'unchanged')).toBe(objects.length);
    expect(kibana.imports()).toHaveLength(1);
  });

  it('re-imports only the object edited in Kibana', async () => {
    const objects = buildSavedObjects();
    await installKibanaObjects(objects, { kibanaUrl: kibana.url, logger: createMemoryLogger() });
    const edited = kibana.objects.get('visualization/e4-vis-plaintext-by-topic');
    edited.attributes.visState = JSON.stringify({ ...JSON.parse(edited.attributes.visState), aggs: [] });
    const changes = await installKibanaObjects(objects, { kibanaUrl: kibana.url, logger: createMemoryLogger() });
    expect(changes.filter((c) => c.action !== 'unchanged')).toEqual([{ target: 'kibana', kind: 'visualization', name: 'e4-vis-plaintext-by-topic', action: 'update' }]);
    const body = kibana.imports()[1].body;
    expect(body).toContain('"id":"e4-vis-plaintext-by-topic"');
    expect(body).not.toContain('"id":"e4-vis-messages-per-topic"');
  });

  it('moves URL credentials into a Basic header, uses the space prefix, and --dry-run imports nothing', async () => {
    const url = kibana.url.replace('http://', 'http://elastic:s3cr%40t@');
    const log = createMemoryLogger();
    const changes = await installKibanaObjects(buildSavedObjects(), { kibanaUrl: url, space: 'ops', dryRun: true, logger: log });
    expect(count(changes, 'create')).toBe(changes.length);
    expect(kibana.imports()).toHaveLength(0);
    const get = kibana.requests[0];
    expect(get.url).toBe('/s/ops/api/saved_objects/_bulk_get');
    expect(get.headers.authorization).toBe('Basic ' + Buffer.from('elastic:s3cr@t').toString('base64'));
    expect(JSON.stringify(log.lines)).not.toContain('s3cr');
  });

  it('fails with the object and reason when Kibana rejects part of the import', async () => {
    kibana.failImportOf('e4-dashboard-fleet-messages');
    await expect(installKibanaObjects(buildSavedObjects(), { kibanaUrl: kibana.url, logger: createMemoryLogger() }))
      .rejects.toThrow(/dashboard\/e4-dashboard-fleet-messages: missing_references/);
  });

  it('installDashboards does Elasticsearch then Kibana and reports both', async () => {
    const es = createElasticsearchStandIn();
    const report = await installDashboards({ es: es.client, kibanaUrl: kibana.url, savedObjects: buildSavedObjects(), logger: createMemoryLogger() });
    expect(new Set(report.changes.map((c) => c.target))).toEqual(new Set(['elasticsearch', 'kibana']));
    const again = await installDashboards({ es: es.client, kibanaUrl: kibana.url, savedObjects: buildSavedObjects(), logger: createMemoryLogger() });
    expect(again.changes.every((c) => c.action === 'unchanged')).toBe(true);
  });
});

describe('containsDesired', () => {
  it('treats server-added keys as equal and missing or different values as drift', () => {
    expect(containsDesired({ a: { b: 1 } }, { a: { b: '1', c: 2 }, d: 3 })).toBe(true);
    expect(containsDesired({ a: { b: 1 } }, { a: { b: 2 } })).toBe(false);
    expect(containsDesired({ a: [1, 2] }, { a: [1] })).toBe(false);
    expect(containsDesired({ a: 'x' }, {})).toBe(false);
  });
});
