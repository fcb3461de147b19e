// Kibana objects only reference index patterns and fields the Elasticsearch templates define, and the
// templates/ILM bodies say what an operator relies on (C2's typed writes, retention, rollover).
import { describe, it, expect } from 'vitest';
import fs from 'node:fs';
import path from 'node:path';
import { buildElasticsearchAssets, MESSAGE_PROPERTIES } from '../../dashboards/elasticsearch/index-templates.ts';
import { parseSavedObjectsNdjson, renderSavedObjectsNdjson, buildSavedObjects, type SavedObject } from '../../dashboards/kibana/saved-objects.ts';

const repo = path.resolve(import.meta.dirname, '../..');
const ndjsonFile = path.join(repo, 'dashboards/kibana/e4-saved-objects.ndjson');

/** Field names a KQL query mentions (`field:value`, `field:(a or b)`). */
function kqlFields(query: string): string[] {
  return [...query.matchAll(/([A-Za-z@_][\w.@]*)\s*:/g)].map((m) => m[1]);
}

function fieldsUsed(o: SavedObject): string[] {
  const out: string[] = [];
  const src = (o.attributes.kibanaSavedObjectMeta as any)?.searchSourceJSON;
  if (src) out.push(...kqlFields(JSON.parse(src).query?.query ?? ''));
  if (o.type === 'visualization') {
    for (const a of JSON.parse(o.attributes.visState as string).aggs) if (a.params?.field) out.push(a.params.field);
  }
  if (o.type === 'search') {
    out.push(...(o.attributes.columns as string[]), ...(o.attributes.sort as string[][]).map((s) => s[0]));
  }
  return out;
}

describe('kibana saved objects', () => {
  const objects = parseSavedObjectsNdjson(fs.readFileSync(ndjsonFile, 'utf8'), ndjsonFile);
  const assets = buildElasticsearchAssets();
  const byId = new Map(objects.map((o) => [o.id, o]));

  it('the committed NDJSON is what the builder produces and every line is one saved object', () => {
    expect(fs.readFileSync(ndjsonFile, 'utf8')).toBe(renderSavedObjectsNdjson());
    const lines = fs.readFileSync(ndjsonFile, 'utf8').trim().split('\n');
    expect(lines.length).toBe(objects.length);
    expect(new Set(objects.map((o) => o.id)).size).toBe(objects.length);
  });

  it('has the four dashboards the issue asks for', () => {
    const dashboards = objects.filter((o) => o.type === 'dashboard').map((o) => o.attributes.title);
    expect(dashboards).toEqual(['E4: C2 overview', 'E4: key operations', 'E4: fleet messages', 'E4: toolkit backup, drill and resync jobs']);
  });

  it('index patterns are exactly the template patterns, with a date time field', () => {
    const patterns = objects.filter((o) => o.type === 'index-pattern');
    expect(patterns.map((p) => p.attributes.title).sort()).toEqual(Object.keys(assets.fieldsByIndexPattern).sort());
    for (const p of patterns) {
      expect(assets.fieldsByIndexPattern[p.attributes.title as string][p.attributes.timeFieldName as string], `${p.id} time field`).toBe('date');
    }
  });

  it('every reference resolves and every field used exists in the template of its index pattern', () => {
    const problems: string[] = [];
    for (const o of objects) {
      for (const r of o.references) {
        const target = byId.get(r.id);
        if (!target || target.type !== r.type) problems.push(`${o.id}: reference ${r.type}/${r.id} missing`);
      }
      if (o.type === 'dashboard') {
        const panels = JSON.parse(o.attributes.panelsJSON as string);
        for (const p of panels) if (!o.references.some((r) => r.name === p.panelRefName)) problems.push(`${o.id}: panel ${p.panelRefName} has no reference`);
        continue;
      }
      if (o.type === 'index-pattern') continue;
      const ref = o.references.find((r) => r.type === 'index-pattern');
      if (!ref) { problems.push(`${o.id}: no index pattern`); continue; }
      const fields = assets.fieldsByIndexPattern[byId.get(ref.id)?.attributes.title as string] ?? {};
      for (const f of fieldsUsed(o)) if (!fields[f]) problems.push(`${o.id}: field ${f} not in the template for ${byId.get(ref.id)?.attributes.title}`);
    }
    expect(problems).toEqual([]);
  });

  it('the cross-check catches a field the templates do not define', () => {
    const bad = structuredClone(byId.get('e4-vis-messages-per-topic')!);
    const vs = JSON.parse(bad.attributes.visState as string);
    vs.aggs[2].params.field = 'topic_name';
    bad.attributes.visState = JSON.stringify(vs);
    const fields = assets.fieldsByIndexPattern['messages-*'];
    expect(fieldsUsed(bad).filter((f) => !fields[f])).toEqual(['topic_name']);
  });

  it('aggregations run on aggregatable fields (keyword, numbers, booleans, dates), never on text or binary', () => {
    for (const o of objects.filter((x) => x.type === 'visualization')) {
      const pattern = byId.get(o.references[0].id)!.attributes.title as string;
      for (const a of JSON.parse(o.attributes.visState as string).aggs) {
        if (!a.params?.field) continue;
        expect(['text', 'binary'], `${o.id} ${a.params.field}`).not.toContain(assets.fieldsByIndexPattern[pattern][a.params.field]);
      }
    }
  });

  it('the fleet dashboard flags plaintext-looking payloads on managed topics', () => {
    const finding = byId.get('e4-vis-plaintext-by-topic')!;
    expect(JSON.parse((finding.attributes.kibanaSavedObjectMeta as any).searchSourceJSON).query.query).toBe('looksencrypted:false');
    const fleet = byId.get('e4-dashboard-fleet-messages')!;
    expect(fleet.references.map((r) => r.id)).toEqual(expect.arrayContaining(['e4-vis-plaintext-by-topic', 'e4-search-plaintext-messages', 'e4-vis-messages-encrypted-vs-plaintext']));
  });

  it('a custom message index name carries into the index pattern title', () => {
    const objs = buildSavedObjects({ messageIndex: 'fleet-msgs' });
    expect(objs.find((o) => o.id === 'e4-index-pattern-messages')!.attributes.title).toBe('fleet-msgs-*');
  });

  it('rejects a broken NDJSON line with its line number', () => {
    expect(() => parseSavedObjectsNdjson('{"id":"a","type":"search","attributes":{}}\n{not json\n', 'x.ndjson')).toThrow(/x.ndjson line 2/);
  });
});

describe('elasticsearch templates and ILM', () => {
  it('maps every field C2 writes into messages-*, under the `message` type C2 uses, and never rejects unknown fields', () => {
    const t = buildElasticsearchAssets().legacyTemplates['e4-messages'] as any;
    expect(t.index_patterns).toEqual(['messages-*']);
    expect(Object.keys(t.mappings)).toEqual(['message']);
    expect(t.mappings.message.dynamic).toBe(false);
    expect(Object.keys(t.mappings.message.properties).sort()).toEqual(
      ['timestamp', 'duplicate', 'qos', 'retained', 'topic', 'messageid', 'payload', 'looksencrypted', 'lookscompressed', 'isbase64', 'isutf8', 'isjson'].sort());
    expect(t.settings.index.lifecycle.name).toBe('e4-messages');
    expect(MESSAGE_PROPERTIES.timestamp).toEqual({ type: 'date' });
  });

  it('daily index families delete by age without rollover; the ops alias rolls over; retention is settable', () => {
    const a = buildElasticsearchAssets({ messagesRetentionDays: 14, logsRetentionDays: 60, opsLogsRetentionDays: 400, rolloverMaxSize: '5gb', rolloverMaxAge: '7d' });
    const phases = (n: string) => (a.ilmPolicies[n].policy as any).phases;
    expect(phases('e4-messages').delete.min_age).toBe('14d');
    expect(phases('e4-c2-logs').delete.min_age).toBe('60d');
    expect(JSON.stringify(phases('e4-messages'))).not.toContain('rollover');
    expect(JSON.stringify(phases('e4-c2-logs'))).not.toContain('rollover');
    expect(phases('e4ops-logs').hot.actions.rollover).toEqual({ max_size: '5gb', max_age: '7d' });
    expect(phases('e4ops-logs').delete.min_age).toBe('400d');
    expect((a.indexTemplates['e4ops-logs'] as any).template.settings.index.lifecycle.rollover_alias).toBe('e4ops-logs');
    expect((a.indexTemplates['e4-c2-logs'] as any).template.settings.index.lifecycle.rollover_alias).toBeUndefined();
  });

  it('the C2 log template matches what the rsyslog shipper writes (@timestamp, replica, c2.*)', () => {
    const f = buildElasticsearchAssets().fieldsByIndexPattern['e4-c2-logs-*'];
    for (const k of ['@timestamp', 'host', 'replica', 'c2.level', 'c2.msg', 'c2.func', 'c2.topic', 'c2.protocol', 'c2.error']) expect(f[k], k).toBeDefined();
  });

  it('names the bad setting and the fix', () => {
    expect(() => buildElasticsearchAssets({ messagesRetentionDays: 0 })).toThrow(/messagesRetentionDays: 0 .*>= 3/);
    expect(() => buildElasticsearchAssets({ messageIndex: 'Messages' })).toThrow(/messageIndex: "Messages"/);
    expect(() => buildElasticsearchAssets({ rolloverMaxSize: '10 GB' })).toThrow(/rolloverMaxSize.*10gb/);
  });
});
