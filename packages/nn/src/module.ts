import * as tf from '@tensorflow/tfjs';
import { tfSeed } from './ops';
import { DdsError, InvalidArgumentError } from '@ddsjs/safetensors';

/**
 * How a parameter's checkpoint (PyTorch) layout maps to its tfjs layout.
 * - `'plain'`: identical (biases, norm weights, embeddings).
 * - `'linear'`: PyTorch `[out, in]` → tfjs `[in, out]`.
 * - `'conv'`: PyTorch `[out, in, kh, kw]` → tfjs `[kh, kw, in, out]`.
 */
export type ParamLayout = 'plain' | 'linear' | 'conv';

/**
 * How {@link Module.initialize} fills a parameter by default: `'ones'` (norm scales), `'zeros'` (biases),
 * `'normal'` (N(0, 1), PyTorch's Embedding), or `'auto'` (decided from the name and layout).
 */
export type ParamInit = 'auto' | 'ones' | 'zeros' | 'normal';

/** A source of checkpoint tensors, read lazily one at a time (e.g. a safetensors file). */
export interface StateDictSource {
  /** Every key the source holds. */
  keys(): string[];
  /** The stored (PyTorch-layout) shape of `key`. */
  shape(key: string): number[];
  /** Reads `key` as float32 in the stored layout. */
  read(key: string): Promise<Float32Array>;
}

/** Options of {@link Module.loadStateDict}. */
export interface LoadStateDictOptions {
  /** Fail on missing, unexpected or mis-shaped keys (default true). */
  strict?: boolean;
  /** Called after each tensor is loaded (for progress bars). */
  onTensor?: (key: string, index: number, total: number) => void;
}

/**
 * Thrown by {@link Module.loadStateDict} when keys are missing, unexpected or mis-shaped. Its code is
 * `'MISSING_WEIGHT'` when keys are missing, else `'SHAPE_MISMATCH'` (mis-shaped or unexpected keys).
 */
export class StateDictError extends DdsError {
  constructor(
    message: string,
    readonly missing: string[],
    readonly unexpected: string[],
    readonly misShaped: { key: string; expected: number[]; got: number[] }[],
  ) {
    super(missing.length ? 'MISSING_WEIGHT' : 'SHAPE_MISMATCH', message);
    this.name = 'StateDictError';
  }
}

/** PyTorch shape of a parameter stored in tfjs layout. */
export function torchShape(shape: readonly number[], layout: ParamLayout): number[] {
  if (layout === 'linear') return [shape[1], shape[0]];
  if (layout === 'conv') return [shape[3], shape[2], shape[0], shape[1]];
  return [...shape];
}

/** A named parameter: its tfjs-layout shape, layout rule and (once loaded or initialised) its variable. */
export class Parameter {
  private variable: tf.Variable | null = null;
  constructor(
    readonly shape: readonly number[],
    readonly layout: ParamLayout,
    private trainable = true,
    /** The default initialisation {@link Module.initialize} uses. */
    readonly init: ParamInit = 'auto',
  ) {}

  /** True once the parameter holds a value. */
  get isSet(): boolean {
    return this.variable !== null;
  }

  /** The parameter's value (a `tf.Variable`, owned by the module; do not dispose). Throws if never set. */
  get value(): tf.Variable {
    if (!this.variable) throw new InvalidArgumentError('parameter used before it was loaded or initialised');
    return this.variable;
  }

  /**
   * Replaces the value with `t` (tfjs layout; shape must match). Takes ownership of `t`'s data: the
   * caller may dispose `t` afterwards.
   */
  set(t: tf.Tensor): void {
    if (!shapesEqual(t.shape, this.shape)) {
      throw new InvalidArgumentError(`parameter shape mismatch: expected [${this.shape}], got [${t.shape}]`);
    }
    const f = t.dtype === 'float32' ? t : tf.cast(t, 'float32');
    if (this.variable) this.variable.assign(f);
    else this.variable = tf.variable(f, this.trainable);
    if (f !== t) f.dispose();
  }

  /** Whether optimisers (`tf.variableGrads`, `tf.train.*`) update this parameter. */
  get isTrainable(): boolean {
    return this.trainable;
  }

  /** Marks the parameter trainable or frozen (recreates the variable's trainable flag). */
  setTrainable(trainable: boolean): void {
    if (trainable === this.trainable) return;
    this.trainable = trainable;
    if (this.variable) {
      const old = this.variable;
      this.variable = tf.variable(old, trainable);
      old.dispose();
    }
  }

  /** Frees the parameter's memory. */
  dispose(): void {
    this.variable?.dispose();
    this.variable = null;
  }
}

function shapesEqual(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((v, i) => v === b[i]);
}

/**
 * A tree of named child modules and parameters whose dotted paths are the checkpoint keys
 * (`down_blocks.0.resnets.1.conv1.weight`), in the spirit of `torch.nn.Module`.
 *
 * Subclasses register parameters with {@link Module.param} and children with {@link Module.child}
 * (or {@link Module.list}) in their constructor, and implement their own `forward` as the math, composing
 * children with {@link sequential} and {@link residual}. Callers run a module with {@link Module.call}, which
 * frees everything `forward` created except what it returns.
 */
export class Module {
  private readonly ownParams = new Map<string, Parameter>();
  private readonly ownChildren = new Map<string, Module>();

  /**
   * Runs this module's `forward(...args)` inside `tf.tidy`: every tensor `forward` creates is freed when it
   * returns, except the returned tensors (any `tf.TensorContainer`: a tensor, an array or an object of them).
   * The way to invoke a child from a parent's `forward`, and the leak-free way to run any module.
   */
  call<A extends unknown[], R extends tf.TensorContainer>(this: { forward(...args: A): R }, ...args: A): R {
    return tf.tidy(() => this.forward(...args));
  }

  /** Registers a parameter called `name` with tfjs-layout `shape` (and an optional default-initialisation hint). */
  protected param(name: string, shape: number[], layout: ParamLayout = 'plain', init: ParamInit = 'auto'): Parameter {
    if (this.ownParams.has(name) || this.ownChildren.has(name)) throw new InvalidArgumentError(`duplicate name '${name}'`);
    const p = new Parameter(shape, layout, true, init);
    this.ownParams.set(name, p);
    return p;
  }

  /** Registers a child module called `name` and returns it. */
  protected child<M extends Module>(name: string, m: M): M {
    if (this.ownParams.has(name) || this.ownChildren.has(name)) throw new InvalidArgumentError(`duplicate name '${name}'`);
    this.ownChildren.set(name, m);
    return m;
  }

  /** Registers `modules` as a numbered list (`name.0`, `name.1`, …), like `torch.nn.ModuleList`. */
  protected list<M extends Module>(name: string, modules: M[]): M[] {
    this.child(name, new ModuleList(modules));
    return modules;
  }

  /** Every parameter below this module, with its dotted path, in registration order. */
  namedParameters(prefix = ''): [string, Parameter][] {
    const out: [string, Parameter][] = [];
    for (const [n, p] of this.ownParams) out.push([prefix + n, p]);
    for (const [n, c] of this.ownChildren) out.push(...c.namedParameters(`${prefix}${n}.`));
    return out;
  }

  /** The named child modules of this module (one level). */
  namedChildren(): [string, Module][] {
    return [...this.ownChildren];
  }

  /** Total number of scalar parameters. */
  parameterCount(): number {
    return this.namedParameters().reduce((s, [, p]) => s + p.shape.reduce((a, b) => a * b, 1), 0);
  }

  /** The trainable variables below this module (for `tf.variableGrads` / optimisers' var lists). */
  trainableVariables(): tf.Variable[] {
    return this.namedParameters()
      .filter(([, p]) => p.isSet && p.isTrainable)
      .map(([, p]) => p.value);
  }

  /** Marks every parameter below this module trainable or frozen. */
  setTrainable(trainable: boolean): this {
    for (const [, p] of this.namedParameters()) p.setTrainable(trainable);
    return this;
  }

  /**
   * Fills parameters by name from `source`, one tensor at a time, converting PyTorch layouts
   * (conv `[out,in,kh,kw]` → `[kh,kw,in,out]`, linear `[out,in]` → `[in,out]`).
   *
   * In strict mode (the default) it first checks every key and throws one {@link StateDictError}
   * listing every missing, unexpected and mis-shaped key; nothing is loaded then. In non-strict mode,
   * unexpected keys are ignored, missing parameters keep their value, and mis-shaped keys still throw.
   */
  async loadStateDict(source: StateDictSource, options: LoadStateDictOptions = {}): Promise<void> {
    const strict = options.strict ?? true;
    const params = this.namedParameters();
    const have = new Set(source.keys());
    const wanted = new Set(params.map(([n]) => n));
    const missing = params.map(([n]) => n).filter((n) => !have.has(n));
    const unexpected = strict ? [...have].filter((k) => !wanted.has(k)) : [];
    const misShaped: { key: string; expected: number[]; got: number[] }[] = [];
    for (const [n, p] of params) {
      if (!have.has(n)) continue;
      const expected = torchShape(p.shape, p.layout);
      const got = source.shape(n);
      if (!shapesEqual(expected, got)) misShaped.push({ key: n, expected, got });
    }
    if ((strict && (missing.length > 0 || unexpected.length > 0)) || misShaped.length > 0) {
      const lines: string[] = [];
      if (strict && missing.length) lines.push(`missing keys (${missing.length}): ${missing.join(', ')}`);
      if (unexpected.length) lines.push(`unexpected keys (${unexpected.length}): ${unexpected.join(', ')}`);
      if (misShaped.length) {
        lines.push(
          `mis-shaped keys (${misShaped.length}): ` +
            misShaped.map((m) => `${m.key} expected [${m.expected}] got [${m.got}]`).join(', '),
        );
      }
      throw new StateDictError(
        `state dict does not match the module:\n  ${lines.join('\n  ')}`,
        strict ? missing : [],
        unexpected,
        misShaped,
      );
    }
    const toLoad = params.filter(([n]) => have.has(n));
    let i = 0;
    for (const [n, p] of toLoad) {
      const data = await source.read(n);
      const t = tf.tidy(() => fromTorchLayout(tf.tensor(data, source.shape(n), 'float32'), p.layout));
      p.set(t);
      t.dispose();
      options.onTensor?.(n, i++, toLoad.length);
    }
  }

  /**
   * Initialises every parameter that has no value with `init(name, shape, layout)` (default: PyTorch's
   * default schemes approximated — weights uniform ±1/√fan_in, biases 0, norm weights 1).
   */
  initialize(seed = 0, init?: (name: string, p: Parameter) => tf.Tensor): this {
    let s = seed;
    for (const [n, p] of this.namedParameters()) {
      if (p.isSet) continue;
      const t = init ? init(n, p) : defaultInit(n, p, s++);
      p.set(t);
      t.dispose();
    }
    return this;
  }

  /** Frees every parameter's memory. The module cannot be used afterwards. */
  dispose(): void {
    for (const [, p] of this.namedParameters()) p.dispose();
  }
}

/**
 * One step of {@link sequential} / {@link residual}: a module with a one-argument `forward` (run through
 * {@link Module.call}) or a tensor function. `null`, `undefined` and `false` are skipped, so optional layers
 * read as `this.downsampler` or `cond && f`.
 */
export type Step<T extends tf.Tensor = tf.Tensor> =
  | ((x: T) => tf.Tensor)
  | (Module & { forward(x: T): tf.Tensor })
  | null
  | undefined
  | false;

function applyStep<T extends tf.Tensor>(step: Exclude<Step<T>, null | undefined | false>, x: T): tf.Tensor {
  return step instanceof Module ? step.call(x) : step(x);
}

/**
 * `steps` applied in order to `x` (`stepN(…step1(x))`, like `torch.nn.Sequential`), each intermediate disposed as
 * soon as the next step has consumed it. Inside a `tf.tidy` (which alone keeps every intermediate until it ends)
 * this is what keeps peak memory at about two activations. `x` itself is never disposed, nor is a tensor a step
 * returns unchanged. Gradient-safe: the tape keeps its own references to the tensors a gradient needs. The result
 * is typed as `x` (give `R` where a step changes the rank).
 */
export function sequential<T extends tf.Tensor, R extends tf.Tensor = T>(x: T, ...steps: Step<T>[]): R {
  let h: tf.Tensor = x;
  for (const step of steps) {
    if (!step) continue;
    const y = applyStep(step, h as T);
    if (h !== x && y !== h) h.dispose();
    h = y;
  }
  return h as R;
}

/**
 * `shortcut(x) + f(x)` — a residual connection; `shortcut` defaults to the identity (`x + f(x)`). `f` is a step
 * or a list of steps (applied with {@link sequential}); it runs before `shortcut`, so its intermediates are gone
 * by then. `f(x)` and the shortcut's output are disposed right after the sum; `x` is not.
 */
export function residual<T extends tf.Tensor>(x: T, f: Step<T> | Step<T>[], shortcut?: Step<T>): T {
  const fx: tf.Tensor = Array.isArray(f) ? sequential(x, ...f) : f ? applyStep(f, x) : x;
  const s = shortcut ? applyStep(shortcut, x) : x;
  const y = tf.add(s, fx) as T;
  if (fx !== x) fx.dispose();
  if (s !== x) s.dispose();
  return y;
}

/** A numbered list of modules (`0`, `1`, …), like `torch.nn.ModuleList`. */
export class ModuleList<M extends Module = Module> extends Module {
  constructor(readonly items: M[]) {
    super();
    items.forEach((m, i) => this.child(String(i), m));
  }
}

/** Converts a PyTorch-layout tensor to the tfjs layout `layout` describes. */
export function fromTorchLayout(t: tf.Tensor, layout: ParamLayout): tf.Tensor {
  if (layout === 'linear') return tf.transpose(t, [1, 0]);
  if (layout === 'conv') return tf.transpose(t, [2, 3, 1, 0]);
  return t.clone();
}

/** Converts a tfjs-layout tensor back to PyTorch layout (for saving). */
export function toTorchLayout(t: tf.Tensor, layout: ParamLayout): tf.Tensor {
  if (layout === 'linear') return tf.transpose(t, [1, 0]);
  if (layout === 'conv') return tf.transpose(t, [3, 2, 0, 1]);
  return t.clone();
}

function defaultInit(name: string, p: Parameter, seed: number): tf.Tensor {
  const last = name.split('.').pop() ?? name;
  const shape = [...p.shape];
  if (p.init === 'ones') return tf.ones(shape);
  if (p.init === 'zeros') return tf.zeros(shape);
  if (p.init === 'normal') return tf.randomNormal(shape, 0, 1, 'float32', tfSeed(seed));
  if (p.layout === 'plain') {
    if (last === 'bias') return tf.zeros(shape);
    if (/norm|ln_|layer_norm/.test(name) && last === 'weight') return tf.ones(shape);
    return tf.randomNormal(shape, 0, 0.02, 'float32', tfSeed(seed));
  }
  const fanIn = p.layout === 'linear' ? shape[0] : shape[0] * shape[1] * shape[2];
  const bound = 1 / Math.sqrt(fanIn);
  return tf.randomUniform(shape, -bound, bound, 'float32', tfSeed(seed));
}
