/**
 * What a fake analyzer returns in tests: a brain MRI read as a glioma, with the model, the
 * confidence and the heatmap's hot region a test wants to see again in the API's answers.
 */
export interface GliomaOptions {
  model?: { id: string; version: string };
  confidence?: number;
  tumorLocation?: string;
  hotRegion?: { x: number; y: number; width: number; height: number };
}

export function gliomaOutput({
  model = { id: 'brain-mri', version: '1.0.0' },
  confidence = 0.9,
  tumorLocation = 'upper left',
  hotRegion = { x: 5, y: 6, width: 20, height: 10 },
}: GliomaOptions = {}) {
  // The other three labels share what glioma leaves, so the probabilities add up to 1.
  const rest = Math.round(((1 - confidence) / 3) * 1000) / 1000;
  return {
    refused: false as const,
    model,
    result: {
      scanType: 'brain-mri' as const,
      hasTumor: true,
      tumorType: 'glioma' as const,
      confidence,
      probabilities: { glioma: confidence, meningioma: rest, notumor: rest, pituitary: rest },
      tumorLocation,
      operatingPoint: 'argmax',
      calibration: 'model' as const,
      model,
    },
    hotRegion,
  };
}
