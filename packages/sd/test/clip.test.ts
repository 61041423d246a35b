import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import * as tf from '@tensorflow/tfjs';
import { initBackend, StateDictError } from '@ddsjs/nn';
import { SafetensorsFile, writeSafetensors } from '@ddsjs/safetensors';
import { readGoldens, goldenTensor, expectGolden, relErr, TINY_SD15, Golden } from '../../../test-utils';
import { CLIPTextModel, validateTokenIds, loadCLIPTextModel } from '../src/clip';
import { parseCLIPTextConfig, readCLIPTextConfig, CLIPTextConfig } from '../src/clip-config';
import { safetensorsSource, filteredSource } from '../src/sources';

const TE = path.join(TINY_SD15, 'text_encoder');

async function loadModel(file: string): Promise<CLIPTextModel> {
  const config = await readCLIPTextConfig(path.join(TE, 'config.json'));
  const model = new CLIPTextModel(config);
  const f = await SafetensorsFile.open(path.join(TE, file));
  try {
    await model.loadWeights(safetensorsSource(f, { name: file }));
  } finally {
    await f.close();
  }
  return model;
}

describe('CLIPTextModel (tiny-sd15)', () => {
  let g: Record<string, Golden>;
  let ids: tf.Tensor2D;
  let model: CLIPTextModel;

  beforeAll(async () => {
    await initBackend('wasm');
    g = await readGoldens('text_encoder');
    ids = tf.tensor2d(g.input_ids.data, g.input_ids.shape as [number, number], 'int32') as tf.Tensor2D;
    model = await loadModel('model.safetensors');
  });
  afterAll(() => {
    ids?.dispose();
    model?.dispose();
  });

  test('fp32 weights match the transformers goldens within 1e-4', async () => {
    const before = tf.memory().numTensors;
    const out = model.forwardWithHiddenStates(ids);
    const errLast = await expectGolden(out.lastHiddenState, g.last_hidden_state, 1e-4, 'last_hidden_state', false);
    const errPool = await expectGolden(out.pooled, g.pooler_output, 1e-4, 'pooler_output', false);
    expect(out.hiddenStates).toHaveLength(4);
    const stacked = tf.stack(out.hiddenStates);
    const errHidden = await expectGolden(stacked, g.hidden_states, 1e-4, 'hidden_states', false);
    stacked.dispose();
    // forward() is the same last_hidden_state.
    const last = model.forward(ids);
    expect(relErr(await last.data(), await out.lastHiddenState.data())).toBe(0);
    last.dispose();
    tf.dispose([out.lastHiddenState, out.pooled, ...out.hiddenStates]);
    expect(tf.memory().numTensors).toBe(before);
    console.log(`CLIP fp32 rel errors: last ${errLast.toExponential(2)}, hidden ${errHidden.toExponential(2)}, pooled ${errPool.toExponential(2)}`);
  });

  test('clipSkip gives final_layer_norm(hidden_states[-(n+1)])', async () => {
    const n = 1;
    const skipped = model.forward(ids, { clipSkip: n });
    const hs = goldenTensor({ shape: g.hidden_states.shape, data: g.hidden_states.data });
    const expected = tf.tidy(() => {
      const h = tf.unstack(hs)[hs.shape[0] - 1 - n] as tf.Tensor3D;
      return model.textModel.finalLayerNorm.forward(h);
    });
    const err = relErr(await skipped.data(), await expected.data());
    expect(err).toBeLessThan(1e-4);
    tf.dispose([skipped, hs, expected]);
    expect(() => model.forward(ids, { clipSkip: 3 })).toThrow(/clipSkip/);
  });

  test('repeated forwards do not leak tensors', () => {
    const small = ids.slice([0, 0], [2, 77]) as tf.Tensor2D;
    model.forward(small).dispose();
    const before = tf.memory().numTensors;
    for (let i = 0; i < 3; i++) {
      model.forward(small).dispose();
      const o = model.forwardWithHiddenStates(small, { clipSkip: 1 });
      tf.dispose([o.lastHiddenState, o.pooled, ...o.hiddenStates]);
    }
    expect(tf.memory().numTensors).toBe(before);
    small.dispose();
  });

  test('bad ids give clear errors', async () => {
    const f = tf.zeros([1, 77]) as tf.Tensor2D;
    expect(() => model.forward(f)).toThrow(/int32/);
    const long = tf.zeros([1, 78], 'int32') as tf.Tensor2D;
    expect(() => model.forward(long)).toThrow(/\[1,78\]/);
    const oov = tf.tensor2d([[49406, 49408, 49407]], [1, 3], 'int32');
    await expect(validateTokenIds(oov, model.config)).rejects.toThrow(/49408 at \[0, 1\]/);
    // forward never silently embeds an out-of-range id: its row becomes NaN.
    const y = model.forward(oov);
    const d = await y.data();
    expect(Number.isNaN(d[32 * 1])).toBe(true);
    await expect(validateTokenIds(ids, model.config)).resolves.toBeUndefined();
    tf.dispose([f, long, oov, y]);
  });
});

describe('CLIPTextModel loading', () => {
  beforeAll(() => initBackend('wasm'));

  test('fp16 variant matches the fp32 goldens at fp16 precision', async () => {
    const g = await readGoldens('text_encoder');
    const ids = tf.tensor2d(g.input_ids.data, g.input_ids.shape as [number, number], 'int32') as tf.Tensor2D;
    const model = await loadCLIPTextModel(TE, { variant: 'fp16' });
    const out = model.forwardWithHiddenStates(ids);
    const eLast = await expectGolden(out.lastHiddenState, g.last_hidden_state, 3e-3, 'last_hidden_state (fp16 weights)', false);
    const ePool = await expectGolden(out.pooled, g.pooler_output, 3e-3, 'pooler_output (fp16 weights)', false);
    console.log(`CLIP fp16-weights rel errors: last ${eLast.toExponential(2)}, pooled ${ePool.toExponential(2)}`);
    // fp16 rounding moves the output measurably (the test would pass for fp32 weights otherwise).
    expect(eLast).toBeGreaterThan(1e-5);
    tf.dispose([ids, out.lastHiddenState, out.pooled, ...out.hiddenStates]);
    model.dispose();
  });

  test('a file with the int64 position_ids buffer loads; a missing key is listed', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ddsjs-clip-'));
    const f = await SafetensorsFile.open(path.join(TE, 'model.fp16.safetensors'));
    try {
      const tensors: Record<string, { dtype: 'F16'; shape: number[]; data: Uint16Array } | { dtype: 'I64'; shape: number[]; data: BigInt64Array }> = {};
      for (const k of f.keys()) tensors[k] = { dtype: 'F16', shape: [...f.info(k).shape], data: (await f.read(k)) as Uint16Array };
      tensors['text_model.embeddings.position_ids'] = {
        dtype: 'I64',
        shape: [1, 77],
        data: BigInt64Array.from({ length: 77 }, (_, i) => BigInt(i)),
      };
      const file = path.join(dir, 'model.safetensors');
      await writeSafetensors(file, tensors);
      const cfg = await readCLIPTextConfig(path.join(TE, 'config.json'));
      const withIds = await SafetensorsFile.open(file);
      const model = new CLIPTextModel(cfg);
      try {
        expect(withIds.keys()).toContain('text_model.embeddings.position_ids');
        await model.loadWeights(safetensorsSource(withIds));
        expect(model.namedParameters().every(([, p]) => p.isSet)).toBe(true);
        // Without the adapter, strict loading would reject the buffer as unexpected.
        await expect(model.loadStateDict(safetensorsSource(withIds))).rejects.toThrow(/unexpected keys \(1\): text_model\.embeddings\.position_ids/);
        // A missing key is an error that names it.
        const missing = filteredSource(safetensorsSource(withIds), (k) => k !== 'text_model.encoder.layers.1.mlp.fc2.bias');
        const err = await model.loadWeights(missing).catch((e: unknown) => e);
        expect(err).toBeInstanceOf(StateDictError);
        expect((err as StateDictError).missing).toEqual(['text_model.encoder.layers.1.mlp.fc2.bias']);
        expect((err as Error).message).toMatch(/missing keys \(1\): text_model\.encoder\.layers\.1\.mlp\.fc2\.bias/);
      } finally {
        model.dispose();
        await withIds.close();
      }
    } finally {
      await f.close();
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  test('loadCLIPTextModel names a missing variant', async () => {
    await expect(loadCLIPTextModel(TE, { variant: 'bf16' })).rejects.toThrow(/model\.bf16\.safetensors/);
  });

  test('config: defaults and unsupported values', () => {
    const c: CLIPTextConfig = parseCLIPTextConfig({}, 'x/config.json');
    expect(c).toMatchObject({ hiddenSize: 512, intermediateSize: 2048, numHiddenLayers: 12, numAttentionHeads: 8, maxPositionEmbeddings: 77, hiddenAct: 'quick_gelu', layerNormEps: 1e-5, vocabSize: 49408 });
    expect(() => parseCLIPTextConfig({ hidden_act: 'relu' }, 'te/config.json')).toThrow(/te\/config\.json: field 'hidden_act'/);
    expect(() => parseCLIPTextConfig({ architectures: ['T5EncoderModel'] }, 'te/config.json')).toThrow(/architectures/);
    expect(() => parseCLIPTextConfig({ hidden_size: 30, num_attention_heads: 4 }, 'te/config.json')).toThrow(/hidden_size/);
    expect(() => parseCLIPTextConfig({ num_hidden_layers: 'x' }, 'te/config.json')).toThrow(/num_hidden_layers/);
    const p = parseCLIPTextConfig({ architectures: ['CLIPTextModelWithProjection'], hidden_act: 'gelu' });
    expect(p.withProjection).toBe(true);
    const m = new CLIPTextModel({ ...p, hiddenSize: 8, intermediateSize: 16, numHiddenLayers: 1, numAttentionHeads: 2, vocabSize: 10, maxPositionEmbeddings: 5, projectionDim: 6 });
    expect(m.namedParameters().find(([n]) => n === 'text_projection.weight')?.[1].shape).toEqual([8, 6]);
  });

  test('pooled output: the FIRST EOS position (several EOS, or none → position 0), legacy and eos_token_id paths', async () => {
    // transformers takes argmax(-1), i.e. the first of equal maxima; tfjs's argMax does not promise which (webgpu
    // returned another), so the model computes the index itself. Rows are 70 tokens (> a 64-wide reduction).
    const base = parseCLIPTextConfig({});
    const len = 70;
    const row = (eosAt: number[], fill = 5) => Array.from({ length: len }, (_, i) => (eosAt.includes(i) ? 9 : i === 0 ? 8 : fill));
    for (const eos of [2, 9]) {
      const m = new CLIPTextModel({ ...base, hiddenSize: 8, intermediateSize: 16, numHiddenLayers: 1, numAttentionHeads: 2, vocabSize: 10, maxPositionEmbeddings: len, eosTokenId: eos }).initialize(3);
      const rows = [row([3, 4, 69]), row([66, 67, 68, 69]), row([], 9)];
      if (eos === 9) rows.push(row([]));
      const ids = tf.tensor2d(rows, [rows.length, len], 'int32');
      const out = m.forwardWithHiddenStates(ids);
      const want = eos === 2 ? [3, 66, 1] : [3, 66, 1, 0]; // legacy: first max id (9 at 1 in row 3: fill 9); else first 9, none → 0
      const expected = tf.stack(want.map((p, b) => tf.squeeze(tf.slice(out.lastHiddenState, [b, p, 0], [1, 1, 8]))));
      expect(relErr(await out.pooled.data(), await expected.data())).toBe(0);
      tf.dispose([ids, out.lastHiddenState, out.pooled, ...out.hiddenStates, expected]);
      m.dispose();
    }
  });
});
