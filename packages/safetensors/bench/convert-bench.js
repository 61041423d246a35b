#!/usr/bin/env node
// Throughput of F16/BF16 → F32 conversion and of readFloat32 from a file (page cache warm).
// Usage: npx tsc -b packages/safetensors && node packages/safetensors/bench/convert-bench.js [MB of fp16, default 512]
'use strict';
const fs = require('fs');
const os = require('os');
const path = require('path');
const { f16ToF32, bf16ToF32, SafetensorsFile, writeSafetensors } = require('../dist');

async function main() {
  const mb = Number(process.argv[2] || 512);
  const n = Math.floor((mb * 2 ** 20) / 2);
  const src = new Uint16Array(n);
  for (let i = 0; i < n; i++) src[i] = (Math.imul(i, 2654435761) >>> 16) & 0x7bff; // finite values
  const out = new Float32Array(n);
  // CPU time of this process (less sensitive than wall time to other processes sharing the cores)
  const time = (fn) => { const t = process.cpuUsage(); fn(); const d = process.cpuUsage(t); return (d.user + d.system) / 1e6; };
  f16ToF32(src.subarray(0, 1 << 20), out.subarray(0, 1 << 20)); // warm up JIT + table
  bf16ToF32(src.subarray(0, 1 << 20), out.subarray(0, 1 << 20));
  const best = (fn) => Math.min(time(fn), time(fn), time(fn));
  const tf16 = best(() => f16ToF32(src, out));
  const tbf16 = best(() => bf16ToF32(src, out));
  console.log(`in memory (per CPU-second): f16ToF32 ${(mb / tf16).toFixed(0)} MB/s of fp16 input (${(n / tf16 / 1e6).toFixed(0)} M values/s), bf16ToF32 ${(mb / tbf16).toFixed(0)} MB/s`);

  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'st-bench-'));
  try {
    const p = path.join(dir, 'b.safetensors');
    await writeSafetensors(p, { h: { dtype: 'F16', shape: [n], data: src }, f: { dtype: 'F32', shape: [n], data: out } }, undefined, { fsync: false });
    const f = await SafetensorsFile.open(p);
    await f.readFloat32('h'); await f.read('f'); // warm page cache
    let t = process.hrtime.bigint();
    const c0 = process.cpuUsage();
    await f.readFloat32('h');
    const th = Number(process.hrtime.bigint() - t) / 1e9;
    const c1 = process.cpuUsage(c0);
    const cpuH = (c1.user + c1.system) / 1e6; // main thread + libuv pool threads
    t = process.hrtime.bigint();
    await f.read('f');
    const tf = Number(process.hrtime.bigint() - t) / 1e9;
    await f.close();
    console.log(`from file (page cache): readFloat32(F16) ${(mb / th).toFixed(0)} MB/s of fp16 wall (${th.toFixed(2)} s for ${mb} MB; ${cpuH.toFixed(2)} CPU-s → ${(mb / cpuH).toFixed(0)} MB/CPU-s); read(F32) ${((2 * mb) / tf).toFixed(0)} MB/s wall`);
    console.log(`load average during the run: ${os.loadavg()[0].toFixed(1)} on ${os.cpus().length} cores (wall figures scale with contention)`);
    console.log(`→ a 1.7 GB fp16 UNet converts in ≈ ${(1700 / (mb / th)).toFixed(1)} s`);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}
main().catch((e) => { console.error(e); process.exit(1); });
