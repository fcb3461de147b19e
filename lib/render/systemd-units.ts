// systemd unit files (and .network files, same INI syntax) for hosts that run the toolkit's
// services directly: the VM appliance today. Pure: same input, same text. The units name the
// files the other renderers produce; they never hold secrets (those come from EnvironmentFile=
// files written on the machine itself).

export type UnitValue = string | number | boolean | Array<string | number>;
/** Section name → directive → value; arrays repeat the directive (ExecStartPre=, After= ...). */
export type UnitSections = Record<string, Record<string, UnitValue | undefined>>;

const SECTION = /^[A-Z][A-Za-z]*$/;
const DIRECTIVE = /^[A-Z][A-Za-z0-9]*$/;

function unitValue(section: string, key: string, v: string | number | boolean): string {
  const text = typeof v === 'boolean' ? (v ? 'yes' : 'no') : String(v);
  if (/[\r\n]/.test(text)) throw new Error(`systemd [${section}] ${key}: value contains a newline; give one line per value (use an array)`);
  return text;
}

/** Render one unit file. Section order is kept; undefined values are left out. */
export function renderSystemdUnit(sections: UnitSections, comment = 'lib/render/systemd-units.ts'): string {
  const out = [`# Rendered by e4ops (${comment}); edits are overwritten.`];
  for (const [section, directives] of Object.entries(sections)) {
    if (!SECTION.test(section)) throw new Error(`systemd section "${section}": not a section name such as Unit, Service, Install`);
    out.push('', `[${section}]`);
    for (const [key, value] of Object.entries(directives)) {
      if (value === undefined) continue;
      if (!DIRECTIVE.test(key)) throw new Error(`systemd [${section}] "${key}": not a directive name such as ExecStart`);
      for (const v of Array.isArray(value) ? value : [value]) out.push(`${key}=${unitValue(section, key, v)}`);
    }
  }
  return out.join('\n') + '\n';
}

export interface C2ServiceSettings {
  /** Path of the c2 binary; C2 reads <dir of binary>/../configs/config.yaml. */
  binary: string;
  user: string;
  /** EnvironmentFile with E4C2_DB_PASSWORD and E4C2_DB_ENCRYPTION_PASSPHRASE (written on the machine). */
  environmentFile: string;
  /** Units C2 needs before it starts (its fail-fast start-up exits if the DB or broker is missing). */
  after: string[];
  requires?: string[];
  /** Checks that must pass before C2 starts (a failing one keeps C2 stopped and is retried with it). */
  execStartPre?: string[];
}

/** C2 as a service: restart always, because C2 exits on any start-up hiccup (DB, MQTT > 1 s). */
export function renderC2ServiceUnit(s: C2ServiceSettings): string {
  if (!s.binary.startsWith('/')) throw new Error(`c2 service binary "${s.binary}": must be an absolute path`);
  if (!s.environmentFile.startsWith('/')) throw new Error(`c2 service environmentFile "${s.environmentFile}": must be an absolute path`);
  return renderSystemdUnit({
    Unit: {
      Description: 'Teserakt E4 C2 key server',
      Documentation: 'https://github.com/teserakt-io/c2',
      After: ['network-online.target', ...s.after],
      Wants: ['network-online.target', ...s.after],
      Requires: s.requires,
      // Restart=always plus a start limit would give up after a slow DB; keep retrying.
      StartLimitIntervalSec: 0,
    },
    Service: {
      Type: 'simple',
      User: s.user,
      Group: s.user,
      EnvironmentFile: s.environmentFile,
      // '+': the check runs as root (it reads the PostgreSQL data directory), C2 itself as its user.
      ExecStartPre: s.execStartPre?.map((c) => `+${c}`),
      ExecStart: s.binary,
      // The checks run Node; on a slow (emulated) VM they take longer than the default 90 s.
      TimeoutStartSec: s.execStartPre?.length ? 600 : undefined,
      Restart: 'always',
      RestartSec: 3,
      NoNewPrivileges: true,
      ProtectSystem: 'strict',
      ProtectHome: true,
      PrivateTmp: true,
    },
    Install: { WantedBy: 'multi-user.target' },
  });
}

export interface FirstBootServiceSettings {
  script: string;
  /** File whose existence means first boot already ran (the unit is skipped then). */
  doneMarker: string;
  /** Units that need the secrets first boot generates. */
  before: string[];
  after?: string[];
}

/** One-shot unit that generates the machine's secrets once, before the services that read them. */
export function renderFirstBootServiceUnit(s: FirstBootServiceSettings): string {
  return renderSystemdUnit({
    Unit: {
      Description: 'e4ops first boot: generate secrets and TLS material on this machine',
      ConditionPathExists: `!${s.doneMarker}`,
      After: ['local-fs.target', ...(s.after ?? [])],
      Before: s.before,
    },
    Service: {
      Type: 'oneshot',
      RemainAfterExit: true,
      ExecStart: s.script,
      StandardOutput: 'journal+console',
      StandardError: 'journal+console',
      TimeoutStartSec: 600,
    },
    Install: { WantedBy: 'multi-user.target' },
  });
}

/** systemd-networkd .network file: DHCP on every Ethernet interface matching `match`. */
export function renderDhcpNetwork(match = 'en* eth*'): string {
  return renderSystemdUnit({ Match: { Name: match }, Network: { DHCP: 'yes' } });
}

const DOW = ['Sun', 'Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat', 'Sun'];

/**
 * A 5-field cron expression as a systemd OnCalendar= value ("17 3 * * *" → "*-*-* 03:17:00"), so one
 * `schedule` setting drives cron in the containers and timers on the appliance. Numbers, *, lists,
 * ranges and steps; a day-of-month plus a day-of-week restriction is refused (cron ORs them, systemd ANDs).
 */
export function cronToOnCalendar(cron: string): string {
  const f = cron.trim().split(/\s+/);
  if (f.length !== 5) throw new Error(`schedule "${cron}": needs 5 cron fields (minute hour day-of-month month day-of-week)`);
  const [min, hour, dom, month, dow] = f;
  const field = (v: string, what: string, lo: number, hi: number, pad: number, name?: (n: number) => string): string =>
    v.split(',').map((part) => {
      const m = /^(\*|\d+)(?:-(\d+))?(?:\/(\d+))?$/.exec(part);
      if (!m) throw new Error(`schedule "${cron}": ${what} "${part}" is not a number, *, range a-b or step /n`);
      const [, start, end, step] = m;
      for (const n of [start, end]) if (n !== undefined && n !== '*' && (Number(n) < lo || Number(n) > hi)) throw new Error(`schedule "${cron}": ${what} ${n} is outside ${lo}-${hi}`);
      const fmt = (n: string) => (name ? name(Number(n)) : n.padStart(pad, '0'));
      if (start === '*') return step ? `${fmt(String(lo))}/${step}` : '*';
      if (end !== undefined) {
        if (step) { if (name) throw new Error(`schedule "${cron}": ${what} steps over a range are not supported`); return `${fmt(start)}..${fmt(end)}/${step}`; }
        return `${fmt(start)}..${fmt(end)}`;
      }
      return step ? `${fmt(start)}/${step}` : fmt(start);
    }).join(',');
  if (dom !== '*' && dow !== '*') throw new Error(`schedule "${cron}": restricts both day-of-month and day-of-week; systemd would need both to match, cron either. Fix: restrict one`);
  const days = dow === '*' ? '' : `${field(dow, 'day-of-week', 0, 7, 0, (n) => DOW[n])} `;
  return `${days}*-${field(month, 'month', 1, 12, 2)}-${field(dom, 'day-of-month', 1, 31, 2)} ${field(hour, 'hour', 0, 23, 2)}:${field(min, 'minute', 0, 59, 2)}:00`;
}
