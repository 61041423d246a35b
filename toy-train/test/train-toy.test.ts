import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { initBackend } from '@ddsjs/nn';
import {
  AutoencoderKL,
  CLIPTextModel,
  UNet2DConditionModel,
  loadStableDiffusion,
} from '@ddsjs/sd';
import { parseCLIPTextConfig, parseUNetConfig, parseVaeConfig } from '@ddsjs/sd/internals';
import { Rng, renderScene, sampleScene } from '@ddsjs/toy-shapes';
import { sceneInput } from '../src/toy-quality';
import { commandHelp } from '@ddsjs/cli/args';
import { TRAIN_TOY_COMMAND, formatTrainProgress, parseTrainToyArgs, runTrainToyCommand } from '../src/commands/train-toy';
import { poolScene } from '../src/toy/data';
import { toyConfigs } from '../src/toy/presets';
import { trainToy } from '../src/train-toy';

let tmp: string;
beforeAll(async () => {
  await initBackend('wasm', { quiet: true });
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'dds-train-toy-'));
});
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

describe('toyConfigs', () => {
  it('describes an SD-structured model whose fp16 weights fit in 25 MB, with 64×64 pictures and 8×8×4 latents', () => {
    const c = toyConfigs('toy');
    const vae = new AutoencoderKL(parseVaeConfig(c.vae));
    const unet = new UNet2DConditionModel(parseUNetConfig(c.unet));
    const text = new CLIPTextModel(parseCLIPTextConfig(c.textEncoder));
    expect(vae.downscaleFactor).toBe(8);
    expect((c.vae.sample_size as number) / vae.downscaleFactor).toBe(c.unet.sample_size);
    expect(c.vae.sample_size).toBe(64);
    expect(c.unet.cross_attention_dim).toBe(c.textEncoder.hidden_size);
    expect(c.textEncoder.vocab_size).toBe(49408);
    expect(c.scheduler.beta_schedule).toBe('scaled_linear');
    const params = vae.parameterCount() + unet.parameterCount() + text.parameterCount();
    expect(params * 2).toBeLessThan(25e6);
    expect(() => toyConfigs('big' as never)).toThrow(/preset/);
  });

  it("'toy16' keeps the world and text encoder and gives 16×16×4 latents, a UNet whose top level has no attention", () => {
    const c = toyConfigs('toy16');
    const vae = new AutoencoderKL(parseVaeConfig(c.vae));
    const unet = new UNet2DConditionModel(parseUNetConfig(c.unet));
    expect(vae.downscaleFactor).toBe(4);
    expect(c.vae.sample_size).toBe(64);
    expect(c.unet.sample_size).toBe(16);
    expect(c.unet.down_block_types).toEqual(['DownBlock2D', 'CrossAttnDownBlock2D', 'CrossAttnDownBlock2D', 'DownBlock2D']);
    expect(c.textEncoder).toEqual(toyConfigs('toy').textEncoder);
    // Every GroupNorm of both keeps ≥ 4 channels per group (see toyConfigs' doc comment).
    for (const [channels, groups] of [[c.vae.block_out_channels, c.vae.norm_num_groups], [c.unet.block_out_channels, c.unet.norm_num_groups]] as [number[], number][]) {
      for (const ch of channels) expect(ch / groups).toBeGreaterThanOrEqual(4);
    }
    const params = vae.parameterCount() + unet.parameterCount() + new CLIPTextModel(parseCLIPTextConfig(c.textEncoder)).parameterCount();
    expect(params * 2).toBeLessThan(25e6);
  });

  it('formats progress lines', () => {
    const line = formatTrainProgress({ phase: 'unet', step: 5, total: 10, loss: 0.5, secondsPerStep: 2, etaSeconds: 3725 });
    expect(line).toMatch(/^unet  5\/10 \[#{10}-{10}\] loss 0\.50000 {2}2\.00 s\/step {2}eta 1h02m$/);
  });
});

describe('dds-toy train arguments', () => {
  it('parses flags into trainToy options and rejects bad ones naming the flag', async () => {
    const a = parseTrainToyArgs(['out', '--seed', '7', '--unet-steps', '1500', '--unet-lr', '3e-4', '--time-budget', '60', '--shape-weight', '3', '--no-fp16', '--backend', 'cpu']);
    expect(a.backend).toBe('cpu');
    expect(a.options).toMatchObject({ outdir: 'out', seed: 7, unetSteps: 1500, unetLr: 3e-4, timeBudgetSeconds: 60, shapeWeight: 3, fp16: false, force: false });
    expect(a.options.vaeSteps).toBeUndefined();
    expect(() => parseTrainToyArgs(['out', '--seed', '1.5'])).toThrow(/--seed must be an integer/);
    expect(() => parseTrainToyArgs(['out', '--preset', 'huge'])).toThrow(/--preset/);
    expect(parseTrainToyArgs(['out', '--preset', 'toy16']).options.preset).toBe('toy16');
    expect(parseTrainToyArgs(['out', '--noise-offset', '0.1']).options.noiseOffset).toBe(0.1);
    expect(() => parseTrainToyArgs(['out', '--noise-offset', 'x'])).toThrow(/--noise-offset must be a number/);
    expect(() => parseTrainToyArgs(['out', '--backend', 'gpu'])).toThrow(/--backend/);
    expect(() => parseTrainToyArgs(['out', '--bogus'])).toThrow(/train: .*bogus/);
    expect(() => parseTrainToyArgs([])).toThrow(/expected <outdir>/);
    const lines: string[] = [];
    expect(await runTrainToyCommand(['--help'], (l) => lines.push(l))).toBe(0);
    expect(lines).toEqual([commandHelp(TRAIN_TOY_COMMAND)]);
  });
});

describe('poolScene (--pool-background-weights)', () => {
  it('is sampleScene without weights, and draws backgrounds in proportion to their weights', () => {
    for (let i = 0; i < 20; i++) expect(poolScene(new Rng(i), 64, undefined)).toEqual(sampleScene(new Rng(i), { split: 'train', size: 64 }));
    const count = (w: Parameters<typeof poolScene>[2]) => {
      const c: Record<string, number> = {};
      for (let i = 0; i < 4000; i++) { const b = poolScene(new Rng(i), 64, w).background; c[b] = (c[b] ?? 0) + 1; }
      return c;
    };
    const c = count({ gray: 3 });
    expect(c.gray / 4000).toBeGreaterThan(0.45); // 3 / (3 + 1 + 1 + 1) = 0.5
    expect(c.gray / 4000).toBeLessThan(0.55);
    expect(count({ gray: 0 }).gray).toBeUndefined();
    expect(parseTrainToyArgs(['out', '--pool-background-weights', 'gray=3, white=0.5']).options.poolBackgroundWeights).toEqual({ gray: 3, white: 0.5 });
    for (const bad of ['grey=3', 'gray', 'gray=-1', 'gray=x']) expect(() => parseTrainToyArgs(['out', '--pool-background-weights', bad])).toThrow(/--pool-background-weights must look like gray=3/);
  });

  it('rejects weights that name no background or leave none', async () => {
    await expect(trainToy({ outdir: path.join(tmp, 'bad-w'), preset: 'micro', poolBackgroundWeights: { grey: 1 } as never })).rejects.toThrow(/unknown background 'grey'/);
    await expect(trainToy({ outdir: path.join(tmp, 'bad-w'), preset: 'micro', poolBackgroundWeights: { gray: 0, white: 0, black: 0, pink: 0 } })).rejects.toThrow(/every background has weight 0/);
  });
});

describe('trainToy (micro preset, wasm)', () => {
  it('rejects bad options naming them', async () => {
    await expect(trainToy({ outdir: path.join(tmp, 'bad'), preset: 'micro', vaeLr: -1 })).rejects.toThrow(/vaeLr/);
    await expect(trainToy({ outdir: path.join(tmp, 'bad'), preset: 'micro', unetBatch: 0 })).rejects.toThrow(/unetBatch/);
  });

  it('lowers the loss on a fixed batch, writes a loadable diffusers folder that generates, and resumes', async () => {
    const out = path.join(tmp, 'micro');
    const before = tf.memory().numTensors;
    const lines: string[] = [];
    const r = await trainToy({
      outdir: out, preset: 'micro', seed: 3, vaeSteps: 5, unetSteps: 5, vaeBatch: 2, unetBatch: 4, fixedBatch: true,
      unetLr: 2e-3, checkpointEvery: 100, log: (l) => lines.push(l),
    });
    expect(tf.memory().numTensors).toBe(before);
    expect(r.done).toBe(true);
    expect([r.vaeSteps, r.unetSteps]).toEqual([5, 5]);
    for (const losses of [r.vaeLosses, r.unetLosses]) {
      expect(losses).toHaveLength(5);
      expect(losses.every(Number.isFinite)).toBe(true);
      expect(losses[4]).toBeLessThan(losses[0]);
    }
    expect(r.vaeLosses[4]).toBeLessThan(0.9 * r.vaeLosses[0]);
    expect(r.scalingFactor).toBeGreaterThan(0);
    expect(r.vaeSecondsPerStep).toBeGreaterThan(0);
    expect(lines.some((l) => /scaling_factor/.test(l))).toBe(true);
    const log = fs.readFileSync(path.join(out, 'train', 'loss.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    expect(log).toHaveLength(10);
    expect(log[0]).toMatchObject({ phase: 'vae', step: 1 });
    expect(log[9]).toMatchObject({ phase: 'unet', step: 5 });
    for (const f of ['model_index.json', 'tokenizer/vocab.json', 'scheduler/scheduler_config.json', 'unet/diffusion_pytorch_model.fp16.safetensors']) {
      expect(fs.existsSync(path.join(out, f))).toBe(true);
    }
    const vaeCfg = JSON.parse(fs.readFileSync(path.join(out, 'vae', 'config.json'), 'utf8'));
    expect(vaeCfg.scaling_factor).toBeCloseTo(r.scalingFactor, 6);

    const sd32 = await loadStableDiffusion(out);
    expect(sd32.schedule.scalingFactor).toBeCloseTo(r.scalingFactor, 6);
    sd32.dispose();
    {
      const sd = await loadStableDiffusion(out, { variant: 'fp16' });
      const g = await sd.generate('a green square on a gray background', { steps: 2, guidanceScale: 3, seed: 1 });
      expect(g.image.shape).toEqual([1, 16, 16, 3]);
      const px = await g.image.data();
      expect(px.every(Number.isFinite)).toBe(true);
      tf.dispose([g.image, g.latents]);
      sd.dispose();
    }

    // Resume: one more UNet step continues from the checkpoint (same seed required).
    await expect(trainToy({ outdir: out, seed: 4, vaeSteps: 5, unetSteps: 6 })).rejects.toThrow(/seed 3/);
    const r2 = await trainToy({ outdir: out, vaeSteps: 5, unetSteps: 6, unetBatch: 4, fixedBatch: true, unetLr: 2e-3 });
    expect([r2.vaeSteps, r2.unetSteps]).toEqual([5, 6]);
    expect(r2.vaeLosses).toHaveLength(0);
    expect(r2.unetLosses).toHaveLength(1);
    expect(r2.unetLosses[0]).toBeLessThan(r.unetLosses[4]);
    expect(r2.scalingFactor).toBe(r.scalingFactor);
    expect(fs.readFileSync(path.join(out, 'train', 'loss.jsonl'), 'utf8').trim().split('\n')).toHaveLength(11);
    expect(tf.memory().numTensors).toBe(before);
    // A non-empty folder without training state is refused.
    fs.mkdirSync(path.join(tmp, 'occupied'));
    fs.writeFileSync(path.join(tmp, 'occupied', 'x'), '');
    await expect(trainToy({ outdir: path.join(tmp, 'occupied'), preset: 'micro' })).rejects.toThrow(/not empty/);
  });

  it('stops at its signal with a checkpoint, and the resumed run equals an uninterrupted one byte for byte', async () => {
    const opts = { preset: 'micro' as const, seed: 5, vaeSteps: 3, unetSteps: 3, vaeBatch: 2, unetBatch: 2, poolSize: 8, checkpointEvery: 100, fp16: false };
    const whole = path.join(tmp, 'whole');
    expect((await trainToy({ ...opts, outdir: whole })).done).toBe(true);
    const cut = path.join(tmp, 'cut');
    const ctrl = new AbortController();
    const r1 = await trainToy({ ...opts, outdir: cut, signal: ctrl.signal, onProgress: (p) => { if (p.phase === 'vae' && p.step === 2) ctrl.abort(); } });
    expect(r1.done).toBe(false);
    expect([r1.vaeSteps, r1.unetSteps]).toEqual([2, 0]);
    expect(JSON.parse(fs.readFileSync(path.join(cut, 'train', 'state.json'), 'utf8'))).toMatchObject({ vaeStep: 2, unetStep: 0 });
    const r2 = await trainToy({ ...opts, outdir: cut });
    expect(r2.done).toBe(true);
    for (const f of ['vae/diffusion_pytorch_model.safetensors', 'unet/diffusion_pytorch_model.safetensors']) {
      expect(fs.readFileSync(path.join(cut, f)).equals(fs.readFileSync(path.join(whole, f)))).toBe(true);
    }
  });

  it('--noise-offset changes only the UNet phase, deterministically', async () => {
    const opts = { preset: 'micro' as const, seed: 5, vaeSteps: 3, unetSteps: 3, vaeBatch: 2, unetBatch: 2, poolSize: 8, checkpointEvery: 100, fp16: false };
    const whole = path.join(tmp, 'no-offset');
    expect((await trainToy({ ...opts, outdir: whole })).done).toBe(true);
    const read = (dir: string, f: string) => fs.readFileSync(path.join(dir, f, 'diffusion_pytorch_model.safetensors'));
    const [a, b] = [path.join(tmp, 'offset-a'), path.join(tmp, 'offset-b')];
    for (const d of [a, b]) expect((await trainToy({ ...opts, outdir: d, noiseOffset: 0.5 })).done).toBe(true);
    expect(read(a, 'vae').equals(read(whole, 'vae'))).toBe(true);
    expect(read(a, 'unet').equals(read(whole, 'unet'))).toBe(false);
    expect(read(a, 'unet').equals(read(b, 'unet'))).toBe(true);
    await expect(trainToy({ ...opts, outdir: path.join(tmp, 'bad-offset'), noiseOffset: -0.1 })).rejects.toThrow(/noiseOffset must be a non-negative finite number/);
  });

  it('--vae-latent-mask-weight gives the latent a foreground channel: channel 3 ≈ +level on the shape, −level off it', async () => {
    expect(parseTrainToyArgs(['out', '--vae-latent-mask-weight', '4', '--vae-latent-mask-level', '1.5']).options).toMatchObject({ vaeLatentMaskWeight: 4, vaeLatentMaskLevel: 1.5 });
    await expect(trainToy({ outdir: path.join(tmp, 'bad-mask'), preset: 'micro', vaeLatentMaskWeight: -1 })).rejects.toThrow(/vaeLatentMaskWeight must be a non-negative finite number/);
    await expect(trainToy({ outdir: path.join(tmp, 'bad-mask'), preset: 'micro', vaeLatentMaskLevel: NaN })).rejects.toThrow(/vaeLatentMaskLevel must be a finite number/);
    // Channel 3 of the posterior mean at the shape's centre cell minus at a corner cell (background), for a square
    // covering the middle of a 16×16 picture: the term should make it ≈ 2 × level; without it nothing ties it.
    const contrast = async (dir: string) => {
      const sd = await loadStableDiffusion(dir);
      const sc = renderScene({ shape: 'square', colour: 'red', background: 'gray', cx: 8, cy: 8, radius: 5, width: 16, height: 16 });
      const mean = tf.tidy(() => sd.vae.encode(sceneInput(sc)).mean);
      const [, , w, c] = mean.shape;
      const d = mean.dataSync();
      tf.dispose(mean);
      sd.dispose();
      return d[(4 * w + 4) * c + 3] - d[3];
    };
    const opts = { preset: 'micro' as const, seed: 4, vaeSteps: 40, unetSteps: 0, vaeBatch: 4, vaeLr: 3e-3, checkpointEvery: 100, fp16: false };
    const [off, on] = [path.join(tmp, 'mask-off'), path.join(tmp, 'mask-on')];
    expect((await trainToy({ ...opts, outdir: off })).done).toBe(true);
    const before = tf.memory().numTensors;
    expect((await trainToy({ ...opts, outdir: on, vaeLatentMaskWeight: 20, vaeLatentMaskLevel: 1 })).done).toBe(true);
    expect(tf.memory().numTensors).toBe(before);
    const [cOff, cOn] = [await contrast(off), await contrast(on)];
    expect(cOn).toBeGreaterThan(1);
    expect(cOn).toBeGreaterThan(cOff + 0.5);
  });

  it('initFrom fine-tunes a finished folder: decoder only with the encoder frozen, its scaling factor kept', async () => {
    const opts = { preset: 'micro' as const, vaeBatch: 2, unetBatch: 2, poolSize: 8, checkpointEvery: 100, fp16: false };
    const base = path.join(tmp, 'init-base');
    const r0 = await trainToy({ ...opts, outdir: base, seed: 5, vaeSteps: 3, unetSteps: 2 });
    expect(r0.done).toBe(true);
    const tensors = async (dir: string) => {
      const sd = await loadStableDiffusion(dir);
      const out = new Map(sd.vae.namedParameters().map(([n, p]) => [n, Array.from(p.value.dataSync())] as [string, number[]]));
      const unet = sd.unet.namedParameters().map(([, p]) => Array.from(p.value.dataSync()));
      const sf = sd.schedule.scalingFactor;
      sd.dispose();
      return { vae: out, unet, sf };
    };
    const before = tf.memory().numTensors;
    const ft = path.join(tmp, 'init-ft');
    const args = parseTrainToyArgs([ft, '--init', base, '--seed', '9', '--preset', 'micro', '--vae-steps', '3', '--unet-steps', '0', '--vae-freeze-encoder', '--vae-batch', '2', '--no-fp16']);
    expect(args.options.initFrom).toBe(base);
    const lines: string[] = [];
    const r = await trainToy({ ...args.options, log: (l) => lines.push(l) });
    expect(tf.memory().numTensors).toBe(before);
    expect(r.done).toBe(true);
    expect([r.vaeSteps, r.unetSteps]).toEqual([3, 0]);
    expect(r.scalingFactor).toBe(r0.scalingFactor);
    expect(lines.some((l) => l.startsWith(`initialised from ${base}`))).toBe(true);
    const [a, b] = [await tensors(base), await tensors(ft)];
    expect(b.sf).toBe(r0.scalingFactor);
    let encoderSame = true;
    let decoderChanged = false;
    for (const [n, v] of a.vae) {
      const same = v.every((x, i) => x === b.vae.get(n)![i]);
      if (n.startsWith('encoder.') || n.startsWith('quant_conv.')) encoderSame &&= same;
      else if (!same) decoderChanged = true;
    }
    expect(encoderSame).toBe(true);
    expect(decoderChanged).toBe(true);
    expect(b.unet.every((v, i) => v.every((x, j) => x === a.unet[i][j]))).toBe(true);
    // Resuming the fine-tune goes on from its own state; a folder without configs is refused, naming the file.
    const r2 = await trainToy({ ...args.options, vaeSteps: 4 });
    expect([r2.vaeSteps, r2.scalingFactor]).toEqual([4, r0.scalingFactor]);
    await expect(trainToy({ outdir: path.join(tmp, 'init-bad'), preset: 'micro', initFrom: path.join(tmp, 'nowhere') })).rejects.toThrow(/--init .*nowhere: cannot read unet\/config\.json/);
  });

  it('dds-toy train stops cleanly on Ctrl-C (SIGINT): checkpoint written, exit code 0, resumable', async () => {
    const out = path.join(tmp, 'sigint');
    const bin = path.join(__dirname, '..', 'bin', 'dds-toy.js');
    const child = spawn(process.execPath, [bin, 'train', out, '--preset', 'micro', '--vae-steps', '100000', '--unet-steps', '0', '--no-fp16'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => {
      stderr += d;
      if (/vae +10\//.test(stderr) && !child.killed) child.kill('SIGINT');
    });
    const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
    expect(stderr).toMatch(/interrupted: stopping after this step/);
    expect(code).toBe(0);
    expect(stdout).toMatch(/train: interrupted \(rerun to resume\)/);
    const state = JSON.parse(fs.readFileSync(path.join(out, 'train', 'state.json'), 'utf8'));
    expect(state.vaeStep).toBeGreaterThanOrEqual(10);
    expect(state.vaeStep).toBeLessThan(100000);
    expect(fs.existsSync(path.join(out, 'vae', 'diffusion_pytorch_model.safetensors'))).toBe(true);
  }, 120000);
});
