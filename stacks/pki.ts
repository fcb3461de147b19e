import * as pulumi from '@pulumi/pulumi';
import * as tls from '@pulumi/tls';

// The stack's own certificate authority and RSA leaf certificates (C2's gateway only offers
// RSA-only cipher suites, so every key here is RSA). Private keys stay Pulumi secrets.

export interface IssuedCert {
  certPem: pulumi.Output<string>;
  keyPem: pulumi.Output<string>;
}

export class Pki extends pulumi.ComponentResource {
  readonly caCertPem: pulumi.Output<string>;
  private readonly caKey: tls.PrivateKey;

  constructor(name: string, opts?: pulumi.ComponentResourceOptions) {
    super('e4ops:pki:Pki', name, {}, opts);
    this.caKey = new tls.PrivateKey(`${name}-ca-key`, { algorithm: 'RSA', rsaBits: 4096 }, { parent: this });
    const ca = new tls.SelfSignedCert(`${name}-ca`, {
      privateKeyPem: this.caKey.privateKeyPem,
      isCaCertificate: true,
      validityPeriodHours: 24 * 365 * 10,
      earlyRenewalHours: 24 * 90,
      subject: { commonName: `e4ops ${pulumi.getStack()} CA`, organization: 'e4ops' },
      allowedUses: ['cert_signing', 'crl_signing', 'digital_signature'],
    }, { parent: this });
    this.caCertPem = ca.certPem;
    this.registerOutputs({ caCertPem: this.caCertPem });
  }

  /** A server (and client) certificate for these DNS names and IP addresses. */
  issue(name: string, dnsNames: string[], ipAddresses: string[] = []): IssuedCert {
    const key = new tls.PrivateKey(`${name}-key`, { algorithm: 'RSA', rsaBits: 2048 }, { parent: this });
    const csr = new tls.CertRequest(`${name}-csr`, {
      privateKeyPem: key.privateKeyPem,
      subject: { commonName: dnsNames[0], organization: 'e4ops' },
      dnsNames,
      ipAddresses,
    }, { parent: this });
    const cert = new tls.LocallySignedCert(`${name}-cert`, {
      certRequestPem: csr.certRequestPem,
      caPrivateKeyPem: this.caKey.privateKeyPem,
      caCertPem: this.caCertPem,
      validityPeriodHours: 24 * 365 * 2,
      earlyRenewalHours: 24 * 30,
      allowedUses: ['digital_signature', 'key_encipherment', 'server_auth', 'client_auth'],
    }, { parent: this });
    return { certPem: cert.certPem, keyPem: pulumi.secret(key.privateKeyPem) };
  }
}
