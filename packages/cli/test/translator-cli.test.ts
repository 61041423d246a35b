import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import sharp from 'sharp';
import { TINY_SD15 } from '../../../test-utils';
import { assertBuilt, runDds } from './helpers';

// End-to-end: the built `dds` bin (npm test builds first) trains a translator on the tiny fixture model and runs it.
let tmp: string;
const dds = (...args: string[]) => runDds(tmp, args, 300_000);

const TRAIN = [
  'train-translator',
  '--model', TINY_SD15,
  '--source', 'a red circle',
  '--target', 'a green circle',
  '--target', 'a blue square',
  '--generate', '2',
  '--gen-steps', '2',
  '--size', '64',
  '--lr', '1e-3',
  '--checkpoint-every', '1',
  '--out', 'tr',
];

beforeAll(async () => {
  assertBuilt();
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'ddsjs-translator-cli-'));
  await sharp({ create: { width: 80, height: 64, channels: 3, background: '#d02020' } }).png().toFile(path.join(tmp, 'photo.png'));
});
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

test('train-translator trains, checkpoints and resumes; translate writes the edited picture', async () => {
  const r = dds(...TRAIN, '--steps', '2');
  expect(r.stderr).not.toMatch(/at .*\.js:\d+/);
  expect(r.code).toBe(0);
  expect(r.stdout).toContain('wrote tr (2 steps)');
  expect(r.stderr).toMatch(/generating 2\/2/);
  expect(r.stderr).toMatch(/train 2\/2 .*loss/);
  for (const f of ['config.json', 'diffusion_pytorch_model.safetensors', 'task_embeddings.safetensors', 'translator.json', 'optimizer.safetensors']) {
    expect(fs.existsSync(path.join(tmp, 'tr', f))).toBe(true);
  }
  const meta = JSON.parse(fs.readFileSync(path.join(tmp, 'tr', 'translator.json'), 'utf8'));
  expect(meta.tasks).toEqual([
    { source: 'a red circle', target: 'a green circle' },
    { source: 'a red circle', target: 'a blue square' },
  ]);
  expect(meta.training.step).toBe(2);
  expect(meta.training.data.counts).toEqual({ 'a red circle': 2 });
  expect(fs.readdirSync(path.join(tmp, 'tr', 'data-cache'))).toHaveLength(1);

  // The same command with more steps resumes from the checkpoint and reuses the cached pictures.
  const more = dds(...TRAIN, '--steps', '3');
  expect(more.code).toBe(0);
  expect(more.stderr).toContain('resuming tr from step 2');
  expect(more.stderr).not.toMatch(/generating/);
  expect(more.stdout).toContain('wrote tr (3 steps)');
  // … but not with other training options.
  const other = dds(...TRAIN, '--steps', '4', '--lr', '1e-4');
  expect(other.code).toBe(2);
  expect(other.stderr.trim().split('\n').pop()).toMatch(/^dds: error: resumeFrom tr was trained with other options \(lr: 0\.001 in the checkpoint, 0\.0001 now\)/);

  // translate: no --model needed (the translator's teacher is found from translator.json).
  const t = dds('translate', '--translator', 'tr', '--image', 'photo.png', '--task', 'a blue square', '--out', 'out.png');
  expect(t.stderr).not.toMatch(/at .*\.js:\d+/);
  expect(t.code).toBe(0);
  expect(t.stdout).toContain('wrote out.png');
  const png = await sharp(path.join(tmp, 'out.png')).metadata();
  expect([png.format, png.width, png.height]).toEqual(['png', 64, 64]); // the training size
  const again = dds('translate', '--translator', 'tr', '--image', 'photo.png', '--task', 'a blue square', '--out', 'out.png');
  expect(again.code).toBe(2);
  expect(again.stderr.trim()).toBe('dds: error: output out.png exists; pass --force to overwrite it');
  const unknown = dds('translate', '--translator', 'tr', '--image', 'photo.png', '--task', 'a cat', '--model', TINY_SD15);
  expect(unknown.code).toBe(2);
  expect(unknown.stderr.trim()).toBe('dds: error: unknown task "a cat"; tr was trained for "a green circle", "a blue square"');
}, 900_000); // five model loads and two short trainings; slow on a busy machine

test.each([
  [['train-translator', '--source', 'a', '--target', 'b'], 'dds: error: give exactly one of --images DIR or --generate N'],
  [['train-translator', '--source', 'a', '--target', 'b', '--generate', '2', '--images', '.'], 'dds: error: give exactly one of --images DIR or --generate N'],
  [['train-translator', '--source', 'a', '--generate', '2'], 'dds: error: missing --target (give one per task)'],
  [['train-translator', '--source', 'a', '--target', 'b', '--images', 'nowhere'], 'dds: error: image folder not found: nowhere'],
  [['train-translator', '--source', 'a', '--target', 'b', '--generate', '0'], "dds: error: --generate must be an integer ≥ 1, got '0'"],
  [['translate', '--translator', 'nowhere', '--image', 'photo.png', '--task', 'x'], 'dds: error: not a translator folder (no translator.json): nowhere'],
  [['translate', '--translator', 'tr', '--image', 'photo.png'], 'dds: error: missing --task'],
  [['translate', '--translator', 'nowhere', '--task', 'x'], 'dds: error: missing --image'],
])('clean one-line error: dds %j', (args, message) => {
  const r = dds(...args);
  expect(r.code).toBe(2);
  expect(r.stderr.trim().split('\n')).toEqual([message]);
});

test('--help of the new commands, and the command list', () => {
  for (const cmd of ['train-translator', 'translate']) {
    const r = dds(cmd, '--help');
    expect(r.code).toBe(0);
    expect(r.stdout).toContain(`Usage: dds ${cmd}`);
  }
  const main = dds('--help').stdout;
  expect(main).toMatch(/ {2}train-translator {2}Train a network/);
  expect(main).toMatch(/ {2}translate {9}Edit a picture in one forward pass/);
});
