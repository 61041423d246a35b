import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { initBackend } from '@ddsjs/nn';
import { loadStableDiffusion } from '@ddsjs/sd';
import { DEFAULTS_FILE, parsePipelineDefaults, readPipelineDefaults } from '@ddsjs/sd/internals';
import { TINY_SD15 } from '../../../test-utils';

beforeAll(async () => {
  await initBackend('wasm', { quiet: true });
});

/** A folder that is tiny-sd15 (its entries symlinked) plus a ddsjs_defaults.json with `json`. */
function folderWithDefaults(json: string): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ddsjs-defaults-'));
  for (const e of fs.readdirSync(TINY_SD15)) fs.symlinkSync(path.resolve(TINY_SD15, e), path.join(dir, e));
  fs.writeFileSync(path.join(dir, DEFAULTS_FILE), json);
  return dir;
}

describe('ddsjs_defaults.json', () => {
  test('parses edit and generate defaults (camel-cased) and skips _comment keys', () => {
    expect(
      parsePipelineDefaults({ _why: 'x', edit: { lr: 0.01, steps: 100, guidance_scale: 5, _note: 1 }, generate: { guidance_scale: 3, steps: 25 } }, 'f'),
    ).toEqual({ edit: { lr: 0.01, steps: 100, guidanceScale: 5 }, generate: { guidanceScale: 3, steps: 25 } });
    expect(parsePipelineDefaults({}, 'f')).toEqual({});
  });

  test('rejects unknown keys, bad values and non-objects, naming the file and key', () => {
    expect(() => parsePipelineDefaults([], 'F')).toThrow(/F must hold a JSON object/);
    expect(() => parsePipelineDefaults({ edits: {} }, 'F')).toThrow(/F: unknown key "edits"/);
    expect(() => parsePipelineDefaults({ edit: { learning_rate: 0.1 } }, 'F')).toThrow(/unknown key "edit.learning_rate" \(expected "lr", "steps", "guidance_scale", "methods"\)/);
    expect(() => parsePipelineDefaults({ edit: 3 }, 'F')).toThrow(/"edit" must be an object/);
    expect(() => parsePipelineDefaults({ edit: { lr: -1 } }, 'F')).toThrow(/"edit.lr" must be a positive number, got -1/);
    expect(() => parsePipelineDefaults({ edit: { lr: '0.1' } }, 'F')).toThrow(/"edit.lr" must be a positive number, got "0.1"/);
    expect(() => parsePipelineDefaults({ generate: { steps: 2.5 } }, 'F')).toThrow(/"generate.steps" must be a positive integer/);
    expect(() => parsePipelineDefaults({ generate: { guidance_scale: null } }, 'F')).toThrow(/"generate.guidance_scale" must be a positive number/);
  });

  test('edit.methods: per-method values parsed like edit\'s, validated the same way', () => {
    expect(
      parsePipelineDefaults({ edit: { lr: 0.005, methods: { nfsd: { lr: 0.02, _why: 'x' }, flowedit: { guidance_scale: 3, steps: 40 }, _c: 1 } } }, 'f'),
    ).toEqual({ edit: { lr: 0.005, methods: { nfsd: { lr: 0.02 }, flowedit: { guidanceScale: 3, steps: 40 } } } });
    expect(() => parsePipelineDefaults({ edit: { methods: [] } }, 'F')).toThrow(/F: "edit.methods" must be an object/);
    expect(() => parsePipelineDefaults({ edit: { methods: { csd: 0.1 } } }, 'F')).toThrow(/F: "edit.methods.csd" must be an object/);
    expect(() => parsePipelineDefaults({ edit: { methods: { 'C S D': {} } } }, 'F')).toThrow(/"edit.methods.C S D" is not a method name/);
    expect(() => parsePipelineDefaults({ edit: { methods: { csd: { lr: 0 } } } }, 'F')).toThrow(/F: "edit.methods.csd.lr" must be a positive number, got 0/);
    expect(() => parsePipelineDefaults({ edit: { methods: { csd: { methods: {} } } } }, 'F')).toThrow(/unknown key "edit.methods.csd.methods" \(expected "lr", "steps", "guidance_scale"\)/);
    expect(() => parsePipelineDefaults({ generate: { methods: {} } }, 'F')).toThrow(/unknown key "generate.methods"/);
  });

  test('readPipelineDefaults: {} without the file, the file named in errors for invalid JSON', () => {
    expect(readPipelineDefaults(TINY_SD15)).toEqual({});
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ddsjs-defaults-'));
    try {
      fs.writeFileSync(path.join(dir, DEFAULTS_FILE), '{"edit": {"lr": 0.01},');
      expect(() => readPipelineDefaults(dir)).toThrow(new RegExp(`${DEFAULTS_FILE} is not valid JSON`));
      fs.writeFileSync(path.join(dir, DEFAULTS_FILE), '{"edit": {"lr": 0.01}}');
      expect(readPipelineDefaults(dir)).toEqual({ edit: { lr: 0.01 }, file: path.join(dir, DEFAULTS_FILE) });
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  test('loadStableDiffusion exposes them as sd.defaults; generate() takes its guidance and steps from them', async () => {
    const plain = await loadStableDiffusion(TINY_SD15);
    const dir = folderWithDefaults('{"edit": {"lr": 0.02}, "generate": {"guidance_scale": 2, "steps": 3}}');
    const withDefaults = await loadStableDiffusion(dir);
    try {
      expect(plain.defaults).toEqual({});
      expect(withDefaults.defaults.edit).toEqual({ lr: 0.02 });
      expect(withDefaults.defaults.generate).toEqual({ guidanceScale: 2, steps: 3 });
      const before = tf.memory().numTensors;
      const seen: number[] = [];
      const a = await withDefaults.generate('a photo of a cat', { seed: 3, onStep: ({ step }) => seen.push(step) });
      const b = await plain.generate('a photo of a cat', { seed: 3, steps: 3, guidanceScale: 2 });
      const c = await plain.generate('a photo of a cat', { seed: 3, steps: 3 });
      expect(seen).toEqual([0, 1, 2]);
      expect(Array.from(await a.latents.data())).toEqual(Array.from(await b.latents.data()));
      const d = tf.tidy(() => tf.max(tf.abs(tf.sub(a.latents, c.latents))));
      expect((await d.data())[0]).toBeGreaterThan(1e-4); // guidance 7.5 differs
      tf.dispose([a.image, a.latents, b.image, b.latents, c.image, c.latents, d]);
      expect(tf.memory().numTensors).toBe(before);
    } finally {
      plain.dispose();
      withDefaults.dispose();
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  test('an invalid ddsjs_defaults.json fails the load naming the file', async () => {
    const dir = folderWithDefaults('{"edit": {"lr": 0}}');
    try {
      await expect(loadStableDiffusion(dir)).rejects.toThrow(/ddsjs_defaults\.json: "edit.lr" must be a positive number, got 0/);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
