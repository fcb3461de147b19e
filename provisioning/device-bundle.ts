// What the provisioning station flashes onto a device (DIR/<name>.json, 0600, or DIR/<name>.json.age
// when a bundle recipient is given) and the label stuck on its case (DIR/<name>.label.png/.svg: a QR
// code of the device's name and id, never its key: labels are seen by everyone who handles the device).
import fs from 'node:fs';
import path from 'node:path';
import zlib from 'node:zlib';
import encodeQR from 'qr';
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

/** Write a file readable by its owner only, replacing any earlier one atomically (async: off the event loop). */
export async function writePrivateFile(file: string, data: string | Uint8Array): Promise<void> {
  const tmp = `${file}.tmp-${process.pid}`;
  await fs.promises.writeFile(tmp, data, { mode: 0o600 });
  await fs.promises.chmod(tmp, 0o600); // a umask cannot widen it, but an existing tmp could have other bits
  await fs.promises.rename(tmp, file);
}

/**
 * The same, synchronously, with one call less: the temporary file is created exclusively with mode 0600
 * (a umask can only narrow it), so it needs no chmod; one left by a killed run is removed first.
 */
export function writePrivateFileSync(file: string, data: string | Uint8Array): void {
  const tmp = `${file}.tmp-${process.pid}`;
  let fd: number;
  try {
    fd = fs.openSync(tmp, 'wx', 0o600);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'EEXIST') throw e;
    fs.rmSync(tmp, { force: true });
    fd = fs.openSync(tmp, 'wx', 0o600);
  }
  try { fs.writeFileSync(fd, data); } finally { fs.closeSync(fd); }
  fs.renameSync(tmp, file);
}

/** Bundle (plain 0600 JSON, or age-encrypted to `recipients`) and the two label files. */
export async function writeDeviceBundle(dir: string, bundle: DeviceBundle, recipients: readonly string[] = []): Promise<ReturnType<typeof bundlePaths>> {
  const paths = bundlePaths(dir, bundle.name, recipients.length > 0);
  const json = JSON.stringify(bundle, null, 2) + '\n';
  const sealed = recipients.length ? await ageEncrypt(Buffer.from(json), recipients) : json;
  const label = renderLabel(labelText(bundle));
  const [png, svg] = [label.png, label.svg];
  await Promise.all([writePrivateFile(paths.bundle, sealed), fs.promises.writeFile(paths.labelPng, png), fs.promises.writeFile(paths.labelSvg, svg)]);
  return paths;
}

const LABEL_SCALE = 4;
// A label's pixel rows repeat every stride (< 40 bytes): a 512-byte window finds every match, and zlib's
// smallest state is set up ~0.02 ms faster per label than its default 256 KB (same output size, ±2 %).
const DEFLATE_SMALL: zlib.ZlibOptions = { windowBits: 9, memLevel: 1 };
const LABEL_MARGIN = 2;

function pngChunk(type: string, data: Buffer): Buffer {
  const len = Buffer.alloc(4);
  len.writeUInt32BE(data.length);
  const body = Buffer.concat([Buffer.from(type, 'ascii'), data]);
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(zlib.crc32(body));
  return Buffer.concat([len, body, crc]);
}

/**
 * The QR code drawn as a 1-bit PNG and an SVG path, both from the one module matrix, a few hundred bytes
 * each. The matrix comes from the `qr` package (error correction M, byte mode, mask chosen by the
 * standard's penalty score): it scores the 8 masks on packed bit rows, ~0.04 ms a label against ~0.3-0.5 ms
 * for the `qrcode` package used before (docs/develop/benchmarks.md), for thousands of labels a run.
 */
export function renderLabel(text: string): { png: Buffer; svg: string } {
  // The margin is drawn here, so ask for the smallest border and cut it off.
  const rows = encodeQR(text, 'raw', { ecc: 'medium', encoding: 'byte', border: 1 });
  const size = rows.length - 2;
  const dark = (x: number, y: number) => rows[y + 1][x + 1];
  const n = size + 2 * LABEL_MARGIN;
  const px = n * LABEL_SCALE;
  const stride = Math.ceil(px / 8) + 1; // filter byte + 1 bit per pixel
  const raw = Buffer.alloc(stride * px, 0xff);
  // One pixel row per module row (filter byte 0: none), then copied LABEL_SCALE - 1 times below it.
  for (let my = 0; my < n; my++) {
    const row = my * LABEL_SCALE * stride;
    raw[row] = 0;
    const qy = my - LABEL_MARGIN;
    if (qy >= 0 && qy < size) {
      for (let qx = 0; qx < size; qx++) {
        if (!dark(qx, qy)) continue;
        for (let x = (qx + LABEL_MARGIN) * LABEL_SCALE, end = x + LABEL_SCALE; x < end; x++) raw[row + 1 + (x >> 3)] &= ~(0x80 >> (x & 7));
      }
    }
    for (let k = 1; k < LABEL_SCALE; k++) raw.copy(raw, row + k * stride, row, row + stride);
  }
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(px, 0);
  ihdr.writeUInt32BE(px, 4);
  ihdr.set([1, 0, 0, 0, 0], 8); // bit depth 1, greyscale, deflate, no filter, no interlace
  const png = Buffer.concat([Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]), pngChunk('IHDR', ihdr), pngChunk('IDAT', zlib.deflateSync(raw, DEFLATE_SMALL)), pngChunk('IEND', Buffer.alloc(0))]);
  // One rectangle per horizontal run of dark modules (a third of the path commands of one per module).
  let d = '';
  for (let y = 0; y < size; y++) {
    for (let x = 0; x < size; x++) {
      if (!dark(x, y)) continue;
      const from = x;
      while (x + 1 < size && dark(x + 1, y)) x++;
      const run = x + 1 - from;
      d += `M${from + LABEL_MARGIN} ${y + LABEL_MARGIN}h${run}v1h-${run}z`;
    }
  }
  const svg = `<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 ${n} ${n}" shape-rendering="crispEdges"><rect width="${n}" height="${n}" fill="#fff"/><path fill="#000" d="${d}"/></svg>\n`;
  return { png, svg };
}

/** Read a plain bundle back (tests and the provisioning station). */
export function readDeviceBundle(file: string): DeviceBundle {
  return JSON.parse(fs.readFileSync(file, 'utf8')) as DeviceBundle;
}
