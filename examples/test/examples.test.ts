import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import sharp from 'sharp';

// Each example runs end to end with its defaults (the embedded toy model, examples/assets/red-circle.png; a few
// steps) and writes its picture.
const root = path.resolve(__dirname, '..', '..');
let tmp: string;
beforeAll(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'ddsjs-examples-'));
});
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

function example(file: string, ...args: string[]) {
  return spawnSync(process.execPath, ['-r', require.resolve('ts-node/register'), path.join(root, 'examples', file), ...args], {
    cwd: tmp,
    encoding: 'utf8',
    env: { ...process.env, TS_NODE_PROJECT: path.join(root, 'examples', 'tsconfig.json'), TS_NODE_TRANSPILE_ONLY: '1', DDSJS_BACKEND: 'wasm', DDSJS_DEBUG: '' },
    timeout: 120_000,
  });
}

test.each(['edit-image.ts', 'custom-loss.ts', 'sds-vs-dds.ts'])('examples/%s: --help prints the usage; a bad flag is one line, no stack', (file) => {
  const help = example(file, '--help');
  expect(help.status).toBe(0);
  expect(help.stdout).toContain(`Usage: npm run example -- examples/${file} [options]`);
  expect(help.stdout).toContain('--steps');
  expect(help.stderr).toBe('');
  const bad = example(file, '--bogus');
  expect(bad.status).toBe(2);
  expect(bad.stderr.trim()).toBe(`error: Unknown option '--bogus' (see ${file} --help)`);
  const steps = example(file, '--steps', 'many');
  expect(steps.status).toBe(2);
  expect(steps.stderr.trim()).toBe("error: --steps must be an integer ≥ 1, got 'many'");
});

test('examples/custom-loss.ts with no flags turns the red circle green', async () => {
  const r = example('custom-loss.ts');
  expect(r.status).toBe(0);
  const { data, info } = await sharp(path.join(tmp, 'custom-loss.png')).raw().toBuffer({ resolveWithObject: true });
  const at = (info.height / 2) * info.width * info.channels + (info.width / 2) * info.channels;
  const [red, green] = [data[at], data[at + 1]];
  expect(green).toBeGreaterThan(red + 50); // the input's centre is (220, 30, 30)
});

test.each([
  ['edit-image.ts', 64],
  ['custom-loss.ts', 64],
  ['sds-vs-dds.ts', 64 * 3],
])('examples/%s runs and writes its picture', async (file, width) => {
  const out = path.join(tmp, file.replace('.ts', '.png'));
  const r = spawnSync(process.execPath, ['-r', 'ts-node/register', path.join(root, 'examples', file), '--steps', '2', '--out', out], {
    cwd: root,
    encoding: 'utf8',
    env: { ...process.env, TS_NODE_PROJECT: path.join(root, 'examples', 'tsconfig.json'), TS_NODE_TRANSPILE_ONLY: '1', DDSJS_BACKEND: 'wasm' },
    timeout: 120_000,
  });
  expect(r.stderr).not.toMatch(/Error/);
  expect(r.status).toBe(0);
  const meta = await sharp(out).metadata();
  expect([meta.width, meta.height]).toEqual([width, 64]);
});
