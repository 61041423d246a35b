// A single-file checkpoint whose configs are given is not refused by model-type detection (issue 25, item 9).
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { initBackend } from '@ddsjs/nn';
import { SafetensorsFile, writeSafetensors, TensorData } from '@ddsjs/safetensors';
import { loadStableDiffusion } from '@ddsjs/sd';
import { convertLdmUnetKeys, LDM_UNET_PREFIX, readRawConfigs } from '@ddsjs/sd/internals';
import { componentParams, randomParameter } from '@ddsjs/weights-tools';
import { TINY_SD15 } from '../../test-utils';

let tmp: string;
let configDir: string;
let checkpoint: string;

beforeAll(async () => {
  await initBackend('wasm', { quiet: true });
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'dds-single-configs-'));
  // The tiny fixture's configs, with a last down block that doubles the channel count: [32, 64, 64, 128].
  configDir = path.join(tmp, 'configs');
  for (const rel of ['model_index.json', 'scheduler', 'text_encoder/config.json', 'tokenizer', 'vae/config.json', 'unet/config.json']) {
    fs.cpSync(path.join(TINY_SD15, rel), path.join(configDir, rel), { recursive: true });
  }
  const unetConfigFile = path.join(configDir, 'unet', 'config.json');
  const unetConfig = JSON.parse(fs.readFileSync(unetConfigFile, 'utf8'));
  unetConfig.block_out_channels = [32, 64, 64, 128];
  fs.writeFileSync(unetConfigFile, JSON.stringify(unetConfig, null, 2));

  // The LDM checkpoint: the fixture's single file (its VAE and text encoder), with a random UNet of the new shape
  // written under LDM names. The new block adds one resnet shortcut: input_blocks.10.0.skip_connection.
  const single = await SafetensorsFile.open(path.join(TINY_SD15, 'single-file.safetensors'));
  try {
    const tensors: Record<string, TensorData> = {};
    for (const key of single.keys()) {
      if (!key.startsWith(LDM_UNET_PREFIX)) tensors[key] = { dtype: 'F32', shape: [...single.info(key).shape], data: await single.readFloat32(key) };
    }
    const ldmUnetKeys = [
      ...single.keys().filter((k) => k.startsWith(LDM_UNET_PREFIX)),
      `${LDM_UNET_PREFIX}input_blocks.10.0.skip_connection.weight`,
      `${LDM_UNET_PREFIX}input_blocks.10.0.skip_connection.bias`,
    ];
    const toLdm = convertLdmUnetKeys(ldmUnetKeys, { layersPerBlock: unetConfig.layers_per_block, blockOutChannels: unetConfig.block_out_channels });
    const params = componentParams(readRawConfigs(configDir)).unet;
    expect(params).toHaveLength(toLdm.size); // every LDM key has one diffusers parameter, and back
    for (const p of params) {
      const from = toLdm.get(p.key);
      if (!from) throw new Error(`no LDM key for ${p.key}`);
      tensors[from.from] = { dtype: 'F32', shape: [...p.shape], data: randomParameter(p.key, p.shape, 1) };
    }
    checkpoint = path.join(tmp, 'wide-last-block.safetensors');
    await writeSafetensors(checkpoint, tensors);
  } finally {
    await single.close();
  }
});
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

test('without configs the checkpoint is detected (and refused) by its keys, as diffusers does', async () => {
  await expect(loadStableDiffusion(checkpoint)).rejects.toThrow(/x4 upscaler/);
});

test('with configFrom, the configs describe the architecture: the checkpoint loads', async () => {
  const sd = await loadStableDiffusion(checkpoint, { configFrom: configDir });
  try {
    expect(sd.configs.unet.blockOutChannels).toEqual([32, 64, 64, 128]);
  } finally {
    sd.dispose();
  }
});

test("with diffusers configs in the checkpoint's own folder, the checkpoint loads", async () => {
  const own = path.join(configDir, 'model.safetensors');
  fs.copyFileSync(checkpoint, own);
  const sd = await loadStableDiffusion(own);
  try {
    expect(sd.configs.unet.blockOutChannels).toEqual([32, 64, 64, 128]);
  } finally {
    sd.dispose();
  }
});
