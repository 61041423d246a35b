#!/usr/bin/env node
// `npm run setup:tensorflow [-- --gpu] [-- --from-wheel FILE | --from-dir DIR] [-- --force]`
//
// Installs @tensorflow/tfjs-node (or, with --gpu, @tensorflow/tfjs-node-gpu) into this workspace with a working
// native addon, without the package's own download from storage.googleapis.com. The TensorFlow C library comes from,
// in order:
//   --from-wheel FILE  a tensorflow / tensorflow-cpu wheel (its libtensorflow_cc.so.2, libtensorflow_framework.so.2
//                      and the C headers under tensorflow/include);
//   --from-dir DIR     a libtensorflow folder with lib/ and include/ (the official libtensorflow tarball layout, or
//                      one holding libtensorflow_cc.so.2);
//   pip                `pip download --no-deps tensorflow-cpu` (`tensorflow` with --gpu) through pip's configured
//                      index (works offline with a local index / wheelhouse);
//   the package        tfjs-node's own install script (downloads libtensorflow 2.9.1 and a prebuilt addon).
// The library is staged once in the cache folder (DDSJS_TF_CACHE, else $XDG_CACHE_HOME/ddsjs/tensorflow, else
// ~/.cache/ddsjs/tensorflow); node_modules/@tensorflow/tfjs-node/deps links to it and the compiled addon is cached
// beside it, so a rerun (also after `npm ci`) takes seconds. package.json and package-lock.json are never edited:
// the package is installed with `npm install --no-save --ignore-scripts`, which only adds packages (a later plain
// `npm install`/`npm ci` removes it again; rerun this script then).
'use strict';

const fs = require('node:fs');
const os = require('node:os');
const path = require('node:path');
const { spawnSync } = require('node:child_process');

const ROOT = path.resolve(__dirname, '..');

function die(message) {
  console.error(`setup:tensorflow: ${message}`);
  process.exit(1);
}

function log(message) {
  console.log(`setup:tensorflow: ${message}`);
}

function parseArgs(argv) {
  const opts = { gpu: false, wheel: null, dir: null, force: false };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const value = () => {
      const v = a.includes('=') ? a.slice(a.indexOf('=') + 1) : argv[++i];
      if (!v) die(`${a.split('=')[0]} needs a value`);
      return path.resolve(v);
    };
    if (a === '--gpu') opts.gpu = true;
    else if (a === '--force') opts.force = true;
    else if (a === '--from-wheel' || a.startsWith('--from-wheel=')) opts.wheel = value();
    else if (a === '--from-dir' || a.startsWith('--from-dir=')) opts.dir = value();
    else if (a === '--help' || a === '-h') {
      console.log(fs.readFileSync(__filename, 'utf8').split('\n').slice(1, 20).map((l) => l.replace(/^\/\/ ?/, '')).join('\n'));
      process.exit(0);
    } else die(`unknown option '${a}'; expected --gpu, --from-wheel FILE, --from-dir DIR, --force`);
  }
  if (opts.wheel && opts.dir) die('pass either --from-wheel or --from-dir, not both');
  return opts;
}

function run(cmd, args, options = {}) {
  return spawnSync(cmd, args, { encoding: 'utf8', maxBuffer: 64 * 1024 * 1024, ...options });
}

function has(cmd, args = ['--version']) {
  const r = run(cmd, args);
  return !r.error && r.status === 0;
}

function cacheDir() {
  if (process.env.DDSJS_TF_CACHE) return path.resolve(process.env.DDSJS_TF_CACHE);
  const base = process.env.XDG_CACHE_HOME || path.join(os.homedir(), '.cache');
  return path.join(base, 'ddsjs', 'tensorflow');
}

/** The @tensorflow/tfjs version package-lock.json pins; tfjs-node must be the same release. */
function lockedTfjsVersion() {
  const lock = JSON.parse(fs.readFileSync(path.join(ROOT, 'package-lock.json'), 'utf8'));
  const v = lock.packages?.['node_modules/@tensorflow/tfjs']?.version;
  if (!v) die('package-lock.json pins no @tensorflow/tfjs; run `npm ci` first');
  return v;
}

const ELF_MACHINE = { 0x3e: 'x64', 0xb7: 'arm64' };

/** The CPU architecture of an ELF shared library (node's process.arch spelling), or null when not ELF. */
function elfArch(file) {
  const fd = fs.openSync(file, 'r');
  const b = Buffer.alloc(20);
  fs.readSync(fd, b, 0, 20, 0);
  fs.closeSync(fd);
  if (b.readUInt32BE(0) !== 0x7f454c46) return null;
  return ELF_MACHINE[b.readUInt16LE(18)] ?? `machine 0x${b.readUInt16LE(18).toString(16)}`;
}

/** Loads the installed package in a child process; returns { tf, backend } or an error text. */
function probe(pkg) {
  const code = `const tf = require(${JSON.stringify(pkg)}); tf.setBackend('tensorflow');
    process.stdout.write(JSON.stringify({ tf: tf.backend().binding.TF_Version, backend: tf.getBackend() }));`;
  const r = run(process.execPath, ['-e', code], { cwd: ROOT, env: { ...process.env, TF_CPP_MIN_LOG_LEVEL: '3' } });
  if (r.status === 0) {
    try {
      return JSON.parse(r.stdout.trim().split('\n').pop());
    } catch {
      /* fall through */
    }
  }
  const lines = `${r.stderr}`.split('\n').filter((l) => /Error|error:/.test(l));
  return { error: lines[0]?.trim() || `exit ${r.status}` };
}

function checkToolchain() {
  if (!has('python3') && !has('python')) die('no Python found (node-gyp needs it): install python3');
  if (!has('make')) die('no `make` found: install build tools (Debian: apt-get install build-essential)');
  if (!has(process.env.CXX || 'c++') && !has('g++') && !has('clang++')) {
    die('no C++ compiler found: install one (Debian: apt-get install build-essential), or set CXX');
  }
  const nodedir = process.env.npm_config_nodedir || run('npm', ['config', 'get', 'nodedir']).stdout?.trim();
  const candidates = [
    nodedir && nodedir !== 'undefined' && nodedir !== 'null' ? path.join(nodedir, 'include', 'node') : null,
    path.join(os.homedir(), '.cache', 'node-gyp', process.versions.node, 'include', 'node'),
    path.join(path.dirname(path.dirname(process.execPath)), 'include', 'node'),
  ].filter(Boolean);
  const headers = candidates.find((d) => fs.existsSync(path.join(d, 'node_api.h')));
  if (!headers) {
    die(`no Node.js headers (node_api.h) in ${candidates.join(', ')}: install them (Debian: apt-get install libnode-dev) and set npm_config_nodedir, or run \`npx node-gyp install\` online`);
  }
  return path.dirname(path.dirname(headers));
}

function nodeGyp() {
  const fromEnv = process.env.npm_config_node_gyp;
  if (fromEnv && fs.existsSync(fromEnv)) return fromEnv;
  const npmRoot = run('npm', ['root', '-g']).stdout?.trim();
  const bundled = npmRoot && path.join(npmRoot, 'npm', 'node_modules', 'node-gyp', 'bin', 'node-gyp.js');
  if (bundled && fs.existsSync(bundled)) return bundled;
  die('node-gyp not found (npm bundles it): run this through `npm run setup:tensorflow`, or set npm_config_node_gyp');
}

/**
 * Checks a wheel before anything is installed: its name (a tensorflow / tensorflow-cpu wheel), platform and CPU
 * architecture, and that it holds the two libraries the binding links. Returns { dist, version }.
 */
function inspectWheel(wheel) {
  if (!fs.existsSync(wheel)) die(`wheel not found: ${wheel}`);
  const m = /^(tensorflow(?:[-_]cpu)?)-([^-]+)-.*?-([^-]+)\.whl$/.exec(path.basename(wheel));
  if (!m) die(`${path.basename(wheel)} is not a tensorflow / tensorflow-cpu wheel (expected tensorflow[_cpu]-VERSION-…-PLATFORM.whl)`);
  const [, dist, version, platform] = m;
  const arch = /x86_64|amd64/.test(platform) ? 'x64' : /aarch64|arm64/.test(platform) ? 'arm64' : platform;
  if (!platform.startsWith('manylinux') && !platform.startsWith('linux')) {
    die(`${path.basename(wheel)} is built for ${platform}; this script links Linux wheels only (use --from-dir with a libtensorflow for ${process.platform})`);
  }
  if (arch !== process.arch) die(`${path.basename(wheel)} is for ${arch}, this machine is ${process.arch}: use the ${process.arch} wheel`);
  const py = has('python3') ? 'python3' : 'python';
  const list = run(py, ['-c', `import sys, zipfile\nprint('\\n'.join(zipfile.ZipFile(sys.argv[1]).namelist()))`, wheel]);
  if (list.status !== 0) die(`${path.basename(wheel)} is not a readable zip file: ${(list.stderr || '').trim().split('\n').pop()}`);
  const names = new Set(list.stdout.split('\n'));
  const missing = ['libtensorflow_cc.so.2', 'libtensorflow_framework.so.2'].filter((n) => !names.has(`tensorflow/${n}`));
  if (missing.length) die(`${path.basename(wheel)} has no tensorflow/${missing.join(' or ')} (not a TensorFlow 2.x wheel with the C++ library)`);
  return { dist, version };
}

/** Extracts what the binding needs from a checked wheel into `dest` (lib/ and include/) with Python's zipfile. */
function stageWheel(wheel, dest, gpu) {
  const { dist, version } = inspectWheel(wheel);
  const py = has('python3') ? 'python3' : 'python';
  const script = `
import sys, zipfile, os
z = zipfile.ZipFile(sys.argv[1]); dest = sys.argv[2]
names = z.namelist()
libs = ['tensorflow/libtensorflow_cc.so.2', 'tensorflow/libtensorflow_framework.so.2']
for n in libs:
    with z.open(n) as src, open(os.path.join(dest, 'lib', os.path.basename(n)), 'wb') as out:
        while True:
            b = src.read(1 << 22)
            if not b: break
            out.write(b)
pre = 'tensorflow/include/'
for n in names:
    if not n.startswith(pre) or n.endswith('/'): continue
    rel = n[len(pre):]
    if rel.startswith('tensorflow/c/') or rel.startswith('xla/tsl/c/') or os.path.basename(rel).startswith('ctstring'):
        p = os.path.join(dest, 'include', rel); os.makedirs(os.path.dirname(p), exist_ok=True)
        with z.open(n) as src, open(p, 'wb') as out: out.write(src.read())
`;
  fs.mkdirSync(path.join(dest, 'lib'), { recursive: true });
  fs.mkdirSync(path.join(dest, 'include'), { recursive: true });
  const r = run(py, ['-c', script, wheel, dest]);
  if (r.status !== 0) die(`could not unpack ${path.basename(wheel)}: ${(r.stderr || r.error?.message || '').trim().split('\n').pop()}`);
  return { version, main: 'libtensorflow_cc.so.2', variant: dist === 'tensorflow-cpu' || dist === 'tensorflow_cpu' ? 'cpu' : gpu ? 'gpu' : 'cpu or gpu (tensorflow wheel)' };
}

/** Checks a libtensorflow folder (lib/ + include/, this machine's architecture); returns its main library's name. */
function checkDir(dir) {
  if (!fs.existsSync(dir)) die(`folder not found: ${dir}`);
  const lib = path.join(dir, 'lib');
  const main = ['libtensorflow_cc.so.2', 'libtensorflow.so.2'].find((n) => fs.existsSync(path.join(lib, n)));
  if (!main) die(`${lib} has neither libtensorflow_cc.so.2 nor libtensorflow.so.2: pass a libtensorflow folder (lib/ and include/)`);
  if (!fs.existsSync(path.join(lib, 'libtensorflow_framework.so.2'))) die(`${lib} has no libtensorflow_framework.so.2`);
  if (!fs.existsSync(path.join(dir, 'include', 'tensorflow', 'c', 'c_api.h'))) die(`${dir}/include has no tensorflow/c/c_api.h`);
  const arch = elfArch(path.join(lib, main));
  if (arch !== process.arch) die(`${path.join(lib, main)} is ${arch ?? 'not an ELF library'}, this machine is ${process.arch}`);
  return main;
}

/** Stages a checked libtensorflow folder (lib/ + include/) into `dest` by symlinks. */
function stageDir(dir, dest) {
  const lib = path.join(dir, 'lib');
  const main = checkDir(dir);
  fs.mkdirSync(path.join(dest, 'lib'), { recursive: true });
  for (const n of [main, 'libtensorflow_framework.so.2']) fs.symlinkSync(path.join(fs.realpathSync(lib), n), path.join(dest, 'lib', n));
  fs.symlinkSync(fs.realpathSync(path.join(dir, 'include')), path.join(dest, 'include'));
  return { version: 'unknown until loaded', main, variant: 'from a folder' };
}

function pipDownload(cache, gpu) {
  const pip = ['pip3', 'pip'].find((p) => has(p));
  if (!pip) return null;
  const dist = gpu ? 'tensorflow' : 'tensorflow-cpu';
  const dir = path.join(cache, 'wheels');
  fs.mkdirSync(dir, { recursive: true });
  const pattern = gpu ? /^tensorflow-\d.*\.whl$/ : /^tensorflow_cpu-\d.*\.whl$/;
  const before = new Set(fs.readdirSync(dir));
  log(`pip download --no-deps ${dist} (through pip's configured index) into ${dir}`);
  const r = run(pip, ['download', '--no-deps', '--only-binary', ':all:', dist, '-d', dir], { stdio: ['ignore', 'pipe', 'pipe'] });
  const wheels = fs.readdirSync(dir).filter((n) => pattern.test(n));
  if (r.status !== 0 || wheels.length === 0) {
    log(`pip could not fetch ${dist}: ${(r.stderr || '').trim().split('\n').pop()}`);
    return null;
  }
  const fresh = wheels.filter((n) => !before.has(n));
  return path.join(dir, (fresh.length ? fresh : wheels).sort().pop());
}

/** The CUDA libraries a TensorFlow 2.x GPU build dlopens, and which of them the loader cannot find. */
function missingCudaLibs() {
  const needed = ['libcudart.so.12', 'libcublas.so.12', 'libcublasLt.so.12', 'libcufft.so.11', 'libcusparse.so.12', 'libcusolver.so.11', 'libcudnn.so.9', 'libnvJitLink.so.12'];
  const known = run('ldconfig', ['-p']).stdout || '';
  const dirs = (process.env.LD_LIBRARY_PATH || '').split(':').filter(Boolean);
  return needed.filter((n) => !known.includes(n) && !dirs.some((d) => fs.existsSync(path.join(d, n))));
}

function linkDeps(pkgDir, staged, main) {
  const deps = path.join(pkgDir, 'deps');
  fs.rmSync(deps, { recursive: true, force: true });
  fs.mkdirSync(path.join(deps, 'lib'), { recursive: true });
  const lib = path.join(staged, 'lib');
  const link = (target, name) => fs.symlinkSync(target, path.join(deps, 'lib', name));
  link(path.join(lib, main), main);
  link(path.join(lib, 'libtensorflow_framework.so.2'), 'libtensorflow_framework.so.2');
  // The names binding.gyp links (-ltensorflow -ltensorflow_framework) and install.js looks for.
  for (const n of ['libtensorflow.so', 'libtensorflow.so.2', 'libtensorflow.so.2.9.1']) if (n !== main) link(main, n);
  link('libtensorflow_framework.so.2', 'libtensorflow_framework.so');
  fs.symlinkSync(path.join(staged, 'include'), path.join(deps, 'include'));
}

function main() {
  const opts = parseArgs(process.argv.slice(2));
  const started = Date.now();
  if (process.platform !== 'linux' && !opts.dir) {
    die(`linking a wheel works on Linux only (this is ${process.platform}): use \`npm install @tensorflow/tfjs-node\` with install scripts allowed, or --from-dir`);
  }
  const pkg = opts.gpu ? '@tensorflow/tfjs-node-gpu' : '@tensorflow/tfjs-node';
  const version = lockedTfjsVersion();
  const pkgDir = path.join(ROOT, 'node_modules', ...pkg.split('/'));
  const cache = cacheDir();
  const stamp = path.join(pkgDir, 'deps', 'ddsjs-setup.json');

  const installed = fs.existsSync(path.join(pkgDir, 'package.json')) && JSON.parse(fs.readFileSync(path.join(pkgDir, 'package.json'), 'utf8')).version;
  if (installed === version && fs.existsSync(stamp) && !opts.force && !opts.wheel && !opts.dir) {
    const p = probe(pkg);
    if (!p.error) {
      const s = JSON.parse(fs.readFileSync(stamp, 'utf8'));
      log(`already set up: ${pkg}@${version} on TensorFlow ${p.tf} (${s.variant}, from ${s.source}); --force redoes it`);
      return;
    }
  }

  if (opts.gpu) {
    const missing = missingCudaLibs();
    if (missing.length) {
      die(`the CUDA 12 libraries ${missing.join(', ')} are not on the loader path: install CUDA 12 + cuDNN 9 (or \`pip install tensorflow[and-cuda]\` and add its nvidia/*/lib folders to LD_LIBRARY_PATH)`);
    }
  }

  const nodedir = checkToolchain();
  const gyp = nodeGyp();
  if (opts.wheel) inspectWheel(opts.wheel);
  if (opts.dir) checkDir(opts.dir);

  if (installed !== version) {
    log(`npm install --no-save --ignore-scripts ${pkg}@${version} (matches the locked @tensorflow/tfjs)`);
    const r = run('npm', ['install', '--no-save', '--ignore-scripts', '--no-audit', '--no-fund', '--prefer-offline', `${pkg}@${version}`], { cwd: ROOT, stdio: 'inherit' });
    if (r.status !== 0) die(`npm could not install ${pkg}@${version} (offline? it must be in npm's cache or a reachable registry)`);
  }

  // Where the library comes from.
  let source;
  let staged;
  let info;
  const stagedFor = (key) => path.join(cache, 'lib', key);
  const stageOnce = (key, stager) => {
    const dir = stagedFor(key);
    const meta = path.join(dir, 'staged.json');
    if (fs.existsSync(meta) && !opts.force) return [dir, JSON.parse(fs.readFileSync(meta, 'utf8'))];
    fs.rmSync(dir, { recursive: true, force: true });
    fs.mkdirSync(dir, { recursive: true });
    const t = Date.now();
    const result = stager(dir);
    fs.writeFileSync(meta, JSON.stringify(result, null, 2));
    log(`staged the library in ${dir} (${((Date.now() - t) / 1000).toFixed(0)} s)`);
    return [dir, result];
  };
  if (opts.dir) {
    source = opts.dir;
    [staged, info] = stageOnce(`dir-${Buffer.from(opts.dir).toString('base64url').slice(-40)}`, (d) => stageDir(opts.dir, d));
  } else {
    let wheel = opts.wheel;
    if (!wheel) {
      const prior = fs.existsSync(path.join(cache, 'lib'))
        ? fs.readdirSync(path.join(cache, 'lib')).filter((n) => n.startsWith(opts.gpu ? 'tensorflow-' : 'tensorflow_cpu-')).sort().pop()
        : undefined;
      if (prior && !opts.force) wheel = prior; // already staged from pip earlier
      else wheel = pipDownload(cache, opts.gpu);
    }
    if (wheel) {
      source = path.basename(wheel);
      const key = path.basename(wheel).replace(/\.whl$/, '');
      [staged, info] = stageOnce(key, (d) => stageWheel(wheel, d, opts.gpu));
      if (wheel === path.basename(wheel)) source = `${wheel} (cached)`;
    }
  }

  if (!staged) {
    log(`no wheel available; falling back to ${pkg}'s own install script (downloads libtensorflow 2.9.1 from storage.googleapis.com)`);
    const r = run(process.execPath, ['scripts/install.js', ...(opts.gpu ? ['gpu', 'download'] : [])], { cwd: pkgDir, stdio: 'inherit' });
    if (r.status !== 0) die(`${pkg}'s own install failed: pass --from-wheel FILE or --from-dir DIR (no pip found, or pip's index has no tensorflow${opts.gpu ? '' : '-cpu'})`);
    const p = probe(pkg);
    if (p.error) die(`${pkg} was installed but does not load: ${p.error}`);
    fs.writeFileSync(stamp, JSON.stringify({ source: 'the package download', variant: opts.gpu ? 'gpu' : 'cpu' }));
    log(`done: ${pkg}@${version} on TensorFlow ${p.tf} (from the package download) in ${((Date.now() - started) / 1000).toFixed(0)} s`);
    return;
  }

  linkDeps(pkgDir, staged, info.main);

  // The addon: reuse a build for the same package version and library, else compile it.
  const napi = run(process.execPath, ['-p', 'process.versions.napi']).stdout.trim();
  const addonCache = path.join(staged, 'addon', `${pkg.replace('/', '+')}@${version}`);
  const pkgJson = JSON.parse(fs.readFileSync(path.join(pkgDir, 'package.json'), 'utf8'));
  const supported = pkgJson.binary.napi_versions.filter((v) => v <= Number(napi));
  const napiDir = path.join(pkgDir, 'lib', `napi-v${Math.max(...supported)}`);
  const addon = path.join(napiDir, 'tfjs_binding.node');
  if (fs.existsSync(path.join(addonCache, 'tfjs_binding.node')) && !opts.force) {
    fs.mkdirSync(napiDir, { recursive: true });
    fs.copyFileSync(path.join(addonCache, 'tfjs_binding.node'), addon);
    log('reused the cached addon build');
  } else {
    log('compiling the addon (node-pre-gyp install --build-from-source)');
    const t = Date.now();
    const preGyp = require.resolve('@mapbox/node-pre-gyp/bin/node-pre-gyp', { paths: [pkgDir] });
    const r = run(process.execPath, [preGyp, 'install', '--build-from-source'], {
      cwd: pkgDir,
      env: { ...process.env, npm_config_node_gyp: gyp, npm_config_nodedir: nodedir },
    });
    if (r.status !== 0) {
      const err = `${r.stdout}\n${r.stderr}`.split('\n').filter((l) => /error/i.test(l))[0] || `exit ${r.status}`;
      die(`compiling the addon failed: ${err.trim()}`);
    }
    if (!fs.existsSync(addon)) die(`the build did not produce ${path.relative(ROOT, addon)}`);
    fs.mkdirSync(addonCache, { recursive: true });
    fs.copyFileSync(addon, path.join(addonCache, 'tfjs_binding.node'));
    log(`compiled in ${((Date.now() - t) / 1000).toFixed(0)} s`);
  }

  const p = probe(pkg);
  if (p.error) die(`${pkg} is built but does not load: ${p.error}`);
  const variant = opts.gpu ? 'gpu' : info.variant;
  fs.writeFileSync(stamp, JSON.stringify({ source, variant, tf: p.tf }, null, 2));
  log(`done: ${pkg}@${version} linked to TensorFlow ${p.tf} (${variant}, from ${source}; library in ${staged}) in ${((Date.now() - started) / 1000).toFixed(0)} s`);
}

main();
