// What a restore will do, step by step, with what each step touches: shown by --plan (which changes
// nothing), shown before the one interactive confirmation, and rebuilt on resume with the finished
// steps marked. Built from read-only probes only (the target's manifest, pg_database).
import type { BackupManifest } from '../manifest.ts';
import type { C2Lifecycle } from './c2-lifecycle.ts';
import { configsPaths } from './restore-configs.ts';
import type { PgBackRestBackup } from './pgbackrest-source.ts';
import { stepsOf, type RestoreIdentity, type RestoreJournalState, type RestoreStep } from './restore-journal.ts';

export interface PlannedStep { step: RestoreStep; action: string; touches: string[]; done?: string }

export interface RestorePlanInput {
  identity: RestoreIdentity;
  /** Logical source. */
  manifest?: BackupManifest;
  /** pgBackRest source: the backup recovery starts from, and PostgreSQL's stop/start commands. */
  backup?: PgBackRestBackup;
  postgres?: C2Lifecycle;
  server: string;
  productionExists: boolean;
  lifecycle: C2Lifecycle;
  c2Url: string;
  resync: boolean;
  inventoryClients?: number;
  stateDir: string;
  reportFile: string;
  journal?: RestoreJournalState;
}

const mb = (n: number) => `${(n / 1e6).toFixed(1)} MB`;

type StepTexts = Partial<Record<RestoreStep, Omit<PlannedStep, 'step'>>>;

/** The steps both sources share: C2's lifecycle, its check, the resync, the report. */
function commonSteps(p: RestorePlanInput, counts: string): StepTexts {
  return {
    'stop-c2': { action: 'stop every C2 replica, then make sure the API no longer answers', touches: [...p.lifecycle.stopCommands.map((c) => `runs: ${c}`), `C2 is down from here until start-c2 (${p.c2Url})`] },
    'start-c2': { action: `start C2 and wait until ${p.c2Url} serves ${counts}`, touches: p.lifecycle.startCommands.map((c) => `runs: ${c}`) },
    'check-c2': { action: "the drill's C2 check: the API's counts, topics and sampled clients' links against the restored database", touches: ['nothing (reads only)'] },
    resync: p.resync
      ? { action: `rotate every topic key through C2 and send it to the linked devices${p.inventoryClients !== undefined ? `; repair from the inventory (${p.inventoryClients} clients)` : ''}`, touches: [`C2 at ${p.c2Url} and every device`, `journal ${p.stateDir}/resync-journal.jsonl`] }
      : { action: 'skipped (--no-resync): devices keep keys rotated after the backup, C2 holds the older ones; run e4ops resync soon', touches: ['nothing'] },
    report: { action: `write ${p.reportFile} and its .md`, touches: [p.reportFile] },
  };
}

function logicalSteps(p: RestorePlanInput, m: BackupManifest): StepTexts {
  const id = p.identity;
  const inv = m.c2.inventory;
  const dump = m.objects.find((o) => o.kind === 'postgres-dump');
  const configs = m.objects.find((o) => o.kind === 'c2-configs');
  const extra = m.objects.find((o) => o.kind === 'extra-files');
  return {
    preflight: { action: `check set ${id.setId} (${m.objects.length} objects, checksums), the age identity against its recipients, the passphrase against its fingerprint, the server's rights and free disk`, touches: ['nothing (reads only)'] },
    'restore-database': { action: `create ${id.restoreDatabase} owned by ${id.c2Role}, pg_restore the set's dump into it (objects owned by ${id.c2Role})`, touches: [`new database ${id.restoreDatabase} on ${p.server}${dump ? ` (dump ${mb(dump.size)})` : ''}`, `${id.database} is not touched`] },
    'check-database': { action: `the drill's checks on ${id.restoreDatabase}: schema, counts (${inv.clients} clients, ${inv.topics} topics, ${inv.topicLinks} links), every sealed key opens, orphan links, owners`, touches: ['nothing (reads only); a failed check stops here, before any swap'] },
    'restore-configs': id.configsDir && configs
      ? { action: `unpack the set's C2 configs; ${id.configsDir} moves aside, the restored one takes its place${extra ? '; extra files back to their paths, old ones as <file>.before-<stamp>' : ''}`, touches: [`${id.configsDir} -> ${configsPaths(id.configsDir, id.stamp).aside}`, `restored configs -> ${id.configsDir}`] }
      : { action: id.configsDir ? `the set holds no C2 configs: ${id.configsDir} stays as it is` : 'no --configs-dir given: configs stay as they are', touches: ['nothing'] },
    'swap-database': { action: `in one transaction: ${p.productionExists ? `${id.database} -> ${id.keptDatabase}, ` : ''}${id.restoreDatabase} -> ${id.database}`, touches: [`sessions still connected to ${id.database} are ended`, p.productionExists ? `${id.keptDatabase} is kept until e4ops restore --finalize` : `${id.database} does not exist now: nothing to keep`] },
    ...commonSteps(p, `${inv.clients} clients and ${inv.topics} topics`),
  };
}

function pgBackRestSteps(p: RestorePlanInput, b: PgBackRestBackup): StepTexts {
  const id = p.identity;
  return {
    preflight: { action: `pgbackrest info: backup ${b.label} (${b.type}, ended ${b.stoppedAt}, ${mb(b.sizeBytes)}) is the one recovery to ${id.targetTime} starts from; free disk next to ${id.dataDir}`, touches: ['nothing (reads only)'] },
    'stop-postgres': { action: 'stop PostgreSQL, then make sure it no longer accepts connections', touches: (p.postgres?.stopCommands ?? []).map((c) => `runs: ${c}`) },
    'restore-data-directory': { action: id.delta ? `pgbackrest restore --delta into ${id.dataDir} (in place: nothing is kept)` : `move ${id.dataDir} to ${id.keptDataDir}, then pgbackrest restore into an empty ${id.dataDir}`, touches: [id.dataDir!, ...(id.delta ? [] : [`${id.keptDataDir} is kept until e4ops restore --finalize`])] },
    'start-postgres': { action: `start PostgreSQL; it replays WAL ${id.targetTime === 'latest' ? 'to the end of the archive' : `to ${id.targetTime}`} and promotes`, touches: (p.postgres?.startCommands ?? []).map((c) => `runs: ${c}`) },
    'check-database': { action: `the drill's checks on ${id.database}: schema, every sealed key opens (this proves the passphrase: pgBackRest records no fingerprint), orphan links, owners; counts reported`, touches: ['nothing (reads only)'] },
    ...commonSteps(p, 'the counts the checks read'),
  };
}

export function buildRestorePlan(p: RestorePlanInput): PlannedStep[] {
  const texts = p.manifest ? logicalSteps(p, p.manifest) : pgBackRestSteps(p, p.backup!);
  return stepsOf(p.identity.source).map((step) => ({ step, ...texts[step]!, ...(p.journal?.done.has(step) ? { done: p.journal.done.get(step)!.at } : {}) }));
}

export function renderRestorePlan(p: RestorePlanInput, steps: PlannedStep[]): string {
  const id = p.identity;
  const lines = [
    `Restore plan ${id.restoreId}${p.journal?.exists ? ` (resuming: ${p.journal.done.size} of ${steps.length} steps done)` : ''}`,
    p.manifest ? `  set ${id.setId} from ${id.target}, taken ${p.manifest.startedAt}` : `  ${id.target}: backup ${id.setId}, recovered to ${id.targetTime}`,
    `  into ${id.database} on ${p.server}${id.c2Role ? ` (C2's role ${id.c2Role})` : ''}`,
    '',
  ];
  steps.forEach((s, i) => {
    lines.push(`${String(i + 1).padStart(2)}. ${s.step}${s.done ? `  [done ${s.done}]` : ''}`, `    ${s.action}`, ...s.touches.map((t) => `    - ${t}`));
  });
  return lines.join('\n') + '\n';
}
