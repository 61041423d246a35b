import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { spawnSync } from 'node:child_process';

// `npm run setup:tensorflow`'s checks: each bad input or missing prerequisite is one line on stderr, exit 1, before
// anything is installed or staged (the cache folder stays absent). The successful path (pip wheel → linked addon)
// runs in CI as the step before `npm run test:tensorflow`.
const SCRIPT = path.resolve(__dirname, '..', 'setup-tensorflow.js');
let tmp: string;

beforeAll(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'ddsjs-setup-tf-'));
});
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

function setup(args: string[], env: NodeJS.ProcessEnv = {}) {
  const r = spawnSync(process.execPath, [SCRIPT, ...args], {
    encoding: 'utf8',
    env: { ...process.env, DDSJS_TF_CACHE: path.join(tmp, 'cache'), ...env },
  });
  return { status: r.status, stderr: r.stderr, stdout: r.stdout };
}

/** A zip named like a wheel holding `entries`. */
function fakeWheel(name: string, entries: string[]): string {
  const file = path.join(tmp, name);
  const py = `import sys, zipfile\nz = zipfile.ZipFile(sys.argv[1], 'w')\nfor n in sys.argv[2:]: z.writestr(n, 'x')\nz.close()`;
  const r = spawnSync('python3', ['-c', py, file, ...entries], { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(r.stderr);
  return file;
}

function expectOneLineError(r: { status: number | null; stderr: string }, pattern: RegExp) {
  expect(r.status).toBe(1);
  const lines = r.stderr.trim().split('\n');
  expect(lines).toHaveLength(1);
  expect(lines[0]).toMatch(/^setup:tensorflow: /);
  expect(lines[0]).toMatch(pattern);
}

test('bad options', () => {
  expectOneLineError(setup(['--bogus']), /unknown option '--bogus'; expected --gpu, --from-wheel FILE, --from-dir DIR, --force/);
  expectOneLineError(setup(['--from-wheel']), /--from-wheel needs a value/);
  expectOneLineError(setup(['--from-wheel', 'a.whl', '--from-dir', 'x']), /either --from-wheel or --from-dir/);
});

test('a wheel that is missing, misnamed, for another architecture or without the C++ library', () => {
  const arch = process.arch === 'x64' ? 'x86_64' : 'aarch64';
  const other = process.arch === 'x64' ? 'aarch64' : 'x86_64';
  expectOneLineError(setup(['--from-wheel', path.join(tmp, 'nope.whl')]), /wheel not found: .*nope\.whl/);
  expectOneLineError(setup(['--from-wheel', fakeWheel('numpy-2.0.0-cp311-cp311-manylinux_2_17_x86_64.whl', ['numpy/x'])]), /is not a tensorflow \/ tensorflow-cpu wheel/);
  expectOneLineError(
    setup(['--from-wheel', fakeWheel(`tensorflow_cpu-2.21.0-cp311-cp311-manylinux_2_27_${other}.whl`, ['tensorflow/libtensorflow_cc.so.2'])]),
    new RegExp(`is for ${process.arch === 'x64' ? 'arm64' : 'x64'}, this machine is ${process.arch}: use the ${process.arch} wheel`),
  );
  expectOneLineError(
    setup(['--from-wheel', fakeWheel(`tensorflow_cpu-2.21.0-cp311-cp311-manylinux_2_27_${arch}.whl`, ['tensorflow/libtensorflow_framework.so.2'])]),
    /has no tensorflow\/libtensorflow_cc\.so\.2 \(not a TensorFlow 2\.x wheel with the C\+\+ library\)/,
  );
  expect(fs.existsSync(path.join(tmp, 'cache'))).toBe(false);
});

test('a libtensorflow folder without the libraries or headers', () => {
  const dir = path.join(tmp, 'libtf');
  expectOneLineError(setup(['--from-dir', dir]), /folder not found/);
  fs.mkdirSync(path.join(dir, 'lib'), { recursive: true });
  expectOneLineError(setup(['--from-dir', dir]), /has neither libtensorflow_cc\.so\.2 nor libtensorflow\.so\.2/);
  fs.writeFileSync(path.join(dir, 'lib', 'libtensorflow.so.2'), 'not an ELF file');
  fs.writeFileSync(path.join(dir, 'lib', 'libtensorflow_framework.so.2'), '');
  expectOneLineError(setup(['--from-dir', dir]), /include has no tensorflow\/c\/c_api\.h/);
  fs.mkdirSync(path.join(dir, 'include', 'tensorflow', 'c'), { recursive: true });
  fs.writeFileSync(path.join(dir, 'include', 'tensorflow', 'c', 'c_api.h'), '');
  expectOneLineError(setup(['--from-dir', dir]), /is not an ELF library, this machine is/);
});

test('missing build tools are named with the fix', () => {
  // A PATH holding only node: no python3, make or compiler.
  const bin = path.join(tmp, 'bin');
  fs.mkdirSync(bin, { recursive: true });
  fs.symlinkSync(process.execPath, path.join(bin, 'node'));
  expectOneLineError(setup(['--force', '--from-dir', tmp], { PATH: bin }), /no Python found \(node-gyp needs it\): install python3/);
  const python = spawnSync('python3', ['-c', 'import sys; print(sys.executable)'], { encoding: 'utf8' }).stdout.trim();
  fs.symlinkSync(python, path.join(bin, 'python3'));
  expectOneLineError(setup(['--force', '--from-dir', tmp], { PATH: bin }), /no `make` found: install build tools/);
});

test('--gpu names the CUDA libraries the loader cannot find', () => {
  const r = setup(['--gpu'], { LD_LIBRARY_PATH: '' });
  if (r.status === 1 && /CUDA 12 libraries/.test(r.stderr)) {
    expectOneLineError(r, /the CUDA 12 libraries (lib\w+\.so\.\d+(, )?)+ are not on the loader path: install CUDA 12/);
  } else {
    // A machine with CUDA 12: the check passes and the script goes on (nothing to assert here beyond no crash).
    expect(r.stderr).not.toMatch(/TypeError|ReferenceError/);
  }
});
