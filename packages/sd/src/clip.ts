// transformers' CLIPTextModel (the Stable Diffusion text encoder) on tfjs. Module paths are the
// transformers checkpoint keys (`text_model.encoder.layers.0.self_attn.q_proj.weight`, …).
import * as tf from '@tensorflow/tfjs';
import { Module, Linear, LayerNorm, Embedding, attention, gelu, quickGelu, residual, sequential } from '@ddsjs/nn';
import type { StateDictSource } from '@ddsjs/nn';
import type * as NodePath from 'path';
import { nodeModule } from './node-builtins';
import { findSafetensors, InvalidArgumentError, SafetensorsFile } from '@ddsjs/safetensors';
import { CLIPTextConfig, readCLIPTextConfig } from './clip-config';
import { filteredSource, safetensorsSource } from './sources';

const path = nodeModule<typeof NodePath>('path');

/** Key of the position-id buffer that older transformers files hold (int64 arange); never a parameter. */
export const CLIP_POSITION_IDS_KEY = 'text_model.embeddings.position_ids';

/** Options of {@link CLIPTextModel.forward}. */
export interface CLIPForwardOptions {
  /**
   * Number of final layers to skip, as diffusers' `clip_skip`: the output is
   * `final_layer_norm(hidden_states[-(clipSkip + 1)])`. 0 or absent = the last hidden state.
   */
  clipSkip?: number;
}

/**
 * Per row of `mask` `[B, L]`, the index of the first `true` (0 when there is none) — transformers'
 * `argmax(-1)` over the EOS mask (or over the ids, legacy path), which returns the first of equal maxima. tfjs's
 * `argMax` does not promise which of equal values it returns: the webgpu backend's reduction returned 64 instead of
 * 6 for a 77-token row padded with EOS, which pooled the wrong token. So the scores here are distinct: 2·(L − i) at
 * the true positions (the first is the largest), 1 at position 0 otherwise, 0 elsewhere.
 */
function firstIndexWhere(mask: tf.Tensor2D): tf.Tensor1D {
  return tf.tidy(() => {
    const len = mask.shape[1];
    const rank = tf.mul(tf.sub(tf.scalar(len, 'int32'), tf.range(0, len, 1, 'int32')), tf.scalar(2, 'int32'));
    const first = tf.cast(tf.equal(tf.range(0, len, 1, 'int32'), tf.scalar(0, 'int32')), 'int32');
    const score = tf.maximum(tf.mul(tf.cast(mask, 'int32'), rank), first);
    return tf.argMax(score, 1) as tf.Tensor1D;
  });
}

/** Everything {@link CLIPTextModel.forwardWithHiddenStates} returns. */
export interface CLIPTextOutput {
  /** `[B, L, D]` after `final_layer_norm` (or the clip-skip output when `clipSkip` is given). */
  lastHiddenState: tf.Tensor3D;
  /**
   * transformers' `hidden_states` (`output_hidden_states=True`): the embeddings output, then each
   * encoder layer's output (before the final LayerNorm) — `numHiddenLayers + 1` tensors `[B, L, D]`.
   */
  hiddenStates: tf.Tensor3D[];
  /**
   * `pooler_output` `[B, D]`: `lastHiddenState` at the first EOS position (the first argmax of the ids
   * when `eos_token_id` is 2, as transformers' legacy path; else the first id equal to `eos_token_id`).
   */
  pooled: tf.Tensor2D;
  /** `text_embeds` `[B, projection_dim]` = `pooled · text_projectionᵀ`, only for models with a projection. */
  textEmbeds?: tf.Tensor2D;
}

/** `text_model.embeddings`: token embedding plus learned absolute position embedding (positions `0..L-1`). */
export class CLIPEmbeddings extends Module {
  readonly tokenEmbedding: Embedding;
  readonly positionEmbedding: Embedding;
  constructor(c: CLIPTextConfig) {
    super();
    this.tokenEmbedding = this.child('token_embedding', new Embedding(c.vocabSize, c.hiddenSize));
    this.positionEmbedding = this.child('position_embedding', new Embedding(c.maxPositionEmbeddings, c.hiddenSize));
  }

  /** int32 ids `[B, L]` → `[B, L, D]`. */
  forward(ids: tf.Tensor2D): tf.Tensor3D {
    const pos = this.positionEmbedding.weight.value.slice([0, 0], [ids.shape[1], -1]);
    return tf.add(this.tokenEmbedding.call(ids), pos);
  }
}

/** `self_attn`: multi-head self-attention with q/k/v/out projections (biases), under an additive mask. */
export class CLIPAttention extends Module {
  readonly q: Linear;
  readonly k: Linear;
  readonly v: Linear;
  readonly out: Linear;
  constructor(private readonly c: CLIPTextConfig) {
    super();
    const d = c.hiddenSize;
    this.k = this.child('k_proj', new Linear(d, d));
    this.v = this.child('v_proj', new Linear(d, d));
    this.q = this.child('q_proj', new Linear(d, d));
    this.out = this.child('out_proj', new Linear(d, d));
  }

  /** `x[B, L, D]` with additive mask `[L, L]` → `[B, L, D]`. */
  forward(x: tf.Tensor3D, mask: tf.Tensor2D): tf.Tensor3D {
    const [q, k, v] = [this.q.call(x), this.k.call(x), this.v.call(x)] as tf.Tensor3D[];
    return this.out.call(attention(q, k, v, { heads: this.c.numAttentionHeads, mask })) as tf.Tensor3D;
  }
}

/** `mlp`: `fc2(act(fc1(x)))` with `hidden_act` (quick_gelu or exact gelu). */
export class CLIPMLP extends Module {
  readonly fc1: Linear;
  readonly fc2: Linear;
  constructor(private readonly c: CLIPTextConfig) {
    super();
    this.fc1 = this.child('fc1', new Linear(c.hiddenSize, c.intermediateSize));
    this.fc2 = this.child('fc2', new Linear(c.intermediateSize, c.hiddenSize));
  }

  /** `x[B, L, D]` → `[B, L, D]`. */
  forward(x: tf.Tensor3D): tf.Tensor3D {
    return sequential(x, this.fc1, this.c.hiddenAct === 'gelu' ? gelu : quickGelu, this.fc2);
  }
}

/** One pre-LayerNorm transformer layer: `x + attn(ln1(x))`, then `h + mlp(ln2(h))`. */
export class CLIPEncoderLayer extends Module {
  readonly selfAttn: CLIPAttention;
  readonly layerNorm1: LayerNorm;
  readonly mlp: CLIPMLP;
  readonly layerNorm2: LayerNorm;
  constructor(c: CLIPTextConfig) {
    super();
    this.selfAttn = this.child('self_attn', new CLIPAttention(c));
    this.layerNorm1 = this.child('layer_norm1', new LayerNorm(c.hiddenSize, c.layerNormEps));
    this.mlp = this.child('mlp', new CLIPMLP(c));
    this.layerNorm2 = this.child('layer_norm2', new LayerNorm(c.hiddenSize, c.layerNormEps));
  }

  /** `x[B, L, D]` with additive mask `[L, L]` → `[B, L, D]`. */
  forward(x: tf.Tensor3D, mask: tf.Tensor2D): tf.Tensor3D {
    return sequential(
      x,
      (h) => residual(h, [this.layerNorm1, (t) => this.selfAttn.call(t, mask)]),
      (h) => residual(h, [this.layerNorm2, this.mlp]),
    );
  }
}

/** `text_model.encoder`: the list of `num_hidden_layers` encoder layers (`layers.{i}`). */
export class CLIPEncoder extends Module {
  readonly layers: CLIPEncoderLayer[];
  constructor(c: CLIPTextConfig) {
    super();
    this.layers = this.list(
      'layers',
      Array.from({ length: c.numHiddenLayers }, () => new CLIPEncoderLayer(c)),
    );
  }
}

/** `text_model`: embeddings, encoder and `final_layer_norm`. */
export class CLIPTextTransformer extends Module {
  readonly embeddings: CLIPEmbeddings;
  readonly encoder: CLIPEncoder;
  readonly finalLayerNorm: LayerNorm;
  constructor(c: CLIPTextConfig) {
    super();
    this.embeddings = this.child('embeddings', new CLIPEmbeddings(c));
    this.encoder = this.child('encoder', new CLIPEncoder(c));
    this.finalLayerNorm = this.child('final_layer_norm', new LayerNorm(c.hiddenSize, c.layerNormEps));
  }
}

/**
 * transformers' `CLIPTextModel` (optionally `CLIPTextModelWithProjection`): token + position
 * embeddings, pre-LayerNorm transformer layers under a causal mask (no padding mask), final LayerNorm.
 *
 * Parameters are named by the transformers checkpoint keys (`text_model.embeddings.token_embedding.weight`,
 * `text_model.encoder.layers.{i}.self_attn.{q,k,v,out}_proj.{weight,bias}`, `…layer_norm1`, `…mlp.fc1`,
 * `…mlp.fc2`, `…layer_norm2`, `text_model.final_layer_norm`, and `text_projection.weight` with a
 * projection). Load them with {@link CLIPTextModel.loadWeights} (which ignores the `position_ids`
 * buffer of older files) or `loadStateDict` on a source without that buffer.
 */
export class CLIPTextModel extends Module {
  readonly textModel: CLIPTextTransformer;
  readonly textProjection: Linear | null;

  constructor(readonly config: CLIPTextConfig) {
    super();
    this.textModel = this.child('text_model', new CLIPTextTransformer(config));
    this.textProjection = config.withProjection
      ? this.child('text_projection', new Linear(config.hiddenSize, config.projectionDim, false))
      : null;
  }

  /**
   * Loads the weights from `source` (transformers key names, e.g. a `safetensorsSource` over
   * `text_encoder/model.safetensors`, or the mapped source of a single-file checkpoint), strictly:
   * a missing, unexpected or mis-shaped key is an error listing them all. The
   * `text_model.embeddings.position_ids` buffer, if present, is ignored (positions are `arange(L)`).
   */
  async loadWeights(source: StateDictSource, options: { onTensor?: (key: string, index: number, total: number) => void } = {}): Promise<void> {
    await this.loadStateDict(clipStateDictSource(source), { strict: true, onTensor: options.onTensor });
  }

  /**
   * The last hidden state `[B, L, D]` for int32 token ids `[B, L]` (L ≤ max_position_embeddings):
   * transformers' `last_hidden_state`, or with `clipSkip` diffusers' clip-skip embedding.
   * Runs in `tf.tidy`. Out-of-range ids give NaN rows (check them beforehand with {@link validateTokenIds}
   * when they do not come from the tokenizer).
   */
  forward(ids: tf.Tensor2D, options: CLIPForwardOptions = {}): tf.Tensor3D {
    const skip = this.checkClipSkip(options.clipSkip);
    this.checkIds(ids);
    return tf.tidy(() => {
      const mask = this.causalMask(ids.shape[1]);
      const layers = this.textModel.encoder.layers.slice(0, this.config.numHiddenLayers - skip);
      return sequential(
        this.poisonInvalid(ids, this.textModel.embeddings.call(this.safeIds(ids))),
        ...layers.map((layer) => (h: tf.Tensor3D) => layer.call(h, mask)),
        this.textModel.finalLayerNorm,
      );
    });
  }

  /**
   * Like {@link CLIPTextModel.forward} but also returns transformers' `hidden_states` (embeddings
   * output, then every layer's output, before the final LayerNorm), the pooled output at the EOS
   * position and, with a projection, `text_embeds`. `clipSkip` changes `lastHiddenState` (and `pooled`,
   * which is taken from it) only. Runs in `tf.tidy`.
   */
  forwardWithHiddenStates(ids: tf.Tensor2D, options: CLIPForwardOptions = {}): CLIPTextOutput {
    const skip = this.checkClipSkip(options.clipSkip);
    this.checkIds(ids);
    const out = tf.tidy(() => {
      const mask = this.causalMask(ids.shape[1]);
      let h = this.poisonInvalid(ids, this.textModel.embeddings.call(this.safeIds(ids)));
      const hidden: tf.Tensor3D[] = [h];
      for (const layer of this.textModel.encoder.layers) {
        h = layer.call(h, mask);
        hidden.push(h);
      }
      const last = this.textModel.finalLayerNorm.call(hidden[hidden.length - 1 - skip]);
      const eosIdx = firstIndexWhere(
        this.config.eosTokenId === 2 ? tf.equal(ids, tf.max(ids, 1, true)) : tf.equal(ids, this.config.eosTokenId),
      );
      const [b, len, dim] = last.shape;
      const offsets = tf.mul(tf.range(0, b, 1, 'int32'), tf.scalar(len, 'int32'));
      const flatIdx = tf.add(tf.cast(eosIdx, 'int32'), offsets);
      const pooled = tf.gather(last.reshape([b * len, dim]), flatIdx) as tf.Tensor2D;
      const result: tf.Tensor[] = [last, pooled, ...hidden];
      if (this.textProjection) result.push(this.textProjection.forward(pooled));
      return result;
    });
    const [lastHiddenState, pooled, ...rest] = out;
    const hiddenStates = rest.slice(0, this.config.numHiddenLayers + 1) as tf.Tensor3D[];
    const o: CLIPTextOutput = {
      lastHiddenState: lastHiddenState as tf.Tensor3D,
      hiddenStates,
      pooled: pooled as tf.Tensor2D,
    };
    if (this.textProjection) o.textEmbeds = rest[rest.length - 1] as tf.Tensor2D;
    return o;
  }

  private checkClipSkip(clipSkip: number | undefined): number {
    const s = clipSkip ?? 0;
    if (!Number.isInteger(s) || s < 0 || s >= this.config.numHiddenLayers) {
      throw new InvalidArgumentError(
        `CLIPTextModel: clipSkip must be an integer in [0, ${this.config.numHiddenLayers - 1}], got ${clipSkip}`,
      );
    }
    return s;
  }

  private checkIds(ids: tf.Tensor): void {
    const max = this.config.maxPositionEmbeddings;
    if (!(ids instanceof tf.Tensor)) throw new InvalidArgumentError('CLIPTextModel: ids must be a tf.Tensor2D of int32 token ids');
    const [b = 0, len = 0] = ids.shape;
    if (ids.rank !== 2 || b < 1 || len < 1 || len > max) {
      throw new InvalidArgumentError(`CLIPTextModel: ids must have shape [B, L] with 1 ≤ L ≤ ${max}, got [${ids.shape}]`);
    }
    if (ids.dtype !== 'int32') {
      throw new InvalidArgumentError(`CLIPTextModel: ids must be int32 token ids, got dtype ${ids.dtype}`);
    }
  }

  /** Ids clamped into the vocabulary so that gather never reads out of bounds. */
  private safeIds(ids: tf.Tensor2D): tf.Tensor2D {
    // (tf.clipByValue is a no-op on int32 under the wasm backend; minimum/maximum are not.)
    const lo = tf.scalar(0, 'int32');
    const hi = tf.scalar(this.config.vocabSize - 1, 'int32');
    return tf.minimum(tf.maximum(ids, lo), hi) as tf.Tensor2D;
  }

  /** Replaces the embedding rows of out-of-vocabulary ids by NaN, so that a bad id is never silent. */
  private poisonInvalid(ids: tf.Tensor2D, h: tf.Tensor3D): tf.Tensor3D {
    const valid = tf.logicalAnd(tf.greaterEqual(ids, 0), tf.less(ids, this.config.vocabSize)).expandDims(2);
    return tf.where(valid, h, tf.fill(h.shape, NaN)) as tf.Tensor3D;
  }

  private causalMask(len: number): tf.Tensor2D {
    // 0 on and below the diagonal, a large negative number above (softmax weight exactly 0).
    const upper = tf.sub(tf.linalg.bandPart(tf.ones([len, len]), 0, -1), tf.eye(len));
    return tf.mul(upper, -1e9) as tf.Tensor2D;
  }
}

/**
 * Checks that `ids` is an int32 `[B, L]` tensor with `1 ≤ L ≤ config.maxPositionEmbeddings` and every
 * id in `[0, config.vocabSize)`; throws an error naming the first bad id and its position otherwise.
 * Reads the ids with `await data()` (no tensors are created).
 */
export async function validateTokenIds(ids: tf.Tensor, config: CLIPTextConfig): Promise<void> {
  const max = config.maxPositionEmbeddings;
  const [, len = 0] = ids.shape;
  if (ids.rank !== 2 || len < 1 || len > max) {
    throw new InvalidArgumentError(`token ids must have shape [B, L] with 1 ≤ L ≤ ${max}, got [${ids.shape}]`);
  }
  if (ids.dtype !== 'int32') throw new InvalidArgumentError(`token ids must be int32, got dtype ${ids.dtype}`);
  const d = await ids.data();
  for (let i = 0; i < d.length; i++) {
    if (!(d[i] >= 0 && d[i] < config.vocabSize)) {
      throw new InvalidArgumentError(
        `token id ${d[i]} at [${Math.floor(i / len)}, ${i % len}] is outside the vocabulary [0, ${config.vocabSize})`,
      );
    }
  }
}

/**
 * Wraps a source of transformers CLIP keys for {@link CLIPTextModel}: drops the
 * `text_model.embeddings.position_ids` buffer older files hold; everything else passes through.
 */
export function clipStateDictSource(source: StateDictSource): StateDictSource {
  if (!source.keys().includes(CLIP_POSITION_IDS_KEY)) return source;
  return filteredSource(source, (k) => k !== CLIP_POSITION_IDS_KEY);
}

/** Options of {@link loadCLIPTextModel}. */
export interface LoadCLIPTextModelOptions {
  /** Weights variant, e.g. `'fp16'` for `model.fp16.safetensors` (no silent fallback to fp32). */
  variant?: string;
  /** Progress callback, called after each tensor. */
  onTensor?: (key: string, index: number, total: number) => void;
}

/**
 * Loads a transformers CLIP text encoder folder (`<dir>/config.json` + `model[.variant].safetensors` or
 * its sharded index), strictly (see {@link CLIPTextModel.loadWeights}). The caller owns the model
 * (`dispose()` frees it).
 */
export async function loadCLIPTextModel(dir: string, options: LoadCLIPTextModelOptions = {}): Promise<CLIPTextModel> {
  const config = await readCLIPTextConfig(path.join(dir, 'config.json'));
  const file = await findSafetensors(dir, 'model', options.variant);
  const f = await SafetensorsFile.open(file);
  const model = new CLIPTextModel(config);
  try {
    await model.loadWeights(safetensorsSource(f, { name: file }), { onTensor: options.onTensor });
  } catch (e) {
    model.dispose();
    throw e;
  } finally {
    await f.close();
  }
  return model;
}
