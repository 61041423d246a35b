// Shared by the end-to-end tests of the built `dds` bin (npm test builds first).
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import sharp from 'sharp';

/** The built bin. */
export const BIN = path.resolve(__dirname, '..', 'dist', 'bin.js');
/** The environment the bin runs in: wasm, no debug output. */
export const ENV = { ...process.env, DDSJS_BACKEND: 'wasm', DDSJS_DEBUG: '' };

/** Throws when the bin has not been built. */
export function assertBuilt(): void {
  if (!fs.existsSync(BIN)) throw new Error(`${BIN} is missing: run npm run build (npm test does)`);
}

/** Runs `dds args…` in `cwd` (killed after `timeoutMs`) and returns its exit code and output. */
export function runDds(cwd: string, args: string[], timeoutMs = 120_000): { code: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [BIN, ...args], { cwd, encoding: 'utf8', env: ENV, timeout: timeoutMs });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

/** Writes a w×h PNG: a red (220, 30, 30) disc of radius r centred at (cx, cy) on white. */
export async function writeRedDisc(file: string, w: number, h: number, cx: number, cy: number, r: number): Promise<void> {
  const px = Buffer.alloc(w * h * 3, 255);
  for (let y = 0; y < h; y++) for (let x = 0; x < w; x++) if ((x - cx) ** 2 + (y - cy) ** 2 < r ** 2) px.set([220, 30, 30], (y * w + x) * 3);
  await sharp(px, { raw: { width: w, height: h, channels: 3 } }).png().toFile(file);
}
