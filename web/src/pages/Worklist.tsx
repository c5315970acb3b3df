/**
 * The worklist: the scans the user may see, newest first, filtered and paged through the URL
 * (so a reload or the back button keeps the view), with live status while analyses run.
 */
import { useState } from 'react';
import { Link, useNavigate } from 'react-router-dom';
import { api, ok, type ScanListItem, type ScanListQuery } from '../api/client';
import { ScanFinding } from '../components/ScanFinding';
import { Alert, Empty, PageHeader, Pagination, ProgressBar, StatusBadge } from '../components/ui';
import { formatDate, SCAN_TYPE_NAMES, thresholdCall, thresholdCallText } from '../lib/format';
import { percent } from '../lib/percent';
import { useScanStatus, type StatusEvent } from '../lib/live';
import { useDebouncedFilter, useDocumentTitle, useUrlFilters } from '../lib/hooks';
import { useAsync } from '../lib/useAsync';

const PAGE_SIZE = 10;

export function Worklist() {
  const filters = useUrlFilters();
  const navigate = useNavigate();
  const { page } = filters;
  const status = filters.get('status');
  const scanType = filters.get('scanType');
  const patientId = filters.get('patientId');
  const startDate = filters.get('startDate');
  const endDate = filters.get('endDate');
  // Typing a patient id filters after a short pause, not on every key.
  const [patientInput, setPatientInput] = useDebouncedFilter(filters, 'patientId', 400);
  const [live, setLive] = useState<Record<string, StatusEvent>>({});
  // On a phone the filters wait behind a toggle, so the first screen shows scans, not five fields.
  const [filtersOpen, setFiltersOpen] = useState(false);
  const activeFilters = [status, scanType, patientId, startDate, endDate].filter(Boolean).length;
  useDocumentTitle('Worklist');

  const list = useAsync(async () => {
    const query: ScanListQuery = { page, limit: PAGE_SIZE };
    if (status) query.status = status as NonNullable<ScanListQuery['status']>;
    if (scanType) query.scanType = scanType as NonNullable<ScanListQuery['scanType']>;
    if (patientId) query.patientId = patientId;
    if (startDate) query.startDate = startDate;
    if (endDate) query.endDate = endDate;
    return ok(api.GET('/api/scans/', { params: { query } }));
  }, [page, status, scanType, patientId, startDate, endDate]);

  const running = (list.data?.scans ?? []).filter((s) => (live[s._id]?.status ?? s.status) === 'processing').map((s) => s._id);
  useScanStatus(running, (event) => {
    setLive((old) => ({ ...old, [event._id]: event }));
    // A finished analysis has a finding to show: read the page again.
    if (event.status !== 'processing') list.reload();
  });

  const setFilter = filters.set;
  const scans = list.data?.scans ?? [];
  const filtered = filters.any;

  return (
    <section>
      <PageHeader title="Worklist" subtitle="Scans of your patients, newest first. Status updates live while an analysis runs.">
        <Link to="/upload" className="btn btn-primary">
          Upload scans
        </Link>
      </PageHeader>

      <button
        type="button"
        className="btn btn-secondary filters-toggle"
        aria-expanded={filtersOpen}
        aria-controls="scan-filters"
        onClick={() => setFiltersOpen((open) => !open)}
      >
        Filters{activeFilters > 0 && <span className="filter-count">{activeFilters} active</span>}
      </button>
      <form
        id="scan-filters"
        className={`filters card${filtersOpen ? '' : ' closed'}`}
        role="search"
        aria-label="Filter scans"
        onSubmit={(e) => e.preventDefault()}
      >
        <div className="field">
          <label htmlFor="f-status">Status</label>
          <select id="f-status" value={status} onChange={(e) => setFilter('status', e.target.value)}>
            <option value="">All</option>
            <option value="processing">Analysing</option>
            <option value="completed">Completed</option>
            <option value="failed">Failed</option>
            <option value="pending">Pending</option>
          </select>
        </div>
        <div className="field">
          <label htmlFor="f-type">Scan type</label>
          <select id="f-type" value={scanType} onChange={(e) => setFilter('scanType', e.target.value)}>
            <option value="">All</option>
            <option value="brain-mri">Brain MRI</option>
            <option value="chest-xray">Chest X-ray</option>
          </select>
        </div>
        <div className="field">
          <label htmlFor="f-patient">Patient ID</label>
          <input id="f-patient" value={patientInput} placeholder="e.g. PT-20250505-001" onChange={(e) => setPatientInput(e.target.value)} />
        </div>
        <div className="field">
          <label htmlFor="f-from">Scan date from</label>
          <input id="f-from" type="date" value={startDate} onChange={(e) => setFilter('startDate', e.target.value)} />
        </div>
        <div className="field">
          <label htmlFor="f-to">to</label>
          <input id="f-to" type="date" value={endDate} onChange={(e) => setFilter('endDate', e.target.value)} />
        </div>
        {filtered && (
          <button
            type="button"
            className="btn btn-secondary"
            onClick={() => {
              setPatientInput('');
              filters.clear();
            }}
          >
            Clear filters
          </button>
        )}
      </form>

      {list.error && <Alert>{list.error}</Alert>}

      <div className="card table-card">
        <table className="table worklist" aria-busy={list.loading}>
          <caption className="sr-only">Scans</caption>
          <thead>
            <tr>
              <th scope="col">
                <span className="sr-only">Preview</span>
              </th>
              <th scope="col">Patient</th>
              <th scope="col">Scan type</th>
              <th scope="col">Scan date</th>
              <th scope="col">Status</th>
              <th scope="col">Finding</th>
              <th scope="col" className="num">
                Model probability
              </th>
            </tr>
          </thead>
          <tbody>
            {scans.map((scan) => (
              <ScanRow key={scan._id} scan={scan} live={live[scan._id]} onOpen={() => navigate(`/scans/${scan._id}`)} />
            ))}
          </tbody>
        </table>
        {!list.loading && scans.length === 0 && (
          <Empty>{filtered ? 'No scan matches these filters.' : 'No scans yet. Upload one to start.'}</Empty>
        )}
      </div>
      {list.data && (
        <Pagination
          page={page}
          totalPages={list.data.totalPages}
          total={list.data.totalScans}
          noun="scans"
          onPage={filters.setPage}
        />
      )}
    </section>
  );
}

function ScanRow({ scan, live, onOpen }: { scan: ScanListItem; live?: StatusEvent; onOpen: () => void }) {
  const status = live?.status ?? scan.status;
  const progress = live?.jobStatus?.progress ?? null;
  const refused = status === 'failed';
  return (
    <tr className="clickable" onClick={onOpen} data-scan-id={scan._id}>
      <td className="thumb-cell">
        <img src={scan.thumbnailUrl} alt="" className="thumb" loading="lazy" width={48} height={48} />
      </td>
      <td>
        <Link to={`/scans/${scan._id}`} onClick={(e) => e.stopPropagation()} className="row-link">
          {scan.patientName}
        </Link>
        <div className="muted small">
          <span className="patient-id" title={scan.patientId}>
            {scan.patientId}
          </span>
        </div>
      </td>
      <td>{scan.scanType ? SCAN_TYPE_NAMES[scan.scanType] : <span className="muted">Not set</span>}</td>
      <td>{formatDate(scan.scanDate)}</td>
      <td>
        <StatusBadge status={status} progress={progress} />
        {status === 'processing' && (
          <ProgressBar value={progress ?? 5} label={`Analysis of ${scan.patientName}'s scan`} />
        )}
      </td>
      <td>
        <ScanFinding scan={scan} status={status} />
      </td>
      <td className="num" data-label="Model probability">
        {refused ? '—' : <Probability result={scan.result} />}
      </td>
    </tr>
  );
}

/**
 * The model's number for the row's finding. A chest X-ray's finding is called when P(bacterial)
 * + P(viral) reaches a threshold: the cell says that it is the probability of pneumonia and the
 * threshold, as the viewer does, since "Normal 0.2%" or "Normal 99.8%" alone reads as nonsense.
 */
function Probability({ result }: { result: ScanListItem['result'] }) {
  const call = thresholdCall(result);
  // A physician's correction carries no model confidence.
  if (!call || result?.confidence == null) return <>{percent(result?.confidence, 1)}</>;
  return (
    <span title={thresholdCallText(call)}>
      {percent(call.positive, 1)} pneumonia
      <span className="cell-note muted small">called at ≥ {percent(call.threshold, 1)}</span>
    </span>
  );
}
