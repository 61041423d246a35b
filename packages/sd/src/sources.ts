// StateDictSource adapters: present a checkpoint file (or another source) to `Module.loadStateDict`
// under different key names and shapes, reading lazily one tensor at a time.
import type { StateDictSource } from '@ddsjs/nn';
import { InvalidArgumentError, ModelFormatError } from '@ddsjs/safetensors';

/**
 * The part of `SafetensorsFile` (from `@ddsjs/safetensors`) the adapters need; any object with these
 * methods works (a sharded reader, an in-memory fake in tests).
 */
export interface TensorFileLike {
  /** Every tensor key of the file. */
  keys(): string[];
  /** The stored shape of `key` (throws for an unknown key). */
  info(key: string): { shape: readonly number[] };
  /** Reads `key` as float32 (converting F16/BF16/…) in the stored layout. */
  readFloat32(key: string): Promise<Float32Array>;
}

/** Options of {@link safetensorsSource}. */
export interface SafetensorsSourceOptions {
  /** Name of the file, used in error messages (default `'checkpoint'`). */
  name?: string;
  /** Keys to hide from the loader (buffers the module does not have, such as CLIP's `position_ids`). */
  ignore?: (key: string) => boolean;
}

/**
 * A {@link StateDictSource} over a safetensors file (or any {@link TensorFileLike}) with the file's own
 * key names and shapes, optionally hiding keys matched by `options.ignore`. Nothing is read until
 * `read` is called; each call reads one tensor.
 */
export function safetensorsSource(file: TensorFileLike, options: SafetensorsSourceOptions = {}): StateDictSource {
  const name = options.name ?? 'checkpoint';
  const ignore = options.ignore;
  const all = file.keys();
  const keys = ignore ? all.filter((k) => !ignore(k)) : all;
  const present = new Set(keys);
  const check = (key: string): void => {
    if (!present.has(key)) throw new ModelFormatError(`${name}: no tensor '${key}'`);
  };
  return {
    keys: () => [...keys],
    shape: (key) => {
      check(key);
      return [...file.info(key).shape];
    },
    read: (key) => {
      check(key);
      return file.readFloat32(key);
    },
  };
}

/**
 * How one presented tensor is derived from a stored tensor.
 * - `'identity'`: unchanged.
 * - `'squeeze'`: trailing size-1 axes beyond rank 2 are dropped — a 1×1 conv (`[O,I,1,1]`) or conv1d
 *   (`[O,I,1]`) weight presented as a linear weight `[O,I]` (same values, same order).
 * - `'chunk'`: part `index` of `chunks` equal parts along axis 0 (torch `tensor.chunk(chunks, 0)[index]`),
 *   e.g. OpenCLIP's fused `in_proj_weight` `[3D, D]` split into q, k, v.
 */
export type TensorTransform =
  | { kind: 'identity' }
  | { kind: 'squeeze' }
  | { kind: 'chunk'; index: number; chunks: number };

/** One presented key: the stored key it reads from and the transform applied. */
export interface MappedTensor {
  /** The key in the underlying source. */
  from: string;
  /** Default `{ kind: 'identity' }`. */
  transform?: TensorTransform;
}

/** A key mapping: presented (diffusers) key → where its tensor comes from. */
export type KeyMapping = Map<string, MappedTensor>;

/** The presented shape of a tensor stored with `shape` after `transform`; `key` names it in errors. */
export function transformShape(shape: readonly number[], transform: TensorTransform | undefined, key: string): number[] {
  const t = transform ?? { kind: 'identity' };
  if (t.kind === 'identity') return [...shape];
  if (t.kind === 'squeeze') {
    if (shape.length < 2 || shape.slice(2).some((d) => d !== 1)) {
      throw new ModelFormatError(`'${key}': cannot present stored shape [${shape}] as a linear weight (expected [O, I] or [O, I, 1, …])`);
    }
    return shape.slice(0, 2);
  }
  if (!(t.chunks >= 1) || !Number.isInteger(t.index) || t.index < 0 || t.index >= t.chunks) {
    throw new ModelFormatError(`'${key}': invalid chunk ${t.index} of ${t.chunks}`);
  }
  if (shape.length < 1 || shape[0] % t.chunks !== 0) {
    throw new ModelFormatError(`'${key}': stored shape [${shape}] cannot be split into ${t.chunks} equal parts along axis 0`);
  }
  return [shape[0] / t.chunks, ...shape.slice(1)];
}

/**
 * A {@link StateDictSource} presenting `mapping`'s keys: each presented key reads its stored tensor
 * from `base` and applies its transform (see {@link TensorTransform}). Shapes are derived from `base`'s
 * shapes without reading data; `read` reads one stored tensor (fused tensors split into several
 * presented keys are cached for the next few reads so that a split is read once, not once per part).
 *
 * Throws (naming the keys) when a mapping entry points at a key `base` does not hold.
 */
export function mappedSource(base: StateDictSource, mapping: KeyMapping, name = 'checkpoint'): StateDictSource {
  const have = new Set(base.keys());
  const dangling = [...mapping].filter(([, m]) => !have.has(m.from));
  if (dangling.length) {
    throw new ModelFormatError(
      `${name}: key mapping refers to tensors the file does not hold: ` +
        dangling.map(([k, m]) => `${k} ← ${m.from}`).join(', '),
    );
  }
  const keys = [...mapping.keys()];
  const cache = new Map<string, Promise<Float32Array>>();
  const CACHE_SIZE = 2;
  const get = (key: string): MappedTensor => {
    const m = mapping.get(key);
    if (!m) throw new ModelFormatError(`${name}: no tensor '${key}'`);
    return m;
  };
  return {
    keys: () => [...keys],
    shape: (key) => {
      const m = get(key);
      return transformShape(base.shape(m.from), m.transform, `${key} ← ${m.from}`);
    },
    read: async (key) => {
      const m = get(key);
      const t = m.transform ?? { kind: 'identity' };
      if (t.kind !== 'chunk') return base.read(m.from);
      const stored = base.shape(m.from);
      const shape = transformShape(stored, t, `${key} ← ${m.from}`);
      let p = cache.get(m.from);
      if (!p) {
        p = base.read(m.from);
        cache.set(m.from, p);
        while (cache.size > CACHE_SIZE) cache.delete(cache.keys().next().value as string);
      }
      const all = await p;
      const size = shape.reduce((a, b) => a * b, 1);
      return all.slice(t.index * size, (t.index + 1) * size);
    },
  };
}

/**
 * A {@link StateDictSource} holding only the keys of `base` for which `keep` is true (e.g. dropping
 * the `text_model.embeddings.position_ids` buffer of older CLIP files).
 */
export function filteredSource(base: StateDictSource, keep: (key: string) => boolean, name = 'checkpoint'): StateDictSource {
  const keys = base.keys().filter(keep);
  const present = new Set(keys);
  const check = (key: string): void => {
    if (!present.has(key)) throw new ModelFormatError(`${name}: no tensor '${key}'`);
  };
  return {
    keys: () => [...keys],
    shape: (key) => {
      check(key);
      return base.shape(key);
    },
    read: (key) => {
      check(key);
      return base.read(key);
    },
  };
}

/**
 * An in-memory {@link StateDictSource} (tests, synthetic checkpoints): `tensors[key] = { shape, data }`.
 * Data must have exactly `prod(shape)` elements.
 */
export function memorySource(tensors: Record<string, { shape: number[]; data: ArrayLike<number> }>): StateDictSource {
  for (const [k, t] of Object.entries(tensors)) {
    const n = t.shape.reduce((a, b) => a * b, 1);
    if (t.data.length !== n) throw new InvalidArgumentError(`memorySource: '${k}' has ${t.data.length} values for shape [${t.shape}]`);
  }
  return {
    keys: () => Object.keys(tensors),
    shape: (key) => {
      const t = tensors[key];
      if (!t) throw new InvalidArgumentError(`memorySource: no tensor '${key}'`);
      return [...t.shape];
    },
    read: async (key) => {
      const t = tensors[key];
      if (!t) throw new InvalidArgumentError(`memorySource: no tensor '${key}'`);
      return Float32Array.from(t.data);
    },
  };
}
