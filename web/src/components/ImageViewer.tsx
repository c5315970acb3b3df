/**
 * The scan on a canvas: zoom (wheel, buttons, + and -), pan (drag, arrow keys), window/level
 * from a DICOM's original pixel values, the model's heatmap as an overlay with an opacity,
 * the heatmap's region box and the numbered annotations. Every coordinate given out or taken
 * in is in the image's own pixels, whatever the zoom.
 */
import { forwardRef, useCallback, useEffect, useImperativeHandle, useRef, useState, type KeyboardEvent, type PointerEvent } from 'react';
import type { DicomPixels } from '../api/client';
import { applyWindow, dragWindow } from '../lib/window-level';
import { arrowPan, fitView, panBy, placementAt, placementAtCentre, zoomAt as zoomView } from '../lib/viewport';

export type Tool = 'pan' | 'window' | 'annotate';

export interface Marker {
  x: number;
  y: number;
  label: string;
  pending?: boolean;
}

export interface ImageViewerProps {
  imageUrl: string;
  width: number;
  height: number;
  pixels: DicomPixels | null;
  window: { center: number; width: number } | null;
  onWindowChange: (w: { center: number; width: number }) => void;
  heatmapUrl: string | null;
  showHeatmap: boolean;
  heatmapOpacity: number;
  region: { x: number; y: number; width: number; height: number } | null;
  showRegion: boolean;
  markers: Marker[];
  tool: Tool;
  onPlace: (point: { x: number; y: number }) => void;
  label: string;
}

export interface ImageViewerHandle {
  zoomBy: (factor: number) => void;
  fit: () => void;
}

function loadImage(url: string): Promise<HTMLImageElement> {
  return new Promise((resolve, reject) => {
    const img = new Image();
    img.decoding = 'async';
    img.onload = () => resolve(img);
    img.onerror = () => reject(new Error('image failed to load'));
    img.src = url;
  });
}

/** Renders modality values through a linear window (DICOM PS3.3 C.11.2.1.2) into a canvas. */
function renderWindow(pixels: DicomPixels, win: { center: number; width: number }, target: HTMLCanvasElement): void {
  target.width = pixels.width;
  target.height = pixels.height;
  const ctx = target.getContext('2d')!;
  const image = ctx.createImageData(pixels.width, pixels.height);
  applyWindow(pixels, win, image.data);
  ctx.putImageData(image, 0, 0);
}

export const ImageViewer = forwardRef<ImageViewerHandle, ImageViewerProps>(function ImageViewer(props, ref) {
  const { imageUrl, width, height, pixels, window: win, heatmapUrl, showHeatmap, heatmapOpacity, region, showRegion, markers, tool } = props;
  const wrap = useRef<HTMLDivElement>(null);
  const canvas = useRef<HTMLCanvasElement>(null);
  const base = useRef<HTMLCanvasElement | HTMLImageElement | null>(null);
  const heat = useRef<HTMLImageElement | null>(null);
  const view = useRef({ scale: 1, x: 0, y: 0, fitted: false });
  const drag = useRef<{ x: number; y: number; moved: boolean; win?: { center: number; width: number } } | null>(null);
  const [size, setSize] = useState({ w: 0, h: 0 });
  const [version, setVersion] = useState(0);
  const [status, setStatus] = useState<'loading' | 'ready' | 'error'>('loading');
  // The heatmap arrives apart from the image and, since it is drawn on its first read, can come
  // a moment later; its state is on the canvas so that a test (or a screen reader) can tell.
  const [heatStatus, setHeatStatus] = useState<'none' | 'loading' | 'ready' | 'error'>('none');
  /** Milliseconds the last window/level rendering took (shown to the browser test, measured). */
  const [renderMs, setRenderMs] = useState<number | null>(null);
  const redraw = () => setVersion((v) => v + 1);

  // Canvas size follows its box.
  useEffect(() => {
    const el = wrap.current;
    if (!el) return;
    const ro = new ResizeObserver(([entry]) => {
      if (!entry) return;
      setSize({ w: Math.round(entry.contentRect.width), h: Math.round(entry.contentRect.height) });
    });
    ro.observe(el);
    return () => ro.disconnect();
  }, []);

  const fit = useCallback(() => {
    if (!size.w || !size.h) return;
    view.current = { ...fitView({ width: size.w, height: size.h }, { width, height }), fitted: true };
    redraw();
  }, [size.w, size.h, width, height]);

  useEffect(() => {
    if (!view.current.fitted || size.w) fit();
  }, [fit, size.w]);

  const zoomAt = useCallback((factor: number, cx: number, cy: number) => {
    view.current = { ...zoomView(view.current, factor, cx, cy), fitted: true };
    redraw();
  }, []);

  useImperativeHandle(ref, () => ({ zoomBy: (f) => zoomAt(f, size.w / 2, size.h / 2), fit }), [zoomAt, fit, size]);

  // The base image: the windowed DICOM pixels, else the rendered PNG.
  useEffect(() => {
    if (pixels && win) {
      const off = base.current instanceof HTMLCanvasElement ? base.current : document.createElement('canvas');
      const started = performance.now();
      renderWindow(pixels, win, off);
      setRenderMs(performance.now() - started);
      base.current = off;
      setStatus('ready');
      redraw();
      return;
    }
    if (pixels) return;
    let live = true;
    setStatus('loading');
    loadImage(imageUrl).then(
      (img) => {
        if (!live) return;
        base.current = img;
        setStatus('ready');
        redraw();
      },
      () => live && setStatus('error'),
    );
    return () => {
      live = false;
    };
  }, [imageUrl, pixels, win]);

  useEffect(() => {
    heat.current = null;
    if (!heatmapUrl) {
      setHeatStatus('none');
      return;
    }
    let live = true;
    setHeatStatus('loading');
    loadImage(heatmapUrl).then(
      (img) => {
        if (!live) return;
        heat.current = img;
        setHeatStatus('ready');
        redraw();
      },
      () => live && setHeatStatus('error'),
    );
    return () => {
      live = false;
    };
  }, [heatmapUrl]);

  // Draw.
  useEffect(() => {
    const el = canvas.current;
    if (!el || !size.w) return;
    const dpr = window.devicePixelRatio || 1;
    el.width = Math.round(size.w * dpr);
    el.height = Math.round(size.h * dpr);
    const ctx = el.getContext('2d')!;
    ctx.setTransform(1, 0, 0, 1, 0, 0);
    ctx.fillStyle = '#05080d';
    ctx.fillRect(0, 0, el.width, el.height);
    if (!base.current) return;
    const v = view.current;
    ctx.setTransform(dpr * v.scale, 0, 0, dpr * v.scale, dpr * v.x, dpr * v.y);
    ctx.imageSmoothingEnabled = v.scale < 2;
    ctx.drawImage(base.current, 0, 0, width, height);
    if (showHeatmap && heat.current) {
      ctx.globalAlpha = heatmapOpacity;
      ctx.imageSmoothingEnabled = true;
      ctx.drawImage(heat.current, 0, 0, width, height);
      ctx.globalAlpha = 1;
    }
    const px = 1 / v.scale;
    if (showRegion && region) {
      ctx.lineWidth = 2 * px;
      ctx.setLineDash([6 * px, 4 * px]);
      ctx.strokeStyle = '#facc15';
      ctx.strokeRect(region.x, region.y, region.width, region.height);
      ctx.setLineDash([]);
    }
    markers.forEach((m) => {
      const r = 11 * px;
      ctx.beginPath();
      ctx.arc(m.x, m.y, r, 0, Math.PI * 2);
      ctx.fillStyle = m.pending ? '#f97316' : '#2563eb';
      ctx.fill();
      ctx.lineWidth = 2 * px;
      ctx.strokeStyle = '#ffffff';
      ctx.stroke();
      ctx.fillStyle = '#ffffff';
      ctx.font = `bold ${12 * px}px system-ui, sans-serif`;
      ctx.textAlign = 'center';
      ctx.textBaseline = 'middle';
      ctx.fillText(m.label, m.x, m.y + 0.5 * px);
    });
  }, [version, size, width, height, showHeatmap, heatmapOpacity, showRegion, region, markers]);

  /** The canvas point of a pointer position (client coordinates). */
  const onCanvas = (clientX: number, clientY: number) => {
    const rect = canvas.current!.getBoundingClientRect();
    return { x: clientX - rect.left, y: clientY - rect.top };
  };

  const onPointerDown = (e: PointerEvent<HTMLCanvasElement>) => {
    e.currentTarget.setPointerCapture(e.pointerId);
    drag.current = { x: e.clientX, y: e.clientY, moved: false, ...(win ? { win } : {}) };
  };
  const onPointerMove = (e: PointerEvent<HTMLCanvasElement>) => {
    const d = drag.current;
    if (!d) return;
    const dx = e.clientX - d.x;
    const dy = e.clientY - d.y;
    if (!d.moved && Math.hypot(dx, dy) < 4) return;
    d.moved = true;
    if (tool === 'window' && d.win && pixels) {
      props.onWindowChange(dragWindow(d.win, dx, dy, pixels.max - pixels.min));
      return;
    }
    view.current = { ...view.current, ...panBy(view.current, e.movementX, e.movementY) };
    redraw();
  };
  const onPointerUp = (e: PointerEvent<HTMLCanvasElement>) => {
    const d = drag.current;
    drag.current = null;
    if (!d || d.moved || tool !== 'annotate') return;
    const p = placementAt(view.current, onCanvas(e.clientX, e.clientY), { width, height });
    if (p) props.onPlace(p);
  };

  const onKeyDown = (e: KeyboardEvent) => {
    const v = view.current;
    const move = arrowPan(e.key);
    if (move) {
      e.preventDefault();
      view.current = { ...v, ...panBy(v, move[0], move[1]) };
      redraw();
    } else if (e.key === '+' || e.key === '=') {
      e.preventDefault();
      zoomAt(1.25, size.w / 2, size.h / 2);
    } else if (e.key === '-') {
      e.preventDefault();
      zoomAt(0.8, size.w / 2, size.h / 2);
    } else if (e.key === '0') {
      e.preventDefault();
      fit();
    } else if (e.key === 'Enter' && tool === 'annotate') {
      // Keyboard placement: the point at the centre of the view.
      e.preventDefault();
      const p = placementAtCentre(v, { width: size.w, height: size.h }, { width, height });
      if (p) props.onPlace(p);
    }
  };

  // Wheel zoom needs a non-passive listener to keep the page from scrolling.
  useEffect(() => {
    const el = canvas.current;
    if (!el) return;
    const onWheel = (e: WheelEvent) => {
      e.preventDefault();
      const rect = el.getBoundingClientRect();
      zoomAt(e.deltaY < 0 ? 1.15 : 1 / 1.15, e.clientX - rect.left, e.clientY - rect.top);
    };
    el.addEventListener('wheel', onWheel, { passive: false });
    return () => el.removeEventListener('wheel', onWheel);
  }, [zoomAt]);

  return (
    <div ref={wrap} className={`viewer-canvas-wrap tool-${tool}`}>
      <canvas
        ref={canvas}
        className="viewer-canvas"
        tabIndex={0}
        role="img"
        aria-label={`${props.label}. Arrow keys pan, plus and minus zoom, 0 fits${tool === 'annotate' ? ', Enter places an annotation at the centre' : ''}.`}
        data-ready={status === 'ready' ? 'true' : 'false'}
        data-heatmap={heatStatus}
        data-window={win ? `${Math.round(win.center)}/${Math.round(win.width)}` : ''}
        data-render-ms={renderMs === null ? undefined : renderMs.toFixed(1)}
        style={{ width: size.w, height: size.h }}
        onPointerDown={onPointerDown}
        onPointerMove={onPointerMove}
        onPointerUp={onPointerUp}
        onKeyDown={onKeyDown}
      />
      {status === 'loading' && <p className="viewer-message" role="status">Loading image…</p>}
      {status === 'error' && <p className="viewer-message" role="alert">The image could not be loaded. Reload the page for a fresh link.</p>}
      {status === 'ready' && showHeatmap && heatStatus === 'error' && (
        <p className="viewer-message" role="alert">The heatmap could not be loaded. Reload the page for a fresh link.</p>
      )}
    </div>
  );
});
