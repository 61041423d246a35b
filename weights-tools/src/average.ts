// `dds-weights average`: the element-wise mean of several checkpoints of one model (checkpoint averaging, as in
// stochastic weight averaging), streamed one tensor at a time.
import { SafetensorsFile, SupportedDtype, isSupportedDtype } from '@ddsjs/safetensors';
import { checkOutputPath } from '@ddsjs/sd';
import { SafetensorsStreamWriter } from './writer';

/** Options of {@link averageCheckpoints}. */
export interface AverageOptions {
  /** Overwrite an existing output file. */
  force?: boolean;
  /** Called after each tensor is written (`done` of `total`). */
  onProgress?: (done: number, total: number) => void;
}

/** What {@link averageCheckpoints} wrote. */
export interface AverageResult {
  /** The output file. */
  output: string;
  /** Number of input checkpoints averaged. */
  inputs: number;
  /** Number of tensors written. */
  tensors: number;
}

const FLOAT_DTYPES = new Set(['F64', 'F32', 'F16', 'BF16']);

/**
 * Writes to `output` the element-wise mean of the tensors of `inputs` (two or more `.safetensors` files, or sharded
 * `*.safetensors.index.json`, of the same model: the same tensor names, shapes and float dtypes). The mean is taken
 * in float64 and written as float32 — checkpoint averaging of a training run's last checkpoints ("stochastic weight
 * averaging"), which smooths the step-to-step noise of Adam at a constant learning rate. Streams one tensor at a
 * time (memory: one tensor per input). The output keeps the first input's metadata.
 *
 * @throws Error naming the file and tensor when the inputs do not match (a missing or extra tensor, another shape,
 * an integer dtype), when fewer than two inputs are given; an `OutputPathError` (before anything is read) when
 * `output` exists without `force`, is one of the inputs (by real path, symbolic or hard link), is not a
 * `.safetensors` name or is in a folder that cannot be written.
 */
export async function averageCheckpoints(output: string, inputs: string[], options: AverageOptions = {}): Promise<AverageResult> {
  if (inputs.length < 2) throw new Error(`average: give at least two checkpoints to average, got ${inputs.length}`);
  // Before any reading: a writable .safetensors path, not an input by real path or hard link, not replaced unasked.
  checkOutputPath(output, { force: options.force, inputs, extensions: ['.safetensors'] });
  const files: SafetensorsFile[] = [];
  try {
    for (const p of inputs) files.push(await SafetensorsFile.open(p));
    const first = files[0];
    const keys = first.keys();
    for (const key of keys) {
      const { dtype, shape } = first.info(key);
      if (!isSupportedDtype(dtype) || !FLOAT_DTYPES.has(dtype)) throw new Error(`average: ${inputs[0]}: tensor '${key}' has dtype ${dtype}; only float tensors can be averaged`);
      for (let i = 1; i < files.length; i++) {
        if (!files[i].has(key)) throw new Error(`average: ${inputs[i]} has no tensor '${key}' (it is in ${inputs[0]})`);
        const o = files[i].info(key);
        if (!FLOAT_DTYPES.has(o.dtype)) throw new Error(`average: ${inputs[i]}: tensor '${key}' has dtype ${o.dtype}; only float tensors can be averaged`);
        if (o.shape.join(',') !== shape.join(',')) {
          throw new Error(`average: tensor '${key}' has shape [${o.shape.join(', ')}] in ${inputs[i]} but [${shape.join(', ')}] in ${inputs[0]}`);
        }
      }
    }
    for (let i = 1; i < files.length; i++) {
      const extra = files[i].keys().find((k) => !first.has(k));
      if (extra !== undefined) throw new Error(`average: ${inputs[i]} has a tensor '${extra}' that ${inputs[0]} lacks`);
    }
    const specs = keys.map((key) => ({ key, dtype: 'F32' as SupportedDtype, shape: first.info(key).shape }));
    const w = await SafetensorsStreamWriter.create(output, specs, Object.keys(first.metadata).length ? first.metadata : { format: 'pt' });
    try {
      let done = 0;
      for (const key of w.order) {
        const acc = new Float64Array(await first.readFloat32(key));
        for (const f of files.slice(1)) {
          const a = await f.readFloat32(key);
          for (let j = 0; j < acc.length; j++) acc[j] += a[j];
        }
        const mean = new Float32Array(acc.length);
        for (let j = 0; j < acc.length; j++) mean[j] = acc[j] / files.length;
        await w.write(key, mean);
        options.onProgress?.(++done, keys.length);
      }
      await w.finish();
    } catch (e) {
      await w.abort();
      throw e;
    }
    return { output, inputs: inputs.length, tensors: keys.length };
  } finally {
    for (const f of files) await f.close();
  }
}
