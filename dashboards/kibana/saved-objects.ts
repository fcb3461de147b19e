// Kibana 7.17 saved objects (index patterns, saved searches, aggregation-based visualizations,
// dashboards) for an E4 deployment. Built here, written to e4-saved-objects.ndjson (a test keeps the
// file current) and imported through POST /api/saved_objects/_import by dashboards/install.ts.
// Fields come only from the Elasticsearch templates (dashboards/elasticsearch/index-templates.ts);
// a test cross-checks every field and index-pattern reference.
//
// Key-operation panels read C2's logrus lines: each E4 service method logs `succeeded` (or an error)
// with the caller function in `func` (…(*e4impl).NewTopic etc.), `topic`, `id`, `name`. Those names
// come from C2's source (internal/services/e4.go), not from a captured log: check them against a live
// C2 after upgrades.
import { buildElasticsearchAssets, type ElasticsearchAssetOptions } from '../elasticsearch/index-templates.ts';

export interface SavedObject {
  id: string;
  type: 'index-pattern' | 'search' | 'visualization' | 'dashboard';
  attributes: Record<string, unknown>;
  references: Array<{ id: string; name: string; type: string }>;
}

export const INDEX_PATTERN_IDS = {
  messages: 'e4-index-pattern-messages',
  c2Logs: 'e4-index-pattern-c2-logs',
  opsLogs: 'e4-index-pattern-e4ops-logs',
} as const;

type PatternKey = keyof typeof INDEX_PATTERN_IDS;
const SRC_REF = 'kibanaSavedObjectMeta.searchSourceJSON.index';

/** C2 E4-service methods that change keys or links, as they appear at the end of logrus `func`. */
export const KEY_OPERATION_FUNCS = ['NewClient', 'RemoveClient', 'NewClientKey', 'ResetClient', 'NewTopic', 'RemoveTopic', 'NewTopicClient', 'RemoveTopicClient'];
/** Methods that publish a command to a device (NewTopic only when it rotates an existing topic). */
export const COMMAND_SENDING_FUNCS = ['NewClientKey', 'ResetClient', 'NewTopic', 'NewTopicClient', 'RemoveTopicClient'];

const funcQuery = (names: string[]) => `c2.func:(${names.map((n) => `*.${n}`).join(' or ')})`;

function searchSource(query: string, pattern?: PatternKey): { json: string; refs: SavedObject['references'] } {
  return {
    json: JSON.stringify({ query: { query, language: 'kuery' }, filter: [], ...(pattern ? { indexRefName: SRC_REF } : {}) }),
    refs: pattern ? [{ name: SRC_REF, type: 'index-pattern', id: INDEX_PATTERN_IDS[pattern] }] : [],
  };
}

interface Agg { id: string; type: string; schema: string; params: Record<string, unknown> }
const count: Agg = { id: '1', type: 'count', schema: 'metric', params: {} };
const sum = (id: string, field: string): Agg => ({ id, type: 'sum', schema: 'metric', params: { field } });
const overTime = (field: string): Agg => ({ id: '2', type: 'date_histogram', schema: 'segment', params: { field, interval: 'auto', min_doc_count: 1, extended_bounds: {} } });
const terms = (id: string, field: string, schema: string, size = 10): Agg => ({ id, type: 'terms', schema, params: { field, size, order: 'desc', orderBy: '1', otherBucket: true, missingBucket: schema !== 'bucket' } });

function vis(id: string, title: string, description: string, type: string, pattern: PatternKey, query: string, aggs: Agg[], params: Record<string, unknown> = {}): SavedObject {
  const src = searchSource(query, pattern);
  return {
    id,
    type: 'visualization',
    attributes: {
      title,
      description,
      visState: JSON.stringify({ title, type, aggs: aggs.map((a) => ({ ...a, enabled: true })), params: { addTooltip: true, addLegend: true, legendPosition: 'right', ...params } }),
      uiStateJSON: '{}',
      version: 1,
      kibanaSavedObjectMeta: { searchSourceJSON: src.json },
    },
    references: src.refs,
  };
}

function search(id: string, title: string, description: string, pattern: PatternKey, query: string, columns: string[], sortField: string): SavedObject {
  const src = searchSource(query, pattern);
  return {
    id,
    type: 'search',
    attributes: { title, description, columns, sort: [[sortField, 'desc']], version: 1, kibanaSavedObjectMeta: { searchSourceJSON: src.json } },
    references: src.refs,
  };
}

function dashboard(id: string, title: string, description: string, panels: Array<{ obj: SavedObject; w: number; h: number }>): SavedObject {
  let x = 0, y = 0, rowH = 0;
  const panelsJSON = panels.map((p, i) => {
    if (x + p.w > 48) { x = 0; y += rowH; rowH = 0; }
    const gridData = { x, y, w: p.w, h: p.h, i: String(i + 1) };
    x += p.w; rowH = Math.max(rowH, p.h);
    return { version: '7.17.0', type: p.obj.type, gridData, panelIndex: String(i + 1), embeddableConfig: {}, panelRefName: `panel_${i}` };
  });
  return {
    id,
    type: 'dashboard',
    attributes: {
      title,
      description,
      panelsJSON: JSON.stringify(panelsJSON),
      optionsJSON: JSON.stringify({ useMargins: true, hidePanelTitles: false }),
      timeRestore: true,
      timeFrom: 'now-24h',
      timeTo: 'now',
      refreshInterval: { pause: false, value: 60000 },
      version: 1,
      kibanaSavedObjectMeta: { searchSourceJSON: searchSource('').json },
    },
    references: panels.map((p, i) => ({ name: `panel_${i}`, type: p.obj.type, id: p.obj.id })),
  };
}

export function buildSavedObjects(options: ElasticsearchAssetOptions = {}): SavedObject[] {
  const patterns = Object.keys(buildElasticsearchAssets(options).fieldsByIndexPattern);
  const [messagesTitle, c2LogsTitle, opsTitle] = patterns;
  const indexPattern = (key: PatternKey, title: string, timeFieldName: string): SavedObject => ({
    id: INDEX_PATTERN_IDS[key], type: 'index-pattern', attributes: { title, timeFieldName }, references: [],
  });
  const bar = { type: 'histogram', mode: 'stacked' };

  // C2 overview
  const logLevels = vis('e4-vis-c2-log-levels', 'E4 C2: log lines by level', 'Every C2 log line over time, split by logrus level.', 'histogram', 'c2Logs', '', [count, overTime('@timestamp'), terms('3', 'c2.level', 'group')], bar);
  const byProtocol = vis('e4-vis-c2-requests-by-protocol', 'E4 C2: activity by protocol', 'C2 log lines per protocol (grpc, http, mqtt, e4, db, monitoring): a proxy for API requests.', 'histogram', 'c2Logs', '', [count, overTime('@timestamp'), terms('3', 'c2.protocol', 'group')], bar);
  const errorsByProtocol = vis('e4-vis-c2-errors-by-protocol', 'E4 C2: errors by protocol', 'C2 log lines at level error, per protocol.', 'histogram', 'c2Logs', 'c2.level:(error or fatal or panic)', [count, overTime('@timestamp'), terms('3', 'c2.protocol', 'group')], bar);
  const commandsSent = vis('e4-vis-c2-commands-sent', 'E4 C2: operations that sent device commands', `Successful ${COMMAND_SENDING_FUNCS.join(', ')} calls (each publishes at least one command).`, 'histogram', 'c2Logs', `${funcQuery(COMMAND_SENDING_FUNCS)} and c2.msg:succeeded`, [count, overTime('@timestamp'), terms('3', 'c2.func', 'group')], bar);
  const replicas = vis('e4-vis-c2-lines-by-replica', 'E4 C2: log lines by replica', 'Which C2 replica logs what; a silent replica is down or not shipping.', 'table', 'c2Logs', '', [count, terms('2', 'replica', 'bucket'), terms('3', 'c2.level', 'bucket')], { perPage: 10 });

  // Key operations
  const keyOpsOverTime = vis('e4-vis-key-ops-over-time', 'E4 keys: successful key operations', 'Client and topic key changes and link/unlink calls that C2 reports as succeeded.', 'histogram', 'c2Logs', `${funcQuery(KEY_OPERATION_FUNCS)} and c2.msg:succeeded`, [count, overTime('@timestamp'), terms('3', 'c2.func', 'group', 12)], bar);
  const topicRotations = vis('e4-vis-topic-rotations', 'E4 keys: topic keys created or rotated, by topic', 'NewTopic calls: the first creates a topic key, every later one rotates it.', 'table', 'c2Logs', `${funcQuery(['NewTopic'])} and c2.msg:succeeded`, [count, terms('2', 'c2.topic', 'bucket', 50)], { perPage: 20 });
  const keyOpFailures = vis('e4-vis-key-op-failures', 'E4 keys: failed key operations', 'Key operations that logged an error, by method and error text.', 'table', 'c2Logs', `${funcQuery(KEY_OPERATION_FUNCS)} and c2.level:error`, [count, terms('2', 'c2.func', 'bucket'), terms('3', 'c2.error.keyword', 'bucket')], { perPage: 20 });
  const keyOpsSearch = search('e4-search-key-operations', 'E4 keys: key operation log', 'Every key operation line with topic, client id and name.', 'c2Logs', funcQuery(KEY_OPERATION_FUNCS), ['replica', 'c2.level', 'c2.func', 'c2.msg', 'c2.topic', 'c2.id', 'c2.name', 'c2.error'], '@timestamp');

  // Fleet messages
  const perTopic = vis('e4-vis-messages-per-topic', 'E4 fleet: messages per topic', 'Messages C2 saw on each managed topic.', 'histogram', 'messages', '', [count, overTime('timestamp'), terms('3', 'topic', 'group', 20)], bar);
  const encryptedShare = vis('e4-vis-messages-encrypted-vs-plaintext', 'E4 fleet: encrypted vs plaintext-looking payloads', 'looksencrypted true/false over all managed topics. Any false slice is a security finding.', 'pie', 'messages', '', [count, terms('2', 'looksencrypted', 'segment', 2)], { isDonut: true });
  const plaintextByTopic = vis('e4-vis-plaintext-by-topic', 'E4 fleet: SECURITY FINDING - plaintext-looking payloads by topic', 'Messages on managed topics whose payload does not look encrypted (a device not using E4, or a misconfigured publisher).', 'table', 'messages', 'looksencrypted:false', [count, terms('2', 'topic', 'bucket', 50), terms('3', 'isutf8', 'bucket', 2)], { perPage: 20 });
  const plaintextSearch = search('e4-search-plaintext-messages', 'E4 fleet: plaintext-looking messages', 'Individual messages on managed topics that do not look encrypted.', 'messages', 'looksencrypted:false', ['topic', 'qos', 'retained', 'isutf8', 'isjson', 'isbase64', 'lookscompressed'], 'timestamp');
  const retainedQos = vis('e4-vis-messages-qos', 'E4 fleet: messages by QoS and retained flag', 'QoS and retained flags of fleet messages.', 'table', 'messages', '', [count, terms('2', 'qos', 'bucket', 3), terms('3', 'retained', 'bucket', 2)], { perPage: 10 });

  // Toolkit jobs
  const opsEvents = vis('e4-vis-ops-events', 'E4 toolkit: job events by component', 'backup, restore-drill and resync log events over time.', 'histogram', 'opsLogs', '', [count, overTime('time'), terms('3', 'component', 'group')], bar);
  const opsFailures = vis('e4-vis-ops-failures', 'E4 toolkit: errors by component and event', 'Error events of the backup, drill and resync jobs.', 'table', 'opsLogs', 'level:error', [count, terms('2', 'component', 'bucket'), terms('3', 'event', 'bucket', 20)], { perPage: 20 });
  const backupBytes = vis('e4-vis-backup-bytes', 'E4 toolkit: bytes per stored backup set', 'Size of each stored backup set (event backup_set_stored).', 'histogram', 'opsLogs', 'event:backup_set_stored', [sum('1', 'bytes'), overTime('time')], bar);
  const resyncResults = vis('e4-vis-resync-results', 'E4 toolkit: resync topics rotated and failed', 'Totals from each resync run (event resync.finish).', 'histogram', 'opsLogs', 'event:"resync.finish"', [sum('1', 'rotated'), sum('4', 'failed'), overTime('time')], bar);
  const opsSearch = search('e4-search-ops-events', 'E4 toolkit: job log', 'Every e4ops job event.', 'opsLogs', '', ['component', 'level', 'event', 'error', 'topic', 'target', 'check'], 'time');

  return [
    indexPattern('messages', messagesTitle, 'timestamp'),
    indexPattern('c2Logs', c2LogsTitle, '@timestamp'),
    indexPattern('opsLogs', opsTitle, 'time'),
    logLevels, byProtocol, errorsByProtocol, commandsSent, replicas,
    keyOpsOverTime, topicRotations, keyOpFailures, keyOpsSearch,
    perTopic, encryptedShare, plaintextByTopic, plaintextSearch, retainedQos,
    opsEvents, opsFailures, backupBytes, resyncResults, opsSearch,
    dashboard('e4-dashboard-c2-overview', 'E4: C2 overview', 'C2 activity and errors by protocol, device commands sent, log levels.', [
      { obj: logLevels, w: 24, h: 12 }, { obj: byProtocol, w: 24, h: 12 },
      { obj: errorsByProtocol, w: 24, h: 12 }, { obj: commandsSent, w: 24, h: 12 }, { obj: replicas, w: 48, h: 10 },
    ]),
    dashboard('e4-dashboard-key-operations', 'E4: key operations', 'Topic rotations, client key changes, link/unlink events from C2 logs.', [
      { obj: keyOpsOverTime, w: 48, h: 12 }, { obj: topicRotations, w: 24, h: 14 }, { obj: keyOpFailures, w: 24, h: 14 }, { obj: keyOpsSearch, w: 48, h: 16 },
    ]),
    dashboard('e4-dashboard-fleet-messages', 'E4: fleet messages', 'Messages per managed topic; plaintext-looking payloads on managed topics are security findings.', [
      { obj: perTopic, w: 32, h: 12 }, { obj: encryptedShare, w: 16, h: 12 },
      { obj: plaintextByTopic, w: 24, h: 14 }, { obj: retainedQos, w: 24, h: 14 }, { obj: plaintextSearch, w: 48, h: 16 },
    ]),
    dashboard('e4-dashboard-toolkit-jobs', 'E4: toolkit backup, drill and resync jobs', 'Events the e4ops backup, restore-drill and resync jobs log.', [
      { obj: opsEvents, w: 24, h: 12 }, { obj: opsFailures, w: 24, h: 12 },
      { obj: backupBytes, w: 24, h: 12 }, { obj: resyncResults, w: 24, h: 12 }, { obj: opsSearch, w: 48, h: 16 },
    ]),
  ];
}

/** One JSON object per line, as Kibana's import API takes it. */
export function renderSavedObjectsNdjson(options: ElasticsearchAssetOptions = {}): string {
  return buildSavedObjects(options).map((o) => JSON.stringify(o)).join('\n') + '\n';
}

export function parseSavedObjectsNdjson(text: string, file = 'saved objects'): SavedObject[] {
  return text.split('\n').filter((l) => l.trim()).map((line, i) => {
    try {
      const o = JSON.parse(line) as SavedObject;
      if (!o.id || !o.type || typeof o.attributes !== 'object') throw new Error('needs id, type and attributes');
      return { ...o, references: o.references ?? [] };
    } catch (e) {
      throw new Error(`${file} line ${i + 1}: not a saved object (${(e as Error).message})`);
    }
  });
}
