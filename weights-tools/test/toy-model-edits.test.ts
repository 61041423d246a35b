// Issue 5's measured editing quality of the embedded toy model (@ddsjs/toy-shapes/model, fp16): DDS colour edits of
// generator pictures against SDS on the same pictures (the paper's claim). The table is printed (it is the one in
// packages/toy-shapes/README.md and the README). Bounds: THRESHOLDS in toy-model-sets.ts.
import * as tf from '@tensorflow/tfjs';
import { type EditReport, evaluateEdits, formatEditTable } from '../src/toy-quality';
import { EDIT_SET, THRESHOLDS, useShippedToyModel, log } from './toy-model-sets';

// 30 DDS edits take ≈ 7 min on one idle core, 30 SDS edits ≈ 4 min; with both jest workers busy, up to twice that.
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
    // Edits stay far from repainting the background with another background colour (≥ 0.35) — all but one of the
    // 30: "a blue triangle on a gray background" → red turns the gray white (0.41); its target caption is one of the
    // held-out combinations the model never saw (packages/toy-shapes/README.md).
    const repainted = dds.cases.filter((c) => c.editBackgroundChange >= 0.2);
    expect(repainted.length).toBeLessThanOrEqual(1);
  });

  it('SDS, on the same pictures, keeps the shape measurably worse (the paper\'s claim)', async () => {
    if (!dds) throw new Error('the DDS test above did not finish');
    const before = tf.memory().numTensors;
    sds = await evaluateEdits(shipped(), { method: 'sds', ...EDIT_SET });
    expect(tf.memory().numTensors).toBe(before);
    log(formatEditTable([dds, sds]));
    // The paper's claim, same pictures, steps, lr and seed: SDS keeps the shape worse than DDS (IoU 0.37 vs 0.45).
    // (On this flat-colour world SDS changes the background less — 0.045 vs 0.060 — so that half is printed, not
    // asserted; packages/toy-shapes/README.md says why.)
    expect(sds.meanIoU).toBeLessThan(dds.meanIoU);
  });
});
