import * as path from 'path';
import * as tf from '@tensorflow/tfjs';
import { attention, initBackend, StateDictError, StateDictSource } from '@ddsjs/nn';
import { f16ToF32, f32ToF16, SafetensorsFile } from '@ddsjs/safetensors';
import { expectGolden, Golden, goldenTensor, readGoldens, relErr, TINY_SD15 } from '../../../test-utils';
import { loadUNetConfig, parseUNetConfig } from '../src/config';
import { UNet2DConditionModel } from '../src/unet';
import { timestepEmbedding } from '../src/blocks';

const UNET_DIR = path.join(TINY_SD15, 'unet');

/** A StateDictSource over an open safetensors file. */
function fileSource(f: SafetensorsFile): StateDictSource {
  return { keys: () => f.keys(), shape: (k) => [...f.info(k).shape], read: (k) => f.readFloat32(k) };
}

async function loadUNet(file: string): Promise<UNet2DConditionModel> {
  const unet = new UNet2DConditionModel(await loadUNetConfig(UNET_DIR));
  const f = await SafetensorsFile.open(path.join(UNET_DIR, file));
  try {
    await unet.loadStateDict(fileSource(f));
  } finally {
    await f.close();
  }
  return unet;
}

/** Golden README tolerances (max(1e-4, 10 × fp64 Δ)). */
const TOL: Record<string, number> = {
  'debug.time_proj': 1e-4,
  'debug.time_embedding': 1e-4,
  'debug.conv_in': 1e-4,
  'debug.down_block_0': 1e-4,
  'debug.down_block_1': 1e-4,
  'debug.down_block_2': 1e-4,
  'debug.down_block_3': 1e-4,
  'debug.mid_block': 1e-4,
  'debug.up_block_0': 1e-3,
  'debug.up_block_1': 5e-4,
  'debug.up_block_2': 2e-4,
  'debug.up_block_3': 1e-4,
  out: 1e-4,
};

// fp16 checkpoint tolerances, set from measurement (wasm, this model): out 3.44e-2, out_b 1.18e-3.
// Rounding every weight to fp16 (2^-11 relative) is amplified by this random tiny UNet as much as fp32
// rounding is (the README's fp64 Δ of `out` is ~100× fp32 epsilon, of `out_b` ~10×), so `out` moves by a
// few 1e-2 and `out_b` by ~1e-3. The test also checks that the fp16 file gives exactly the outputs of the
// fp32 weights rounded to fp16 in memory, so the gap is the weights' and not the loader's. Bounds ≈ 2–4×
// the measurement; a wrong layer gives O(1) errors.
const FP16_TOL = { out: 7e-2, out_b: 5e-3 };

describe('UNet2DConditionModel (tiny-sd15)', () => {
  let g: Record<string, Golden>;
  let unet: UNet2DConditionModel;
  let sample: tf.Tensor4D;
  let context: tf.Tensor3D;
  let timesteps: number[];

  beforeAll(async () => {
    await initBackend('wasm');
    g = await readGoldens('unet');
    unet = await loadUNet('diffusion_pytorch_model.safetensors');
    sample = goldenTensor(g.sample, true) as tf.Tensor4D;
    context = goldenTensor(g.encoder_hidden_states) as tf.Tensor3D;
    timesteps = Array.from(g.timestep.data);
  });

  afterAll(() => {
    sample?.dispose();
    context?.dispose();
    unet?.dispose();
  });

  test('config parsing: attention_head_dim is the head count, scalars broadcast per block', async () => {
    const c = await loadUNetConfig(UNET_DIR);
    expect(c.numAttentionHeads).toEqual([8, 8, 8, 8]);
    expect(c.layersPerBlock).toEqual([2, 2, 2, 2]);
    expect(c.crossAttentionDim).toEqual([32, 32, 32, 32]);
    expect(c.timeEmbedDim).toBe(128);
    expect(c.normEps).toBe(1e-5);
  });

  test('unsupported config values are errors naming the file and field', () => {
    const base = { block_out_channels: [32, 64], down_block_types: ['CrossAttnDownBlock2D', 'DownBlock2D'], up_block_types: ['UpBlock2D', 'CrossAttnUpBlock2D'] };
    expect(() => parseUNetConfig({ ...base, addition_embed_type: 'text_time' }, 'x/config.json')).toThrow(/x\/config\.json.*addition_embed_type/);
    expect(() => parseUNetConfig({ ...base, resnet_time_scale_shift: 'scale_shift' }, 'f')).toThrow(/resnet_time_scale_shift/);
    expect(() => parseUNetConfig({ ...base, class_embed_type: 'timestep' }, 'f')).toThrow(/class_embed_type/);
    expect(() => parseUNetConfig({ ...base, time_cond_proj_dim: 256 }, 'f')).toThrow(/time_cond_proj_dim/);
    expect(() => parseUNetConfig({ ...base, dual_cross_attention: true }, 'f')).toThrow(/dual_cross_attention/);
    expect(() => parseUNetConfig({ ...base, down_block_types: ['SimpleCrossAttnDownBlock2D', 'DownBlock2D'] }, 'f')).toThrow(/SimpleCrossAttnDownBlock2D/);
    expect(() => parseUNetConfig({ ...base, layers_per_block: [1, 2, 3] }, 'f')).toThrow(/layers_per_block.*3 entries/);
    // SD2-style per-block head counts and linear projections parse.
    const sd2 = parseUNetConfig({ ...base, attention_head_dim: [2, 4], use_linear_projection: true, cross_attention_dim: 1024 }, 'f');
    expect(sd2.numAttentionHeads).toEqual([2, 4]);
    expect(sd2.crossAttentionDim).toEqual([1024, 1024]);
    expect(sd2.useLinearProjection).toBe(true);
  });

  test('timestep embedding equals the golden time_proj', async () => {
    const t = tf.tensor1d(timesteps);
    const e = timestepEmbedding(t, 32, true, 0);
    const err = await expectGolden(e, g['debug.time_proj'], 1e-6, 'time_proj', false);
    console.log(`time_proj rel err ${err.toExponential(2)}`);
    tf.dispose([t, e]);
  });

  test('forward matches out and every debug intermediate (fp32)', async () => {
    const t0 = Date.now();
    const { out, debug } = unet.forwardWithIntermediates(sample, timesteps, context);
    await out.data();
    const ms = Date.now() - t0;
    const errs: string[] = [];
    try {
      for (const [name, tol] of Object.entries(TOL)) {
        const actual = name === 'out' ? out : debug[name.slice('debug.'.length)];
        expect(actual).toBeDefined();
        const err = await expectGolden(actual, g[name], tol, name, actual.rank === 4);
        errs.push(`${name} ${err.toExponential(2)} (tol ${tol})`);
      }
    } finally {
      out.dispose();
      tf.dispose(Object.values(debug));
    }
    console.log(`UNet fp32 parity (forwardWithIntermediates ${ms} ms on ${tf.getBackend()}):\n  ${errs.join('\n  ')}`);
  });

  test('timestep as a tensor (one per sample) gives the same output as numbers', async () => {
    const t = tf.tensor1d(timesteps, 'int32');
    const a = unet.forward(sample, t, context);
    await expectGolden(a, g.out, 1e-4, 'out (tensor timesteps)');
    tf.dispose([t, a]);
  });

  test('non-square latents with a scalar timestep (forward_upsample_size path) match out_b', async () => {
    const sb = goldenTensor(g.sample_b, true) as tf.Tensor4D;
    const tb = g.timestep_b.data[0];
    expect(g.timestep_b.shape).toEqual([]);
    const t0 = Date.now();
    const out = unet.forward(sb, tb, context);
    await out.data();
    const ms = Date.now() - t0;
    const err = await expectGolden(out, g.out_b, 1e-4, 'out_b');
    const t1 = tf.scalar(tb, 'int32');
    const out2 = unet.forward(sb, t1, context);
    expect(relErr(await out2.data(), await out.data())).toBe(0);
    console.log(`UNet out_b rel err ${err.toExponential(2)} (forward ${ms} ms)`);
    tf.dispose([sb, out, t1, out2]);
  });

  test('a small attention byte budget (query chunks) gives the same output', async () => {
    const full = unet.forward(sample, timesteps, context);
    unet.setAttentionByteBudget(1024); // 64 keys × 4 bytes → chunks of 4 queries
    try {
      const chunked = unet.forward(sample, timesteps, context);
      // wasm/cpu sum in the same order either way (< 1e-6); webgpu's and tensorflow's matMuls block by shape, so
      // chunks of 4 queries accumulate differently: measured 7.6e-6 with DDSJS_BACKEND=webgpu (compatibility
      // adapter), 9.0e-6 with DDSJS_BACKEND=tensorflow (TF 2.21 CPU, batched attention; 1.2e-5 per-head).
      const tol: Record<string, number> = { webgpu: 2e-5, tensorflow: 2e-5 };
      expect(relErr(await chunked.data(), await full.data())).toBeLessThan(tol[tf.getBackend()] ?? 1e-6);
      await expectGolden(chunked, g.out, 1e-4, 'out (chunked attention)');
      chunked.dispose();
    } finally {
      unet.setAttentionByteBudget(undefined);
      full.dispose();
    }
  });

  test('chunked attention equals unchunked attention, values and gradients', async () => {
    const q = tf.randomNormal([2, 50, 32], 0, 1, 'float32', 1) as tf.Tensor3D;
    const k = tf.randomNormal([2, 77, 32], 0, 1, 'float32', 2) as tf.Tensor3D;
    const v = tf.randomNormal([2, 77, 32], 0, 1, 'float32', 3) as tf.Tensor3D;
    const w = tf.randomNormal([2, 50, 32], 0, 1, 'float32', 4);
    const ref = attention(q, k, v, { heads: 4 });
    const got = attention(q, k, v, { heads: 4, byteBudget: 7 * 77 * 4 }); // 7-row chunks, the last one short
    expect(relErr(await got.data(), await ref.data())).toBeLessThan(1e-6);
    const loss = (fn: (a: tf.Tensor3D, b: tf.Tensor3D, c: tf.Tensor3D) => tf.Tensor) => (a: tf.Tensor, b: tf.Tensor, c: tf.Tensor) =>
      tf.sum(tf.mul(fn(a as tf.Tensor3D, b as tf.Tensor3D, c as tf.Tensor3D), w));
    const gRef = tf.grads(loss((a, b, c) => attention(a, b, c, { heads: 4 })))([q, k, v]);
    const gGot = tf.grads(loss((a, b, c) => attention(a, b, c, { heads: 4, byteBudget: 7 * 77 * 4 })))([q, k, v]);
    for (let i = 0; i < 3; i++) expect(relErr(await gGot[i].data(), await gRef[i].data())).toBeLessThan(1e-5);
    tf.dispose([q, k, v, w, ref, got, ...gRef, ...gGot]);
  });

  test('forward is differentiable w.r.t. the sample (non-square path): directional derivative check', async () => {
    const all = goldenTensor(g.sample_b, true) as tf.Tensor4D;
    const sb = all.slice([0, 0, 0, 0], [1, 8, 12, 4]) as tf.Tensor4D; // one sample keeps the test fast
    const ctx1 = context.slice([0, 0, 0], [1, 77, 32]) as tf.Tensor3D;
    const r = tf.randomNormal(sb.shape, 0, 1, 'float32', 5);
    const d = tf.randomNormal(sb.shape, 0, 1, 'float32', 6);
    const f = (x: tf.Tensor) => tf.sum(tf.mul(unet.forward(x as tf.Tensor4D, 500, ctx1), r)) as tf.Scalar;
    const grad = tf.grad(f)(sb);
    const eps = 1e-2;
    const fp = f(tf.add(sb, tf.mul(d, eps)));
    const fm = f(tf.sub(sb, tf.mul(d, eps)));
    const numeric = ((await fp.data())[0] - (await fm.data())[0]) / (2 * eps);
    const analytic = (await tf.sum(tf.mul(grad, d)).data())[0];
    expect(Math.abs(numeric - analytic)).toBeLessThan(1e-2 * Math.abs(analytic) + 1e-3);
    tf.dispose([all, sb, ctx1, r, d, grad, fp, fm]);
  });

  test('repeated forward does not leak tensors', async () => {
    const warm = unet.forward(sample, timesteps, context);
    warm.dispose();
    const before = tf.memory().numTensors;
    for (let i = 0; i < 3; i++) {
      const o = unet.forward(sample, 500, context);
      await o.data();
      o.dispose();
      const r = unet.forwardWithIntermediates(sample, timesteps, context);
      r.out.dispose();
      tf.dispose(Object.values(r.debug));
    }
    expect(tf.memory().numTensors).toBe(before);
  });

  test('bad inputs are clear errors', () => {
    const nchw = tf.zeros([2, 4, 8, 8]) as tf.Tensor4D; // channels last is 8, not 4
    expect(() => unet.forward(nchw, 10, context)).toThrow(/NHWC/);
    const one = tf.zeros([1, 8, 8, 4]) as tf.Tensor4D;
    expect(() => unet.forward(one, 10, context)).toThrow(/context must be \[1/);
    expect(() => unet.forward(sample, [1, 2, 3], context)).toThrow(/3 timesteps given for a batch of 2/);
    const wide = tf.zeros([2, 77, 16]) as tf.Tensor3D;
    expect(() => unet.forward(sample, 10, wide)).toThrow(/cross_attention_dim/);
    tf.dispose([nchw, one, wide]);
  });

  test('missing and mis-shaped keys give a clear StateDictError', async () => {
    const f = await SafetensorsFile.open(path.join(UNET_DIR, 'diffusion_pytorch_model.safetensors'));
    try {
      const src = fileSource(f);
      const m = new UNet2DConditionModel(await loadUNetConfig(UNET_DIR));
      const dropped = 'mid_block.attentions.0.transformer_blocks.0.attn2.to_k.weight';
      const missing: StateDictSource = { ...src, keys: () => src.keys().filter((k) => k !== dropped) };
      await expect(m.loadStateDict(missing)).rejects.toThrow(new RegExp(`missing keys \\(1\\): ${dropped.replace(/\./g, '\\.')}`));
      const bad = 'down_blocks.0.resnets.0.conv1.weight';
      const misShaped: StateDictSource = { ...src, shape: (k) => (k === bad ? [32, 32, 1, 1] : src.shape(k)) };
      const e = await m.loadStateDict(misShaped).catch((x: unknown) => x);
      expect(e).toBeInstanceOf(StateDictError);
      expect((e as StateDictError).misShaped).toEqual([{ key: bad, expected: [32, 32, 3, 3], got: [32, 32, 1, 1] }]);
      m.dispose();
    } finally {
      await f.close();
    }
  });

  test('offloaded weights (JS memory, streamed per block) give the same output and leak nothing', async () => {
    const off = new UNet2DConditionModel(await loadUNetConfig(UNET_DIR));
    const f = await SafetensorsFile.open(path.join(UNET_DIR, 'diffusion_pytorch_model.safetensors'));
    try {
      const before = tf.memory().numTensors;
      await off.loadStateDictOffloaded(fileSource(f));
      expect(off.isOffloaded).toBe(true);
      expect(tf.memory().numTensors).toBe(before); // nothing resident between forwards
      const ref = unet.forward(sample, timesteps, context);
      for (let i = 0; i < 2; i++) {
        const out = off.forward(sample, timesteps, context);
        expect(relErr(await out.data(), await ref.data())).toBe(0);
        out.dispose();
      }
      expect(tf.memory().numTensors).toBe(before + 1); // only `ref`
      await off.setOffloaded(false);
      expect(tf.memory().numTensors).toBeGreaterThan(before + 600); // weights resident again
      const back = off.forward(sample, timesteps, context);
      expect(relErr(await back.data(), await ref.data())).toBe(0);
      tf.dispose([ref, back]);
    } finally {
      await f.close();
      off.dispose();
    }
  });

  test('fp16 checkpoint (converted to fp32 on read) stays close to the fp32 goldens', async () => {
    const u16 = await loadUNet('diffusion_pytorch_model.fp16.safetensors');
    // The same fp32 weights rounded to fp16 in memory: the fp16 file must give exactly their outputs, which
    // shows that the whole gap to the goldens comes from the rounded weights, not from the loading path.
    const rounded = new UNet2DConditionModel(await loadUNetConfig(UNET_DIR));
    const f = await SafetensorsFile.open(path.join(UNET_DIR, 'diffusion_pytorch_model.safetensors'));
    try {
      const src = fileSource(f);
      await rounded.loadStateDict({ ...src, read: async (k) => f16ToF32(f32ToF16(await src.read(k))) });
      const out = u16.forward(sample, timesteps, context);
      const sb = goldenTensor(g.sample_b, true) as tf.Tensor4D;
      const outB = u16.forward(sb, g.timestep_b.data[0], context);
      const ref = rounded.forward(sample, timesteps, context);
      expect(relErr(await out.data(), await ref.data())).toBeLessThan(1e-6);
      const e1 = await expectGolden(out, g.out, FP16_TOL.out, 'out (fp16 weights)');
      const e2 = await expectGolden(outB, g.out_b, FP16_TOL.out_b, 'out_b (fp16 weights)');
      // The fp16 weights must differ from fp32 ones (otherwise this test checks nothing new).
      expect(e1).toBeGreaterThan(1e-5);
      console.log(`UNet fp16 weights: out rel err ${e1.toExponential(2)}, out_b ${e2.toExponential(2)} (tol ${FP16_TOL.out}, ${FP16_TOL.out_b})`);
      tf.dispose([out, sb, outB, ref]);
    } finally {
      await f.close();
      u16.dispose();
      rounded.dispose();
    }
  });
});
