import { useEffect, useMemo, useRef, useState } from 'react';
import { Link, useParams } from 'react-router-dom';
import { api, errorMessage, fetchPixels, ok, type DicomPixels, type ModelInfo } from '../api/client';
import { AnnotationsPanel, HistoryPanel, ModelFinding, ReviewPanel } from '../components/FindingPanels';
import { ImageViewer, type ImageViewerHandle, type Marker, type Tool } from '../components/ImageViewer';
import { Alert, LoadState, ProgressBar, StatusBadge } from '../components/ui';
import { formatDate, formatDateTime, SCAN_TYPE_NAMES } from '../lib/format';
import { useScanStatus, type StatusEvent } from '../lib/live';
import { useDocumentTitle } from '../lib/hooks';
import { unchangedReportNotice } from '../lib/report-answer';
import { useAsync } from '../lib/useAsync';

/** The installed models change only with a deployment: asked once per page load (rate limit). */
let modelsOnce: Promise<{ models: ModelInfo[] }> | null = null;
function installedModels() {
  modelsOnce ??= ok(api.GET('/api/ml/models')).catch((err: unknown) => {
    modelsOnce = null;
    throw err;
  });
  return modelsOnce;
}

export function ScanViewer() {
  const { id = '' } = useParams();
  const scan = useAsync((signal) => ok(api.GET('/api/scans/{id}', { params: { path: { id } }, signal })), [id]);
  const models = useAsync(() => installedModels(), []);
  const [live, setLive] = useState<StatusEvent | null>(null);
  const [pixels, setPixels] = useState<DicomPixels | null>(null);
  const [pixelError, setPixelError] = useState<string | null>(null);
  const [win, setWin] = useState<{ center: number; width: number } | null>(null);
  const [showHeatmap, setShowHeatmap] = useState(true);
  const [opacity, setOpacity] = useState(0.45);
  const [showRegion, setShowRegion] = useState(true);
  const [tool, setTool] = useState<Tool>('pan');
  const [placing, setPlacing] = useState<{ x: number; y: number } | null>(null);
  // notice: set when the server returned the earlier report instead of making a new one.
  // A report prints the finding, the review and the annotations: once one of them changes here,
  // the report made before is out of date, and the page offers a new one instead of its link.
  const [report, setReport] = useState<{ url: string; notice: string | null } | null>(null);
  const [reportBusy, setReportBusy] = useState(false);
  const [reportError, setReportError] = useState<string | null>(null);
  const viewer = useRef<ImageViewerHandle>(null);
  const s = scan.data;

  useDocumentTitle(s ? `${s.patientName} · ${s.scanType ? SCAN_TYPE_NAMES[s.scanType] : 'Scan'}` : 'Scan');

  const isDicom = s?.originalFormat === 'dicom';
  useEffect(() => {
    if (!isDicom) return;
    const controller = new AbortController();
    fetchPixels(id, controller.signal).then(
      (px) => {
        setPixels(px);
        setWin(px.window);
      },
      (err: unknown) => !controller.signal.aborted && setPixelError(errorMessage(err)),
    );
    return () => controller.abort();
  }, [id, isDicom]);

  useScanStatus(s && s.status === 'processing' ? [s._id] : [], (e) => {
    setLive(e);
    if (e.status !== 'processing') {
      setReport(null);
      scan.reload();
    }
  });

  const model: ModelInfo | undefined = useMemo(
    () => models.data?.models.find((m) => m.task === s?.scanType || m.id === s?.modelResult?.model?.id),
    [models.data, s],
  );
  const markers: Marker[] = useMemo(
    () => [
      ...(s?.annotations ?? []).map((a, i) => ({ x: a.x, y: a.y, label: String(i + 1) })),
      ...(placing ? [{ ...placing, label: String((s?.annotations.length ?? 0) + 1), pending: true }] : []),
    ],
    [s, placing],
  );

  if (scan.error || !s) return <LoadState state={scan} what="scan" />;

  const heatmapUrl = s.modelResult?.heatmapUrl ?? null;
  const region = s.modelResult?.region ?? null;
  const status = live?.status === 'gone' ? 'failed' : (live?.status ?? s.status);

  async function generateReport() {
    setReportBusy(true);
    setReportError(null);
    try {
      const answer = api.POST('/api/scans/{id}/report', { params: { path: { id } } });
      const out = await ok(answer);
      setReport({ url: out.reportUrl, notice: unchangedReportNotice((await answer).response.status, out.message, formatDateTime) });
    } catch (err) {
      setReportError(errorMessage(err));
    } finally {
      setReportBusy(false);
    }
  }

  return (
    <section className="viewer-page">
      <div className="viewer-header">
        <div>
          <p className="breadcrumb">
            <Link to="/">Worklist</Link> / <Link to={`/patients/${s.patient._id}`}>{s.patientName}</Link>
          </p>
          <h1 tabIndex={-1}>
            {s.patientName} <span className="muted h1-sub patient-id" title={s.patientId}>
              {s.patientId}
            </span>
          </h1>
          <p className="meta">
            <span>{s.scanType ? SCAN_TYPE_NAMES[s.scanType] : 'Scan type not set'}</span>
            <span>Scan date {formatDate(s.scanDate)}</span>
            <span>{s.originalFormat.toUpperCase()} · {s.width} × {s.height}</span>
            {s.dicom?.modality && <span>Modality {s.dicom.modality}</span>}
            <StatusBadge status={status} progress={live?.jobStatus?.progress} />
          </p>
          {status === 'processing' && <ProgressBar value={live?.jobStatus?.progress ?? 5} label="Analysis progress" />}
        </div>
        <div className="page-actions">
          {report ? (
            <a className="btn btn-primary" href={report.url} download>
              Download PDF report
            </a>
          ) : (
            <button type="button" className="btn btn-primary" onClick={() => void generateReport()} disabled={reportBusy}>
              {reportBusy ? 'Generating…' : 'Generate report'}
            </button>
          )}
        </div>
      </div>
      {reportError && <Alert>{reportError}</Alert>}
      {report?.notice && <Alert kind="info">{report.notice}</Alert>}

      <div className="viewer-layout">
        <div className="viewer-main card">
          <div className="toolbar" role="toolbar" aria-label="Image tools">
            <div className="tool-group" role="radiogroup" aria-label="Mouse tool">
              {(['pan', ...(pixels ? ['window'] : []), 'annotate'] as Tool[]).map((t) => (
                <button
                  key={t}
                  type="button"
                  role="radio"
                  aria-checked={tool === t}
                  className={`tool ${tool === t ? 'on' : ''}`}
                  onClick={() => setTool(t)}
                >
                  {t === 'pan' ? 'Pan' : t === 'window' ? 'Window/level' : 'Annotate'}
                </button>
              ))}
            </div>
            <div className="tool-group">
              <button type="button" className="tool" onClick={() => viewer.current?.zoomBy(1.25)} aria-label="Zoom in">
                +
              </button>
              <button type="button" className="tool" onClick={() => viewer.current?.zoomBy(0.8)} aria-label="Zoom out">
                −
              </button>
              <button type="button" className="tool" onClick={() => viewer.current?.fit()}>
                Fit
              </button>
            </div>
            {heatmapUrl && (
              <div className="tool-group">
                <label className="check">
                  <input type="checkbox" checked={showHeatmap} onChange={(e) => setShowHeatmap(e.target.checked)} /> Heatmap
                </label>
                <label className="slider">
                  <span>Opacity</span>
                  <input
                    type="range"
                    min={0}
                    max={1}
                    step={0.05}
                    value={opacity}
                    disabled={!showHeatmap}
                    onChange={(e) => setOpacity(Number(e.target.value))}
                    aria-valuetext={`${Math.round(opacity * 100)}%`}
                  />
                </label>
                {region && (
                  <label className="check">
                    <input type="checkbox" checked={showRegion} onChange={(e) => setShowRegion(e.target.checked)} /> Region box
                  </label>
                )}
              </div>
            )}
          </div>
          <ImageViewer
            ref={viewer}
            imageUrl={s.imageUrl}
            width={pixels?.width ?? s.width}
            height={pixels?.height ?? s.height}
            pixels={pixels}
            window={win}
            onWindowChange={setWin}
            heatmapUrl={heatmapUrl}
            showHeatmap={showHeatmap}
            heatmapOpacity={opacity}
            region={region}
            showRegion={showRegion}
            markers={markers}
            tool={tool}
            onPlace={(p) => setPlacing(p)}
            label={`${s.scanType ? SCAN_TYPE_NAMES[s.scanType] : 'Scan'} of ${s.patientName}`}
          />
          {pixels && win && (
            <div className="wl-controls" role="group" aria-label="Window and level">
              <label className="slider">
                <span>Level (centre) {Math.round(win.center)}</span>
                <input
                  type="range"
                  min={Math.floor(pixels.min)}
                  max={Math.ceil(pixels.max)}
                  step={1}
                  value={win.center}
                  onChange={(e) => setWin({ ...win, center: Number(e.target.value) })}
                />
              </label>
              <label className="slider">
                <span>Window (width) {Math.round(win.width)}</span>
                <input
                  type="range"
                  min={1}
                  max={Math.max(2, Math.ceil(pixels.max - pixels.min) * 2)}
                  step={1}
                  value={win.width}
                  onChange={(e) => setWin({ ...win, width: Number(e.target.value) })}
                />
              </label>
              <button type="button" className="btn btn-secondary btn-small" onClick={() => setWin(pixels.window)}>
                Reset window
              </button>
              <button
                type="button"
                className="btn btn-secondary btn-small"
                onClick={() => setWin({ center: (pixels.min + pixels.max) / 2, width: Math.max(1, pixels.max - pixels.min) })}
              >
                Full range
              </button>
            </div>
          )}
          {pixelError && <Alert kind="warning">Window/level is unavailable: {pixelError}</Alert>}
          {tool === 'annotate' && !placing && <p className="hint">Click the image (or press Enter) to place annotation {s.annotations.length + 1}.</p>}
        </div>

        <aside className="viewer-side" aria-label="Findings">
          <ModelFinding scan={s} model={model} />
          {s.status !== 'processing' && (
            <ReviewPanel
              key={s._id}
              scan={s}
              labels={model?.labels ?? []}
              onSaved={(next) => {
                scan.setData(next);
                setReport(null);
              }}
            />
          )}
          <AnnotationsPanel
            scan={s}
            placing={placing}
            onPlacingChange={setPlacing}
            onSaved={(annotations) => {
              scan.setData((old) => ({ ...old!, annotations }));
              setReport(null);
            }}
          />
          <HistoryPanel scan={s} />
        </aside>
      </div>
    </section>
  );
}
