// The CLIP text encoder's configuration, read from a transformers `text_encoder/config.json`.
import type * as NodeFs from 'fs';
import { nodeModule } from './node-builtins';
import { IoError, ModelFormatError } from '@ddsjs/safetensors';

/** Activations a CLIP text encoder may use (`hidden_act`). */
export type CLIPActivation = 'quick_gelu' | 'gelu';

/**
 * The fields of transformers' `CLIPTextConfig` that the text model uses, in camelCase. Built by
 * {@link parseCLIPTextConfig}, which applies transformers' defaults to absent keys.
 */
export interface CLIPTextConfig {
  /** `vocab_size` (default 49408). */
  vocabSize: number;
  /** `hidden_size` (default 512). */
  hiddenSize: number;
  /** `intermediate_size` (default 2048). */
  intermediateSize: number;
  /** `num_hidden_layers` (default 12). */
  numHiddenLayers: number;
  /** `num_attention_heads` (default 8). */
  numAttentionHeads: number;
  /** `max_position_embeddings` (default 77). */
  maxPositionEmbeddings: number;
  /** `hidden_act` (default `'quick_gelu'`; SD 1.x uses quick_gelu, SD 2.x gelu). */
  hiddenAct: CLIPActivation;
  /** `layer_norm_eps` (default 1e-5). */
  layerNormEps: number;
  /** `projection_dim` (default 512): output width of the optional `text_projection`. */
  projectionDim: number;
  /**
   * `eos_token_id` (default 49407). The hub's SD configs say 2, which makes transformers take the pooled
   * output at the argmax of the ids (the legacy path: the EOS id 49407 is the largest id).
   */
  eosTokenId: number;
  /** `bos_token_id` (default 49406). */
  bosTokenId: number;
  /** `pad_token_id` (default 1). Unused by the model (no padding mask); kept for completeness. */
  padTokenId: number;
  /**
   * Whether the file declares `CLIPTextModelWithProjection` (SDXL's `text_encoder_2`): the model then
   * also has `text_projection.weight` `[projection_dim, hidden_size]`.
   */
  withProjection: boolean;
}

/** transformers' `CLIPTextConfig` defaults. */
export const CLIP_TEXT_CONFIG_DEFAULTS: Readonly<CLIPTextConfig> = Object.freeze({
  vocabSize: 49408,
  hiddenSize: 512,
  intermediateSize: 2048,
  numHiddenLayers: 12,
  numAttentionHeads: 8,
  maxPositionEmbeddings: 77,
  hiddenAct: 'quick_gelu',
  layerNormEps: 1e-5,
  projectionDim: 512,
  eosTokenId: 49407,
  bosTokenId: 49406,
  padTokenId: 1,
  withProjection: false,
});

const SUPPORTED_ARCHITECTURES = ['CLIPTextModel', 'CLIPTextModelWithProjection'];

/**
 * Builds a {@link CLIPTextConfig} from the parsed JSON of a transformers `text_encoder/config.json`,
 * with transformers' defaults for absent keys. `file` names the source in error messages.
 *
 * Throws an error naming `file` and the field when a value is of the wrong type or unsupported
 * (`hidden_act` other than `quick_gelu`/`gelu`, an architecture other than `CLIPTextModel` /
 * `CLIPTextModelWithProjection`, `hidden_size` not divisible by `num_attention_heads`, …).
 */
export function parseCLIPTextConfig(json: unknown, file = 'text_encoder/config.json'): CLIPTextConfig {
  if (typeof json !== 'object' || json === null || Array.isArray(json)) {
    throw new ModelFormatError(`${file}: expected a JSON object`);
  }
  const j = json as Record<string, unknown>;
  const d = CLIP_TEXT_CONFIG_DEFAULTS;
  const int = (key: string, def: number, min = 1): number => {
    const v = j[key];
    if (v === undefined || v === null) return def;
    if (typeof v !== 'number' || !Number.isInteger(v) || v < min) {
      throw new ModelFormatError(`${file}: field '${key}' must be an integer ≥ ${min}, got ${JSON.stringify(v)}`);
    }
    return v;
  };
  const num = (key: string, def: number): number => {
    const v = j[key];
    if (v === undefined || v === null) return def;
    if (typeof v !== 'number' || !Number.isFinite(v) || v <= 0) {
      throw new ModelFormatError(`${file}: field '${key}' must be a positive number, got ${JSON.stringify(v)}`);
    }
    return v;
  };
  const act = j.hidden_act ?? d.hiddenAct;
  if (act !== 'quick_gelu' && act !== 'gelu') {
    throw new ModelFormatError(`${file}: field 'hidden_act' is ${JSON.stringify(act)}; supported: "quick_gelu", "gelu"`);
  }
  let withProjection = false;
  if (j.architectures !== undefined && j.architectures !== null) {
    if (!Array.isArray(j.architectures) || j.architectures.some((a) => typeof a !== 'string')) {
      throw new ModelFormatError(`${file}: field 'architectures' must be an array of strings`);
    }
    const archs = j.architectures as string[];
    const bad = archs.filter((a) => !SUPPORTED_ARCHITECTURES.includes(a));
    if (bad.length) {
      throw new ModelFormatError(`${file}: field 'architectures' has unsupported ${JSON.stringify(bad)}; supported: ${SUPPORTED_ARCHITECTURES.join(', ')}`);
    }
    withProjection = archs.includes('CLIPTextModelWithProjection');
  }
  const cfg: CLIPTextConfig = {
    vocabSize: int('vocab_size', d.vocabSize),
    hiddenSize: int('hidden_size', d.hiddenSize),
    intermediateSize: int('intermediate_size', d.intermediateSize),
    numHiddenLayers: int('num_hidden_layers', d.numHiddenLayers),
    numAttentionHeads: int('num_attention_heads', d.numAttentionHeads),
    maxPositionEmbeddings: int('max_position_embeddings', d.maxPositionEmbeddings),
    hiddenAct: act,
    layerNormEps: num('layer_norm_eps', d.layerNormEps),
    projectionDim: int('projection_dim', d.projectionDim),
    eosTokenId: int('eos_token_id', d.eosTokenId, 0),
    bosTokenId: int('bos_token_id', d.bosTokenId, 0),
    padTokenId: int('pad_token_id', d.padTokenId, 0),
    withProjection,
  };
  if (cfg.hiddenSize % cfg.numAttentionHeads !== 0) {
    throw new ModelFormatError(
      `${file}: field 'hidden_size' (${cfg.hiddenSize}) is not divisible by 'num_attention_heads' (${cfg.numAttentionHeads})`,
    );
  }
  return cfg;
}

/** Reads and parses a transformers `text_encoder/config.json` (see {@link parseCLIPTextConfig}). */
export async function readCLIPTextConfig(file: string): Promise<CLIPTextConfig> {
  let text: string;
  try {
    text = await nodeModule<typeof NodeFs>('fs').promises.readFile(file, 'utf8');
  } catch (e) {
    throw new IoError(`cannot read CLIP text config ${file}: ${(e as Error).message}`);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    throw new ModelFormatError(`${file}: invalid JSON: ${(e as Error).message}`);
  }
  return parseCLIPTextConfig(json, file);
}
