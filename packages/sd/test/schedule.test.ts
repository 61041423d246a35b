import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import * as tf from '@tensorflow/tfjs';
import { initBackend } from '@ddsjs/nn';
import { Golden, goldenTensor, readGoldens, relErr, TINY_SD15 } from '../../../test-utils';
import {
  addNoise,
  alphaSigma,
  computeAlphasCumprod,
  computeBetas,
  cumprodFloat32,
  linspaceFloat32,
  makeNoiseSchedule,
  modelOutputToEps,
  vToEps,
} from '../src/schedule';
import { DDIMScheduler, ddimTimesteps } from '../src/ddim';
import { loadSchedulerConfig, parseSchedulerConfig, SchedulerConfig } from '../src/scheduler-config';

const CONFIG_FILE = path.join(TINY_SD15, 'scheduler', 'scheduler_config.json');
let g: Record<string, Golden>;
let cfg: SchedulerConfig;

/** Report line for the lead: measured errors. */
const measured: Record<string, string> = {};

beforeAll(async () => {
  await initBackend('wasm');
  g = await readGoldens('scheduler');
  cfg = await loadSchedulerConfig(CONFIG_FILE);
});

afterAll(() => {
  // eslint-disable-next-line no-console
  console.log(`schedule parity: ${JSON.stringify(measured)}`);
});

/** Number of entries that differ bit-for-bit between a float32 table and a golden. */
function mismatches(a: Float32Array, b: Float32Array): number {
  let n = 0;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) n++;
  return n;
}

describe('scheduler config', () => {
  test('fixture PNDM config read as DDIMScheduler.from_config reads it', () => {
    expect(cfg).toMatchObject({
      className: 'PNDMScheduler',
      numTrainTimesteps: 1000,
      betaStart: 0.00085,
      betaEnd: 0.012,
      betaSchedule: 'scaled_linear',
      trainedBetas: null,
      predictionType: 'epsilon',
      stepsOffset: 1,
      setAlphaToOne: false,
      timestepSpacing: 'leading',
      clipSample: false,
      clipSampleRange: 1,
      rescaleBetasZeroSnr: false,
    });
    expect(cfg.source).toBe(CONFIG_FILE);
  });

  test('absent keys take DDIM defaults', () => {
    const d = parseSchedulerConfig({}, 'x.json');
    expect(d).toMatchObject({
      numTrainTimesteps: 1000, betaStart: 0.0001, betaEnd: 0.02, betaSchedule: 'linear', predictionType: 'epsilon',
      stepsOffset: 0, setAlphaToOne: true, timestepSpacing: 'leading', clipSample: true,
    });
  });

  test('model folder and scheduler folder both resolve', async () => {
    expect((await loadSchedulerConfig(TINY_SD15)).source).toBe(CONFIG_FILE);
    expect((await loadSchedulerConfig(path.dirname(CONFIG_FILE))).source).toBe(CONFIG_FILE);
  });

  test('unsupported or malformed values give errors naming file and field', async () => {
    const f = 'sched.json';
    expect(() => parseSchedulerConfig({ beta_schedule: 'foo' }, f)).toThrow(/sched\.json: "beta_schedule" is not supported.*'linear', 'scaled_linear', 'squaredcos_cap_v2'.*"foo"/);
    expect(() => parseSchedulerConfig({ timestep_spacing: 'random' }, f)).toThrow(/sched\.json: "timestep_spacing" is not supported/);
    expect(() => parseSchedulerConfig({ prediction_type: 'x0' }, f)).toThrow(/sched\.json: "prediction_type" is not supported/);
    expect(() => parseSchedulerConfig({ thresholding: true }, f)).toThrow(/sched\.json: "thresholding" is not supported/);
    expect(() => parseSchedulerConfig({ num_train_timesteps: '1000' }, f)).toThrow(/"num_train_timesteps" must be an integer/);
    expect(() => parseSchedulerConfig({ set_alpha_to_one: 1 }, f)).toThrow(/"set_alpha_to_one" must be true or false/);
    expect(() => parseSchedulerConfig({ num_train_timesteps: 3, trained_betas: [0.1, 0.2] }, f)).toThrow(/"trained_betas" must have num_train_timesteps = 3 entries, not 2/);
    expect(() => parseSchedulerConfig([], f)).toThrow(/sched\.json: a scheduler config must be a JSON object/);
    const sampleCfg = parseSchedulerConfig({ prediction_type: 'sample' }, f);
    expect(() => makeNoiseSchedule(sampleCfg, 0.18215)).toThrow(/sched\.json: "prediction_type" 'sample' is not supported for score distillation/);
    expect(() => makeNoiseSchedule(cfg, 0)).toThrow(/scalingFactor must be a positive number/);
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ddsjs-sched-'));
    try {
      fs.writeFileSync(path.join(dir, 'scheduler_config.json'), '{ nope');
      await expect(loadSchedulerConfig(dir)).rejects.toThrow(/scheduler_config\.json: not valid JSON/);
      await expect(loadSchedulerConfig(path.join(dir, 'missing'))).rejects.toThrow(/does not exist/);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('tables vs diffusers goldens', () => {
  test('betas and alphas_cumprod are bit-identical; sqrt tables within 1 ulp', () => {
    const s = makeNoiseSchedule(cfg, 0.18215);
    expect(s.predictionType).toBe('epsilon');
    expect(s.scalingFactor).toBe(0.18215);
    expect(s.numTrainTimesteps).toBe(1000);
    const betaErr = relErr(s.betas, g['betas'].data);
    const acErr = relErr(s.alphasCumprod, g['alphas_cumprod'].data);
    measured.betas = `${mismatches(s.betas, g['betas'].data)} bit mismatches, rel ${betaErr.toExponential(2)}`;
    measured.alphas_cumprod = `${mismatches(s.alphasCumprod, g['alphas_cumprod'].data)} bit mismatches, rel ${acErr.toExponential(2)}`;
    expect(mismatches(s.betas, g['betas'].data)).toBe(0);
    expect(mismatches(s.alphasCumprod, g['alphas_cumprod'].data)).toBe(0);
    const sq = new Float32Array(1000);
    const sq1 = new Float32Array(1000);
    for (let t = 0; t < 1000; t++) {
      const { alpha, sigma } = alphaSigma(s, t);
      sq[t] = alpha;
      sq1[t] = sigma;
    }
    const e1 = relErr(sq, g['sqrt_alphas_cumprod'].data);
    const e2 = relErr(sq1, g['sqrt_one_minus_alphas_cumprod'].data);
    measured.sqrt_alphas_cumprod = e1.toExponential(2);
    measured.sqrt_one_minus_alphas_cumprod = e2.toExponential(2);
    // the reference's float32 sqrt is within 1 ulp of the correctly rounded one we compute (2^-23 ≈ 1.2e-7)
    expect(e1).toBeLessThan(1.2e-7);
    expect(e2).toBeLessThan(1.2e-7);
  });

  test('DDIM timesteps for 10 steps equal the golden ints', () => {
    const ddim = new DDIMScheduler(cfg);
    const ts = ddim.setTimesteps(10);
    expect(ts).toEqual(Array.from(g['ddim_timesteps_10'].data, Math.round));
    expect(ts).toEqual([901, 801, 701, 601, 501, 401, 301, 201, 101, 1]);
  });

  test('DDIM steps fed the golden guided model outputs reproduce every latents_per_step', async () => {
    const ddim = new DDIMScheduler(cfg);
    const ts = ddim.setTimesteps(10);
    const noise = goldenTensor(g['ddim.initial_noise'], true) as tf.Tensor4D;
    const outs = goldenTensor(g['ddim.model_output_guided_per_step'], true) as tf.Tensor5D; // [10,1,8,8,4]
    const refs = goldenTensor(g['ddim.latents_per_step'], true) as tf.Tensor5D;
    // (test-utils' goldenTensor(…, true) keeps its NCHW source tensor alive, so build everything before counting)
    const finalRef = goldenTensor(g['ddim.final_latents'], true);
    const before = tf.memory().numTensors;
    let latents: tf.Tensor4D = noise.clone();
    const errs: number[] = [];
    for (let i = 0; i < ts.length; i++) {
      const eps = tf.tidy(() => tf.squeeze(tf.slice(outs, [i], [1]), [0])) as tf.Tensor4D;
      const ref = tf.tidy(() => tf.squeeze(tf.slice(refs, [i], [1]), [0])) as tf.Tensor4D;
      const next = ddim.step(eps, ts[i], latents);
      expect(next.shape).toEqual([1, 8, 8, 4]);
      errs.push(relErr(await next.data(), await ref.data()));
      latents.dispose();
      eps.dispose();
      ref.dispose();
      latents = next;
    }
    const finalErr = relErr(await latents.data(), await finalRef.data());
    latents.dispose();
    expect(tf.memory().numTensors).toBe(before); // every per-step tensor was released
    finalRef.dispose();
    noise.dispose();
    outs.dispose();
    refs.dispose();
    measured.ddim_latents_per_step = errs.map((e) => e.toExponential(1)).join(',');
    measured.ddim_final_latents = finalErr.toExponential(2);
    for (const e of errs) expect(e).toBeLessThan(1e-5);
    expect(finalErr).toBeLessThan(1e-5);
  });
});

describe('other beta schedules against closed forms', () => {
  test('linear: β_i = start + (end − start)·i/(n−1) to float32 precision', () => {
    const c = parseSchedulerConfig({ beta_schedule: 'linear', beta_start: 0.0001, beta_end: 0.02 }, 'lin.json');
    const b = computeBetas(c);
    expect(b).toHaveLength(1000);
    expect(b[0]).toBe(Math.fround(0.0001));
    expect(b[999]).toBe(Math.fround(0.02));
    let maxRel = 0;
    for (let i = 0; i < 1000; i++) maxRel = Math.max(maxRel, Math.abs(b[i] - (0.0001 + (0.02 - 0.0001) * i / 999)) / b[i]);
    expect(maxRel).toBeLessThan(2e-7);
    // first half is ascending from start, second half descending from end: midpoint continuity
    expect(Math.abs((b[500] - b[499]) / ((0.02 - 0.0001) / 999) - 1)).toBeLessThan(1e-3);
  });

  test('scaled_linear: β_i = (√start + (√end − √start)·i/(n−1))²', () => {
    const b = computeBetas(cfg);
    const a = Math.sqrt(0.00085);
    const e = Math.sqrt(0.012);
    let maxRel = 0;
    for (let i = 0; i < 1000; i++) maxRel = Math.max(maxRel, Math.abs(b[i] - (a + ((e - a) * i) / 999) ** 2) / b[i]);
    expect(maxRel).toBeLessThan(3e-7);
  });

  test('squaredcos_cap_v2: ᾱ_t follows cos²((t/T + 0.008)/1.008 · π/2) / cos²(0.008/1.008 · π/2)', () => {
    const c = parseSchedulerConfig({ beta_schedule: 'squaredcos_cap_v2' }, 'cos.json');
    const b = computeBetas(c);
    const ac = computeAlphasCumprod(b);
    const f = (t: number) => Math.cos(((t + 0.008) / 1.008) * (Math.PI / 2)) ** 2;
    expect(b[999]).toBe(Math.fround(0.999)); // capped at max_beta
    for (const t of [0, 10, 100, 500, 900]) {
      const expected = f((t + 1) / 1000) / f(0);
      expect(Math.abs(ac[t] - expected) / expected).toBeLessThan(2e-5);
    }
  });

  test('trained_betas are used as given (float32)', () => {
    const betas = Array.from({ length: 10 }, (_, i) => 0.01 + 0.01 * i);
    const c = parseSchedulerConfig({ num_train_timesteps: 10, trained_betas: betas, beta_schedule: 'linear' }, 't.json');
    expect(Array.from(computeBetas(c))).toEqual(betas.map(Math.fround));
    const ac = computeAlphasCumprod(computeBetas(c));
    let p = 1;
    for (let i = 0; i < 10; i++) {
      p *= 1 - Math.fround(betas[i]);
      expect(Math.abs(ac[i] - p) / p).toBeLessThan(1e-6);
    }
  });

  test('rescale_betas_zero_snr: ᾱ_T = 0 and ᾱ_0 unchanged', () => {
    const plain = makeNoiseSchedule(cfg, 0.18215).alphasCumprod;
    const c = parseSchedulerConfig({ ...JSON.parse(fs.readFileSync(CONFIG_FILE, 'utf8')), rescale_betas_zero_snr: true }, 'z.json');
    const ac = computeAlphasCumprod(computeBetas(c));
    expect(ac[999]).toBe(0);
    expect(Math.abs(ac[0] - plain[0]) / plain[0]).toBeLessThan(1e-6);
    // √ᾱ is an affine map of the original √ᾱ: (√ᾱ − √ᾱ_T)·√ᾱ_0/(√ᾱ_0 − √ᾱ_T)
    const s0 = Math.sqrt(plain[0]);
    const sT = Math.sqrt(plain[999]);
    for (const t of [100, 500, 900]) {
      const expected = (((Math.sqrt(plain[t]) - sT) * s0) / (s0 - sT)) ** 2;
      expect(Math.abs(ac[t] - expected) / expected).toBeLessThan(1e-5);
    }
  });

  test('helpers: float32 linspace endpoints and cumprod', () => {
    const l = linspaceFloat32(0, 1, 5);
    expect(Array.from(l)).toEqual([0, 0.25, 0.5, 0.75, 1]);
    expect(Array.from(cumprodFloat32([0.5, 0.5, 2]))).toEqual([0.5, 0.25, 0.5]);
  });
});

describe('DDIM timestep spacings (diffusers set_timesteps)', () => {
  test('leading / trailing / linspace', () => {
    const base = { numTrainTimesteps: 1000, stepsOffset: 1 };
    expect(ddimTimesteps({ ...base, timestepSpacing: 'leading' }, 4)).toEqual([751, 501, 251, 1]);
    expect(ddimTimesteps({ ...base, timestepSpacing: 'trailing' }, 4)).toEqual([999, 749, 499, 249]);
    expect(ddimTimesteps({ ...base, timestepSpacing: 'trailing' }, 3)).toEqual([999, 666, 332]);
    expect(ddimTimesteps({ ...base, timestepSpacing: 'linspace' }, 4)).toEqual([999, 666, 333, 0]);
    // np.round is half-to-even: linspace(0, 999, 3) = [0, 499.5, 999] → 500
    expect(ddimTimesteps({ ...base, timestepSpacing: 'linspace' }, 3)).toEqual([999, 500, 0]);
    expect(ddimTimesteps({ ...base, timestepSpacing: 'leading' }, 1)).toEqual([1]);
    expect(() => ddimTimesteps({ ...base, timestepSpacing: 'leading' }, 0)).toThrow(/numInferenceSteps must be an integer in \[1, 1000\]/);
    expect(() => ddimTimesteps({ ...base, timestepSpacing: 'leading' }, 1001)).toThrow(/numInferenceSteps/);
  });
});

describe('DDIM step semantics', () => {
  test('a step at the last timestep uses ᾱ_0 when set_alpha_to_one is false, 1 when true', async () => {
    const sample = tf.tensor4d([0.5, -1, 2, 0.25], [1, 1, 2, 2]);
    const eps = tf.tensor4d([0.1, 0.2, -0.3, 0.4], [1, 1, 2, 2]);
    for (const setAlphaToOne of [false, true]) {
      const ddim = new DDIMScheduler({ ...cfg, setAlphaToOne });
      ddim.setTimesteps(10);
      const out = ddim.step(eps, 1, sample);
      const a = ddim.alphasCumprod[1];
      const ap = setAlphaToOne ? 1 : ddim.alphasCumprod[0];
      const s = await sample.data();
      const e = await eps.data();
      const expected = Array.from(s, (x, i) => Math.sqrt(ap) * ((x - Math.sqrt(1 - a) * e[i]) / Math.sqrt(a)) + Math.sqrt(1 - ap) * e[i]);
      expect(relErr(await out.data(), expected)).toBeLessThan(1e-6);
      out.dispose();
    }
    sample.dispose();
    eps.dispose();
  });

  test('v_prediction: x̂₀ = α·z − σ·v and ε̂ = α·v + σ·z; vToEps agrees', async () => {
    const vcfg: SchedulerConfig = { ...cfg, predictionType: 'v_prediction' };
    const ddim = new DDIMScheduler(vcfg);
    ddim.setTimesteps(10);
    const z = tf.randomNormal([1, 4, 4, 4], 0, 1, 'float32', 1);
    const v = tf.randomNormal([1, 4, 4, 4], 0, 1, 'float32', 2);
    const t = 501;
    const { prevSample, predOriginalSample } = ddim.stepWithPrediction(v, t, z);
    const a = Math.sqrt(ddim.alphasCumprod[t]);
    const sg = Math.sqrt(1 - ddim.alphasCumprod[t]);
    const ap = ddim.alphasCumprod[t - 100];
    const zd = await z.data();
    const vd = await v.data();
    const x0 = Array.from(zd, (x, i) => a * x - sg * vd[i]);
    const epsRef = Array.from(zd, (x, i) => a * vd[i] + sg * x);
    expect(relErr(await predOriginalSample.data(), x0)).toBeLessThan(1e-6);
    expect(relErr(await prevSample.data(), x0.map((x, i) => Math.sqrt(ap) * x + Math.sqrt(1 - ap) * epsRef[i]))).toBeLessThan(1e-6);
    const eps = vToEps(v, z, ddim.alphasCumprod[t]);
    expect(relErr(await eps.data(), epsRef)).toBeLessThan(1e-6);
    const sched = makeNoiseSchedule(vcfg, 0.18215);
    const eps2 = modelOutputToEps(sched, v, z, t);
    expect(Array.from(await eps2.data())).toEqual(Array.from(await eps.data()));
    const eps3 = modelOutputToEps(makeNoiseSchedule(cfg, 0.18215), v, z, t);
    expect(Array.from(await eps3.data())).toEqual(Array.from(vd));
    expect(eps3).not.toBe(v);
    tf.dispose([z, v, prevSample, predOriginalSample, eps, eps2, eps3]);
  });

  test('clip_sample clamps x̂₀; eta > 0 adds σ·noise', async () => {
    const ddim = new DDIMScheduler({ ...cfg, clipSample: true, clipSampleRange: 0.5 });
    ddim.setTimesteps(10);
    const z = tf.fill([1, 2, 2, 1], 3);
    const e = tf.zeros([1, 2, 2, 1]);
    const { predOriginalSample, prevSample } = ddim.stepWithPrediction(e, 901, z);
    expect(Array.from(await predOriginalSample.data())).toEqual([0.5, 0.5, 0.5, 0.5]);
    const noise = tf.ones([1, 2, 2, 1]);
    const withEta = ddim.step(e, 901, z, { eta: 1, varianceNoise: noise });
    const aT = ddim.alphasCumprod[901];
    const aP = ddim.alphasCumprod[801];
    const variance = ((1 - aP) / (1 - aT)) * (1 - aT / aP);
    const expected = Math.sqrt(aP) * 0.5 + Math.sqrt(variance);
    expect(Math.abs((await withEta.data())[0] - expected)).toBeLessThan(1e-6);
    // without eta the noise term is absent and the direction term is 0 here (ε = 0)
    expect(Math.abs((await prevSample.data())[0] - Math.sqrt(aP) * 0.5)).toBeLessThan(1e-6);
    expect(() => ddim.step(e, 901, z, { eta: 1 })).toThrow(/eta > 0 needs opts\.varianceNoise/);
    tf.dispose([z, e, predOriginalSample, prevSample, noise, withEta]);
  });

  test('errors: step before setTimesteps, bad timestep, shape mismatch', () => {
    const ddim = new DDIMScheduler(cfg);
    const a = tf.zeros([1, 2, 2, 4]);
    const b = tf.zeros([1, 2, 2, 3]);
    expect(() => ddim.step(a, 1, a)).toThrow(/call setTimesteps/);
    ddim.setTimesteps(10);
    expect(() => ddim.step(a, 1000, a)).toThrow(/timestep must be an integer in \[0, 999\], got 1000/);
    expect(() => ddim.step(a, 1.5, a)).toThrow(/timestep must be an integer/);
    expect(() => ddim.step(a, 1, b)).toThrow(/modelOutput shape \[1,2,2,4\] differs from sample shape \[1,2,2,3\]/);
    expect(() => alphaSigma(ddim, -1)).toThrow(/alphaSigma: timestep must be an integer/);
    expect(() => vToEps(a, a, 1.5)).toThrow(/alphaCumprodT must be in \[0, 1\]/);
    tf.dispose([a, b]);
  });

  test('addNoise = α·z + σ·ε and no tensor leaks over repeated calls', async () => {
    const ddim = new DDIMScheduler(cfg);
    ddim.setTimesteps(10);
    const z = tf.randomNormal([1, 4, 4, 4], 0, 1, 'float32', 3);
    const n = tf.randomNormal([1, 4, 4, 4], 0, 1, 'float32', 4);
    const { alpha, sigma } = alphaSigma(ddim, 600);
    const zt = ddim.addNoise(z, n, 600);
    const zd = await z.data();
    const nd = await n.data();
    expect(relErr(await zt.data(), Array.from(zd, (x, i) => alpha * x + sigma * nd[i]))).toBeLessThan(1e-6);
    const zt2 = addNoise(makeNoiseSchedule(cfg, 0.18215), z, n, 600);
    expect(Array.from(await zt2.data())).toEqual(Array.from(await zt.data()));
    tf.dispose([zt, zt2]);
    const before = tf.memory().numTensors;
    for (let r = 0; r < 5; r++) {
      tf.dispose(ddim.step(n, 501, z));
      const o = ddim.stepWithPrediction(n, 501, z, { eta: 0.5, varianceNoise: n });
      tf.dispose([o.prevSample, o.predOriginalSample]);
      tf.dispose(vToEps(n, z, 0.5));
      tf.dispose(ddim.addNoise(z, n, 10));
    }
    expect(tf.memory().numTensors).toBe(before);
    tf.dispose([z, n]);
  });
});
