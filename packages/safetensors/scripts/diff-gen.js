#!/usr/bin/env node
// Differential check against the reference Rust library (not part of the test suite: needs Python
// with the `safetensors` wheel). Writes 3,000 seeded mutants of a small valid file to OUT_DIR and
// records whether @ddsjs/safetensors accepts each (and its keys) in OUT_DIR/ours.json; then run
//   python3 packages/safetensors/scripts/diff-cmp.py OUT_DIR
// Usage: npx tsc -b packages/safetensors && node packages/safetensors/scripts/diff-gen.js OUT_DIR [seed]
'use strict';
const fs = require('fs');
const path = require('path');
const { SafetensorsFile, writeSafetensors } = require('../dist');

function mulberry32(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

(async () => {
  const out = process.argv[2];
  if (!out) throw new Error('usage: diff-gen.js OUT_DIR [seed]');
  fs.mkdirSync(out, { recursive: true });
  const p0 = path.join(out, 'valid.st');
  await writeSafetensors(p0, {
    w: { dtype: 'F32', shape: [2, 3], data: new Float32Array([1, 2, 3, 4, 5, 6]) },
    h: { dtype: 'F16', shape: [3], data: new Uint16Array([0x3c00, 0x4000, 0x7e00]) },
    ids: { dtype: 'I64', shape: [2], data: new BigInt64Array([7n, -3n]) },
    m: { dtype: 'BOOL', shape: [3], data: new Uint8Array([1, 0, 1]) },
    s: { dtype: 'F64', shape: [], data: new Float64Array([0.5]) },
    e: { dtype: 'I32', shape: [0], data: new Int32Array(0) },
  }, { format: 'pt' });
  const valid = fs.readFileSync(p0);
  const rand = mulberry32(Number(process.argv[3] || 7));
  const int = (n) => Math.floor(rand() * n);
  const n = Number(valid.readBigUInt64LE(0));
  const res = {};
  for (let it = 0; it < 3000; it++) {
    let buf = Buffer.from(valid);
    const kind = ['truncate', 'flip', 'flip-header', 'byte-header', 'splice', 'length'][it % 6];
    if (kind === 'truncate') buf = buf.subarray(0, int(buf.length));
    else if (kind === 'flip') for (let k = 1 + int(3); k > 0; k--) buf[int(buf.length)] ^= 1 << int(8);
    else if (kind === 'flip-header') for (let k = 1 + int(2); k > 0; k--) buf[8 + int(n)] ^= 1 << int(8);
    else if (kind === 'byte-header') {
      const chars = '{}[]",:0123456789- \\eE.';
      buf[8 + int(n)] = rand() < 0.7 ? chars.charCodeAt(int(chars.length)) : int(256);
    } else if (kind === 'splice') {
      const a = int(buf.length), b = Math.min(buf.length, a + 1 + int(16));
      buf = rand() < 0.5 ? Buffer.concat([buf.subarray(0, a), buf.subarray(b)]) : Buffer.concat([buf.subarray(0, b), buf.subarray(a)]);
    } else buf[int(8)] = int(256);
    const p = path.join(out, `m${it}.st`);
    fs.writeFileSync(p, buf);
    try {
      const f = await SafetensorsFile.open(p);
      res[p] = { ok: true, keys: f.keys() };
      await f.close();
    } catch (e) {
      res[p] = { ok: false, msg: e.message.replace(/ in safetensors file .*$/, '') };
    }
  }
  fs.writeFileSync(path.join(out, 'ours.json'), JSON.stringify(res));
})().catch((e) => { console.error(e); process.exit(1); });
