import { SingleBar, Presets } from 'cli-progress';

/** Fields shown beside a step progress bar. */
export interface StepFields {
  [name: string]: string | number;
}

/**
 * A progress bar on stderr: a live bar with ETA on a terminal; on a pipe or log file (CI), a plain line at every
 * 10% so logs stay readable.
 */
export class Progress {
  private bar: SingleBar | null = null;
  private lastPct = -1;
  private readonly start = Date.now();

  constructor(
    private readonly label: string,
    private readonly total: number,
    private readonly format: (f: StepFields) => string = (f) =>
      Object.entries(f)
        .map(([k, v]) => `${k} ${v}`)
        .join(' | '),
    private readonly stream: NodeJS.WriteStream = process.stderr,
  ) {
    if (stream.isTTY) {
      this.bar = new SingleBar(
        {
          format: `${label} [{bar}] {value}/{total} | {fields} | ETA {eta_formatted}`,
          stream,
          hideCursor: true,
          etaBuffer: 20,
        },
        Presets.shades_classic,
      );
      this.bar.start(total, 0, { fields: '' });
    }
  }

  /** Reports that `done` of `total` units are complete. */
  update(done: number, fields: StepFields = {}): void {
    const text = this.format(fields);
    if (this.bar) {
      this.bar.update(done, { fields: text });
      return;
    }
    const pct = Math.floor((100 * done) / this.total);
    if (pct >= this.lastPct + 10 || done === this.total) {
      this.lastPct = pct;
      const elapsed = (Date.now() - this.start) / 1000;
      const eta = done > 0 ? (elapsed / done) * (this.total - done) : NaN;
      this.stream.write(
        `${this.label} ${done}/${this.total} (${pct}%) ${text ? `| ${text} ` : ''}| ${elapsed.toFixed(1)}s elapsed, ETA ${Number.isFinite(eta) ? eta.toFixed(1) + 's' : '?'}\n`,
      );
    }
  }

  /** Ends the bar. */
  stop(): void {
    this.bar?.stop();
  }
}
