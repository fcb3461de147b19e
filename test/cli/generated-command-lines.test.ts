// Command lines that e4ops writes for itself (the Pulumi stack's dashboards installer container) must
// pass the strict flags: a renamed flag would otherwise surface only when `pulumi up` runs the container.
import { describe, it, expect } from 'vitest';
import { dashboardsInstallCommand } from '../../stacks/components/dashboards-installer.ts';
import { validateStackSettings } from '../../lib/settings/stack-settings.ts';
import { resolveCommand } from '../../lib/cli/command.ts';
import { parseFlags } from '../../lib/cli/flags.ts';
import { command as dashboards } from '../../scripts/dashboards.ts';

describe('command lines the stacks generate', () => {
  it('the dashboards installer line parses under e4ops dashboards install, with the stack\'s values', () => {
    const settings = validateStackSettings({ profile: 'ha', hosts: [{ name: 'a', url: 'unix:///a.sock' }], monitoring: { retention: { messagesDays: 45 } } });
    const line = dashboardsInstallCommand(settings);
    expect(line.slice(0, 4)).toEqual(['node', '--import', 'tsx', 'scripts/dashboards.ts']);
    const { spec, rest } = resolveCommand(dashboards, line.slice(4));
    expect(spec.name).toBe('dashboards install');
    const { flags } = parseFlags(spec.flags, rest);
    expect(flags['messages-retention-days']).toBe(45);
    expect(flags['message-index']).toBe(settings.elasticsearch.messageIndex);
  });
});
