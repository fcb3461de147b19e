// Everything a drill starts (PostgreSQL, Mosquitto, C2, temp folders) is registered here so it is
// torn down on every path: normal end, thrown error, and SIGINT/SIGTERM (synchronously, because the
// server launchers' own exit hook ends the process right after the signal handlers run).
import fs from 'node:fs';

interface Resource {
  what: string;
  stop: () => Promise<void>;
  /** Best-effort immediate teardown for signal handlers (no awaiting possible). */
  killSync?: () => void;
}

export class ScratchResources {
  private items: Resource[] = [];
  private signalHandler?: (sig: NodeJS.Signals) => void;

  add(what: string, stop: () => Promise<void>, killSync?: () => void): void {
    this.items.push({ what, stop, killSync });
  }

  addDir(dir: string): void {
    const rm = () => fs.rmSync(dir, { recursive: true, force: true });
    this.add(`folder ${dir}`, async () => rm(), rm);
  }

  /** Tear everything down on SIGINT/SIGTERM before the process exits. */
  installSignalHandlers(): void {
    if (this.signalHandler) return;
    this.signalHandler = (sig) => {
      for (const r of [...this.items].reverse()) {
        try { r.killSync?.(); } catch { /* keep going */ }
      }
      process.exit(sig === 'SIGINT' ? 130 : 143);
    };
    process.prependListener('SIGINT', this.signalHandler);
    process.prependListener('SIGTERM', this.signalHandler);
  }

  /** Stop in reverse order of start; returns what could not be stopped. */
  async stopAll(): Promise<string[]> {
    const errors: string[] = [];
    for (const r of this.items.reverse()) {
      try { await r.stop(); } catch (e) { errors.push(`${r.what}: ${(e as Error).message}`); }
    }
    this.items = [];
    if (this.signalHandler) {
      process.removeListener('SIGINT', this.signalHandler);
      process.removeListener('SIGTERM', this.signalHandler);
      this.signalHandler = undefined;
    }
    return errors;
  }
}
