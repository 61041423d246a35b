// The synthetic "toy shapes" world: one coloured shape on a plain background, with its caption and its mask.
// Deterministic given a seed (@ddsjs/nn's seeded Rng, no Math.random; no tensors), so tests and training share it.
import { Rng as BaseRng } from '@ddsjs/nn';

/** The shapes of the world. */
export const SHAPES = ['circle', 'square', 'triangle'] as const;
/** A shape name. */
export type ShapeName = (typeof SHAPES)[number];

/** An RGB colour, each channel an integer in [0, 255]. */
export type RGB = readonly [number, number, number];

/**
 * The shape colours and their RGB values. Chosen saturated and far apart (every pair ≥ 100 apart in RGB
 * Euclidean distance) and ≥ 100 from every background colour; backgrounds are ≥ 100 apart too, so {@link dominantColour} is unambiguous.
 */
export const COLOURS = {
  red: [210, 20, 30],
  green: [30, 160, 50],
  blue: [30, 70, 220],
  yellow: [240, 230, 40],
  purple: [140, 40, 180],
  orange: [250, 130, 10],
} as const satisfies Record<string, RGB>;
/** A shape colour name. */
export type ColourName = keyof typeof COLOURS;
/** The shape colour names, in a fixed order. */
export const COLOUR_NAMES = Object.keys(COLOURS) as ColourName[];

/** The background colours and their RGB values (disjoint from {@link COLOURS}). */
export const BACKGROUNDS = {
  white: [240, 240, 240],
  black: [20, 20, 20],
  gray: [128, 128, 128],
  pink: [240, 150, 190],
} as const satisfies Record<string, RGB>;
/** A background colour name. */
export type BackgroundName = keyof typeof BACKGROUNDS;
/** The background colour names, in a fixed order. */
export const BACKGROUND_NAMES = Object.keys(BACKGROUNDS) as BackgroundName[];

/** Default picture side in pixels. */
export const DEFAULT_SIZE = 64;

/** Everything that determines a picture. */
export interface SceneSpec {
  /** The shape drawn. */
  shape: ShapeName;
  /** The shape's colour (a {@link COLOURS} name). */
  colour: ColourName;
  /** The background colour (a {@link BACKGROUNDS} name). */
  background: BackgroundName;
  /** Centre x in pixels (0 = left edge of the picture; pixel i covers [i, i+1)). */
  cx: number;
  /** Centre y in pixels (0 = top edge). */
  cy: number;
  /**
   * Radius in pixels: the circle's radius, the square's half-side and the (upward-pointing, equilateral)
   * triangle's circumradius.
   */
  radius: number;
  /** Picture width in pixels (default {@link DEFAULT_SIZE}). */
  width?: number;
  /** Picture height in pixels (default {@link DEFAULT_SIZE}). */
  height?: number;
}

/** A rendered picture. */
export interface RenderedScene {
  /** Width in pixels. */
  width: number;
  /** Height in pixels. */
  height: number;
  /** Row-major interleaved RGB, `height·width·3` bytes. */
  image: Uint8Array;
  /** Row-major shape mask, `height·width` bytes: 1 where the pixel is at least half covered by the shape, else 0. */
  mask: Uint8Array;
  /** The caption, see {@link caption}. */
  caption: string;
}

/** A sampled scene: its spec and its rendering. */
export interface Scene extends RenderedScene {
  /** What was rendered. */
  spec: SceneSpec;
}

/** Options of {@link renderScene}. */
export interface RenderOptions {
  /**
   * Supersampling factor per axis for anti-aliasing (default 4: 16 samples per pixel; 1 = hard edges).
   * Edge pixels get the coverage-weighted blend of shape and background colours; the mask is the coverage ≥ ½.
   */
  antialias?: number;
}

/**
 * The caption of a scene: `"a {colour} {shape} on a {background} background"`, e.g.
 * `"a red circle on a white background"`.
 */
export function caption(colour: ColourName, shape: ShapeName, background: BackgroundName): string {
  return `a ${colour} ${shape} on a ${background} background`;
}

/** Parses a caption written by {@link caption}; returns `null` when `text` is not one. */
export function parseCaption(text: string): { colour: ColourName; shape: ShapeName; background: BackgroundName } | null {
  const m = /^a (\w+) (\w+) on a (\w+) background$/.exec(text.trim().toLowerCase());
  if (!m) return null;
  const [, colour, shape, background] = m;
  if (!(colour in COLOURS) || !(SHAPES as readonly string[]).includes(shape) || !(background in BACKGROUNDS)) return null;
  return { colour: colour as ColourName, shape: shape as ShapeName, background: background as BackgroundName };
}

/**
 * The world's random stream: `@ddsjs/nn`'s seeded {@link BaseRng} on its mulberry32 algorithm, the stream every
 * picture set of the world was drawn from. Same seed, same sequence, on every platform. `next()` and
 * `uniform(lo, hi)` are uniform in [0, 1) and [lo, hi), `int(n)` in [0, n); `pick`, `shuffle` and `normal` as in
 * `@ddsjs/nn`. `seed` is any finite number (a RangeError otherwise); it is reduced to 32 bits.
 */
export class Rng extends BaseRng {
  constructor(seed: number) {
    super(seed, 'mulberry32');
  }
}

/** A (colour, shape) pair. */
export interface ColourShape {
  /** The shape colour. */
  colour: ColourName;
  /** The shape. */
  shape: ShapeName;
}

/**
 * The (colour, shape) pairs held out of training, for measuring generalisation to unseen caption combinations.
 * Each shape and each colour of a held-out pair still appears in training with other partners; all four
 * backgrounds are held out with each pair (3 pairs × 4 backgrounds = 12 held-out captions, 60 training captions).
 */
export const HELD_OUT_PAIRS: readonly ColourShape[] = [
  { colour: 'red', shape: 'triangle' },
  { colour: 'blue', shape: 'square' },
  { colour: 'yellow', shape: 'circle' },
];

/** Which caption combinations a sampler draws from. */
export type Split = 'train' | 'heldout' | 'all';

/** Whether (colour, shape) is one of the {@link HELD_OUT_PAIRS}. */
export function isHeldOut(colour: ColourName, shape: ShapeName): boolean {
  return HELD_OUT_PAIRS.some((p) => p.colour === colour && p.shape === shape);
}

/** Every (colour, shape, background) combination of `split`, in a fixed order. */
export function combinations(split: Split = 'all'): { colour: ColourName; shape: ShapeName; background: BackgroundName }[] {
  const out: { colour: ColourName; shape: ShapeName; background: BackgroundName }[] = [];
  for (const colour of COLOUR_NAMES) {
    for (const shape of SHAPES) {
      const held = isHeldOut(colour, shape);
      if ((split === 'train' && held) || (split === 'heldout' && !held)) continue;
      for (const background of BACKGROUND_NAMES) out.push({ colour, shape, background });
    }
  }
  return out;
}

/** Every caption of `split` (see {@link combinations}). */
export function captions(split: Split = 'all'): string[] {
  return combinations(split).map((c) => caption(c.colour, c.shape, c.background));
}

/** Options of {@link sampleScene} and {@link scenes}. */
export interface SampleOptions {
  /** Caption combinations to draw from (default `'train'`). */
  split?: Split;
  /** Picture side in pixels (default {@link DEFAULT_SIZE}). */
  size?: number;
  /** Radius range as fractions of the side (default [0.14, 0.3]: 9–19 px at 64 px). */
  radius?: [number, number];
}

function checkSize(size: number, what: string): void {
  if (!Number.isInteger(size) || size < 8 || size > 4096) throw new RangeError(`${what} must be an integer in [8, 4096], got ${size}`);
}

/**
 * Draws one scene spec from `rng`: a uniform caption combination of `split`, a radius uniform in the range and a
 * centre uniform such that the whole shape (with a 1-pixel margin) lies inside the picture.
 */
export function sampleScene(rng: Rng, options: SampleOptions = {}): SceneSpec {
  const size = options.size ?? DEFAULT_SIZE;
  checkSize(size, 'sampleScene: size');
  const [r0, r1] = options.radius ?? [0.14, 0.3];
  if (!(r0 > 0 && r1 >= r0 && r1 < 0.45)) throw new RangeError(`sampleScene: radius range must satisfy 0 < lo ≤ hi < 0.45, got [${r0}, ${r1}]`);
  const combo = rng.pick(combinations(options.split ?? 'train'));
  const radius = rng.uniform(r0, r1) * size;
  const margin = radius + 1;
  const cx = rng.uniform(margin, size - margin);
  const cy = rng.uniform(margin, size - margin);
  return { ...combo, cx, cy, radius, width: size, height: size };
}

/** `n` scenes drawn from a fresh {@link Rng}`(seed)` and rendered; the same arguments always give the same pictures. */
export function scenes(seed: number, n: number, options: SampleOptions & RenderOptions = {}): Scene[] {
  if (!Number.isInteger(n) || n < 0) throw new RangeError(`scenes: n must be a non-negative integer, got ${n}`);
  const rng = new Rng(seed);
  const out: Scene[] = [];
  for (let i = 0; i < n; i++) {
    const spec = sampleScene(rng, options);
    out.push({ spec, ...renderScene(spec, options) });
  }
  return out;
}

const SQRT3 = Math.sqrt(3);

/** Whether the point (x, y) lies inside the shape of `spec`. */
export function insideShape(spec: Pick<SceneSpec, 'shape' | 'cx' | 'cy' | 'radius'>, x: number, y: number): boolean {
  const dx = x - spec.cx;
  const dy = y - spec.cy;
  const r = spec.radius;
  switch (spec.shape) {
    case 'circle':
      return dx * dx + dy * dy <= r * r;
    case 'square':
      return Math.abs(dx) <= r && Math.abs(dy) <= r;
    case 'triangle': {
      // Upward-pointing equilateral triangle with circumradius r: apex (0, −r), base at y = r/2, half-base r·√3/2.
      if (dy > r / 2) return false;
      // Sides: |dx| ≤ (dy + r)/√3.
      return Math.abs(dx) * SQRT3 <= dy + r;
    }
    default:
      throw new Error(`unknown shape ${JSON.stringify((spec as { shape: unknown }).shape)}`);
  }
}

/**
 * Renders `spec`: the background colour everywhere, the shape colour inside the shape (anti-aliased by
 * supersampling, see {@link RenderOptions}), plus the mask and the caption. Throws a RangeError naming the field
 * on an unknown shape, colour or background or a bad size.
 */
export function renderScene(spec: SceneSpec, options: RenderOptions = {}): RenderedScene {
  const width = spec.width ?? DEFAULT_SIZE;
  const height = spec.height ?? DEFAULT_SIZE;
  checkSize(width, 'renderScene: spec.width');
  checkSize(height, 'renderScene: spec.height');
  if (!(SHAPES as readonly string[]).includes(spec.shape)) throw new RangeError(`renderScene: unknown spec.shape ${JSON.stringify(spec.shape)} (one of ${SHAPES.join(', ')})`);
  if (!(spec.colour in COLOURS)) throw new RangeError(`renderScene: unknown spec.colour ${JSON.stringify(spec.colour)} (one of ${COLOUR_NAMES.join(', ')})`);
  if (!(spec.background in BACKGROUNDS)) throw new RangeError(`renderScene: unknown spec.background ${JSON.stringify(spec.background)} (one of ${BACKGROUND_NAMES.join(', ')})`);
  for (const k of ['cx', 'cy', 'radius'] as const) {
    if (!Number.isFinite(spec[k])) throw new RangeError(`renderScene: spec.${k} must be finite, got ${spec[k]}`);
  }
  if (spec.radius <= 0) throw new RangeError(`renderScene: spec.radius must be > 0, got ${spec.radius}`);
  const aa = options.antialias ?? 4;
  if (!Number.isInteger(aa) || aa < 1 || aa > 16) throw new RangeError(`renderScene: antialias must be an integer in [1, 16], got ${aa}`);
  const fg = COLOURS[spec.colour];
  const bg = BACKGROUNDS[spec.background];
  const image = new Uint8Array(width * height * 3);
  const mask = new Uint8Array(width * height);
  const n = aa * aa;
  // Bounding box of the shape (the triangle's is within the circumcircle); pixels outside are background.
  const x0 = Math.max(0, Math.floor(spec.cx - spec.radius) - 1);
  const x1 = Math.min(width - 1, Math.ceil(spec.cx + spec.radius) + 1);
  const y0 = Math.max(0, Math.floor(spec.cy - spec.radius) - 1);
  const y1 = Math.min(height - 1, Math.ceil(spec.cy + spec.radius) + 1);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      let cover = 0;
      if (x >= x0 && x <= x1 && y >= y0 && y <= y1) {
        let hits = 0;
        for (let sy = 0; sy < aa; sy++) {
          for (let sx = 0; sx < aa; sx++) {
            if (insideShape(spec, x + (sx + 0.5) / aa, y + (sy + 0.5) / aa)) hits++;
          }
        }
        cover = hits / n;
      }
      const p = y * width + x;
      mask[p] = cover >= 0.5 ? 1 : 0;
      for (let c = 0; c < 3; c++) image[p * 3 + c] = Math.round(bg[c] + (fg[c] - bg[c]) * cover);
    }
  }
  return { width, height, image, mask, caption: caption(spec.colour, spec.shape, spec.background) };
}

// ---------------------------------------------------------------------------------------------------------------
// Measurement helpers (for generation / editing tests).

function checkImage(image: Uint8Array | Float32Array, pixels: number, what: string): void {
  if (image.length !== pixels * 3) throw new RangeError(`${what}: image has ${image.length} values, expected ${pixels}·3 = ${pixels * 3} (RGB)`);
}

function checkMask(mask: Uint8Array, pixels: number, what: string): void {
  if (mask.length !== pixels) throw new RangeError(`${what}: mask has ${mask.length} values, expected ${pixels}`);
}

/** Euclidean distance between two RGB colours (0–255 scale). */
export function colourDistance(a: RGB, b: RGB): number {
  return Math.hypot(a[0] - b[0], a[1] - b[1], a[2] - b[2]);
}

/**
 * The name of the palette colour nearest to `rgb` (Euclidean in RGB) and its distance. `palette` defaults to
 * {@link COLOURS}; pass {@link BACKGROUNDS} (or any name → RGB record) to classify backgrounds.
 */
export function nearestColour<K extends string>(rgb: RGB, palette: Record<K, RGB> = COLOURS as unknown as Record<K, RGB>): { name: K; distance: number } {
  let best: K | null = null;
  let bestD = Infinity;
  for (const name of Object.keys(palette) as K[]) {
    const d = colourDistance(rgb, palette[name]);
    if (d < bestD) {
      bestD = d;
      best = name;
    }
  }
  if (best === null) throw new RangeError('nearestColour: empty palette');
  return { name: best, distance: bestD };
}

/**
 * The per-channel median colour of the pixels of `image` (RGB, 0–255, `pixels·3` values) where `mask` is
 * non-zero; `null` when the mask is empty. The median ignores anti-aliased edge pixels and outliers.
 */
export function medianColour(image: Uint8Array, mask: Uint8Array): RGB | null {
  const pixels = mask.length;
  checkImage(image, pixels, 'medianColour');
  const ch: number[][] = [[], [], []];
  for (let p = 0; p < pixels; p++) {
    if (!mask[p]) continue;
    for (let c = 0; c < 3; c++) ch[c].push(image[p * 3 + c]);
  }
  if (ch[0].length === 0) return null;
  const med = (v: number[]) => {
    v.sort((a, b) => a - b);
    const m = v.length >> 1;
    return v.length % 2 ? v[m] : (v[m - 1] + v[m]) / 2;
  };
  return [med(ch[0]), med(ch[1]), med(ch[2])];
}

/**
 * The name of the {@link COLOURS} entry nearest to the median colour of the masked pixels of `image` (or of
 * `palette`'s entries); `null` when the mask is empty. `image` is RGB 0–255 (`mask.length·3` values).
 */
export function dominantColour<K extends string = ColourName>(image: Uint8Array, mask: Uint8Array, palette?: Record<K, RGB>): K | null {
  const m = medianColour(image, mask);
  if (!m) return null;
  return nearestColour<K>(m, palette).name;
}

/** Intersection over union of two masks of equal length (non-zero = inside). Two empty masks give 1. */
export function maskIoU(a: Uint8Array, b: Uint8Array): number {
  if (a.length !== b.length) throw new RangeError(`maskIoU: masks differ in size (${a.length} vs ${b.length})`);
  let inter = 0;
  let union = 0;
  for (let i = 0; i < a.length; i++) {
    const x = a[i] !== 0;
    const y = b[i] !== 0;
    if (x && y) inter++;
    if (x || y) union++;
  }
  return union === 0 ? 1 : inter / union;
}

/**
 * How much the background changed between `before` and `after` (RGB 0–255, `mask.length·3` values): the mean
 * absolute channel difference over the pixels where `mask` is zero, divided by 255 (0 = untouched, 1 = inverted).
 * Pass the union of the shape masks before and after an edit so the shape's own change is not counted. Returns
 * 0 when the mask covers the whole picture.
 */
export function backgroundChange(before: Uint8Array, after: Uint8Array, mask: Uint8Array): number {
  checkImage(before, mask.length, 'backgroundChange (before)');
  checkImage(after, mask.length, 'backgroundChange (after)');
  let sum = 0;
  let count = 0;
  for (let p = 0; p < mask.length; p++) {
    if (mask[p]) continue;
    for (let c = 0; c < 3; c++) sum += Math.abs(before[p * 3 + c] - after[p * 3 + c]);
    count += 3;
  }
  return count === 0 ? 0 : sum / count / 255;
}

/** The union of two masks of equal length (1 where either is non-zero). */
export function maskUnion(a: Uint8Array, b: Uint8Array): Uint8Array {
  if (a.length !== b.length) throw new RangeError(`maskUnion: masks differ in size (${a.length} vs ${b.length})`);
  const out = new Uint8Array(a.length);
  for (let i = 0; i < a.length; i++) out[i] = a[i] || b[i] ? 1 : 0;
  return out;
}

/** Options of {@link segmentShape}. */
export interface SegmentOptions {
  /** RGB distance from the background colour above which a pixel is "shape" (default 60). */
  threshold?: number;
  /** Keep only the largest 4-connected component of the shape pixels (default true; removes speckles). */
  largestComponent?: boolean;
}

/** Result of {@link segmentShape}. */
export interface Segmentation {
  /** 1 = shape, 0 = background, `width·height` bytes. */
  mask: Uint8Array;
  /** The background colour estimated from the border (per-channel median of the outermost pixel ring). */
  background: RGB;
}

/**
 * Segments a picture of this world (rendered, generated or edited; RGB 0–255, `width·height·3` values) into
 * shape and background: the background colour is estimated as the per-channel median of the border pixels
 * (shapes never touch the border), and a pixel is shape when its colour is farther than `threshold` from it.
 */
export function segmentShape(image: Uint8Array, width: number, height: number, options: SegmentOptions = {}): Segmentation {
  if (!Number.isInteger(width) || !Number.isInteger(height) || width < 3 || height < 3) {
    throw new RangeError(`segmentShape: width and height must be integers ≥ 3, got ${width}×${height}`);
  }
  const pixels = width * height;
  checkImage(image, pixels, 'segmentShape');
  const threshold = options.threshold ?? 60;
  const border = new Uint8Array(pixels);
  for (let x = 0; x < width; x++) {
    border[x] = 1;
    border[(height - 1) * width + x] = 1;
  }
  for (let y = 0; y < height; y++) {
    border[y * width] = 1;
    border[y * width + width - 1] = 1;
  }
  const background = medianColour(image, border) as RGB;
  let mask: Uint8Array = new Uint8Array(pixels);
  for (let p = 0; p < pixels; p++) {
    const d = colourDistance([image[p * 3], image[p * 3 + 1], image[p * 3 + 2]], background);
    mask[p] = d > threshold ? 1 : 0;
  }
  if (options.largestComponent ?? true) mask = largestComponent(mask, width, height);
  return { mask, background };
}

/** The largest 4-connected component of the non-zero pixels of `mask` (`width·height`), as a new 0/1 mask. */
export function largestComponent(mask: Uint8Array, width: number, height: number): Uint8Array {
  checkMask(mask, width * height, 'largestComponent');
  const label = new Int32Array(mask.length);
  const stack: number[] = [];
  let best = 0;
  let bestSize = 0;
  let next = 0;
  for (let s = 0; s < mask.length; s++) {
    if (!mask[s] || label[s]) continue;
    next++;
    let size = 0;
    label[s] = next;
    stack.push(s);
    while (stack.length) {
      const p = stack.pop() as number;
      size++;
      const x = p % width;
      const nbrs = [x > 0 ? p - 1 : -1, x < width - 1 ? p + 1 : -1, p - width, p + width];
      for (const q of nbrs) {
        if (q >= 0 && q < mask.length && mask[q] && !label[q]) {
          label[q] = next;
          stack.push(q);
        }
      }
    }
    if (size > bestSize) {
      bestSize = size;
      best = next;
    }
  }
  const out = new Uint8Array(mask.length);
  for (let p = 0; p < mask.length; p++) out[p] = best !== 0 && label[p] === best ? 1 : 0;
  return out;
}

/**
 * Converts an RGB float image in [0, 1] (e.g. a decoded picture's data, `width·height·3` values) to bytes,
 * rounding and clamping; handy before the measurement helpers.
 */
export function toBytes(image: Float32Array | number[]): Uint8Array {
  const out = new Uint8Array(image.length);
  for (let i = 0; i < image.length; i++) out[i] = Math.max(0, Math.min(255, Math.round(image[i] * 255)));
  return out;
}
