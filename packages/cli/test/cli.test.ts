import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import sharp from 'sharp';
import { TINY_SD15 } from '../../../test-utils';

import { assertBuilt, runDds, writeRedDisc } from './helpers';

// End-to-end: the built `dds` bin (npm test builds first) on the tiny fixture model.
let tmp: string;
let photo: string;
const dds = (...args: string[]) => runDds(tmp, args);

beforeAll(async () => {
  assertBuilt();
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'ddsjs-cli-'));
  photo = path.join(tmp, 'photo.png');
  // A 96×80 picture (non-square, so the centre crop matters): red disc on white.
  await writeRedDisc(photo, 96, 80, 48, 40, 20);
});
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

test('dds edit writes a PNG of the requested size, refuses to overwrite without --force, and writes a strip', async () => {
  const args = ['edit', '--model', TINY_SD15, '--image', photo, '--source', 'a red circle', '--target', 'a green circle', '--steps', '3', '--size', '64'];
  const r = dds(...args, '--out', 'out.png', '--save-every', '2');
  expect(r.stderr).not.toMatch(/at .*\.js:\d+/); // no stack trace
  expect(r.code).toBe(0);
  expect(r.stderr).toMatch(/^dds: 3 steps, lr 0\.1, guidance 7\.5$/m); // a folder without ddsjs_defaults.json: the notebook's
  expect(r.stdout).toContain('wrote out.png');
  expect(r.stderr).toMatch(/dds 3\/3/);
  const meta = await sharp(path.join(tmp, 'out.png')).metadata();
  expect([meta.format, meta.width, meta.height]).toEqual(['png', 64, 64]);
  const strip = await sharp(path.join(tmp, 'out-steps.png')).metadata();
  expect([strip.width, strip.height]).toEqual([64 * 3, 64]); // the input (before), step 2, the last step (3)
  const again = dds(...args, '--out', 'out.png');
  expect(again.code).toBe(2);
  expect(again.stderr.trim()).toBe('dds: error: output out.png exists; pass --force to overwrite it');
  const forced = dds(...args, '--out', 'out.png', '--force', '--method', 'sds');
  expect(forced.code).toBe(0);
});

test('dds edit --method (every score and flowedit) and --mask FILE: a black mask keeps the picture (the VAE round trip)', async () => {
  const black = path.join(tmp, 'black.png');
  await sharp(Buffer.alloc(32 * 32 * 3, 0), { raw: { width: 32, height: 32, channels: 3 } }).png().toFile(black);
  const base = ['edit', '--model', TINY_SD15, '--image', photo, '--source', 'a red circle', '--target', 'a green circle', '--steps', '2', '--size', '64'];
  const fe = dds(...base, '--method', 'flowedit', '--mask', black, '--out', 'fe.png');
  expect(fe.code).toBe(0);
  expect(fe.stderr).toMatch(/^flowedit: 2 steps, lr 0\.1, guidance 13\.5$/m);
  const pds = dds(...base, '--method', 'pds', '--mask', black, '--out', 'pds.png');
  expect(pds.code).toBe(0);
  expect(pds.stderr).toMatch(/^pds: 2 steps, lr 0\.1, guidance 100$/m);
  const [a, b] = await Promise.all(['fe.png', 'pds.png'].map((f) => sharp(path.join(tmp, f)).raw().toBuffer()));
  expect(a.equals(b)).toBe(true);
  const bad = dds(...base, '--method', 'vsd', '--out', 'x.png');
  expect(bad.code).toBe(2);
  expect(bad.stderr).toMatch(/--method must be one of dds, sds, nfsd, csd, pds, flowedit, got 'vsd'/);
});

test("dds edit without --size works at the model's native size (UNet sample_size × 8), as diffusers", async () => {
  const r = dds('edit', '--model', TINY_SD15, '--image', photo, '--target', 'a green circle', '--steps', '1', '--out', 'native.png');
  expect(r.code).toBe(0);
  const meta = await sharp(path.join(tmp, 'native.png')).metadata();
  expect([meta.width, meta.height]).toEqual([64, 64]);
});

test('dds generate writes the model-sized picture', async () => {
  const r = dds('generate', 'a photo of a cat', '--model', TINY_SD15, '--steps', '2', '--out', 'gen.png');
  expect(r.code).toBe(0);
  const meta = await sharp(path.join(tmp, 'gen.png')).metadata();
  expect([meta.width, meta.height]).toEqual([64, 64]);
});

test("dds generate's guidance: diffusers' 7.5 for a --model, the embedded model's own scale without one, --guidance wins", () => {
  expect(dds('generate', 'a photo of a cat', '--model', TINY_SD15, '--steps', '1', '--out', 'g1.png').stderr).toMatch(/^guidance: 7\.5$/m);
  const embedded = dds('generate', 'a red circle on a white background', '--steps', '1', '--out', 'g2.png');
  expect(embedded.code).toBe(0);
  expect(embedded.stderr).toMatch(/^guidance: 3$/m);
  expect(dds('generate', 'a red circle on a white background', '--steps', '1', '--guidance', '5', '--out', 'g3.png').stderr).toMatch(/^guidance: 5$/m);
});

test('dds inspect describes the model', () => {
  const r = dds('inspect', '--model', TINY_SD15);
  expect(r.code).toBe(0);
  expect(r.stdout).toMatch(/unet/i);
  expect(r.stdout).toMatch(/unet\/: block_out_channels=\[32,64,64,64\]/);
  expect(r.stdout).toMatch(/684 tensors, 3.2M parameters/); // the UNet's 3,222,692 parameters
});

test.each([
  [['edit', '--model', '/nope', '--image', 'photo.png', '--target', 'x'], 'dds: error: model not found: /nope'],
  [['edit', '--model', TINY_SD15, '--image', 'missing.png', '--target', 'x'], 'dds: error: image not found: missing.png'],
  [['edit', '--model', TINY_SD15, '--image', 'photo.png', '--target', '  '], 'dds: error: --target must not be empty'],
  [['edit', '--model', TINY_SD15, '--image', 'photo.png', '--target', 'x', '--steps', 'many'], "dds: error: --steps must be an integer ≥ 1, got 'many'"],
  [['edit', '--model', TINY_SD15, '--image', 'photo.png', '--target', 'x', '--size', '60'], 'dds: error: --size must be a multiple of 8, got 60'],
  [['edit', '--bogus'], "dds: error: edit: unknown option '--bogus' (see dds edit --help)"],
  [['frobnicate'], /dds: error: unknown command 'frobnicate'/],
])('clean one-line error: dds %j', (args, message) => {
  const r = dds(...args);
  expect(r.code).toBe(2);
  const lines = r.stderr.trim().split('\n');
  expect(lines).toHaveLength(1);
  if (typeof message === 'string') expect(lines[0]).toBe(message);
  else expect(lines[0]).toMatch(message);
});

test('an unreadable image and an image too small are one-line errors', async () => {
  const bad = path.join(tmp, 'bad.jpg');
  fs.writeFileSync(bad, 'not a jpeg');
  const r = dds('edit', '--model', TINY_SD15, '--image', bad, '--target', 'x', '--size', '64');
  expect(r.code).toBe(2);
  expect(r.stderr.trim().split('\n').pop()).toMatch(/dds: error: .*bad\.jpg/);
  const small = path.join(tmp, 'small.png');
  await sharp({ create: { width: 8, height: 8, channels: 3, background: '#fff' } }).png().toFile(small);
  const s = dds('edit', '--model', TINY_SD15, '--image', small, '--target', 'x', '--size', '64');
  expect(s.code).toBe(2);
  expect(s.stderr.trim().split('\n').pop()).toMatch(/dds: error: .*too small/);
});

test('--help for each command', () => {
  for (const cmd of ['edit', 'generate', 'inspect']) {
    const r = dds(cmd, '--help');
    expect(r.code).toBe(0);
    expect(r.stdout).toContain(`Usage: dds ${cmd}`);
  }
  expect(dds('--help').stdout).toContain('Commands:');
});

// The newcomer's path (issue 5): no --model → the embedded toy model; no --translator → its shipped translator.
const RED_CIRCLE = path.resolve(__dirname, '..', '..', '..', 'examples', 'assets', 'red-circle.png');

test('dds edit without --model edits on the embedded toy model at its native 64×64', async () => {
  const r = dds('edit', '--image', RED_CIRCLE, '--source', 'a red circle on a white background', '--target', 'a green circle on a white background', '--steps', '4', '--save-every', '2', '--out', 'toy.png');
  expect(r.stderr).not.toMatch(/at .*\.js:\d+/);
  expect(r.code).toBe(0);
  // The embedded model's own editing lr (its ddsjs_defaults.json); the notebook's guidance; --steps given.
  expect(r.stderr).toMatch(/^dds: 4 steps, lr 0\.005, guidance 7\.5 \(lr from .*ddsjs_defaults\.json\)$/m);
  const meta = await sharp(path.join(tmp, 'toy.png')).metadata();
  expect([meta.width, meta.height]).toEqual([64, 64]);
  const strip = await sharp(path.join(tmp, 'toy-steps.png')).metadata();
  expect([strip.width, strip.height]).toEqual([64 * 3, 64]);
});

test('dds translate without --translator uses the toy translator and names its tasks on a wrong one', async () => {
  const r = dds('translate', '--image', RED_CIRCLE, '--task', 'a green circle on a white background', '--out', 'tr.png');
  expect(r.stderr).not.toMatch(/at .*\.js:\d+/);
  expect(r.code).toBe(0);
  expect(r.stderr).toMatch(/^task: "a red circle on a white background" → "a green circle on a white background"$/m);
  const meta = await sharp(path.join(tmp, 'tr.png')).metadata();
  expect([meta.width, meta.height]).toEqual([64, 64]);
  const bad = dds('translate', '--image', RED_CIRCLE, '--task', 'a photo of a lion', '--out', 'tr2.png');
  expect(bad.code).toBe(2);
  expect(bad.stderr).toMatch(/unknown task "a photo of a lion".*"a green circle on a white background"/);
});
