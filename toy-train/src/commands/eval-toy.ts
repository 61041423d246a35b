// `dds-toy eval`: the command's flags, help text and printing around the toy-quality library calls.
import { type CommandSpec, commandHelp, parseCommand } from '@ddsjs/cli/args';
import type { EditMethod } from '@ddsjs/dds';
import { EDIT_METHODS } from '@ddsjs/dds';
import {
  type EditReport,
  ddsOracleAlignment,
  evaluateEdits,
  evaluateGeneration,
  formatAlignmentTable,
  formatEditTable,
  formatGenerationLine,
  loadToyModel,
  reportsByBackground,
} from '../toy-quality';

/** `dds-toy eval`: its options and help (see @ddsjs/cli/args). */
export const EVAL_TOY_COMMAND: CommandSpec = {
  name: 'eval',
  program: 'dds-toy',
  positionals: true,
  usage: 'dds-toy eval [<model dir>] [options]',
  summary: `Measures a toy-shapes model (default: the embedded one of @ddsjs/toy-shapes): generation on the 12 held-out
captions (2 seeds each unless --gen-seeds; 50 DDIM steps and the model's generation guidance from its
ddsjs_defaults.json: \`dds generate\`'s defaults), then DDS and SDS colour edits of N generator pictures (editImage
defaults: the model's ddsjs_defaults.json, else the notebook's 200 steps, lr 0.1, guidance 7.5), and
prints the tables of docs/notes/2026-12-toy-model-log.md (then the edit table split by background).`,
  options: {
    edits: { type: 'string', arg: 'N', help: 'pictures to edit (default 10)' },
    seed: { type: 'string', arg: 'N', help: 'seed of the pictures and target colours (default 1234)' },
    'gen-seed': { type: 'string', arg: 'N', help: 'first generation seed (default 0; 2 = the validation set the shipped weights were chosen on)' },
    'gen-seeds': { type: 'string', arg: 'N', help: 'generation seeds per caption (default 2)' },
    'gen-guidance': { type: 'string', arg: 'X', help: "generation guidance scale (default: the model's ddsjs_defaults.json, else 7.5)" },
    'gen-steps': { type: 'string', arg: 'N', help: 'generation DDIM steps (default 50)' },
    steps: { type: 'string', arg: 'N', help: "edit steps (default: editImage's)" },
    lr: { type: 'string', arg: 'X', help: "edit learning rate (default: editImage's)" },
    'no-sds': { type: 'boolean', help: 'DDS only' },
    'no-generation': { type: 'boolean', help: 'edits only' },
    methods: { type: 'string', arg: 'LIST', help: 'edit methods to measure, comma-separated (default dds,sds; also nfsd, csd, pds, flowedit)' },
    guidance: { type: 'string', arg: 'X', help: "edit guidance scale (default: editImage's for the method)" },
    alignment: { type: 'boolean', help: 'instead of all that, the DDS gradient against the true edit on the N pictures (ddsOracleAlignment): per timestep, at z = the source and at z = the true edit; seconds, not minutes' },
    variant: { type: 'string', arg: 'fp16', help: "load <model dir>'s *.fp16.safetensors (the embedded model always is)" },
    backend: { type: 'string', arg: 'B', help: 'tfjs backend (default wasm)' },
  },
};

/** Runs `dds-toy eval` (arguments after the command name); prints the tables; returns the exit code. */
export async function runEvalToyCommand(args: string[], out: (s: string) => void = (s) => process.stdout.write(s + '\n')): Promise<number> {
  const parsed = parseCommand(EVAL_TOY_COMMAND, args);
  const v = parsed.values;
  if (parsed.help) return out(commandHelp(EVAL_TOY_COMMAND)), 0;
  const int = (name: string, s: string | undefined, d: number, min = 1) => {
    if (s === undefined) return d;
    const n = Number(s);
    if (!Number.isInteger(n) || n < min) throw new Error(`eval: --${name} must be a ${min === 0 ? 'non-negative' : 'positive'} integer, got '${s}'`);
    return n;
  };
  if (parsed.positionals.length > 1) throw new Error(`eval: expected at most one model folder, got ${parsed.positionals.length}`);
  const genSeed = int('gen-seed', v['gen-seed'] as string | undefined, 0, 0);
  const genSeeds = int('gen-seeds', v['gen-seeds'] as string | undefined, 2);
  const genSteps = int('gen-steps', v['gen-steps'] as string | undefined, 50);
  const gg = v['gen-guidance'] as string | undefined;
  const genGuidance = gg === undefined ? undefined : Number(gg);
  if (gg !== undefined && (gg.trim() === '' || !Number.isFinite(genGuidance) || genGuidance! < 0)) throw new Error(`eval: --gen-guidance must be a non-negative number, got '${gg}'`);
  const lrArg = v.lr as string | undefined;
  const lr = lrArg === undefined ? undefined : Number(lrArg);
  if (lrArg !== undefined && (lrArg.trim() === '' || !Number.isFinite(lr) || lr! <= 0)) throw new Error(`eval: --lr must be a positive number, got '${lrArg}'`);
  const opts = {
    n: int('edits', v.edits as string | undefined, 10),
    seed: int('seed', v.seed as string | undefined, 1234),
    ...(v.steps !== undefined ? { steps: int('steps', v.steps as string, 200) } : {}),
    ...(lr !== undefined ? { lr } : {}),
  };
  if (v.variant !== undefined && v.variant !== 'fp16') throw new Error(`eval: --variant must be fp16, got '${v.variant}'`);
  const methods = ((v.methods as string | undefined) ?? (v['no-sds'] ? 'dds' : 'dds,sds')).split(',').map((m) => m.trim()) as EditMethod[];
  const bad = methods.find((m) => !EDIT_METHODS.includes(m));
  if (bad !== undefined) throw new Error(`eval: --methods takes ${EDIT_METHODS.join(', ')}, got '${bad}'`);
  const ga = v.guidance as string | undefined;
  const guidanceScale = ga === undefined ? undefined : Number(ga);
  if (ga !== undefined && !(Number.isFinite(guidanceScale) && guidanceScale! >= 0)) throw new Error(`eval: --guidance must be a non-negative number, got '${ga}'`);
  const sd = await loadToyModel('eval', parsed.positionals[0], v.backend, v.variant as 'fp16' | undefined);
  const progress = (what: string) => (_c: unknown, done: number, total: number) => process.stderr.write(`  ${what} ${done}/${total}\n`);
  try {
    if (v.alignment) {
      for (const at of ['source', 'oracle'] as const) {
        out(`DDS gradient at z = ${at === 'source' ? 'the source latent ẑ' : 'the true edit ẑ + Δ'} (${opts.n} pictures of seed ${opts.seed}, guidance 7.5, 8 noises per t):`);
        out(formatAlignmentTable(ddsOracleAlignment(sd, { n: opts.n, seed: opts.seed, at })));
      }
      return 0;
    }
    if (!v['no-generation']) {
      const g = await evaluateGeneration(sd, { firstSeed: genSeed, seedsPerPrompt: genSeeds, steps: genSteps, guidanceScale: genGuidance, onCase: progress('generation') });
      out(formatGenerationLine(g));
    }
    const reports: EditReport[] = [];
    for (const method of methods) reports.push(await evaluateEdits(sd, { ...opts, method, guidanceScale, onCase: progress(`${method} edit`) }));
    out(formatEditTable(reports));
    out('');
    out('Per background:');
    out(formatEditTable(reports.flatMap(reportsByBackground)));
  } finally {
    sd.dispose();
  }
  return 0;
}
