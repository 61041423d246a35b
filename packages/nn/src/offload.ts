// Weight offload: a frozen module's weights kept in JavaScript memory and put into the backend one sub-module at a
// time around its forward (the wasm heap stops at 4 GB).
import * as tf from '@tensorflow/tfjs';
import { LoadStateDictOptions, Module, Parameter, StateDictSource } from './module';

/**
 * Keeps a module's weights in JavaScript memory (float32, tfjs layout) instead of backend memory, and
 * materialises them one sub-module at a time around its forward ({@link WeightOffload.use}). This is what
 * lets SD 1.5's 3.4 GB fp32 UNet run on the wasm backend, whose heap is capped at 4 GB: with all weights
 * resident the first forward aborts. The cost is one copy of the weights into the backend per forward
 * (about a second for SD 1.5), small next to the forward itself. Offloaded weights are for inference
 * (frozen models such as the DDS teacher): gradients w.r.t. inputs still flow, optimisers cannot update them.
 */
export class WeightOffload {
  private readonly store = new Map<Parameter, Float32Array>();
  private constructor(private readonly root: Module) {}

  /**
   * Loads `root`'s weights from `source` straight into JavaScript memory, with the strict key/shape
   * checks and layout conversion of `Module.loadStateDict`; at most one tensor is in backend memory at once.
   */
  static async load(root: Module, source: StateDictSource, options: LoadStateDictOptions = {}): Promise<WeightOffload> {
    const off = new WeightOffload(root);
    const byName = new Map(root.namedParameters());
    let pending: Parameter | null = null;
    const flush = async (): Promise<void> => {
      if (pending) await off.take(pending);
      pending = null;
    };
    await root.loadStateDict(
      { keys: () => source.keys(), shape: (k) => source.shape(k), read: async (k) => (await flush(), source.read(k)) },
      {
        ...options,
        onTensor: (key, i, total) => {
          pending = byName.get(key) ?? null;
          options.onTensor?.(key, i, total);
        },
      },
    );
    await flush();
    return off;
  }

  /** Moves the current (loaded or initialised) weights of `root` into JavaScript memory. */
  static async fromModule(root: Module): Promise<WeightOffload> {
    const off = new WeightOffload(root);
    for (const [, p] of root.namedParameters()) if (p.isSet) await off.take(p);
    return off;
  }

  private async take(p: Parameter): Promise<void> {
    this.store.set(p, (await p.value.data()) as Float32Array);
    p.dispose();
  }

  /** Bytes held in JavaScript memory. */
  get bytes(): number {
    let n = 0;
    for (const d of this.store.values()) n += d.byteLength;
    return n;
  }

  /**
   * Runs `f` with the weights of `m` (a sub-module of the offloaded root) in backend memory, freeing them
   * afterwards. Synchronous, so it can run inside `tf.tidy`.
   */
  use<T>(m: Module, f: () => T): T {
    const loaded: Parameter[] = [];
    try {
      for (const [, p] of m.namedParameters()) {
        const d = this.store.get(p);
        if (!d || p.isSet) continue;
        const t = tf.tensor(d, [...p.shape], 'float32');
        p.set(t);
        t.dispose();
        loaded.push(p);
      }
      return f();
    } finally {
      for (const p of loaded) p.dispose();
    }
  }

  /** Puts every weight back into backend memory (the module then works without this object). */
  restore(): void {
    for (const [p, d] of this.store) {
      if (p.isSet) continue;
      const t = tf.tensor(d, [...p.shape], 'float32');
      p.set(t);
      t.dispose();
    }
    this.store.clear();
  }

  /** The module whose weights this holds. */
  get module(): Module {
    return this.root;
  }
}
