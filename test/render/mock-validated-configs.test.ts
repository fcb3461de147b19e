import { describe, it, expect } from 'vitest';
import YAML from 'yaml';
import { renderEmqxConf, renderEmqxBootstrapUsers } from '../../lib/render/emqx-conf.ts';
import { renderOcAgentConfig } from '../../lib/render/ocagent-yaml.ts';
import { renderBackupCrontab, renderBackupJobConfig } from '../../lib/render/backup-job.ts';

// Files whose programs have no Debian package (EMQX, the OpenCensus agent) or that only cron reads:
// checked for the properties the stack relies on, not by the real program. Said so in README.md.
describe('renderers without a real-program check', () => {
  it('EMQX: static cluster of all nodes, retained messages on disc in the replicated built-in DB, no secret in the file', () => {
    const seeds = ['emqx@emqx-0', 'emqx@emqx-1', 'emqx@emqx-2'];
    const text = renderEmqxConf({ nodeName: 'emqx@emqx-1', seeds, listener: { bind: '0.0.0.0:1883' }, dashboardBind: '0.0.0.0:18083', allowAnonymous: false, bootstrapUsersFile: '/opt/emqx/etc/users.csv' });
    expect(text).toContain('node.name = "emqx@emqx-1"');
    expect(text).toContain('static.seeds = ["emqx@emqx-0", "emqx@emqx-1", "emqx@emqx-2"]');
    expect(text).toMatch(/backend \{ type = built_in_database, storage_type = disc/);
    expect(text).toMatch(/bootstrap_file = "\/opt\/emqx\/etc\/users.csv"/);
    expect(text).not.toMatch(/cookie/);
    expect(() => renderEmqxConf({ nodeName: 'emqx@x', seeds: ['emqx@y'], listener: { bind: ':1883' }, dashboardBind: ':18083', allowAnonymous: true })).toThrow(/seeds/);
    expect(renderEmqxBootstrapUsers([{ username: 'c2', password: 'pw-1' }])).toBe('user_id,password,is_superuser\nc2,pw-1,false\n');
    expect(() => renderEmqxBootstrapUsers([{ username: 'c2', password: 'a,b' }])).toThrow(/commas/);
  });

  it('OpenCensus agent: receiver, Prometheus exporter with namespace c2, Jaeger collector', () => {
    const doc = YAML.parse(renderOcAgentConfig({ receiverAddress: '0.0.0.0:55678', prometheus: { address: '0.0.0.0:9998', namespace: 'c2' }, jaeger: { collectorEndpoint: 'http://jaeger:14268/api/traces', serviceName: 'c2' } }));
    expect(doc).toEqual({
      receivers: { opencensus: { address: '0.0.0.0:55678' } },
      exporters: { prometheus: { namespace: 'c2', address: '0.0.0.0:9998' }, jaeger: { collector_endpoint: 'http://jaeger:14268/api/traces', service_name: 'c2' } },
    });
  });

  it('backup job: cron line with user field, env file sourced, no % in the command; JSON settings hold no secrets', () => {
    const tab = renderBackupCrontab({ schedule: '17 3 * * *', command: 'npx tsx scripts/backup.ts run', workingDirectory: '/opt/e4ops' });
    expect(tab).toMatch(/^17 3 \* \* \* root cd \/opt\/e4ops && \{ if \[ -r \/etc\/e4ops\/backup.env \]; then set -a; \. \/etc\/e4ops\/backup.env; set \+a; fi; \} && npx tsx scripts\/backup.ts run .*>\/proc\/1\/fd\/1 2>\/proc\/1\/fd\/2$/m);
    expect(() => renderBackupCrontab({ schedule: '99 99 * * *', command: 'x', workingDirectory: '/' })).toThrow(/99/);
    expect(() => renderBackupCrontab({ schedule: '17 3 * *', command: 'x', workingDirectory: '/' })).toThrow(/5 cron fields/);
    expect(() => renderBackupCrontab({ schedule: '17 3 * * *', command: 'date +%F', workingDirectory: '/' })).toThrow(/%/);
    const cfg = JSON.parse(renderBackupJobConfig({ database: { host: 'pg-primary', port: 5432, name: 'e4', user: 'e4' }, files: [], targets: [{ name: 'off', type: 'rclone', remote: 's3:bk' }], ageRecipients: ['age1x'], retention: { keepLast: 7, keepDaily: 14, keepWeekly: 8, keepMonthly: 12 } }));
    expect(cfg.database).toEqual({ host: 'pg-primary', port: 5432, name: 'e4', user: 'e4' });
    expect(JSON.stringify(cfg)).not.toMatch(/password/i);
  });
});
