import type { Db } from '../platform/db/index.js';
import type { EventPublisher } from '../webhooks/types.js';
import * as repo from './repository.js';

/**
 * Ends an analysis as failed: the analysis row keeps the reason (a refusal or an error), the
 * scan becomes `failed` with that reason, and `scan.failed` is published, all in one commit.
 */
export async function failAnalysis(
  db: Db,
  events: EventPublisher,
  f: { analysisId: string; scanId: string; patientId: string; reason: string; refused: boolean },
): Promise<void> {
  await db.transaction(async (tx) => {
    await repo.updateAnalysis(tx, f.analysisId, {
      status: 'failed',
      refusalReason: f.refused ? f.reason : null,
      error: f.refused ? null : f.reason,
      completedAt: new Date(),
    });
    await repo.updateScan(tx, f.scanId, { status: 'failed', failureReason: f.reason, currentAnalysisId: f.analysisId });
    await events.publish(tx, { type: 'scan.failed', scanId: f.scanId, patientId: f.patientId, status: 'failed' });
  });
}
