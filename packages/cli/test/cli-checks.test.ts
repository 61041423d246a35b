// End-to-end through the built `dds` bin: the defects a new user met (issue 25) — outputs and inputs checked before
// a model loads, Ctrl-C, long prompts, picture sizes, fp16-only folders, numbers, wording, small CLI gaps.
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import sharp from 'sharp';
import { defaultModel } from '@ddsjs/toy-shapes';
import { TINY_SD15 } from '../../../test-utils';

import { assertBuilt, BIN, ENV, runDds, writeRedDisc } from './helpers';

let tmp: string;
let photo: string;
const dds = (...args: string[]) => runDds(tmp, args);

beforeAll(async () => {
  assertBuilt();
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'ddsjs-cli-checks-'));
  photo = path.join(tmp, 'photo.png');
  // 96×80: a red disc on white, off-centre to the right (a centre crop cuts 8 columns on each side).
  await writeRedDisc(photo, 96, 80, 60, 40, 18);
  fs.mkdirSync(path.join(tmp, 'sub'));
  fs.linkSync(photo, path.join(tmp, 'hard-link.png'));
  fs.writeFileSync(path.join(tmp, 'notes.txt'), 'a file');
});
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

const EDIT = ['edit', '--model', TINY_SD15, '--image', 'photo.png', '--source', 'a red circle', '--target', 'a green circle', '--steps', '1'];

// Items 1, 2, 11: one line, nothing else printed (no backend started, no model loaded), one wording per cause.
test.each([
  [[...EDIT, '-o', '/sys/x.png'], /^dds: error: cannot write to output folder \/sys: /],
  [[...EDIT, '-o', '/proc/x.png'], /^dds: error: cannot write to output folder \/proc: /],
  [[...EDIT, '-o', 'no-extension'], 'dds: error: output no-extension: no file extension; use .png, .jpg, .jpeg, .webp'],
  [[...EDIT, '-o', 'x.bmp'], "dds: error: output x.bmp: unknown format '.bmp'; use .png, .jpg, .jpeg, .webp"],
  [[...EDIT, '-o', 'sub', '--force'], 'dds: error: output sub is a folder; give a file name'],
  [[...EDIT, '-o', 'missing/x.png'], /^dds: error: output folder \/.*missing does not exist$/],
  [[...EDIT, '-o', './photo.png', '--force'], 'dds: error: output ./photo.png is also an input (photo.png); choose another output'],
  [[...EDIT, '-o', 'hard-link.png', '--force'], 'dds: error: output hard-link.png is also an input (photo.png); choose another output'],
  [['generate', 'a cat', '--model', TINY_SD15, '-o', '/sys/g.png'], /^dds: error: cannot write to output folder \/sys: /],
  [['generate', 'a cat', '--model', TINY_SD15, '-o', 'g.gif'], "dds: error: output g.gif: unknown format '.gif'; use .png, .jpg, .jpeg, .webp"],
  [['translate', '--image', 'photo.png', '--task', 'a green circle on a white background', '-o', 'sub'], 'dds: error: output sub is a folder; give a file name'],
  [
    ['train-translator', '--model', TINY_SD15, '--source', 'a', '--target', 'b', '--generate', '1', '--out', 'notes.txt'],
    'dds: error: output notes.txt exists and is not a folder',
  ],
])('outputs are checked before the model loads: dds %j', (args, message) => {
  const r = dds(...args);
  expect(r.code).toBe(2);
  const lines = r.stderr.trim().split('\n');
  expect(lines).toHaveLength(1);
  if (typeof message === 'string') expect(lines[0]).toBe(message);
  else expect(lines[0]).toMatch(message);
  expect(fs.existsSync(path.join(tmp, 'x.png'))).toBe(false);
});

// Item 10: one number parser; the range is in the message.
test.each([
  [['--steps', '0x10'], "dds: error: --steps must be an integer ≥ 1, got '0x10'"],
  [['--steps', '1e2'], "dds: error: --steps must be an integer ≥ 1, got '1e2'"],
  [['--steps', '2.5'], "dds: error: --steps must be an integer ≥ 1, got '2.5'"],
  [['--seed', '9007199254740993'], "dds: error: --seed must be an integer in [0, 4294967295], got '9007199254740993'"],
  [['--lr', '0'], "dds: error: --lr must be a number > 0, got '0'"],
  [['--lr=-1'], "dds: error: --lr must be a number > 0, got '-1'"],
  [['--lr', '-1'], "dds: error: edit: --lr needs a value (for a value starting with '-', write --lr=VALUE) (see dds edit --help)"],
  [['--guidance', 'Infinity'], "dds: error: --guidance must be a number ≥ 0, got 'Infinity'"],
  [['--size', '64', '--width', '64', '--height', '64'], 'dds: error: give --size, or --width and --height, not both'],
  [['--width', '64'], 'dds: error: give --width and --height together'],
  [['--fit', 'squash'], "dds: error: --fit must be crop, pad or stretch, got 'squash'"],
])('numbers and sizes: dds edit … %j', (extra, message) => {
  const r = dds(...EDIT, ...extra, '-o', 'n.png');
  expect(r.code).toBe(2);
  expect(r.stderr.trim()).toBe(message);
});

test('an undecodable image is reported before the model loads (item 3)', () => {
  fs.writeFileSync(path.join(tmp, 'bad.png'), 'not a picture');
  const r = dds('edit', '--model', TINY_SD15, '--image', 'bad.png', '--target', 'x', '-o', 'b.png');
  expect(r.code).toBe(2);
  expect(r.stderr).not.toMatch(/loaded|loading/);
  expect(r.stderr.trim().split('\n').pop()).toMatch(/^dds: error: cannot decode 'bad\.png' as an image/);
});

test('train-translator decodes every training picture before the model loads (item 3)', async () => {
  const dir = path.join(tmp, 'pictures');
  fs.mkdirSync(dir);
  fs.copyFileSync(photo, path.join(dir, 'a.png'));
  fs.writeFileSync(path.join(dir, 'b.png'), 'not a picture');
  const r = dds('train-translator', '--model', TINY_SD15, '--source', 'a red circle', '--target', 'a green circle', '--images', 'pictures', '--out', 'tr-bad');
  expect(r.code).toBe(2);
  expect(r.stderr).not.toMatch(/loaded|loading/);
  expect(r.stderr.trim().split('\n').pop()).toMatch(/^dds: error: cannot decode '.*pictures[\\/]b\.png' as an image/);
});

test('a non-square picture: the crop box is reported; --width/--height and --fit pad keep it whole; a long prompt is warned about; a .webp output gets a .webp strip (items 5, 6, 12)', async () => {
  const words = Array.from({ length: 100 }, (_, i) => ['red', 'green', 'blue', 'cat', 'dog'][i % 5]).join(' '); // with 'a green circle': 103 tokens
  const crop = dds(...EDIT, '--size', '64', '--target', `a green circle ${words}`, '--save-every', '1', '-o', 'c.webp');
  expect(crop.code).toBe(0);
  expect(crop.stderr).toContain('image: photo.png 96×80 → centre crop 80×80 at (8, 0), resized to 64×64 (--fit pad or stretch keeps the whole picture)');
  const warnings = crop.stderr.split('\n').filter((l) => l.startsWith('warning: --target'));
  expect(warnings).toHaveLength(1);
  expect(warnings[0]).toMatch(/^warning: --target is 103 tokens; the text encoder reads 75: the last 28 are dropped, from "(red|green|blue|cat|dog) (red|green|blue|cat|dog) /);
  expect(crop.stdout).toContain('wrote c-steps.webp (2 frames, every 1 steps)');
  expect((await sharp(path.join(tmp, 'c-steps.webp')).metadata()).format).toBe('webp');

  const wide = dds(...EDIT, '--width', '64', '--height', '48', '-o', 'w.png');
  expect(wide.code).toBe(0);
  expect(wide.stderr).toContain('image: photo.png 96×80 → centre crop 96×72 at (0, 4), resized to 64×48');
  const m = await sharp(path.join(tmp, 'w.png')).metadata();
  expect([m.width, m.height]).toEqual([64, 48]);

  const pad = dds(...EDIT, '--fit', 'pad', '-o', 'p.png');
  expect(pad.code).toBe(0);
  expect(pad.stderr).toContain('image: photo.png 96×80 → resized to 64×53, padded with white to 64×64');
});

test('Ctrl-C during dds edit says what was interrupted, keeps the strip so far, and --save-on-interrupt writes the edit (item 4)', async () => {
  const run = (out: string, extra: string[]) =>
    new Promise<{ code: number | null; stderr: string }>((resolve, reject) => {
      const child = spawn(process.execPath, [BIN, ...EDIT, '--size', '64', '--steps', '100000', '--save-every', '1', '-o', out, ...extra], { cwd: tmp, env: ENV });
      let stderr = '';
      child.stderr.on('data', (d) => (stderr += d));
      const strip = path.join(tmp, out.replace('.png', '-steps.png'));
      const poll = setInterval(() => {
        if (fs.existsSync(strip)) {
          clearInterval(poll);
          child.kill('SIGINT');
        }
      }, 100);
      const limit = setTimeout(() => child.kill('SIGKILL'), 100_000);
      child.on('error', reject);
      child.on('close', (code) => {
        clearInterval(poll);
        clearTimeout(limit);
        resolve({ code, stderr });
      });
    });
  const r = await run('int.png', []);
  expect(r.code).toBe(130);
  const last = r.stderr.trim().split('\n').pop();
  expect(last).toMatch(/^dds: interrupted: dds edit stopped after step \d+ of 100000; kept int-steps\.png \(\d+ frames\); int\.png not written \(--save-on-interrupt writes the edit so far\)$/);
  const frames = Number(/\((\d+) frames\)/.exec(last!)![1]);
  const strip = await sharp(path.join(tmp, 'int-steps.png')).metadata();
  expect([strip.width, strip.height]).toEqual([64 * frames, 64]);
  expect(fs.existsSync(path.join(tmp, 'int.png'))).toBe(false);

  const saved = await run('saved.png', ['--save-on-interrupt']);
  expect(saved.code).toBe(130);
  expect(saved.stderr.trim().split('\n').pop()).toMatch(/; wrote the edit so far to saved\.png$/);
  expect((await sharp(path.join(tmp, 'saved.png')).metadata()).width).toBe(64);
});

test('a copy of the embedded (fp16-only) model loads as --model without --variant (item 8)', () => {
  const toy = defaultModel();
  if (!toy) throw new Error('the embedded toy model is not installed');
  const copy = path.join(tmp, 'toy-copy');
  fs.cpSync(toy.dir, copy, { recursive: true });
  const r = dds('generate', 'a red circle on a white background', '--model', copy, '--steps', '1', '-o', 'copy.png');
  expect(r.stderr).not.toMatch(/error/);
  expect(r.code).toBe(0);
  expect(r.stdout).toContain('wrote copy.png (seed 0)');
});

test('generate prints its seeds and writes --num-images pictures (item 12)', () => {
  const r = dds('generate', 'a cat', '--model', TINY_SD15, '--steps', '1', '--seed', '5', '--num-images', '2', '-o', 'many.png');
  expect(r.code).toBe(0);
  expect(r.stderr).toMatch(/^seed: 5…6$/m);
  expect(r.stdout).toContain('wrote many-1.png (seed 5)');
  expect(r.stdout).toContain('wrote many-2.png (seed 6)');
  expect(fs.readFileSync(path.join(tmp, 'many-1.png')).equals(fs.readFileSync(path.join(tmp, 'many-2.png')))).toBe(false);
});

test('dds inspect accepts the --all it suggests; dds --version (item 12)', () => {
  const file = path.join(TINY_SD15, 'unet', 'diffusion_pytorch_model.safetensors');
  const short = dds('inspect', '--model', file);
  expect(short.code).toBe(0);
  expect(short.stdout).toContain('(--all lists every tensor)');
  const all = dds('inspect', '--model', file, '--all');
  expect(all.code).toBe(0);
  expect(all.stdout).not.toContain('more tensors');
  expect(all.stdout.split('\n').length).toBeGreaterThan(short.stdout.split('\n').length + 100);
  const v = dds('--version');
  expect(v.code).toBe(0);
  expect(v.stdout.trim()).toBe(`dds ${JSON.parse(fs.readFileSync(path.resolve(__dirname, '..', 'package.json'), 'utf8')).version}`);
});
