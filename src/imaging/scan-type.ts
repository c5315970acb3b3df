import type { DicomInfo } from './dicom/info.js';

export type ScanType = 'brain-mri' | 'chest-xray';

const BRAIN_PARTS = new Set(['HEAD', 'BRAIN', 'SKULL']);
const CHEST_PARTS = new Set(['CHEST', 'THORAX', 'LUNG']);
/** Projection radiography: computed (CR), digital (DX) and the generic radiographic modality (RG). */
const RADIOGRAPHY = new Set(['CR', 'DX', 'RG']);

/**
 * Which of our models a DICOM image is for, from Modality (0008,0060) and Body Part Examined
 * (0018,0015):
 *
 * - MR with body part HEAD, BRAIN or SKULL, or with no body part → 'brain-mri'
 * - CR, DX or RG with body part CHEST, THORAX or LUNG, or with no body part → 'chest-xray'
 * - anything else (CT, US, an MR of the knee, a DX of the hand, no modality...) → null
 *
 * A missing body part counts as a match because many scanners leave it empty; the result is a
 * suggestion for the uploader to confirm, not a diagnosis-grade classification.
 */
export function inferScanType(info: DicomInfo): ScanType | null {
  const modality = info.modality?.trim().toUpperCase();
  const part = info.bodyPartExamined?.trim().toUpperCase() || undefined;
  if (modality === 'MR' && (part === undefined || BRAIN_PARTS.has(part))) return 'brain-mri';
  if (modality !== undefined && RADIOGRAPHY.has(modality) && (part === undefined || CHEST_PARTS.has(part))) {
    return 'chest-xray';
  }
  return null;
}
