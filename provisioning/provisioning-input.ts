// What an operator hands to `provision new` and `provision import`: device names (a count and a prefix,
// or a names file), topics, and the factory's CSV of keys. Everything is checked before anything is
// registered: a bad line, a duplicate name or a malformed key refuses the whole batch, naming the line.
import fs from 'node:fs';
import { KEY_LEN } from '../lib/e4/ids.ts';

/** Bad operator input (exit 2): nothing was registered. */
export class ProvisionInputError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'ProvisionInputError';
  }
}

/** C2 stores names up to 256 characters; a name ends up in a URL path and a file name. */
const NAME = /^[A-Za-z0-9][A-Za-z0-9._:-]{0,255}$/;

export function checkDeviceName(name: string, where: string): string {
  if (!NAME.test(name)) {
    throw new ProvisionInputError(`${where}: device name "${name.slice(0, 60)}" is not allowed: use 1-256 letters, digits, '.', '_', ':' or '-', starting with a letter or digit`);
  }
  return name;
}

function refuseDuplicates(entries: { name: string; where: string }[]): void {
  const first = new Map<string, string>();
  for (const e of entries) {
    const seen = first.get(e.name);
    if (seen) throw new ProvisionInputError(`${e.where}: device name "${e.name}" is listed twice (first at ${seen}); each device needs its own name`);
    first.set(e.name, e.where);
  }
}

/** `--count N --name-prefix P` → P0001 ... (zero-padded to the width of N, at least 4). */
export function namesFromCount(count: number, prefix: string): string[] {
  if (!Number.isInteger(count) || count < 1) throw new ProvisionInputError(`--count must be a whole number >= 1 (got ${count})`);
  const width = Math.max(4, String(count).length);
  const names = Array.from({ length: count }, (_, i) => `${prefix}${String(i + 1).padStart(width, '0')}`);
  names.forEach((n) => checkDeviceName(n, '--name-prefix'));
  return names;
}

/** A names file: one device name per line; blank lines and # comments ignored. */
export function namesFromFile(file: string): string[] {
  let text: string;
  try { text = fs.readFileSync(file, 'utf8'); } catch (e) {
    throw new ProvisionInputError(`--names-file ${file}: ${(e as Error).message}`);
  }
  const entries: { name: string; where: string }[] = [];
  text.split('\n').forEach((raw, i) => {
    const line = raw.replace(/#.*$/, '').trim();
    if (!line) return;
    entries.push({ name: checkDeviceName(line, `${file} line ${i + 1}`), where: `${file} line ${i + 1}` });
  });
  if (!entries.length) throw new ProvisionInputError(`--names-file ${file} holds no names (one device name per line)`);
  refuseDuplicates(entries);
  return entries.map((e) => e.name);
}

/** Topics as C2 accepts them: not empty, no MQTT wildcards, not under $SYS, not C2's own e4/ command space. */
export function checkTopics(topics: string[], where = '--topics'): string[] {
  const out = topics.map((t) => t.trim()).filter((t) => t.length);
  if (!out.length) throw new ProvisionInputError(`${where}: give at least one topic (--topics T1,T2)`);
  const seen = new Set<string>();
  for (const t of out) {
    if (/[+#]/.test(t) || t.startsWith('$SYS') || t.startsWith('e4/')) {
      throw new ProvisionInputError(`${where}: topic "${t}" is not allowed (no + or # wildcards, nothing under $SYS or e4/)`);
    }
    if (seen.has(t)) throw new ProvisionInputError(`${where}: topic "${t}" is listed twice`);
    seen.add(t);
  }
  return out;
}

export interface FactoryKeyRow {
  /** The name the device is registered under in C2 (the serial, when the CSV has a serial column). */
  name: string;
  serial?: string;
  key: Buffer;
  /** "FILE line N", for messages. */
  where: string;
}

/**
 * The factory's CSV: a header naming `name` or `serial` and `key` (in any order; other columns refused),
 * then one device per line, key as 64 hex characters. No quoting: names and hex keys never need it.
 */
export function parseFactoryKeysCsv(text: string, file: string): FactoryKeyRow[] {
  const lines = text.split(/\r?\n/);
  const headerAt = lines.findIndex((l) => l.trim() && !l.trim().startsWith('#'));
  if (headerAt < 0) throw new ProvisionInputError(`${file} is empty: the first line must be a header such as "name,key" or "serial,key"`);
  const header = lines[headerAt].split(',').map((h) => h.trim().toLowerCase());
  const idCol = header.includes('name') ? 'name' : header.includes('serial') ? 'serial' : undefined;
  const unknown = header.filter((h) => !['name', 'serial', 'key'].includes(h));
  if (!idCol || !header.includes('key') || unknown.length || header.length !== new Set(header).size) {
    throw new ProvisionInputError(`${file} line ${headerAt + 1}: header "${lines[headerAt].trim()}" must name the columns name (or serial) and key, e.g. "serial,key"`);
  }
  const rows: FactoryKeyRow[] = [];
  for (let i = headerAt + 1; i < lines.length; i++) {
    const line = lines[i].trim();
    if (!line || line.startsWith('#')) continue;
    const where = `${file} line ${i + 1}`;
    const cells = line.split(',').map((c) => c.trim());
    if (cells.length !== header.length) {
      throw new ProvisionInputError(`${where}: ${cells.length} column(s), the header has ${header.length} (${header.join(',')})`);
    }
    const cell = (col: string) => cells[header.indexOf(col)];
    const name = checkDeviceName(header.includes('name') ? cell('name') : cell('serial'), where);
    const hex = cell('key');
    if (!/^[0-9a-fA-F]*$/.test(hex)) throw new ProvisionInputError(`${where}: key of "${name}" is not hexadecimal`);
    if (hex.length !== KEY_LEN * 2) {
      throw new ProvisionInputError(`${where}: key of "${name}" has ${hex.length / 2} bytes (${hex.length} hex characters); an E4 identity key has ${KEY_LEN} bytes (${KEY_LEN * 2} hex characters)`);
    }
    const key = Buffer.from(hex, 'hex');
    if (key.every((b) => b === 0)) throw new ProvisionInputError(`${where}: key of "${name}" is all zeros`);
    rows.push({ name, ...(header.includes('serial') ? { serial: cell('serial') } : {}), key, where });
  }
  if (!rows.length) throw new ProvisionInputError(`${file} has a header but no devices`);
  refuseDuplicates(rows.map((r) => ({ name: r.name, where: r.where })));
  const keys = new Map<string, string>();
  for (const r of rows) {
    const k = r.key.toString('hex');
    if (keys.has(k)) throw new ProvisionInputError(`${r.where}: "${r.name}" has the same key as ${keys.get(k)}; every device needs its own key`);
    keys.set(k, r.where);
  }
  return rows;
}

export function loadFactoryKeysCsv(file: string): FactoryKeyRow[] {
  let text: string;
  try { text = fs.readFileSync(file, 'utf8'); } catch (e) {
    throw new ProvisionInputError(`--factory-keys ${file}: ${(e as Error).message}`);
  }
  return parseFactoryKeysCsv(text, file);
}
