import * as pulumi from '@pulumi/pulumi';
import * as docker from '@pulumi/docker';
import { renderBackupCrontab, renderBackupJobConfig } from '../../lib/render/backup-job.ts';
import type { StackSettings } from '../../lib/settings/stack-settings.ts';
import { Placement, RESTART } from '../placement.ts';

// Optional scheduled backup container: cron runs the backups capability's job with a rendered
// settings file; the DB password comes from the environment. It writes its e4ops_* metrics into
// the textfile volume the node exporter reads.

export interface BackupJobArgs {
  settings: StackSettings;
  placement: Placement;
  dbHost: string;
  superuserPassword: pulumi.Output<string>;
  textfileVolumeName: pulumi.Input<string>;
  /** Volumes holding files worth keeping (pubkey-mode C2 key ...), mounted read-only. */
  extraFiles: string[];
}

export class BackupJob extends pulumi.ComponentResource {
  readonly container: docker.Container;
  constructor(name: string, args: BackupJobArgs, opts?: pulumi.ComponentResourceOptions) {
    super('e4ops:backup:BackupJob', name, {}, opts);
    const { settings: s, placement: pl } = args;
    const b = s.backup;
    const m = { name: 'backup-job', index: 0, host: 0 };
    const crontab = renderBackupCrontab({ schedule: b.schedule, command: b.command, workingDirectory: '/opt/e4ops' });
    const config = renderBackupJobConfig({
      database: { host: args.dbHost, port: 5432, name: s.postgres.database, user: 'postgres' },
      files: args.extraFiles,
      targets: b.targets,
      ageRecipients: b.ageRecipients,
      retention: b.retention,
      metricsTextfileDir: '/textfile',
    });
    const local = new docker.Volume('backup-local', { name: 'e4ops-backup-local' }, pl.opts(m, this, { retainOnDelete: true }));
    this.container = new docker.Container(m.name, {
      name: m.name, hostname: m.name,
      image: pl.builtImage(m, 'toolkit', 'toolkit.Dockerfile', { BASE_IMAGE: b.baseImage }, true),
      restart: RESTART,
      // cron starts jobs with an empty environment: keep the container's in a root-only file.
      command: ['sh', '-c', 'umask 077 && export -p > /etc/e4ops/backup.env && exec cron -f'],
      envs: pulumi.secret(args.superuserPassword.apply((pw) => [`PGPASSWORD=${pw}`, `PGHOST=${args.dbHost}`, 'PGUSER=postgres'])),
      uploads: [
        { file: '/etc/cron.d/e4ops-backup', content: crontab, permissions: '0644' },
        { file: '/etc/e4ops/backup.json', content: config, permissions: '0644' },
      ],
      volumes: [
        { volumeName: local.name, containerPath: '/backups' },
        { volumeName: args.textfileVolumeName, containerPath: '/textfile' },
      ],
      networksAdvanced: pl.networks(m, true),
      healthcheck: { tests: ['CMD-SHELL', 'pgrep cron >/dev/null'], interval: '60s', timeout: '5s', retries: 3 },
      labels: [{ label: 'e4ops.service', value: 'backup-job' }],
    }, pl.opts(m, this));
    this.registerOutputs({});
  }
}
