/** Small shared pieces: status badges, alerts, pagination, page headers, loading states, the gender select. */
import type { ReactNode } from 'react';

const STATUS_TEXT: Record<string, string> = {
  pending: 'Pending',
  processing: 'Analysing',
  completed: 'Completed',
  failed: 'Failed',
  gone: 'Removed',
};

export function StatusBadge({ status, progress }: { status: string; progress?: number | null }) {
  return (
    <span className={`badge badge-${status}`}>
      {STATUS_TEXT[status] ?? status}
      {status === 'processing' && progress != null && progress > 0 ? ` ${progress}%` : ''}
    </span>
  );
}

/**
 * A patient ID as one piece: it moves to the next line whole, never split inside, and one longer
 * than the line ends in an ellipsis, the whole of it in its title (styles.css .patient-id).
 */
export function PatientId({ id, className }: { id: string; className?: string }) {
  return (
    <span className={className ? `${className} patient-id` : 'patient-id'} title={id}>
      {id}
    </span>
  );
}

export function ProgressBar({ value, label }: { value: number; label: string }) {
  return (
    <div
      className="progress"
      role="progressbar"
      aria-label={label}
      aria-valuemin={0}
      aria-valuemax={100}
      aria-valuenow={Math.round(value)}
    >
      <div className="progress-fill" style={{ width: `${Math.max(2, Math.min(100, value))}%` }} />
    </div>
  );
}

export function Alert({ kind = 'error', children }: { kind?: 'error' | 'info' | 'success' | 'warning'; children: ReactNode }) {
  return (
    <div className={`alert alert-${kind}`} role={kind === 'error' ? 'alert' : 'status'}>
      {children}
    </div>
  );
}

export function PageHeader({ title, children, subtitle }: { title: string; subtitle?: ReactNode; children?: ReactNode }) {
  return (
    <div className="page-header">
      <div>
        <h1 tabIndex={-1}>{title}</h1>
        {subtitle && <p className="subtitle">{subtitle}</p>}
      </div>
      {children && <div className="page-actions">{children}</div>}
    </div>
  );
}

export function Pagination({
  page,
  totalPages,
  total,
  noun,
  onPage,
}: {
  page: number;
  totalPages: number;
  total: number;
  noun: string;
  onPage: (page: number) => void;
}) {
  return (
    <nav className="pagination" aria-label={`${noun} pages`}>
      <button type="button" className="btn btn-secondary" disabled={page <= 1} onClick={() => onPage(page - 1)}>
        ← Previous
      </button>
      <span aria-live="polite">
        Page {totalPages === 0 ? 0 : page} of {totalPages} · {total} {noun}
      </span>
      <button type="button" className="btn btn-secondary" disabled={page >= totalPages} onClick={() => onPage(page + 1)}>
        Next →
      </button>
    </nav>
  );
}

export function Empty({ children }: { children: ReactNode }) {
  return <p className="empty">{children}</p>;
}

/**
 * What a page shows until its main data is there: the error that stopped it, else "Loading …".
 * Use as `if (state.error || !state.data) return <LoadState state={state} what="scan" />`.
 */
export function LoadState({ state, what }: { state: { error: string | null }; what: string }) {
  if (state.error) return <Alert>{state.error}</Alert>;
  return (
    <p className="page-loading" role="status">
      Loading {what}…
    </p>
  );
}

/** A patient's gender for the patient forms (src/patients/schemas.ts GenderSchema); '' when not given. */
export function GenderSelect({ id, value, onChange }: { id: string; value: string; onChange: (gender: string) => void }) {
  return (
    <select id={id} value={value} onChange={(e) => onChange(e.target.value)}>
      <option value="">Not given</option>
      <option value="female">Female</option>
      <option value="male">Male</option>
      <option value="other">Other</option>
    </select>
  );
}
