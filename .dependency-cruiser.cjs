// The layering rule of CONTRIBUTING.md, checked by `npm run lint:deps` (dependency-cruiser) in CI.
// Each workspace may import only the workspaces below it; nothing imports upward or sideways.
const PKG = {
  // the package's files, or its name where the import is not resolved (e.g. dist/ not built yet)
  safetensors: '^(packages/safetensors/|@ddsjs/safetensors($|/))',
  nn: '^(packages/nn/|@ddsjs/nn($|/))',
  train: '^(packages/train/|@ddsjs/train($|/))',
  sd: '^(packages/sd/|@ddsjs/sd($|/))',
  dds: '^(packages/dds/|@ddsjs/dds($|/))',
  cli: '^(packages/cli/|@ddsjs/cli($|/))',
  toy: '^(packages/toy-shapes/|@ddsjs/toy-shapes($|/))',
  tools: '^(weights-tools/|@ddsjs/weights-tools($|/))',
  toytrain: '^(toy-train/|@ddsjs/toy-train($|/))',
  web: '^web/',
};
/** For each package, the workspaces it may import (besides itself). */
const ALLOWED = {
  safetensors: [],
  nn: ['safetensors'],
  train: ['safetensors', 'nn'],
  toy: ['nn'],
  sd: ['safetensors', 'nn'],
  dds: ['safetensors', 'nn', 'train', 'sd'],
  cli: ['safetensors', 'nn', 'sd', 'dds', 'toy'],
  tools: ['safetensors', 'nn', 'sd', 'cli'],
  toytrain: ['safetensors', 'nn', 'train', 'sd', 'dds', 'toy', 'cli', 'tools'],
  web: ['safetensors', 'nn', 'sd', 'dds', 'toy'],
};
const forbidden = Object.entries(ALLOWED).map(([from, ok]) => ({
  name: `layering-${from}`,
  comment: `${from} may import only ${ok.length ? ok.join(', ') : 'no other workspace'} (CONTRIBUTING.md, Layering)`,
  severity: 'error',
  from: { path: PKG[from] },
  to: {
    path: Object.entries(PKG)
      .filter(([name]) => name !== from && !ok.includes(name))
      .map(([, re]) => re),
  },
}));
forbidden.push(
  {
    name: 'safetensors-without-tfjs',
    comment: '@ddsjs/safetensors knows nothing of tfjs',
    severity: 'error',
    from: { path: PKG.safetensors },
    to: { path: '@tensorflow' },
  },
  {
    name: 'no-circular',
    comment: 'no import cycles inside a package either',
    severity: 'error',
    from: {},
    to: { circular: true },
  },
);
module.exports = {
  forbidden,
  options: {
    // the sources are cruised; an import of another workspace resolves to its dist/ (or stays a bare name before a
    // build) and is checked, not followed
    doNotFollow: { path: '(^|/)(dist|node_modules)/' },
    tsPreCompilationDeps: true,
  },
};
