// What the provisioning station flashes onto a device (DIR/<name>.json, 0600, or DIR/<name>.json.age
// when a bundle recipient is given) and the label stuck on its case (DIR/<name>.label.png/.svg: a QR
// code of the device's name and id, never its key: labels are seen by everyone who handles the device).
import fs from 'node:fs';
import path from 'node:path';
import QRCode from 'qrcode';
import { ageEncrypt } from '../lib/age.ts';
import { clientIdFromName, commandTopicForClient } from '../lib/e4/ids.ts';

export interface DeviceBundle {
  name: string;
  /** Client id, hex (SHA3-256(name)[0:16]). */
  id: string;
  /** Identity key, hex (symkey: 32 bytes). */
  idKey: string;
  /** Where C2 sends this device its commands. */
  commandTopic: string;
  topics: string[];
  /** MQTT broker the device connects to. */
  broker: string;
  /** MQTT client id the device should use (presence is matched on its command-topic subscription). */
  mqttClientId: string;
  cryptoMode: 'symkey';
}

export function buildDeviceBundle(name: string, idKey: Uint8Array, topics: string[], broker: string): DeviceBundle {
  const id = clientIdFromName(name);
  return {
    name, id: id.toString('hex'), idKey: Buffer.from(idKey).toString('hex'), commandTopic: commandTopicForClient(id),
    topics: [...topics], broker, mqttClientId: name, cryptoMode: 'symkey',
  };
}

/** What the QR code carries: name and id only. */
export function labelText(bundle: Pick<DeviceBundle, 'name' | 'id'>): string {
  return JSON.stringify({ name: bundle.name, id: bundle.id });
}

export function bundlePaths(dir: string, name: string, encrypted: boolean) {
  return {
    bundle: path.join(dir, `${name}.json${encrypted ? '.age' : ''}`),
    labelPng: path.join(dir, `${name}.label.png`),
    labelSvg: path.join(dir, `${name}.label.svg`),
  };
}

/** Write a file readable by its owner only, replacing any earlier one atomically. */
export function writePrivateFile(file: string, data: string | Uint8Array): void {
  const tmp = `${file}.tmp-${process.pid}`;
  fs.writeFileSync(tmp, data, { mode: 0o600 });
  fs.chmodSync(tmp, 0o600); // a umask cannot widen it, but an existing tmp could have other bits
  fs.renameSync(tmp, file);
}

/** Bundle (plain 0600 JSON, or age-encrypted to `recipients`) and the two label files. */
export async function writeDeviceBundle(dir: string, bundle: DeviceBundle, recipients: readonly string[] = []): Promise<ReturnType<typeof bundlePaths>> {
  const paths = bundlePaths(dir, bundle.name, recipients.length > 0);
  const json = JSON.stringify(bundle, null, 2) + '\n';
  writePrivateFile(paths.bundle, recipients.length ? await ageEncrypt(Buffer.from(json), recipients) : json);
  const text = labelText(bundle);
  const [png, svg] = await Promise.all([
    QRCode.toBuffer(text, { type: 'png', errorCorrectionLevel: 'M', margin: 2, scale: 4 }),
    QRCode.toString(text, { type: 'svg', errorCorrectionLevel: 'M', margin: 2 }),
  ]);
  fs.writeFileSync(paths.labelPng, png);
  fs.writeFileSync(paths.labelSvg, svg);
  return paths;
}

/** Read a plain bundle back (tests and the provisioning station). */
export function readDeviceBundle(file: string): DeviceBundle {
  return JSON.parse(fs.readFileSync(file, 'utf8')) as DeviceBundle;
}
