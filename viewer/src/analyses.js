// The Analyses panel: the study's AI analyses (GET /api/v1/studies/{uid}/analyses, same-origin, session cookie),
// each with its status and a one-line summary, refreshed when `analysis.completed` for this study arrives on /ws.
// A series-scoped analysis selects its series when clicked. The result JSON can carry DICOM text: everything goes
// in through textContent (dom.js), never innerHTML.
//
// Each analysis' `label` and `summary` come from the API (noctis_pro/contracts/analysis_summaries.py), so the viewer
// says what the worklist's AI badge says.
import { el } from './dom.js';

const STATUS_ORDER = { running: 0, pending: 1, failed: 2, done: 3 };
const COALESCE_MS = 200; // a study analysed per series sends a burst of events: one fetch per burst

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
    const label = (a.label ?? a.analyzer) + (series && Number.isFinite(series.number) ? ` #${series.number}` : '');
    const summary = a.summary ?? a.status;
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
