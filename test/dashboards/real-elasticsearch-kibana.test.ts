// Opt-in: against a real Elasticsearch and Kibana 7.17 (none can be had on the project machines).
//   E4OPS_TEST_ES_URL=http://elastic:PASS@127.0.0.1:9200 E4OPS_TEST_KIBANA_URL=http://elastic:PASS@127.0.0.1:5601 \
//     npx vitest run test/dashboards/real-elasticsearch-kibana.test.ts
// Use a SCRATCH cluster: it (re)writes the e4 templates and ILM policies, pointed at throwaway index
// names, then deletes its test indices. It proves a second run changes nothing and that C2's typed
// `message` writes still work with the template in place.
// Kibana objects are imported into the space E4OPS_TEST_KIBANA_SPACE (default: default) and left there.
import { describe, it, expect, afterAll } from 'vitest';
import { Client } from '@elastic/elasticsearch';
import { installDashboards } from '../../dashboards/install.ts';
import { buildSavedObjects } from '../../dashboards/kibana/saved-objects.ts';
import { createMemoryLogger } from '../../lib/log.ts';

const esUrl = process.env.E4OPS_TEST_ES_URL;
const kibanaUrl = process.env.E4OPS_TEST_KIBANA_URL;
const suffix = `t${Date.now().toString(36)}`;
const assetOptions = { messageIndex: `e4test-messages-${suffix}`, c2LogsIndexPrefix: `e4test-c2-logs-${suffix}`, opsLogsAlias: `e4test-ops-${suffix}` };

describe.skipIf(!esUrl || !kibanaUrl)('real Elasticsearch + Kibana 7.17', () => {
  const es = new Client({ node: esUrl ?? 'http://127.0.0.1:9200' });
  afterAll(async () => {
    await es.indices.delete({ index: `e4test-*-${suffix}*` }, { ignore: [404] });
    await es.indices.delete({ index: `${assetOptions.opsLogsAlias}-*` }, { ignore: [404] });
    await es.close();
  });

  it('installs, then a second run changes nothing', async () => {
    const opts = { es, kibanaUrl, kibanaSpace: process.env.E4OPS_TEST_KIBANA_SPACE, savedObjects: buildSavedObjects(assetOptions), assetOptions, logger: createMemoryLogger() };
    const first = await installDashboards(opts);
    expect(first.changes.length).toBeGreaterThan(30);
    const second = await installDashboards(opts);
    expect(second.changes.filter((c) => c.action !== 'unchanged')).toEqual([]);
  });

  it('accepts a typed `message` document like C2 (olivere/elastic v6) writes, with the template mapping applied', async () => {
    const index = `${assetOptions.messageIndex}-2026.01.01`;
    await es.transport.request({ method: 'POST', path: `/${index}/message`, querystring: { refresh: 'true' }, body: {
      timestamp: '2026-01-01T00:00:00Z', duplicate: false, qos: 1, retained: false, topic: 'fleet/temp', messageid: 7,
      payload: Buffer.from('hello').toString('base64'), looksencrypted: false, lookscompressed: false, isbase64: false, isutf8: true, isjson: false,
    } });
    const mapping = (await es.indices.getMapping({ index, include_type_name: true })).body[index].mappings;
    expect(Object.keys(mapping)).toEqual(['message']);
    expect(mapping.message.properties.topic.type).toBe('keyword');
    const settings = (await es.indices.getSettings({ index })).body[index].settings.index;
    expect(settings.lifecycle.name).toBe('e4-messages');
  });
});
