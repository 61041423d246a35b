import { SafetensorsError } from './errors';
import { Dtype, dtypeBits, isKnownDtype } from './dtypes';

/** Largest header the reader accepts (same limit as the reference Rust library). */
export const MAX_HEADER_SIZE = 100_000_000;

/** One tensor entry of a parsed header. Offsets are relative to the start of the data section. */
export interface TensorEntry {
  dtype: Dtype;
  shape: number[];
  /** [begin, end) byte offsets relative to the data section. */
  dataOffsets: [number, number];
}

/** A parsed, validated header. */
export interface ParsedHeader {
  /** Tensor entries by name, in header order. */
  tensors: Map<string, TensorEntry>;
  /** `__metadata__` (empty object when absent). */
  metadata: Record<string, string>;
}

const ENTRY_FIELDS = ['data_offsets', 'dtype', 'shape'];

function isPlainObject(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Result of {@link scanHeaderTokens}. */
export interface HeaderScan {
  /** First key repeated within one JSON object, if any. */
  duplicateKey?: string;
  /** First number literal that is not a plain integer (`1e2`, `4.0`, `-0`), if any. */
  nonIntegerNumber?: string;
}

/**
 * Scans a JSON text (already known to be valid JSON) in linear time for what JSON.parse hides: keys
 * repeated within one object, and number literals with a fraction or exponent (which the reference
 * Rust library rejects for shapes and offsets even when their value is an integer).
 */
export function scanHeaderTokens(text: string): HeaderScan {
  const stack: (Set<string> | null)[] = [];
  let expectKey = false;
  const result: HeaderScan = {};
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 0x22 /* " */) {
      let j = i + 1;
      while (j < text.length) {
        const d = text.charCodeAt(j);
        if (d === 0x5c) j += 2;
        else if (d === 0x22) break;
        else j++;
      }
      const top = stack[stack.length - 1];
      if (expectKey && top && result.duplicateKey === undefined) {
        const key = JSON.parse(text.slice(i, j + 1)) as string;
        if (top.has(key)) result.duplicateKey = key;
        top.add(key);
      }
      expectKey = false;
      i = j;
    } else if (c === 0x2d /* - */ || (c >= 0x30 && c <= 0x39)) {
      let j = i + 1;
      while (j < text.length && /[0-9.eE+-]/.test(text[j])) j++;
      const lit = text.slice(i, j);
      if (result.nonIntegerNumber === undefined && (!/^-?[0-9]+$/.test(lit) || lit === '-0')) result.nonIntegerNumber = lit;
      i = j - 1;
    } else if (c === 0x7b /* { */) {
      stack.push(new Set());
      expectKey = true;
    } else if (c === 0x5b /* [ */) {
      stack.push(null);
    } else if (c === 0x7d /* } */ || c === 0x5d /* ] */) {
      stack.pop();
    } else if (c === 0x2c /* , */) {
      expectKey = stack[stack.length - 1] != null;
    }
  }
  return result;
}

/**
 * Parses and validates a header against the rules of the reference Rust implementation.
 * @param bytes the N header bytes (after the 8-byte length)
 * @param dataSize size in bytes of the data section (file size − 8 − N)
 * @param file file name used in error messages
 * @throws SafetensorsError naming the file and the offending key
 */
export function parseHeader(bytes: Uint8Array, dataSize: number, file: string): ParsedHeader {
  const fail = (msg: string, key?: string): never => {
    throw new SafetensorsError(`${msg} in safetensors file ${file}`, { file, key });
  };
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true }).decode(bytes);
  } catch {
    return fail('header is not valid UTF-8');
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (e) {
    return fail(`header is not valid JSON (${(e as Error).message})`);
  }
  // (Leading whitespace is accepted, as by the reference library, which does not enforce a leading '{'.)
  if (!isPlainObject(json)) return fail(`header is not a JSON object (got ${Array.isArray(json) ? 'an array' : json === null ? 'null' : typeof json})`);
  const scan = scanHeaderTokens(text);
  if (scan.duplicateKey !== undefined) fail(`header has duplicate JSON key ${JSON.stringify(scan.duplicateKey)}`, scan.duplicateKey);

  const metaEntries: [string, string][] = [];
  const tensors = new Map<string, TensorEntry>();
  for (const [key, value] of Object.entries(json)) {
    const k = JSON.stringify(key);
    if (key === '__metadata__') {
      if (value === null) continue; // accepted as "no metadata", like the reference library
      if (!isPlainObject(value)) fail(`__metadata__ is not an object of string → string`, key);
      for (const [mk, mv] of Object.entries(value as Record<string, unknown>)) {
        if (typeof mv !== 'string') fail(`__metadata__ value for ${JSON.stringify(mk)} is not a string (got ${JSON.stringify(mv)})`, key);
        metaEntries.push([mk, mv as string]);
      }
      continue;
    }
    if (!isPlainObject(value)) fail(`entry for tensor ${k} is not an object`, key);
    const entry = value as Record<string, unknown>;
    const fields = Object.keys(entry).sort();
    if (fields.length !== 3 || fields.some((f, i) => f !== ENTRY_FIELDS[i])) {
      fail(`entry for tensor ${k} must have exactly the fields dtype, shape, data_offsets (got ${fields.join(', ') || 'none'})`, key);
    }
    const dtype = entry.dtype;
    if (!isKnownDtype(dtype)) fail(`unknown dtype ${JSON.stringify(dtype)} for tensor ${k}`, key);
    const shape = entry.shape;
    if (!Array.isArray(shape) || !shape.every((d) => Number.isSafeInteger(d) && (d as number) >= 0)) {
      fail(`shape of tensor ${k} is not an array of non-negative integers (got ${JSON.stringify(shape)})`, key);
    }
    const offs = entry.data_offsets;
    if (!Array.isArray(offs) || offs.length !== 2 || !offs.every((d) => Number.isSafeInteger(d) && (d as number) >= 0)) {
      fail(`data_offsets of tensor ${k} is not a pair of non-negative integers (got ${JSON.stringify(offs)})`, key);
    }
    const [begin, end] = offs as [number, number];
    if (end < begin) fail(`data_offsets of tensor ${k} end before they begin ([${begin}, ${end}])`, key);
    let bits = dtypeBits(dtype as Dtype);
    let numel = 1;
    for (const d of shape as number[]) numel *= d;
    if (!Number.isSafeInteger(numel) || !Number.isSafeInteger(numel * bits)) {
      fail(`shape ${JSON.stringify(shape)} of tensor ${k} is too large (arithmetic overflow)`, key);
    }
    bits *= numel;
    if (bits % 8 !== 0) fail(`tensor ${k} of dtype ${dtype} and shape ${JSON.stringify(shape)} does not fill a whole number of bytes`, key);
    if (end - begin !== bits / 8) {
      fail(`tensor ${k}: data_offsets [${begin}, ${end}] span ${end - begin} bytes but dtype ${dtype} × shape ${JSON.stringify(shape)} needs ${bits / 8}`, key);
    }
    if (end > dataSize) fail(`data_offsets [${begin}, ${end}] of tensor ${k} run past the end of the data section (${dataSize} bytes)`, key);
    tensors.set(key, { dtype: dtype as Dtype, shape: (shape as number[]).slice(), dataOffsets: [begin, end] });
  }

  // Integer-valued but written as 1e2 / 4.0 / -0: JSON.parse hides it, the reference library rejects it.
  if (scan.nonIntegerNumber !== undefined) {
    fail(`header has the number ${scan.nonIntegerNumber}, which is not an integer literal (shape and data_offsets must be written as plain integers)`);
  }

  // Sorted by offsets, the tensors must tile the data section exactly (no overlap, no hole).
  const sorted = [...tensors.entries()].sort((a, b) => a[1].dataOffsets[0] - b[1].dataOffsets[0] || a[1].dataOffsets[1] - b[1].dataOffsets[1]);
  let pos = 0;
  for (const [key, e] of sorted) {
    const [begin, end] = e.dataOffsets;
    if (begin < pos) fail(`tensor ${JSON.stringify(key)} at data_offsets [${begin}, ${end}] overlaps the previous tensor (which ends at ${pos})`, key);
    if (begin > pos) fail(`hole in the data section: bytes [${pos}, ${begin}) before tensor ${JSON.stringify(key)} belong to no tensor`, key);
    pos = end;
  }
  if (pos !== dataSize) fail(`data section is ${dataSize} bytes but the tensors cover only ${pos} (trailing bytes belong to no tensor)`);
  return { tensors, metadata: Object.fromEntries(metaEntries) };
}
