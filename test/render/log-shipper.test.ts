import { describe, it, expect, afterAll } from 'vitest';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import http from 'node:http';
import { spawnSync } from 'node:child_process';
import { renderLogShipperConf } from '../../lib/render/log-shipper-rsyslog.ts';
import { startDaemon, type Daemon } from '../../lib/servers/daemon.ts';

// The log shipper is rsyslog (Debian). `rsyslogd -N1` must accept the rendered pipeline, and a
// real rsyslogd running it must turn C2's logrus JSON lines into Elasticsearch bulk documents in
// <prefix>-YYYY.MM.DD with the parsed fields. Elasticsearch itself is a recording HTTP double here
// (no Elasticsearch can be installed on the project's machines).
describe('rendered rsyslog log-shipper pipeline on the real rsyslogd', () => {
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'e4ops-shipper-'));
  let shipper: Daemon | undefined;
  let es: http.Server | undefined;
  afterAll(async () => {
    await shipper?.stop();
    if (es) { es.closeAllConnections(); await new Promise((r) => es!.close(r)); }
    fs.rmSync(tmp, { recursive: true, force: true });
  });

  const render = (esPort: number, logFile: string) => renderLogShipperConf({
    inputs: [{ file: logFile, replica: 'c2-0' }],
    elasticsearch: { servers: [`127.0.0.1:${esPort}`], indexPrefix: 'e4-logs', user: 'elastic', passwordEnv: 'ELASTIC_PASSWORD' },
    workDirectory: path.join(tmp, 'work'),
  });

  it('rsyslogd -N1 accepts the config; a syntax error is refused', () => {
    fs.mkdirSync(path.join(tmp, 'work'), { recursive: true });
    const file = path.join(tmp, 'check.conf');
    fs.writeFileSync(file, render(9200, path.join(tmp, 'x.log')));
    const ok = spawnSync('rsyslogd', ['-N1', '-f', file], { encoding: 'utf8', env: { ...process.env, ELASTIC_PASSWORD: 'pw' } });
    expect(ok.status, ok.stdout + ok.stderr).toBe(0);
    fs.writeFileSync(file, render(9200, path.join(tmp, 'x.log')).replace('call e4_c2_logs', 'call e4_c2_logs ('));
    const bad = spawnSync('rsyslogd', ['-N1', '-f', file], { encoding: 'utf8' });
    expect(bad.status).not.toBe(0);
  });

  it('ships parsed C2 JSON log lines (and the plain start-up banner) to Elasticsearch with basic auth', async () => {
    const bulks: Array<{ auth?: string; lines: string[] }> = [];
    es = http.createServer((req, res) => {
      let body = '';
      req.on('data', (d) => (body += d));
      req.on('end', () => {
        res.setHeader('content-type', 'application/json');
        if (req.url?.startsWith('/_bulk')) {
          const lines = body.split('\n').filter(Boolean);
          bulks.push({ auth: req.headers.authorization, lines });
          res.end(JSON.stringify({ took: 1, errors: false, items: lines.filter((_, i) => i % 2 === 0).map(() => ({ index: { status: 201 } })) }));
        } else res.end('{"version":{"number":"7.17.25"}}');
      });
    });
    await new Promise<void>((r) => es!.listen(0, '127.0.0.1', r));
    const esPort = (es.address() as { port: number }).port;
    const logFile = path.join(tmp, 'e4_c2.log');
    fs.writeFileSync(logFile, '');
    const conf = path.join(tmp, 'rsyslog.conf');
    fs.writeFileSync(conf, render(esPort, logFile));
    shipper = startDaemon('rsyslogd', ['-n', '-f', conf, '-i', path.join(tmp, 'rsyslogd.pid')], path.join(tmp, 'rsyslogd.log'),
      { env: { ...process.env, ELASTIC_PASSWORD: 's3cret-pw' } });
    await new Promise((r) => setTimeout(r, 1000)); // imfile starts watching
    fs.appendFileSync(logFile, [
      'E4 C2 server starting (banner in plain text)',
      JSON.stringify({ application: 'c2', level: 'error', msg: 'failed to publish command', protocol: 'mqtt', topic: 'e4/00ff', time: '2026-01-02T03:04:05Z' }),
      JSON.stringify({ application: 'c2', level: 'info', msg: 'client created', protocol: 'grpc', id: 'abcd', time: '2026-01-02T03:04:06Z' }),
    ].join('\n') + '\n');
    const deadline = Date.now() + 20_000;
    while (bulks.flatMap((b) => b.lines).length < 6 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 200));
    const lines = bulks.flatMap((b) => b.lines);
    expect(lines.length, shipper.tail()).toBeGreaterThanOrEqual(6);
    const actions = lines.filter((_, i) => i % 2 === 0).map((l) => JSON.parse(l));
    const docs = lines.filter((_, i) => i % 2 === 1).map((l) => JSON.parse(l));
    expect(actions[0].index._index).toMatch(/^e4-logs-\d{4}\.\d{2}\.\d{2}$/);
    const err = docs.find((d) => d.c2?.msg === 'failed to publish command');
    expect(err).toMatchObject({ replica: 'c2-0', application: 'c2', c2: { level: 'error', protocol: 'mqtt', topic: 'e4/00ff' } });
    expect(docs.find((d) => d.c2?.protocol === 'grpc')?.c2.id).toBe('abcd');
    expect(docs.find((d) => /banner/.test(d.c2?.msg ?? ''))?.c2.level).toBe('info');
    expect(bulks[0].auth).toBe('Basic ' + Buffer.from('elastic:s3cret-pw').toString('base64'));
    // The password is read from the environment: it is not in the rendered file.
    expect(fs.readFileSync(conf, 'utf8')).not.toContain('s3cret-pw');
  });
});
