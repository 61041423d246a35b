#!/usr/bin/env node
// The `dds-toy` executable: see ./main.ts.
import { main } from './main';

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (e: unknown) => {
    process.stderr.write(`dds-toy: ${e instanceof Error ? e.message : String(e)}\n`);
    process.exitCode = 1;
  },
);
