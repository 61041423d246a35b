import * as fs from 'node:fs';
import * as path from 'node:path';
import {
  BACKGROUNDS,
  BACKGROUND_NAMES,
  COLOURS,
  COLOUR_NAMES,
  HELD_OUT_PAIRS,
  Rng,
  SHAPES,
  SceneSpec,
  backgroundChange,
  captions,
  colourDistance,
  combinations,
  dominantColour,
  insideShape,
  maskIoU,
  maskUnion,
  nearestColour,
  parseCaption,
  renderScene,
  sampleScene,
  scenes,
  segmentShape,
  toBytes,
  MODEL_DIR,
  defaultModelDir,
  defaultModel,
  defaultTranslatorDir,
  MODEL_VARIANT,
  TRANSLATOR_DIR,
} from '@ddsjs/toy-shapes';

const base: SceneSpec = { shape: 'circle', colour: 'red', background: 'white', cx: 32, cy: 32, radius: 12 };

function count(mask: Uint8Array): number {
  return mask.reduce((s, v) => s + (v ? 1 : 0), 0);
}

describe('vocabulary and captions', () => {
  it('has ≥3 shapes, ≥6 colours, ≥4 backgrounds, all colours ≥ 100 apart', () => {
    expect(SHAPES.length).toBeGreaterThanOrEqual(3);
    expect(COLOUR_NAMES.length).toBeGreaterThanOrEqual(6);
    expect(BACKGROUND_NAMES.length).toBeGreaterThanOrEqual(4);
    const all = { ...COLOURS, ...BACKGROUNDS } as Record<string, readonly [number, number, number]>;
    const names = Object.keys(all);
    expect(names.length).toBe(COLOUR_NAMES.length + BACKGROUND_NAMES.length); // disjoint names
    for (let i = 0; i < names.length; i++) {
      for (let j = i + 1; j < names.length; j++) expect(colourDistance(all[names[i]], all[names[j]])).toBeGreaterThanOrEqual(100);
    }
  });

  it('writes and parses captions', () => {
    expect(renderScene(base).caption).toBe('a red circle on a white background');
    expect(parseCaption('a blue triangle on a gray background')).toEqual({ colour: 'blue', shape: 'triangle', background: 'gray' });
    expect(parseCaption('a red circle on a white table')).toBeNull();
    expect(parseCaption('a teal circle on a white background')).toBeNull();
  });

  it('splits the caption combinations into disjoint train and held-out sets', () => {
    const all = captions('all');
    const train = captions('train');
    const held = captions('heldout');
    expect(all.length).toBe(SHAPES.length * COLOUR_NAMES.length * BACKGROUND_NAMES.length);
    expect(held.length).toBe(HELD_OUT_PAIRS.length * BACKGROUND_NAMES.length);
    expect(train.length + held.length).toBe(all.length);
    expect(train.filter((c) => held.includes(c))).toEqual([]);
    expect(held).toContain('a red triangle on a black background');
    // every colour and every shape still appears in training
    const trainCombos = combinations('train');
    for (const c of COLOUR_NAMES) expect(trainCombos.some((x) => x.colour === c)).toBe(true);
    for (const s of SHAPES) expect(trainCombos.some((x) => x.shape === s)).toBe(true);
  });
});

describe('sampling', () => {
  it('is deterministic given the seed and differs across seeds', () => {
    const a = scenes(7, 5);
    const b = scenes(7, 5);
    const c = scenes(8, 5);
    expect(a.map((s) => s.spec)).toEqual(b.map((s) => s.spec));
    a.forEach((s, i) => expect(Buffer.from(s.image).equals(Buffer.from(b[i].image))).toBe(true));
    expect(a.map((s) => s.spec)).not.toEqual(c.map((s) => s.spec));
    const r1 = new Rng(123);
    const r2 = new Rng(123);
    for (let i = 0; i < 20; i++) expect(r1.next()).toBe(r2.next());
  });

  it('draws only from the requested split and keeps the shape inside the picture', () => {
    const rng = new Rng(1);
    for (let i = 0; i < 200; i++) {
      const s = sampleScene(rng, { split: 'train' });
      expect(HELD_OUT_PAIRS.some((p) => p.colour === s.colour && p.shape === s.shape)).toBe(false);
      expect(s.cx - s.radius).toBeGreaterThanOrEqual(1);
      expect(s.cx + s.radius).toBeLessThanOrEqual(63);
      expect(s.cy - s.radius).toBeGreaterThanOrEqual(1);
      expect(s.radius).toBeGreaterThanOrEqual(0.14 * 64);
    }
    const held = sampleScene(new Rng(2), { split: 'heldout' });
    expect(HELD_OUT_PAIRS.some((p) => p.colour === held.colour && p.shape === held.shape)).toBe(true);
    // uniform-ish over the 60 training captions
    const seen = new Set(scenes(3, 400, { antialias: 1 }).map((s) => s.caption));
    expect(seen.size).toBeGreaterThan(50);
  });

  it('rejects bad arguments with errors naming them', () => {
    expect(() => renderScene({ ...base, colour: 'teal' as never })).toThrow(/spec\.colour/);
    expect(() => renderScene({ ...base, radius: -1 })).toThrow(/spec\.radius/);
    expect(() => renderScene({ ...base, width: 3 })).toThrow(/spec\.width/);
    expect(() => scenes(0, -1)).toThrow(/n must/);
    expect(() => new Rng(NaN)).toThrow(/seed/);
  });
});

describe('rendering', () => {
  it('produces a mask matching the geometry and colours inside/outside', () => {
    const r = renderScene(base);
    expect(r.image.length).toBe(64 * 64 * 3);
    expect(r.mask.length).toBe(64 * 64);
    // circle area π r² within a couple of percent
    expect(Math.abs(count(r.mask) - Math.PI * 144) / (Math.PI * 144)).toBeLessThan(0.03);
    const px = (x: number, y: number) => Array.from(r.image.slice((y * 64 + x) * 3, (y * 64 + x) * 3 + 3));
    expect(px(32, 32)).toEqual([...COLOURS.red]);
    expect(px(0, 0)).toEqual([...BACKGROUNDS.white]);
    expect(r.mask[32 * 64 + 32]).toBe(1);
    expect(r.mask[0]).toBe(0);
    // every mask pixel's centre is inside (or within half a pixel of) the shape
    for (let y = 0; y < 64; y++) {
      for (let x = 0; x < 64; x++) {
        const inCentre = insideShape(base, x + 0.5, y + 0.5);
        if (r.mask[y * 64 + x] !== (inCentre ? 1 : 0)) {
          const d = Math.hypot(x + 0.5 - 32, y + 0.5 - 32);
          expect(Math.abs(d - 12)).toBeLessThan(0.75);
        }
      }
    }
  });

  it('renders squares and triangles with the right areas; antialias only touches edge pixels', () => {
    const sq = renderScene({ ...base, shape: 'square', cx: 30, cy: 30, radius: 10 }, { antialias: 1 });
    expect(count(sq.mask)).toBe(400); // 20×20 pixels exactly at integer edges
    const tri = renderScene({ ...base, shape: 'triangle', radius: 16 });
    const area = ((3 * Math.sqrt(3)) / 4) * 16 * 16;
    expect(Math.abs(count(tri.mask) - area) / area).toBeLessThan(0.05);
    // apex up: more shape pixels in the lower half
    const upper = count(tri.mask.slice(0, 32 * 64));
    expect(upper).toBeLessThan(count(tri.mask) / 2);
    const hard = renderScene(base, { antialias: 1 });
    const soft = renderScene(base, { antialias: 4 });
    let differing = 0;
    for (let p = 0; p < 64 * 64; p++) {
      if (hard.image[p * 3] !== soft.image[p * 3]) {
        differing++;
        const x = p % 64;
        const y = Math.floor(p / 64);
        expect(Math.abs(Math.hypot(x + 0.5 - 32, y + 0.5 - 32) - 12)).toBeLessThan(1.2);
      }
    }
    expect(differing).toBeGreaterThan(20);
  });
});

describe('measurement helpers', () => {
  it('dominantColour finds the shape colour, even with noise and soft edges', () => {
    for (const colour of COLOUR_NAMES) {
      const r = renderScene({ ...base, colour, background: 'gray' });
      expect(dominantColour(r.image, r.mask)).toBe(colour);
      const noisy = new Uint8Array(r.image);
      const rng = new Rng(5);
      for (let i = 0; i < noisy.length; i++) noisy[i] = Math.max(0, Math.min(255, noisy[i] + Math.round(rng.normal() * 15)));
      expect(dominantColour(noisy, r.mask)).toBe(colour);
    }
    const r = renderScene(base);
    expect(dominantColour(r.image, new Uint8Array(64 * 64))).toBeNull();
    const bgMask = r.mask.map((v) => 1 - v);
    expect(dominantColour(r.image, bgMask, BACKGROUNDS)).toBe('white');
    expect(nearestColour([250, 128, 0]).name).toBe('orange');
  });

  it('maskIoU on hand-made masks', () => {
    const a = new Uint8Array([1, 1, 0, 0]);
    const b = new Uint8Array([0, 1, 1, 0]);
    expect(maskIoU(a, b)).toBeCloseTo(1 / 3, 10);
    expect(maskIoU(a, a)).toBe(1);
    expect(maskIoU(new Uint8Array(4), new Uint8Array(4))).toBe(1);
    expect(maskIoU(a, new Uint8Array(4))).toBe(0);
    expect(Array.from(maskUnion(a, b))).toEqual([1, 1, 1, 0]);
    expect(() => maskIoU(a, new Uint8Array(3))).toThrow(/differ/);
  });

  it('backgroundChange ignores masked pixels and scales to [0, 1]', () => {
    const before = new Uint8Array([0, 0, 0, 100, 100, 100]);
    const after = new Uint8Array([255, 255, 255, 100, 100, 100]);
    expect(backgroundChange(before, after, new Uint8Array([0, 0]))).toBeCloseTo(0.5, 10);
    expect(backgroundChange(before, after, new Uint8Array([1, 0]))).toBe(0);
    expect(backgroundChange(before, after, new Uint8Array([1, 1]))).toBe(0);
    // a colour edit of the shape leaves the background unchanged
    const red = renderScene(base);
    const blue = renderScene({ ...base, colour: 'blue' });
    expect(backgroundChange(red.image, blue.image, red.mask)).toBeLessThan(0.01);
    expect(backgroundChange(red.image, renderScene({ ...base, background: 'black' }).image, red.mask)).toBeGreaterThan(0.8);
    expect(() => backgroundChange(before, after, new Uint8Array(3))).toThrow(/expected/);
  });

  it('segmentShape recovers the mask of rendered and noisy pictures', () => {
    for (const s of scenes(11, 12)) {
      const seg = segmentShape(s.image, s.width, s.height);
      expect(maskIoU(seg.mask, s.mask)).toBeGreaterThan(0.9);
      expect(nearestColour(seg.background, BACKGROUNDS).name).toBe(s.spec.background);
      // noise plus a few speckles away from the shape
      const noisy = new Uint8Array(s.image);
      const rng = new Rng(9);
      for (let i = 0; i < noisy.length; i++) noisy[i] = Math.max(0, Math.min(255, noisy[i] + Math.round(rng.normal() * 10)));
      const speckle = (s.spec.cy < 32 ? 60 : 3) * 64 + (s.spec.cx < 32 ? 60 : 3);
      for (let c = 0; c < 3; c++) noisy[speckle * 3 + c] = 255 - noisy[speckle * 3 + c];
      const seg2 = segmentShape(noisy, s.width, s.height);
      expect(seg2.mask[speckle]).toBe(0);
      expect(maskIoU(seg2.mask, s.mask)).toBeGreaterThan(0.85);
      expect(dominantColour(noisy, seg2.mask)).toBe(s.spec.colour);
    }
    expect(() => segmentShape(new Uint8Array(10), 64, 64)).toThrow(/segmentShape/);
  });

  it('toBytes rounds and clamps', () => {
    expect(Array.from(toBytes(new Float32Array([-0.5, 0, 0.5, 1, 2])))).toEqual([0, 0, 128, 255, 255]);
  });
});

describe('model folder export', () => {
  const du = (dir: string): number =>
    fs.readdirSync(dir, { withFileTypes: true }).reduce((a, e) => a + (e.isDirectory() ? du(path.join(dir, e.name)) : fs.statSync(path.join(dir, e.name)).size), 0);

  it('ships the embedded model (fp16 diffusers folder, ≤ 25 MB) and its translator (≤ 10 MB)', () => {
    expect(MODEL_DIR.endsWith('model')).toBe(true);
    expect(defaultModelDir()).toBe(MODEL_DIR);
    expect(defaultModel()).toEqual({ dir: MODEL_DIR, variant: MODEL_VARIANT });
    for (const c of ['unet', 'vae', 'text_encoder']) {
      expect(fs.existsSync(path.join(MODEL_DIR, c, `diffusion_pytorch_model.fp16.safetensors`)) || fs.existsSync(path.join(MODEL_DIR, c, 'model.fp16.safetensors'))).toBe(true);
    }
    expect(du(MODEL_DIR)).toBeLessThanOrEqual(25 * 1024 * 1024);
    expect(defaultTranslatorDir()).toBe(TRANSLATOR_DIR);
    expect(du(TRANSLATOR_DIR)).toBeLessThanOrEqual(10 * 1024 * 1024);
  });

  it("records its editing lr (per method where validation chose another) and generation guidance in the folder's ddsjs_defaults.json (what the loader reads)", () => {
    const json = JSON.parse(fs.readFileSync(path.join(MODEL_DIR, 'ddsjs_defaults.json'), 'utf8'));
    expect(json.edit).toEqual({ lr: 0.005, methods: { nfsd: { lr: 0.01 }, csd: { lr: 0.04 }, flowedit: { guidance_scale: 3 } } });
    expect(json.generate).toEqual({ guidance_scale: 3 });
  });
});
