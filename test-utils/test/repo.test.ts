// The repository as a user meets it (issue 25, items 15-18): licence in every tarball, tfjs as a peer dependency,
// package metadata, source maps that resolve inside the tarball, the toy-shapes size the docs state, and docs
// links that resolve in a clone.
import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';

const ROOT = path.resolve(__dirname, '..', '..');
const PACKAGES = ['packages/safetensors', 'packages/nn', 'packages/sd', 'packages/dds', 'packages/toy-shapes', 'packages/cli', 'weights-tools', 'toy-train'];
const readJson = (file: string) => JSON.parse(fs.readFileSync(file, 'utf8'));

/** `npm pack --dry-run --json` of a package: its tarball size and the paths it ships. */
function pack(dir: string): { size: number; files: Set<string> } {
  const out = execFileSync('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], { cwd: path.join(ROOT, dir), encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
  const [r] = JSON.parse(out) as { size: number; files: { path: string }[] }[];
  return { size: r.size, files: new Set(r.files.map((f) => f.path)) };
}

const packs = new Map<string, { size: number; files: Set<string> }>();
beforeAll(() => {
  for (const dir of PACKAGES) packs.set(dir, pack(dir));
}, 120_000);

test('the Apache-2.0 licence text is at the root and in every tarball (item 15)', () => {
  expect(fs.readFileSync(path.join(ROOT, 'LICENSE'), 'utf8')).toMatch(/Apache License\s+Version 2\.0, January 2004/);
  for (const dir of PACKAGES) {
    expect(readJson(path.join(ROOT, dir, 'package.json')).license).toBe('Apache-2.0');
    expect([dir, packs.get(dir)!.files.has('LICENSE')]).toEqual([dir, true]);
  }
});

test('tfjs and its backends are peer dependencies with a 4.x range, never regular ones (item 16)', () => {
  for (const dir of PACKAGES) {
    const pkg = readJson(path.join(ROOT, dir, 'package.json'));
    const tf = Object.keys(pkg.dependencies ?? {}).filter((n) => n.startsWith('@tensorflow/'));
    expect([dir, tf]).toEqual([dir, []]);
    for (const [name, range] of Object.entries(pkg.peerDependencies ?? {})) {
      if (name.startsWith('@tensorflow/')) expect([dir, name, range]).toEqual([dir, name, '^4.22.0']);
    }
  }
  for (const dir of ['packages/nn', 'packages/sd', 'packages/dds', 'packages/cli']) {
    expect(readJson(path.join(ROOT, dir, 'package.json')).peerDependencies['@tensorflow/tfjs']).toBe('^4.22.0');
  }
  expect(readJson(path.join(ROOT, 'package.json')).devDependencies['@tensorflow/tfjs']).toBe('^4.22.0');
});

test('package metadata: repository and homepage; every source map resolves to a shipped file (item 17)', () => {
  for (const dir of PACKAGES) {
    const pkg = readJson(path.join(ROOT, dir, 'package.json'));
    expect([dir, pkg.repository?.directory, typeof pkg.repository?.url, typeof pkg.homepage]).toEqual([dir, dir, 'string', 'string']);
    const { files } = packs.get(dir)!;
    const maps = [...files].filter((f) => f.endsWith('.map'));
    for (const map of maps) {
      const { sources } = readJson(path.join(ROOT, dir, map)) as { sources: string[] };
      for (const s of sources) {
        const shipped = path.posix.normalize(path.posix.join(path.posix.dirname(map), s));
        expect([dir, map, s, files.has(shipped)]).toEqual([dir, map, s, true]);
      }
    }
  }
});

test("the toy-shapes tarball size is the one the docs give (item 17)", () => {
  const mb = packs.get('packages/toy-shapes')!.size / 1e6;
  for (const doc of ['README.md', 'packages/toy-shapes/README.md']) {
    const m = /(\d+(?:\.\d+)?) MB npm tarball|npm tarball is (\d+(?:\.\d+)?) MB/.exec(fs.readFileSync(path.join(ROOT, doc), 'utf8'));
    expect([doc, m !== null]).toEqual([doc, true]);
    const stated = Number(m![1] ?? m![2]);
    expect([doc, Math.abs(stated - mb) <= 0.05 * mb]).toEqual([doc, true]); // within 5 %
  }
});

test('docs link only to files a clone has (item 18)', () => {
  const docs = execFileSync('git', ['ls-files', '*.md'], { cwd: ROOT, encoding: 'utf8' })
    .split('\n')
    .filter((f) => f && !f.startsWith('fixtures/'));
  expect(docs.length).toBeGreaterThan(5);
  const broken: string[] = [];
  for (const doc of docs) {
    const text = fs.readFileSync(path.join(ROOT, doc), 'utf8');
    if (/\.\.\/shared\b/.test(text)) broken.push(`${doc}: mentions ../shared`);
    for (const m of text.matchAll(/\]\(([^)\s]+)\)/g)) {
      const target = m[1].split('#')[0];
      if (!target || /^[a-z]+:/i.test(target)) continue;
      if (!fs.existsSync(path.resolve(ROOT, path.dirname(doc), target))) broken.push(`${doc}: ${m[1]}`);
    }
  }
  expect(broken).toEqual([]);
});
