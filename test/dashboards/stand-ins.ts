// Test doubles for dashboards/install.ts:
//  - an Elasticsearch 7.17 stand-in on @elastic/elasticsearch-mock that keeps state and answers GETs
//    the way Elasticsearch does (settings nested and stringified, ILM policies wrapped with version and
//    modified_date plus defaults, mapping `dynamic` as a string), so idempotency is tested against
//    realistic read-backs, not against our own request bodies;
//  - a Kibana stand-in: node:http on 127.0.0.1:0 implementing _bulk_get and _import (multipart,
//    overwrite, kbn-xsrf required) and recording every request.
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import MockPkg from '@elastic/elasticsearch-mock';
import { Client, errors } from '@elastic/elasticsearch';

type Json = any;
// CommonJS module: at run time the default import is the class itself.
const Mock: new () => { add(p: { method: string | string[]; path: string }, fn: (params: any) => any): void; getConnection(): any } = (MockPkg as any).default ?? MockPkg;

function nestAndStringify(settings: Json): Json {
  const out: Json = {};
  const put = (path: string[], v: unknown) => {
    let o = out;
    for (const p of path.slice(0, -1)) o = o[p] ??= {};
    o[path[path.length - 1]] = typeof v === 'object' && v !== null ? v : String(v);
  };
  const walk = (obj: Json, prefix: string[]) => {
    for (const [k, v] of Object.entries(obj)) {
      const path = [...prefix, ...k.split('.')];
      if (v && typeof v === 'object' && !Array.isArray(v)) walk(v, path);
      else put(path, v);
    }
  };
  walk(settings ?? {}, []);
  if (!out.index && Object.keys(out).length) return { index: out };
  return out;
}

function stringifyDynamic(m: Json): Json {
  if (!m || typeof m !== 'object') return m;
  if (Array.isArray(m)) return m.map(stringifyDynamic);
  return Object.fromEntries(Object.entries(m).map(([k, v]) => [k, k === 'dynamic' ? String(v) : stringifyDynamic(v)]));
}

const notFound = (what: string) => new errors.ResponseError({ body: { error: { type: 'resource_not_found_exception', reason: `${what} missing` }, status: 404 }, statusCode: 404, headers: {}, warnings: null, meta: {} as any });

export interface EsRequest { method: string; path: string; querystring: Record<string, unknown>; body: unknown }

export function createElasticsearchStandIn() {
  const mock = new Mock();
  const state = {
    ilm: new Map<string, Json>(),
    component: new Map<string, Json>(),
    indexTemplates: new Map<string, Json>(),
    legacy: new Map<string, Json>(),
    indices: new Map<string, { aliases: Json }>(),
  };
  const requests: EsRequest[] = [];
  const rec = (p: any) => { requests.push({ method: p.method, path: p.path, querystring: p.querystring, body: p.body }); };

  mock.add({ method: 'GET', path: '/' }, () => ({ name: 'stand-in', cluster_name: 'e4', version: { number: '7.17.14', build_flavor: 'default' }, tagline: 'You Know, for Search' }));

  mock.add({ method: 'GET', path: '/_ilm/policy/:name' }, (p: any) => {
    rec(p);
    const name = decodeURIComponent(p.path.split('/').pop());
    const pol = state.ilm.get(name);
    if (!pol) return notFound(`policy ${name}`);
    const phases = structuredClone(pol.policy.phases);
    if (phases.delete?.actions?.delete) phases.delete.actions.delete = { delete_searchable_snapshot: true };
    return { [name]: { version: 3, modified_date: '2026-01-01T00:00:00.000Z', policy: { ...pol.policy, phases } } };
  });
  mock.add({ method: 'PUT', path: '/_ilm/policy/:name' }, (p: any) => { rec(p); state.ilm.set(decodeURIComponent(p.path.split('/').pop()), p.body); return { acknowledged: true }; });

  mock.add({ method: 'GET', path: '/_component_template/:name' }, (p: any) => {
    rec(p);
    const name = decodeURIComponent(p.path.split('/').pop());
    const t = state.component.get(name);
    if (!t) return notFound(`component template ${name}`);
    const template: Json = {};
    if (t.template.settings) template.settings = nestAndStringify(t.template.settings);
    if (t.template.mappings) template.mappings = stringifyDynamic(t.template.mappings);
    return { component_templates: [{ name, component_template: { ...t, template } }] };
  });
  mock.add({ method: 'PUT', path: '/_component_template/:name' }, (p: any) => { rec(p); state.component.set(decodeURIComponent(p.path.split('/').pop()), p.body); return { acknowledged: true }; });

  mock.add({ method: 'GET', path: '/_index_template/:name' }, (p: any) => {
    rec(p);
    const name = decodeURIComponent(p.path.split('/').pop());
    const t = state.indexTemplates.get(name);
    if (!t) return notFound(`index template ${name}`);
    return { index_templates: [{ name, index_template: { ...t, template: { ...t.template, settings: nestAndStringify(t.template?.settings) } } }] };
  });
  mock.add({ method: 'PUT', path: '/_index_template/:name' }, (p: any) => { rec(p); state.indexTemplates.set(decodeURIComponent(p.path.split('/').pop()), p.body); return { acknowledged: true }; });

  mock.add({ method: 'GET', path: '/_template/:name' }, (p: any) => {
    rec(p);
    const name = decodeURIComponent(p.path.split('/').pop());
    const t = state.legacy.get(name);
    if (!t) return notFound(`template ${name}`);
    return { [name]: { order: t.order ?? 0, version: t.version, index_patterns: t.index_patterns, settings: nestAndStringify(t.settings), mappings: stringifyDynamic(t.mappings), aliases: {} } };
  });
  mock.add({ method: 'PUT', path: '/_template/:name' }, (p: any) => {
    rec(p);
    if (p.querystring.include_type_name !== 'true') return new errors.ResponseError({ body: { error: 'typed mapping without include_type_name', status: 400 }, statusCode: 400, headers: {}, warnings: null, meta: {} as any });
    state.legacy.set(decodeURIComponent(p.path.split('/').pop()), p.body);
    return { acknowledged: true };
  });

  mock.add({ method: 'HEAD', path: '/_alias/:name' }, (p: any) => {
    rec(p);
    const name = decodeURIComponent(p.path.split('/').pop());
    return [...state.indices.values()].some((i) => name in i.aliases) ? '' : notFound(`alias ${name}`);
  });
  mock.add({ method: 'HEAD', path: '/:index' }, (p: any) => { rec(p); return state.indices.has(decodeURIComponent(p.path.slice(1))) ? '' : notFound('index'); });
  mock.add({ method: 'PUT', path: '/:index' }, (p: any) => {
    rec(p);
    const index = decodeURIComponent(p.path.slice(1));
    state.indices.set(index, { aliases: p.body?.aliases ?? {} });
    return { acknowledged: true, index };
  });

  const client = new Client({ node: 'http://127.0.0.1:9200', Connection: mock.getConnection() });
  const writes = () => requests.filter((r) => r.method === 'PUT' || r.method === 'POST' || r.method === 'DELETE');
  return { client, state, requests, writes };
}

export interface KibanaRequest { method: string; url: string; headers: http.IncomingHttpHeaders; body: string }

export async function startKibanaStandIn() {
  const objects = new Map<string, Json>();
  const requests: KibanaRequest[] = [];
  let failImportFor: string | undefined;
  const server = http.createServer(async (req, res) => {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const raw = Buffer.concat(chunks);
    requests.push({ method: req.method!, url: req.url!, headers: req.headers, body: raw.toString('utf8') });
    const send = (status: number, body: unknown) => { res.writeHead(status, { 'content-type': 'application/json' }); res.end(JSON.stringify(body)); };
    if (req.method === 'POST' && !req.headers['kbn-xsrf']) return send(400, { statusCode: 400, error: 'Bad Request', message: 'Request must contain a kbn-xsrf header.' });
    const url = new URL(req.url!, 'http://x');
    const path = url.pathname.replace(/^\/s\/[^/]+/, '');
    if (req.method === 'POST' && path === '/api/saved_objects/_bulk_get') {
      const wanted = JSON.parse(raw.toString('utf8')) as Array<{ type: string; id: string }>;
      return send(200, {
        saved_objects: wanted.map(({ type, id }) => objects.get(`${type}/${id}`)
          ?? { id, type, error: { statusCode: 404, error: 'Not Found', message: `Saved object [${type}/${id}] not found` } }),
      });
    }
    if (req.method === 'POST' && path === '/api/saved_objects/_import') {
      const form = await new Response(raw, { headers: { 'content-type': req.headers['content-type'] ?? '' } }).formData();
      const file = form.get('file');
      if (!(file instanceof Blob)) return send(400, { message: 'file missing' });
      const lines = (await file.text()).split('\n').filter(Boolean).map((l) => JSON.parse(l));
      const overwrite = url.searchParams.get('overwrite') === 'true';
      const errorsOut: Json[] = [];
      for (const o of lines) {
        const key = `${o.type}/${o.id}`;
        if (o.id === failImportFor) { errorsOut.push({ id: o.id, type: o.type, error: { type: 'missing_references', references: [] } }); continue; }
        if (objects.has(key) && !overwrite) { errorsOut.push({ id: o.id, type: o.type, error: { type: 'conflict' } }); continue; }
        // like Kibana's migrations: re-serialise visState with an added default, add bookkeeping fields
        const attributes = { ...o.attributes };
        if (typeof attributes.visState === 'string') attributes.visState = JSON.stringify({ ...JSON.parse(attributes.visState), migratedBy: 'stand-in' });
        if (o.type === 'index-pattern') attributes.fields = '[]';
        objects.set(key, { ...o, attributes, migrationVersion: { [o.type]: '7.17.0' }, coreMigrationVersion: '7.17.14', updated_at: new Date().toISOString(), version: 'WzEsMV0=' });
      }
      return send(200, { success: errorsOut.length === 0, successCount: lines.length - errorsOut.length, ...(errorsOut.length ? { errors: errorsOut } : {}) });
    }
    send(404, { statusCode: 404, message: `no route ${req.method} ${path}` });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    objects,
    requests,
    failImportOf(id: string | undefined) { failImportFor = id; },
    imports: () => requests.filter((r) => r.url.includes('/_import')),
    close: () => new Promise<void>((r) => server.close(() => r())),
  };
}
