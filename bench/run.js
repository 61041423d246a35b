#!/usr/bin/env node
// `npm run bench`: runs every benchmark script in this folder (each a separate Node process, so one backend's
// heap does not affect the next) and prints their figures. Usage: npm run bench [-- <names…>] e.g. -- nn sd
const { spawnSync } = require('node:child_process');
const path = require('node:path');
const fs = require('node:fs');

const all = ['nn', 'sd', 'dds', 'backends', 'memory'];
const pick = process.argv.slice(2);
const names = pick.length ? pick : all;
let failed = 0;
for (const name of names) {
  const file = path.join(__dirname, `${name}.js`);
  if (!fs.existsSync(file)) {
    console.log(`\n== ${name}: no bench/${name}.js`);
    continue;
  }
  console.log(`\n== bench/${name}.js`);
  const r = spawnSync(process.execPath, ['--max-old-space-size=16384', file], { stdio: 'inherit' });
  if (r.status !== 0) failed++;
}
process.exitCode = failed ? 1 : 0;
