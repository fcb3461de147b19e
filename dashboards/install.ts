// Install the Elasticsearch templates/ILM policies and the Kibana saved objects, idempotently:
// read what is there first, write only what differs, report every decision. `dryRun` reads only.
// The stacks call the same functions once Elasticsearch and Kibana report healthy.
//
// "Differs" means: some value we set is missing or different on the server. Values the server adds
// (defaults, modified_date, migrations' extra keys) are ignored, settings are compared as
// Elasticsearch returns them (strings), and JSON-in-string attributes of Kibana objects (visState,
// panelsJSON, searchSourceJSON ...) are compared parsed.
import type { Client } from '@elastic/elasticsearch';
import { createLogger, redactUrl, type Logger } from '../lib/log.ts';
import { buildElasticsearchAssets, type ElasticsearchAssetOptions, type ElasticsearchAssets } from './elasticsearch/index-templates.ts';
import type { SavedObject } from './kibana/saved-objects.ts';

export type ChangeAction = 'create' | 'update' | 'unchanged';
export interface Change {
  target: 'elasticsearch' | 'kibana';
  kind: string;
  name: string;
  action: ChangeAction;
}

export interface InstallReport {
  dryRun: boolean;
  changes: Change[];
}

/** True when every value in `want` is present and equal in `have` (objects recursively, arrays element-wise). */
export function containsDesired(want: unknown, have: unknown): boolean {
  if (want === null || typeof want !== 'object') {
    if (have === null || typeof have === 'object' || have === undefined) return want === have;
    return String(want) === String(have);
  }
  if (Array.isArray(want)) {
    return Array.isArray(have) && have.length === want.length && want.every((w, i) => containsDesired(w, have[i]));
  }
  if (have === null || typeof have !== 'object' || Array.isArray(have)) return false;
  return Object.entries(want as Record<string, unknown>).every(([k, v]) => containsDesired(v, (have as Record<string, unknown>)[k]));
}

/** `{index: {lifecycle: {name: x}}}` and `{"index.lifecycle.name": x}` both become the dotted form. */
function flattenSettings(obj: unknown, prefix = '', out: Record<string, unknown> = {}): Record<string, unknown> {
  if (obj && typeof obj === 'object' && !Array.isArray(obj)) {
    for (const [k, v] of Object.entries(obj)) flattenSettings(v, prefix ? `${prefix}.${k}` : k, out);
  } else out[prefix.replace(/^index\./, '')] = obj;
  return out;
}

/** Flatten every `settings` object inside a template body so nested and dotted forms compare equal. */
function normalizeSettings(body: unknown): unknown {
  if (!body || typeof body !== 'object') return body;
  if (Array.isArray(body)) return body.map(normalizeSettings);
  return Object.fromEntries(Object.entries(body).map(([k, v]) => [k, k === 'settings' ? flattenSettings(v) : normalizeSettings(v)]));
}

const sameTemplate = (want: unknown, have: unknown) => have !== undefined && containsDesired(normalizeSettings(want), normalizeSettings(have));

export interface ElasticsearchInstallOptions {
  dryRun?: boolean;
  logger?: Logger;
}

async function getOrUndefined<T>(call: () => Promise<{ statusCode: number | null; body: T }>): Promise<T | undefined> {
  const r = await call();
  return r.statusCode === 404 ? undefined : r.body;
}

/** ILM policies, then component templates, then index templates (composable and legacy), then rollover bootstrap indices. */
export async function installElasticsearchAssets(es: Client, assets: ElasticsearchAssets, opts: ElasticsearchInstallOptions = {}): Promise<Change[]> {
  const log = opts.logger ?? createLogger({ component: 'dashboards' });
  const changes: Change[] = [];
  const decide = async (kind: string, name: string, have: unknown, want: unknown, put: () => Promise<unknown>) => {
    const action: ChangeAction = have === undefined ? 'create' : sameTemplate(want, have) ? 'unchanged' : 'update';
    changes.push({ target: 'elasticsearch', kind, name, action });
    if (action !== 'unchanged' && !opts.dryRun) await put();
    log.info('elasticsearch_asset', { kind, name, action, dryRun: !!opts.dryRun });
  };
  const ignore404 = { ignore: [404] };

  for (const [name, body] of Object.entries(assets.ilmPolicies)) {
    const have = await getOrUndefined(() => es.ilm.getLifecycle({ policy: name }, ignore404)) as Record<string, { policy: unknown }> | undefined;
    await decide('ilm_policy', name, have?.[name] ? { policy: have[name].policy } : undefined, body, () => es.ilm.putLifecycle({ policy: name, body }));
  }
  for (const [name, body] of Object.entries(assets.componentTemplates)) {
    const have = await getOrUndefined(() => es.cluster.getComponentTemplate({ name }, ignore404)) as { component_templates?: Array<{ name: string; component_template: unknown }> } | undefined;
    const found = have?.component_templates?.find((t) => t.name === name)?.component_template;
    await decide('component_template', name, found, body, () => es.cluster.putComponentTemplate({ name, body }));
  }
  for (const [name, body] of Object.entries(assets.indexTemplates)) {
    const have = await getOrUndefined(() => es.indices.getIndexTemplate({ name }, ignore404)) as { index_templates?: Array<{ name: string; index_template: unknown }> } | undefined;
    const found = have?.index_templates?.find((t) => t.name === name)?.index_template;
    await decide('index_template', name, found, body, () => es.indices.putIndexTemplate({ name, body }));
  }
  for (const [name, body] of Object.entries(assets.legacyTemplates)) {
    const have = await getOrUndefined(() => es.indices.getTemplate({ name, include_type_name: true }, ignore404)) as Record<string, unknown> | undefined;
    await decide('legacy_template', name, have?.[name], body, () => es.indices.putTemplate({ name, include_type_name: true, body }));
  }
  for (const { alias, index } of assets.rolloverBootstraps) {
    const aliasExists = (await es.indices.existsAlias({ name: alias })).body === true;
    if (aliasExists) {
      changes.push({ target: 'elasticsearch', kind: 'rollover_alias', name: alias, action: 'unchanged' });
      continue;
    }
    if ((await es.indices.exists({ index: alias })).body === true) {
      throw new Error(`elasticsearch: "${alias}" is a concrete index, not the rollover alias ILM needs (something wrote to it before the templates existed). ` +
        `Reindex its documents into ${index} and delete it, then run the install again.`);
    }
    changes.push({ target: 'elasticsearch', kind: 'rollover_alias', name: alias, action: 'create' });
    if (!opts.dryRun) await es.indices.create({ index, body: { aliases: { [alias]: { is_write_index: true } } } });
    log.info('elasticsearch_asset', { kind: 'rollover_alias', name: alias, index, action: 'create', dryRun: !!opts.dryRun });
  }
  return changes;
}

export interface KibanaInstallOptions {
  /** Base URL, e.g. http://kibana:5601 (credentials in the URL become a Basic Authorization header). */
  kibanaUrl: string;
  /** Kibana space id; default space when absent. */
  space?: string;
  dryRun?: boolean;
  logger?: Logger;
  fetch?: typeof fetch;
}

const JSON_STRING_ATTRIBUTES = /JSON$|^visState$/;

function comparableAttributes(attrs: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(attrs)) {
    if (typeof v === 'string' && JSON_STRING_ATTRIBUTES.test(k)) {
      try { out[k] = JSON.parse(v); continue; } catch { /* compare as text */ }
    }
    out[k] = v && typeof v === 'object' && !Array.isArray(v) ? comparableAttributes(v as Record<string, unknown>) : v;
  }
  return out;
}

function kibanaTarget(kibanaUrl: string, space?: string): { base: string; headers: Record<string, string> } {
  let u: URL;
  try { u = new URL(kibanaUrl); } catch { throw new Error(`kibana url "${redactUrl(kibanaUrl)}": not a URL; give e.g. http://127.0.0.1:5601`); }
  const headers: Record<string, string> = { 'kbn-xsrf': 'e4ops' };
  if (u.username) {
    headers.authorization = 'Basic ' + Buffer.from(`${decodeURIComponent(u.username)}:${decodeURIComponent(u.password)}`).toString('base64');
    u.username = '';
    u.password = '';
  }
  const base = u.toString().replace(/\/+$/, '') + (space && space !== 'default' ? `/s/${encodeURIComponent(space)}` : '');
  return { base, headers };
}

async function kibanaJson(f: typeof fetch, url: string, init: RequestInit, what: string): Promise<any> {
  const res = await f(url, init);
  const text = await res.text();
  if (!res.ok) throw new Error(`kibana ${what}: HTTP ${res.status} ${text.slice(0, 300)}`);
  try { return JSON.parse(text); } catch { throw new Error(`kibana ${what}: answer is not JSON: ${text.slice(0, 200)}`); }
}

/** Bulk-get every object, then import (overwrite) only the missing or different ones in one request. */
export async function installKibanaObjects(objects: SavedObject[], opts: KibanaInstallOptions): Promise<Change[]> {
  const log = opts.logger ?? createLogger({ component: 'dashboards' });
  const f = opts.fetch ?? fetch;
  const { base, headers } = kibanaTarget(opts.kibanaUrl, opts.space);
  const existing = await kibanaJson(f, `${base}/api/saved_objects/_bulk_get`, {
    method: 'POST', headers: { ...headers, 'content-type': 'application/json' },
    body: JSON.stringify(objects.map((o) => ({ type: o.type, id: o.id }))),
  }, 'bulk_get');
  const byKey = new Map<string, any>();
  for (const so of existing.saved_objects ?? []) if (!so.error) byKey.set(`${so.type}/${so.id}`, so);

  const changes: Change[] = [];
  const toImport: SavedObject[] = [];
  for (const o of objects) {
    const have = byKey.get(`${o.type}/${o.id}`);
    const same = have && containsDesired(comparableAttributes(o.attributes), comparableAttributes(have.attributes ?? {}))
      && containsDesired(sortRefs(o.references), sortRefs(have.references ?? []));
    const action: ChangeAction = !have ? 'create' : same ? 'unchanged' : 'update';
    changes.push({ target: 'kibana', kind: o.type, name: o.id, action });
    if (action !== 'unchanged') toImport.push(o);
  }
  if (toImport.length && !opts.dryRun) {
    const form = new FormData();
    form.append('file', new Blob([toImport.map((o) => JSON.stringify(o)).join('\n') + '\n'], { type: 'application/ndjson' }), 'e4-saved-objects.ndjson');
    const r = await kibanaJson(f, `${base}/api/saved_objects/_import?overwrite=true`, { method: 'POST', headers, body: form }, 'import');
    if (!r.success) {
      const errs = (r.errors ?? []).map((e: any) => `${e.type}/${e.id}: ${e.error?.type ?? ''} ${e.error?.message ?? JSON.stringify(e.error)}`).join('; ');
      throw new Error(`kibana import: ${r.successCount ?? 0} of ${toImport.length} objects imported; errors: ${errs}`);
    }
  }
  log.info('kibana_objects', { url: base, imported: opts.dryRun ? 0 : toImport.length, unchanged: objects.length - toImport.length, dryRun: !!opts.dryRun });
  return changes;
}

function sortRefs(refs: SavedObject['references']) {
  return [...refs].map(({ id, name, type }) => ({ id, name, type })).sort((a, b) => a.name.localeCompare(b.name));
}

export interface InstallDashboardsOptions {
  es?: Client;
  kibanaUrl?: string;
  kibanaSpace?: string;
  savedObjects?: SavedObject[];
  assetOptions?: ElasticsearchAssetOptions;
  dryRun?: boolean;
  logger?: Logger;
  fetch?: typeof fetch;
}

/** Elasticsearch first (the Kibana index patterns point at its templates), then Kibana. */
export async function installDashboards(opts: InstallDashboardsOptions): Promise<InstallReport> {
  if (!opts.es && !opts.kibanaUrl) throw new Error('dashboards install: nothing to do; give an Elasticsearch client (--es-url) and/or a Kibana URL (--kibana-url)');
  const changes: Change[] = [];
  if (opts.es) changes.push(...await installElasticsearchAssets(opts.es, buildElasticsearchAssets(opts.assetOptions), opts));
  if (opts.kibanaUrl) {
    if (!opts.savedObjects?.length) throw new Error('dashboards install: no Kibana saved objects given');
    changes.push(...await installKibanaObjects(opts.savedObjects, { kibanaUrl: opts.kibanaUrl, space: opts.kibanaSpace, dryRun: opts.dryRun, logger: opts.logger, fetch: opts.fetch }));
  }
  return { dryRun: !!opts.dryRun, changes };
}
