// A systemd unit that finishes a resync's stragglers: `e4ops resync --follow-up JOURNAL --follow 24h`
// serves each device the resync left unserved when it connects, without rotating anything. Pure;
// the command line holds file paths only (the broker password comes from a file).
import { renderSystemdUnit } from '../../lib/render/systemd-units.ts';

export interface FollowUpUnitSettings {
  /** Absolute path of the e4ops launcher (bin/e4ops). */
  e4ops: string;
  /** `e4ops resync` flags after `--follow-up J --follow D`, already checked by the command (no secrets). */
  args: string[];
  journal: string;
  follow: string;
  user?: string;
}

const quote = (a: string) => (/^[A-Za-z0-9_@%+=:,./-]+$/.test(a) ? a : `"${a.replace(/(["\\$`])/g, '\\$1')}"`);

export function renderFollowUpUnit(s: FollowUpUnitSettings): string {
  if (!s.e4ops.startsWith('/')) throw new Error(`follow-up unit e4ops "${s.e4ops}": must be an absolute path`);
  if (!s.journal.startsWith('/')) throw new Error(`follow-up unit journal "${s.journal}": must be an absolute path (the unit runs from /)`);
  const argv = [s.e4ops, 'resync', '--follow-up', s.journal, '--follow', s.follow, ...s.args];
  return renderSystemdUnit({
    Unit: {
      Description: `e4ops: serve the devices a topic-key resync left unserved (${s.journal})`,
      After: 'network-online.target',
      Wants: 'network-online.target',
    },
    Service: {
      Type: 'simple',
      User: s.user,
      ExecStart: argv.map(quote).join(' '),
      // the journal makes it resumable: restart after a crash; 11 (devices still unserved when the
      // window closed), 9 (refused) and 2 (bad flags) are answers, not crashes
      Restart: 'on-failure',
      RestartSec: 30,
      RestartPreventExitStatus: '2 9 11',
      SuccessExitStatus: 11,
    },
    Install: { WantedBy: 'multi-user.target' },
  }, 'backups/resync/follow-up-unit.ts');
}
