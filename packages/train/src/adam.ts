// Adam over named parameters, gradient-norm clipping, and the one file format of the optimiser state.
import * as tf from '@tensorflow/tfjs';
import { globalNorm, type Parameter } from '@ddsjs/nn';
import { InvalidArgumentError, ModelFormatError, SafetensorsFile, type TensorData, writeSafetensors } from '@ddsjs/safetensors';
import { nonNegativeNumber, numberInRange, positiveNumber } from './checks';

/** The `format` metadata value of an {@link Adam} state file. */
export const ADAM_STATE_FORMAT = 'ddsjs-adam-v1';

/** Hyper-parameters of {@link Adam}. */
export interface AdamOptions {
  /** First-moment decay β₁ in [0, 1). Default 0.9. */
  beta1?: number;
  /** Second-moment decay β₂ in [0, 1). Default 0.999. */
  beta2?: number;
  /** ε added to √v. Default 1e-8. */
  eps?: number;
}

/** Gradients by parameter name (a Map or a plain object). */
export type NamedGrads = ReadonlyMap<string, tf.Tensor> | Readonly<Record<string, tf.Tensor>>;

function gradOf(grads: NamedGrads, name: string): tf.Tensor | undefined {
  return grads instanceof Map ? grads.get(name) : (grads as Record<string, tf.Tensor>)[name];
}

/**
 * ‖g‖₂ over every tensor of `grads` (in the given order: the float sum depends on it), read with `await data()`.
 * Throws on an empty list.
 */
export async function gradNorm(grads: readonly tf.Tensor[]): Promise<number> {
  const t = globalNorm(grads);
  try {
    return (await t.data())[0];
  } finally {
    t.dispose();
  }
}

/**
 * The factor that clips a gradient of global norm `norm` to at most `maxNorm`: `maxNorm / norm` when
 * `norm > maxNorm`, else 1 (`maxNorm` = Infinity: never clip).
 */
export function clipScale(norm: number, maxNorm: number): number {
  return norm > maxNorm ? maxNorm / norm : 1;
}

/**
 * Adam (Kingma & Ba, with the bias corrections folded into the step size, as PyTorch's `Adam` without weight decay)
 * over named {@link Parameter}s, with its state — both moments per parameter, the step count and the
 * hyper-parameters — saved to and restored from one safetensors file, so that a resumed run equals an
 * uninterrupted one. The moments are tfjs variables owned by this object (`dispose()` frees them).
 */
export class Adam {
  /** β₁. */
  readonly beta1: number;
  /** β₂. */
  readonly beta2: number;
  /** ε. */
  readonly eps: number;
  private readonly m = new Map<string, tf.Variable>();
  private readonly v = new Map<string, tf.Variable>();
  private steps = 0;

  /** @param params the parameters updated, by name (names must be unique). */
  constructor(
    private readonly params: readonly (readonly [string, Parameter])[],
    options: AdamOptions = {},
  ) {
    this.beta1 = numberInRange('Adam', 'beta1', options.beta1 ?? 0.9, 0, 1, { hi: true });
    this.beta2 = numberInRange('Adam', 'beta2', options.beta2 ?? 0.999, 0, 1, { hi: true });
    this.eps = nonNegativeNumber('Adam', 'eps', options.eps ?? 1e-8);
    const seen = new Set<string>();
    for (const [n, p] of params) {
      if (seen.has(n)) throw new InvalidArgumentError(`Adam: parameter name '${n}' appears twice`);
      seen.add(n);
      this.m.set(n, zeroVariable(p.shape));
      this.v.set(n, zeroVariable(p.shape));
    }
  }

  /** Updates taken so far (restored by {@link load}). */
  get step(): number {
    return this.steps;
  }

  /**
   * One update of every parameter with its gradient in `grads` (by parameter name; a missing one counts as zero)
   * multiplied by `scale` (see {@link clipScale}), at learning rate `lr`. Keeps no tensor it does not own.
   */
  apply(grads: NamedGrads, lr: number, scale = 1): void {
    positiveNumber('Adam.apply', 'lr', lr);
    if (!Number.isFinite(scale) || scale < 0) throw new InvalidArgumentError(`Adam.apply: scale must be a non-negative finite number, got ${scale}`);
    this.steps++;
    const t = this.steps;
    const lrT = (lr * Math.sqrt(1 - this.beta2 ** t)) / (1 - this.beta1 ** t);
    tf.tidy(() => {
      for (const [n, p] of this.params) {
        const g0 = gradOf(grads, n);
        const g = g0 ? (scale === 1 ? g0 : tf.mul(g0, scale)) : tf.zeros([...p.shape]);
        const m = this.m.get(n)!;
        const v = this.v.get(n)!;
        m.assign(tf.add(tf.mul(m, this.beta1), tf.mul(g, 1 - this.beta1)));
        v.assign(tf.add(tf.mul(v, this.beta2), tf.mul(tf.square(g), 1 - this.beta2)));
        p.value.assign(tf.sub(p.value, tf.mul(lrT, tf.div(m, tf.add(tf.sqrt(v), this.eps)))));
      }
    });
  }

  /**
   * The state as safetensors tensors and metadata: `m.<name>`, `v.<name>` (F32) and `format`, `step`, `beta1`,
   * `beta2`, `eps` plus `extra` (e.g. the id of the checkpoint the state belongs to) in the metadata.
   */
  async state(extra: Record<string, string> = {}): Promise<{ tensors: Record<string, TensorData>; metadata: Record<string, string> }> {
    const tensors: Record<string, TensorData> = {};
    for (const [n, p] of this.params) {
      tensors[`m.${n}`] = { dtype: 'F32', shape: [...p.shape], data: (await this.m.get(n)!.data()) as Float32Array };
      tensors[`v.${n}`] = { dtype: 'F32', shape: [...p.shape], data: (await this.v.get(n)!.data()) as Float32Array };
    }
    const metadata = { ...extra, format: ADAM_STATE_FORMAT, step: String(this.steps), beta1: String(this.beta1), beta2: String(this.beta2), eps: String(this.eps) };
    return { tensors, metadata };
  }

  /** Writes {@link state} to `file` atomically (a temporary file renamed into place). */
  async save(file: string, extra: Record<string, string> = {}): Promise<void> {
    const { tensors, metadata } = await this.state(extra);
    await writeSafetensors(file, tensors, metadata);
  }

  /**
   * Restores the state saved by {@link save} from `file`. Throws a one-line error naming the file when it is not an
   * {@link ADAM_STATE_FORMAT} state (older ddsjs versions wrote other formats: start those runs afresh), when its
   * hyper-parameters differ from this optimiser's, when a moment is missing or has another shape, or when a
   * metadata entry of `expect` differs. Nothing is changed when it throws.
   */
  async load(file: string, expect: Record<string, string> = {}): Promise<void> {
    const f = await SafetensorsFile.open(file);
    try {
      const md = f.metadata;
      if (md.format !== ADAM_STATE_FORMAT) {
        throw new ModelFormatError(`${file}: not a ${ADAM_STATE_FORMAT} optimiser state (written by an older ddsjs?); it cannot be resumed: start the run afresh`);
      }
      for (const [k, want] of Object.entries(expect)) {
        if (md[k] !== want) throw new ModelFormatError(`${file}: its ${k} is ${JSON.stringify(md[k] ?? null)}, expected ${JSON.stringify(want)} (it belongs to another checkpoint: an interrupted write?)`);
      }
      for (const k of ['beta1', 'beta2', 'eps'] as const) {
        if (Number(md[k]) !== this[k]) throw new ModelFormatError(`${file}: saved with ${k} ${md[k]}, this optimiser has ${this[k]} (resume with the same options)`);
      }
      const step = Number(md.step);
      if (!Number.isInteger(step) || step < 0) throw new ModelFormatError(`${file}: no valid 'step' in its metadata`);
      const keys = new Set(f.keys());
      const missing = this.params.flatMap(([n]) => [`m.${n}`, `v.${n}`]).filter((k) => !keys.has(k));
      if (missing.length) throw new ModelFormatError(`${file}: missing optimiser tensors (${missing.length}): ${missing.slice(0, 5).join(', ')}${missing.length > 5 ? ', …' : ''}`);
      const loaded: [tf.Variable, tf.Tensor][] = [];
      try {
        for (const [n, p] of this.params) {
          for (const [k, map] of [['m', this.m], ['v', this.v]] as const) {
            const key = `${k}.${n}`;
            const shape = f.info(key).shape;
            if (shape.length !== p.shape.length || shape.some((d, i) => d !== p.shape[i])) throw new ModelFormatError(`${file}: '${key}' is [${shape}], expected [${p.shape}]`);
            loaded.push([map.get(n)!, tf.tensor(await f.readFloat32(key), [...p.shape])]);
          }
        }
        for (const [variable, t] of loaded) variable.assign(t);
      } finally {
        tf.dispose(loaded.map(([, t]) => t));
      }
      this.steps = step;
    } finally {
      await f.close();
    }
  }

  /** Frees the moments. */
  dispose(): void {
    for (const t of [...this.m.values(), ...this.v.values()]) t.dispose();
  }
}

function zeroVariable(shape: readonly number[]): tf.Variable {
  const z = tf.zeros([...shape]);
  const v = tf.variable(z, false);
  z.dispose();
  return v;
}
