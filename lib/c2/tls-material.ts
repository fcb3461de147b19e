import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';

// Certificates for C2 (gRPC 5555 and the HTTPS gateway 8888) made with the Debian `openssl` CLI.
// C2's HTTPS gateway only offers RSA cipher suites on TLS 1.2, so every key here is RSA. The gateway
// dials C2's own gRPC port trusting grpc-cert as a root, so that certificate must name, as a SAN, the
// host of http-grpc-host-port (Go ignores the CN).

export interface CertificateAuthority {
  certFile: string;
  keyFile: string;
  /** PEM text of the CA certificate, for TLS clients (`ca` option). */
  certPem: string;
}

export interface LeafCertificate {
  certFile: string;
  keyFile: string;
  certPem: string;
  keyPem: string;
}

export interface CaOptions {
  dir: string;
  commonName?: string;
  days?: number;
  bits?: number;
}

export interface LeafOptions {
  dir: string;
  /** File name stem: writes <name>-cert.pem and <name>-key.pem. */
  name: string;
  commonName?: string;
  dnsNames?: string[];
  ipAddresses?: string[];
  days?: number;
  bits?: number;
}

function openssl(args: string[], what: string, cwd?: string): string {
  const r = spawnSync('openssl', args, { encoding: 'utf8', cwd });
  if (r.error && (r.error as NodeJS.ErrnoException).code === 'ENOENT') {
    throw new Error('openssl is not installed: apt-get install openssl (scripts/install-deps.sh)');
  }
  if (r.status !== 0) throw new Error(`${what} failed (openssl ${args.join(' ')}):\n${r.stderr || r.stdout}`);
  return r.stdout;
}

function newRsaKey(file: string, bits: number): void {
  openssl(['genpkey', '-algorithm', 'RSA', '-pkeyopt', `rsa_keygen_bits:${bits}`, '-out', file], `RSA key ${file}`);
  fs.chmodSync(file, 0o600);
}

/** A self-signed RSA certificate authority written to dir/ca-cert.pem and dir/ca-key.pem. */
export function createCertificateAuthority(opts: CaOptions): CertificateAuthority {
  fs.mkdirSync(opts.dir, { recursive: true });
  const keyFile = path.join(opts.dir, 'ca-key.pem');
  const certFile = path.join(opts.dir, 'ca-cert.pem');
  newRsaKey(keyFile, opts.bits ?? 2048);
  openssl([
    'req', '-x509', '-new', '-key', keyFile, '-sha256', '-days', String(opts.days ?? 30),
    '-subj', `/CN=${opts.commonName ?? 'e4ops test CA'}`,
    '-addext', 'basicConstraints=critical,CA:TRUE',
    '-addext', 'keyUsage=critical,keyCertSign,cRLSign',
    '-out', certFile,
  ], 'CA certificate');
  return { certFile, keyFile, certPem: fs.readFileSync(certFile, 'utf8') };
}

/** An RSA server+client certificate signed by ca, with the given DNS and IP SANs. */
export function issueLeafCertificate(ca: CertificateAuthority, opts: LeafOptions): LeafCertificate {
  const dns = opts.dnsNames ?? ['localhost'];
  const ips = opts.ipAddresses ?? ['127.0.0.1'];
  if (!dns.length && !ips.length) throw new Error(`certificate ${opts.name}: give at least one DNS name or IP address (SAN)`);
  fs.mkdirSync(opts.dir, { recursive: true });
  const keyFile = path.join(opts.dir, `${opts.name}-key.pem`);
  const certFile = path.join(opts.dir, `${opts.name}-cert.pem`);
  const csrFile = path.join(opts.dir, `${opts.name}.csr`);
  const extFile = path.join(opts.dir, `${opts.name}.ext`);
  newRsaKey(keyFile, opts.bits ?? 2048);
  openssl(['req', '-new', '-key', keyFile, '-subj', `/CN=${opts.commonName ?? dns[0] ?? ips[0]}`, '-out', csrFile], `CSR for ${opts.name}`);
  const san = [...dns.map((d) => `DNS:${d}`), ...ips.map((i) => `IP:${i}`)].join(',');
  fs.writeFileSync(extFile, [
    'basicConstraints=CA:FALSE',
    'keyUsage=critical,digitalSignature,keyEncipherment',
    'extendedKeyUsage=serverAuth,clientAuth',
    `subjectAltName=${san}`,
    '',
  ].join('\n'));
  openssl([
    'x509', '-req', '-in', csrFile, '-CA', ca.certFile, '-CAkey', ca.keyFile, '-CAcreateserial',
    '-sha256', '-days', String(opts.days ?? 30), '-extfile', extFile, '-out', certFile,
  ], `certificate for ${opts.name}`, opts.dir);
  fs.rmSync(csrFile, { force: true });
  fs.rmSync(extFile, { force: true });
  return { certFile, keyFile, certPem: fs.readFileSync(certFile, 'utf8'), keyPem: fs.readFileSync(keyFile, 'utf8') };
}

/**
 * `openssl verify` of certFile against caFile, optionally checking a host name or IP the way a TLS
 * client would. Returns null when valid, else openssl's reason.
 */
export function verifyCertificate(caFile: string, certFile: string, expect: { host?: string; ip?: string } = {}): string | null {
  const args = ['verify', '-CAfile', caFile, '-purpose', 'sslserver'];
  if (expect.host) args.push('-verify_hostname', expect.host);
  if (expect.ip) args.push('-verify_ip', expect.ip);
  args.push(certFile);
  const r = spawnSync('openssl', args, { encoding: 'utf8' });
  if (r.status === 0 && /: OK\s*$/.test(r.stdout)) return null;
  return (r.stderr || r.stdout || 'openssl verify failed').trim();
}

/** Subject alternative names of a certificate, as openssl prints them (e.g. ["DNS:localhost", "IP Address:127.0.0.1"]). */
export function certificateSans(certFile: string): string[] {
  const out = openssl(['x509', '-in', certFile, '-noout', '-ext', 'subjectAltName'], `reading SANs of ${certFile}`);
  return out.split('\n').slice(1).join(',').split(',').map((s) => s.trim()).filter(Boolean);
}
