// Issue 5's measured quality of the embedded toy model (@ddsjs/toy-shapes/model, fp16) — generation on held-out
// captions — and issue 6's shipped toy translator (one-pass translation). DDS vs SDS edits, the paper's claim, are
// in toy-model-edits.test.ts. The tables are printed (they are the ones in docs/notes/2026-12-toy-model-log.md and docs/).
// The thresholds are the targets where the model meets them; where it does not, the tests assert what the
// model does reach (see THRESHOLDS in toy-model-sets.ts) so that a regression fails, and
// docs/notes/2026-12-toy-model-log.md says which targets are unmet.
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { type Translator, loadTranslator } from '@ddsjs/dds';
import { BACKGROUNDS, BACKGROUND_NAMES, colourDistance, defaultTranslatorDir, maskIoU, scenes, segmentShape, toBytes } from '@ddsjs/toy-shapes';
import { ddsOracleAlignment, evaluateGeneration, sceneInput, formatAlignmentTable, formatGenerationLine } from '../src/toy-quality';
import { TOY_TRANSLATOR_TARGET_COLOURS, TOY_TRANSLATOR_TASKS, evaluateToyTranslator, formatToyTranslatorEvaluation } from '../src/toy-translator';
import { GENERATION_SET, THRESHOLDS, TRANSLATOR_SET, useShippedToyModel, log } from './toy-model-sets';

jest.setTimeout(900_000);

const shipped = useShippedToyModel();

describe('the embedded toy model (issue 5)', () => {
  it('generates the colours of held-out captions', async () => {
    const before = tf.memory().numTensors;
    const g = await evaluateGeneration(shipped(), GENERATION_SET);
    expect(tf.memory().numTensors).toBe(before);
    log(formatGenerationLine(g));
    expect(g.cases).toHaveLength(96);
    expect(g.rate).toBeGreaterThanOrEqual(THRESHOLDS.generation);
  });

  it('round-trips pictures of every background through the VAE: shapes kept, no stripe inside the picture', async () => {
    // 240 pictures of scenes(77): per background, the mean IoU of the decoded shape with the true mask, and per
    // column the mean RGB distance from the background outside the shape. The decoder before its last fine-tune
    // ("The decoder fine-tune" in docs/notes/2026-12-toy-model-log.md) drew a magenta stripe near the right edge of gray
    // pictures (columns 59–60: 42) and kept gray shapes worse (IoU 0.785); now 0.835 and ≤ 10 there.
    const sd = shipped();
    const before = tf.memory().numTensors;
    const pics = scenes(77, 240, { split: 'all' });
    const iou: Record<string, number[]> = {};
    const cols: Record<string, { sum: Float64Array; n: Float64Array }> = {};
    for (let i = 0; i < pics.length; i += 8) {
      const chunk = pics.slice(i, i + 8);
      const x = tf.tidy(() => tf.concat(chunk.map((p) => sceneInput(p))));
      const y = tf.tidy(() => sd.decodeLatents(sd.encodeImage(x)));
      const data = (await y.data()) as Float32Array;
      tf.dispose([x, y]);
      chunk.forEach((p, j) => {
        const n = p.width * p.height * 3;
        const b = toBytes(data.subarray(j * n, (j + 1) * n));
        const bg = p.spec.background;
        (iou[bg] ??= []).push(maskIoU(segmentShape(b, p.width, p.height).mask, p.mask));
        const c = (cols[bg] ??= { sum: new Float64Array(p.width), n: new Float64Array(p.width) });
        for (let r = 0; r < p.height; r++) {
          for (let q = 0; q < p.width; q++) {
            const k = r * p.width + q;
            if (p.mask[k]) continue;
            c.sum[q] += colourDistance([b[k * 3], b[k * 3 + 1], b[k * 3 + 2]], BACKGROUNDS[bg]);
            c.n[q]++;
          }
        }
      });
    }
    expect(tf.memory().numTensors).toBe(before);
    for (const bg of BACKGROUND_NAMES) {
      const m = iou[bg].reduce((a, v) => a + v, 0) / iou[bg].length;
      const profile = Array.from(cols[bg].sum, (v, q) => v / cols[bg].n[q]);
      const inner = Math.max(...profile.slice(1, -1)); // the outermost columns are a zero-padding edge on every background
      log(`VAE round trip, ${bg} (${iou[bg].length} pictures): mean IoU ${m.toFixed(3)}, largest column distance inside ${inner.toFixed(1)}`);
      expect(m).toBeGreaterThanOrEqual(0.8);
      expect(inner).toBeLessThan(30);
    }
  });

  it('points DDS at the true edit from the source, and its gradient shrinks at the true edit', () => {
    // The true edit Δ = encode(the scene in the target colour) − encode(the scene) is known in this world; see
    // "Why the shape grows" in docs/notes/2026-12-toy-model-log.md for the full table.
    const opts = { n: 3, timesteps: [150, 300], noises: 2 };
    const before = tf.memory().numTensors;
    const atSource = ddsOracleAlignment(shipped(), opts);
    const atTrue = ddsOracleAlignment(shipped(), { ...opts, at: 'oracle' });
    expect(tf.memory().numTensors).toBe(before);
    log(formatAlignmentTable(atSource));
    log(formatAlignmentTable(atTrue));
    for (const [i, r] of atSource.entries()) {
      expect(r.cosine).toBeGreaterThan(0.7); // the first step of every edit heads for the true edit
      expect(r.outsideFraction).toBeLessThan(0.15);
      expect(atTrue[i].norm).toBeLessThan(r.norm / 2); // near the true edit the gradient is far smaller…
      expect(atTrue[i].outsideFraction).toBeGreaterThan(r.outsideFraction); // …but leaks outside the shape more
    }
  });
});

describe('the shipped toy translator (issue 26: one source domain, four tasks)', () => {
  let translator: Translator;
  beforeAll(async () => {
    const dir = defaultTranslatorDir();
    if (!dir) throw new Error('the toy translator is missing from packages/toy-shapes/translator');
    translator = await loadTranslator(dir, shipped());
  });
  afterAll(() => translator?.dispose());

  it('names its teacher by package, not by the path of the checkout it was trained in', () => {
    // dds translate loads a recorded teacher folder that exists; a trainer's absolute path would point another
    // checkout at the wrong (or an fp32-less) model.
    const meta = JSON.parse(fs.readFileSync(path.join(defaultTranslatorDir()!, 'translator.json'), 'utf8'));
    expect(meta.teacher.source).toBe('@ddsjs/toy-shapes/model');
  });

  it('is the multi-task network: red shapes → green, blue, yellow, purple, stored in float16', async () => {
    expect(translator.tasks).toEqual(TOY_TRANSLATOR_TASKS);
    const { SafetensorsFile } = await import('@ddsjs/safetensors');
    const f = await SafetensorsFile.open(path.join(defaultTranslatorDir()!, 'diffusion_pytorch_model.safetensors'));
    try {
      expect(new Set(f.keys().map((k) => f.info(k).dtype))).toEqual(new Set(['F16']));
    } finally {
      await f.close();
    }
  });

  it('follows its task on held-out source pictures: each task\'s colour as often as per-image DDS, outputs differ across tasks', async () => {
    const before = tf.memory().numTensors;
    const e = await evaluateToyTranslator(shipped(), translator, { ...TRANSLATOR_SET, ddsSteps: 0 });
    expect(tf.memory().numTensors).toBe(before);
    log(formatToyTranslatorEvaluation(e));
    const [r] = e.reports;
    expect(r.cases).toHaveLength(TRANSLATOR_SET.pictures * 4);
    expect(e.perTask.map((t) => t.method)).toEqual(TOY_TRANSLATOR_TARGET_COLOURS.map((c) => `translator (1 pass) → ${c} (${TRANSLATOR_SET.pictures})`));
    expect(e.perTask.filter((t) => t.successRate < THRESHOLDS.translatorTaskSuccess).map((t) => `${t.method}: ${t.successRate}`)).toEqual([]);
    expect(r.successRate).toBeGreaterThanOrEqual(THRESHOLDS.translatorTaskOverall);
    expect(r.meanIoU).toBeGreaterThanOrEqual(THRESHOLDS.translatorMeanIoU);
    expect(r.meanEditBackgroundChange).toBeLessThan(THRESHOLDS.translatorEditBackgroundChange);
    // The defect of issue 26: the same output whatever the task. Every picture's outputs must differ across tasks.
    const [sens] = e.sensitivity;
    expect(sens.minPicturePairwiseChange).toBeGreaterThan(THRESHOLDS.translatorMinTaskChange);
    expect(sens.meanDistinctColours).toBeGreaterThanOrEqual(THRESHOLDS.translatorDistinctColours);
  });
});
