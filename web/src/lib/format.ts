/** Words and numbers as a clinician reads them. */
import type { ScanResult, ScanType } from '../api/client';
import { percent } from './percent';

export const SCAN_TYPE_NAMES: Record<ScanType, string> = {
  'brain-mri': 'Brain MRI',
  'chest-xray': 'Chest X-ray',
};

const LABEL_NAMES: Record<string, string> = {
  glioma: 'Glioma',
  meningioma: 'Meningioma',
  pituitary: 'Pituitary tumour',
  notumor: 'No tumour',
  normal: 'Normal',
  bacterial: 'Bacterial pneumonia',
  viral: 'Viral pneumonia',
};

/** Labels that mean "nothing found" for their scan type. */
export const NEGATIVE_LABELS = new Set(['notumor', 'normal']);

export function labelName(label: string): string {
  return LABEL_NAMES[label] ?? label.charAt(0).toUpperCase() + label.slice(1);
}

/** The model label a result stands for (e.g. "glioma", "notumor", "viral"), or null. */
export function resultLabel(result: ScanResult | null | undefined): string | null {
  if (!result) return null;
  if (result.hasTumor !== undefined) return result.hasTumor ? (result.tumorType ?? 'tumour') : 'notumor';
  if (result.hasPneumonia !== undefined) return result.hasPneumonia ? (result.pneumoniaType ?? 'pneumonia') : 'normal';
  return null;
}

export function findingText(result: ScanResult | null | undefined): string {
  const label = resultLabel(result);
  if (!label) return '—';
  if (label === 'tumour') return 'Tumour (type not given)';
  if (label === 'pneumonia') return 'Pneumonia (type not given)';
  return labelName(label);
}

/** The fields of a review that state `label` for a scan type. */
export function labelFields(scanType: ScanType, label: string): Record<string, unknown> {
  const negative = NEGATIVE_LABELS.has(label);
  return scanType === 'brain-mri'
    ? { hasTumor: !negative, tumorType: negative ? null : label }
    : { hasPneumonia: !negative, pneumoniaType: negative ? null : label };
}

/**
 * A finding called at a threshold (chest: pneumonia when P(bacterial) + P(viral) reaches it):
 * that sum, the threshold and the operating point. Its confidence is neither label's probability
 * (P(normal) for a normal finding), so the app states the sum instead, wherever it shows one.
 * Null for a finding decided by its most probable class (brain), whose confidence is its own.
 */
export function thresholdCall(
  result: ScanResult | null | undefined,
): { positive: number; threshold: number; operatingPoint: string | null } | null {
  const threshold = result?.decisionThreshold ?? null;
  if (!result || threshold === null) return null;
  const positive = Object.entries(result.probabilities ?? {}).reduce((sum, [k, p]) => (NEGATIVE_LABELS.has(k) ? sum : sum + p), 0);
  return { positive, threshold, operatingPoint: result.operatingPoint ?? null };
}

/** The viewer's sentence for a finding called at a threshold. */
export function thresholdCallText(call: NonNullable<ReturnType<typeof thresholdCall>>): string {
  return (
    `Probability of pneumonia (bacterial + viral) ${percent(call.positive, 1)}; called pneumonia at ${percent(call.threshold, 1)} or more` +
    `${call.operatingPoint ? ` (operating point “${call.operatingPoint}”)` : ''}.`
  );
}

/** A result's number in a sentence: the pneumonia probability and its threshold, else the confidence. */
export function probabilityText(result: ScanResult): string {
  const call = thresholdCall(result);
  return call
    ? `probability of pneumonia ${percent(call.positive, 1)} (called at ${percent(call.threshold, 1)} or more)`
    : percent(result.confidence);
}


const dateFormat = new Intl.DateTimeFormat(undefined, { year: 'numeric', month: 'short', day: 'numeric' });
const dateTimeFormat = new Intl.DateTimeFormat(undefined, {
  year: 'numeric',
  month: 'short',
  day: 'numeric',
  hour: '2-digit',
  minute: '2-digit',
});

export function formatDate(iso: string | null | undefined): string {
  return iso ? dateFormat.format(new Date(iso)) : '—';
}

export function formatDateTime(iso: string | null | undefined): string {
  return iso ? dateTimeFormat.format(new Date(iso)) : '—';
}
