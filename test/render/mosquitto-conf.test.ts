import { describe, it, expect, afterAll } from 'vitest';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import mqtt from 'mqtt';
import { renderMosquittoConf, renderMosquittoPasswordFile } from '../../lib/render/mosquitto-conf.ts';
import { startThrowawayMosquitto, type ThrowawayMosquitto } from '../../lib/servers/mosquitto.ts';
import { chownTo } from '../../lib/servers/daemon.ts';

// The real mosquitto 2.0 must start on the rendered file, enforce the rendered password file, and
// keep C2's retained QoS 2 commands across a restart (persistence).
describe('rendered mosquitto.conf on the real mosquitto', () => {
  const brokers: ThrowawayMosquitto[] = [];
  const dirs: string[] = [];
  afterAll(async () => {
    for (const b of brokers) await b.stop();
    for (const d of dirs) fs.rmSync(d, { recursive: true, force: true });
  });

  /** A state directory with the rendered password file, owned by the mosquitto user. */
  function stateDir(users: Array<{ username: string; password: string }>): string {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'e4ops-mosq-state-'));
    dirs.push(dir);
    fs.mkdirSync(path.join(dir, 'data'));
    fs.writeFileSync(path.join(dir, 'passwd'), renderMosquittoPasswordFile(users), { mode: 0o600 });
    chownTo(dir, 'mosquitto');
    return dir;
  }
  const conf = (dir: string, allowAnonymous: boolean) => renderMosquittoConf({
    listeners: [{ port: '{{PORT}}', address: '{{HOST}}' }],
    persistenceDir: path.join(dir, 'data'),
    allowAnonymous,
    passwordFile: path.join(dir, 'passwd'),
    autosaveIntervalSeconds: 1,
  });
  const c2User = { username: 'c2', password: 'correct horse battery' };

  it('accepts C2 with its password, refuses a wrong one and anonymous clients', async () => {
    const b = await startThrowawayMosquitto({ confText: conf(stateDir([c2User]), false) });
    brokers.push(b);
    const ok = await mqtt.connectAsync(b.url, { clientId: 'e4c2-0', ...c2User, reconnectPeriod: 0 });
    expect(ok.connected).toBe(true);
    await ok.endAsync();
    await expect(mqtt.connectAsync(b.url, { clientId: 'x', username: 'c2', password: 'wrong', reconnectPeriod: 0 })).rejects.toThrow(/authori|password/i);
    await expect(mqtt.connectAsync(b.url, { clientId: 'anon', reconnectPeriod: 0 })).rejects.toThrow(/authori/i);
  });

  it('keeps a retained QoS 2 command across a broker restart', async () => {
    const dir = stateDir([c2User]);
    const first = await startThrowawayMosquitto({ confText: conf(dir, true) });
    brokers.push(first);
    const pub = await mqtt.connectAsync(first.url, { clientId: 'e4c2-0', ...c2User });
    await pub.publishAsync('e4/00112233445566778899aabbccddeeff', Buffer.from([1, 2, 3]), { qos: 2, retain: true });
    await pub.endAsync();
    await first.stop(); // SIGTERM: mosquitto saves its persistence file on the way out
    expect(fs.existsSync(path.join(dir, 'data', 'mosquitto.db'))).toBe(true);

    const second = await startThrowawayMosquitto({ confText: conf(dir, true) });
    brokers.push(second);
    const sub = await mqtt.connectAsync(second.url, { clientId: 'device-1' });
    const got = new Promise<Buffer>((resolve) => sub.on('message', (_t, m) => resolve(m)));
    await sub.subscribeAsync('e4/00112233445566778899aabbccddeeff', { qos: 2 });
    expect([...(await got)]).toEqual([1, 2, 3]);
    await sub.endAsync();
  });

  it('refuses to render a closed broker nobody can log in to', () => {
    expect(() => renderMosquittoConf({ listeners: [{ port: 1883 }], persistenceDir: '/d', allowAnonymous: false })).toThrow(/passwordFile/);
  });
});
