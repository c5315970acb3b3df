import { useState, type ReactNode } from 'react';
import { Link, useParams } from 'react-router-dom';
import { api, ok, type PatientDetail } from '../api/client';
import { useAuth } from '../auth';
import { ScanFinding } from '../components/ScanFinding';
import { Alert, Empty, LoadState, PageHeader, Pagination, StatusBadge } from '../components/ui';
import { useDraft } from '../lib/drafts';
import { formatDate, formatDateTime, SCAN_TYPE_NAMES } from '../lib/format';
import { useDocumentTitle, useFormAction, useUrlFilters } from '../lib/hooks';
import { useAsync } from '../lib/useAsync';

export function PatientPage() {
  const { id = '' } = useParams();
  const { user } = useAuth();
  const patient = useAsync((signal) => ok(api.GET('/api/patients/{id}', { params: { path: { id } }, signal })), [id]);
  const p = patient.data;

  useDocumentTitle(p ? `${p.name} · Patients` : 'Patient');

  if (patient.error || !p) return <LoadState state={patient} what="patient" />;
  const merge = (part: Partial<PatientDetail>) => patient.setData((old) => ({ ...old!, ...part }));

  return (
    <section>
      <p className="breadcrumb">
        <Link to="/patients">Patients</Link> / {p.name}
      </p>
      <PageHeader
        title={p.name}
        subtitle={
          <>
            Patient ID{' '}
            <span className="patient-id" title={p.patientId}>
              {p.patientId}
            </span>
          </>
        }
      >
        <Link to={`/upload?patient=${encodeURIComponent(p._id)}`} className="btn btn-primary">
          Upload scan
        </Link>
      </PageHeader>
      {/* In reading order (and a phone's single column): who the patient is, their scans, the
          clinical record, and last the doctors assigned. A desktop places the doctors under the
          demographics, beside the scans. */}
      <div className="patient-grid">
        <section className="card patient-facts" aria-labelledby="demo-h">
          <h2 id="demo-h">Demographics</h2>
          <dl className="facts">
            <Fact term="Date of birth">{formatDate(p.dateOfBirth)}</Fact>
            <Fact term="Gender" className="capitalize">
              {p.gender ?? '—'}
            </Fact>
            <Fact term="Status" className="capitalize">
              {p.status}
            </Fact>
            <Fact term="Email">{p.contact.email ?? '—'}</Fact>
            <Fact term="Phone">{p.contact.phone ?? '—'}</Fact>
            <Fact term="Address">{p.contact.address ?? '—'}</Fact>
            <Fact term="Last visit">{formatDate(p.lastVisit)}</Fact>
            <Fact term="Next appointment">{formatDateTime(p.nextAppointment)}</Fact>
          </dl>
        </section>
        <div className="stack patient-record">
          <PatientScans patientId={p._id} patientName={p.name} />
          <MedicalHistory patient={p} onChange={(medicalHistory) => merge({ medicalHistory })} />
          {/* The note's answer names its author by id only: read the patient again for names. */}
          <Notes patient={p} onChange={() => patient.reload()} />
        </div>
        <section className="card patient-doctors" aria-labelledby="docs-h">
          <h2 id="docs-h">Assigned doctors</h2>
          <ul className="plain">
            {p.assignedDoctors.map((d) => (
              <li key={d._id}>{d.name}</li>
            ))}
          </ul>
          {user?.role === 'admin' && <AssignDoctor patientId={p._id} onAssigned={() => patient.reload()} />}
        </section>
      </div>
    </section>
  );
}

/** One fact of the demographics: a term and its value, kept together so a phone can set two a row. */
function Fact({ term, className, children }: { term: string; className?: string; children: ReactNode }) {
  return (
    <div>
      <dt>{term}</dt>
      <dd className={className}>{children}</dd>
    </div>
  );
}

const SCANS_PAGE_SIZE = 25;

/**
 * The patient's scans with their findings, a page at a time from the scan list (the patient's
 * record lists every scan but without findings, and the list gives at most 100 a page). The page
 * is kept in the URL, so the back button from a scan returns to it.
 */
function PatientScans({ patientId, patientName }: { patientId: string; patientName: string }) {
  const filters = useUrlFilters();
  const { page } = filters;
  const list = useAsync(
    (signal) => ok(api.GET('/api/scans/', { params: { query: { patientId, page, limit: SCANS_PAGE_SIZE } }, signal })),
    [patientId, page],
  );
  const scans = list.data?.scans ?? [];
  return (
    <section className="card" aria-labelledby="scans-h">
      <h2 id="scans-h">Scans</h2>
      {list.error && <Alert>{list.error}</Alert>}
      {!list.data && !list.error && <p role="status">Loading scans…</p>}
      {list.data && list.data.totalScans === 0 && <Empty>No scans yet.</Empty>}
      {scans.length > 0 && (
        <div className="table-scroll">
          <table className="table stacked" aria-busy={list.loading}>
            <caption className="sr-only">Scans of {patientName}</caption>
            <thead>
              <tr>
                <th scope="col">Scan date</th>
                <th scope="col">Type</th>
                <th scope="col">Status</th>
                <th scope="col">Finding</th>
                <th scope="col">
                  <span className="sr-only">Open</span>
                </th>
              </tr>
            </thead>
            <tbody>
              {scans.map((s) => (
                <tr key={s._id}>
                  <td>{formatDate(s.scanDate)}</td>
                  <td data-label="Type">{s.scanType ? SCAN_TYPE_NAMES[s.scanType] : '—'}</td>
                  <td data-label="Status">
                    <StatusBadge status={s.status} />
                  </td>
                  <td data-label="Finding">
                    <ScanFinding scan={s} />
                  </td>
                  <td>
                    <Link to={`/scans/${s._id}`}>Open viewer</Link>
                  </td>
                </tr>
              ))}
            </tbody>
          </table>
        </div>
      )}
      {list.data && list.data.totalPages > 1 && (
        <Pagination page={page} totalPages={list.data.totalPages} total={list.data.totalScans} noun="scans" onPage={filters.setPage} />
      )}
    </section>
  );
}

function MedicalHistory({ patient, onChange }: { patient: PatientDetail; onChange: (h: PatientDetail['medicalHistory']) => void }) {
  // Drafts, like the note's: an entry typed but not added outlives a look at one of the scans.
  const [condition, setCondition, forgetCondition] = useDraft(`${patient._id}:history-condition`);
  const [diagnosis, setDiagnosis, forgetDiagnosis] = useDraft(`${patient._id}:history-diagnosis`);
  const [treatment, setTreatment, forgetTreatment] = useDraft(`${patient._id}:history-treatment`);
  const f = { condition, diagnosis, treatment };
  const { onSubmit, error } = useFormAction(async () => {
    const out = await ok(
      api.POST('/api/patients/{id}/medical-history', {
        params: { path: { id: patient._id } },
        body: {
          condition: f.condition.trim(),
          ...(f.diagnosis.trim() ? { diagnosis: f.diagnosis.trim() } : {}),
          ...(f.treatment.trim() ? { treatment: f.treatment.trim() } : {}),
        },
      }),
    );
    onChange(out.medicalHistory);
    for (const [set, forget] of [
      [setCondition, forgetCondition],
      [setDiagnosis, forgetDiagnosis],
      [setTreatment, forgetTreatment],
    ] as const) {
      set('');
      forget();
    }
  });
  return (
    <section className="card" aria-labelledby="mh-h">
      <h2 id="mh-h">Medical history</h2>
      {patient.medicalHistory.length === 0 ? (
        <Empty>No entries.</Empty>
      ) : (
        <ul className="entries">
          {patient.medicalHistory.map((h) => (
            <li key={h._id}>
              <p className="strong">{h.condition}</p>
              {h.diagnosis && <p className="small">Diagnosis: {h.diagnosis}</p>}
              {h.treatment && <p className="small">Treatment: {h.treatment}</p>}
              <p className="muted small">{formatDate(h.date)}</p>
            </li>
          ))}
        </ul>
      )}
      <form className="form inline-form" onSubmit={onSubmit}>
        {error && <Alert>{error}</Alert>}
        <div className="grid-3">
          <div className="field">
            <label htmlFor="mh-condition">Condition</label>
            <input id="mh-condition" value={f.condition} onChange={(e) => setCondition(e.target.value)} />
          </div>
          <div className="field">
            <label htmlFor="mh-diagnosis">Diagnosis</label>
            <input id="mh-diagnosis" value={f.diagnosis} onChange={(e) => setDiagnosis(e.target.value)} />
          </div>
          <div className="field">
            <label htmlFor="mh-treatment">Treatment</label>
            <input id="mh-treatment" value={f.treatment} onChange={(e) => setTreatment(e.target.value)} />
          </div>
        </div>
        <button type="submit" className="btn btn-secondary" disabled={!f.condition.trim()}>
          Add entry
        </button>
      </form>
    </section>
  );
}

function Notes({ patient, onChange }: { patient: PatientDetail; onChange: () => void }) {
  const [content, setContent, forgetContent] = useDraft(`${patient._id}:note`);
  const { onSubmit, error } = useFormAction(async () => {
    await ok(api.POST('/api/patients/{id}/notes', { params: { path: { id: patient._id } }, body: { content: content.trim() } }));
    onChange();
    setContent('');
    forgetContent();
  });
  return (
    <section className="card" aria-labelledby="notes-h">
      <h2 id="notes-h">Notes</h2>
      {patient.notes.length === 0 ? (
        <Empty>No notes.</Empty>
      ) : (
        <ul className="entries">
          {patient.notes.map((n) => (
            <li key={n._id}>
              <p>{n.content}</p>
              <p className="muted small">
                {n.createdBy?.name ?? 'former user'} · {formatDateTime(n.createdAt)}
              </p>
            </li>
          ))}
        </ul>
      )}
      <form className="form inline-form" onSubmit={onSubmit}>
        {error && <Alert>{error}</Alert>}
        <div className="field">
          <label htmlFor="note-content">New note</label>
          <textarea id="note-content" rows={2} value={content} onChange={(e) => setContent(e.target.value)} />
        </div>
        <button type="submit" className="btn btn-secondary" disabled={!content.trim()}>
          Add note
        </button>
      </form>
    </section>
  );
}

function AssignDoctor({ patientId, onAssigned }: { patientId: string; onAssigned: () => void }) {
  const users = useAsync(() => ok(api.GET('/api/users/users')), []);
  const [doctorId, setDoctorId] = useState('');
  const { onSubmit, error } = useFormAction(async () => {
    await ok(api.POST('/api/patients/{id}/assign-doctor', { params: { path: { id: patientId } }, body: { doctorId } }));
    setDoctorId('');
    onAssigned();
  });
  return (
    <form className="form inline-form" onSubmit={onSubmit}>
      {error && <Alert>{error}</Alert>}
      <div className="field">
        <label htmlFor="assign-doctor">Assign a doctor</label>
        <select id="assign-doctor" value={doctorId} onChange={(e) => setDoctorId(e.target.value)}>
          <option value="">Choose…</option>
          {(users.data ?? [])
            .filter((u) => u.isActive)
            .map((u) => (
              <option key={u._id} value={u._id}>
                {u.name} ({u.role})
              </option>
            ))}
        </select>
      </div>
      <button type="submit" className="btn btn-secondary" disabled={!doctorId}>
        Assign
      </button>
    </form>
  );
}
