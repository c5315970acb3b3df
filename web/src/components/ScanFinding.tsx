/** A scan's finding in a list (worklist, patient page), with whose it is. */
import type { ScanListItem } from '../api/client';
import { findingText } from '../lib/format';

export function ScanFinding({ scan, status = scan.status }: { scan: ScanListItem; status?: string }) {
  const refused = status === 'failed';
  return (
    <>
      {refused ? <span className="refusal-text">{scan.failureReason ? 'Refused' : 'Failed'}</span> : findingText(scan.result)}
      {/* Whose finding it is: every finding needs a physician's review, and a list is where a
          doctor sees which are still the model's alone. */}
      {(status === 'completed' || refused) && (
        <span className="cell-note muted small">
          {scan.review ? `Reviewed by ${scan.review.reviewedBy?.name ?? 'a former user'}` : 'Not reviewed yet'}
        </span>
      )}
    </>
  );
}
