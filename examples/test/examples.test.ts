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
