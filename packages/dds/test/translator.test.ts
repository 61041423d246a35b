import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import sharp from 'sharp';
import { initBackend, Module } from '@ddsjs/nn';
import { loadImageForEdit, loadStableDiffusion, StableDiffusion } from '@ddsjs/sd';
import { parseUNetConfig } from '@ddsjs/sd/internals';
import { TINY_SD15 } from '../../../test-utils';
import {
  createTranslator,
  ddsGrad,
  loadTranslator,
  prepareTranslatorData,
  saveTranslator,
  scoreLoss,
  trainTranslator,
  Translator,
  TranslatorDivergedError,
} from '../src';
import {
  ddsLoss,
  guidanceAtStep,
  TrainTranslatorOptions,
  translatorGrads,
  TranslatorStepInfo,
  unetConfigToJson,
} from '../src/internals';

// The tiny fixture model (UNet block_out_channels [32,64,64,64], cross_attention_dim 32) at 8×8 latents (64×64
// pictures): every training step here is a student forward + backward and one 4-row teacher forward.

// Generous: a training step takes ~1 s on an idle 2-core machine but much longer on a busy one.
jest.setTimeout(600_000);

const RED = 'a red circle';
/** A smaller student (two levels, one resnet per block): a third of the tiny UNet's compute, for the mechanics tests. */
const SMALL = {
  block_out_channels: [32, 64],
  down_block_types: ['CrossAttnDownBlock2D', 'DownBlock2D'],
  up_block_types: ['UpBlock2D', 'CrossAttnUpBlock2D'],
  layers_per_block: 1,
};
const TASKS = [
  { source: RED, target: 'a green circle' },
  { source: RED, target: 'a blue square' },
];

let sd: StableDiffusion;
let tmp: string;
let latents: tf.Tensor4D; // [4, 8, 8, 4] source latents

async function moduleHash(m: Module): Promise<string> {
  const h = createHash('sha256');
  for (const [n, p] of m.namedParameters()) {
    const d = (await p.value.data()) as Float32Array;
    h.update(n);
    h.update(new Uint8Array(d.buffer, d.byteOffset, d.byteLength));
  }
  return h.digest('hex');
}

async function teacherHash(): Promise<string> {
  return [await moduleHash(sd.unet), await moduleHash(sd.vae), await moduleHash(sd.textEncoder)].join(':');
}

async function values(t: tf.Tensor): Promise<Float32Array> {
  return (await t.data()) as Float32Array;
}

function opts(extra: Partial<TrainTranslatorOptions> = {}): TrainTranslatorOptions {
  return { tasks: TASKS, data: { latents, prompt: RED }, steps: 2, lr: 1e-3, seed: 7, ...extra };
}

beforeAll(async () => {
  await initBackend('wasm', { quiet: true });
  sd = await loadStableDiffusion(TINY_SD15);
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'ddsjs-translator-'));
  latents = tf.mul(tf.randomNormal([4, 8, 8, 4], 0, 1, 'float32', 3), 0.8) as tf.Tensor4D;
});

afterAll(() => {
  latents?.dispose();
  sd?.dispose();
  if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
});

describe('the student network', () => {
  it('writes the teacher UNet config as diffusers JSON that parses back to the same config', () => {
    const back = parseUNetConfig(unetConfigToJson(sd.configs.unet), 'x');
    expect({ ...back, file: '' }).toEqual({ ...sd.configs.unet, file: '' });
  });

  it('starts as the identity, copied from the teacher except conv_out (zero)', async () => {
    const { translator, report } = await createTranslator(sd, { tasks: TASKS });
    try {
      const z = latents;
      for (const task of [0, 1, 'a green circle', RED, TASKS[1]] as const) {
        const out = translator.translateLatent(z, task);
        expect(Array.from(await values(out))).toEqual(Array.from(await values(z)));
        out.dispose();
      }
      expect(report.zero.sort()).toEqual(['conv_out.bias', 'conv_out.weight']);
      expect(report.random).toEqual([]);
      expect(report.fromTeacher.length).toBe(sd.unet.namedParameters().length - 2);
      const teacher = new Map(sd.unet.namedParameters());
      for (const [n, p] of translator.unet.namedParameters()) {
        const a = await values(p.value);
        if (n.startsWith('conv_out.')) expect(a.every((v) => v === 0)).toBe(true);
        else expect(Array.from(a)).toEqual(Array.from(await values(teacher.get(n)!.value)));
        // a copy, not the teacher's variable
        expect(p.value).not.toBe(teacher.get(n)!.value);
      }
      expect(translator.prompts).toEqual(['a green circle', 'a blue square', RED]);
      const e = translator.embedding('a blue square');
      const ref = sd.encodePrompt('a blue square');
      expect(Array.from(await values(e))).toEqual(Array.from(await values(ref)));
      tf.dispose([e, ref]);
    } finally {
      translator.dispose();
    }
  });

  it('takes a smaller studentConfig, copying the parameters whose name and shape match', async () => {
    const { translator, report } = await createTranslator(sd, { tasks: TASKS, studentConfig: SMALL, seed: 3 });
    try {
      expect(translator.unet.config.blockOutChannels).toEqual([32, 64]);
      expect(translator.unet.parameterCount()).toBeLessThan(sd.unet.parameterCount() / 2);
      expect(report.fromTeacher).toContain('conv_in.weight');
      expect(report.fromTeacher).toContain('down_blocks.0.resnets.0.conv1.weight');
      expect(report.random.length).toBeGreaterThan(0);
      const out = translator.translateLatent(latents, 0);
      expect(Array.from(await values(out))).toEqual(Array.from(await values(latents)));
      out.dispose();
    } finally {
      translator.dispose();
    }
    await expect(createTranslator(sd, { tasks: TASKS, studentConfig: { cross_attention_dim: 16 } })).rejects.toThrow(
      /cross_attention_dim must be the text encoder's width 32, got 16/,
    );
    await expect(createTranslator(sd, { tasks: TASKS, studentConfig: { out_channels: 3 } })).rejects.toThrow(/in_channels and out_channels/);
  });

  it('rejects bad tasks, unknown tasks and wrong latent shapes with clear errors', async () => {
    await expect(createTranslator(sd, { tasks: [] })).rejects.toThrow(/tasks must be a non-empty array/);
    await expect(createTranslator(sd, {} as never)).rejects.toThrow(/tasks must be a non-empty array/);
    await expect(createTranslator(sd, { tasks: [{ source: RED }] as never })).rejects.toThrow(/tasks\[0\] must be \{ source: string, target: string \}/);
    await expect(createTranslator(sd, { tasks: [TASKS[0], TASKS[0]] })).rejects.toThrow(/tasks\[1\] repeats/);
    await expect(trainTranslator(sd, { ...opts(), tasks: [] })).rejects.toThrow(/trainTranslator: tasks must be a non-empty array/);
    const before = tf.memory().numTensors;
    const { translator } = await createTranslator(sd, { tasks: TASKS });
    try {
      expect(() => translator.translate(latents, 'a purple triangle')).toThrow(/unknown task "a purple triangle".*prompts: "a green circle"/);
      expect(() => translator.translate(latents, 5)).toThrow(/unknown task index 5/);
      expect(() => translator.translate(latents, { source: 'x', target: 'a green circle' })).toThrow(/unknown task/);
      const bad = tf.zeros([1, 8, 8, 2]) as tf.Tensor4D;
      expect(() => translator.translate(bad, 0)).toThrow(/input has 2 channels: expected a latent \[B, h, w, 4\]/);
      expect(() => translator.translateLatent(bad, 0)).toThrow(/the latent must be a tensor \[B, h, w, 4\], got a tensor of shape \[1,8,8,2\]/);
      const flat = tf.zeros([8, 8, 4]) as unknown as tf.Tensor4D;
      expect(() => translator.translate(flat, 0)).toThrow(/input must be a latent/);
      tf.dispose([bad, flat]);
      const image = tf.zeros([1, 60, 64, 3]) as tf.Tensor4D;
      expect(() => translator.translateImage(image, 0)).toThrow(/multiples of 8/);
      image.dispose();
    } finally {
      translator.dispose();
    }
    expect(tf.memory().numTensors).toBe(before);
  });

  it('does not leak tensors over repeated translations (latents and pictures)', async () => {
    const { translator } = await createTranslator(sd, { tasks: TASKS });
    const image = tf.sub(tf.mul(tf.randomUniform([1, 64, 64, 3], 0, 1, 'float32', 2), 2), 1) as tf.Tensor4D;
    try {
      // warm up (tfjs creates a few persistent tensors on first use of some kernels)
      tf.dispose([translator.translate(latents, 0), translator.translate(image, 1)]);
      const before = tf.memory().numTensors;
      for (let i = 0; i < 5; i++) {
        const a = translator.translate(latents, i % 2);
        const b = translator.translateImage(image, 'a blue square');
        expect(a.shape).toEqual([4, 8, 8, 4]);
        expect(b.image.shape).toEqual([1, 64, 64, 3]);
        expect(b.latent.shape).toEqual([1, 8, 8, 4]);
        tf.dispose([a, b.image, b.latent]);
      }
      expect(tf.memory().numTensors).toBe(before);
    } finally {
      image.dispose();
      translator.dispose();
    }
  });
});

describe('the training signal', () => {
  it('ddsLoss has the value and the gradient of scoreLoss ∘ ddsGrad', async () => {
    const zSource = tf.slice(latents, [0, 0, 0, 0], [2, -1, -1, -1]) as tf.Tensor4D;
    const zTarget = tf.add(zSource, tf.randomNormal(zSource.shape, 0, 0.3, 'float32', 9)) as tf.Tensor4D;
    const uncond = sd.encodePrompt('');
    const src = { cond: sd.encodePrompt(RED), uncond };
    const tgt = { cond: sd.encodePrompt('a green circle'), uncond };
    const o = { seed: 11, guidanceScale: 7.5 };
    const mine = tf.valueAndGrad((z: tf.Tensor) => ddsLoss(sd, z as tf.Tensor4D, { zSource, source: src, target: tgt }, o).loss)(zTarget);
    const r = ddsGrad(sd, { zSource, zTarget, source: src, target: tgt }, o);
    const ref = tf.valueAndGrad((z: tf.Tensor) => scoreLoss(z, r.grad))(zTarget);
    expect((await values(mine.value))[0]).toBe((await values(ref.value))[0]);
    expect(Array.from(await values(mine.grad))).toEqual(Array.from(await values(ref.grad)));
    expect((await values(tf.abs(ref.grad).max()))[0]).toBeGreaterThan(0);
    r.dispose();
    tf.dispose([zSource, zTarget, uncond, src.cond, tgt.cond, mine.value, mine.grad, ref.value, ref.grad]);
  });

  it('reaches every student parameter and nothing else', async () => {
    const { translator } = await createTranslator(sd, { tasks: TASKS });
    const uncond = sd.encodePrompt('');
    const z = tf.slice(latents, [0, 0, 0, 0], [2, -1, -1, -1]) as tf.Tensor4D;
    const teacherBefore = await teacherHash();
    try {
      const names = translator.unet.namedParameters().map(([n]) => n);
      const shapes = new Map(translator.unet.namedParameters().map(([n, p]) => [n, p.shape] as [string, readonly number[]]));
      const before = tf.memory().numTensors;
      const g0 = translatorGrads(sd, translator, { zSource: z, task: 0, uncond }, { seed: 1, cycleWeight: 1, identityWeight: 1 });
      expect([...g0.grads.keys()].sort()).toEqual([...names].sort());
      for (const [n, g] of g0.grads) expect(g.shape).toEqual([...shapes.get(n)!]);
      // At the identity (conv_out = 0) only conv_out's gradient is non-zero: the zero layer blocks the rest.
      const nz0 = new Set<string>();
      for (const [n, g] of g0.grads) {
        const m = tf.tidy(() => tf.max(tf.abs(g)));
        if ((await values(m))[0] > 0) nz0.add(n);
        m.dispose();
      }
      expect([...nz0].sort()).toEqual(['conv_out.bias', 'conv_out.weight']);
      expect(g0.cycle).not.toBeNull();
      expect((await values(g0.identity!))[0]).toBe(0); // f(ẑ, ŷ) = ẑ at the identity
      g0.dispose();
      expect(tf.memory().numTensors).toBe(before);

      // Once conv_out is non-zero, the gradient reaches every parameter.
      const convOut = translator.unet.namedParameters().find(([n]) => n === 'conv_out.weight')![1];
      const w = tf.randomNormal([...convOut.shape], 0, 0.05, 'float32', 4);
      convOut.set(w);
      w.dispose();
      const g1 = translatorGrads(sd, translator, { zSource: z, task: TASKS[1], uncond }, { seed: 2 });
      const zero: string[] = [];
      for (const [n, g] of g1.grads) {
        const m = tf.tidy(() => tf.max(tf.abs(g)));
        if ((await values(m))[0] === 0) zero.push(n);
        m.dispose();
      }
      // … except the query/key of the mid block's self-attention, which sees a single token at an 8×8 latent (1×1
      // after three downsamplers): softmax over one key is constant, so q and k cannot matter.
      expect(zero.length).toBeLessThanOrEqual(2);
      for (const n of zero) expect(n).toMatch(/^mid_block\.attentions\.0\.transformer_blocks\.0\.attn1\.to_[qk]\.weight$/);
      expect(Number.isFinite((await values(g1.total))[0])).toBe(true);
      g1.dispose();
    } finally {
      tf.dispose([uncond, z]);
      translator.dispose();
    }
    expect(await teacherHash()).toBe(teacherBefore);
  });
});

describe('trainTranslator', () => {
  it('trains only the student: the teacher is byte-identical, the student moves, progress is reported', async () => {
    const teacherBefore = await teacherHash();
    const numBefore = tf.memory().numTensors;
    const infos: TranslatorStepInfo[] = [];
    const t0 = Date.now();
    const tr = await trainTranslator(sd, opts({ steps: 2, batchSize: 2, cycleWeight: 0.5, identityWeight: 0.5, onStep: (i) => void infos.push({ ...i }) }));
    const perStep = (Date.now() - t0) / 2;
    try {
      // eslint-disable-next-line no-console
      console.log(`tiny-sd15, 8×8 latents, batch 2, cycle + identity on: ${(perStep / 1000).toFixed(2)} s per training step (incl. setup)`);
      expect(infos.map((i) => i.step)).toEqual([0, 1]);
      for (const i of infos) {
        expect(i.steps).toBe(2);
        expect([0, 1]).toContain(i.task);
        expect(i.timesteps).toHaveLength(2);
        expect(Number.isFinite(i.loss) && Number.isFinite(i.total) && Number.isFinite(i.gradNorm)).toBe(true);
        expect(i.cycle).not.toBeNull();
        expect(i.identity).not.toBeNull();
        expect(i.checkpointed).toBe(false);
      }
      expect(tr.stepsDone).toBe(2);
      expect(await teacherHash()).toBe(teacherBefore);
      const out = tr.translateLatent(latents, 0);
      const d = tf.tidy(() => tf.max(tf.abs(tf.sub(out, latents))));
      expect((await values(d))[0]).toBeGreaterThan(0);
      tf.dispose([out, d]);
    } finally {
      tr.dispose();
    }
    expect(tf.memory().numTensors).toBe(numBefore);
  });

  it('save → load → translate gives identical output; the folder is a diffusers UNet + translator.json', async () => {
    const dir = path.join(tmp, 'saved');
    const tr = await trainTranslator(sd, opts({ steps: 1, studentConfig: SMALL }));
    try {
      await saveTranslator(tr, dir);
      for (const f of ['config.json', 'diffusion_pytorch_model.safetensors', 'task_embeddings.safetensors', 'translator.json']) {
        expect(fs.existsSync(path.join(dir, f))).toBe(true);
      }
      const meta = JSON.parse(fs.readFileSync(path.join(dir, 'translator.json'), 'utf8'));
      expect(meta.tasks).toEqual(TASKS);
      expect(meta.studentTimestep).toBe(0);
      expect(meta.training.step).toBe(1);
      expect(meta.teacher.source).toBe(TINY_SD15);
      const named = await trainTranslator(sd, opts({ steps: 1, studentConfig: SMALL, teacherSource: '@ddsjs/some-model' }));
      expect(named.teacher?.source).toBe('@ddsjs/some-model');
      named.dispose();
      expect(meta.teacher.fingerprint.vae).toMatch(/^[0-9a-f]{64}$/);
      expect(parseUNetConfig(JSON.parse(fs.readFileSync(path.join(dir, 'config.json'), 'utf8'))).blockOutChannels).toEqual([32, 64]);
      await expect(saveTranslator(tr, dir)).rejects.toThrow(/already holds a translator.*overwrite: true/);

      const image = tf.sub(tf.mul(tf.randomUniform([1, 64, 64, 3], 0, 1, 'float32', 5), 2), 1) as tf.Tensor4D;
      const a = tr.translate(latents, 1);
      const aImg = tr.translate(image, 1);
      const back = await loadTranslator(dir, sd);
      const noTeacher = await loadTranslator(dir);
      try {
        expect(back.stepsDone).toBe(1);
        const b = back.translate(latents, 1);
        const bImg = back.translate(image, 1);
        const c = noTeacher.translate(latents, 'a blue square');
        expect(Array.from(await values(b))).toEqual(Array.from(await values(a)));
        expect(Array.from(await values(c))).toEqual(Array.from(await values(a)));
        expect(Array.from(await values(bImg))).toEqual(Array.from(await values(aImg)));
        expect(() => noTeacher.translate(image, 1)).toThrow(/no VAE to encode and decode pictures: load the translator with its teacher/);
        tf.dispose([b, bImg, c]);
      } finally {
        back.dispose();
        noTeacher.dispose();
        tf.dispose([a, aImg, image]);
      }
    } finally {
      tr.dispose();
    }
    // A folder mixing files of two saves (an interrupted write) is refused, naming the file.
    const other = path.join(tmp, 'saved-other');
    const { translator: fresh } = await createTranslator(sd, { tasks: TASKS });
    await saveTranslator(fresh, other);
    fresh.dispose();
    fs.copyFileSync(path.join(other, 'diffusion_pytorch_model.safetensors'), path.join(dir, 'diffusion_pytorch_model.safetensors'));
    await expect(loadTranslator(dir)).rejects.toThrow(/diffusion_pytorch_model\.safetensors does not belong to translator\.json .*interrupted write/);
    expect(fs.readdirSync(dir).filter((f) => f.includes('pending'))).toEqual([]);
    // A damaged folder is a clear error naming the file.
    fs.writeFileSync(path.join(dir, 'translator.json'), '{ nope');
    await expect(loadTranslator(dir)).rejects.toThrow(/translator\.json is not valid JSON/);
    await expect(loadTranslator(path.join(tmp, 'missing'))).rejects.toThrow(/no such folder/);
  });

  it('a resumed run equals an uninterrupted run of the same total steps', async () => {
    const dir = path.join(tmp, 'resume');
    // 4 latents in two sources, batch 1: the resumed step continues the data order's first epoch where step 0 left it.
    const first = tf.slice(latents, [0, 0, 0, 0], [2, -1, -1, -1]) as tf.Tensor4D;
    const second = tf.slice(latents, [2, 0, 0, 0], [2, -1, -1, -1]) as tf.Tensor4D;
    const o = opts({ steps: 2, batchSize: 1, lr: 2e-3, studentConfig: SMALL, data: [{ latents: first, prompt: RED }, { latents: [second], prompt: [RED, RED] }] });
    const whole = await trainTranslator(sd, o);
    const half = await trainTranslator(sd, { ...o, steps: 1, checkpointDir: dir });
    half.dispose();
    expect(JSON.parse(fs.readFileSync(path.join(dir, 'translator.json'), 'utf8')).training.step).toBe(1);
    await expect(trainTranslator(sd, { ...o, checkpointDir: dir })).rejects.toThrow(/already holds a translator; pass resumeFrom/);
    await expect(trainTranslator(sd, { ...o, lr: 1e-3, resumeFrom: dir })).rejects.toThrow(/other options \(lr: 0\.002 in the checkpoint, 0\.001 now\)/);
    await expect(trainTranslator(sd, { ...o, studentConfig: undefined, resumeFrom: dir })).rejects.toThrow(/another student architecture/);
    const steps: number[] = [];
    const resumed = await trainTranslator(sd, { ...o, resumeFrom: dir, onStep: (i) => void steps.push(i.step) });
    try {
      expect(steps).toEqual([1]);
      expect(resumed.stepsDone).toBe(2);
      const a = new Map(whole.unet.namedParameters());
      let compared = 0;
      for (const [n, p] of resumed.unet.namedParameters()) {
        expect([n, Array.from(await values(p.value))]).toEqual([n, Array.from(await values(a.get(n)!.value))]);
        compared++;
      }
      expect(compared).toBe(a.size);
      expect(JSON.parse(fs.readFileSync(path.join(dir, 'translator.json'), 'utf8')).training.step).toBe(2);
    } finally {
      whole.dispose();
      resumed.dispose();
      tf.dispose([first, second]);
    }
  });

  it('stops on a non-finite loss with a clear error and keeps the last checkpoint loadable', async () => {
    const dir = path.join(tmp, 'diverge');
    const numBefore = tf.memory().numTensors;
    let error: unknown;
    try {
      const tr = await trainTranslator(sd, opts({
        steps: 5,
        studentConfig: SMALL,
        checkpointDir: dir,
        checkpointEvery: 1,
        onStep: ({ step, translator }) => {
          if (step === 1) {
            // Poison the student after the step-2 checkpoint: the next loss is NaN.
            const bias = translator.unet.namedParameters().find(([n]) => n === 'conv_out.bias')![1];
            const nan = tf.fill([...bias.shape], NaN);
            bias.set(nan);
            nan.dispose();
          }
        },
      }));
      tr.dispose();
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(TranslatorDivergedError);
    const err = error as TranslatorDivergedError;
    expect(err.message).toMatch(/training diverged at step 3: total loss NaN.*stopped before updating the student; the last good checkpoint \(step 2\) is in/);
    expect(err.step).toBe(2);
    expect(err.lastCheckpoint).toEqual({ dir, step: 2 });
    expect(tf.memory().numTensors).toBe(numBefore);
    const back = await loadTranslator(dir, sd);
    try {
      expect(back.stepsDone).toBe(2);
      const out = back.translate(latents, 0);
      expect((await values(out)).every(Number.isFinite)).toBe(true);
      out.dispose();
    } finally {
      back.dispose();
    }
  });

  it('rejects bad options and data with clear errors', async () => {
    await expect(trainTranslator(sd, opts({ data: { latents, prompt: 'a cat' } }))).rejects.toThrow(
      /no training data for the source prompt "a red circle" \(data prompts: "a cat"\)/,
    );
    await expect(trainTranslator(sd, opts({ checkpointEvery: 2 }))).rejects.toThrow(/checkpointEvery needs checkpointDir/);
    await expect(trainTranslator(sd, opts({ lr: -1 }))).rejects.toThrow(/lr must be a positive finite number, got -1/);
    await expect(trainTranslator(sd, opts({ batchSize: 0 }))).rejects.toThrow(/batchSize must be a positive integer, got 0/);
    const rgb = tf.zeros([2, 8, 8, 3]) as tf.Tensor4D;
    await expect(trainTranslator(sd, opts({ data: { latents: rgb, prompt: RED } }))).rejects.toThrow(/data latents have 3 channels, the student reads 4/);
    rgb.dispose();
    const poisoned = tf.tidy(() => tf.concat([latents, tf.fill([1, 8, 8, 4], NaN)])) as tf.Tensor4D;
    await expect(trainTranslator(sd, opts({ data: [{ latents, prompt: RED }, { latents: poisoned, prompt: RED }] }))).rejects.toThrow(
      /data\[1\]: latent 4 holds non-finite values/,
    );
    poisoned.dispose();
    await expect(trainTranslator(sd, opts({ data: { pictures: 'x' } as never }))).rejects.toThrow(/data\[0\] must have one of 'latents', 'images' or 'generate'/);
    await expect(trainTranslator(sd, opts({ data: { images: path.join(tmp, 'nowhere'), prompt: RED } }))).rejects.toThrow(/data\[0\]\.images: no such folder/);
  });
});

describe('guidance warm-up (issue 26)', () => {
  it('guidanceAtStep ramps linearly from `from` to the guidance scale, then stays', () => {
    expect(guidanceAtStep(0, 2)).toBe(2);
    expect([0, 50, 100, 150].map((s) => guidanceAtStep(s, 3, { steps: 100 }))).toEqual([1, 2, 3, 3]);
    expect(guidanceAtStep(25, 7.5, { steps: 100, from: 3.5 })).toBe(4.5);
    expect(guidanceAtStep(5, 2, { steps: 0 })).toBe(2);
  });

  it('the first warm-up step trains with the start guidance; the warm-up is recorded, and refused when malformed', async () => {
    const first = async (o: Partial<TrainTranslatorOptions>) => {
      let loss = NaN;
      const tr = await trainTranslator(sd, opts({ steps: 1, studentConfig: SMALL, onStep: (i) => void (loss = i.loss), ...o }));
      const rec = tr.training!.options;
      tr.dispose();
      return { loss, rec };
    };
    const warm = await first({ guidanceScale: 7.5, guidanceWarmup: { steps: 10, from: 1 } });
    const at1 = await first({ guidanceScale: 1 });
    const at75 = await first({ guidanceScale: 7.5 });
    expect(warm.loss).toBe(at1.loss);
    expect(warm.loss).not.toBe(at75.loss);
    expect(warm.rec.guidanceWarmup).toEqual({ steps: 10, from: 1 });
    expect('guidanceWarmup' in at75.rec).toBe(false);
    await expect(trainTranslator(sd, opts({ guidanceWarmup: { steps: 1.5 } }))).rejects.toThrow(/guidanceWarmup\.steps must be a non-negative integer, got 1\.5/);
    await expect(trainTranslator(sd, opts({ guidanceWarmup: { steps: 5, from: -1 } }))).rejects.toThrow(/guidanceWarmup\.from must be a non-negative finite number, got -1/);
  });
});

describe('translator data', () => {
  it('encodes a folder of pictures with the teacher VAE', async () => {
    const dir = path.join(tmp, 'pictures');
    fs.mkdirSync(dir);
    for (const [i, color] of ['#d02020', '#2040c0'].entries()) {
      await sharp({ create: { width: 80, height: 72, channels: 3, background: color } }).png().toFile(path.join(dir, `p${i}.png`));
    }
    fs.writeFileSync(path.join(dir, 'notes.txt'), 'not a picture');
    const d = await prepareTranslatorData(sd, { images: dir, prompt: RED, size: 64 }, { sourcePrompts: [RED] });
    expect(d.shape).toEqual([8, 8, 4]);
    expect(d.prompts).toEqual([RED, RED]);
    const img = await loadImageForEdit(path.join(dir, 'p1.png'), { size: 64 });
    const z = sd.encodeImage(img);
    expect(Array.from(d.latents[1])).toEqual(Array.from(await values(z)));
    tf.dispose([img, z]);
  });

  it('generates pictures from the source prompts once, then reads them from the cache', async () => {
    const cacheDir = path.join(tmp, 'cache');
    const spy = jest.spyOn(sd, 'generate');
    try {
      const src = { generate: 2, cacheDir, steps: 2, size: 64 };
      const a = await prepareTranslatorData(sd, src, { sourcePrompts: [RED, RED], seed: 1 });
      expect(spy).toHaveBeenCalledTimes(2);
      expect(a.prompts).toEqual([RED, RED]);
      expect(a.shape).toEqual([8, 8, 4]);
      expect(Array.from(a.latents[0])).not.toEqual(Array.from(a.latents[1]));
      expect(fs.readdirSync(cacheDir).filter((f) => f.endsWith('.safetensors'))).toHaveLength(1);
      const b = await prepareTranslatorData(sd, src, { sourcePrompts: [RED], seed: 1 });
      expect(spy).toHaveBeenCalledTimes(2); // not regenerated
      expect(b.latents.map((l) => Array.from(l))).toEqual(a.latents.map((l) => Array.from(l)));
      await prepareTranslatorData(sd, { ...src, seed: 2 }, { sourcePrompts: [RED] });
      expect(spy).toHaveBeenCalledTimes(4); // other settings, other cache file
    } finally {
      spy.mockRestore();
    }
  });
});

// Keeps the Translator import used when type-only imports are elided.
void Translator;
