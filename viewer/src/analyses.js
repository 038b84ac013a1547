// The Analyses panel: the study's AI analyses (GET /api/v1/studies/{uid}/analyses, same-origin, session cookie),
// each with its status and a one-line summary, refreshed when `analysis.completed` for this study arrives on /ws.
// A series-scoped analysis selects its series when clicked. The result JSON can carry DICOM text: everything goes
// in through textContent (dom.js), never innerHTML.
//
// The summaries follow noctis_pro/ai/summaries.py (the worklist's AI badge), so both pages say the same thing.
import { el } from './dom.js';

const STATUS_ORDER = { running: 0, pending: 1, failed: 2, done: 3 };
const SUMMARY_MAX = 120;
const COALESCE_MS = 200; // a study analysed per series sends a burst of events: one fetch per burst

function num(v, digits = 1) {
  return typeof v === 'number' && Number.isFinite(v) ? v.toFixed(digits) : null;
}

// [12, 13, 14, 20] -> "12-14, 20" (at most 5 runs, then "…").
function ranges(numbers) {
  const values = [...new Set((numbers ?? []).filter((n) => Number.isInteger(n)))].sort((a, b) => a - b);
  const runs = [];
  for (const n of values) {
    if (runs.length && n === runs.at(-1)[1] + 1) runs.at(-1)[1] = n;
    else runs.push([n, n]);
  }
  const text = runs.slice(0, 5).map(([a, b]) => (b > a ? `${a}-${b}` : `${a}`)).join(', ');
  return text + (runs.length > 5 ? ', …' : '');
}

function inventory(r) {
  const text = `${r.series_count ?? '?'} series, ${r.instance_count ?? '?'} images`;
  const gaps = (Array.isArray(r.series) ? r.series : [])
    .filter((s) => s && typeof s === 'object' && s.instance_number_gaps?.length)
    .map((s) => ranges(s.instance_number_gaps));
  if (gaps.length) return `${text}, gap at ${gaps.join('; ')}`;
  return text + (present(r.complete) ? ', no gaps' : '');
}

// Python's truthiness, which the result JSON was written for: an empty list is "none".
function present(v) {
  return Array.isArray(v) ? v.length > 0 : Boolean(v);
}

function completeness(r) {
  const problems = [];
  const missing = Array.isArray(r.missing_instance_numbers) ? ranges(r.missing_instance_numbers) : '';
  if (missing) problems.push(`gap at ${missing}`);
  if (present(r.missing_slices)) problems.push(`${r.missing_slices} slice(s) missing`);
  if (present(r.duplicate_instance_numbers) || present(r.duplicate_positions)) problems.push('duplicates');
  if (present(r.uneven_spacing)) problems.push('uneven spacing');
  if (present(r.mixed_orientations)) problems.push('mixed orientations');
  if (present(r.mixed_sizes)) problems.push('mixed sizes');
  if (problems.length) return problems.join(', ');
  return present(r.complete) ? 'complete' : `${r.instances ?? '?'} images`;
}

function quality(r) {
  const parts = [];
  const snr = num(r.snr);
  if (snr !== null) parts.push(`SNR ${snr}`);
  const noise = num(r.noise_sd);
  if (noise !== null) parts.push(`noise SD ${noise}`);
  const air = num(r.ct_air_hu, 0);
  if (air !== null) parts.push(`air ${air} HU` + (r.ct_air_within_tolerance ?? true ? '' : ' (off)'));
  if (typeof r.saturated_fraction === 'number' && r.saturated_fraction > 0.01) {
    parts.push(`${Math.round(r.saturated_fraction * 100)}% saturated`);
  }
  return parts.join(', ') || 'measured';
}

function dose(r) {
  const parts = [];
  const ctdi = num(r.ctdivol_max_mgy);
  if (ctdi !== null) parts.push(`CTDIvol ${ctdi} mGy`);
  const dlp = num(r.dlp_total_mgy_cm);
  if (dlp !== null) parts.push(`DLP ${dlp} mGy·cm`);
  return parts.join(', ') || 'no dose values';
}

// An ONNX model (or a plugin reporting labelled outputs): its top label and score.
function model(r) {
  const top = r.top_label;
  if (r.outputs && typeof r.outputs === 'object' && typeof top === 'string' && num(r.outputs[top], 2) !== null) {
    return `${top} ${num(r.outputs[top], 2)}`;
  }
  if (Array.isArray(r.values) && num(r.values[0], 3) !== null) {
    return `output ${num(r.values[0], 3)}` + (r.values.length > 1 ? ` (+${r.values.length - 1})` : '');
  }
  return 'done';
}

const SUMMARISERS = { study_inventory: inventory, series_completeness: completeness, image_quality: quality, radiation_dose: dose };
export const LABELS = {
  study_inventory: 'inventory',
  series_completeness: 'completeness',
  image_quality: 'quality',
  radiation_dose: 'dose',
};

// The text after the label: "complete", "gap at 12-14", "failed (reason)", "pending".
export function analysisSummary(analysis) {
  let text;
  if (analysis.status === 'failed') {
    const reason = String(analysis.error ?? '').trim().split('\n')[0];
    text = reason ? `failed (${reason})` : 'failed';
  } else if (analysis.status !== 'done') {
    text = String(analysis.status);
  } else if (!analysis.result || typeof analysis.result !== 'object' || Array.isArray(analysis.result)) {
    text = 'done';
  } else {
    try {
      text = (SUMMARISERS[analysis.analyzer] ?? model)(analysis.result);
    } catch {
      text = 'done'; // a result of an unexpected shape
    }
  }
  return text.length <= SUMMARY_MAX ? text : `${text.slice(0, SUMMARY_MAX - 1)}…`;
}

// An analyzer asked for again has several rows: the newest per (analyzer, series) is the one that counts.
function latest(analyses) {
  const seen = new Map();
  for (const a of analyses) {
    const key = `${a.analyzer}|${a.series_uid ?? ''}`;
    const kept = seen.get(key);
    if (!kept || a.id > kept.id) seen.set(key, a);
  }
  return [...seen.values()];
}

/**
 * The panel. `seriesOf(uid)` gives the page's series entry ({uid, number, description}) or undefined;
 * `onSelectSeries(uid)` shows a series. Returns {node, refresh, state}.
 */
export function analysesPanel({ studyUid, seriesOf, onSelectSeries }) {
  const list = el('ul', { cls: 'analyses' });
  const node = el('section', { cls: 'analyses-panel', attrs: { 'aria-label': 'Analyses' } }, [
    el('h3', { text: 'Analyses' }),
    list,
  ]);
  const url = `/api/v1/studies/${encodeURIComponent(studyUid)}/analyses`;
  const state = { loaded: false, error: null, fetches: 0, analyses: [], live: false };
  let selected = null;
  let inflight = null;
  let again = false;
  let scheduled = null;
  let reconnecting = false;
  let started = false;

  function row(a) {
    const series = a.series_uid ? seriesOf(a.series_uid) : undefined;
    const label = (LABELS[a.analyzer] ?? a.analyzer) + (series && Number.isFinite(series.number) ? ` #${series.number}` : '');
    const summary = analysisSummary(a);
    const children = [
      el('span', { cls: 'name', text: label }),
      el('span', { cls: `status ${a.status}`, text: a.status }),
      el('span', { cls: 'summary', text: summary }),
    ];
    const attrs = { 'data-analyzer': a.analyzer, 'data-status': a.status };
    const title = [a.error, series?.description].filter(Boolean).join('\n');
    if (!a.series_uid) return el('li', { cls: 'analysis', attrs, title }, children);
    // Series-scoped: a button that shows (and marks) the series analysed.
    attrs['data-series-uid'] = a.series_uid;
    attrs.type = 'button';
    const item = el('button', {
      cls: `analysis series-scoped${selected === a.series_uid ? ' on' : ''}`,
      attrs,
      title: title || 'Show this series',
      on: {
        click: () => {
          selected = a.series_uid;
          list.querySelectorAll('.analysis.series-scoped').forEach((b) => {
            b.classList.toggle('on', b.dataset.seriesUid === selected);
          });
          onSelectSeries(a.series_uid);
        },
      },
    }, children);
    return el('li', {}, [item]);
  }

  function render() {
    const shown = latest(state.analyses).sort(
      (a, b) =>
        (STATUS_ORDER[a.status] ?? 9) - (STATUS_ORDER[b.status] ?? 9) ||
        String(a.analyzer).localeCompare(String(b.analyzer)) ||
        (seriesOf(a.series_uid)?.number ?? 0) - (seriesOf(b.series_uid)?.number ?? 0),
    );
    if (state.error) list.replaceChildren(el('li', { cls: 'error', text: state.error }));
    else if (!shown.length) list.replaceChildren(el('li', { cls: 'muted', text: 'None yet' }));
    else list.replaceChildren(...shown.map(row));
  }

  async function fetchOnce() {
    state.fetches += 1;
    try {
      const response = await fetch(url, { credentials: 'same-origin', headers: { Accept: 'application/json' } });
      if (!response.ok) {
        let detail = '';
        try {
          detail = (await response.json())?.detail ?? '';
        } catch {
          // not JSON: the status says enough
        }
        throw new Error(`analyses: HTTP ${response.status}${detail ? ` (${detail})` : ''}`);
      }
      const body = await response.json();
      state.analyses = Array.isArray(body) ? body : [];
      state.error = null;
    } catch (error) {
      state.error = String(error?.message ?? error);
    }
    state.loaded = true;
    render();
  }

  // One fetch at a time; an event during a fetch asks for one more after it.
  function refresh() {
    if (inflight) {
      again = true;
      return inflight;
    }
    inflight = fetchOnce().finally(() => {
      inflight = null;
      if (again) {
        again = false;
        refresh();
      }
    });
    return inflight;
  }

  function connect(delay = 1000) {
    const scheme = window.location.protocol === 'https:' ? 'wss://' : 'ws://';
    const socket = new WebSocket(`${scheme}${window.location.host}/ws/`);
    let next = delay;
    socket.onopen = () => {
      if (reconnecting) refresh(); // anything that finished while the socket was down
      next = 1000;
      state.live = true;
    };
    socket.onmessage = (message) => {
      let event;
      try {
        event = JSON.parse(message.data);
      } catch {
        return;
      }
      if (event?.type === 'analysis.completed' && event.study_instance_uid === studyUid && !scheduled) {
        scheduled = setTimeout(() => {
          scheduled = null;
          refresh();
        }, COALESCE_MS);
      }
    };
    socket.onclose = () => {
      reconnecting = true;
      state.live = false;
      setTimeout(() => connect(Math.min(next * 2, 30000)), next);
    };
  }

  render();
  return {
    node,
    state,
    refresh,
    start: () => {
      if (started) return;
      started = true;
      refresh();
      connect();
    },
  };
}
