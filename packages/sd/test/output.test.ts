import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import { checkOutputPath, IMAGE_EXTENSIONS, OutputPathError, samePath, writeFileAtomic } from '../src/output';

let dir: string;
beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ddsjs-output-'));
});
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

const img = { extensions: IMAGE_EXTENSIONS };

describe('checkOutputPath', () => {
  it('accepts a new file with a known extension in a writable folder, and leaves nothing behind', () => {
    expect(() => checkOutputPath(path.join(dir, 'new.png'), img)).not.toThrow();
    expect(fs.readdirSync(dir)).toEqual([]);
  });

  it('refuses, with one wording per cause, before anything is written', () => {
    const existing = path.join(dir, 'exists.png');
    fs.writeFileSync(existing, 'x');
    const cases: [string, Parameters<typeof checkOutputPath>[1], string | RegExp][] = [
      [path.join(dir, 'no-ext'), img, `output ${path.join(dir, 'no-ext')}: no file extension; use .png, .jpg, .jpeg, .webp`],
      [path.join(dir, 'x.bmp'), img, `output ${path.join(dir, 'x.bmp')}: unknown format '.bmp'; use .png, .jpg, .jpeg, .webp`],
      [dir, { ...img, force: true }, `output ${dir} is a folder; give a file name`],
      [existing, img, `output ${existing} exists; pass --force to overwrite it`],
      [path.join(dir, 'missing', 'x.png'), img, `output folder ${path.join(dir, 'missing')} does not exist`],
      [existing, { kind: 'folder' }, `output ${existing} exists and is not a folder`],
      ['/proc/x.png', img, /^cannot write to output folder \/proc: /],
      ['/sys/x.png', img, /^cannot write to output folder \/sys: /],
    ];
    for (const [p, o, message] of cases) {
      let err: unknown;
      try {
        checkOutputPath(p, o);
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(OutputPathError);
      if (typeof message === 'string') expect((err as Error).message).toBe(message);
      else expect((err as Error).message).toMatch(message);
    }
    expect(() => checkOutputPath(existing, { ...img, force: true })).not.toThrow();
  });

  it('finds an input behind another spelling, a symbolic link or a hard link', () => {
    const a = path.join(dir, 'a.safetensors');
    fs.writeFileSync(a, 'weights');
    const sym = path.join(dir, 'sym.safetensors');
    fs.symlinkSync(a, sym);
    const hard = path.join(dir, 'hard.safetensors');
    fs.linkSync(a, hard);
    const dotted = `${dir}${path.sep}.${path.sep}a.safetensors`;
    for (const out of [dotted, sym, hard]) {
      expect(samePath(out, a)).toBe(true);
      expect(() => checkOutputPath(out, { force: true, inputs: [a] })).toThrow(`output ${out} is also an input (${a}); choose another output`);
    }
    expect(samePath(path.join(dir, 'other.safetensors'), a)).toBe(false);
  });
});

describe('writeFileAtomic', () => {
  it('writes through a temporary file, refuses to replace unless asked, and leaves no temporary file', async () => {
    const f = path.join(dir, 'atomic.bin');
    await writeFileAtomic(f, new Uint8Array([1, 2, 3]));
    expect([...fs.readFileSync(f)]).toEqual([1, 2, 3]);
    await expect(writeFileAtomic(f, new Uint8Array([4]))).rejects.toThrow(`output ${f} exists; pass --force to overwrite it`);
    expect([...fs.readFileSync(f)]).toEqual([1, 2, 3]);
    await writeFileAtomic(f, new Uint8Array([4]), { overwrite: true });
    expect([...fs.readFileSync(f)]).toEqual([4]);
    expect(fs.readdirSync(dir).filter((n) => n.endsWith('.tmp'))).toEqual([]);
  });
});
