// Builds the page into web/dist/ (a static folder: any static server works), or with --serve rebuilds on change
// and serves it on http://127.0.0.1:8000 (PORT to change). Run from the repository root with `npm run web:build` /
// `npm run web:dev`, which first compile the packages (esbuild bundles their dist/, resolving the `browser` condition
// of their package.json `exports`).
import * as esbuild from 'esbuild';
import { cp, mkdir, readdir, rm } from 'node:fs/promises';
import { createRequire } from 'node:module';
import * as path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const out = path.join(here, 'dist');
const require = createRequire(import.meta.url);
const serve = process.argv.includes('--serve');

/** Copies what the bundle does not contain: the HTML/CSS, tfjs's wasm binaries, the embedded toy model. */
async function copyStatic() {
  await cp(path.join(here, 'public'), out, { recursive: true });
  const wasmDir = path.join(path.dirname(require.resolve('@tensorflow/tfjs-backend-wasm/package.json')), 'dist');
  await mkdir(path.join(out, 'wasm'), { recursive: true });
  for (const f of await readdir(wasmDir)) {
    if (f.endsWith('.wasm')) await cp(path.join(wasmDir, f), path.join(out, 'wasm', f));
  }
  const { MODEL_DIR } = require('@ddsjs/toy-shapes');
  await cp(MODEL_DIR, path.join(out, 'models', 'toy-shapes'), { recursive: true });
}

const options = {
  entryPoints: [path.join(here, 'src', 'main.ts')],
  outfile: path.join(out, 'app.js'),
  bundle: true,
  format: 'esm',
  platform: 'browser',
  target: 'es2022',
  minify: !serve,
  sourcemap: true,
  logLevel: 'warning',
  // Our packages are CommonJS whose Node-only paths `require` a computed id (never followed); do not warn about it.
  logOverride: { 'unsupported-require-call': 'silent' },
  metafile: true,
};

await rm(out, { recursive: true, force: true });
await mkdir(out, { recursive: true });
await copyStatic();
if (serve) {
  const ctx = await esbuild.context(options);
  await ctx.watch();
  const port = Number(process.env.PORT ?? 8000);
  const { hosts, port: p } = await ctx.serve({ servedir: out, host: '127.0.0.1', port });
  console.log(`ddsjs web: serving ${out} on http://${hosts[0]}:${p}/ (rebuilding on change; Ctrl-C to stop)`);
} else {
  const result = await esbuild.build(options);
  const bytes = Object.values(result.metafile.outputs).reduce((s, o) => s + o.bytes, 0);
  console.log(`ddsjs web: built ${path.relative(process.cwd(), out)}/ (app.js + map ${(bytes / 1e6).toFixed(1)} MB, wasm, models/toy-shapes)`);
}
