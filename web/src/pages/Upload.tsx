/**
 * Upload: choose or create the patient, drop one or many files (JPEG, PNG, DICOM), and watch
 * each one's upload progress and then its analysis. Each file is its own request, so one bad
 * file does not stop the others, and its error names what is wrong.
 */
import { useEffect, useRef, useState, type DragEvent, type FormEvent } from 'react';
import { Link, useSearchParams } from 'react-router-dom';
import { api, errorMessage, ok, uploadScan, type PatientList } from '../api/client';
import { Alert, GenderSelect, PageHeader, PatientId, ProgressBar, StatusBadge } from '../components/ui';
import { ApiError, refusedDicomPatientId, refusedDicomPatientName } from '../lib/api-errors';
import { SCAN_TYPE_NAMES } from '../lib/format';
import { useDebounced, useDocumentTitle } from '../lib/hooks';
import { useScanStatus, type StatusEvent } from '../lib/live';

type Patient = PatientList['patients'][number];

/**
 * "New patient" with the ID of one of the doctor's own patients: the server's 409 advises asking
 * an administrator to assign the patient, which they already are. Say to choose them instead.
 */
async function ownPatientText(patientId: string): Promise<Error | null> {
  const found = await ok(api.GET('/api/patients/', { params: { query: { search: patientId, limit: 8, page: 1 } } })).catch(() => null);
  const own = found?.patients.find((p) => p.patientId === patientId);
  return own
    ? new Error(`Patient ID ${patientId} is already your patient ${own.name}. Choose “Existing patient” and pick them, so these scans join their record.`)
    : null;
}

interface Item {
  key: string;
  file: File;
  progress: number;
  state: 'queued' | 'uploading' | 'uploaded' | 'error';
  error?: string;
  scanId?: string;
  status?: string;
  stage?: string | null;
  analysisProgress?: number;
  failureReason?: string | null;
  /**
   * Refused because its DICOM header names another patient: by PatientID or by PatientName, the
   * header's value, the patient it was sent for and what was confirmed already, so "file it
   * anyway" sends it for the same one with this value confirmed too.
   */
  mismatch?: { field: 'id' | 'name'; header: string; patient: { patientId: string; name: string }; confirmed: Confirmed };
}

/** The header values the uploader confirmed for one file (the form's confirmDicomPatient* fields). */
interface Confirmed {
  patientId?: string;
  patientName?: string;
}

const ACCEPT = '.jpg,.jpeg,.png,.dcm,.dicom,image/jpeg,image/png,application/dicom';

export function Upload() {
  const [params] = useSearchParams();
  const [mode, setMode] = useState<'existing' | 'new'>('existing');
  const [search, setSearch] = useState('');
  const [matches, setMatches] = useState<Patient[]>([]);
  const [patient, setPatient] = useState<{ patientId: string; name: string } | null>(null);
  const [newPatient, setNewPatient] = useState({ patientId: '', name: '', dateOfBirth: '', gender: '' });
  const [scanType, setScanType] = useState('');
  const [scanDate, setScanDate] = useState('');
  const [items, setItems] = useState<Item[]>([]);
  const [dragging, setDragging] = useState(false);
  const [error, setError] = useState<string | null>(null);
  const [busy, setBusy] = useState(false);
  const input = useRef<HTMLInputElement>(null);

  useDocumentTitle('Upload scans');

  // Arriving from a patient's page: that patient is chosen.
  useEffect(() => {
    const id = params.get('patient');
    if (!id) return;
    ok(api.GET('/api/patients/{id}', { params: { path: { id } } })).then(
      (p) => setPatient({ patientId: p.patientId, name: p.name }),
      () => undefined,
    );
  }, [params]);

  // The patient search asks the server once the typing pauses.
  const query = useDebounced(search.trim(), 250);
  useEffect(() => {
    if (mode !== 'existing' || patient) return;
    let live = true;
    ok(api.GET('/api/patients/', { params: { query: { search: query || undefined, limit: 8, page: 1 } } })).then(
      (out) => live && setMatches(out.patients),
      (err: unknown) => live && setError(errorMessage(err)),
    );
    return () => {
      live = false;
    };
  }, [query, mode, patient]);

  const running = items.filter((i) => i.scanId && i.status === 'processing').map((i) => i.scanId!);
  useScanStatus(running, (e: StatusEvent) =>
    setItems((old) =>
      old.map((i) =>
        i.scanId === e._id
          ? { ...i, status: e.status, stage: e.jobStatus?.stage ?? null, analysisProgress: e.jobStatus?.progress, failureReason: e.failureReason }
          : i,
      ),
    ),
  );

  const addFiles = (files: FileList | File[]) => {
    const added = Array.from(files).map((file) => ({ key: `${file.name}-${file.size}-${Math.random()}`, file, progress: 0, state: 'queued' as const }));
    setItems((old) => [...old, ...added]);
  };

  const onDrop = (e: DragEvent) => {
    e.preventDefault();
    setDragging(false);
    if (e.dataTransfer.files.length) addFiles(e.dataTransfer.files);
  };

  const update = (key: string, patch: Partial<Item>) => setItems((old) => old.map((i) => (i.key === key ? { ...i, ...patch } : i)));

  /** Uploads one file; `confirmed` confirms its header's patient is `target` after all. */
  async function send(item: Item, target: { patientId: string; name: string }, confirmed: Confirmed = {}) {
    update(item.key, { state: 'uploading', progress: 0, error: undefined, mismatch: undefined });
    const form = new FormData();
    form.append('patientId', target.patientId);
    form.append('patientName', target.name);
    if (scanType) form.append('scanType', scanType);
    if (scanDate) form.append('scanDate', scanDate);
    if (confirmed.patientId) form.append('confirmDicomPatientId', confirmed.patientId);
    if (confirmed.patientName) form.append('confirmDicomPatientName', confirmed.patientName);
    form.append('image', item.file, item.file.name);
    try {
      const scan = await uploadScan(form, (p) => update(item.key, { progress: p * 100 }));
      update(item.key, { state: 'uploaded', progress: 100, scanId: scan._id, status: scan.status });
    } catch (err) {
      const headerId = refusedDicomPatientId(err);
      const headerName = refusedDicomPatientName(err);
      const mismatch: Item['mismatch'] = headerId
        ? { field: 'id', header: headerId, patient: target, confirmed }
        : headerName
          ? { field: 'name', header: headerName, patient: target, confirmed }
          : undefined;
      update(item.key, { state: 'error', error: errorMessage(err), mismatch });
    }
  }

  async function fileAnyway(item: Item) {
    const mismatch = item.mismatch;
    if (!mismatch) return;
    setBusy(true);
    try {
      // A file confirmed for its PatientID may then be refused for its PatientName: both go.
      const confirmed = { ...mismatch.confirmed, [mismatch.field === 'id' ? 'patientId' : 'patientName']: mismatch.header };
      await send(item, mismatch.patient, confirmed);
    } finally {
      setBusy(false);
    }
  }

  async function submit(e: FormEvent) {
    e.preventDefault();
    setError(null);
    let target = patient;
    setBusy(true);
    try {
      if (mode === 'new') {
        if (!newPatient.patientId.trim() || !newPatient.name.trim()) throw new Error('Give the new patient an ID and a name.');
        const created = await ok(
          api.POST('/api/patients/', {
            body: {
              patientId: newPatient.patientId.trim(),
              name: newPatient.name.trim(),
              ...(newPatient.dateOfBirth ? { dateOfBirth: newPatient.dateOfBirth } : {}),
              ...(newPatient.gender ? { gender: newPatient.gender as 'female' } : {}),
            },
          }),
        ).catch(async (err: unknown) => {
          throw (err instanceof ApiError && err.status === 409 && (await ownPatientText(newPatient.patientId.trim()))) || err;
        });
        target = { patientId: created.patientId, name: created.name };
        setPatient(target);
        setMode('existing');
      }
      if (!target) throw new Error('Choose the patient these scans belong to.');
      // A file already refused for its header's patient waits for its own "file it anyway".
      for (const item of items.filter((i) => i.state === 'queued' || (i.state === 'error' && !i.mismatch))) await send(item, target);
    } catch (err) {
      setError(errorMessage(err));
    } finally {
      setBusy(false);
    }
  }

  const toSend = items.filter((i) => i.state === 'queued' || (i.state === 'error' && !i.mismatch)).length;

  return (
    <section>
      <PageHeader title="Upload scans" subtitle="JPEG, PNG or DICOM. Each scan appears in the worklist at once and is analysed when its type is known." />
      {error && <Alert>{error}</Alert>}
      <form className="upload-grid" onSubmit={submit}>
        <fieldset className="card">
          <legend>1. Patient</legend>
          <div className="segmented" role="radiogroup" aria-label="Patient">
            <label className={mode === 'existing' ? 'on' : ''}>
              <input type="radio" name="mode" checked={mode === 'existing'} onChange={() => setMode('existing')} /> Existing patient
            </label>
            <label className={mode === 'new' ? 'on' : ''}>
              <input type="radio" name="mode" checked={mode === 'new'} onChange={() => setMode('new')} /> New patient
            </label>
          </div>
          {mode === 'existing' &&
            (patient ? (
              <div className="chosen">
                <div>
                  <strong>{patient.name}</strong>
                  <div className="muted small">
                    <PatientId id={patient.patientId} />
                  </div>
                </div>
                <button type="button" className="btn btn-secondary" onClick={() => setPatient(null)}>
                  Change
                </button>
              </div>
            ) : (
              <>
                <div className="field">
                  <label htmlFor="patient-search">Search by name or patient ID</label>
                  <input id="patient-search" value={search} onChange={(e) => setSearch(e.target.value)} autoComplete="off" />
                </div>
                <ul className="pick-list" aria-label="Matching patients">
                  {matches.map((p) => (
                    <li key={p._id}>
                      <button type="button" className="pick" onClick={() => setPatient({ patientId: p.patientId, name: p.name })}>
                        <strong>{p.name}</strong>{' '}
                        <PatientId id={p.patientId} className="muted" />
                      </button>
                    </li>
                  ))}
                  {matches.length === 0 && <li className="muted small">No patient found. Create a new one.</li>}
                </ul>
              </>
            ))}
          {mode === 'new' && (
            <div className="grid-2">
              <div className="field">
                <label htmlFor="np-id">Patient ID</label>
                <input id="np-id" required value={newPatient.patientId} onChange={(e) => setNewPatient({ ...newPatient, patientId: e.target.value })} />
              </div>
              <div className="field">
                <label htmlFor="np-name">Full name</label>
                <input id="np-name" required value={newPatient.name} onChange={(e) => setNewPatient({ ...newPatient, name: e.target.value })} />
              </div>
              <div className="field">
                <label htmlFor="np-dob">Date of birth</label>
                <input id="np-dob" type="date" value={newPatient.dateOfBirth} onChange={(e) => setNewPatient({ ...newPatient, dateOfBirth: e.target.value })} />
              </div>
              <div className="field">
                <label htmlFor="np-gender">Gender</label>
                <GenderSelect id="np-gender" value={newPatient.gender} onChange={(gender) => setNewPatient({ ...newPatient, gender })} />
              </div>
            </div>
          )}
        </fieldset>

        <fieldset className="card">
          <legend>2. Scan</legend>
          <div className="grid-2">
            <div className="field">
              <label htmlFor="scan-type">Scan type</label>
              {/* The option stays one word: a select box cuts its text at the box's width (a
                  phone's half column is 150 px), so how "Automatic" decides is said under it. */}
              <select id="scan-type" value={scanType} aria-describedby="scan-type-hint" onChange={(e) => setScanType(e.target.value)}>
                <option value="">Automatic</option>
                <option value="brain-mri">{SCAN_TYPE_NAMES['brain-mri']}</option>
                <option value="chest-xray">{SCAN_TYPE_NAMES['chest-xray']}</option>
              </select>
              <span id="scan-type-hint" className="muted small">
                Automatic: from the DICOM header, else recognised from the image.
              </span>
            </div>
            <div className="field">
              <label htmlFor="scan-date">Scan date (optional)</label>
              <input id="scan-date" type="date" value={scanDate} onChange={(e) => setScanDate(e.target.value)} />
            </div>
          </div>
          <div
            className={`dropzone${dragging ? ' dragging' : ''}`}
            onDragOver={(e) => {
              e.preventDefault();
              setDragging(true);
            }}
            onDragLeave={() => setDragging(false)}
            onDrop={onDrop}
          >
            <p>
              <strong>Drop scan files here</strong>
              <br />
              <span className="muted">JPEG, PNG or DICOM (.dcm), one or many</span>
            </p>
            <button type="button" className="btn btn-secondary" onClick={() => input.current?.click()}>
              Choose files…
            </button>
            <input
              ref={input}
              id="files"
              type="file"
              multiple
              accept={ACCEPT}
              className="sr-only"
              aria-label="Scan files"
              onChange={(e) => {
                if (e.target.files) addFiles(e.target.files);
                e.target.value = '';
              }}
            />
          </div>
        </fieldset>

        {items.length > 0 && (
          <div className="card upload-list-card">
            <h2>Files</h2>
            <ul className="upload-list">
              {items.map((item) => (
                <li key={item.key} className={`upload-item ${item.state}`}>
                  <div className="upload-name">
                    <strong>{item.file.name}</strong>
                    <span className="muted small">{(item.file.size / 1024).toFixed(0)} kB</span>
                  </div>
                  <div className="upload-state">
                    {item.state === 'queued' && <span className="muted">Ready</span>}
                    {item.state === 'uploading' && <ProgressBar value={item.progress} label={`Uploading ${item.file.name}`} />}
                    {item.state === 'error' && !item.mismatch && <span className="error-text">{item.error}</span>}
                    {item.state === 'error' && item.mismatch && (
                      <span className="upload-mismatch">
                        {item.mismatch.field === 'id' ? (
                          <span className="error-text">
                            Not uploaded: this file’s DICOM header names patient{' '}
                            <strong>
                              <PatientId id={item.mismatch.header} />
                            </strong>
                            , but you chose{' '}
                            <strong>
                              {item.mismatch.patient.name} (<PatientId id={item.mismatch.patient.patientId} />)
                            </strong>
                            . If it is theirs (for example a study from another hospital, under its ID there), file it under <PatientId id={item.mismatch.patient.patientId} />.
                          </span>
                        ) : (
                          <span className="error-text">
                            Not uploaded: this file’s DICOM header names <strong>{item.mismatch.header}</strong>, but you chose{' '}
                            <strong>
                              {item.mismatch.patient.name} (<PatientId id={item.mismatch.patient.patientId} />)
                            </strong>
                            . If it is theirs (for example a name changed since, or written in another script), file it under <PatientId id={item.mismatch.patient.patientId} />.
                          </span>
                        )}
                        <button type="button" className="btn btn-secondary" disabled={busy} onClick={() => void fileAnyway(item)}>
                          File it under <PatientId id={item.mismatch.patient.patientId} /> anyway
                        </button>
                      </span>
                    )}
                    {item.state === 'uploaded' && item.status && (
                      <span className="upload-done">
                        <StatusBadge status={item.status} progress={item.analysisProgress} />
                        {item.status === 'processing' && item.stage && <span className="muted small">{item.stage}</span>}
                        {item.status === 'failed' && item.failureReason && <span className="error-text small">{item.failureReason}</span>}
                        <Link to={`/scans/${item.scanId}`}>Open scan</Link>
                      </span>
                    )}
                  </div>
                  {item.state !== 'uploading' && item.state !== 'uploaded' && (
                    <button
                      type="button"
                      className="btn btn-link"
                      aria-label={`Remove ${item.file.name}`}
                      onClick={() => setItems((old) => old.filter((i) => i.key !== item.key))}
                    >
                      Remove
                    </button>
                  )}
                </li>
              ))}
            </ul>
          </div>
        )}

        <div className="form-actions">
          <button type="submit" className="btn btn-primary" disabled={busy || !toSend}>
            {busy ? 'Uploading…' : `Upload ${toSend || ''} file(s)`}
          </button>
          <Link to="/" className="btn btn-secondary">
            Go to worklist
          </Link>
        </div>
      </form>
    </section>
  );
}
