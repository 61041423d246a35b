/** @jest-config-loader ts-node */
/** @jest-config-loader-options {"transpileOnly": true} */
import type { Config } from 'jest';

// Tests import the packages' TypeScript sources directly (swc transpiles them), so `npm test`
// never depends on a stale dist/. The CLI end-to-end tests run the built bin (`npm test` builds first).
const config: Config = {
  testEnvironment: 'node',
  roots: ['<rootDir>/packages', '<rootDir>/weights-tools', '<rootDir>/examples', '<rootDir>/test-utils'],
  testMatch: ['**/test/**/*.test.ts'],
  transform: { '^.+\\.tsx?$': ['@swc/jest', { jsc: { target: 'es2022' } }] },
  moduleNameMapper: {
    '^@ddsjs/(safetensors|nn|sd|dds|toy-shapes|cli)$': '<rootDir>/packages/$1/src',
    '^@ddsjs/weights-tools$': '<rootDir>/weights-tools/src',
  },
  modulePathIgnorePatterns: ['<rootDir>/packages/.*/dist', '<rootDir>/weights-tools/dist'],
  maxWorkers: 2,
  testTimeout: 120_000,
  reporters: ['default', '<rootDir>/test-utils/totals-reporter.js'],
};

export default config;
