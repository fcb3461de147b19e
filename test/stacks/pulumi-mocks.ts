// Pulumi mocks for the stack tests and the benchmark: record every resource the program
// registers, and fill the computed outputs the program reads (image ids, certificates, passwords).
import * as pulumi from '@pulumi/pulumi';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

export interface RecordedResource {
  type: string;
  name: string;
  inputs: Record<string, any>;
  provider?: string;
  /** URNs of the resources this one depends on (dependsOn and inputs taken from other resources). */
  dependencies: string[];
}

export interface MockRecorder {
  resources: RecordedResource[];
  byType(type: string): RecordedResource[];
  reset(): void;
}

export interface StackMockOptions {
  /**
   * For the realizer (test/harness/stack-realizer.ts): real RSA keys and certificates from openssl for
   * the tls resources, and RemoteImage.imageId = the reference itself, so what the program declares can
   * run on a Docker engine.
   */
  realize?: boolean;
}

export async function installStackMocks(stack: string, config: Record<string, string>, secretKeys: string[] = [], opts: StackMockOptions = {}): Promise<MockRecorder> {
  const resources: RecordedResource[] = [];
  // The mock callback does not see a registration's dependencies; the request does. registerResource
  // calls newResource synchronously, so the request's list is picked up by type and name.
  const dependencies = new Map<string, string[]>();
  await pulumi.runtime.setMocks({
    newResource(args: pulumi.runtime.MockResourceArgs) {
      const deps = dependencies.get(`${args.type}::${args.name}`) ?? [];
      resources.push({ type: args.type, name: args.name, inputs: args.inputs, provider: args.provider, dependencies: deps });
      const state: Record<string, unknown> = { ...args.inputs };
      if (opts.realize && realState(args.type, args.inputs, state)) return { id: `${args.name}-id`, state };
      switch (args.type) {
        case 'docker:index/remoteImage:RemoteImage':
          state.imageId = `sha256:mock-${args.name}`;
          state.repoDigest = `${args.inputs.name}@sha256:mock`;
          break;
        case 'docker:index/image:Image':
          state.repoDigest = '';
          state.baseImageName = args.inputs.imageName;
          break;
        case 'random:index/randomPassword:RandomPassword':
          state.result = `mock-generated-${args.name}-0123456789abcdef`;
          break;
        case 'random:index/randomBytes:RandomBytes':
          state.base64 = Buffer.alloc(32, 7).toString('base64');
          state.hex = Buffer.alloc(32, 7).toString('hex');
          break;
        case 'tls:index/privateKey:PrivateKey':
          state.privateKeyPem = `-----BEGIN RSA PRIVATE KEY-----\nmock-${args.name}\n-----END RSA PRIVATE KEY-----\n`;
          state.publicKeyPem = `-----BEGIN PUBLIC KEY-----\nmock-${args.name}\n-----END PUBLIC KEY-----\n`;
          break;
        case 'tls:index/selfSignedCert:SelfSignedCert':
        case 'tls:index/locallySignedCert:LocallySignedCert':
          state.certPem = `-----BEGIN CERTIFICATE-----\nmock-${args.name}\n-----END CERTIFICATE-----\n`;
          break;
        case 'tls:index/certRequest:CertRequest':
          state.certRequestPem = `-----BEGIN CERTIFICATE REQUEST-----\nmock-${args.name}\n-----END CERTIFICATE REQUEST-----\n`;
          break;
        case 'docker:index/network:Network':
        case 'docker:index/volume:Volume':
          state.name = args.inputs.name ?? args.name;
          break;
      }
      return { id: `${args.name}-id`, state };
    },
    call(args: pulumi.runtime.MockCallArgs) {
      return args.inputs;
    },
  }, 'e4ops', stack, true);
  const monitor = pulumi.runtime.getMonitor() as unknown as { registerResource(req: any, cb: unknown): unknown };
  const register = monitor.registerResource.bind(monitor);
  monitor.registerResource = (req, cb) => {
    dependencies.set(`${req.getType()}::${req.getName()}`, req.getDependenciesList());
    return register(req, cb);
  };
  pulumi.runtime.setAllConfig(config, secretKeys);
  return {
    resources,
    byType: (type) => resources.filter((r) => r.type === type),
    reset: () => { resources.length = 0; },
  };
}

/** Resolve an Output (or plain value) under mocks, with its secretness. */
export async function settle<T>(o: pulumi.Input<T>): Promise<{ value: T; secret: boolean }> {
  const out = pulumi.output(o) as pulumi.Output<T> & { isSecret: Promise<boolean>; isKnown: Promise<boolean> };
  // Values only a real deployment knows (a container's exit code) stay unknown under mocks; apply never runs for them.
  if (!(await out.isKnown)) return { value: undefined as T, secret: await out.isSecret };
  const value = await new Promise<T>((resolve) => out.apply((v) => { resolve(v as T); return v; }));
  return { value, secret: await out.isSecret };
}

/** Wait until registrations stop arriving (the program registers resources asynchronously). */
export async function quiesce(rec: MockRecorder, idleMs = 100, maxMs = 20_000): Promise<void> {
  const deadline = Date.now() + maxMs;
  let last = -1;
  while (Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, idleMs));
    if (rec.resources.length === last) return;
    last = rec.resources.length;
  }
}

// Secret values reach the mock monitor wrapped as { <sig>: <secret sig>, value }.
const SIG = '4dabf18193072939515e22adb298388d';
const SECRET_SIG = '1b47061264138c4ac30d75fd1eb44270';

export function isSecretWrapper(v: unknown): v is { value: unknown } {
  return typeof v === 'object' && v !== null && (v as Record<string, unknown>)[SIG] === SECRET_SIG;
}

/** True when the value is, or contains, a secret. */
export function containsSecret(v: unknown): boolean {
  if (isSecretWrapper(v)) return true;
  if (Array.isArray(v)) return v.some(containsSecret);
  if (typeof v === 'object' && v !== null) return Object.values(v).some(containsSecret);
  return false;
}

/** The plain value with every secret wrapper removed. */
export function reveal<T = any>(v: unknown): T {
  if (isSecretWrapper(v)) return reveal(v.value);
  if (Array.isArray(v)) return v.map(reveal) as T;
  if (typeof v === 'object' && v !== null) return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, reveal(x)])) as T;
  return v as T;
}

function openssl(args: string[], input?: string): string {
  const r = spawnSync('openssl', args, { input, encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`openssl ${args[0]} failed: ${r.stderr}`);
  return r.stdout;
}

function withTemp<T>(fn: (dir: string) => T): T {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'e4ops-mock-tls-'));
  try { return fn(dir); } finally { fs.rmSync(dir, { recursive: true, force: true }); }
}

/** Real outputs for the resources a realized stack needs; false when the type has none. */
function realState(type: string, rawInputs: Record<string, any>, state: Record<string, unknown>): boolean {
  const inputs = reveal<Record<string, any>>(rawInputs);
  switch (type) {
    case 'docker:index/remoteImage:RemoteImage':
      state.imageId = inputs.name;
      state.repoDigest = inputs.name;
      return true;
    case 'tls:index/privateKey:PrivateKey':
      state.privateKeyPem = openssl(['genpkey', '-algorithm', 'RSA', '-pkeyopt', `rsa_keygen_bits:${inputs.rsaBits ?? 2048}`]);
      state.publicKeyPem = openssl(['pkey', '-pubout'], state.privateKeyPem as string);
      return true;
    case 'tls:index/selfSignedCert:SelfSignedCert':
      state.certPem = withTemp((d) => {
        fs.writeFileSync(path.join(d, 'key.pem'), inputs.privateKeyPem);
        return openssl(['req', '-x509', '-new', '-key', path.join(d, 'key.pem'), '-sha256', '-days', String(Math.ceil((inputs.validityPeriodHours ?? 24) / 24)),
          '-subj', `/CN=${inputs.subject?.commonName ?? 'ca'}`, '-addext', 'basicConstraints=critical,CA:TRUE', '-addext', 'keyUsage=critical,keyCertSign,cRLSign']);
      });
      return true;
    case 'tls:index/certRequest:CertRequest':
      state.certRequestPem = withTemp((d) => {
        fs.writeFileSync(path.join(d, 'key.pem'), inputs.privateKeyPem);
        const san = [...(inputs.dnsNames ?? []).map((n: string) => `DNS:${n}`), ...(inputs.ipAddresses ?? []).map((n: string) => `IP:${n}`)].join(',');
        return openssl(['req', '-new', '-key', path.join(d, 'key.pem'), '-subj', `/CN=${inputs.subject?.commonName ?? 'leaf'}`, ...(san ? ['-addext', `subjectAltName=${san}`] : [])]);
      });
      return true;
    case 'tls:index/locallySignedCert:LocallySignedCert':
      state.certPem = withTemp((d) => {
        for (const [f, v] of [['csr.pem', inputs.certRequestPem], ['ca.pem', inputs.caCertPem], ['ca-key.pem', inputs.caPrivateKeyPem]]) fs.writeFileSync(path.join(d, f), v);
        fs.writeFileSync(path.join(d, 'ext'), 'basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth,clientAuth\n');
        return openssl(['x509', '-req', '-in', path.join(d, 'csr.pem'), '-CA', path.join(d, 'ca.pem'), '-CAkey', path.join(d, 'ca-key.pem'), '-CAcreateserial',
          '-CAserial', path.join(d, 'serial'), '-copy_extensions', 'copy', '-extfile', path.join(d, 'ext'), '-sha256', '-days', String(Math.ceil((inputs.validityPeriodHours ?? 24) / 24))]);
      });
      return true;
  }
  return false;
}
