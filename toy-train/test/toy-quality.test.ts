// The measurement harness of issue 5 (`dds-toy eval`): its tasks, reports and table, exercised end to end on
// the tiny random fixture model (the quality thresholds themselves need the trained toy model, which has not shipped).
import * as tf from '@tensorflow/tfjs';
import { initBackend } from '@ddsjs/nn';
import { type StableDiffusion, loadStableDiffusion } from '@ddsjs/sd';
import { BACKGROUNDS, COLOUR_NAMES, caption, nearestColour, parseCaption, scenes } from '@ddsjs/toy-shapes';
import { TINY_SD15 } from '../../test-utils';
import { BACKGROUND_CHANGE_LIMIT, ddsOracleAlignment, editTasks, evaluateEdits, evaluateGeneration, formatEditTable, formatGenerationLine, reportsByBackground, summariseEdits } from '../src/toy-quality';
import {
  TOY_TRANSLATOR_SOURCE_CAPTIONS,
  TOY_TRANSLATOR_TARGET_COLOURS,
  TOY_TRANSLATOR_TASKS,
  captionScenes,
  colourScenes,
  formatConfusion,
  sourceDomainScenes,
  taskConfusion,
  taskSensitivity,
  toyTaskPrompt,
  toyTranslatorEditTasks,
} from '../src/toy-translator';
import type { EditCase } from '../src/toy-quality';

jest.setTimeout(300_000);

let sd: StableDiffusion;
beforeAll(async () => {
  await initBackend('wasm', { quiet: true });
  sd = await loadStableDiffusion(TINY_SD15);
});
afterAll(() => sd?.dispose());

describe('editTasks', () => {
  it('is deterministic and always asks for another colour of the same shape on the same background', () => {
    const a = editTasks(12, 7);
    expect(a.map((t) => t.target)).toEqual(editTasks(12, 7).map((t) => t.target));
    expect(editTasks(12, 8).map((t) => t.target)).not.toEqual(a.map((t) => t.target));
    for (const t of a) {
      expect(COLOUR_NAMES).toContain(t.want);
      expect(t.want).not.toBe(t.scene.spec.colour);
      expect(parseCaption(t.target)).toEqual({ colour: t.want, shape: t.scene.spec.shape, background: t.scene.spec.background });
      expect(t.source).toBe(t.scene.caption);
    }
  });
});

describe('ddsOracleAlignment on the tiny fixture model', () => {
  it('gives one bounded row per timestep, is deterministic, leaks no tensors and rejects bad options', () => {
    const before = tf.memory().numTensors;
    const a = ddsOracleAlignment(sd, { n: 2, timesteps: [100, 800], noises: 2 });
    expect(tf.memory().numTensors).toBe(before);
    expect(a.map((r) => r.timestep)).toEqual([100, 800]);
    for (const r of a) {
      expect(Math.abs(r.cosine)).toBeLessThanOrEqual(1 + 1e-6);
      for (const f of [r.outsideFraction, r.trueEditOutsideFraction]) expect(f >= 0 && f <= 1).toBe(true);
      expect(r.norm).toBeGreaterThan(0);
    }
    expect(ddsOracleAlignment(sd, { n: 2, timesteps: [100, 800], noises: 2 })).toEqual(a);
    const o = ddsOracleAlignment(sd, { n: 2, timesteps: [100], noises: 1, at: 'oracle' });
    expect(o[0].trueEditOutsideFraction).toBeCloseTo(a[0].trueEditOutsideFraction, 6);
    expect(() => ddsOracleAlignment(sd, { n: 1, noises: 0 })).toThrow(/noises must be a positive integer/);
    expect(() => ddsOracleAlignment(sd, { tasks: [] })).toThrow(/no pictures/);
    expect(() => ddsOracleAlignment(sd, { n: 1, at: 'x' as 'source' })).toThrow(/at must be 'source' or 'oracle'/);
  });
});

describe('evaluateEdits / evaluateGeneration on the tiny fixture model', () => {
  it('measure every case, aggregate consistently and leak no tensors', async () => {
    const before = tf.memory().numTensors;
    const seen: number[] = [];
    const r = await evaluateEdits(sd, { method: 'dds', n: 2, steps: 2, onCase: (_c, done) => seen.push(done) });
    expect(tf.memory().numTensors).toBe(before);
    expect(seen).toEqual([1, 2]);
    expect(r.cases).toHaveLength(2);
    for (const c of r.cases) {
      expect(c.iou).toBeGreaterThanOrEqual(0);
      expect(c.iou).toBeLessThanOrEqual(1);
      expect(c.backgroundChange).toBeGreaterThanOrEqual(0);
      expect(c.success).toBe(c.got === c.want);
    }
    expect(r.successRate).toBe(r.cases.filter((c) => c.success).length / 2);
    expect(r.meanIoU).toBeCloseTo((r.cases[0].iou + r.cases[1].iou) / 2, 12);
    expect(r.backgroundKeptRate).toBe(r.cases.filter((c) => c.editBackgroundChange < BACKGROUND_CHANGE_LIMIT).length / 2);
    const table = formatEditTable([r, { ...r, method: 'SDS' }]);
    expect(table.split('\n').filter((l) => l.startsWith('| DDS') || l.startsWith('| SDS'))).toHaveLength(2);

    const g = await evaluateGeneration(sd, { prompts: ['a red circle on a white background'], seedsPerPrompt: 2, steps: 2 });
    expect(tf.memory().numTensors).toBe(before);
    expect(g.cases.map((c) => c.seed)).toEqual([0, 1]);
    expect(g.rate).toBe(g.cases.filter((c) => c.ok).length / 2);
    expect(formatGenerationLine(g)).toMatch(/^generation on 2 pictures/);
    await expect(evaluateGeneration(sd, { prompts: ['a photo of a cat'] })).rejects.toThrow(/not a caption of the toy world/);
    const v = await evaluateGeneration(sd, { prompts: ['a red circle on a white background'], seedsPerPrompt: 2, steps: 2, firstSeed: 2 });
    expect(v.cases.map((c) => c.seed)).toEqual([2, 3]);
    await expect(evaluateGeneration(sd, { prompts: ['a red circle on a white background'], firstSeed: -1 })).rejects.toThrow(/firstSeed must be a non-negative integer/);
  });

  it('dds-toy eval rejects bad flags naming them, before loading a model', async () => {
    const { runEvalToyCommand } = await import('../src/commands/eval-toy');
    await expect(runEvalToyCommand(['--gen-seed=-1'])).rejects.toThrow(/--gen-seed must be a non-negative integer, got '-1'/);
    await expect(runEvalToyCommand(['--edits', '0'])).rejects.toThrow(/--edits must be a positive integer/);
    await expect(runEvalToyCommand(['--gen-seeds', '1.5'])).rejects.toThrow(/--gen-seeds must be a positive integer/);
    await expect(runEvalToyCommand(['--gen-guidance', 'x'])).rejects.toThrow(/--gen-guidance must be a non-negative number, got 'x'/);
    await expect(runEvalToyCommand(['--gen-steps', '0'])).rejects.toThrow(/--gen-steps must be a positive integer/);
    await expect(runEvalToyCommand(['--variant', 'fp32'])).rejects.toThrow(/--variant must be fp16, got 'fp32'/);
    await expect(runEvalToyCommand(['--bogus'])).rejects.toThrow(/eval: unknown option '--bogus'/);
    await expect(runEvalToyCommand(['--methods', 'dds,vsd'])).rejects.toThrow(/--methods takes dds, sds, nfsd, csd, pds, flowedit, got 'vsd'/);
    await expect(runEvalToyCommand(['--guidance', 'x'])).rejects.toThrow(/--guidance must be a non-negative number, got 'x'/);
  });
});

describe('custom editors and the translator tasks', () => {
  it('captionScenes draws pictures of exactly one caption, deterministically', () => {
    const a = captionScenes('a blue triangle on a black background', 6, 3);
    expect(a.map((s) => s.caption)).toEqual(new Array(6).fill('a blue triangle on a black background'));
    expect(a.map((s) => s.spec.cx)).toEqual(captionScenes('a blue triangle on a black background', 6, 3).map((s) => s.spec.cx));
    expect(new Set(a.map((s) => s.spec.cx)).size).toBe(6);
    expect(() => captionScenes('a photo of a cat', 1, 0)).toThrow(/not a toy-world caption/);
  });

  it('the multi-task tasks: one source domain (12 red captions), four target colours on every picture', () => {
    expect(TOY_TRANSLATOR_SOURCE_CAPTIONS).toHaveLength(12);
    expect(TOY_TRANSLATOR_TASKS).toHaveLength(48);
    expect(new Set(TOY_TRANSLATOR_TASKS.map((t) => t.source))).toEqual(new Set(TOY_TRANSLATOR_SOURCE_CAPTIONS));
    for (const t of TOY_TRANSLATOR_TASKS) {
      const [s, g] = [parseCaption(t.source)!, parseCaption(t.target)!];
      expect(s.colour).toBe('red');
      expect(TOY_TRANSLATOR_TARGET_COLOURS).toContain(g.colour);
      expect([g.shape, g.background]).toEqual([s.shape, s.background]);
    }
    expect(toyTaskPrompt('a red square on a pink background', 'blue')).toBe('a blue square on a pink background');
    expect(() => toyTaskPrompt('a photo of a cat', 'blue')).toThrow(/not a toy-world caption/);
  });

  it('held-out source pictures: every caption once per 12, deterministic, each under every task', () => {
    const a = sourceDomainScenes(24, 4321);
    expect(new Set(a.slice(0, 12).map((p) => p.caption))).toEqual(new Set(TOY_TRANSLATOR_SOURCE_CAPTIONS));
    expect(sourceDomainScenes(24, 4321).map((p) => p.spec.cx)).toEqual(a.map((p) => p.spec.cx));
    expect(sourceDomainScenes(12, 999).map((p) => p.spec.cx)).not.toEqual(a.slice(0, 12).map((p) => p.spec.cx));
    const t = toyTranslatorEditTasks(a.slice(0, 2));
    expect(t.map((x) => x.want)).toEqual([...TOY_TRANSLATOR_TARGET_COLOURS, ...TOY_TRANSLATOR_TARGET_COLOURS]);
    for (const x of t) expect(x.target).toBe(toyTaskPrompt(x.scene.caption, x.want));
    const o = colourScenes(5, 1, ['green', 'blue']);
    expect(o.map((p) => p.spec.colour)).toEqual(['green', 'blue', 'green', 'blue', 'green']);
  });

  it('task sensitivity and the confusion matrix: a network that ignores its task scores zero', () => {
    const mk = (want: string, got: string | null, erased = false) => ({ want, got, erased }) as unknown as EditCase;
    const colours = ['green', 'blue'] as const;
    // Picture 1 follows both tasks; picture 2 gives the same green whatever the task (the issue-26 defect).
    const cases = [mk('green', 'green'), mk('blue', 'blue'), mk('green', 'green'), mk('blue', 'green')];
    const same = new Uint8Array([10, 10, 10]);
    const s = taskSensitivity('t', cases, 2, [new Uint8Array([0, 0, 0]), new Uint8Array([255, 0, 0]), same, same]);
    expect(s.meanPairwiseChange).toBeCloseTo((1 / 3 + 0) / 2, 10);
    expect(s.minPicturePairwiseChange).toBe(0);
    expect(s.allDistinctRate).toBe(0.5);
    expect(s.meanDistinctColours).toBe(1.5);
    expect(Number.isNaN(taskSensitivity('dds', cases, 2).meanPairwiseChange)).toBe(true);
    expect(() => taskSensitivity('t', cases, 3)).toThrow(/not whole pictures/);
    const c = taskConfusion({ method: 't', cases: [...cases, mk('blue', null, true)] } as never, [...colours]);
    expect(c.counts).toEqual({ green: { green: 2 }, blue: { blue: 1, green: 1, erased: 1 } });
    expect(formatConfusion(c)).toMatch(/^\| → blue \| 1 \| \*\*1\*\* \| 1 \|$/m);
  });

  it('an identity editor measures as: colour not reached, shape kept, background untouched', async () => {
    const before = tf.memory().numTensors;
    const r = await evaluateEdits(sd, {
      tasks: toyTranslatorEditTasks(sourceDomainScenes(2, 5)),
      method: { label: 'identity', edit: (x) => tf.tidy(() => tf.div(tf.add(x, 1), 2) as tf.Tensor4D) },
    });
    expect(tf.memory().numTensors).toBe(before);
    expect(r.method).toBe('identity');
    expect(r.successRate).toBe(0);
    for (const c of r.cases) {
      expect(c.got).toBe(parseCaption(c.source)!.colour);
      expect(c.erased).toBe(false);
      expect(c.iou).toBeGreaterThan(0.95);
      expect(c.backgroundChange).toBeLessThan(0.003);
    }
    expect(formatEditTable([r])).toMatch(/^\| identity \| 0% \| 100% \|/m);
  });

  it('an editor that erases the shape is never a success, even where the background is nearest the target colour', async () => {
    // Gray's nearest shape colour is purple (distance 103): before EditCase.erased, painting the shape over with the
    // background counted as reaching "purple". Two gray pictures, target purple, the shape painted with the background.
    expect(nearestColour(BACKGROUNDS.gray).name).toBe('purple');
    const tasks = scenes(31, 40, { split: 'all' })
      .filter((p) => p.spec.background === 'gray' && p.spec.colour !== 'purple')
      .slice(0, 2)
      .map((p) => ({ scene: p, want: 'purple' as const, source: p.caption, target: caption('purple', p.spec.shape, 'gray') }));
    expect(tasks).toHaveLength(2);
    const erase = (_x: tf.Tensor4D, t: (typeof tasks)[number]) => {
      const { image, mask, width, height } = t.scene;
      const out = new Float32Array(image.length);
      for (let i = 0; i < image.length; i++) out[i] = (mask[Math.floor(i / 3)] ? BACKGROUNDS.gray[i % 3] : image[i]) / 255;
      return tf.tensor4d(out, [1, height, width, 3]);
    };
    const before = tf.memory().numTensors;
    const r = await evaluateEdits(sd, { tasks, method: { label: 'eraser', edit: erase } });
    expect(tf.memory().numTensors).toBe(before);
    for (const c of r.cases) expect([c.erased, c.got, c.success]).toEqual([true, null, false]);
    expect([r.successRate, r.erasedRate]).toEqual([0, 1]);
    expect(formatEditTable([r])).toMatch(/^\| eraser \| 0% \| 0% \| 100% \|/m);    const [gray, ...rest] = reportsByBackground(r);
    expect(rest).toHaveLength(0);
    expect(gray.method).toBe('eraser on gray (2)');
    expect([gray.successRate, gray.erasedRate, gray.meanIoU]).toEqual([r.successRate, r.erasedRate, r.meanIoU]);
  });

  it('reportsByBackground splits a report by the pictures\' backgrounds and its rows add up to the whole', () => {
    const mk = (background: 'white' | 'gray' | 'black', success: boolean, iou: number) => ({
      source: 's', target: 't', background, want: 'red' as const, got: success ? ('red' as const) : null, erased: !success,
      success, iou, backgroundChange: 0.01, editBackgroundChange: 0.02, roundTripBackgroundChange: 0.01, seconds: 2,
    });
    const all = summariseEdits('DDS', [mk('gray', false, 0.1), mk('white', true, 0.8), mk('gray', true, 0.5), mk('black', true, 0.9)]);
    expect([all.successRate, all.erasedRate, all.meanIoU, all.shapeKeptRate, all.secondsPerEdit]).toEqual([0.75, 0.25, 0.575, 0.5, 2]);
    const parts = reportsByBackground(all);
    expect(parts.map((p) => p.method)).toEqual(['DDS on white (1)', 'DDS on black (1)', 'DDS on gray (2)']);
    expect(parts[2].successRate).toBe(0.5);
    expect(parts[2].meanIoU).toBeCloseTo(0.3, 12);
    expect(parts.reduce((a, p) => a + p.cases.length * p.meanIoU, 0) / 4).toBeCloseTo(all.meanIoU, 12);
    expect(formatEditTable(parts)).toMatch(/^\| DDS on gray \(2\) \| 50% \| 0% \| 50% \| 0\.30 \|/m);
    expect(formatEditTable(parts)).toMatch(/no edit\): background change 0\.0100\.$/m);
    expect(() => summariseEdits('x', [])).toThrow(/no cases/);
  });
});

describe('dds-toy train-translator / eval-translator (on the tiny fixture model)', () => {
  it('trains the 48 toy tasks, resumes, and measures the result', async () => {
    const os = await import('node:os');
    const fs = await import('node:fs');
    const path = await import('node:path');
    const { runTrainToyTranslatorCommand, runEvalToyTranslatorCommand } = await import('../src/commands/toy-translator');
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'toy-translator-'));
    try {
      const out: string[] = [];
      const args = [TINY_SD15, '--out', dir, '--pictures', '1', '--batch', '1', '--checkpoint-every', '0', '--warmup', '4'];
      expect(await runTrainToyTranslatorCommand([...args, '--steps', '1'], (s) => out.push(s))).toBe(0);
      const meta = () => JSON.parse(fs.readFileSync(path.join(dir, 'translator.json'), 'utf8'));
      expect(meta().tasks).toEqual(TOY_TRANSLATOR_TASKS);
      expect(meta().training.step).toBe(1);
      expect(meta().training.options.guidanceWarmup).toEqual({ steps: 4, from: 1 });
      expect(await runTrainToyTranslatorCommand([...args, '--steps', '2'], (s) => out.push(s))).toBe(0);
      expect(meta().training.step).toBe(2);
      expect(out.join('\n')).toMatch(/2 steps in .* min/);
      const table: string[] = [];
      expect(await runEvalToyTranslatorCommand([dir, '--model', TINY_SD15, '--pictures', '1', '--dds-steps', '0'], (s) => table.push(s))).toBe(0);
      expect(table.join('\n')).toMatch(/^\| translator \(1 pass\) \|/m);
      expect(table.join('\n')).toMatch(/^\| translator \(1 pass\) → purple \(1\) \|/m);
      expect(table.join('\n')).toMatch(/^\| translator \(1 pass\): task ↓ \/ colour reached → \|/m);
      expect(table.join('\n')).toMatch(/^1 held-out pictures of the source domain × 4 tasks/m);
      await expect(runTrainToyTranslatorCommand([TINY_SD15, '--steps', '1'])).rejects.toThrow(/--out DIR is required/);
      await expect(runTrainToyTranslatorCommand([TINY_SD15, '--out', dir, '--lr', '0'])).rejects.toThrow(/--lr must be > 0/);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
