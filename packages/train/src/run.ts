// The training-run object: a step loop with checkpoint cadence, time budget, abort signal, divergence stop,
// loss log and progress with ETA. What a step does and what a checkpoint writes are the trainer's.
import { DdsError } from '@ddsjs/safetensors';
import { LossLog } from './state';
import { nonNegativeInt, positiveNumber } from './checks';

/** Where the last good checkpoint of a run is: its folder and the steps it holds. */
export interface CheckpointRef {
  /** The checkpoint folder. */
  dir: string;
  /** Steps done at that checkpoint. */
  step: number;
}

/** Thrown by {@link TrainingRun.run} when a step's loss or gradient is not finite; nothing was updated at that step. */
export class DivergedError extends DdsError {
  constructor(
    message: string,
    /** The 0-based step whose values were not finite. */
    readonly step: number,
    /** The last checkpoint written (or resumed from), or null when there is none. */
    readonly lastCheckpoint: CheckpointRef | null,
  ) {
    super('DIVERGED', message);
    this.name = 'DivergedError';
  }
}

/** What a step function returns: the values to check and log, and the update to apply when they are finite. */
export interface StepOutcome {
  /** Losses, gradient norm …, by log key (null: not computed this step). Every non-null one must be finite. */
  values: Record<string, number | null>;
  /** Applies the update (called only when every value is finite); may return more values to log (e.g. `lr`). */
  apply(): void | Record<string, number> | Promise<void | Record<string, number>>;
  /** Frees the step's tensors (called after `apply`, or before a divergence error). */
  dispose?(): void;
}

/** What {@link TrainingRunOptions.onStep} receives after every step. */
export interface RunProgress {
  /** The 0-based step just taken. */
  step: number;
  /** Steps done (`step + 1`). */
  done: number;
  /** Steps the run goes to. */
  total: number;
  /** The step's values (those of {@link StepOutcome.values} and of `apply`). */
  values: Record<string, number | null>;
  /** Wall seconds of this step. */
  seconds: number;
  /** Mean seconds per step in this process, the first (warm-up) step left out once there are two. */
  secondsPerStep: number;
  /** `secondsPerStep · (total − done)`. */
  etaSeconds: number;
  /** Whether a checkpoint was written after this step. */
  checkpointed: boolean;
}

/** Why {@link TrainingRun.run} returned. */
export type RunStop = 'done' | 'budget' | 'signal' | 'callback';

/** Options of {@link TrainingRun}. */
export interface TrainingRunOptions {
  /** Prefix of error messages (`'trainTranslator'`, `'train-toy'`). */
  name: string;
  /** Steps already done (a resumed run starts here). */
  start: number;
  /** Steps the run goes to. */
  total: number;
  /** Checkpoint after every this many steps done (0: only at the end and when stopped). Default 0. */
  checkpointEvery?: number;
  /** Writes a checkpoint holding `done` steps and returns where it is; omitted: the run keeps no checkpoints. */
  checkpoint?: (done: number) => Promise<CheckpointRef> | CheckpointRef;
  /** The checkpoint the run starts from (a resume), named by the divergence error until a newer one is written. */
  lastCheckpoint?: CheckpointRef | null;
  /** Stop (after a checkpoint) once this many seconds have passed since `startedAt`. */
  timeBudgetSeconds?: number;
  /** The clock the time budget counts from (ms since the epoch). Default: construction. */
  startedAt?: number;
  /** Stop (after a checkpoint) at the end of the step during which this signal aborted. */
  signal?: AbortSignal;
  /** Check the signal before a step too, so an already aborted signal takes no step (default false: after). */
  checkSignalBefore?: boolean;
  /** Appends one JSON line per step: `logFields`, `step` (steps done), the values, `seconds`. */
  lossLog?: LossLog;
  /** Fields written first on every loss-log line (e.g. `{ phase: 'vae' }`). */
  logFields?: Record<string, unknown>;
  /** Labels of the values in the divergence message (`{ total: 'total loss' }`); others appear by key. */
  labels?: Record<string, string>;
  /** What the update changes, for the divergence message (default `'the model'`). */
  updates?: string;
  /** Advice after the last good checkpoint in the divergence message (default `'resume from it with a lower learning rate'`). */
  advice?: string;
  /** Called after every step; returning false stops the run (after a checkpoint when one is due). */
  onStep?: (p: RunProgress) => boolean | void | Promise<boolean | void>;
}

/** What {@link TrainingRun.run} did. */
export interface RunResult {
  /** Steps done at the end (the start included). */
  done: number;
  /** Why it returned. */
  stop: RunStop;
  /** Mean seconds per step of this process (NaN when no step ran). */
  secondsPerStep: number;
  /** The last checkpoint, or null. */
  lastCheckpoint: CheckpointRef | null;
}

const yieldToEventLoop = (): Promise<void> => new Promise((resolve) => setImmediate(resolve));

/**
 * A training run: `run(step)` calls the trainer's step function for steps `start … total − 1`, checks its values
 * (a non-finite one stops with a {@link DivergedError} naming the last good checkpoint, before that step's update),
 * applies the update, logs the values, reports progress with an ETA, and writes checkpoints every
 * `checkpointEvery` steps, at the end and when the time budget, the signal or `onStep` stops it. Everything random
 * must be a function of (seed, step) in the step function for a resumed run to equal an uninterrupted one.
 */
export class TrainingRun {
  private readonly o: TrainingRunOptions;
  private readonly startedAt: number;
  private last: CheckpointRef | null;
  private readonly times: number[] = [];

  constructor(options: TrainingRunOptions) {
    const o = options;
    nonNegativeInt(o.name, 'start', o.start);
    nonNegativeInt(o.name, 'total', o.total);
    nonNegativeInt(o.name, 'checkpointEvery', o.checkpointEvery ?? 0);
    if (o.timeBudgetSeconds !== undefined) positiveNumber(o.name, 'timeBudgetSeconds', o.timeBudgetSeconds);
    this.o = o;
    this.startedAt = o.startedAt ?? Date.now();
    this.last = o.lastCheckpoint ?? null;
  }

  /** The last checkpoint written or resumed from. */
  get lastCheckpoint(): CheckpointRef | null {
    return this.last;
  }

  /** Mean seconds per step so far (the first step left out once there are two; NaN before any step). */
  get secondsPerStep(): number {
    const steady = this.times.length > 1 ? this.times.slice(1) : this.times;
    return steady.length ? steady.reduce((a, b) => a + b, 0) / steady.length : NaN;
  }

  /** Whether the time budget is spent. */
  overBudget(): boolean {
    return this.o.timeBudgetSeconds !== undefined && Date.now() >= this.startedAt + this.o.timeBudgetSeconds * 1000;
  }

  /** Writes a checkpoint now (when the run has a `checkpoint` function) and remembers it as the last good one. */
  async checkpoint(done: number): Promise<CheckpointRef | null> {
    if (!this.o.checkpoint) return null;
    this.last = await this.o.checkpoint(done);
    return this.last;
  }

  /** Runs the steps (see the class comment). */
  async run(step: (step: number) => StepOutcome | Promise<StepOutcome>): Promise<RunResult> {
    const o = this.o;
    const every = o.checkpointEvery ?? 0;
    let done = o.start;
    let stop: RunStop = 'done';
    while (done < o.total) {
      if (o.checkSignalBefore && o.signal?.aborted) {
        stop = 'signal';
        break;
      }
      const s = done;
      const t0 = Date.now();
      const out = await step(s);
      let values: Record<string, number | null>;
      try {
        values = { ...out.values };
        const bad = Object.entries(values).some(([, v]) => v !== null && !Number.isFinite(v));
        if (bad) throw this.diverged(s, values);
        Object.assign(values, (await out.apply()) ?? {});
      } finally {
        out.dispose?.();
      }
      done = s + 1;
      const seconds = (Date.now() - t0) / 1000;
      this.times.push(seconds);
      o.lossLog?.write({ ...o.logFields, step: done, ...values, seconds });
      let checkpointed = false;
      if (((every > 0 && done % every === 0) || done === o.total) && o.checkpoint) {
        await this.checkpoint(done);
        checkpointed = true;
      }
      const sps = this.secondsPerStep;
      const go = o.onStep ? await o.onStep({ step: s, done, total: o.total, values, seconds, secondsPerStep: sps, etaSeconds: sps * (o.total - done), checkpointed }) : undefined;
      // the budget and the signal are looked at after onStep, so that a callback aborting the signal stops here
      const reason: RunStop | null = this.overBudget() ? 'budget' : o.signal?.aborted ? 'signal' : null;
      if (reason !== null || go === false) {
        if (!checkpointed && o.checkpoint) await this.checkpoint(done);
        if (done < o.total) {
          stop = reason ?? 'callback';
          break;
        }
      }
      await yieldToEventLoop();
    }
    return { done, stop, secondsPerStep: this.secondsPerStep, lastCheckpoint: this.last };
  }

  private diverged(step: number, values: Record<string, number | null>): DivergedError {
    const o = this.o;
    const what = Object.entries(values)
      .filter(([, v]) => v !== null)
      .map(([k, v]) => `${o.labels?.[k] ?? k} ${v}`)
      .join(', ');
    const last = this.last;
    const where = last
      ? `the last good checkpoint (step ${last.step}) is in ${last.dir}: ${o.advice ?? 'resume from it with a lower learning rate'}`
      : o.checkpoint
        ? 'no checkpoint was written yet'
        : 'no checkpoint folder was given, so nothing was saved';
    return new DivergedError(`${o.name}: training diverged at step ${step + 1}: ${what}; stopped before updating ${o.updates ?? 'the model'}; ${where}`, step, last);
  }
}

/** `m:ss` below an hour, `h:mm:ss` above (NaN or negative: `?`). */
export function formatDuration(seconds: number): string {
  if (!Number.isFinite(seconds) || seconds < 0) return '?';
  const s = Math.round(seconds);
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const ss = String(s % 60).padStart(2, '0');
  return h > 0 ? `${h}:${String(m).padStart(2, '0')}:${ss}` : `${m}:${ss}`;
}
