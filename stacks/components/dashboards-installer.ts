import * as pulumi from '@pulumi/pulumi';
import * as docker from '@pulumi/docker';
import type { StackSettings } from '../../lib/settings/stack-settings.ts';
import { Placement } from '../placement.ts';
import type { ElasticStack } from './elastic.ts';

// One-shot container running the dashboards installer (scripts/dashboards.ts install, the same code
// an operator runs by hand) once Elasticsearch and Kibana report healthy: index templates and ILM
// policies with the stack's index names and retention, then the Kibana saved objects. `pulumi up`
// attaches to it and fails when it exits non-zero. It runs again whenever its command, environment
// or image changes; the installer itself changes only what differs.

export interface DashboardsInstallerArgs {
  settings: StackSettings;
  placement: Placement;
  elastic: ElasticStack;
  elasticPassword: pulumi.Output<string>;
  /** The toolkit image (stacks/docker/toolkit.Dockerfile), shared with the backup job. */
  image: pulumi.Input<string>;
}

/** The installer's command line: index names and ILM retention from the stack settings; no secret in it. */
export function dashboardsInstallCommand(s: StackSettings): string[] {
  return [
    'node', '--import', 'tsx', 'scripts/dashboards.ts', 'install',
    '--message-index', s.elasticsearch.messageIndex,
    '--c2-logs-index-prefix', s.elasticsearch.logIndex,
    '--messages-retention-days', String(s.monitoring.retention.messagesDays),
    '--logs-retention-days', String(s.monitoring.retention.logsDays),
  ];
}

export class DashboardsInstaller extends pulumi.ComponentResource {
  readonly container: docker.Container;
  /** The installer's exit code once `pulumi up` has run it; the update fails when it is not 0. */
  readonly exitCode: pulumi.Output<number | undefined>;
  constructor(name: string, args: DashboardsInstallerArgs, opts?: pulumi.ComponentResourceOptions) {
    super('e4ops:dashboards:DashboardsInstaller', name, {}, opts);
    const { settings: s, placement: pl, elastic } = args;
    const m = { name: 'dashboards-installer', index: 0, host: 0 };
    const esHost = elastic.httpHosts[0];
    this.container = new docker.Container(m.name, {
      name: m.name, hostname: m.name,
      image: args.image,
      command: dashboardsInstallCommand(s),
      // Credentials travel in the environment (scripts/dashboards.ts reads E4OPS_ES_URL / E4OPS_KIBANA_URL), never in the command.
      envs: pulumi.secret(args.elasticPassword.apply((pw) => {
        const auth = `elastic:${encodeURIComponent(pw)}@`;
        return [`E4OPS_ES_URL=http://${auth}${esHost}`, `E4OPS_KIBANA_URL=http://${auth}kibana:5601`];
      })),
      networksAdvanced: pl.networks(m, false),
      restart: 'no',
      // Run to completion inside `pulumi up` (attach) and keep its output in the state (logs); an
      // exited container is its normal state, not a reason to recreate it (mustRun false).
      attach: true, logs: true, mustRun: false,
      labels: [{ label: 'e4ops.service', value: 'dashboards-installer' }],
    }, pl.opts(m, this, { dependsOn: [...elastic.nodeContainers, elastic.kibana] }));
    this.exitCode = this.container.exitCode.apply((code) => {
      if (code !== undefined && code !== null && code !== 0) {
        throw new Error(`dashboards-installer exited with code ${code}: Elasticsearch templates/ILM or Kibana saved objects were not installed. `
          + `Fix: read \`docker logs ${m.name}\` on ${pl.hostName(m)}, correct the cause, then run \`pulumi up --replace <urn of ${m.name}>\` `
          + '(or scripts/dashboards.ts install by hand)');
      }
      return code;
    });
    this.registerOutputs({ exitCode: this.exitCode });
  }
}
