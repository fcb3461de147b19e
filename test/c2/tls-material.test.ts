import { afterAll, describe, expect, it } from 'vitest';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import crypto from 'node:crypto';
import { createCertificateAuthority, issueLeafCertificate, verifyCertificate, certificateSans } from '../../lib/c2/tls-material.ts';

describe('TLS material for C2 (openssl CLI)', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'e4ops-tls-'));
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('issues RSA leaf certificates with the requested SANs that verify against their CA only', () => {
    const ca = createCertificateAuthority({ dir: path.join(dir, 'a') });
    const other = createCertificateAuthority({ dir: path.join(dir, 'b') });
    const leaf = issueLeafCertificate(ca, { dir: path.join(dir, 'a'), name: 'c2-http', dnsNames: ['c2.internal', 'localhost'], ipAddresses: ['127.0.0.1', '127.0.0.42'] });
    expect(new crypto.X509Certificate(leaf.certPem).publicKey.asymmetricKeyType).toBe('rsa');
    expect(certificateSans(leaf.certFile)).toEqual(['DNS:c2.internal', 'DNS:localhost', 'IP Address:127.0.0.1', 'IP Address:127.0.0.42']);
    expect(verifyCertificate(ca.certFile, leaf.certFile, { host: 'c2.internal' })).toBeNull();
    expect(verifyCertificate(ca.certFile, leaf.certFile, { ip: '127.0.0.42' })).toBeNull();
    expect(verifyCertificate(ca.certFile, leaf.certFile, { host: 'elsewhere.example' })).toMatch(/mismatch/i);
    expect(verifyCertificate(other.certFile, leaf.certFile)).toMatch(/unable to get local issuer|verify error/i);
    expect(fs.statSync(leaf.keyFile).mode & 0o077).toBe(0);
  });

  it('serves TLS 1.2 with an RSA cipher suite to a client that trusts the CA, and is refused by one that does not', async () => {
    const ca = createCertificateAuthority({ dir: path.join(dir, 'c') });
    const leaf = issueLeafCertificate(ca, { dir: path.join(dir, 'c'), name: 'srv' });
    const server = tls.createServer({ cert: leaf.certPem, key: leaf.keyPem, maxVersion: 'TLSv1.2', ciphers: 'ECDHE-RSA-AES128-GCM-SHA256' }, (s) => s.end('ok'));
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
    const port = (server.address() as { port: number }).port;
    const talk = (ca?: string) => new Promise<string>((resolve, reject) => {
      const s = tls.connect({ host: '127.0.0.1', port, ca }, () => {
        let d = '';
        s.on('data', (c) => (d += c)).on('end', () => resolve(`${s.getProtocol()} ${d}`));
      });
      s.on('error', reject);
    });
    try {
      expect(await talk(ca.certPem)).toBe('TLSv1.2 ok');
      await expect(talk()).rejects.toThrow(/self.signed|unable to (get|verify)/i);
    } finally {
      server.close();
    }
  });
});
