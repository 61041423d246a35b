import type { Config } from 'jest';

// Tests import the packages' TypeScript sources directly (ts-jest transpiles them file by file, no type check:
// `npm test` runs `npm run build` first, which type-checks everything), so `npm test`
// never depends on a stale dist/. The CLI end-to-end tests run the built bin (`npm test` builds first).
// The webgpu suite (packages/dds/test/webgpu.test.ts) runs tfjs-backend-webgpu on Dawn's OpenGL ES compatibility
// adapter — on a machine without a GPU, Mesa's software renderer, which needs EGL_PLATFORM=surfaceless to start
// without a display. @ddsjs/nn sets it for its own process, but inside Jest `process.env` is a copy that native code
// never sees, so it is set here, in the parent whose environment the workers inherit.
process.env.EGL_PLATFORM ??= 'surfaceless';

// Test tiers, one Jest project each (`jest --selectProjects NAME`; `npx jest FILE` runs a file whatever its tier):
//   unit     `npm test`: unit, parity/golden and CLI tests;
//   quality  `npm run test:quality`: the model-quality evaluations of the shipped toy model and its trainer (minutes each);
//   webgpu   `npm run test:webgpu`: the goldens on the software WebGPU adapter.
// `npm run test:tensorflow` runs the backend-dependent unit suites again with DDSJS_BACKEND=tensorflow.
// Wall times on the 2-core dev machine, quiet (load average 2–4): unit 177 s, tensorflow 126 s, webgpu 80 s,
// quality 593 s (toy-model-edits 588 s); at load average ~12 quality took 1460 s.
// train-toy.test.ts trains the toy model for a few steps of each stage (≈ 4 min on a busy machine): quality tier too.
const QUALITY = [
  '<rootDir>/toy-train/test/toy-model.test.ts',
  '<rootDir>/toy-train/test/toy-model-edits.test.ts',
  '<rootDir>/toy-train/test/toy-quality.test.ts',
  '<rootDir>/toy-train/test/train-toy.test.ts',
];
const WEBGPU = ['<rootDir>/packages/dds/test/webgpu.test.ts'];

const base: Config = {
  rootDir: __dirname,
  testEnvironment: 'node',
  roots: ['<rootDir>/packages', '<rootDir>/weights-tools', '<rootDir>/toy-train', '<rootDir>/examples', '<rootDir>/test-utils', '<rootDir>/scripts'],
  testMatch: ['**/test/**/*.test.ts'],
  transform: {
    '^.+\\.tsx?$': [
      'ts-jest',
      {
        tsconfig: { target: 'ES2022', module: 'commonjs', esModuleInterop: true, sourceMap: true, strict: true, skipLibCheck: true, isolatedModules: true },
        diagnostics: false,
      },
    ],
  },
  moduleNameMapper: {
    '^@ddsjs/(safetensors|nn|train|sd|dds|toy-shapes|cli)$': '<rootDir>/packages/$1/src',
    // the packages' `exports` subpaths (package.json): `@ddsjs/sd/internals` → packages/sd/src/internals.ts
    '^@ddsjs/(safetensors|nn|sd|dds)/internals$': '<rootDir>/packages/$1/src/internals',
    '^@ddsjs/cli/args$': '<rootDir>/packages/cli/src/args',
    '^@ddsjs/weights-tools$': '<rootDir>/weights-tools/src',
    '^@ddsjs/toy-train$': '<rootDir>/toy-train/src',
  },
  modulePathIgnorePatterns: ['<rootDir>/packages/.*/dist', '<rootDir>/weights-tools/dist', '<rootDir>/toy-train/dist'],
};

const config: Config = {
  projects: [
    { ...base, displayName: 'unit', testPathIgnorePatterns: ['/node_modules/', ...QUALITY, ...WEBGPU] },
    { ...base, displayName: 'quality', testMatch: QUALITY },
    { ...base, displayName: 'webgpu', testMatch: WEBGPU },
  ],
  maxWorkers: 2,
  testTimeout: 120_000,
  reporters: ['default', '<rootDir>/test-utils/totals-reporter.js'],
};

export default config;
