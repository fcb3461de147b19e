// Checks on the configuration files a backup set restores: every YAML/JSON file parses, and every
// certificate (PEM) is currently valid and not about to expire.
import fs from 'node:fs';
import path from 'node:path';
import { X509Certificate } from 'node:crypto';
import YAML from 'yaml';
import type { DrillCheck } from './restored-database-checks.ts';

function* walk(dir: string): Generator<string> {
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) yield* walk(p);
    else if (e.isFile()) yield p;
  }
}

const PEM_CERT = /-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g;

export interface ConfigCheckOptions {
  now?: Date;
  /** Warn-level threshold: certificates expiring within this many days fail the check (default 0 = only expired). */
  minDaysLeft?: number;
}

export function checkRestoredConfigs(dir: string, opts: ConfigCheckOptions = {}): { checks: DrillCheck[]; certificates: { file: string; subject: string; notAfter: string; daysLeft: number }[] } {
  const now = opts.now ?? new Date();
  const minDays = opts.minDaysLeft ?? 0;
  const parseErrors: string[] = [];
  let parsed = 0;
  const certs: { file: string; subject: string; notAfter: string; daysLeft: number }[] = [];
  const certErrors: string[] = [];
  for (const file of walk(dir)) {
    const rel = path.relative(dir, file);
    const ext = path.extname(file).toLowerCase();
    if (ext === '.yaml' || ext === '.yml' || ext === '.json') {
      const text = fs.readFileSync(file, 'utf8');
      try {
        if (ext === '.json') JSON.parse(text);
        else {
          const docs = YAML.parseAllDocuments(text);
          const bad = docs.find((d) => d.errors.length);
          if (bad) throw new Error(bad.errors[0].message);
        }
        parsed++;
      } catch (e) {
        parseErrors.push(`${rel}: ${(e as Error).message.split('\n')[0]}`);
      }
      continue;
    }
    let text: string;
    try { text = fs.readFileSync(file, 'latin1'); } catch { continue; }
    for (const pem of text.match(PEM_CERT) ?? []) {
      try {
        const c = new X509Certificate(pem);
        const notAfter = new Date(c.validTo);
        const daysLeft = Math.floor((notAfter.getTime() - now.getTime()) / 86_400_000);
        certs.push({ file: rel, subject: c.subject.replace(/\n/g, ', '), notAfter: notAfter.toISOString(), daysLeft });
        if (notAfter <= now) certErrors.push(`${rel} (${c.subject.split('\n').join(', ')}) expired on ${notAfter.toISOString()}`);
        else if (new Date(c.validFrom) > now) certErrors.push(`${rel} is not valid before ${new Date(c.validFrom).toISOString()}`);
        else if (daysLeft < minDays) certErrors.push(`${rel} expires in ${daysLeft} days (${notAfter.toISOString()})`);
      } catch (e) {
        certErrors.push(`${rel}: unreadable certificate (${(e as Error).message})`);
      }
    }
  }
  const checks: DrillCheck[] = [
    parseErrors.length
      ? { name: 'configs-parse', ok: false, detail: `${parseErrors.length} restored config file(s) do not parse: ${parseErrors.join('; ')}` }
      : { name: 'configs-parse', ok: parsed > 0, detail: parsed > 0 ? `${parsed} YAML/JSON config file(s) parse` : `no YAML/JSON config file found in the restored configs (${dir})` },
    certErrors.length
      ? { name: 'certificates-valid', ok: false, detail: certErrors.join('; ') }
      : { name: 'certificates-valid', ok: true, detail: certs.length ? `${certs.length} certificate(s) valid; the first to expire: ${[...certs].sort((a, b) => a.daysLeft - b.daysLeft)[0].file} in ${Math.min(...certs.map((c) => c.daysLeft))} days` : 'no certificate among the restored configs' },
  ];
  return { checks, certificates: certs };
}
