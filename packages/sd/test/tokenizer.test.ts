import * as fs from 'fs';
import * as os from 'os';
import * as path from 'path';
import * as tf from '@tensorflow/tfjs';
import { initBackend } from '@ddsjs/nn';
import { readGoldens, TINY_SD15 } from '../../../test-utils';
import { CLIPTokenizer, bytesToUnicode } from '../src/tokenizer';
import { cleanPromptText, fixText, unescapeHtml } from '../src/text-clean';

const TOK_DIR = path.join(TINY_SD15, 'tokenizer');
const vocab: Record<string, number> = JSON.parse(fs.readFileSync(path.join(TOK_DIR, 'vocab.json'), 'utf8'));
const prompts: string[] = JSON.parse(fs.readFileSync(path.join(TINY_SD15, 'golden', 'prompts.json'), 'utf8'));

let tok: CLIPTokenizer;
let tmpDirs: string[] = [];

/** A copy of the fixture tokenizer folder with its configs rewritten by `edit`. */
function tokenizerCopy(edit: (config: Record<string, unknown>, map: Record<string, unknown>) => void): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ddsjs-tok-'));
  tmpDirs.push(dir);
  for (const f of ['vocab.json', 'merges.txt']) fs.copyFileSync(path.join(TOK_DIR, f), path.join(dir, f));
  const config = JSON.parse(fs.readFileSync(path.join(TOK_DIR, 'tokenizer_config.json'), 'utf8'));
  const map = JSON.parse(fs.readFileSync(path.join(TOK_DIR, 'special_tokens_map.json'), 'utf8'));
  edit(config, map);
  fs.writeFileSync(path.join(dir, 'tokenizer_config.json'), JSON.stringify(config));
  fs.writeFileSync(path.join(dir, 'special_tokens_map.json'), JSON.stringify(map));
  return dir;
}

/** Inner ids (no BOS/EOS/padding) of a prompt. */
const inner = (t: CLIPTokenizer, p: string) => t.tokenize(p);

beforeAll(async () => {
  await initBackend('cpu');
  tok = await CLIPTokenizer.fromPretrained(TOK_DIR);
});

afterAll(() => {
  for (const d of tmpDirs) fs.rmSync(d, { recursive: true, force: true });
  tmpDirs = [];
});

describe('CLIPTokenizer vs transformers goldens', () => {
  test('exact input_ids and attention_mask for all 14 prompts', async () => {
    const g = await readGoldens('tokenizer');
    const [n, len] = g['input_ids'].shape;
    expect(n).toBe(prompts.length);
    expect(len).toBe(77);
    const { ids, attentionMask, truncated } = tok.encodeWithMask(prompts);
    let mismatches = 0;
    for (let i = 0; i < n; i++) {
      const refIds = Array.from(g['input_ids'].data.subarray(i * len, (i + 1) * len), Math.round);
      const refMask = Array.from(g['attention_mask'].data.subarray(i * len, (i + 1) * len), Math.round);
      if (JSON.stringify(ids[i]) !== JSON.stringify(refIds)) mismatches++;
      expect({ i, prompt: prompts[i], ids: ids[i] }).toEqual({ i, prompt: prompts[i], ids: refIds });
      expect({ i, mask: attentionMask[i] }).toEqual({ i, mask: refMask });
    }
    expect(mismatches).toBe(0);
    // prompt 10 is the long one: the golden is cut to 75 tokens
    expect(truncated[10]).toBeGreaterThan(0);
    expect(truncated.filter((t, i) => i !== 10 && t !== 0)).toEqual([]);
  });

  test('encode returns int32 [B,77] equal to the goldens, without leaking tensors', async () => {
    const g = await readGoldens('tokenizer');
    const before = tf.memory().numTensors;
    for (let r = 0; r < 3; r++) {
      const t = tok.encode(prompts);
      expect(t.dtype).toBe('int32');
      expect(t.shape).toEqual([14, 77]);
      const data = await t.data();
      expect(Array.from(data)).toEqual(Array.from(g['input_ids'].data, Math.round));
      t.dispose();
    }
    expect(tf.memory().numTensors).toBe(before);
  });
});

describe('CLIPTokenizer behaviour derived from vocab.json / merges.txt', () => {
  test('config values: ids of special tokens, max length', () => {
    expect(tok.bosTokenId).toBe(49406);
    expect(tok.eosTokenId).toBe(49407);
    expect(tok.padTokenId).toBe(49407);
    expect(tok.maxLength).toBe(77);
    expect(tok.specialTokens).toEqual(['<|startoftext|>', '<|endoftext|>']);
  });

  test('empty prompt is BOS EOS then padding', () => {
    const { ids, attentionMask, truncated } = tok.encodeWithMask(['']);
    expect(ids[0].slice(0, 3)).toEqual([49406, 49407, 49407]);
    expect(ids[0]).toHaveLength(77);
    expect(attentionMask[0].slice(0, 3)).toEqual([1, 1, 0]);
    expect(attentionMask[0].reduce((a, b) => a + b)).toBe(2);
    expect(truncated).toEqual([0]);
    expect(tok.tokenize('   \n\t ')).toEqual([]);
  });

  test('whole words map to their `word</w>` vocab entries', () => {
    expect(inner(tok, 'a photo of a cat')).toEqual(['a', 'photo', 'of', 'a', 'cat'].map((w) => vocab[`${w}</w>`]));
    expect(inner(tok, 'Cat!')).toEqual([vocab['cat</w>'], vocab['!</w>']]);
    expect(inner(tok, 'cat.')).toEqual([vocab['cat</w>'], vocab['.</w>']]);
    // contractions are split by the pre-tokenizer: "it's" → "it" + "'s"
    expect(inner(tok, "it's")).toEqual([vocab['it</w>'], vocab["'s</w>"]]);
    // digits are single pre-tokens
    expect(inner(tok, '42')).toEqual([vocab['4</w>'], vocab['2</w>']]);
  });

  test('BPE of a word without a whole-word entry follows the merge ranks', () => {
    // Independent reference: a naive BPE written from the merges file (repeatedly merge the lowest-ranked pair).
    const merges = fs.readFileSync(path.join(TOK_DIR, 'merges.txt'), 'utf8').trim().split('\n').slice(1, 48895);
    const rank = new Map(merges.map((m, i) => [m, i]));
    const naive = (w: string): number[] => {
      let parts = [...w.slice(0, -1)].concat(w.slice(-1) + '</w>');
      for (;;) {
        let best = -1;
        let bestRank = Infinity;
        for (let i = 0; i + 1 < parts.length; i++) {
          const r = rank.get(`${parts[i]} ${parts[i + 1]}`);
          if (r !== undefined && r < bestRank) [best, bestRank] = [i, r];
        }
        if (best < 0) break;
        const [a, b] = [parts[best], parts[best + 1]];
        const next: string[] = [];
        for (let i = 0; i < parts.length; i++) {
          if (i + 1 < parts.length && parts[i] === a && parts[i + 1] === b) {
            next.push(a + b);
            i++;
          } else next.push(parts[i]);
        }
        parts = next;
      }
      return parts.map((p) => vocab[p]);
    };
    for (const w of ['rollerskating', 'ghibli', 'kinkade', 'zzyzxquux', 'volumetric', 'a']) {
      expect({ w, ids: inner(tok, w) }).toEqual({ w, ids: naive(w) });
    }
  });

  test('non-ASCII text goes through bytes_to_unicode', () => {
    const table = bytesToUnicode();
    expect(new Set(table).size).toBe(256);
    expect(table[0x21]).toBe('!');
    expect(table[0x20]).toBe('Ġ');
    // "é" is UTF-8 C3 A9 → "Ã©"; as a whole word that is the vocab entry "Ã©</w>"
    expect(inner(tok, 'é')).toEqual([vocab['Ã©</w>']]);
  });

  test('curly quotes and full-width punctuation equal their ASCII forms (ftfy)', () => {
    expect(tok.encodeIds('it\u2019s \u201cquoted\u201d text')).toEqual(tok.encodeIds('it\'s "quoted" text'));
    expect(tok.encodeIds('\u2018single\u2019 \u02bcx')).toEqual(tok.encodeIds("'single' 'x"));
    expect(tok.encodeIds('ＣＡＴ！　ｄｏｇ：')).toEqual(tok.encodeIds('cat! dog:'));
    expect(tok.encodeIds('ﬁsh ﬂower')).toEqual(tok.encodeIds('fish flower'));
    expect(tok.encodeIds('cafe\u0301')).toEqual(tok.encodeIds('caf\u00e9'));
    expect(tok.encodeIds('a\u0000b\u007fc\ufeff')).toEqual(tok.encodeIds('abc'));
    expect(tok.encodeIds('wait\u0085')).toEqual(tok.encodeIds('wait\u2026'));
    expect(tok.encodeIds('\x1b[31mred\x1b[0m cat')).toEqual(tok.encodeIds('red cat'));
  });

  test('HTML entities are unescaped unless the line looks like HTML (ftfy "auto")', () => {
    expect(tok.encodeIds('fish &amp; chips')).toEqual(tok.encodeIds('fish & chips'));
    expect(tok.encodeIds('&amp;lt;3 &eacute;t&Eacute; &EACUTE; &#233; &#xE9;')).toEqual(tok.encodeIds('<3 été é é é'));
    expect(tok.encodeIds('&hellip; &mdash; &nbsp;x')).toEqual(tok.encodeIds('\u2026 \u2014 x'));
    // unknown entity, or a line with '<': left as typed
    expect(tok.encodeIds('&notanentity;')).not.toEqual(tok.encodeIds(''));
    expect(tok.encodeIds('<b> &amp;')).not.toEqual(tok.encodeIds('<b> &'));
    expect(tok.tokenize('<b> &amp;')).toContain(vocab['amp</w>'] ?? vocab['amp']);
    expect(unescapeHtml('&#59; &#12ab; &#x110000; &#128;')).toBe('&#59; &#12ab; \ufffd \u20ac');
    // examples from ftfy's unescape_html docstring
    expect(unescapeHtml('&Jscr;ohn &HilbertSpace;ancock')).toBe('\u{1d4a5}ohn \u210bancock');
    expect(unescapeHtml('&checkmark; P&EACUTE;REZ BUNDESSTRA&SZLIG;E')).toBe('\u2713 P\u00c9REZ BUNDESSTRASSE');
    expect(unescapeHtml('&ntilde; &Ntilde; &NTILDE; &nTILDE;')).toBe('\u00f1 \u00d1 \u00d1 &nTILDE;');
    // html.unescape('&LTDOT;') is '<DOT;' (legacy prefix), so ftfy has no all-caps variant for it
    expect(unescapeHtml('&ltdot; &LTDOT;')).toBe('\u22d6 &LTDOT;');
    // ftfy works line by line and switches HTML unescaping off for the rest of the text after a line with '<'
    expect(fixText('&amp;\n<&amp;\n&amp;')).toBe('&\n<&amp;\n&amp;');
  });

  test('whitespace is collapsed and the text lower-cased', () => {
    expect(cleanPromptText('  Multiple \u00a0 spaces\r\n\tAND\u2003TABS  ')).toBe('multiple spaces and tabs');
    expect(tok.encodeIds('UPPER lower')).toEqual(tok.encodeIds('upper LOWER'));
  });

  test('special tokens typed in a prompt become their ids (split before BPE)', () => {
    const cat = vocab['cat</w>'];
    const dog = vocab['dog</w>'];
    expect(inner(tok, 'cat<|endoftext|>dog')).toEqual([cat, 49407, dog]);
    expect(inner(tok, 'cat <|startoftext|> dog')).toEqual([cat, 49406, dog]);
    // upper-case is not an added token, but is lower-cased and caught by the pre-tokenizer's own alternative
    expect(inner(tok, 'cat<|ENDOFTEXT|>')).toEqual([cat, 49407]);
    const { attentionMask } = tok.encodeWithMask(['cat<|endoftext|>dog']);
    expect(attentionMask[0].reduce((a, b) => a + b)).toBe(5);
  });

  test('a 300-word prompt is truncated to 75 tokens with EOS at position 76', () => {
    const words = Array.from({ length: 300 }, (_, i) => ['red', 'cat', 'on', 'a', 'mat'][i % 5]).join(' ');
    const { ids, attentionMask, truncated } = tok.encodeWithMask([words]);
    expect(ids[0]).toHaveLength(77);
    expect(ids[0][0]).toBe(49406);
    expect(ids[0][76]).toBe(49407);
    expect(ids[0].slice(1, 76)).toEqual(tok.tokenize(words).slice(0, 75));
    expect(attentionMask[0].every((m) => m === 1)).toBe(true);
    expect(truncated[0]).toBe(300 - 75);
  });

  test('decode inverts encode on plain text', () => {
    const ids = tok.encodeIds('a photo of a café, 42!');
    expect(tok.decode(ids, { skipSpecialTokens: true })).toBe('a photo of a café , 4 2 !');
    expect(tok.decode(tok.encodeIds('hi')).startsWith('<|startoftext|> hi <|endoftext|>')).toBe(true);
  });

  test('bad input gives clear errors', async () => {
    expect(() => tok.encode([42 as unknown as string])).toThrow(/prompts\[0\] must be a string, got number/);
    expect(() => tok.encode(['ok', null as unknown as string])).toThrow(/prompts\[1\] must be a string, got null/);
    expect(() => tok.encode(7 as unknown as string[])).toThrow(/prompts must be a string or an array/);
    await expect(CLIPTokenizer.fromPretrained(path.join(TINY_SD15, 'unet'))).rejects.toThrow(/missing .*vocab\.json/);
    const badPad = tokenizerCopy((c, m) => {
      c['pad_token'] = '<|nope|>';
      m['pad_token'] = '<|nope|>';
    });
    await expect(CLIPTokenizer.fromPretrained(badPad)).rejects.toThrow(/pad token "<\|nope\|>" is not in the vocabulary/);
  });

  test('loading from the model root finds tokenizer/', async () => {
    const t = await CLIPTokenizer.fromPretrained(TINY_SD15);
    expect(t.encodeIds('a photo of a cat')).toEqual(tok.encodeIds('a photo of a cat'));
  });
});

describe('SD 2.x-style tokenizer (pad token "!")', () => {
  let sd2: CLIPTokenizer;
  beforeAll(async () => {
    const dir = tokenizerCopy((c, m) => {
      c['pad_token'] = '!';
      m['pad_token'] = '!';
    });
    sd2 = await CLIPTokenizer.fromPretrained(dir);
  });

  test('pads with id 0', () => {
    expect(sd2.padTokenId).toBe(0);
    expect(vocab['!']).toBe(0);
    const { ids, attentionMask } = sd2.encodeWithMask(['a photo of a cat']);
    const body = tok.tokenize('a photo of a cat');
    expect(ids[0]).toEqual([49406, ...body, 49407, ...new Array(77 - body.length - 2).fill(0)]);
    expect(attentionMask[0].reduce((a, b) => a + b)).toBe(body.length + 2);
  });

  test('every literal "!" becomes id 0, as transformers does (diffusers #4153)', () => {
    const head = tok.tokenize('A Flamingo  rollerskating');
    expect(sd2.tokenize('A Flamingo  rollerskating!!')).toEqual([...head, 0, 0]);
    // SD1 tokenizer: "!!" is one BPE token, not 0
    expect(tok.tokenize('A Flamingo  rollerskating!!').slice(head.length)).toEqual([vocab['!!</w>']]);
    expect(sd2.tokenize('wow!cat')).toEqual([vocab['wow</w>'], 0, vocab['cat</w>']]);
    // a full-width "！" is not the pad token: ftfy turns it into "!" inside the piece, and BPE gives "!</w>"
    expect(sd2.tokenize('cat！')).toEqual([vocab['cat</w>'], vocab['!</w>']]);
    expect(sd2.specialTokens).toContain('!');
  });
});
