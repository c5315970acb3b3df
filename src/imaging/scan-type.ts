import { scanTypeOfDicom, type ScanType } from '../scan-types/index.js';
import type { DicomInfo } from './dicom/info.js';

/**
 * Which scan type a DICOM image is, from its Modality and Body Part Examined (the rule of each
 * type is in src/scan-types); null when none fits.
 */
export function inferScanType(info: DicomInfo): ScanType | null {
  return scanTypeOfDicom(info.modality, info.bodyPartExamined);
}
