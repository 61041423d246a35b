import * as path from 'path';
import * as fs from 'fs';
import * as tf from '@tensorflow/tfjs';
import { initBackend } from '@ddsjs/nn';
import { SafetensorsFile } from '@ddsjs/safetensors';
import { TINY_SD15, readGoldens, expectGolden } from '../../../test-utils';
import { detectSingleFileModel, singleFileSources, inferLdmDimensions, singleFileConfigMismatches } from '../src/single-file';
import { BUILTIN_CONFIGS } from '../src/single-file-configs';
import { convertLdmUnetKeys, convertLdmVaeKeys, convertLdmClipKeys, convertOpenClipKeys, LDM_OPEN_CLIP_PREFIX } from '../src/single-file-keys';
import { safetensorsSource, memorySource, mappedSource } from '../src/sources';
import { parseUNetConfig, parseVaeConfig } from '../src/config';
import { parseCLIPTextConfig, readCLIPTextConfig } from '../src/clip-config';
import { CLIPTextModel } from '../src/clip';

const readJson = (rel: string): unknown => JSON.parse(fs.readFileSync(path.join(TINY_SD15, rel), 'utf8'));

describe('single-file LDM checkpoint (tiny-sd15)', () => {
  let single: SafetensorsFile;
  const files: Record<string, SafetensorsFile> = {};

  beforeAll(async () => {
    single = await SafetensorsFile.open(path.join(TINY_SD15, 'single-file.safetensors'));
    files.unet = await SafetensorsFile.open(path.join(TINY_SD15, 'unet', 'diffusion_pytorch_model.fp16.safetensors'));
    files.vae = await SafetensorsFile.open(path.join(TINY_SD15, 'vae', 'diffusion_pytorch_model.fp16.safetensors'));
    files.textEncoder = await SafetensorsFile.open(path.join(TINY_SD15, 'text_encoder', 'model.fp16.safetensors'));
  });
  afterAll(async () => {
    await single?.close();
    for (const f of Object.values(files)) await f.close();
  });

  test('detection picks sd15 with a CLIP text encoder', () => {
    const d = detectSingleFileModel(single.keys(), (k) => single.info(k).shape);
    expect(d.modelType).toBe('sd15');
    expect(d.textEncoder).toBe('clip');
    expect(d.predictionType).toBe('epsilon');
    expect(d.configs.unet.cross_attention_dim).toBe(768);
    expect(d.configs.tokenizer.pad_token).toBe('<|endoftext|>');
  });

  test('the mapping covers exactly the diffusers key sets, with equal shapes and identical values', async () => {
    const unetCfg = parseUNetConfig(readJson('unet/config.json'));
    const vaeCfg = parseVaeConfig(readJson('vae/config.json'));
    const teCfg = await readCLIPTextConfig(path.join(TINY_SD15, 'text_encoder', 'config.json'));
    const src = singleFileSources(safetensorsSource(single, { name: 'single-file.safetensors' }), { unet: unetCfg, vae: vaeCfg, textEncoder: teCfg }, 'clip');
    let total = 0;
    let squeezed = 0;
    for (const name of ['unet', 'vae', 'textEncoder'] as const) {
      const mapped = src[name];
      const ref = files[name];
      const refKeys = [...ref.keys()].sort();
      const mappedKeys = [...mapped.keys()].sort();
      const missing = refKeys.filter((k) => !mappedKeys.includes(k));
      const unexpected = mappedKeys.filter((k) => !refKeys.includes(k));
      expect({ name, missing, unexpected }).toEqual({ name, missing: [], unexpected: [] });
      for (const k of refKeys) {
        const shape = mapped.shape(k);
        expect({ k, shape }).toEqual({ k, shape: [...ref.info(k).shape] });
        const [a, b] = await Promise.all([mapped.read(k), ref.readFloat32(k)]);
        expect(a.length).toBe(b.length);
        let same = true;
        for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) same = false;
        if (!same) throw new Error(`${name}: values of '${k}' differ`);
        if (name === 'vae' && /attentions\.0\.to_.*weight$/.test(k)) squeezed++;
        total++;
      }
    }
    // 684 UNet + 244 VAE + 52 text encoder tensors = the single file's 980.
    expect(total).toBe(980);
    expect(single.keys()).toHaveLength(980);
    // The VAE attention weights were stored [C,C,1,1] and presented [C,C]: 2 blocks × q,k,v,out.
    expect(squeezed).toBe(8);
  });

  test('the text encoder read from the single file reproduces the goldens at fp16 precision', async () => {
    await initBackend('wasm');
    const teCfg = await readCLIPTextConfig(path.join(TINY_SD15, 'text_encoder', 'config.json'));
    const src = mappedSource(safetensorsSource(single), convertLdmClipKeys(single.keys()));
    const model = new CLIPTextModel(teCfg);
    await model.loadWeights(src);
    const g = await readGoldens('text_encoder');
    const ids = tf.tensor2d(g.input_ids.data, g.input_ids.shape as [number, number], 'int32') as tf.Tensor2D;
    const y = model.forward(ids);
    const err = await expectGolden(y, g.last_hidden_state!, 3e-3, 'last_hidden_state (single file, fp16)', false);
    console.log(`single-file text encoder rel error vs fp32 golden: ${err.toExponential(2)}`);
    tf.dispose([ids, y]);
    model.dispose();
  });

  test('sizes read off the shapes agree with the fixture configs and not with the full-size built-ins', () => {
    const dims = inferLdmDimensions(single.keys(), (k) => single.info(k).shape);
    expect(dims.unet).toEqual({
      inChannels: 4,
      outChannels: 4,
      blockOutChannels: [32, 64, 64, 64],
      layersPerBlock: [2, 2, 2, 2],
      downBlockTypes: ['CrossAttnDownBlock2D', 'CrossAttnDownBlock2D', 'CrossAttnDownBlock2D', 'DownBlock2D'],
      crossAttentionDim: 32,
      useLinearProjection: false,
    });
    expect(dims.vae).toEqual({ inChannels: 3, blockOutChannels: [32, 32, 64, 64], layersPerBlock: 2, latentChannels: 4 });
    expect(dims.textEncoder).toEqual({ vocabSize: 49408, maxPositionEmbeddings: 77, hiddenSize: 32, intermediateSize: 64, layersInFile: 3 });
    const own = { unet: readJson('unet/config.json'), vae: readJson('vae/config.json'), textEncoder: readJson('text_encoder/config.json') } as Parameters<typeof singleFileConfigMismatches>[1];
    expect(singleFileConfigMismatches(dims, own, 'clip')).toEqual([]);
    const bad = singleFileConfigMismatches(dims, BUILTIN_CONFIGS.sd15, 'clip');
    expect(bad).toContain('unet: block_out_channels is [320,640,1280,1280] in the config but [32,64,64,64] in the checkpoint');
    expect(bad).toContain('text_encoder: hidden_size is 768 in the config but 32 in the checkpoint');
    expect(bad).toContain('vae: block_out_channels is [128,256,512,512] in the config but [32,32,64,64] in the checkpoint');
  });

  test('the UNet mapping follows layers_per_block and keeps unknown keys under their LDM names', () => {
    const keys = single.keys().filter((k) => k.startsWith('model.diffusion_model.'));
    const m = convertLdmUnetKeys([...keys, 'model.diffusion_model.label_emb.0.0.weight', 'model_ema.decay'], {
      layersPerBlock: 2,
      blockOutChannels: [32, 64, 64, 64],
    });
    expect(m.get('down_blocks.1.downsamplers.0.conv.weight')?.from).toBe('model.diffusion_model.input_blocks.6.0.op.weight');
    expect(m.get('down_blocks.3.resnets.1.conv2.weight')?.from).toBe('model.diffusion_model.input_blocks.11.0.out_layers.3.weight');
    expect(m.get('up_blocks.0.upsamplers.0.conv.bias')?.from).toBe('model.diffusion_model.output_blocks.2.1.conv.bias');
    expect(m.get('up_blocks.1.upsamplers.0.conv.bias')?.from).toBe('model.diffusion_model.output_blocks.5.2.conv.bias');
    expect(m.get('up_blocks.3.attentions.2.proj_out.weight')?.from).toBe('model.diffusion_model.output_blocks.11.1.proj_out.weight');
    expect(m.get('mid_block.resnets.1.time_emb_proj.weight')?.from).toBe('model.diffusion_model.middle_block.2.emb_layers.1.weight');
    expect(m.get('model.diffusion_model.label_emb.0.0.weight')?.from).toBe('model.diffusion_model.label_emb.0.0.weight');
    expect([...m.values()].some((v) => v.from === 'model_ema.decay')).toBe(false);
    // With a wrong layers_per_block the LDM indices land elsewhere: the key set no longer matches.
    const wrong = convertLdmUnetKeys(keys, { layersPerBlock: 1, blockOutChannels: [32, 64, 64, 64] });
    const ref = new Set(files.unet.keys());
    expect([...wrong.keys()].filter((k) => !ref.has(k)).length).toBeGreaterThan(0);
  });

  test('VAE decoder blocks are reversed; CLIP position_ids are dropped', () => {
    const m = convertLdmVaeKeys(
      ['first_stage_model.decoder.up.3.block.0.nin_shortcut.weight', 'first_stage_model.decoder.up.0.upsample.conv.bias', 'first_stage_model.encoder.mid.attn_1.norm.weight'],
      { upBlockTypes: ['UpDecoderBlock2D', 'UpDecoderBlock2D', 'UpDecoderBlock2D', 'UpDecoderBlock2D'] },
    );
    expect([...m.keys()]).toEqual([
      'decoder.up_blocks.0.resnets.0.conv_shortcut.weight',
      'decoder.up_blocks.3.upsamplers.0.conv.bias',
      'encoder.mid_block.attentions.0.group_norm.weight',
    ]);
    const c = convertLdmClipKeys([
      'cond_stage_model.transformer.text_model.embeddings.position_ids',
      'cond_stage_model.transformer.text_model.final_layer_norm.weight',
    ]);
    expect([...c.keys()]).toEqual(['text_model.final_layer_norm.weight']);
  });

  test('a bad squeeze is a clear error naming the key', () => {
    const src = memorySource({ 'first_stage_model.encoder.mid.attn_1.q.weight': { shape: [2, 2, 3, 1], data: new Array(12).fill(0) } });
    const mapped = mappedSource(src, convertLdmVaeKeys(src.keys(), { upBlockTypes: ['UpDecoderBlock2D'] }));
    expect(() => mapped.shape('encoder.mid_block.attentions.0.to_q.weight')).toThrow(/to_q\.weight.*\[2,2,3,1\]/);
  });
});

describe('detection of other model types', () => {
  const base = ['model.diffusion_model.input_blocks.0.0.weight', 'first_stage_model.encoder.conv_in.weight'];
  const shapes: Record<string, number[]> = {
    'model.diffusion_model.input_blocks.0.0.weight': [320, 4, 3, 3],
    'model.diffusion_model.input_blocks.2.1.transformer_blocks.0.attn2.to_k.weight': [320, 1024],
  };
  const shape = (k: string): number[] => shapes[k] ?? [1];

  test('SD 2.x: v-prediction by default, epsilon on request, OpenCLIP text encoder', () => {
    const keys = [...base, 'model.diffusion_model.input_blocks.2.1.transformer_blocks.0.attn2.to_k.weight', 'cond_stage_model.model.token_embedding.weight'];
    const d = detectSingleFileModel(keys, shape);
    expect(d).toMatchObject({ modelType: 'sd21', textEncoder: 'open_clip', predictionType: 'v_prediction' });
    expect(d.configs.scheduler.prediction_type).toBe('v_prediction');
    expect(d.configs.tokenizer.pad_token).toBe('!');
    const e = detectSingleFileModel(keys, shape, { predictionType: 'epsilon' });
    expect(e.configs.scheduler.prediction_type).toBe('epsilon');
    // The built-ins themselves are not modified.
    expect(BUILTIN_CONFIGS.sd21.scheduler.prediction_type).toBe('v_prediction');
    expect(() => {
      (BUILTIN_CONFIGS.sd21.unet as Record<string, unknown>).sample_size = 1;
    }).toThrow();
  });

  test('unsupported or incomplete files are named', () => {
    const inpaint = (k: string): number[] => (k === 'model.diffusion_model.input_blocks.0.0.weight' ? [320, 9, 3, 3] : [1]);
    expect(() => detectSingleFileModel([...base, 'cond_stage_model.model.token_embedding.weight'], inpaint)).toThrow(/inpainting/);
    expect(() => detectSingleFileModel([...base, 'conditioner.embedders.1.model.transformer.resblocks.9.mlp.c_proj.bias'], shape)).toThrow(/SDXL/);
    expect(() => detectSingleFileModel(base, shape)).toThrow(/no text encoder/);
    expect(() => detectSingleFileModel(['first_stage_model.encoder.conv_in.weight'], shape)).toThrow(/no UNet keys/);
  });

  test('built-in configs parse with the package config readers', () => {
    for (const set of [BUILTIN_CONFIGS.sd15, BUILTIN_CONFIGS.sd21]) {
      expect(() => parseUNetConfig(set.unet)).not.toThrow();
      expect(() => parseVaeConfig(set.vae)).not.toThrow();
      expect(() => parseCLIPTextConfig(set.textEncoder)).not.toThrow();
    }
    expect(parseCLIPTextConfig(BUILTIN_CONFIGS.sd21.textEncoder)).toMatchObject({ numHiddenLayers: 23, hiddenAct: 'gelu', hiddenSize: 1024 });
    expect(parseUNetConfig(BUILTIN_CONFIGS.sd21.unet).numAttentionHeads).toEqual([5, 10, 20, 20]);
  });
});

describe('SD 2.x OpenCLIP mapping', () => {
  beforeAll(() => initBackend('wasm'));

  // A tiny OpenCLIP text tower: width D=4, 2 resblocks (the model keeps 1), vocab 6, 3 positions.
  const D = 4;
  const seq = (n: number, start: number): number[] => Array.from({ length: n }, (_, i) => start + i);
  function tinyOpenClip(): Record<string, { shape: number[]; data: number[] }> {
    const P = LDM_OPEN_CLIP_PREFIX;
    const t: Record<string, { shape: number[]; data: number[] }> = {
      [`${P}positional_embedding`]: { shape: [3, D], data: seq(3 * D, 0) },
      [`${P}token_embedding.weight`]: { shape: [6, D], data: seq(6 * D, 100) },
      [`${P}ln_final.weight`]: { shape: [D], data: seq(D, 200) },
      [`${P}ln_final.bias`]: { shape: [D], data: seq(D, 210) },
      [`${P}text_projection`]: { shape: [D, D], data: seq(D * D, 300) },
      [`${P}logit_scale`]: { shape: [], data: [4.6] },
    };
    for (const i of [0, 1]) {
      const r = `${P}transformer.resblocks.${i}.`;
      const o = 1000 * (i + 1);
      t[`${r}attn.in_proj_weight`] = { shape: [3 * D, D], data: seq(3 * D * D, o) };
      t[`${r}attn.in_proj_bias`] = { shape: [3 * D], data: seq(3 * D, o + 100) };
      t[`${r}attn.out_proj.weight`] = { shape: [D, D], data: seq(D * D, o + 200) };
      t[`${r}attn.out_proj.bias`] = { shape: [D], data: seq(D, o + 300) };
      t[`${r}ln_1.weight`] = { shape: [D], data: seq(D, o + 400) };
      t[`${r}ln_1.bias`] = { shape: [D], data: seq(D, o + 410) };
      t[`${r}ln_2.weight`] = { shape: [D], data: seq(D, o + 420) };
      t[`${r}ln_2.bias`] = { shape: [D], data: seq(D, o + 430) };
      t[`${r}mlp.c_fc.weight`] = { shape: [2 * D, D], data: seq(2 * D * D, o + 500) };
      t[`${r}mlp.c_fc.bias`] = { shape: [2 * D], data: seq(2 * D, o + 600) };
      t[`${r}mlp.c_proj.weight`] = { shape: [D, 2 * D], data: seq(2 * D * D, o + 700) };
      t[`${r}mlp.c_proj.bias`] = { shape: [D], data: seq(D, o + 800) };
    }
    return t;
  }

  test('in_proj is split into q/k/v; the last resblock, text_projection and logit_scale are dropped', async () => {
    const raw = tinyOpenClip();
    const src = memorySource(raw);
    const map = convertOpenClipKeys(src.keys(), { numHiddenLayers: 1 });
    const mapped = mappedSource(src, map);
    const keys = [...mapped.keys()].sort();
    expect(keys).toEqual(
      [
        'text_model.embeddings.position_embedding.weight',
        'text_model.embeddings.token_embedding.weight',
        'text_model.final_layer_norm.bias',
        'text_model.final_layer_norm.weight',
        ...['layer_norm1', 'layer_norm2', 'mlp.fc1', 'mlp.fc2', 'self_attn.q_proj', 'self_attn.k_proj', 'self_attn.v_proj', 'self_attn.out_proj'].flatMap((m) => [
          `text_model.encoder.layers.0.${m}.weight`,
          `text_model.encoder.layers.0.${m}.bias`,
        ]),
      ].sort(),
    );
    const w = raw[`${LDM_OPEN_CLIP_PREFIX}transformer.resblocks.0.attn.in_proj_weight`]!.data;
    const b = raw[`${LDM_OPEN_CLIP_PREFIX}transformer.resblocks.0.attn.in_proj_bias`]!.data;
    for (const [i, p] of ['q_proj', 'k_proj', 'v_proj'].entries()) {
      expect(mapped.shape(`text_model.encoder.layers.0.self_attn.${p}.weight`)).toEqual([D, D]);
      expect(Array.from(await mapped.read(`text_model.encoder.layers.0.self_attn.${p}.weight`))).toEqual(w.slice(i * D * D, (i + 1) * D * D));
      expect(Array.from(await mapped.read(`text_model.encoder.layers.0.self_attn.${p}.bias`))).toEqual(b.slice(i * D, (i + 1) * D));
    }
    expect(Array.from(await mapped.read('text_model.encoder.layers.0.mlp.fc2.weight'))).toEqual(raw[`${LDM_OPEN_CLIP_PREFIX}transformer.resblocks.0.mlp.c_proj.weight`]!.data);
    expect(Array.from(await mapped.read('text_model.embeddings.position_embedding.weight'))).toEqual(raw[`${LDM_OPEN_CLIP_PREFIX}positional_embedding`]!.data);
  });

  test('the mapped tower loads strictly into a CLIPTextModel, through singleFileSources', async () => {
    const cfg = parseCLIPTextConfig({ hidden_size: D, intermediate_size: 2 * D, num_hidden_layers: 1, num_attention_heads: 2, vocab_size: 6, max_position_embeddings: 3, hidden_act: 'gelu' });
    const raw = tinyOpenClip();
    // singleFileSources needs UNet/VAE layouts too; with no such keys their sources are empty.
    const srcs = singleFileSources(memorySource(raw), { unet: { layersPerBlock: 1, blockOutChannels: [8] }, vae: { upBlockTypes: ['UpDecoderBlock2D'] }, textEncoder: cfg }, 'open_clip');
    expect(srcs.unet.keys()).toEqual([]);
    const model = new CLIPTextModel(cfg);
    await model.loadWeights(srcs.textEncoder);
    const q = model.textModel.encoder.layers[0]!.selfAttn.q.weight.value;
    // Stored PyTorch [out, in] rows 0..3 of in_proj_weight, transposed to tfjs [in, out].
    const expected = tf.tensor2d(raw[`${LDM_OPEN_CLIP_PREFIX}transformer.resblocks.0.attn.in_proj_weight`]!.data.slice(0, D * D), [D, D]).transpose();
    expect(Array.from(await q.data())).toEqual(Array.from(await expected.data()));
    const ids = tf.tensor2d([[1, 5, 2]], [1, 3], 'int32');
    const y = model.forward(ids);
    expect(y.shape).toEqual([1, 3, D]);
    tf.dispose([expected, ids, y]);
    model.dispose();
  });
});
