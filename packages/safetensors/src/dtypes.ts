/**
 * Every dtype name the safetensors format defines (as of safetensors 0.5/0.6). Headers using any of
 * these are accepted; {@link SupportedDtype}s can also be read and written.
 */
export const KNOWN_DTYPES = [
  'BOOL', 'F4', 'F6_E2M3', 'F6_E3M2', 'U8', 'I8', 'F8_E5M2', 'F8_E4M3', 'F8_E8M0',
  'I16', 'U16', 'F16', 'BF16', 'I32', 'U32', 'F32', 'C64', 'F64', 'I64', 'U64',
] as const;

/** Any dtype name defined by the safetensors format (see {@link KNOWN_DTYPES}). */
export type Dtype = (typeof KNOWN_DTYPES)[number];

/** The dtypes this package can read into typed arrays and write. */
export const SUPPORTED_DTYPES = [
  'F64', 'F32', 'F16', 'BF16', 'I64', 'I32', 'I16', 'I8', 'U64', 'U32', 'U16', 'U8', 'BOOL',
] as const;

/** A dtype this package can read and write (see {@link SUPPORTED_DTYPES}). */
export type SupportedDtype = (typeof SUPPORTED_DTYPES)[number];

/**
 * The typed array used for each supported dtype: F16 and BF16 are raw bit patterns in a Uint16Array,
 * BOOL is a Uint8Array of 0/1 bytes.
 */
export interface DtypeArrayMap {
  F64: Float64Array;
  F32: Float32Array;
  F16: Uint16Array;
  BF16: Uint16Array;
  I64: BigInt64Array;
  I32: Int32Array;
  I16: Int16Array;
  I8: Int8Array;
  U64: BigUint64Array;
  U32: Uint32Array;
  U16: Uint16Array;
  U8: Uint8Array;
  BOOL: Uint8Array;
}

/** Union of every typed array {@link SafetensorsFile.read} can return. */
export type TensorArray = DtypeArrayMap[SupportedDtype];

/** Size of one element in bits (sub-byte dtypes F4/F6 are 4/6 bits), in the order of {@link KNOWN_DTYPES}. */
const BITS: Record<Dtype, number> = {
  BOOL: 8, F4: 4, F6_E2M3: 6, F6_E3M2: 6, U8: 8, I8: 8, F8_E5M2: 8, F8_E4M3: 8, F8_E8M0: 8,
  I16: 16, U16: 16, F16: 16, BF16: 16, I32: 32, U32: 32, F32: 32, C64: 64, F64: 64, I64: 64, U64: 64,
};

/** Number of bits of one element of `dtype`. */
export function dtypeBits(dtype: Dtype): number {
  return BITS[dtype];
}

/** Rank of `dtype` in the Rust library's `Dtype` enum (used to order tensors when writing). */
export function dtypeRank(dtype: Dtype): number {
  return (KNOWN_DTYPES as readonly string[]).indexOf(dtype);
}

/** True when `s` is a dtype name defined by the format. */
export function isKnownDtype(s: unknown): s is Dtype {
  return typeof s === 'string' && (KNOWN_DTYPES as readonly string[]).includes(s);
}

/** True when `s` is a dtype this package can read and write. */
export function isSupportedDtype(s: unknown): s is SupportedDtype {
  return typeof s === 'string' && (SUPPORTED_DTYPES as readonly string[]).includes(s);
}

type TypedArrayCtor = {
  new (buffer: ArrayBuffer, byteOffset?: number, length?: number): TensorArray;
  readonly BYTES_PER_ELEMENT: number;
  readonly name: string;
};

/** Constructor of the typed array used for a supported dtype. */
export const ARRAY_CTOR: Record<SupportedDtype, TypedArrayCtor> = {
  F64: Float64Array, F32: Float32Array, F16: Uint16Array, BF16: Uint16Array,
  I64: BigInt64Array, I32: Int32Array, I16: Int16Array, I8: Int8Array,
  U64: BigUint64Array, U32: Uint32Array, U16: Uint16Array, U8: Uint8Array, BOOL: Uint8Array,
} as unknown as Record<SupportedDtype, TypedArrayCtor>;
