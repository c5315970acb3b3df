/** The side panels of the viewer: the model's finding, the review, annotations and history. */
import { useState, type FormEvent } from 'react';
import { api, errorMessage, ok, type ModelInfo, type ScanDetail, type ScanResult } from '../api/client';
import { useAuth } from '../auth';
import { ApiError } from '../lib/api-errors';
import { useDraft } from '../lib/drafts';
import { findingText, formatDateTime, labelFields, labelName, NEGATIVE_LABELS, probabilityText, resultLabel, thresholdCall, thresholdCallText } from '../lib/format';
import { percent } from '../lib/percent';
import { ifMatchFor, reviewConflictText } from '../lib/review-conflict';
import { Alert } from './ui';

function ProbabilityChart({ result, labels }: { result: ScanResult; labels: string[] }) {
  const probs = result.probabilities ?? {};
  const keys = (labels.length ? labels : Object.keys(probs)).filter((k) => k in probs);
  const top = resultLabel(result);
  if (keys.length === 0) return null;
  const sorted = [...keys].sort((a, b) => (probs[b] ?? 0) - (probs[a] ?? 0));
  return (
    <figure className="prob-chart">
      <figcaption>Calibrated probabilities</figcaption>
      <ul>
        {sorted.map((k) => (
          <li key={k} className={k === top ? 'top' : ''}>
            <span className="prob-label">{labelName(k)}</span>
            <span className="prob-bar" aria-hidden="true">
              <span style={{ width: `${Math.max(1, (probs[k] ?? 0) * 100)}%` }} />
            </span>
            <span className="prob-value">{percent(probs[k], 1)}</span>
          </li>
        ))}
      </ul>
    </figure>
  );
}

export function ModelFinding({ scan, model }: { scan: ScanDetail; model: ModelInfo | undefined }) {
  const m = scan.modelResult;
  if (scan.status === 'processing') {
    return (
      <section className="card panel" aria-labelledby="finding-h">
        <h2 id="finding-h">Model finding</h2>
        <p className="muted">The analysis is running; the finding appears here when it is done.</p>
      </section>
    );
  }
  if (scan.status === 'failed') {
    return (
      <section className="card panel refusal" aria-labelledby="finding-h">
        <h2 id="finding-h">Model refused this image</h2>
        <p>{scan.failureReason ?? 'The analysis failed.'}</p>
        <p className="muted small">No finding was produced: the image is not one the model was trained on, or could not be read. Review it yourself.</p>
      </section>
    );
  }
  if (!m) {
    return (
      <section className="card panel" aria-labelledby="finding-h">
        <h2 id="finding-h">Model finding</h2>
        <p className="muted">{scan.scanType ? 'No model result yet.' : 'No scan type is set, so no model has analysed this scan.'}</p>
      </section>
    );
  }
  const version = m.model ? `${model?.name ?? m.model.id} · v${m.model.version}` : 'Model unknown';
  const label = resultLabel(m);
  // A finding decided at a threshold states that sum and the threshold: its confidence is
  // neither label's probability in the chart.
  const call = thresholdCall(m);
  return (
    <section className="card panel" aria-labelledby="finding-h">
      <h2 id="finding-h">Model finding</h2>
      <div className="finding-head">
        <span className={`finding-label ${label && NEGATIVE_LABELS.has(label) ? 'negative' : 'positive'}`}>{findingText(m)}</span>
        {!call && <span className="finding-conf">{percent(m.confidence, 1)} confidence</span>}
      </div>
      {call && <p className="small decision">{thresholdCallText(call)}</p>}
      {m.tumorLocation && <p className="small">Location: {m.tumorLocation}</p>}
      <ProbabilityChart result={m} labels={model?.labels ?? []} />
      <p className="model-name small">{version}</p>
    </section>
  );
}

export function ReviewPanel({
  scan,
  labels,
  onSaved,
}: {
  scan: ScanDetail;
  labels: string[];
  /** The scan as the server has it now: after a save, or reloaded after a colleague's review. */
  onSaved: (scan: ScanDetail) => void;
}) {
  const { user } = useAuth();
  const current = resultLabel(scan.result);
  const modelLabel = resultLabel(scan.modelResult);
  // Before a review nothing is chosen: "Save review" records the physician's own choice, never
  // the model's by default (accepting it is the separate, named button above the form).
  const [label, setLabel] = useState(scan.review ? (current ?? '') : '');
  const [location, setLocation, forgetLocation] = useDraft(`${scan._id}:review-location`, scan.result?.tumorLocation ?? '');
  const [notes, setNotes, forgetNotes] = useDraft(`${scan._id}:review-notes`, scan.result?.additionalNotes ?? '');
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string | null>(null);
  const [saved, setSaved] = useState<string | null>(null);
  const scanType = scan.scanType;
  if (!scanType) return null;

  /**
   * A text field as the physician left it: its text, or null where they emptied a box that held
   * text (a field left out keeps its value in the API, so the old text would stay the finding's).
   */
  function kept<K extends string>(typed: string, current: string | null | undefined, key: K): Partial<Record<K, string | null>> {
    const text = typed.trim();
    if (text) return { [key]: text } as Record<K, string>;
    return current ? ({ [key]: null } as Record<K, null>) : {};
  }

  async function save(chosen: string, message: string) {
    if (!scanType) return;
    setBusy(true);
    setError(null);
    setSaved(null);
    try {
      const result = {
        ...labelFields(scanType, chosen),
        // A correction is the physician's finding, not the model's: the API asks for its
        // confidence explicitly, and a physician's finding carries none.
        ...(chosen !== modelLabel ? { confidence: null } : {}),
        ...(scanType === 'brain-mri' && !NEGATIVE_LABELS.has(chosen) ? kept(location, scan.result?.tumorLocation, 'tumorLocation') : {}),
        ...kept(notes, scan.result?.additionalNotes, 'additionalNotes'),
      };
      // The finding as this physician saw it: a colleague's review saved since is not replaced unseen (412).
      const out = await ok(
        api.PATCH('/api/scans/{id}', {
          params: { path: { id: scan._id }, header: { 'if-match': ifMatchFor(scan.findingVersion) } },
          body: { status: 'completed', result },
        }),
      );
      onSaved(out);
      forgetLocation();
      forgetNotes();
      setSaved(message);
    } catch (err) {
      if (err instanceof ApiError && err.status === 412) await showConflict(err, chosen);
      else setError(errorMessage(err));
    } finally {
      setBusy(false);
    }
  }

  /**
   * The finding changed after this physician opened the scan: the scan is reloaded so they see
   * the colleague's review, and the form keeps what they chose and typed, to check and save again.
   */
  async function showConflict(refused: ApiError, chosen: string) {
    try {
      const now = await ok(api.GET('/api/scans/{id}', { params: { path: { id: scan._id } } }));
      // A box left as it was loaded follows the finding as it is now (saving it as loaded would
      // clear or undo the colleague's text); a box the physician typed in keeps their text.
      if (notes === (scan.result?.additionalNotes ?? '')) setNotes(now.result?.additionalNotes ?? '');
      if (location === (scan.result?.tumorLocation ?? '')) setLocation(now.result?.tumorLocation ?? '');
      setLabel(chosen);
      onSaved(now);
      setError(reviewConflictText(scan, now, user, formatDateTime));
    } catch {
      // Not reloaded: the server's words (who reviewed it, when, reload and reapply).
      setError(refused.message);
    }
  }

  const submit = (e: FormEvent) => {
    e.preventDefault();
    if (label) void save(label, label === modelLabel ? 'Finding confirmed.' : 'Correction saved.');
  };

  return (
    <section className="card panel" aria-labelledby="review-h">
      <h2 id="review-h">Physician review</h2>
      {scan.review ? (
        <div className="compare">
          <div>
            <span className="compare-k">Model</span>
            <span className="compare-v">{scan.modelResult ? findingText(scan.modelResult) : 'No finding'}</span>
          </div>
          <div>
            <span className="compare-k">Physician</span>
            <span className="compare-v strong">{findingText(scan.result)}</span>
          </div>
          <p className="muted small">
            Reviewed by {scan.review.reviewedBy?.name ?? 'a former user'} on {formatDateTime(scan.review.reviewedAt)}
          </p>
          {(scan.review as { newerAnalysis?: boolean }).newerAnalysis && (
            <p className="newer small" role="note">
              A newer analysis finished after this review: the reviewed finding stands until you review again.
            </p>
          )}
        </div>
      ) : (
        <p className="muted small">Not reviewed yet.</p>
      )}
      {error && <Alert>{error}</Alert>}
      {saved && <Alert kind="success">{saved}</Alert>}
      {modelLabel && !scan.review && (
        <button type="button" className="btn btn-primary btn-block" disabled={busy} onClick={() => void save(modelLabel, 'Finding accepted.')}>
          Accept model finding: {findingText(scan.modelResult)}
        </button>
      )}
      <form onSubmit={submit} className="form">
        <fieldset>
          <legend>{scan.review ? 'Change the finding' : modelLabel ? 'Or correct it' : 'Your finding'}</legend>
          <div className="radio-list">
            {labels.map((l) => (
              <label key={l} className={label === l ? 'on' : ''}>
                <input type="radio" name="finding" value={l} checked={label === l} onChange={() => setLabel(l)} />
                {labelName(l)}
                {l === modelLabel && <span className="muted small"> (model)</span>}
              </label>
            ))}
          </div>
        </fieldset>
        {scanType === 'brain-mri' && label && !NEGATIVE_LABELS.has(label) && (
          <div className="field">
            <label htmlFor="review-location">Tumour location</label>
            <input id="review-location" value={location} onChange={(e) => setLocation(e.target.value)} placeholder="e.g. left frontal lobe" />
          </div>
        )}
        <div className="field">
          <label htmlFor="review-notes">Notes</label>
          <textarea id="review-notes" rows={3} value={notes} onChange={(e) => setNotes(e.target.value)} />
        </div>
        <button type="submit" className="btn btn-secondary btn-block" disabled={busy || !label}>
          Save review
        </button>
      </form>
    </section>
  );
}

export function AnnotationsPanel({
  scan,
  placing,
  onPlacingChange,
  onSaved,
}: {
  scan: ScanDetail;
  placing: { x: number; y: number } | null;
  onPlacingChange: (p: { x: number; y: number } | null) => void;
  onSaved: (annotations: ScanDetail['annotations']) => void;
}) {
  const [text, setText, forgetText] = useDraft(`${scan._id}:annotation`);
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string | null>(null);

  async function submit(e: FormEvent) {
    e.preventDefault();
    if (!placing || !text.trim()) return;
    setBusy(true);
    setError(null);
    try {
      const out = await ok(
        api.POST('/api/scans/{id}/annotations', { params: { path: { id: scan._id } }, body: { x: placing.x, y: placing.y, text: text.trim() } }),
      );
      onSaved(out.annotations);
      setText('');
      forgetText();
      onPlacingChange(null);
    } catch (err) {
      setError(errorMessage(err));
    } finally {
      setBusy(false);
    }
  }

  return (
    <section className="card panel" aria-labelledby="ann-h">
      <h2 id="ann-h">Annotations</h2>
      {scan.annotations.length === 0 && !placing && <p className="muted small">Choose “Annotate” and click the image to place a marker.</p>}
      <ol className="annotations">
        {scan.annotations.map((a, i) => (
          <li key={a._id}>
            <span className="marker-num" aria-hidden="true">
              {i + 1}
            </span>
            <div>
              <p>{a.text}</p>
              <p className="muted small">
                ({Math.round(a.x)}, {Math.round(a.y)}) · {a.createdBy?.name ?? 'former user'} · {formatDateTime(a.createdAt)}
              </p>
            </div>
          </li>
        ))}
      </ol>
      {placing && (
        <form className="form annotation-form" onSubmit={submit}>
          {error && <Alert>{error}</Alert>}
          <div className="grid-2">
            <div className="field">
              <label htmlFor="ann-x">x (pixels)</label>
              <input id="ann-x" type="number" min={0} max={scan.width - 1} value={placing.x} onChange={(e) => onPlacingChange({ ...placing, x: Number(e.target.value) })} />
            </div>
            <div className="field">
              <label htmlFor="ann-y">y (pixels)</label>
              <input id="ann-y" type="number" min={0} max={scan.height - 1} value={placing.y} onChange={(e) => onPlacingChange({ ...placing, y: Number(e.target.value) })} />
            </div>
          </div>
          <div className="field">
            <label htmlFor="ann-text">Annotation {scan.annotations.length + 1}</label>
            <textarea id="ann-text" rows={2} value={text} onChange={(e) => setText(e.target.value)} autoFocus />
          </div>
          <div className="row-actions">
            <button type="submit" className="btn btn-primary" disabled={busy || !text.trim()}>
              Save annotation
            </button>
            <button type="button" className="btn btn-secondary" onClick={() => onPlacingChange(null)}>
              Cancel
            </button>
          </div>
        </form>
      )}
    </section>
  );
}

export function HistoryPanel({ scan }: { scan: ScanDetail }) {
  type Entry = { at: string; title: string; detail: string; kind: 'analysis' | 'review' | 'refusal' };
  const entries: Entry[] = scan.analysisHistory.map((a) => ({
    at: a.completedAt ?? a.requestedAt,
    kind: a.status === 'failed' ? 'refusal' : 'analysis',
    title: `Analysis ${a.status}${a.model ? ` · ${a.model.id} v${a.model.version}` : ''}`,
    detail: a.result ? `${findingText(a.result)}, ${probabilityText(a.result)}` : (a.failureReason ?? ''),
  }));
  // Every review, where the server keeps them all (`reviews`, oldest first); else the latest.
  const reviews = (scan as { reviews?: { reviewedAt: string; reviewedBy: { name: string } | null; result?: ScanResult | null }[] })
    .reviews;
  if (reviews?.length) {
    for (const r of reviews) {
      entries.push({ at: r.reviewedAt, kind: 'review', title: `Reviewed by ${r.reviewedBy?.name ?? 'a former user'}`, detail: r.result ? findingText(r.result) : '' });
    }
  } else if (scan.review) {
    entries.push({
      at: scan.review.reviewedAt,
      kind: 'review',
      title: `Reviewed by ${scan.review.reviewedBy?.name ?? 'a former user'}`,
      detail: findingText(scan.result),
    });
  }
  entries.sort((a, b) => a.at.localeCompare(b.at));
  return (
    <section className="card panel" aria-labelledby="hist-h">
      <h2 id="hist-h">History</h2>
      <ol className="timeline">
        <li className="upload">
          <p className="strong small">Uploaded</p>
          <p className="muted small">{formatDateTime(scan.createdAt)}</p>
        </li>
        {entries.map((e, i) => (
          <li key={i} className={e.kind}>
            <p className="strong small">{e.title}</p>
            <p className="small">{e.detail}</p>
            <p className="muted small">{formatDateTime(e.at)}</p>
          </li>
        ))}
      </ol>
    </section>
  );
}
