import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import crypto from 'node:crypto';
import { startThrowawayMosquitto, type ThrowawayMosquitto } from '../../lib/servers/mosquitto.ts';
import { createCommandPublisher } from '../../lib/fleet/command-publisher.ts';
import { topicHash } from '../../lib/e4/ids.ts';
import type { FleetSnapshot } from '../../lib/fleet/fleet.ts';

const repo = path.resolve(import.meta.dirname, '..', '..');
const run = (args: string[], timeout = 60_000) =>
  spawnSync(process.execPath, ['--import', 'tsx', path.join(repo, 'scripts/fleet-sim.ts'), ...args], { cwd: repo, encoding: 'utf8', timeout });

describe('scripts/fleet-sim.ts', () => {
  let mq: ThrowawayMosquitto;
  let dir: string;
  beforeAll(async () => {
    mq = await startThrowawayMosquitto();
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'e4ops-fleet-cli-'));
  });
  afterAll(async () => {
    await mq?.stop();
    fs.rmSync(dir, { recursive: true, force: true });
  });

  it('refuses to run without --broker (exit 2, names the flag)', () => {
    const r = run(['--devices', '2']);
    expect(r.status).toBe(2);
    expect(r.stderr).toContain('--broker is required');
  });

  it('runs devices that pick up retained commands, and a snapshot restarts them with the same keys', async () => {
    const snap1 = path.join(dir, 'one.json');
    // First run: create 5 devices, write their keys.
    let r = run(['--broker', mq.url, '--devices', '5', '--prefix', 'cli-', '--duration', '1', '--snapshot-out', snap1]);
    expect(r.status, r.stderr).toBe(0);
    const first = JSON.parse(fs.readFileSync(snap1, 'utf8')) as FleetSnapshot;
    expect(first.devices.map((d) => d.name)).toEqual(['cli-0', 'cli-1', 'cli-2', 'cli-3', 'cli-4']);
    expect(fs.statSync(snap1).mode & 0o077).toBe(0);

    // While they are offline, "C2" sends each a SetTopicKey (retained, as C2 publishes).
    const pub = await createCommandPublisher({ brokerUrl: mq.url });
    const key = crypto.randomBytes(32);
    for (const d of first.devices) {
      await pub.send({ name: d.name, mode: 'symkey', keyForC2: Buffer.from(d.identityKey, 'hex') }, { type: 'SetTopicKey', key, topicHash: topicHash('cli/topic') });
    }
    await pub.close();

    // Second run from the snapshot: same identities, so the retained commands open.
    const snap2 = path.join(dir, 'two.json');
    r = run(['--broker', mq.url, '--keys-in', snap1, '--duration', '2', '--snapshot-out', snap2]);
    expect(r.status, r.stderr).toBe(0);
    const stopped = JSON.parse(r.stdout.trim().split('\n').pop()!);
    expect(stopped).toMatchObject({ event: 'stopped', devices: 5, commandsProcessed: 5, commandErrors: 0 });
    const second = JSON.parse(fs.readFileSync(snap2, 'utf8')) as FleetSnapshot;
    for (const d of second.devices) expect(d.topicKeys[topicHash('cli/topic').toString('hex')]?.key).toBe(key.toString('hex'));
  });
});
