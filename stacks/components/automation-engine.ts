import * as pulumi from '@pulumi/pulumi';
import * as docker from '@pulumi/docker';
import { renderAutomationEngineConfig } from '../../lib/render/automation-engine-config.ts';
import type { StackSettings } from '../../lib/settings/stack-settings.ts';
import { Placement, RESTART } from '../placement.ts';
import type { Pki } from '../pki.ts';

// Optional automation engine (C2AE): built from its Go module like C2, exactly one replica (two
// engines rotate keys behind each other's back), its own database on the C2 PostgreSQL.

export interface AutomationEngineArgs {
  settings: StackSettings;
  placement: Placement;
  pki: Pki;
  dbHost: string;
  c2HostPort: string;
  ocAgentAddr?: string;
  dbPassword: pulumi.Output<string>;
  passphrase: pulumi.Output<string>;
}

export class AutomationEngine extends pulumi.ComponentResource {
  readonly container: docker.Container;
  constructor(name: string, args: AutomationEngineArgs, opts?: pulumi.ComponentResourceOptions) {
    super('e4ops:automation:AutomationEngine', name, {}, opts);
    const { settings: s, placement: pl } = args;
    const ae = s.automationEngine;
    const m = { name: 'automation-engine', index: 0, host: 0 };
    const cert = args.pki.issue(m.name, [m.name, 'localhost'], ['127.0.0.1']);
    const conf = renderAutomationEngineConfig({
      cert: 'c2ae.crt', key: 'c2ae.key',
      db: { host: args.dbHost, database: ae.database, username: s.postgres.username, secureConnection: s.c2.dbSecureConnection },
      c2HostPort: args.c2HostPort, c2Cert: 'ca.crt', ocAgentAddr: args.ocAgentAddr,
    });
    this.container = new docker.Container(m.name, {
      name: m.name, hostname: m.name,
      image: ae.image ? pl.remoteImage(m, ae.image) : pl.builtImage(m, 'automation-engine', 'automation-engine.Dockerfile', { C2AE_VERSION: ae.goModuleVersion }),
      restart: RESTART,
      envs: pulumi.secret(pulumi.all([args.dbPassword, args.passphrase]).apply(([pw, pp]) => [`C2AE_DB_PASSWORD=${pw}`, `C2AE_DB_ENCRYPTION_PASSPHRASE=${pp}`])),
      uploads: [
        { file: '/opt/e4/configs/config.yaml', content: conf },
        { file: '/opt/e4/configs/c2ae.crt', content: cert.certPem },
        { file: '/opt/e4/configs/c2ae.key', content: cert.keyPem, permissions: '0600' },
        { file: '/opt/e4/configs/ca.crt', content: args.pki.caCertPem },
      ],
      networksAdvanced: pl.networks(m, false),
      healthcheck: { tests: ['CMD', 'curl', '-fsk', 'https://127.0.0.1:8886/'], interval: '30s', timeout: '5s', retries: 3, startPeriod: '30s' },
      labels: [{ label: 'e4ops.service', value: 'automation-engine' }, { label: 'e4ops.singleton', value: 'true' }],
    }, pl.opts(m, this));
    this.registerOutputs({});
  }
}
