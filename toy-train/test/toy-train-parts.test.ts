import * as tf from '@tensorflow/tfjs';
import { initBackend } from '@ddsjs/nn';
import { AutoencoderKL } from '@ddsjs/sd';
import { parseVaeConfig } from '@ddsjs/sd/internals';
import { captions } from '@ddsjs/toy-shapes';
import { configHash } from '@ddsjs/train';
import { makeBatch, unetDraws } from '../src/toy/data';
import { blockMean, klToStandardNormal, latentColourTerm, latentMaskTerm, lowFrequencyTerm, vaeLoss, weightedReconstruction } from '../src/toy/losses';
import { checkResumeTrajectory, phaseTrajectories, resolveToyOptions, type TrainState } from '../src/toy/options';
import { toyConfigs } from '../src/toy/presets';

beforeAll(async () => {
  await initBackend('cpu', { quiet: true });
});

describe('toy trainer parts', () => {
  it('resolves the preset defaults and rejects bad options naming them', () => {
    const o = resolveToyOptions({ outdir: 'x' }, 'micro');
    expect([o.vaeSteps, o.unetSteps, o.poolSize, o.fixedBatch]).toEqual([20, 20, 64, false]);
    expect(resolveToyOptions({ outdir: 'x' }, 'toy').poolSize).toBe(8192);
    expect(() => resolveToyOptions({ outdir: 'x', unetBatch: 0 }, 'micro')).toThrow(/^train-toy: unetBatch must be a positive integer, got 0$/);
    expect(() => resolveToyOptions({ outdir: 'x', captionDropout: 1 }, 'micro')).toThrow(/captionDropout must be in \[0, 1\), got 1/);
    expect(() => resolveToyOptions({ outdir: 'x', poolBackgroundWeights: { gray: -1 } }, 'micro')).toThrow(/poolBackgroundWeights\.gray must be a non-negative finite number/);
  });

  it('refuses to continue a started phase with other options, naming the differences', () => {
    const o = resolveToyOptions({ outdir: 'x', unetSteps: 10 }, 'micro');
    const t = phaseTrajectories(o, 3);
    const state = { vaeStep: 20, unetStep: 4, trajectory: { unet: { hash: configHash(t.unet), config: t.unet } } } as unknown as TrainState;
    expect(() => checkResumeTrajectory(state, o, t, '/out')).not.toThrow();
    const o2 = resolveToyOptions({ outdir: 'x', unetSteps: 10, unetLr: 1e-3 }, 'micro');
    expect(() => checkResumeTrajectory(state, o2, phaseTrajectories(o2, 3), '/out')).toThrow(
      /^train-toy: the unet phase of \/out was trained with other options \(unetLr: 0\.0005 in the checkpoint, 0\.001 now\); resume with the same options or pass --force/,
    );
    // a finished phase, or a state without a record, is not checked
    const done = resolveToyOptions({ outdir: 'x', unetSteps: 4, unetLr: 1e-3 }, 'micro');
    expect(() => checkResumeTrajectory(state, done, phaseTrajectories(done, 3), '/out')).not.toThrow();
    expect(() => checkResumeTrajectory({ ...state, trajectory: undefined }, o2, phaseTrajectories(o2, 3), '/out')).not.toThrow();
  });

  it('draws batches as pure functions of (seed, step)', () => {
    const table = new Map(captions('train').map((c, i) => [c, i] as [string, number]));
    const a = makeBatch(1, 'vae', 3, 2, 16, table, 0, 60);
    const b = makeBatch(1, 'vae', 3, 2, 16, table, 0, 60);
    expect(Buffer.from(a.pixels.buffer).equals(Buffer.from(b.pixels.buffer))).toBe(true);
    expect(a.timesteps).toEqual(b.timesteps);
    const d1 = unetDraws(5, 2, 4, [7, 8, 9], 0.5, 60, 1000);
    expect(d1).toEqual(unetDraws(5, 2, 4, [7, 8, 9], 0.5, 60, 1000));
    expect(d1.idx.every((i) => i >= 0 && i < 3)).toBe(true);
    expect(d1.ctxIdx.every((c, i) => c === 60 || c === [7, 8, 9][d1.idx[i]])).toBe(true);
    expect(unetDraws(5, 3, 4, [7, 8, 9], 0.5, 60, 1000)).not.toEqual(d1);
  });

  it('the VAE loss adds each weighted term, and leaves no tensor behind inside tidy', async () => {
    const vae = new AutoencoderKL(parseVaeConfig(toyConfigs('micro').vae, 'vae'));
    vae.initialize(1);
    const x = tf.randomUniform([2, 16, 16, 3], -1, 1, 'float32', 3) as tf.Tensor4D;
    const masks = tf.cast(tf.greater(tf.randomUniform([2, 16, 16, 1], 0, 1, 'float32', 4), 0.8), 'float32') as tf.Tensor4D;
    const base = { shapeWeight: 1, klWeight: 0, vaeLowFreqWeight: 0, vaeLatentColourWeight: 0, vaeLatentMaskWeight: 0, vaeLatentMaskLevel: 2 };
    const value = async (w: Partial<typeof base>) => {
      const before = tf.memory().numTensors;
      const t = tf.tidy(() => vaeLoss(vae, x, masks, 9, { ...base, ...w }));
      const v = (await t.data())[0];
      t.dispose();
      expect(tf.memory().numTensors).toBe(before);
      return v;
    };
    const rec = await value({});
    expect(Number.isFinite(rec)).toBe(true);
    expect(await value({})).toBe(rec);
    for (const w of [{ klWeight: 1 }, { vaeLowFreqWeight: 1 }, { vaeLatentColourWeight: 1 }, { vaeLatentMaskWeight: 1 }]) expect(await value(w)).toBeGreaterThan(rec);
    const m = blockMean(tf.ones([1, 4, 4, 1]) as tf.Tensor4D, 2);
    expect(m.shape).toEqual([1, 2, 2, 1]);
    expect(Array.from(await m.data())).toEqual([1, 1, 1, 1]);
    tf.dispose([x, masks, m]);
    vae.dispose();
  });
  it('the VAE loss terms give their hand-computed values and leave no tensor behind', async () => {
    const t4 = (shape: [number, number, number, number], v: number[]) => tf.tensor4d(v, shape);
    const before = tf.memory().numTensors;
    const value = async (t: tf.Scalar) => {
      const v = (await t.data())[0];
      t.dispose();
      return v;
    };
    const y = t4([1, 2, 2, 1], [1, 2, 3, 4]);
    const zeros = tf.zeros([1, 2, 2, 1]) as tf.Tensor4D;
    const mask = t4([1, 2, 2, 1], [1, 0, 0, 0]);
    // weights [3, 1, 1, 1]: mean(err² · w) = (3 + 4 + 9 + 16) / 4 = 8, mean(w) = 1.5
    expect(await value(weightedReconstruction(y, zeros, mask, 3))).toBeCloseTo(8 / 1.5, 5);
    expect(await value(weightedReconstruction(y, zeros, mask, 1))).toBeCloseTo(30 / 4, 5);
    // ½(m² + e^lv − lv − 1) for (m, lv) = (0, 0) and (1, ln 2): 0 and ½(2 − ln 2)
    const klMean = t4([1, 1, 1, 2], [0, 1]);
    const klLogvar = t4([1, 1, 1, 2], [0, Math.log(2)]);
    expect(await value(klToStandardNormal(klMean, klLogvar))).toBeCloseTo((2 - Math.log(2)) / 4, 5);
    // one latent cell over 2×2 pixels of RGB 0.25: target 0.5 per channel; channels 0–2 of the mean 0.5, 0.5, 1.5
    const pixels = tf.fill([1, 2, 2, 3], 0.25) as tf.Tensor4D;
    const colourMean = t4([1, 1, 1, 4], [0.5, 0.5, 1.5, 9]);
    expect(await value(latentColourTerm(colourMean, pixels))).toBeCloseTo(1 / 3, 5);
    // two latent cells: coverage 1 (target +2) and 0.5 (target 0); channel 3 of the mean 2 and 1
    const masks = t4([1, 2, 4, 1], [1, 1, 1, 0, 1, 1, 0, 1]);
    const maskMean = t4([1, 1, 2, 4], [0, 0, 0, 2, 0, 0, 0, 1]);
    expect(await value(latentMaskTerm(maskMean, masks, 2))).toBeCloseTo(0.5, 5);
    // block means of 4×4: a ±1 checkerboard is 0 (what the term ignores), ones are 1
    const checker = tf.tensor4d(Array.from({ length: 16 }, (_, i) => ((i + Math.floor(i / 4)) % 2 ? 1 : -1)), [1, 4, 4, 1]);
    const zeros4 = tf.zeros([1, 4, 4, 1]) as tf.Tensor4D;
    const ones4 = tf.ones([1, 4, 4, 1]) as tf.Tensor4D;
    expect(await value(lowFrequencyTerm(checker, zeros4))).toBeCloseTo(0, 6);
    expect(await value(lowFrequencyTerm(ones4, zeros4))).toBeCloseTo(1, 6);
    tf.dispose([y, zeros, mask, klMean, klLogvar, colourMean, pixels, maskMean, masks, checker, zeros4, ones4]);
    expect(tf.memory().numTensors).toBe(before);
  });
});
