import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { chownTo, startDaemon, type Daemon } from './daemon.ts';
import { freeLoopbackPort, waitForTcp } from '../ports.ts';

export interface ThrowawayMosquittoOptions {
  host?: string;
  port?: number;
  /**
   * Full mosquitto.conf text to run (e.g. a rendered file under test). `{{PORT}}`, `{{HOST}}` and
   * `{{DIR}}` are replaced by the chosen port, address and a scratch directory owned by mosquitto.
   * Default: one anonymous listener with persistence in the scratch directory.
   */
  confText?: string;
}

export interface ThrowawayMosquitto {
  host: string;
  port: number;
  url: string;
  dir: string;
  confFile: string;
  daemon: Daemon;
  stop(): Promise<void>;
}

export function defaultTestMosquittoConf(): string {
  return [
    'listener {{PORT}} {{HOST}}',
    'allow_anonymous true',
    'persistence true',
    'persistence_location {{DIR}}/',
    'max_queued_messages 100000',
    'log_dest stdout',
    '',
  ].join('\n');
}

/** Start Mosquitto on a random loopback port in a scratch directory. */
export async function startThrowawayMosquitto(opts: ThrowawayMosquittoOptions = {}): Promise<ThrowawayMosquitto> {
  const host = opts.host ?? '127.0.0.1';
  const port = opts.port ?? (await freeLoopbackPort(host));
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'e4ops-mqtt-'));
  const conf = (opts.confText ?? defaultTestMosquittoConf())
    .replaceAll('{{PORT}}', String(port)).replaceAll('{{HOST}}', host).replaceAll('{{DIR}}', dir);
  const confFile = path.join(dir, 'mosquitto.conf');
  fs.writeFileSync(confFile, conf);
  chownTo(dir, 'mosquitto'); // as root, mosquitto drops to user mosquitto and must write here
  const daemon = startDaemon('mosquitto', ['-c', confFile], path.join(dir, 'mosquitto.log'));
  try {
    await Promise.race([
      waitForTcp(host, port, 15_000),
      daemon.exited.then(() => { throw new Error('exited'); }),
    ]);
  } catch {
    await daemon.stop('SIGKILL');
    throw new Error(`Mosquitto did not start on ${host}:${port} with ${confFile}:\n${daemon.tail()}`);
  }
  let stopped = false;
  return {
    host, port, url: `mqtt://${host}:${port}`, dir, confFile, daemon,
    async stop() {
      if (stopped) return;
      stopped = true;
      await daemon.stop('SIGTERM');
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}
