/**
 * CLIP byte-level BPE tokenizer, matching transformers' slow `CLIPTokenizer` (which is what
 * `StableDiffusionPipeline.encode_prompt` calls, with ftfy installed) id for id.
 *
 * Pipeline for one prompt:
 * 1. Split the raw text on the tokenizer's special/added tokens (`<|startoftext|>`, `<|endoftext|>`, the pad
 *    token, …; longest first at each position), as `PreTrainedTokenizer.tokenize` does with its trie. Those pieces
 *    become their ids directly — so `<|endoftext|>` typed in a prompt is id 49407, and under an SD 2.x tokenizer
 *    (pad token `!`, id 0) every `!` in a prompt becomes id 0 (diffusers issue 4153; users' embeddings were made
 *    that way, so we match it).
 * 2. Every other piece: {@link cleanPromptText} (ftfy subset, whitespace collapse, lower-case), the CLIP
 *    pre-tokenizer regex, UTF-8 bytes → printable unicode (`bytes_to_unicode`), BPE with `</w>` word ends using the
 *    first 48 894 merges (the `[1 : 49152-256-2+1]` slice of merges.txt).
 * 3. Truncate to `maxLength − 2` tokens (77 → 75), add BOS/EOS, pad with the pad token to `maxLength`.
 *
 * Prompts longer than 75 BPE tokens are truncated (as the reference does); {@link CLIPTokenizer.encodeWithMask}
 * reports how many tokens were dropped so a caller can warn.
 *
 * @module
 */
import type * as NodeFs from 'fs';
import type * as NodePath from 'path';
import { nodeModule } from './node-builtins';
import * as tf from '@tensorflow/tfjs';
import { cleanPromptText, WHITESPACE_CLASS } from './text-clean';
import { InvalidArgumentError, IoError, ModelFormatError } from '@ddsjs/safetensors';
import {
  AddedTokenSpec,
  CLIP_NUM_MERGES,
  CLIP_TOKENIZER_FILES,
  CLIPTokenizerFiles,
  CLIPTokenizerOptions,
  tokenizerOptionsFromFiles,
} from './tokenizer-files';

const fs = nodeModule<typeof NodeFs>('fs');
const path = nodeModule<typeof NodePath>('path');

/** The CLIP pre-tokenizer (OpenAI `simple_tokenizer` / transformers), case-insensitive, Unicode-aware. */
const PRETOKENIZE_RE = new RegExp(
  `<\\|startoftext\\|>|<\\|endoftext\\|>|'s|'t|'re|'ve|'m|'ll|'d|[\\p{L}]+|[\\p{N}]|[^${WHITESPACE_CLASS}\\p{L}\\p{N}]+`,
  'giu',
);

/**
 * OpenAI's `bytes_to_unicode`: a reversible map from the 256 byte values to printable unicode characters
 * (printable Latin-1 bytes map to themselves, the others to U+0100 onwards). Index = byte.
 */
export function bytesToUnicode(): string[] {
  const bs: number[] = [];
  for (let b = 0x21; b <= 0x7e; b++) bs.push(b);
  for (let b = 0xa1; b <= 0xac; b++) bs.push(b);
  for (let b = 0xae; b <= 0xff; b++) bs.push(b);
  const table = new Array<string>(256);
  for (const b of bs) table[b] = String.fromCharCode(b);
  let n = 0;
  for (let b = 0; b < 256; b++) {
    if (table[b] === undefined) table[b] = String.fromCharCode(256 + n++);
  }
  return table;
}

/** The result of {@link CLIPTokenizer.encodeWithMask}. */
export interface EncodedBatch {
  /** Token ids, one row of `maxLength` per prompt. */
  ids: number[][];
  /** 1 for BOS, the prompt's tokens and EOS; 0 for padding (transformers' `attention_mask`). */
  attentionMask: number[][];
  /** How many BPE tokens of each prompt were cut off by truncation (0 when it fit). */
  truncated: number[];
}

/**
 * CLIP BPE tokenizer with transformers' special-token behaviour. Create it with {@link CLIPTokenizer.fromPretrained}.
 *
 * @example
 * const tok = await CLIPTokenizer.fromPretrained('models/sd15/tokenizer');
 * const ids = tok.encode(['a photo of a cat', '']);   // int32 [2, 77], caller disposes
 */
export class CLIPTokenizer {
  /** Sequence length including BOS and EOS (77 for Stable Diffusion). */
  readonly maxLength: number;
  /** Id of the BOS token (49406). */
  readonly bosTokenId: number;
  /** Id of the EOS token (49407). */
  readonly eosTokenId: number;
  /** Id of the padding token (49407 for SD 1.x, 0 for SD 2.x's `!`). */
  readonly padTokenId: number;
  /** Id of the unknown token (49407). */
  readonly unkTokenId: number;
  /** The padding token's text. */
  readonly padToken: string;
  /** Where this tokenizer came from (for messages). */
  readonly source: string;

  private readonly encoder: Map<string, number>;
  private readonly decoder = new Map<number, string>();
  private readonly bpeRanks = new Map<string, number>();
  private readonly byteEncoder = bytesToUnicode();
  private readonly byteDecoder = new Map<string, number>();
  private readonly cache = new Map<string, string[]>();
  /** Added/special tokens: content → id, and the contents sorted longest first for splitting. */
  private readonly added = new Map<string, AddedTokenSpec>();
  private readonly addedById = new Map<number, AddedTokenSpec>();
  private readonly addedSorted: string[];

  /** Builds a tokenizer from in-memory vocab and merges (see {@link CLIPTokenizer.fromPretrained} for folders). */
  constructor(opts: CLIPTokenizerOptions) {
    this.source = opts.source ?? 'CLIPTokenizer';
    if (opts.vocab instanceof Map) this.encoder = new Map(opts.vocab);
    else {
      this.encoder = new Map();
      for (const k in opts.vocab) this.encoder.set(k, opts.vocab[k]);
    }
    if (this.encoder.size === 0) throw new ModelFormatError(`${this.source}: the vocabulary is empty`);
    for (const [tok, id] of this.encoder) {
      if (!Number.isInteger(id) || id < 0) throw new ModelFormatError(`${this.source}: vocab entry ${JSON.stringify(tok)} has invalid id ${id}`);
      this.decoder.set(id, tok);
    }
    this.byteEncoder.forEach((ch, b) => this.byteDecoder.set(ch, b));
    const merges = opts.merges.slice(0, CLIP_NUM_MERGES);
    merges.forEach((line, rank) => {
      let key = line;
      const sp = line.indexOf(' ');
      // fast path: "a b" with exactly one inner space; anything else is normalised like Python's str.split()
      if (sp <= 0 || sp === line.length - 1 || line.indexOf(' ', sp + 1) !== -1 || /[\t\r\n]/.test(line)) {
        const parts = line.trim().split(/\s+/);
        if (parts.length !== 2) throw new ModelFormatError(`${this.source}: merges.txt line ${rank + 2} is not a pair: ${JSON.stringify(line)}`);
        key = `${parts[0]} ${parts[1]}`;
      }
      if (!this.bpeRanks.has(key)) this.bpeRanks.set(key, rank);
    });
    // OpenAI / transformers seed the BPE cache with the two markers, so the regex path also maps them to themselves.
    this.cache.set('<|startoftext|>', ['<|startoftext|>']);
    this.cache.set('<|endoftext|>', ['<|endoftext|>']);

    const lookup = (content: string, role: string): number => {
      const extra = opts.addedTokens?.find((t) => t.content === content);
      const id = extra?.id ?? this.encoder.get(content);
      if (id === undefined) throw new InvalidArgumentError(`${this.source}: ${role} token ${JSON.stringify(content)} is not in the vocabulary`);
      return id;
    };
    const bos = opts.bosToken ?? '<|startoftext|>';
    const eos = opts.eosToken ?? '<|endoftext|>';
    const pad = opts.padToken ?? '<|endoftext|>';
    const unk = opts.unkToken ?? '<|endoftext|>';
    this.bosTokenId = lookup(bos, 'bos');
    this.eosTokenId = lookup(eos, 'eos');
    this.padTokenId = lookup(pad, 'pad');
    this.unkTokenId = lookup(unk, 'unk');
    this.padToken = pad;
    for (const t of opts.addedTokens ?? []) {
      if (!Number.isInteger(t.id) || t.id < 0) throw new ModelFormatError(`${this.source}: added token ${JSON.stringify(t.content)} has invalid id ${t.id}`);
      this.addAdded(t);
    }
    for (const [content, id] of [
      [bos, this.bosTokenId],
      [eos, this.eosTokenId],
      [unk, this.unkTokenId],
      [pad, this.padTokenId],
    ] as [string, number][]) {
      this.addAdded({ content, id, special: true });
    }
    this.addedSorted = [...this.added.keys()].filter((c) => c.length > 0).sort((a, b) => b.length - a.length);

    const maxLength = opts.maxLength ?? 77;
    if (!Number.isInteger(maxLength) || maxLength < 2) throw new ModelFormatError(`${this.source}: maxLength must be an integer ≥ 2, got ${maxLength}`);
    this.maxLength = maxLength;
  }

  private addAdded(t: AddedTokenSpec): void {
    const prev = this.added.get(t.content);
    const spec = { content: t.content, id: t.id, special: t.special || (prev?.special ?? false) };
    this.added.set(t.content, spec);
    this.addedById.set(t.id, spec);
  }

  /**
   * Loads a tokenizer folder in the Hugging Face layout: `vocab.json`, `merges.txt`, and optionally
   * `tokenizer_config.json`, `special_tokens_map.json` (special_tokens_map wins, as in transformers),
   * `added_tokens.json`. `dir` is the tokenizer folder itself, or a diffusers model folder that has `tokenizer/`.
   * Reads `model_max_length` (default 77; absurdly large "unset" sentinels also mean 77) and the bos/eos/pad/unk
   * tokens, `additional_special_tokens` and `added_tokens_decoder`.
   */
  static async fromPretrained(dir: string): Promise<CLIPTokenizer> {
    let folder = dir;
    if (!fs.existsSync(path.join(folder, 'vocab.json')) && fs.existsSync(path.join(folder, 'tokenizer', 'vocab.json'))) {
      folder = path.join(folder, 'tokenizer');
    }
    for (const f of [path.join(folder, 'vocab.json'), path.join(folder, 'merges.txt')]) {
      if (!fs.existsSync(f)) throw new IoError(`CLIPTokenizer: missing ${f} (expected a CLIP tokenizer folder with vocab.json and merges.txt)`);
    }
    const files: Partial<Record<keyof CLIPTokenizerFiles, string>> = {};
    for (const name of CLIP_TOKENIZER_FILES) {
      const file = path.join(folder, name);
      if (!fs.existsSync(file)) continue;
      try {
        files[name] = await fs.promises.readFile(file, 'utf8');
      } catch (e) {
        throw new IoError(`CLIPTokenizer: cannot read ${file}: ${(e as Error).message}`);
      }
    }
    return CLIPTokenizer.fromFileContents(files as CLIPTokenizerFiles, folder, (name) => path.join(folder, name));
  }

  /**
   * Builds a tokenizer from the text of a tokenizer folder's files ({@link CLIPTokenizerFiles}), with the same rules
   * as {@link fromPretrained} — which reads them from disk; a browser fetches them (see `loadStableDiffusionFromUrl`).
   * `folder` names the tokenizer in errors; `fileName` names each file (default `folder/name`).
   * @throws Error naming the file at fault when a required file is missing or a file is invalid
   */
  static fromFileContents(
    files: CLIPTokenizerFiles,
    folder: string,
    fileName: (name: keyof CLIPTokenizerFiles) => string = (name) => `${folder.replace(/\/+$/, '')}/${name}`,
  ): CLIPTokenizer {
    return new CLIPTokenizer(tokenizerOptionsFromFiles(files, folder, fileName));
  }

  /** Vocabulary size including added tokens with ids beyond vocab.json. */
  get vocabSize(): number {
    let max = -1;
    for (const id of this.decoder.keys()) max = Math.max(max, id);
    for (const id of this.addedById.keys()) max = Math.max(max, id);
    return max + 1;
  }

  /** The added/special token strings the text is split on before BPE (longest first). */
  get specialTokens(): string[] {
    return [...this.addedSorted];
  }

  /** BPE of one pre-token (already mapped through `bytes_to_unicode`), as a list of vocab strings. */
  private bpe(token: string): string[] {
    const cached = this.cache.get(token);
    if (cached) return cached;
    const chars = Array.from(token);
    let word = chars.slice(0, -1);
    word.push(chars[chars.length - 1] + '</w>');
    if (word.length === 1) {
      const r = [word[0]];
      this.cache.set(token, r);
      return r;
    }
    for (;;) {
      let best = Infinity;
      let first = '';
      let second = '';
      for (let i = 0; i < word.length - 1; i++) {
        const rank = this.bpeRanks.get(`${word[i]} ${word[i + 1]}`);
        if (rank !== undefined && rank < best) {
          best = rank;
          first = word[i];
          second = word[i + 1];
        }
      }
      if (best === Infinity) break;
      const next: string[] = [];
      let i = 0;
      while (i < word.length) {
        const j = word.indexOf(first, i);
        if (j === -1) {
          for (let k = i; k < word.length; k++) next.push(word[k]);
          break;
        }
        for (let k = i; k < j; k++) next.push(word[k]);
        i = j;
        if (i < word.length - 1 && word[i + 1] === second) {
          next.push(first + second);
          i += 2;
        } else {
          next.push(word[i]);
          i += 1;
        }
      }
      word = next;
      if (word.length === 1) break;
    }
    this.cache.set(token, word);
    return word;
  }

  /** transformers' `_tokenize`: clean, pre-tokenize, byte-map and BPE one piece of text (no special tokens in it). */
  private tokenizePiece(text: string): number[] {
    const ids: number[] = [];
    const clean = cleanPromptText(text);
    if (clean.length === 0) return ids;
    const utf8 = new TextEncoder();
    for (const m of clean.matchAll(PRETOKENIZE_RE)) {
      let mapped = '';
      for (const b of utf8.encode(m[0])) mapped += this.byteEncoder[b];
      for (const piece of this.bpe(mapped)) ids.push(this.encoder.get(piece) ?? this.unkTokenId);
    }
    return ids;
  }

  /** Splits raw text on the added/special tokens (leftmost, longest first), like transformers' trie split. */
  private splitOnAdded(text: string): (string | AddedTokenSpec)[] {
    const out: (string | AddedTokenSpec)[] = [];
    if (this.addedSorted.length === 0) return [text];
    let start = 0;
    let i = 0;
    outer: while (i < text.length) {
      for (const tok of this.addedSorted) {
        if (text.startsWith(tok, i)) {
          if (i > start) out.push(text.slice(start, i));
          out.push(this.added.get(tok)!);
          i += tok.length;
          start = i;
          continue outer;
        }
      }
      i++;
    }
    if (start < text.length) out.push(text.slice(start));
    return out;
  }

  /**
   * Token ids of one prompt WITHOUT BOS/EOS, padding or truncation (transformers' `tokenize` + `convert_tokens_to_ids`).
   * Throws a TypeError for a non-string.
   */
  tokenize(prompt: string): number[] {
    if (typeof prompt !== 'string') {
      throw new InvalidArgumentError(`CLIPTokenizer: a prompt must be a string, got ${prompt === null ? 'null' : typeof prompt}`);
    }
    const ids: number[] = [];
    for (const piece of this.splitOnAdded(prompt)) {
      if (typeof piece === 'string') ids.push(...this.tokenizePiece(piece));
      else ids.push(piece.id);
    }
    return ids;
  }

  /**
   * One prompt's model input ids: BOS, at most `maxLength − 2` tokens, EOS, then padding to `maxLength`.
   * Returns a plain array (no tensor).
   */
  encodeIds(prompt: string): number[] {
    return this.encodeWithMask([prompt]).ids[0];
  }

  /**
   * Ids, attention masks and truncation counts of a batch, exactly as transformers'
   * `tokenizer(prompts, padding="max_length", max_length=77, truncation=True)`. Prompts over `maxLength − 2` BPE
   * tokens are cut (the end is dropped, EOS stays last); `truncated[i]` says how many tokens were dropped.
   */
  encodeWithMask(prompts: string | string[]): EncodedBatch {
    const list = typeof prompts === 'string' ? [prompts] : prompts;
    if (!Array.isArray(list)) throw new InvalidArgumentError(`CLIPTokenizer: prompts must be a string or an array of strings, got ${typeof prompts}`);
    const ids: number[][] = [];
    const attentionMask: number[][] = [];
    const truncated: number[] = [];
    list.forEach((p, i) => {
      if (typeof p !== 'string') {
        throw new InvalidArgumentError(`CLIPTokenizer: prompts[${i}] must be a string, got ${p === null ? 'null' : typeof p}`);
      }
      const toks = this.tokenize(p);
      const room = this.maxLength - 2;
      const kept = toks.length > room ? toks.slice(0, room) : toks;
      truncated.push(toks.length - kept.length);
      const row = [this.bosTokenId, ...kept, this.eosTokenId];
      const mask = row.map(() => 1);
      while (row.length < this.maxLength) {
        row.push(this.padTokenId);
        mask.push(0);
      }
      ids.push(row);
      attentionMask.push(mask);
    });
    return { ids, attentionMask, truncated };
  }

  /** Token ids of a batch of prompts as an int32 tensor `[B, maxLength]` (BOS, tokens, EOS, padding). The caller owns (disposes) it. */
  encode(prompts: string | string[]): tf.Tensor2D {
    const { ids } = this.encodeWithMask(prompts);
    const flat = new Int32Array(ids.length * this.maxLength);
    ids.forEach((row, i) => flat.set(row, i * this.maxLength));
    return tf.tensor2d(flat, [ids.length, this.maxLength], 'int32');
  }

  /**
   * Text of a list of ids (transformers' `decode` without tokenization-space cleanup): BPE pieces are joined,
   * mapped back to bytes and decoded as UTF-8, `</w>` becomes a space; added tokens appear as their text.
   * With `skipSpecialTokens`, special tokens (BOS/EOS/pad/…) are left out.
   */
  decode(ids: ArrayLike<number>, opts: { skipSpecialTokens?: boolean } = {}): string {
    const parts: string[] = [];
    let current: string[] = [];
    const flush = () => {
      if (current.length === 0) return;
      const text = current.join('');
      const bytes: number[] = [];
      for (const ch of text) {
        const b = this.byteDecoder.get(ch);
        if (b !== undefined) bytes.push(b);
        else for (const x of new TextEncoder().encode(ch)) bytes.push(x);
      }
      parts.push(new TextDecoder('utf-8').decode(new Uint8Array(bytes)).replace(/<\/w>/g, ' ').trim());
      current = [];
    };
    for (let k = 0; k < ids.length; k++) {
      const id = ids[k];
      const added = this.addedById.get(id);
      if (added) {
        if (opts.skipSpecialTokens && added.special) continue;
        flush();
        parts.push(added.content);
        continue;
      }
      const tok = this.decoder.get(id);
      if (tok === undefined) throw new InvalidArgumentError(`CLIPTokenizer.decode: id ${id} (position ${k}) is not in the vocabulary`);
      current.push(tok);
    }
    flush();
    return parts.join(' ');
  }
}
