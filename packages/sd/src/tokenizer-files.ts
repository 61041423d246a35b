// The files of a Hugging Face CLIP tokenizer folder (vocab.json, merges.txt, the token configs): their names,
// validation and the tokenizer options they give. The tokenizer itself: tokenizer.ts.
import { ModelFormatError, IoError } from '@ddsjs/safetensors';

/** The number of BPE merges CLIP uses: `merges.txt` lines `[1 : 49152 − 256 − 2 + 1]`. */
export const CLIP_NUM_MERGES = 49152 - 256 - 2;

/** A special or added token as the tokenizer configs describe it. */
export interface AddedTokenSpec {
  /** The token text. */
  content: string;
  /** Its id. */
  id: number;
  /** Whether it is one of bos/eos/pad/unk/additional_special_tokens (skipped by `decode(…, { skipSpecialTokens })`). */
  special: boolean;
}

/** Options of the {@link CLIPTokenizer} constructor (what `fromPretrained` reads from the tokenizer folder). */
export interface CLIPTokenizerOptions {
  /** token → id (vocab.json). */
  vocab: Record<string, number> | Map<string, number>;
  /** The merge lines in rank order, each "a b" (merges.txt without its `#version` header). Only the first 48 894 are used. */
  merges: string[];
  /** Begin-of-text token (default `<|startoftext|>`). */
  bosToken?: string;
  /** End-of-text token (default `<|endoftext|>`). */
  eosToken?: string;
  /** Padding token (default `<|endoftext|>`; SD 2.x uses `!`). */
  padToken?: string;
  /** Unknown token (default `<|endoftext|>`). */
  unkToken?: string;
  /** Extra added tokens (e.g. `added_tokens_decoder` entries, textual-inversion tokens): content → id. */
  addedTokens?: AddedTokenSpec[];
  /** Sequence length including BOS/EOS (default 77). */
  maxLength?: number;
  /** Name used in error messages (e.g. the tokenizer folder). */
  source?: string;
}

interface TokenizerConfigToken {
  content?: unknown;
}

/**
 * The text of a Hugging Face tokenizer folder's files, for {@link CLIPTokenizer.fromFileContents} (browser-safe: the
 * caller fetched or read them). `vocab.json` and `merges.txt` are required; the others are optional.
 */
export interface CLIPTokenizerFiles {
  'vocab.json': string;
  'merges.txt': string;
  'tokenizer_config.json'?: string;
  'special_tokens_map.json'?: string;
  'added_tokens.json'?: string;
}

/** The files {@link CLIPTokenizer.fromPretrained} reads, required ones first. */
export const CLIP_TOKENIZER_FILES = ['vocab.json', 'merges.txt', 'tokenizer_config.json', 'special_tokens_map.json', 'added_tokens.json'] as const;

function parseJson(text: string, file: string): unknown {
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new ModelFormatError(`CLIPTokenizer: ${file} is not valid JSON: ${(e as Error).message}`);
  }
}

/** A token entry of special_tokens_map.json / tokenizer_config.json: a string or an AddedToken object. */
function tokenContent(value: unknown, file: string, key: string): string | undefined {
  if (value === undefined || value === null) return undefined;
  if (typeof value === 'string') return value;
  if (typeof value === 'object' && typeof (value as TokenizerConfigToken).content === 'string') {
    return (value as TokenizerConfigToken).content as string;
  }
  throw new ModelFormatError(`CLIPTokenizer: ${file}: "${key}" must be a string or an object with a "content" string`);
}

/**
 * The {@link CLIPTokenizerOptions} of a tokenizer folder's files ({@link CLIPTokenizerFiles}), by the rules of
 * `CLIPTokenizer.fromFileContents` (which builds the tokenizer from them).
 * @throws Error naming the file at fault when a required file is missing or a file is invalid
 */
export function tokenizerOptionsFromFiles(
  files: CLIPTokenizerFiles,
  folder: string,
  fileName: (name: keyof CLIPTokenizerFiles) => string,
): CLIPTokenizerOptions {
  const vocabFile = fileName('vocab.json');
  const mergesFile = fileName('merges.txt');
  for (const [f, text] of [[vocabFile, files['vocab.json']], [mergesFile, files['merges.txt']]] as const) {
    if (typeof text !== 'string') throw new IoError(`CLIPTokenizer: missing ${f} (expected a CLIP tokenizer folder with vocab.json and merges.txt)`);
  }
  const readJson = (name: keyof CLIPTokenizerFiles): unknown => parseJson(files[name]!, fileName(name));
  const vocab = readJson('vocab.json');
  if (typeof vocab !== 'object' || vocab === null || Array.isArray(vocab)) {
    throw new ModelFormatError(`CLIPTokenizer: ${vocabFile} must be a JSON object mapping tokens to ids`);
  }
  for (const [k, v] of Object.entries(vocab as Record<string, unknown>)) {
    if (typeof v !== 'number') throw new ModelFormatError(`CLIPTokenizer: ${vocabFile}: id of ${JSON.stringify(k)} is not a number`);
  }
  const mergesText = files['merges.txt'];
  // transformers: read().strip().split("\n")[1 : 49152-256-2+1] — the first line is the "#version" header.
  const mergeLines = mergesText.trim().split('\n').slice(1, CLIP_NUM_MERGES + 1).map((l) => l.replace(/\r$/, ''));

  const configFile = fileName('tokenizer_config.json');
  const mapFile = fileName('special_tokens_map.json');
  const addedFile = fileName('added_tokens.json');
  const config = (files['tokenizer_config.json'] !== undefined ? readJson('tokenizer_config.json') : {}) as Record<string, unknown>;
  const specialMap = (files['special_tokens_map.json'] !== undefined ? readJson('special_tokens_map.json') : {}) as Record<string, unknown>;
  for (const [f, obj] of [
    [configFile, config],
    [mapFile, specialMap],
  ] as [string, unknown][]) {
    if (typeof obj !== 'object' || obj === null || Array.isArray(obj)) throw new ModelFormatError(`CLIPTokenizer: ${f} must be a JSON object`);
  }
  const tokenOf = (key: string): string | undefined =>
    tokenContent(specialMap[key], mapFile, key) ?? tokenContent(config[key], configFile, key);

  const addedTokens: AddedTokenSpec[] = [];
  const decoderEntries = config['added_tokens_decoder'];
  if (decoderEntries !== undefined) {
    if (typeof decoderEntries !== 'object' || decoderEntries === null) {
      throw new ModelFormatError(`CLIPTokenizer: ${configFile}: "added_tokens_decoder" must be an object`);
    }
    for (const [idText, spec] of Object.entries(decoderEntries as Record<string, unknown>)) {
      const id = Number(idText);
      const content = tokenContent(spec, configFile, `added_tokens_decoder.${idText}`);
      if (!Number.isInteger(id) || id < 0 || content === undefined) {
        throw new ModelFormatError(`CLIPTokenizer: ${configFile}: bad added_tokens_decoder entry ${JSON.stringify(idText)}`);
      }
      const special = typeof spec === 'object' && spec !== null && (spec as { special?: unknown }).special === true;
      addedTokens.push({ content, id, special });
    }
  }
  if (files['added_tokens.json'] !== undefined) {
    const extra = readJson('added_tokens.json');
    if (typeof extra !== 'object' || extra === null || Array.isArray(extra)) throw new ModelFormatError(`CLIPTokenizer: ${addedFile} must be a JSON object`);
    for (const [content, id] of Object.entries(extra as Record<string, unknown>)) {
      if (typeof id !== 'number') throw new ModelFormatError(`CLIPTokenizer: ${addedFile}: id of ${JSON.stringify(content)} is not a number`);
      if (!addedTokens.some((t) => t.content === content)) addedTokens.push({ content, id, special: false });
    }
  }
  const additional = specialMap['additional_special_tokens'] ?? config['additional_special_tokens'];
  if (Array.isArray(additional)) {
    additional.forEach((v, i) => {
      const content = tokenContent(v, mapFile, `additional_special_tokens[${i}]`)!;
      const known = addedTokens.find((t) => t.content === content);
      if (known) known.special = true;
      else {
        const id = (vocab as Record<string, number>)[content];
        if (id === undefined) throw new ModelFormatError(`CLIPTokenizer: additional special token ${JSON.stringify(content)} is not in ${vocabFile}`);
        addedTokens.push({ content, id, special: true });
      }
    });
  }

  let maxLength = 77;
  const mml = config['model_max_length'];
  if (mml !== undefined && mml !== null) {
    if (typeof mml !== 'number' || !(mml >= 2)) throw new ModelFormatError(`CLIPTokenizer: ${configFile}: "model_max_length" must be a number ≥ 2, got ${JSON.stringify(mml)}`);
    // transformers writes int(1e30) when the length is unset; CLIP's position table has 77 rows.
    if (mml < 1e6) maxLength = Math.floor(mml);
  }

  return {
    vocab: vocab as Record<string, number>,
    merges: mergeLines,
    bosToken: tokenOf('bos_token'),
    eosToken: tokenOf('eos_token'),
    padToken: tokenOf('pad_token'),
    unkToken: tokenOf('unk_token'),
    addedTokens,
    maxLength,
    source: folder,
  };
}
