// NoctisPro viewer: one study over DICOMweb, drawn with Cornerstone3D stack viewports.
//
// Start-up order is chosen for the first image: the page lists the series and has already asked for the first
// series' metadata (WADO-RS) while this bundle loads; the displayed slice is requested first and the rest of the
// stack is prefetched outward from it, so the image shows long before the series has arrived.
import './viewer.css';

import {
  Enums,
  RenderingEngine,
  cache,
  eventTarget,
  getRenderingCapabilities,
  getShouldUseCPURendering,
  getWebWorkerManager,
  init as coreInit,
  setUseCPURendering,
} from '@cornerstonejs/core';
import {
  AngleTool,
  EllipticalROITool,
  Enums as ToolEnums,
  LengthTool,
  PanTool,
  RectangleROITool,
  StackScrollTool,
  ToolGroupManager,
  WindowLevelTool,
  ZoomTool,
  addTool,
  annotation as annotationApi,
  init as toolsInit,
  utilities as toolUtils,
} from '@cornerstonejs/tools';
import { init as loaderInit, wadors } from '@cornerstonejs/dicom-image-loader';

import { analysesPanel } from './analyses.js';
import { DicomWeb, TAG, dicomDate, personName, value } from './dicomweb.js';
import { el, setLines } from './dom.js';
import { presetsFor, voiFromWindow, windowFromVoi } from './presets.js';

const config = JSON.parse(document.getElementById('viewer-config').textContent);
const root = document.getElementById('viewer');
const dicomweb = new DicomWeb(config.dicomwebRoot, config.studyUid);

// Frames as stored when compressed (decoded here by the loader's WASM codecs), else uncompressed. The server
// answers with the first range that fits the stored transfer syntax.
const FRAME_ACCEPT = [
  'multipart/related; type="image/jls"',
  'multipart/related; type="image/jpeg"',
  'multipart/related; type="image/jp2"',
  'multipart/related; type="image/jpx"',
  'multipart/related; type="image/jphc"',
  'multipart/related; type="image/dicom-rle"',
  'multipart/related; type="application/octet-stream"; transfer-syntax=*',
].join(', ');

const RENDERING_ENGINE_ID = 'noctis';
const TOOL_GROUP_ID = 'noctis-tools';
const LAYOUTS = { '1x1': [1, 1], '1x2': [1, 2], '2x2': [2, 2] };
const PRIMARY_TOOLS = [
  { id: 'wl', tool: WindowLevelTool, label: 'W/L', key: 'w', title: 'Window/level (drag)' },
  { id: 'pan', tool: PanTool, label: 'Pan', key: 'p', title: 'Pan (also middle button)' },
  { id: 'zoom', tool: ZoomTool, label: 'Zoom', key: 'z', title: 'Zoom (also right button)' },
  { id: 'scroll', tool: StackScrollTool, label: 'Scroll', key: 's', title: 'Scroll by dragging (also wheel)' },
  { id: 'length', tool: LengthTool, label: 'Length', key: 'l', title: 'Length (mm)' },
  { id: 'angle', tool: AngleTool, label: 'Angle', key: 'a', title: 'Angle' },
  { id: 'ellipse', tool: EllipticalROITool, label: 'Ellipse', key: 'e', title: 'Elliptical ROI' },
  { id: 'rect', tool: RectangleROITool, label: 'Rect', key: 'g', title: 'Rectangular ROI' },
];
const WARM_UP_FRAME = {
  rows: 1,
  columns: 1,
  samplesPerPixel: 1,
  bitsAllocated: 16,
  bitsStored: 16,
  highBit: 15,
  pixelRepresentation: 0,
  photometricInterpretation: 'MONOCHROME2',
};
const MEASUREMENT_TOOLS = new Set(['length', 'angle', 'ellipse', 'rect']);
const SHORTCUTS = [
  ['↑ ↓ / wheel', 'previous / next image'],
  ['PgUp PgDn', '10 images'],
  ['Home End', 'first / last image'],
  ['1–5', 'W/L presets (CT: brain, lung, bone, abdomen, soft tissue)'],
  ['0', 'W/L from the image'],
  ['W P Z S', 'W/L, pan, zoom, scroll tool'],
  ['L A E G', 'length, angle, ellipse, rectangle'],
  ['I', 'invert'],
  ['F', 'fit'],
  ['R', 'reset'],
  ['[ ]', 'rotate left / right'],
  ['H V', 'flip horizontal / vertical'],
  ['C / space', 'cine play / stop'],
  ['Del', 'remove the last measurement'],
  ['Tab', 'next viewport'],
];

// --- Test and benchmark hook: read-only state of the active viewport, and a few actions ----------------------
const hook = {
  ready: false,
  error: null,
  rendering: null, // 'cpu' or 'gpu': which Cornerstone path draws
  firstImageAt: null, // performance.now() when the first image was drawn
  lastMeasurement: null,
  measurements: [],
  firstImageLoaded: null, // images of the shown series loaded when the first image was drawn (streaming)
  analyses: null, // the Analyses panel's state: {loaded, error, fetches, analyses, live}
  refreshAnalyses: () => analyses.refresh(),
  state: () => stateOf(activeCell()),
  scrollTo: (index) => scrollTo(activeCell(), index),
  setPreset: (id) => applyPreset(activeCell(), id),
  loadSeries: (uid, cellIndex = activeIndex) => {
    const series = seriesList.find((s) => s.uid === uid);
    if (!series) throw new Error(`no series ${uid}`);
    return loadSeriesInto(cells[cellIndex], series);
  },
  setLayout: (name) => setLayout(name),
  setTool: (id) => setPrimaryTool(id),
};
window.noctisViewer = hook;

// --- DOM skeleton ------------------------------------------------------------------------------------------------
const seriesPanel = el('aside', { cls: 'series-panel', attrs: { 'aria-label': 'Series' } });
const toolbar = el('div', { cls: 'toolbar', attrs: { role: 'toolbar' } });
const grid = el('div', { cls: 'grid' });
const measurementList = el('ol', { cls: 'measurements' });
// Asked for once the first image is drawn (or the viewer fails): not on the critical path to the first image.
const analyses = analysesPanel({
  studyUid: config.studyUid,
  seriesOf: (uid) => (seriesList.length ? seriesList : config.series).find((s) => s.uid === uid),
  onSelectSeries: (uid) => {
    const series = seriesList.find((s) => s.uid === uid);
    if (series) loadSeriesInto(activeCell(), series).catch((e) => showError(String(e.message ?? e)));
  },
});
const side = el('aside', { cls: 'side' }, [
  analyses.node,
  el('h3', { text: 'Measurements' }),
  measurementList,
  el('h3', { text: 'Shortcuts' }),
  el(
    'dl',
    { cls: 'shortcuts' },
    SHORTCUTS.flatMap(([k, v]) => [el('dt', { text: k }), el('dd', { text: v })]),
  ),
]);
const message = el('div', { cls: 'message', attrs: { role: 'status' } });
root.replaceChildren(seriesPanel, el('section', { cls: 'main' }, [toolbar, grid, message]), side);

hook.analyses = analyses.state;

function showError(text) {
  hook.error = text;
  thumbnailsLoad();
  analyses.start();
  root.dataset.state = 'error';
  message.textContent = text;
  message.hidden = false;
}

// --- State -------------------------------------------------------------------------------------------------------
let renderingEngine;
let toolGroup;
let seriesList = [];
const seriesCache = new Map(); // series UID -> Promise<{images, instances}>
const cells = [];
let activeIndex = 0;
let layoutName = '1x1';
let primaryToolId = 'wl';
let cellCounter = 0;

function activeCell() {
  return cells[activeIndex] ?? cells[0];
}

function viewportOf(cell) {
  return cell ? renderingEngine?.getViewport(cell.viewportId) : undefined;
}

function seriesImages(uid) {
  if (!seriesCache.has(uid)) {
    const promise = dicomweb.seriesImages(uid).then((result) => {
      for (const image of result.images) wadors.metaDataManager.add(image.imageId, image.metadata);
      return result;
    });
    promise.catch(() => seriesCache.delete(uid));
    seriesCache.set(uid, promise);
  }
  return seriesCache.get(uid);
}

// --- Viewport cells ------------------------------------------------------------------------------------------------
function cellCreate() {
  cellCounter += 1;
  const element = el('div', { cls: 'vp-element', attrs: { 'data-viewport': `vp-${cellCounter}` } });
  element.addEventListener('contextmenu', (e) => e.preventDefault());
  const overlays = {
    tl: el('div', { cls: 'overlay tl' }),
    tr: el('div', { cls: 'overlay tr' }),
    bl: el('div', { cls: 'overlay bl' }),
    br: el('div', { cls: 'overlay br' }),
  };
  const status = el('div', { cls: 'overlay status' });
  const node = el('div', { cls: 'cell' }, [element, ...Object.values(overlays), status]);
  const cell = {
    viewportId: `vp-${cellCounter}`,
    node,
    element,
    overlays,
    status,
    series: null,
    imageIds: [],
    metadata: new Map(),
    loaded: new Set(),
    lastOverlay: '',
    cine: false,
  };
  node.addEventListener('mousedown', () => activate(cells.indexOf(cell)), true);
  element.addEventListener(Enums.Events.IMAGE_RENDERED, () => {
    overlayUpdate(cell);
    if (!hook.ready && cell.imageIds.length && viewportOf(cell)?.getCurrentImageId()) {
      hook.firstImageAt = performance.now();
      hook.firstImageLoaded = cell.loaded.size;
      hook.ready = true;
      root.dataset.state = 'ready';
      setTimeout(thumbnailsLoad, 0);
      setTimeout(analyses.start, 0);
    }
  });
  return cell;
}

function activate(index) {
  if (index < 0 || index >= cells.length) return;
  activeIndex = index;
  cells.forEach((c, i) => c.node.classList.toggle('active', i === index));
  seriesPanelMark();
  toolbarPresets();
}

function setLayout(name) {
  const [rows, cols] = LAYOUTS[name] ?? LAYOUTS['1x1'];
  layoutName = name in LAYOUTS ? name : '1x1';
  const wanted = rows * cols;
  while (cells.length > wanted) {
    const cell = cells.pop();
    toolUtils.cine.stopClip(cell.element);
    toolUtils.stackPrefetch.disable(cell.element);
    toolGroup.removeViewports(RENDERING_ENGINE_ID, cell.viewportId);
    renderingEngine.disableElement(cell.viewportId);
    cell.node.remove();
  }
  grid.style.gridTemplateRows = `repeat(${rows}, 1fr)`;
  grid.style.gridTemplateColumns = `repeat(${cols}, 1fr)`;
  const added = [];
  while (cells.length < wanted) {
    const cell = cellCreate();
    cells.push(cell);
    grid.append(cell.node);
    added.push(cell);
  }
  for (const cell of added) {
    renderingEngine.enableElement({
      viewportId: cell.viewportId,
      type: Enums.ViewportType.STACK,
      element: cell.element,
      defaultOptions: { background: [0, 0, 0] },
    });
    toolGroup.addViewport(cell.viewportId, RENDERING_ENGINE_ID);
  }
  renderingEngine.resize(true, true);
  // New cells show the series after the last one shown, so 1x2 and 2x2 compare series side by side.
  for (const cell of added) {
    const shown = cells.map((c) => c.series?.uid).filter(Boolean);
    const images = seriesList.filter((s) => s.count > 0);
    const next = images.find((s) => !shown.includes(s.uid)) ?? cells[0]?.series ?? images[0] ?? seriesList[0];
    if (next) loadSeriesInto(cell, next).catch((e) => showError(String(e.message ?? e)));
  }
  activate(Math.min(activeIndex, cells.length - 1));
  toolbar.querySelectorAll('[data-layout]').forEach((b) => b.classList.toggle('on', b.dataset.layout === layoutName));
}

async function loadSeriesInto(cell, series) {
  if (!cell) return;
  toolUtils.cine.stopClip(cell.element);
  cell.cine = false;
  toolUtils.stackPrefetch.disable(cell.element);
  cell.series = series;
  cell.status.textContent = 'Loading…';
  seriesPanelMark();
  const { images } = await seriesImages(series.uid);
  performance.mark('noctis:metadata');
  if (cell.series !== series) return; // another series was chosen meanwhile
  if (!images.length) {
    cell.status.textContent = 'No images in this series';
    thumbnailsLoad();
    return;
  }
  cell.imageIds = images.map((i) => i.imageId);
  cell.metadata = new Map(images.map((i) => [i.imageId, i.metadata]));
  cell.loaded = new Set(cell.imageIds.filter((id) => cache.getImageLoadObject(id)));
  const viewport = viewportOf(cell);
  performance.mark('noctis:setStack');
  await viewport.setStack(cell.imageIds, 0);
  if (cell.series !== series) return;
  viewport.render();
  // The rest of the stack, nearest to the shown image first.
  toolUtils.stackPrefetch.enable(cell.element);
  loadStatus(cell);
  if (cells.indexOf(cell) === activeIndex) toolbarPresets();
}

function loadStatus(cell) {
  const total = cell.imageIds.length;
  cell.status.textContent = cell.loaded.size < total ? `${cell.loaded.size}/${total} loaded` : '';
}

eventTarget.addEventListener(Enums.Events.IMAGE_LOADED, (event) => {
  const imageId = event.detail?.image?.imageId;
  for (const cell of cells) {
    if (imageId && cell.metadata.has(imageId) && !cell.loaded.has(imageId)) {
      cell.loaded.add(imageId);
      loadStatus(cell);
    }
  }
});
eventTarget.addEventListener(Enums.Events.IMAGE_LOAD_FAILED, (event) => {
  const detail = event.detail ?? {};
  const text = `image failed to load: ${detail.error?.message ?? detail.error?.status ?? 'unknown error'}`;
  hook.error = text;
  thumbnailsLoad();
  for (const cell of cells) if (cell.metadata.has(detail.imageId)) cell.status.textContent = text;
});

// --- Overlays (text only) --------------------------------------------------------------------------------------------
function number(v, digits = 1) {
  const n = Number(v);
  return Number.isFinite(n) ? n.toFixed(digits).replace(/\.0+$/, '') : '';
}

function stateOf(cell) {
  const viewport = viewportOf(cell);
  if (!cell || !viewport || !cell.imageIds.length) return { ready: false };
  const index = viewport.getCurrentImageIdIndex();
  const win = windowFromVoi(viewport.getProperties()?.voiRange);
  const presentation = viewport.getViewPresentation?.() ?? {};
  const camera = viewport.getCamera();
  return {
    ready: hook.ready,
    seriesUid: cell.series?.uid ?? null,
    modality: cell.series?.modality ?? '',
    sliceIndex: index,
    sliceCount: cell.imageIds.length,
    loadedCount: cell.loaded.size,
    windowWidth: win ? win.width : null,
    windowCenter: win ? win.center : null,
    zoom: magnification(viewport),
    invert: Boolean(viewport.getProperties()?.invert),
    rotation: presentation.rotation ?? 0,
    flipHorizontal: Boolean(camera.flipHorizontal),
    flipVertical: Boolean(camera.flipVertical),
    cine: cell.cine,
    layout: layoutName,
    viewports: cells.length,
    activeViewport: activeIndex,
    lastMeasurement: hook.lastMeasurement,
  };
}

// Screen (CSS) pixels per image pixel, the same on the CPU and the GPU path.
function magnification(viewport) {
  const spacing = viewport.getImageData?.()?.spacing?.[0];
  if (!spacing) return viewport.getZoom();
  const a = viewport.canvasToWorld([0, 0]);
  const b = viewport.canvasToWorld([100, 0]);
  const mm = Math.hypot(b[0] - a[0], b[1] - a[1], b[2] - a[2]);
  return mm > 0 ? (100 * spacing) / mm : viewport.getZoom();
}

function overlayUpdate(cell) {
  const viewport = viewportOf(cell);
  if (!viewport || !cell.imageIds.length) return;
  const index = viewport.getCurrentImageIdIndex();
  const imageId = cell.imageIds[index];
  const ds = cell.metadata.get(imageId);
  if (!ds) return;
  const win = windowFromVoi(viewport.getProperties()?.voiRange);
  const presentation = viewport.getViewPresentation?.() ?? {};
  const camera = viewport.getCamera();
  const frames = Number(value(ds, TAG.NumberOfFrames) ?? 1);
  const position = value(ds, TAG.SliceLocation) ?? ds[TAG.ImagePositionPatient]?.Value?.[2];
  const thickness = value(ds, TAG.SliceThickness);
  const series = cell.series;
  const lines = {
    tl: [
      personName(value(ds, TAG.PatientName)),
      value(ds, TAG.PatientID) ?? '',
      [dicomDate(value(ds, TAG.PatientBirthDate)), value(ds, TAG.PatientSex)].filter(Boolean).join(' '),
    ],
    tr: [
      value(ds, TAG.InstitutionName) ?? '',
      value(ds, TAG.StudyDescription) ?? '',
      dicomDate(value(ds, TAG.StudyDate)),
      `Se ${series?.number ?? value(ds, TAG.SeriesNumber) ?? ''} ${value(ds, TAG.SeriesDescription) ?? ''}`.trim(),
    ],
    bl: [
      `Im ${index + 1}/${cell.imageIds.length}` + (frames > 1 ? ` (frame ${index % frames + 1}/${frames})` : ''),
      position !== undefined && position !== '' ? `Pos ${number(position, 2)} mm` : '',
      thickness !== undefined && thickness !== '' ? `Thk ${number(thickness, 2)} mm` : '',
      `${value(ds, TAG.Modality) ?? ''} ${value(ds, TAG.Rows) ?? ''}×${value(ds, TAG.Columns) ?? ''}`.trim(),
    ],
    br: [
      win ? `W ${Math.round(win.width)} L ${Math.round(win.center)}` : '',
      `Zoom ${magnification(viewport).toFixed(2)}×`,
      [
        presentation.rotation ? `Rot ${Math.round(presentation.rotation)}°` : '',
        camera.flipHorizontal ? 'Flip H' : '',
        camera.flipVertical ? 'Flip V' : '',
        viewport.getProperties()?.invert ? 'Inverted' : '',
      ]
        .filter(Boolean)
        .join(' '),
    ],
  };
  const key = JSON.stringify(lines);
  if (key === cell.lastOverlay) return; // nothing changed: no DOM work while scrolling through equal text
  cell.lastOverlay = key;
  for (const [corner, text] of Object.entries(lines)) setLines(cell.overlays[corner], text);
}

// --- Series panel ---------------------------------------------------------------------------------------------------
function seriesPanelBuild() {
  const items = seriesList.map((series) => {
    // The thumbnails are rendered by the server: asked for once the first image is drawn, not before it.
    const img = el('img', { attrs: { alt: '', loading: 'lazy', width: 96, height: 96 } });
    img.dataset.src = dicomweb.thumbnailUrl(series.uid);
    img.addEventListener('error', () => img.classList.add('missing'), { once: true });
    const caption = el('span', { cls: 'caption' }, [
      el('b', { text: `${series.modality} #${Number.isNaN(series.number) ? '?' : series.number}` }),
      el('span', { text: series.description }),
      el('span', { cls: 'muted', text: `${series.count} images` }),
    ]);
    const button = el('button', {
      cls: 'series',
      attrs: { type: 'button', 'data-series-uid': series.uid },
      title: series.description,
      on: { click: () => loadSeriesInto(activeCell(), series).catch((e) => showError(String(e.message ?? e))) },
    }, [img, caption]);
    button.draggable = true;
    button.addEventListener('dragstart', (e) => e.dataTransfer.setData('text/x-series-uid', series.uid));
    return button;
  });
  seriesPanel.replaceChildren(el('h3', { text: `Series (${seriesList.length})` }), ...items);
}

function thumbnailsLoad() {
  seriesPanel.querySelectorAll('img[data-src]').forEach((img) => {
    img.src = img.dataset.src;
    img.removeAttribute('data-src');
  });
}

function seriesPanelMark() {
  const current = activeCell()?.series?.uid;
  seriesPanel.querySelectorAll('button.series').forEach((b) => {
    b.classList.toggle('on', b.dataset.seriesUid === current);
  });
}

grid.addEventListener('dragover', (e) => e.preventDefault());
grid.addEventListener('drop', (e) => {
  e.preventDefault();
  const uid = e.dataTransfer.getData('text/x-series-uid');
  const index = cells.findIndex((c) => c.node.contains(e.target));
  const series = seriesList.find((s) => s.uid === uid);
  if (series && index >= 0) {
    activate(index);
    loadSeriesInto(cells[index], series).catch((err) => showError(String(err.message ?? err)));
  }
});

// --- Actions --------------------------------------------------------------------------------------------------------
function scrollTo(cell, index) {
  const viewport = viewportOf(cell);
  if (!viewport || !cell.imageIds.length) return Promise.resolve(null);
  const clamped = Math.max(0, Math.min(cell.imageIds.length - 1, index));
  return new Promise((resolve) => {
    if (viewport.getCurrentImageIdIndex() === clamped) {
      resolve(clamped);
      return;
    }
    const done = () => {
      cell.element.removeEventListener(Enums.Events.IMAGE_RENDERED, done);
      resolve(viewport.getCurrentImageIdIndex());
    };
    cell.element.addEventListener(Enums.Events.IMAGE_RENDERED, done);
    viewport.setImageIdIndex(clamped);
  });
}

function scrollBy(cell, delta) {
  const viewport = viewportOf(cell);
  if (viewport && cell.imageIds.length) scrollTo(cell, viewport.getCurrentImageIdIndex() + delta);
}

function applyPreset(cell, id) {
  const viewport = viewportOf(cell);
  if (!viewport) return false;
  if (id === 'default') {
    viewport.resetProperties();
    viewport.render();
    return true;
  }
  const preset = presetsFor(cell.series?.modality).find((p) => p.id === id);
  if (!preset) return false;
  viewport.setProperties({ voiRange: voiFromWindow(preset.width, preset.center) });
  viewport.render();
  return true;
}

function invert(cell) {
  const viewport = viewportOf(cell);
  if (!viewport) return;
  viewport.setProperties({ invert: !viewport.getProperties().invert });
  viewport.render();
}

function fit(cell) {
  const viewport = viewportOf(cell);
  if (!viewport) return;
  viewport.resetCamera({ resetPan: true, resetZoom: true });
  viewport.render();
}

function reset(cell) {
  const viewport = viewportOf(cell);
  if (!viewport) return;
  viewport.setCamera({ flipHorizontal: false, flipVertical: false });
  viewport.setViewPresentation({ rotation: 0 });
  viewport.resetCamera();
  viewport.resetProperties();
  viewport.render();
}

function rotate(cell, degrees) {
  const viewport = viewportOf(cell);
  if (!viewport) return;
  const current = viewport.getViewPresentation().rotation ?? 0;
  viewport.setViewPresentation({ rotation: (((current + degrees) % 360) + 360) % 360 });
  viewport.render();
}

function flip(cell, horizontal) {
  const viewport = viewportOf(cell);
  if (!viewport) return;
  // Through the camera: the CPU path keeps its flips there (setViewPresentation only flips on the GPU path).
  const camera = viewport.getCamera();
  viewport.setCamera(horizontal ? { flipHorizontal: !camera.flipHorizontal } : { flipVertical: !camera.flipVertical });
  viewport.render();
}

function cineFps(cell) {
  const ds = cell.metadata.get(cell.imageIds[0]);
  const frameTime = Number(value(ds, TAG.FrameTime));
  const rate = Number(value(ds, TAG.RecommendedDisplayFrameRate) ?? value(ds, TAG.CineRate));
  if (rate > 0) return rate;
  if (frameTime > 0) return Math.round(1000 / frameTime);
  return Number(toolbar.querySelector('select.fps')?.value ?? 15);
}

function cineToggle(cell) {
  if (!cell?.imageIds.length) return;
  if (cell.cine) {
    toolUtils.cine.stopClip(cell.element);
    cell.cine = false;
  } else {
    toolUtils.cine.playClip(cell.element, { framesPerSecond: cineFps(cell), loop: true });
    cell.cine = true;
  }
  toolbar.querySelector('[data-action=cine]')?.classList.toggle('on', cell.cine);
}

function setPrimaryTool(id) {
  const entry = PRIMARY_TOOLS.find((t) => t.id === id);
  if (!entry || !toolGroup) return;
  const previous = PRIMARY_TOOLS.find((t) => t.id === primaryToolId);
  if (previous && previous.id !== id) toolGroup.setToolPassive(previous.tool.toolName);
  toolGroup.setToolActive(entry.tool.toolName, { bindings: [{ mouseButton: ToolEnums.MouseBindings.Primary }] });
  primaryToolId = id;
  toolbar.querySelectorAll('[data-tool]').forEach((b) => b.classList.toggle('on', b.dataset.tool === id));
}

function removeLastMeasurement() {
  const last = hook.measurements.at(-1);
  if (!last) return;
  annotationApi.state.removeAnnotation(last.uid);
  renderingEngine.render();
}

// --- Measurements ---------------------------------------------------------------------------------------------------
const TOOL_LABEL = {
  [LengthTool.toolName]: 'Length',
  [AngleTool.toolName]: 'Angle',
  [EllipticalROITool.toolName]: 'Ellipse',
  [RectangleROITool.toolName]: 'Rectangle',
};

function measurementOf(annotation) {
  const toolName = annotation.metadata?.toolName;
  if (!(toolName in TOOL_LABEL)) return null;
  const stats = Object.values(annotation.data?.cachedStats ?? {})[0];
  if (!stats) return null;
  const m = { uid: annotation.annotationUID, tool: TOOL_LABEL[toolName] };
  if (toolName === LengthTool.toolName) {
    if (!Number.isFinite(stats.length)) return null;
    Object.assign(m, { length: stats.length, unit: stats.unit, text: `${stats.length.toFixed(2)} ${stats.unit}` });
  } else if (toolName === AngleTool.toolName) {
    if (!Number.isFinite(stats.angle)) return null;
    Object.assign(m, { angle: stats.angle, unit: '°', text: `${stats.angle.toFixed(1)}°` });
  } else {
    if (!Number.isFinite(stats.area)) return null;
    const unit = stats.modalityUnit ?? '';
    Object.assign(m, {
      area: stats.area,
      areaUnit: stats.areaUnit,
      mean: stats.mean,
      stdDev: stats.stdDev,
      unit: stats.areaUnit,
      text:
        `area ${stats.area.toFixed(2)} ${stats.areaUnit}, ` +
        `mean ${Number(stats.mean).toFixed(1)} ${unit}, SD ${Number(stats.stdDev).toFixed(1)} ${unit}`.trim(),
    });
  }
  return m;
}

function measurementsRefresh() {
  const all = (annotationApi.state.getAllAnnotations?.() ?? []).map(measurementOf).filter(Boolean);
  hook.measurements = all;
  measurementList.replaceChildren(
    ...all.map((m) => el('li', {}, [el('b', { text: `${m.tool} ` }), el('span', { text: m.text })])),
  );
  if (!all.length) measurementList.append(el('li', { cls: 'muted', text: 'None yet' }));
}

// Final: drawn to the end (mouse up) and its stats computed from the final handles. Stats follow the handles at
// the next render, so an annotation completed with handles newer than its stats waits for that StatsUpdated.
const completedAnnotations = new Set();
const awaitingStats = new Set();

function onAnnotation(event) {
  const annotation = event.detail?.annotation;
  if (!annotation) return;
  const uid = annotation.annotationUID;
  if (event.type === ToolEnums.Events.ANNOTATION_COMPLETED) {
    (annotation.invalidated ? awaitingStats : completedAnnotations).add(uid);
  } else if (awaitingStats.has(uid) && event.detail.changeType === ToolEnums.ChangeTypes.StatsUpdated) {
    awaitingStats.delete(uid);
    completedAnnotations.add(uid);
  }
  const m = measurementOf(annotation);
  if (m) hook.lastMeasurement = { ...m, completed: completedAnnotations.has(m.uid) };
  measurementsRefresh();
}
eventTarget.addEventListener(ToolEnums.Events.ANNOTATION_COMPLETED, onAnnotation);
eventTarget.addEventListener(ToolEnums.Events.ANNOTATION_MODIFIED, onAnnotation);
eventTarget.addEventListener(ToolEnums.Events.ANNOTATION_REMOVED, () => {
  measurementsRefresh();
  hook.lastMeasurement = hook.measurements.at(-1) ?? null;
});

// --- Toolbar ---------------------------------------------------------------------------------------------------------
function button(label, { title, data = {}, onClick }) {
  const b = el('button', { text: label, title, attrs: { type: 'button' }, on: { click: onClick } });
  for (const [k, v] of Object.entries(data)) b.dataset[k] = v;
  return b;
}

const presetGroup = el('span', { cls: 'group presets' });

function toolbarPresets() {
  const cell = activeCell();
  const presets = presetsFor(cell?.series?.modality);
  presetGroup.replaceChildren(
    button('Auto', { title: 'W/L from the image (0)', data: { preset: 'default' }, onClick: () => applyPreset(activeCell(), 'default') }),
    ...presets.map((p) =>
      button(p.label, {
        title: `W ${p.width} L ${p.center} (${p.key})`,
        data: { preset: p.id },
        onClick: () => applyPreset(activeCell(), p.id),
      }),
    ),
  );
}

function toolbarBuild() {
  const tools = el(
    'span',
    { cls: 'group tools' },
    PRIMARY_TOOLS.map((t) =>
      button(t.label, { title: `${t.title} (${t.key.toUpperCase()})`, data: { tool: t.id }, onClick: () => setPrimaryTool(t.id) }),
    ),
  );
  const actions = el('span', { cls: 'group actions' }, [
    button('Fit', { title: 'Fit to window (F)', data: { action: 'fit' }, onClick: () => fit(activeCell()) }),
    button('Invert', { title: 'Invert (I)', data: { action: 'invert' }, onClick: () => invert(activeCell()) }),
    button('⟲', { title: 'Rotate left ([)', data: { action: 'rotate-left' }, onClick: () => rotate(activeCell(), -90) }),
    button('⟳', { title: 'Rotate right (])', data: { action: 'rotate-right' }, onClick: () => rotate(activeCell(), 90) }),
    button('Flip H', { title: 'Flip horizontally (H)', data: { action: 'flip-h' }, onClick: () => flip(activeCell(), true) }),
    button('Flip V', { title: 'Flip vertically (V)', data: { action: 'flip-v' }, onClick: () => flip(activeCell(), false) }),
    button('Reset', { title: 'Reset (R)', data: { action: 'reset' }, onClick: () => reset(activeCell()) }),
  ]);
  const fps = el('select', { cls: 'fps', title: 'Cine frames per second' }, [5, 10, 15, 20, 30, 60].map((n) => {
    const o = el('option', { text: `${n} fps`, attrs: { value: n } });
    if (n === 15) o.selected = true;
    return o;
  }));
  const cine = el('span', { cls: 'group cine' }, [
    button('▶ Cine', { title: 'Play / stop (C or space)', data: { action: 'cine' }, onClick: () => cineToggle(activeCell()) }),
    fps,
  ]);
  const layouts = el(
    'span',
    { cls: 'group layouts' },
    Object.keys(LAYOUTS).map((name) => button(name, { title: `Layout ${name}`, data: { layout: name }, onClick: () => setLayout(name) })),
  );
  toolbar.replaceChildren(tools, presetGroup, actions, cine, layouts);
}

// --- Keyboard ---------------------------------------------------------------------------------------------------------
document.addEventListener('keydown', (event) => {
  if (event.ctrlKey || event.metaKey || event.altKey) return;
  if (event.target instanceof HTMLElement && event.target.closest('input, select, textarea')) return;
  const cell = activeCell();
  if (!cell) return;
  const key = event.key;
  const handled = (() => {
    switch (key) {
      case 'ArrowUp':
      case 'ArrowLeft':
        scrollBy(cell, -1);
        return true;
      case 'ArrowDown':
      case 'ArrowRight':
        scrollBy(cell, 1);
        return true;
      case 'PageUp':
        scrollBy(cell, -10);
        return true;
      case 'PageDown':
        scrollBy(cell, 10);
        return true;
      case 'Home':
        scrollTo(cell, 0);
        return true;
      case 'End':
        scrollTo(cell, cell.imageIds.length - 1);
        return true;
      case 'Tab':
        activate((activeIndex + (event.shiftKey ? cells.length - 1 : 1)) % cells.length);
        return true;
      case ' ':
        cineToggle(cell);
        return true;
      case 'Delete':
      case 'Backspace':
        removeLastMeasurement();
        return true;
      case '[':
        rotate(cell, -90);
        return true;
      case ']':
        rotate(cell, 90);
        return true;
      default:
        break;
    }
    const lower = key.toLowerCase();
    if (key === '0') return applyPreset(cell, 'default');
    const preset = presetsFor(cell.series?.modality).find((p) => p.key === key);
    if (preset) return applyPreset(cell, preset.id);
    const tool = PRIMARY_TOOLS.find((t) => t.key === lower);
    if (tool) {
      setPrimaryTool(tool.id);
      return true;
    }
    const actions = { i: invert, f: fit, r: reset, c: cineToggle };
    if (actions[lower]) {
      actions[lower](cell);
      return true;
    }
    if (lower === 'h' || lower === 'v') {
      flip(cell, lower === 'h');
      return true;
    }
    return false;
  })();
  if (handled) event.preventDefault();
});

// --- Start ------------------------------------------------------------------------------------------------------------
async function start() {
  performance.mark('noctis:start'); // marks for make bench-viewer's breakdown of the time to the first image
  root.dataset.state = 'loading';
  // Both requests go out before Cornerstone initialises: they are the critical path to the first image.
  const seriesPromise = dicomweb.seriesList(config.series);
  coreInit();
  // A software rasteriser (no GPU, e.g. a headless browser or a VM) draws stacks faster on the CPU path.
  // ?rendering=gpu|cpu overrides the choice (diagnostics, and to test both paths).
  const capabilities = getRenderingCapabilities?.();
  const forced = new URLSearchParams(window.location.search).get('rendering');
  if (forced === 'cpu' || forced === 'gpu') setUseCPURendering(forced === 'cpu');
  else if (capabilities?.softwareRasterizer) setUseCPURendering(true);
  hook.rendering = getShouldUseCPURendering() ? 'cpu' : 'gpu';
  toolsInit();
  loaderInit({
    maxWebWorkers: Math.max(1, Math.min(4, Math.floor((navigator.hardwareConcurrency || 2) / 2))),
    beforeSend: () => ({ Accept: FRAME_ACCEPT }),
  });
  // Start the decode worker now (a 1-pixel frame), not when the first frame arrives: its start-up and module load
  // would otherwise sit between that frame and the first image.
  getWebWorkerManager()
    .executeTask('dicomImageLoader', 'decodeTask', {
      imageFrame: WARM_UP_FRAME,
      transferSyntax: '1.2.840.10008.1.2.1',
      pixelData: new Uint8Array(2),
      options: { preScale: { enabled: false } },
      decodeConfig: {},
    })
    .catch(() => {}); // only a warm-up: the real frames report their own errors
  for (const t of PRIMARY_TOOLS) addTool(t.tool);
  toolGroup = ToolGroupManager.createToolGroup(TOOL_GROUP_ID);
  for (const t of PRIMARY_TOOLS) toolGroup.addTool(t.tool.toolName);
  toolGroup.setToolActive(StackScrollTool.toolName, { bindings: [{ mouseButton: ToolEnums.MouseBindings.Wheel }] });
  toolGroup.setToolActive(PanTool.toolName, { bindings: [{ mouseButton: ToolEnums.MouseBindings.Auxiliary }] });
  toolGroup.setToolActive(ZoomTool.toolName, { bindings: [{ mouseButton: ToolEnums.MouseBindings.Secondary }] });
  for (const t of PRIMARY_TOOLS) if (MEASUREMENT_TOOLS.has(t.id)) toolGroup.setToolPassive(t.tool.toolName);
  renderingEngine = new RenderingEngine(RENDERING_ENGINE_ID);
  toolbarBuild();
  setPrimaryTool('wl');
  measurementsRefresh();

  performance.mark('noctis:init');
  seriesList = await seriesPromise;
  seriesPanelBuild();
  const first = seriesList.find((s) => s.count > 0) ?? seriesList[0];
  if (!first) {
    showError('This study has no series to show.');
    return;
  }
  seriesImages(first.uid).catch(() => {}); // in flight while the grid is laid out
  setLayout('1x1');
  window.addEventListener('resize', () => renderingEngine.resize(true, true));
}

start().catch((error) => {
  console.error(error);
  showError(`The viewer could not start: ${error?.message ?? error}`);
});
