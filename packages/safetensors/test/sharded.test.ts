import { promises as fsp } from 'fs';
import * as path from 'path';
import { SafetensorsError, SafetensorsFile, findSafetensors, safetensorsCandidates, writeSafetensors } from '@ddsjs/safetensors';
import { tmpDir } from './helpers';

const FIXTURES = path.join(__dirname, '../../../fixtures/tiny-sd15');
let dir: string;

const A = new Float32Array([1, 2, 3, 4]);
const B = new Uint16Array([0x3c00, 0x4000]);
const C = new BigInt64Array([5n, 6n, 7n]);

async function writeIndex(name: string, weightMap: Record<string, string>, extra: object = {}) {
  const p = path.join(dir, name);
  await fsp.writeFile(p, JSON.stringify({ metadata: { total_size: 26 }, weight_map: weightMap, ...extra }));
  return p;
}

beforeAll(async () => {
  dir = await tmpDir();
  await writeSafetensors(path.join(dir, 'model-00001-of-00002.safetensors'), {
    'layer.a': { dtype: 'F32', shape: [2, 2], data: A },
    'layer.b': { dtype: 'F16', shape: [2], data: B },
  });
  await writeSafetensors(path.join(dir, 'model-00002-of-00002.safetensors'), { 'layer.c': { dtype: 'I64', shape: [3], data: C } }, { format: 'pt' });
  await writeIndex('model.safetensors.index.json', {
    'layer.c': 'model-00002-of-00002.safetensors',
    'layer.a': 'model-00001-of-00002.safetensors',
    'layer.b': 'model-00001-of-00002.safetensors',
  });
});
afterAll(async () => {
  await fsp.rm(dir, { recursive: true, force: true });
});

describe('sharded checkpoints', () => {
  test('an index.json opens as one file across shards', async () => {
    const f = await SafetensorsFile.open(path.join(dir, 'model.safetensors.index.json'));
    expect(f.keys()).toEqual(['layer.a', 'layer.b', 'layer.c']);
    expect(f.files.map((x) => path.basename(x)).sort()).toEqual(['model-00001-of-00002.safetensors', 'model-00002-of-00002.safetensors']);
    expect(f.metadata).toEqual({ total_size: '26' });
    expect(f.info('layer.c')).toEqual({ dtype: 'I64', shape: [3], byteLength: 24 });
    expect(Array.from(await f.read<'F32'>('layer.a'))).toEqual(Array.from(A));
    expect(Array.from(await f.read<'F16'>('layer.b'))).toEqual(Array.from(B));
    expect(Array.from(await f.read<'I64'>('layer.c'))).toEqual(Array.from(C));
    expect(Array.from(await f.readFloat32('layer.b'))).toEqual([1, 2]);
    expect(f.has('layer.a') && !f.has('nope')).toBe(true);
    await f.close();
    // close closes every shard
    for (const k of f.keys()) await expect(f.read(k)).rejects.toThrow(/is closed/);
  });

  test('index errors name the index, the shard and the key', async () => {
    const cases: [string, () => Promise<string>, RegExp][] = [
      ['missing shard', () => writeIndex('i1.json', { 'layer.a': 'nope.safetensors' }), /safetensors file .*nope\.safetensors does not exist \(shard of .*i1\.json\)/],
      ['key not in shard', () => writeIndex('i2.json', { 'layer.a': 'model-00001-of-00002.safetensors', 'layer.b': 'model-00001-of-00002.safetensors', 'layer.z': 'model-00001-of-00002.safetensors' }), /index .*i2\.json maps tensor "layer\.z" to shard .*model-00001-of-00002\.safetensors, which has no such tensor/],
      ['shard key not in index', () => writeIndex('i3.json', { 'layer.a': 'model-00001-of-00002.safetensors' }), /shard .*model-00001-of-00002\.safetensors contains tensor "layer\.b", which safetensors index .*i3\.json does not map to it/],
      ['no weight_map', async () => { const p = path.join(dir, 'i4.json'); await fsp.writeFile(p, '{"metadata":{}}'); return p; }, /safetensors index .*i4\.json has no "weight_map" object/],
      ['not JSON', async () => { const p = path.join(dir, 'i5.json'); await fsp.writeFile(p, '{"weight_map":'); return p; }, /safetensors index .*i5\.json is not valid JSON/],
      ['escaping path', () => writeIndex('i6.json', { 'layer.a': '../x.safetensors' }), /maps tensor "layer\.a" to "\.\.\/x\.safetensors", which is outside the index's directory/],
      ['non-string shard', () => writeIndex('i7.json', { 'layer.a': 3 } as unknown as Record<string, string>), /maps tensor "layer\.a" to 3, not a file name/],
      ['missing index', async () => path.join(dir, 'absent.safetensors.index.json'), /safetensors index .*absent\.safetensors\.index\.json does not exist/],
    ];
    for (const [name, make, re] of cases) {
      const p = await make();
      const err = await SafetensorsFile.open(p).catch((e) => e);
      expect({ name, isSTE: err instanceof SafetensorsError }).toEqual({ name, isSTE: true });
      expect(err.message).toMatch(re);
    }
  });

  test('findSafetensors follows the diffusers naming conventions without silent fallback', async () => {
    expect(safetensorsCandidates('model', 'fp16')).toEqual(['model.fp16.safetensors', 'model.safetensors.index.fp16.json']);
    const te = path.join(FIXTURES, 'text_encoder');
    expect(await findSafetensors(te, 'model')).toBe(path.join(te, 'model.safetensors'));
    expect(await findSafetensors(te, 'model', 'fp16')).toBe(path.join(te, 'model.fp16.safetensors'));
    expect(await findSafetensors(dir, 'model')).toBe(path.join(dir, 'model.safetensors.index.json'));
    await expect(findSafetensors(dir, 'model', 'fp16')).rejects.toThrow(/no safetensors weights \(variant fp16\) for model in .*: tried model\.fp16\.safetensors, model\.safetensors\.index\.fp16\.json/);
    const f = await SafetensorsFile.open(await findSafetensors(dir, 'model'));
    expect(f.keys()).toHaveLength(3);
    await f.close();
  });
});
