import * as path from 'path';
import { SafetensorsFile } from '@ddsjs/safetensors';

const FIXTURES = path.join(__dirname, '../../../fixtures/tiny-sd15');

/** Largest |x−y| / max(|x|, 6.1e-5): fp16 has a 2^-11 relative rounding error; below the fp16 normal range (6.1e-5) the absolute error is ≤ 2^-25. */
// (Math is cached: a global lookup per iteration is ~200× slower inside jest's vm context.)
const { abs } = Math;
function maxRelErr(x: Float32Array, y: Float32Array): number {
  let worst = 0;
  for (let i = 0; i < x.length; i++) {
    const ax = abs(x[i]);
    const err = abs(x[i] - y[i]) / (ax > 6.1e-5 ? ax : 6.1e-5);
    if (!(err <= worst)) worst = err; // NaN propagates as a failure
  }
  return worst;
}

describe.each([
  ['text_encoder', 'model', 52],
  ['unet', 'diffusion_pytorch_model', 684],
  ['vae', 'diffusion_pytorch_model', 244],
])('%s fp32 and fp16 fixture files agree', (folder, base, count) => {
  test('same keys and shapes; readFloat32 values within fp16 rounding', async () => {
    const f32 = await SafetensorsFile.open(path.join(FIXTURES, folder, `${base}.safetensors`));
    const f16 = await SafetensorsFile.open(path.join(FIXTURES, folder, `${base}.fp16.safetensors`));
    try {
      expect(f32.keys()).toHaveLength(count);
      expect(f16.keys()).toEqual(f32.keys());
      let worst = 0;
      let values = 0;
      for (const key of f32.keys()) {
        const a = f32.info(key), b = f16.info(key);
        expect(a.dtype).toBe('F32');
        expect(b.dtype).toBe('F16');
        expect(b.shape).toEqual(a.shape);
        expect(b.byteLength * 2).toBe(a.byteLength);
        const x = await f32.readFloat32(key);
        const y = await f16.readFloat32(key);
        expect(y.length).toBe(x.length);
        worst = Math.max(worst, maxRelErr(x, y));
        values += x.length;
      }
      expect(worst).toBeLessThan(1e-3);
      expect(worst).toBeGreaterThan(0); // the fp16 file really is rounded
      expect(values).toBeGreaterThan(1e6);
    } finally {
      await Promise.all([f32.close(), f16.close()]);
    }
  });
});
