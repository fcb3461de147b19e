// Elasticsearch 7.17 index templates and ILM policies for what an E4 deployment indexes:
//  - C2's message monitoring: C2 itself writes `<messageIndex>-YYYY.MM.DD` with document type
//    `message` (olivere/elastic v6 typed requests). A typeless (`_doc`) mapping from a composable
//    template would make those requests fail ("final mapping would have more than 1 type"), so this
//    one index family uses a LEGACY template (`_template`, include_type_name=true) whose mapping sits
//    under the `message` type. Typed requests are deprecated in 7.x but accepted; Elasticsearch 8
//    rejects them outright, which is why C2 needs 7.x.
//  - C2's JSON logs as the rsyslog shipper (lib/render/log-shipper-rsyslog.ts) indexes them: daily
//    `<c2LogsIndexPrefix>-YYYY.MM.DD`, documents {@timestamp, host, replica, application, c2: {...}}.
//  - The toolkit's own JSON log lines (lib/log.ts: time, level, event, component, ...), written
//    through the rollover write alias `<opsLogsAlias>` (bootstrap index `<opsLogsAlias>-000001`).
//
// ILM and daily indices: rollover needs a write alias (index.lifecycle.rollover_alias); C2 and the
// shipper name their indices by date, so their policies have no rollover action. Phase ages then
// count from each index's creation date, so "delete after N days" works as is. Only the ops-log
// family, written through an alias, rolls over (max size / max age) before its delete phase.
// Every builder is pure: settings in, request bodies out.
import { ELASTICSEARCH_INDEX_DEFAULTS } from '../../lib/settings/monitoring-defaults.ts';

export interface ElasticsearchAssetOptions {
  /** C2's `es-message-logging-index` (C2 writes `<index>-YYYY.MM.DD`). Default "messages". */
  messageIndex?: string;
  messagesRetentionDays?: number;
  /** Daily index prefix the log shipper writes C2 logs to. Default "e4-c2-logs". */
  c2LogsIndexPrefix?: string;
  logsRetentionDays?: number;
  /** Write alias for e4ops JSON log lines. Default "e4ops-logs". */
  opsLogsAlias?: string;
  opsLogsRetentionDays?: number;
  /** Rollover thresholds for the ops-log alias. */
  rolloverMaxSize?: string;
  rolloverMaxAge?: string;
  /** index.auto_expand_replicas: "0-1" keeps a single node green and uses a replica when a second node exists. */
  autoExpandReplicas?: string;
}

export const DEFAULT_ES_ASSET_OPTIONS: Required<ElasticsearchAssetOptions> = { ...ELASTICSEARCH_INDEX_DEFAULTS };

type Json = Record<string, unknown>;

export interface ElasticsearchAssets {
  ilmPolicies: Record<string, { policy: Json }>;
  /** Legacy `_template` bodies (PUT with include_type_name=true). */
  legacyTemplates: Record<string, Json>;
  componentTemplates: Record<string, { template: Json; version?: number; _meta?: Json }>;
  indexTemplates: Record<string, Json>;
  /** Rollover bootstrap: create `index` with `alias` as write index when the alias does not exist. */
  rolloverBootstraps: Array<{ alias: string; index: string }>;
  /** For Kibana cross-checks: index pattern title → flattened field name → ES type. */
  fieldsByIndexPattern: Record<string, Record<string, string>>;
}

const kw = { type: 'keyword', ignore_above: 1024 };
const textKw = { type: 'text', fields: { keyword: { type: 'keyword', ignore_above: 1024 } } };

/** Fields C2 puts in each monitored message (c2 internal/services/elastic.go; see c2-facts.md). */
export const MESSAGE_PROPERTIES: Json = {
  timestamp: { type: 'date' },
  duplicate: { type: 'boolean' },
  qos: { type: 'byte' },
  retained: { type: 'boolean' },
  topic: kw,
  messageid: { type: 'integer' },
  // base64 of the raw payload: kept in _source for Discover, not searchable
  payload: { type: 'binary' },
  looksencrypted: { type: 'boolean' },
  lookscompressed: { type: 'boolean' },
  isbase64: { type: 'boolean' },
  isutf8: { type: 'boolean' },
  isjson: { type: 'boolean' },
};

/** C2 logrus JSON fields, nested under `c2` by the shipper. */
export const C2_LOG_PROPERTIES: Json = {
  '@timestamp': { type: 'date' },
  host: kw,
  replica: kw,
  application: kw,
  c2: {
    dynamic: false,
    properties: {
      time: { type: 'date' },
      level: kw,
      msg: textKw,
      func: kw,
      file: kw,
      application: kw,
      protocol: kw,
      topic: kw,
      id: kw,
      name: kw,
      request: kw,
      error: textKw,
      offset: { type: 'long' },
      count: { type: 'long' },
      total: { type: 'long' },
    },
  },
};

/** e4ops JSON log lines (lib/log.ts) and the fields the backup, drill and resync jobs log. */
export const OPS_LOG_PROPERTIES: Json = {
  time: { type: 'date' },
  level: kw,
  event: kw,
  component: kw,
  host: kw,
  error: textKw,
  hint: { type: 'text' },
  kind: kw,
  exitCode: { type: 'integer' },
  ok: { type: 'boolean' },
  bytes: { type: 'long' },
  objects: { type: 'long' },
  seconds: { type: 'double' },
  target: kw,
  check: kw,
  setId: kw,
  resyncId: kw,
  topic: kw,
  rotated: { type: 'long' },
  failed: { type: 'long' },
  total: { type: 'long' },
  dryRun: { type: 'boolean' },
};

function ilmDailyPolicy(retentionDays: number): { policy: Json } {
  return {
    policy: {
      _meta: { managed_by: 'e4ops', note: 'daily indices named by date: no rollover, ages count from index creation' },
      phases: {
        hot: { min_age: '0ms', actions: { set_priority: { priority: 100 } } },
        warm: { min_age: '2d', actions: { set_priority: { priority: 50 }, readonly: {} } },
        delete: { min_age: `${retentionDays}d`, actions: { delete: {} } },
      },
    },
  };
}

function checkOptions(o: Required<ElasticsearchAssetOptions>): void {
  for (const k of ['messagesRetentionDays', 'logsRetentionDays', 'opsLogsRetentionDays'] as const) {
    if (!Number.isInteger(o[k]) || o[k] < 3) throw new Error(`elasticsearch ${k}: ${o[k]} is not a whole number of days >= 3 (indices turn read-only at 2 days)`);
  }
  for (const k of ['messageIndex', 'c2LogsIndexPrefix', 'opsLogsAlias'] as const) {
    if (!/^[a-z0-9][a-z0-9_.-]*$/.test(o[k])) throw new Error(`elasticsearch ${k}: "${o[k]}" is not a valid lowercase index name`);
  }
  if (!/^\d+(b|kb|mb|gb|tb)$/.test(o.rolloverMaxSize)) throw new Error(`elasticsearch rolloverMaxSize: "${o.rolloverMaxSize}" should look like 10gb`);
  if (!/^\d+(d|h|m)$/.test(o.rolloverMaxAge)) throw new Error(`elasticsearch rolloverMaxAge: "${o.rolloverMaxAge}" should look like 30d`);
}

export function buildElasticsearchAssets(options: ElasticsearchAssetOptions = {}): ElasticsearchAssets {
  const o = { ...DEFAULT_ES_ASSET_OPTIONS, ...options };
  checkOptions(o);
  const common = { 'e4-settings-common': { template: { settings: { index: { auto_expand_replicas: o.autoExpandReplicas, refresh_interval: '5s' } } }, _meta: { managed_by: 'e4ops' } } };
  const messagesPattern = `${o.messageIndex}-*`;
  const c2LogsPattern = `${o.c2LogsIndexPrefix}-*`;
  const opsPattern = `${o.opsLogsAlias}-*`;
  return {
    ilmPolicies: {
      'e4-messages': ilmDailyPolicy(o.messagesRetentionDays),
      'e4-c2-logs': ilmDailyPolicy(o.logsRetentionDays),
      'e4ops-logs': {
        policy: {
          _meta: { managed_by: 'e4ops', note: `written through alias ${o.opsLogsAlias}: rollover, then delete` },
          phases: {
            hot: { min_age: '0ms', actions: { rollover: { max_size: o.rolloverMaxSize, max_age: o.rolloverMaxAge }, set_priority: { priority: 100 } } },
            delete: { min_age: `${o.opsLogsRetentionDays}d`, actions: { delete: {} } },
          },
        },
      },
    },
    legacyTemplates: {
      'e4-messages': {
        index_patterns: [messagesPattern],
        order: 10,
        version: 1,
        settings: { index: { lifecycle: { name: 'e4-messages' }, auto_expand_replicas: o.autoExpandReplicas, number_of_shards: '1' } },
        mappings: { message: { dynamic: false, properties: MESSAGE_PROPERTIES } },
      },
    },
    componentTemplates: {
      ...common,
      'e4-c2-logs-mappings': { template: { mappings: { dynamic: false, properties: C2_LOG_PROPERTIES } }, _meta: { managed_by: 'e4ops' } },
      'e4ops-logs-mappings': { template: { mappings: { dynamic: false, properties: OPS_LOG_PROPERTIES } }, _meta: { managed_by: 'e4ops' } },
    },
    indexTemplates: {
      'e4-c2-logs': {
        index_patterns: [c2LogsPattern],
        priority: 200,
        composed_of: ['e4-settings-common', 'e4-c2-logs-mappings'],
        template: { settings: { index: { lifecycle: { name: 'e4-c2-logs' }, number_of_shards: '1' } } },
        _meta: { managed_by: 'e4ops' },
      },
      'e4ops-logs': {
        index_patterns: [opsPattern],
        priority: 200,
        composed_of: ['e4-settings-common', 'e4ops-logs-mappings'],
        template: { settings: { index: { lifecycle: { name: 'e4ops-logs', rollover_alias: o.opsLogsAlias }, number_of_shards: '1' } } },
        _meta: { managed_by: 'e4ops' },
      },
    },
    rolloverBootstraps: [{ alias: o.opsLogsAlias, index: `${o.opsLogsAlias}-000001` }],
    fieldsByIndexPattern: {
      [messagesPattern]: flattenProperties(MESSAGE_PROPERTIES),
      [c2LogsPattern]: flattenProperties(C2_LOG_PROPERTIES),
      [opsPattern]: flattenProperties(OPS_LOG_PROPERTIES),
    },
  };
}

/** {a: {properties: {b: {type: keyword, fields: {k: ...}}}}} → {"a.b": "keyword", "a.b.k": ...}. */
export function flattenProperties(props: Json, prefix = ''): Record<string, string> {
  const out: Record<string, string> = {};
  for (const [name, raw] of Object.entries(props)) {
    const def = raw as Json;
    const full = prefix + name;
    if (def.properties) Object.assign(out, flattenProperties(def.properties as Json, full + '.'));
    else out[full] = String(def.type);
    if (def.fields) for (const [sub, sd] of Object.entries(def.fields as Json)) out[`${full}.${sub}`] = String((sd as Json).type);
  }
  return out;
}
