import type { Db } from '../platform/db/index.js';
import type { ScanType } from '../scan-types/index.js';
import type { EventPublisher } from '../webhooks/types.js';
import * as repo from './repository.js';

/**
 * Ends an analysis as failed: the analysis row keeps the reason (a refusal or an error), the
 * scan becomes `failed` with that reason, and `scan.failed` is published, all in one commit.
 * Nothing happens when the analysis already finished (or, with `attempt`, when a later try of
 * its job owns it): returns whether this call failed it.
 */
export async function failAnalysis(
  db: Db,
  events: EventPublisher,
  f: {
    analysisId: string;
    scanId: string;
    patientId: string;
    reason: string;
    refused: boolean;
    attempt?: number;
    /** The type settled by routing, recorded on the analysis and the scan. */
    scanType?: ScanType;
  },
): Promise<boolean> {
  return db.transaction(async (tx) => {
    const finished = await repo.finishAnalysis(
      tx,
      f.analysisId,
      {
        status: 'failed',
        refusalReason: f.refused ? f.reason : null,
        error: f.refused ? null : f.reason,
        completedAt: new Date(),
        ...(f.scanType ? { scanType: f.scanType } : {}),
      },
      f.attempt,
    );
    if (!finished) return false;
    await repo.updateScan(tx, f.scanId, {
      status: 'failed',
      failureReason: f.reason,
      currentAnalysisId: f.analysisId,
      ...(f.scanType ? { scanType: f.scanType } : {}),
    });
    await events.publish(tx, { type: 'scan.failed', scanId: f.scanId, patientId: f.patientId, status: 'failed' });
    return true;
  });
}
