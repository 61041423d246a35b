// The key mappings LDM → diffusers of single-file checkpoints for the UNet, the VAE and the text encoder,
// reimplemented from diffusers' loaders/single_file_utils.py (convert_ldm_unet_checkpoint,
// convert_ldm_vae_checkpoint, convert_ldm_clip_checkpoint, convert_open_clip_checkpoint). Pure functions of the
// key list and the diffusers config; single-file.ts turns them into lazily-read StateDictSources.
import { KeyMapping, MappedTensor } from './sources';
import { InvalidArgumentError } from '@ddsjs/safetensors';

/** Key prefix of the UNet in an LDM checkpoint. */
export const LDM_UNET_PREFIX = 'model.diffusion_model.';
/** Key prefix of the VAE (first stage model) in an LDM checkpoint. */
export const LDM_VAE_PREFIX = 'first_stage_model.';
/** Key prefix of an SD 1.x text encoder (transformers CLIPTextModel) in an LDM checkpoint. */
export const LDM_CLIP_PREFIX = 'cond_stage_model.transformer.';
/** Key prefix of an SD 2.x text encoder (OpenCLIP ViT-H text tower) in an LDM checkpoint. */
export const LDM_OPEN_CLIP_PREFIX = 'cond_stage_model.model.';


/** What the UNet mapping needs of the diffusers UNet config (a parsed `UNet2DConditionConfig` fits). */
export interface LdmUnetLayout {
  /** Resnets per down block (a number for all blocks, or one per down block). Up blocks have one more. */
  layersPerBlock: number | readonly number[];
  /** One entry per down block (only the count is used). */
  blockOutChannels: readonly number[];
}

/** What the VAE mapping needs of the diffusers VAE config (a parsed `AutoencoderKLConfig` fits). */
export interface LdmVaeLayout {
  /** One entry per decoder up block (only the count is used: LDM numbers them in reverse). */
  upBlockTypes: readonly string[];
}

const identity = (from: string): MappedTensor => ({ from });

function renameResnet(suffix: string): string {
  return suffix
    .replace('in_layers.0', 'norm1')
    .replace('in_layers.2', 'conv1')
    .replace('out_layers.0', 'norm2')
    .replace('out_layers.3', 'conv2')
    .replace('emb_layers.1', 'time_emb_proj')
    .replace('skip_connection', 'conv_shortcut');
}

/**
 * Maps the UNet keys of an LDM checkpoint (`model.diffusion_model.*`) to diffusers
 * `UNet2DConditionModel` keys, as diffusers' `convert_ldm_unet_checkpoint` (non-EMA weights):
 * `time_embed.{0,2}` → `time_embedding.linear_{1,2}`, `input_blocks.0.0` → `conv_in`,
 * `input_blocks.N.0` → `down_blocks.b.resnets.j` / `input_blocks.N.0.op` → `down_blocks.b.downsamplers.0.conv`,
 * `input_blocks.N.1` → `down_blocks.b.attentions.j`, `middle_block.{0,1,2}` → `mid_block.{resnets.0,attentions.0,resnets.1}`,
 * `output_blocks.N.0` → `up_blocks.b.resnets.j`, `output_blocks.N.1` → `up_blocks.b.attentions.j`,
 * `output_blocks.N.{1,2}.conv` → `up_blocks.b.upsamplers.0.conv`, `out.{0,2}` → `conv_norm_out`/`conv_out`,
 * with resnet renames (`in_layers.0` → `norm1`, `in_layers.2` → `conv1`, `out_layers.{0,3}` → `norm2`/`conv2`,
 * `emb_layers.1` → `time_emb_proj`, `skip_connection` → `conv_shortcut`). Block b and layer j of an
 * LDM index follow from `layersPerBlock` (down blocks: lpb resnets + a downsampler except the last;
 * up blocks: lpb + 1 layers). No tensor changes shape.
 *
 * Keys outside `model.diffusion_model.` are ignored; keys inside it that no rule covers are kept
 * under their full LDM name, so that strict loading reports them as unexpected.
 * Returns presented (diffusers) key → stored (LDM) key.
 */
export function convertLdmUnetKeys(keys: readonly string[], config: LdmUnetLayout): KeyMapping {
  const nDown = config.blockOutChannels.length;
  const lpbAt = (b: number): number => {
    const l = config.layersPerBlock;
    const v = typeof l === 'number' ? l : l[b];
    if (v === undefined || !Number.isInteger(v) || v < 1) throw new InvalidArgumentError(`convertLdmUnetKeys: invalid layersPerBlock ${JSON.stringify(l)}`);
    return v;
  };
  // LDM input_blocks index → (down block, slot): slot j < lpb is resnet/attention j, 'down' the downsampler.
  const inputs = new Map<number, { block: number; slot: number | 'down' }>();
  let idx = 1;
  for (let b = 0; b < nDown; b++) {
    for (let j = 0; j < lpbAt(b); j++) inputs.set(idx++, { block: b, slot: j });
    if (b < nDown - 1) inputs.set(idx++, { block: b, slot: 'down' });
  }
  // LDM output_blocks index → (up block, layer).
  const outputs = new Map<number, { block: number; layer: number }>();
  idx = 0;
  for (let u = 0; u < nDown; u++) {
    const n = lpbAt(nDown - 1 - u) + 1;
    for (let j = 0; j < n; j++) outputs.set(idx++, { block: u, layer: j });
  }
  const fixed: Record<string, string> = {
    'time_embed.0': 'time_embedding.linear_1',
    'time_embed.2': 'time_embedding.linear_2',
    'input_blocks.0.0': 'conv_in',
    'out.0': 'conv_norm_out',
    'out.2': 'conv_out',
  };
  const out: KeyMapping = new Map();
  const put = (diffusers: string, ldmKey: string): void => {
    if (out.has(diffusers)) {
      throw new InvalidArgumentError(`convertLdmUnetKeys: '${ldmKey}' and '${out.get(diffusers)!.from}' both map to '${diffusers}'`);
    }
    out.set(diffusers, identity(ldmKey));
  };
  for (const key of keys) {
    if (!key.startsWith(LDM_UNET_PREFIX)) continue;
    const k = key.slice(LDM_UNET_PREFIX.length);
    const param = /^(.*)\.(weight|bias)$/.exec(k);
    let mapped: string | null = null;
    if (param && fixed[param[1]!] !== undefined) mapped = `${fixed[param[1]!]}.${param[2]}`;
    let m: RegExpExecArray | null;
    if (!mapped && (m = /^input_blocks\.(\d+)\.(\d+)\.(.+)$/.exec(k))) {
      const at = inputs.get(Number(m[1]));
      const sub = Number(m[2]);
      const rest = m[3]!;
      if (at && at.slot === 'down' && sub === 0 && rest.startsWith('op.')) {
        mapped = `down_blocks.${at.block}.downsamplers.0.conv.${rest.slice(3)}`;
      } else if (at && at.slot !== 'down' && sub === 0) {
        mapped = `down_blocks.${at.block}.resnets.${at.slot}.${renameResnet(rest)}`;
      } else if (at && at.slot !== 'down' && sub === 1) {
        mapped = `down_blocks.${at.block}.attentions.${at.slot}.${rest}`;
      }
    } else if (!mapped && (m = /^middle_block\.(\d+)\.(.+)$/.exec(k))) {
      const sub = Number(m[1]);
      if (sub === 0 || sub === 2) mapped = `mid_block.resnets.${sub / 2}.${renameResnet(m[2]!)}`;
      else if (sub === 1) mapped = `mid_block.attentions.0.${m[2]}`;
    } else if (!mapped && (m = /^output_blocks\.(\d+)\.(\d+)\.(.+)$/.exec(k))) {
      const at = outputs.get(Number(m[1]));
      const sub = Number(m[2]);
      const rest = m[3]!;
      if (at && sub === 0) mapped = `up_blocks.${at.block}.resnets.${at.layer}.${renameResnet(rest)}`;
      else if (at && (sub === 1 || sub === 2) && rest.startsWith('conv.')) {
        mapped = `up_blocks.${at.block}.upsamplers.0.conv.${rest.slice(5)}`;
      } else if (at && sub === 1) mapped = `up_blocks.${at.block}.attentions.${at.layer}.${rest}`;
    }
    put(mapped ?? key, key);
  }
  return out;
}

const VAE_FIXED: Record<string, string> = {
  'encoder.conv_in': 'encoder.conv_in',
  'encoder.conv_out': 'encoder.conv_out',
  'encoder.norm_out': 'encoder.conv_norm_out',
  'decoder.conv_in': 'decoder.conv_in',
  'decoder.conv_out': 'decoder.conv_out',
  'decoder.norm_out': 'decoder.conv_norm_out',
  quant_conv: 'quant_conv',
  post_quant_conv: 'post_quant_conv',
};

const VAE_ATTN: Record<string, string> = { norm: 'group_norm', q: 'to_q', k: 'to_k', v: 'to_v', proj_out: 'to_out.0' };

/**
 * Maps the VAE keys of an LDM checkpoint (`first_stage_model.*`) to diffusers `AutoencoderKL` keys, as
 * diffusers' `convert_ldm_vae_checkpoint`: `{encoder,decoder}.{conv_in,conv_out}` unchanged,
 * `norm_out` → `conv_norm_out`, `encoder.down.i.block.j` → `encoder.down_blocks.i.resnets.j`,
 * `encoder.down.i.downsample.conv` → `encoder.down_blocks.i.downsamplers.0.conv`,
 * `decoder.up.{n-1-i}.block.j` → `decoder.up_blocks.i.resnets.j` (LDM numbers the decoder's up blocks
 * from the lowest resolution's opposite end), `decoder.up.{n-1-i}.upsample.conv` →
 * `decoder.up_blocks.i.upsamplers.0.conv`, `mid.block_{1,2}` → `mid_block.resnets.{0,1}`,
 * `nin_shortcut` → `conv_shortcut`, `mid.attn_1.{norm,q,k,v,proj_out}` →
 * `mid_block.attentions.0.{group_norm,to_q,to_k,to_v,to_out.0}` with conv-shaped weights `[C,C,1,1]`
 * presented as linear `[C,C]` (the `'squeeze'` transform). `quant_conv`/`post_quant_conv` unchanged.
 *
 * Keys outside `first_stage_model.` are ignored; unmatched keys inside it keep their full LDM name
 * (strict loading then reports them). Returns presented (diffusers) key → stored key + transform.
 */
export function convertLdmVaeKeys(keys: readonly string[], config: LdmVaeLayout): KeyMapping {
  const nUp = config.upBlockTypes.length;
  const out: KeyMapping = new Map();
  for (const key of keys) {
    if (!key.startsWith(LDM_VAE_PREFIX)) continue;
    const k = key.slice(LDM_VAE_PREFIX.length);
    let mapped: string | null = null;
    let transform: MappedTensor['transform'];
    let m: RegExpExecArray | null;
    const param = /^(.*)\.(weight|bias)$/.exec(k);
    if (param && VAE_FIXED[param[1]!] !== undefined) mapped = `${VAE_FIXED[param[1]!]}.${param[2]}`;
    else if ((m = /^encoder\.down\.(\d+)\.block\.(\d+)\.(.+)$/.exec(k))) {
      mapped = `encoder.down_blocks.${m[1]}.resnets.${m[2]}.${m[3]!.replace('nin_shortcut', 'conv_shortcut')}`;
    } else if ((m = /^encoder\.down\.(\d+)\.downsample\.conv\.(weight|bias)$/.exec(k))) {
      mapped = `encoder.down_blocks.${m[1]}.downsamplers.0.conv.${m[2]}`;
    } else if ((m = /^decoder\.up\.(\d+)\.block\.(\d+)\.(.+)$/.exec(k)) && Number(m[1]) < nUp) {
      mapped = `decoder.up_blocks.${nUp - 1 - Number(m[1])}.resnets.${m[2]}.${m[3]!.replace('nin_shortcut', 'conv_shortcut')}`;
    } else if ((m = /^decoder\.up\.(\d+)\.upsample\.conv\.(weight|bias)$/.exec(k)) && Number(m[1]) < nUp) {
      mapped = `decoder.up_blocks.${nUp - 1 - Number(m[1])}.upsamplers.0.conv.${m[2]}`;
    } else if ((m = /^(encoder|decoder)\.mid\.block_([12])\.(.+)$/.exec(k))) {
      mapped = `${m[1]}.mid_block.resnets.${Number(m[2]) - 1}.${m[3]!.replace('nin_shortcut', 'conv_shortcut')}`;
    } else if ((m = /^(encoder|decoder)\.mid\.attn_1\.(norm|q|k|v|proj_out)\.(weight|bias)$/.exec(k))) {
      mapped = `${m[1]}.mid_block.attentions.0.${VAE_ATTN[m[2]!]}.${m[3]}`;
      if (m[2] !== 'norm' && m[3] === 'weight') transform = { kind: 'squeeze' };
    }
    const name = mapped ?? key;
    if (out.has(name)) throw new InvalidArgumentError(`convertLdmVaeKeys: '${key}' and '${out.get(name)!.from}' both map to '${name}'`);
    out.set(name, transform ? { from: key, transform } : { from: key });
  }
  return out;
}

/**
 * Maps an SD 1.x text encoder (`cond_stage_model.transformer.*`, a transformers CLIPTextModel state
 * dict) to transformers keys by removing the prefix, as diffusers' `convert_ldm_clip_checkpoint`; the
 * `text_model.embeddings.position_ids` buffer is dropped. Returns presented key → stored key.
 */
export function convertLdmClipKeys(keys: readonly string[]): KeyMapping {
  const out: KeyMapping = new Map();
  for (const key of keys) {
    if (!key.startsWith(LDM_CLIP_PREFIX)) continue;
    const k = key.slice(LDM_CLIP_PREFIX.length);
    if (k === 'text_model.embeddings.position_ids') continue;
    out.set(k, identity(key));
  }
  return out;
}

/** What the OpenCLIP mapping needs of the text encoder config (a `CLIPTextConfig` fits). */
export interface LdmOpenClipLayout {
  /** Layers the diffusers text encoder has (23 for SD 2.x: the checkpoint's last resblock is dropped). */
  numHiddenLayers: number;
}

const OPEN_CLIP_RENAMES: [string, string][] = [
  ['resblocks.', 'text_model.encoder.layers.'],
  ['ln_1', 'layer_norm1'],
  ['ln_2', 'layer_norm2'],
  ['.c_fc.', '.fc1.'],
  ['.c_proj.', '.fc2.'],
  ['.attn', '.self_attn'],
];

/**
 * Maps an SD 2.x OpenCLIP text tower (`cond_stage_model.model.*`) to transformers CLIPTextModel keys,
 * as diffusers' `convert_open_clip_checkpoint`: `positional_embedding` →
 * `text_model.embeddings.position_embedding.weight`, `token_embedding.weight` →
 * `text_model.embeddings.token_embedding.weight`, `ln_final` → `text_model.final_layer_norm`,
 * `transformer.resblocks.i.{ln_1,ln_2,mlp.c_fc,mlp.c_proj,attn.out_proj}` →
 * `text_model.encoder.layers.i.{layer_norm1,layer_norm2,mlp.fc1,mlp.fc2,self_attn.out_proj}`, and the fused
 * `attn.in_proj_{weight,bias}` `[3D, …]` split into `self_attn.{q,k,v}_proj` (thirds along axis 0, the
 * `'chunk'` transform). Resblocks with index ≥ `numHiddenLayers` (SD 2.x's 24th), `text_projection`,
 * `logit_scale` and `attn_mask` are dropped, as diffusers does for a CLIPTextModel.
 * Returns presented key → stored key + transform.
 */
export function convertOpenClipKeys(keys: readonly string[], config: LdmOpenClipLayout): KeyMapping {
  const out: KeyMapping = new Map();
  const P = LDM_OPEN_CLIP_PREFIX;
  const top: Record<string, string> = {
    positional_embedding: 'text_model.embeddings.position_embedding.weight',
    'token_embedding.weight': 'text_model.embeddings.token_embedding.weight',
    'ln_final.weight': 'text_model.final_layer_norm.weight',
    'ln_final.bias': 'text_model.final_layer_norm.bias',
  };
  const dropped = new Set(['text_projection', 'logit_scale', 'attn_mask']);
  for (const key of keys) {
    if (!key.startsWith(P)) continue;
    const k = key.slice(P.length);
    if (top[k] !== undefined) {
      out.set(top[k]!, identity(key));
      continue;
    }
    if (dropped.has(k)) continue;
    const m = /^transformer\.resblocks\.(\d+)\.(.+)$/.exec(k);
    if (!m) {
      out.set(key, identity(key)); // unknown: strict loading reports it
      continue;
    }
    if (Number(m[1]) >= config.numHiddenLayers) continue;
    let name = k.slice('transformer.'.length);
    for (const [from, to] of OPEN_CLIP_RENAMES) name = name.replace(from, to);
    const fused = /^(.*)\.in_proj_(weight|bias)$/.exec(name);
    if (fused) {
      ['q_proj', 'k_proj', 'v_proj'].forEach((p, index) => {
        out.set(`${fused[1]}.${p}.${fused[2]}`, { from: key, transform: { kind: 'chunk', index, chunks: 3 } });
      });
    } else {
      out.set(name, identity(key));
    }
  }
  return out;
}
