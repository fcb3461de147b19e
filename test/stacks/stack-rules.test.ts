// checkStackRules is a list of rules per settings section (STACK_RULES): each can be checked alone,
// and a problem in one section is reported by that section's rule only.
import { describe, it, expect } from 'vitest';
import { validateStackSettings, checkStackRules, STACK_RULES, type StackSettings } from '../../lib/settings/stack-settings.ts';

const valid = (): StackSettings => validateStackSettings({ profile: 'minimal' });

/** Which sections report a problem for these settings. */
const reporting = (s: StackSettings) => Object.entries(STACK_RULES).filter(([, rule]) => rule(s).length).map(([name]) => name);

describe('stack rules per section', () => {
  it('valid minimal and ha settings pass every section', () => {
    expect(reporting(valid())).toEqual([]);
    expect(reporting(validateStackSettings({ profile: 'ha', hosts: [{ name: 'a', url: 'unix:///a.sock' }] }))).toEqual([]);
  });

  it('a bad value is reported by its own section, and checkStackRules is every section in order', () => {
    const s = valid();
    s.backup.schedule = '17 3 * *';
    s.publish.httpPort = s.publish.grpcPort;
    s.postgres.parameters.port = 5433;
    expect(reporting(s)).toEqual(['postgres', 'publish', 'backup']);
    expect(STACK_RULES.backup(s)).toEqual(['backup.schedule: "17 3 * *" is not a 5-field cron expression. Fix: use e.g. "17 3 * * *" (03:17 daily)']);
    expect(checkStackRules(s)).toEqual([...STACK_RULES.postgres(s), ...STACK_RULES.publish(s), ...STACK_RULES.backup(s)]);
  });

  it('the etcd rule alone: an even member count in the ha profile', () => {
    const s = validateStackSettings({ profile: 'ha', hosts: [{ name: 'a', url: 'unix:///a.sock' }] });
    s.etcd.nodes = 4;
    expect(STACK_RULES.etcd(s)).toEqual([expect.stringMatching(/^etcd\.nodes: is 4; etcd needs an odd number/)]);
    expect(reporting(s)).toEqual(['etcd']);
  });
});
