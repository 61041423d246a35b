// Issue 5's measured editing quality of the embedded toy model (@ddsjs/toy-shapes/model, fp16): DDS colour edits of
// generator pictures against SDS on the same pictures (the paper's claim). The table is printed (it is the one in
// docs/notes/2026-12-toy-model-log.md and the README). Bounds: THRESHOLDS in toy-model-sets.ts.
import * as tf from '@tensorflow/tfjs';
import { type EditReport, evaluateEdits, formatEditTable } from '../src/toy-quality';
import { EDIT_SET, THRESHOLDS, useShippedToyModel, log } from './toy-model-sets';

// 30 DDS edits take ≈ 3.5 min on one core, 30 SDS edits ≈ 2 min; with both jest workers busy, up to twice that.
jest.setTimeout(1_500_000);

const shipped = useShippedToyModel();

describe('the embedded toy model edits (issue 5)', () => {
  let dds: EditReport;
  let sds: EditReport;
  it('DDS edits the shape colour, keeps the shape and the background', async () => {
    const before = tf.memory().numTensors;
    dds = await evaluateEdits(shipped(), { method: 'dds', ...EDIT_SET });
    expect(tf.memory().numTensors).toBe(before);
    log(formatEditTable([dds]));
    expect(dds.cases).toHaveLength(30);
    expect(dds.successRate).toBeGreaterThanOrEqual(THRESHOLDS.ddsSuccess);
    expect(dds.meanIoU).toBeGreaterThanOrEqual(THRESHOLDS.ddsMeanIoU);
    expect(dds.meanEditBackgroundChange).toBeLessThan(THRESHOLDS.ddsEditBackgroundChange);
    // Edits stay far from repainting the background with another background colour (≥ 0.35). At the notebook's lr
    // 0.1 one of the 30 did ("a blue triangle on a gray background" → red turned the gray white, 0.41; its target
    // caption is held out); at the model's lr 0.005, 29 of 30 stay under 0.04. At most one is allowed.
    const repainted = dds.cases.filter((c) => c.editBackgroundChange >= 0.2);
    expect(repainted.length).toBeLessThanOrEqual(1);
  });

  it('SDS, on the same pictures, keeps the shape measurably worse (the paper\'s claim)', async () => {
    if (!dds) throw new Error('the DDS test above did not finish');
    const before = tf.memory().numTensors;
    sds = await evaluateEdits(shipped(), { method: 'sds', ...EDIT_SET });
    expect(tf.memory().numTensors).toBe(before);
    log(formatEditTable([dds, sds]));
    // The paper's claim, same pictures, steps, lr (the model's 0.005) and seed: SDS keeps the shape worse than DDS
    // (IoU 0.77 vs 0.82), erases it more often (3 of 30 vs 1) and reaches the target colour less often (57 % vs
    // 83 %). (On this flat-colour world SDS changes the background no more than DDS — 0.0181 vs 0.0176 — so that
    // half is printed, not asserted; docs/notes/2026-12-toy-model-log.md says why.)
    expect(sds.meanIoU).toBeLessThan(dds.meanIoU);
    expect(sds.successRate).toBeLessThan(dds.successRate);
    expect(sds.erasedRate).toBeGreaterThan(dds.erasedRate);
  });

  it("CSD at the model's own lr for it (ddsjs_defaults.json edit.methods.csd, 0.04) reaches the target colour", async () => {
    // CSD's classifier score ε̂(y) − ε̂(∅) is ≈ 1/7.5 of DDS's guided difference: at the shared lr 0.005 it reached
    // the colour in 0 of 12 pictures; at its validated lr 0.04, 90 % of the validation pictures (issue 23,
    // docs/notes/2026-12-score-hyperparameters.md). The first 5 pictures of EDIT_SET (≈ 30 s quiet): a check that the
    // per-method defaults reach the loop, not a measurement (docs/scores.md has the 30-picture table). Measured: 4 of
    // 5, IoU 0.76; 64 s under a load of about 9 on 2 cores.
    const before = tf.memory().numTensors;
    const csd = await evaluateEdits(shipped(), { method: 'csd', n: 5, seed: EDIT_SET.seed });
    expect(tf.memory().numTensors).toBe(before);
    log(formatEditTable([csd]));
    expect(csd.cases).toHaveLength(5);
    expect(csd.cases.filter((c) => c.success).length).toBeGreaterThanOrEqual(4);
    expect(csd.meanIoU).toBeGreaterThanOrEqual(THRESHOLDS.ddsMeanIoU);
  });
});
