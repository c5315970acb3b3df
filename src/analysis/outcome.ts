import { sql, type SQL } from 'drizzle-orm';
import type { Db } from '../platform/db/index.js';
import type { JobCompletion } from '../platform/queue/index.js';
import type { ScanType } from '../scan-types/index.js';
import type { EventPublisher, ScanEvent } from '../webhooks/types.js';
import * as repo from './repository.js';

const EVENT_PLACEHOLDERS = { type: sql.placeholder('eventType'), patientId: sql.placeholder('eventPatientId') };

/**
 * One `unless` builder per publisher: repository.ts keys a built form by its builders' identity,
 * so a new closure at every analysis would build the statement again each time.
 */
const subscriberChecks = new WeakMap<EventPublisher, () => SQL<boolean>>();
function subscriberCheck(db: Db, events: EventPublisher): () => SQL<boolean> {
  let check = subscriberChecks.get(events);
  if (!check) {
    check = () => events.hasSubscribers(db, EVENT_PLACEHOLDERS);
    subscriberChecks.set(events, check);
  }
  return check;
}

/**
 * Writes the end of an analysis (its row, its scan) and publishes the scan's event, all in one
 * commit, only if the analysis is still unfinished (and, with `attempt`, still owned by that
 * try): returns whether this call ended it. With `job`, the try's job is completed in the same
 * commit when this call ends the analysis, so pg-boss does not complete it in a statement of its
 * own. When no webhook receives the event, the usual case, that is one statement and no
 * transaction; otherwise a transaction that queues the deliveries with the change.
 */
export async function endAnalysis(
  db: Db,
  events: EventPublisher,
  { job, ...end }: Omit<repo.AnalysisEnd, 'unless' | 'completeJob'> & { job?: JobCompletion },
  event: ScanEvent,
): Promise<boolean> {
  // Placeholders, so the statement's form is built once and not at every analysis (repository.ts).
  const completeJob = job ? { completeJob: job.prepared } : {};
  const unless = { statement: subscriberCheck(db, events), values: { eventType: event.type, eventPatientId: event.patientId } };
  const alone = await repo.endAnalysis(db, { ...end, ...completeJob, unless });
  let ended = alone;
  if (alone.heldBack) {
    ended = await db.transaction(async (tx) => {
      const inTx = await repo.endAnalysis(tx, { ...end, ...completeJob });
      if (inTx.finished) await events.publish(tx, event);
      return inTx;
    });
  }
  if (ended.jobCompleted) job?.completed();
  return ended.finished;
}

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
    /** The job try to complete in the same commit. */
    job?: JobCompletion;
  },
): Promise<boolean> {
  return endAnalysis(
    db,
    events,
    {
      analysisId: f.analysisId,
      ...(f.attempt === undefined ? {} : { attempt: f.attempt }),
      ...(f.job ? { job: f.job } : {}),
      analysis: {
        status: 'failed',
        refusalReason: f.refused ? f.reason : null,
        error: f.refused ? null : f.reason,
        completedAt: new Date(),
        ...(f.scanType ? { scanType: f.scanType } : {}),
      },
      scanId: f.scanId,
      scan: {
        status: 'failed',
        failureReason: f.reason,
        currentAnalysisId: f.analysisId,
        ...(f.scanType ? { scanType: f.scanType } : {}),
      },
    },
    { type: 'scan.failed', scanId: f.scanId, patientId: f.patientId, status: 'failed' },
  );
}
