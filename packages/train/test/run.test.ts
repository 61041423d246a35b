import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import {
  checkSameTrajectory,
  configDiff,
  configHash,
  DivergedError,
  finiteNumber,
  formatDuration,
  LossLog,
  nonNegativeInt,
  nonNegativeNumber,
  numberInRange,
  oneOf,
  positiveInt,
  positiveNumber,
  readJsonObject,
  TrainingRun,
  writeJsonAtomic,
} from '../src';

let tmp: string;
beforeAll(() => (tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'ddsjs-run-'))));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

describe('option checks', () => {
  it('return good values and throw one line naming the option', () => {
    expect(positiveInt('t', 'n', 3)).toBe(3);
    expect(() => positiveInt('t', 'batch', 0)).toThrow(/^t: batch must be a positive integer, got 0$/);
    expect(() => nonNegativeInt('t', 'steps', 1.5)).toThrow(/^t: steps must be a non-negative integer, got 1\.5$/);
    expect(() => positiveNumber('t', 'lr', -1)).toThrow(/^t: lr must be a positive finite number, got -1$/);
    expect(() => nonNegativeNumber('t', 'w', Infinity)).toThrow(/^t: w must be a non-negative finite number, got Infinity$/);
    expect(() => finiteNumber('t', 'x', NaN)).toThrow(/^t: x must be a finite number, got NaN$/);
    expect(() => numberInRange('t', 'p', 1, 0, 1, { hi: true })).toThrow(/^t: p must be in \[0, 1\), got 1$/);
    expect(numberInRange('t', 'p', 0, 0, 1, { hi: true })).toBe(0);
    expect(() => oneOf('t', 'kind', 'x', ['a', 'b'])).toThrow(/^t: kind must be one of a, b, got "x"$/);
    expect(() => positiveInt('t', 'n', '3')).toThrow(/got "3"/);
  });
});

describe('checkpoint-folder helpers', () => {
  it('write JSON atomically and read it back with one-line errors', () => {
    const f = path.join(tmp, 'a', 'state.json');
    writeJsonAtomic(f, { step: 3 });
    expect(readJsonObject('t', f)).toEqual({ step: 3 });
    expect(fs.readdirSync(path.dirname(f))).toEqual(['state.json']);
    fs.writeFileSync(f, '{oops');
    expect(() => readJsonObject('t', f)).toThrow(/^t: cannot read .*state\.json: /);
    fs.writeFileSync(f, '[1]');
    expect(() => readJsonObject('t', f)).toThrow(/not a JSON object/);
  });

  it('hash configs by content, not key order, and list the differences of a resume', () => {
    expect(configHash({ a: 1, b: { c: 2, d: 3 } })).toBe(configHash({ b: { d: 3, c: 2 }, a: 1 }));
    expect(configHash({ a: 1 })).not.toBe(configHash({ a: 2 }));
    expect(configHash({ a: 1 })).toMatch(/^[0-9a-f]{16}$/);
    expect(configDiff({ lr: 0.002, seed: 1 }, { lr: 0.001, seed: 1, extra: true })).toEqual(['lr: 0.002 in the checkpoint, 0.001 now', 'extra: undefined in the checkpoint, true now']);
    expect(() => checkSameTrajectory('t', 'dir', { lr: 0.002 }, { lr: 0.001 })).toThrow(/^t: dir was trained with other options \(lr: 0\.002 in the checkpoint, 0\.001 now\); resume with the same options$/);
    expect(() => checkSameTrajectory('t', 'dir', { lr: 1 }, { lr: 1 })).not.toThrow();
  });

  it('formats durations', () => {
    expect([formatDuration(65), formatDuration(3725), formatDuration(NaN)]).toEqual(['1:05', '1:02:05', '?']);
  });
});

/** A fake trainer: the "loss" at step s is `losses[s]`; applying adds the step to `applied`. */
function fake(losses: number[]) {
  const applied: number[] = [];
  const disposed: number[] = [];
  const step = (s: number) => ({ values: { loss: losses[s], gradNorm: null }, apply: () => { applied.push(s); return { lr: 0.1 }; }, dispose: () => void disposed.push(s) });
  return { applied, disposed, step };
}

describe('TrainingRun', () => {
  it('runs the steps, logs each, checkpoints on cadence and at the end, and reports progress with an ETA', async () => {
    const log = new LossLog(path.join(tmp, 'run1', 'loss.jsonl'), true);
    const saved: number[] = [];
    const progress: { done: number; eta: number; checkpointed: boolean }[] = [];
    const f = fake([4, 3, 2, 1, 0.5]);
    const run = new TrainingRun({
      name: 't', start: 0, total: 5, checkpointEvery: 2, lossLog: log, logFields: { phase: 'x' },
      checkpoint: (done) => (saved.push(done), { dir: 'ck', step: done }),
      onStep: (p) => void progress.push({ done: p.done, eta: p.etaSeconds, checkpointed: p.checkpointed }),
    });
    const r = await run.run(f.step);
    log.close();
    expect(r).toMatchObject({ done: 5, stop: 'done', lastCheckpoint: { dir: 'ck', step: 5 } });
    expect(f.applied).toEqual([0, 1, 2, 3, 4]);
    expect(f.disposed).toEqual([0, 1, 2, 3, 4]);
    expect(saved).toEqual([2, 4, 5]);
    expect(progress.map((p) => p.checkpointed)).toEqual([false, true, false, true, true]);
    expect(progress[4].eta).toBe(0);
    expect(progress.every((p) => p.eta >= 0)).toBe(true);
    const lines = fs.readFileSync(path.join(tmp, 'run1', 'loss.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    expect(lines).toHaveLength(5);
    expect(lines[0]).toMatchObject({ phase: 'x', step: 1, loss: 4, gradNorm: null, lr: 0.1 });
    expect(Object.keys(lines[0])).toEqual(['phase', 'step', 'loss', 'gradNorm', 'lr', 'seconds']);
  });

  it('resumes from its start and stops on the signal or the callback after a checkpoint', async () => {
    const ctrl = new AbortController();
    const saved: number[] = [];
    const f = fake([1, 1, 1, 1, 1, 1]);
    const r = await new TrainingRun({
      name: 't', start: 2, total: 6, signal: ctrl.signal, checkpoint: (d) => (saved.push(d), { dir: 'ck', step: d }),
      onStep: (p) => { if (p.done === 3) ctrl.abort(); },
    }).run(f.step);
    expect(r).toMatchObject({ done: 3, stop: 'signal' });
    expect(f.applied).toEqual([2]);
    expect(saved).toEqual([3]);
    const g = fake([1, 1, 1]);
    const r2 = await new TrainingRun({ name: 't', start: 0, total: 3, onStep: (p) => p.done < 2 }).run(g.step);
    expect(r2).toMatchObject({ done: 2, stop: 'callback', lastCheckpoint: null });
    const before = new AbortController();
    before.abort();
    const h = fake([1]);
    expect(await new TrainingRun({ name: 't', start: 0, total: 1, signal: before.signal, checkSignalBefore: true }).run(h.step)).toMatchObject({ done: 0, stop: 'signal' });
    expect(h.applied).toEqual([]);
  });

  it('stops when the time budget is spent', async () => {
    const f = fake([1, 1, 1]);
    const r = await new TrainingRun({ name: 't', start: 0, total: 3, timeBudgetSeconds: 1e-9, startedAt: Date.now() - 1000 }).run(f.step);
    expect(r).toMatchObject({ done: 1, stop: 'budget' });
  });

  it('stops on a non-finite value before the update, naming the last good checkpoint', async () => {
    const f = fake([3, 2, NaN, 1]);
    let err: unknown;
    try {
      await new TrainingRun({
        name: 'trainer', start: 0, total: 4, checkpointEvery: 1, checkpoint: (d) => ({ dir: '/ck', step: d }),
        labels: { loss: 'total loss' }, updates: 'the student', advice: 'try a lower lr',
      }).run(f.step);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(DivergedError);
    const d = err as DivergedError;
    expect(d.message).toBe('trainer: training diverged at step 3: total loss NaN; stopped before updating the student; the last good checkpoint (step 2) is in /ck: try a lower lr');
    expect([d.step, d.lastCheckpoint]).toEqual([2, { dir: '/ck', step: 2 }]);
    expect(f.applied).toEqual([0, 1]);
    expect(f.disposed).toEqual([0, 1, 2]);
    await expect(new TrainingRun({ name: 't', start: 0, total: 1 }).run(fake([Infinity]).step)).rejects.toThrow(/loss Infinity; stopped before updating the model; no checkpoint folder was given/);
  });

  it('rejects bad options naming them', () => {
    expect(() => new TrainingRun({ name: 't', start: -1, total: 1 })).toThrow(/t: start must be a non-negative integer/);
    expect(() => new TrainingRun({ name: 't', start: 0, total: 1, timeBudgetSeconds: 0 })).toThrow(/timeBudgetSeconds must be a positive finite number/);
  });
});
