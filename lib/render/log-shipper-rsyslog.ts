// Log shipper pipeline: rsyslog (Debian package, so the rendered file is checked by the real
// `rsyslogd -N1`) tails C2's JSON log files (logrus writes /var/log/e4_c2.log when it can; each
// replica's /var/log is a volume the shipper mounts read-only), parses each line as JSON
// (mmjsonparse, no @cee cookie) and bulk-indexes into Elasticsearch `<index>-YYYY.MM.DD`.
// Plain-text lines (C2's start-up banner) are indexed as {"msg": ...}.

export interface LogShipperSettings {
  /** Files to tail, and the replica name recorded with every event. */
  inputs: Array<{ file: string; replica: string; application?: string }>;
  elasticsearch: {
    /** host:port of each node. */
    servers: string[];
    indexPrefix: string;
    user?: string;
    /** Environment variable holding the password (read by rsyslog at start; never in the file). */
    passwordEnv?: string;
  };
  workDirectory: string;
  /** Also print every event to stdout (debugging). */
  echoToStdout?: boolean;
}

function q(v: string): string {
  if (/["\\\n]/.test(v)) throw new Error(`log shipper value "${v}": must not contain quotes, backslashes or newlines`);
  return `"${v}"`;
}

/** Render rsyslog.conf for the shipper. Pure. */
export function renderLogShipperConf(s: LogShipperSettings): string {
  if (!s.inputs.length) throw new Error('log shipper inputs: empty; give at least one C2 log file');
  if (!s.elasticsearch.servers.length) throw new Error('log shipper elasticsearch.servers: empty');
  if (s.elasticsearch.passwordEnv && !/^[A-Z_][A-Z0-9_]*$/.test(s.elasticsearch.passwordEnv)) {
    throw new Error(`log shipper elasticsearch.passwordEnv "${s.elasticsearch.passwordEnv}": not an environment variable name`);
  }
  const servers = s.elasticsearch.servers.map((h) => q(h)).join(', ');
  const auth = s.elasticsearch.user
    ? ` uid=${q(s.elasticsearch.user)}${s.elasticsearch.passwordEnv ? ` pwd=\`echo $${s.elasticsearch.passwordEnv}\`` : ''}`
    : '';
  const out = [
    '# Rendered by e4ops (lib/render/log-shipper-rsyslog.ts); edits are overwritten.',
    `global(workDirectory=${q(s.workDirectory)})`,
    'module(load="imfile" mode="inotify")',
    'module(load="mmjsonparse")',
    'module(load="omelasticsearch")',
    '',
    'template(name="e4_index" type="list") {',
    `  constant(value=${q(s.elasticsearch.indexPrefix + '-')})`,
    '  property(name="timereported" dateFormat="year")',
    '  constant(value=".")',
    '  property(name="timereported" dateFormat="month")',
    '  constant(value=".")',
    '  property(name="timereported" dateFormat="day")',
    '}',
    '# The event: @timestamp and host, then the $! tree (replica, application, c2 = the parsed line).',
    'template(name="e4_doc" type="list") {',
    '  constant(value="{\\"@timestamp\\":\\"")',
    '  property(name="timereported" dateFormat="rfc3339")',
    '  constant(value="\\",\\"host\\":\\"")',
    '  property(name="hostname" format="json")',
    '  constant(value="\\",")',
    '  property(name="$!all-json" position.from="2")',
    '}',
    '',
    'ruleset(name="e4_c2_logs") {',
    '  action(type="mmjsonparse" cookie="" container="$!c2")',
    '  if $parsesuccess != "OK" then {',
    '    set $!c2!msg = $msg;',
    '    set $!c2!level = "info";',
    '  }',
    `  action(type="omelasticsearch" server=[${servers}] template="e4_doc" searchIndex="e4_index" dynSearchIndex="on"`,
    `         searchType="_doc" bulkmode="on" maxbytes="4m" queue.type="linkedlist" queue.size="50000" queue.dequeuebatchsize="500"`,
    `         action.resumeRetryCount="-1" errorFile=${q(s.workDirectory.replace(/\/$/, '') + '/es-errors.json')}${auth})`,
    ...(s.echoToStdout ? ['  action(type="omfile" file="/dev/stdout" template="e4_doc")'] : []),
    '}',
    '',
  ];
  s.inputs.forEach((i, n) => {
    out.push(
      `ruleset(name="e4_in_${n}") {`,
      `  set $!replica = ${q(i.replica)};`,
      `  set $!application = ${q(i.application ?? 'c2')};`,
      '  call e4_c2_logs',
      '}',
      `input(type="imfile" File=${q(i.file)} Tag=${q(i.replica + ':')} ruleset="e4_in_${n}" freshStartTail="off" reopenOnTruncate="on")`,
    );
  });
  return out.join('\n') + '\n';
}
