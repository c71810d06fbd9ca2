// The operator dashboard, GET /dashboard. Plain ES module, no build step, no chart library.
//
// The stream list comes from GET /v1/streams, then stays current from the WebSocket /v1/events
// (status changes, and a metrics message per live stream each second). The selected stream's
// charts are seeded from GET /v1/streams/{stream}/metrics?seconds=120 and appended from the
// same WebSocket. Streams that end stay listed with their status.

const WINDOW_MS = 120_000;
const RECONNECT_MIN_MS = 1000;
const RECONNECT_MAX_MS = 10_000;

const $ = (id) => document.getElementById(id);
const tbody = $('streams');

/** name -> {stream, status, epoch, renditions, metrics, row} */
const streams = new Map();
/** name -> samples (oldest first), each a metrics object with at_ms */
const series = new Map();
let selected = null;
let chosen = false; // the operator (or ?stream=) picked one: no auto-selection

const initial = new URLSearchParams(location.search).get('stream');
if (initial) {
  selected = initial;
  chosen = true;
}

// ---- formatting ----

const num = (v) => (typeof v === 'number' && Number.isFinite(v) ? v : null);
const int = (v) => (num(v) === null ? '–' : String(Math.round(v)));
const kbps = int;

function setNumber(id, v, text = int(v)) {
  const el = $(id);
  el.textContent = text;
  if (num(v) === null) el.removeAttribute('data-value');
  else el.dataset.value = String(v);
}

// ---- the list ----

function upsert(name, patch) {
  let s = streams.get(name);
  if (!s) {
    s = { stream: name, status: null, epoch: null, renditions: [], metrics: null, row: null };
    streams.set(name, s);
  }
  Object.assign(s, patch);
  renderRow(s);
  return s;
}

function renderRow(s) {
  if (!s.row) {
    const tr = document.createElement('tr');
    tr.dataset.stream = s.stream;
    tr.tabIndex = 0;
    tr.innerHTML = '<td class="name"></td><td><span class="badge"></span></td>' +
      '<td class="num viewers"></td><td class="num ingress"></td><td class="num health"></td>';
    tr.addEventListener('click', () => select(s.stream, true));
    tr.addEventListener('keydown', (e) => {
      if (e.key === 'Enter' || e.key === ' ') {
        e.preventDefault();
        select(s.stream, true);
      }
    });
    tr.querySelector('.name').textContent = s.stream;
    s.row = tr;
    insertSorted(tr);
    $('no-streams').hidden = true;
  }
  const m = s.metrics || {};
  const viewers = currentViewers(s);
  const tr = s.row;
  tr.dataset.status = s.status || 'UNKNOWN';
  tr.dataset.viewers = String(viewers);
  tr.setAttribute('aria-selected', String(s.stream === selected));
  const badge = tr.querySelector('.badge');
  badge.dataset.status = s.status || '';
  badge.textContent = statusText(s.status);
  tr.querySelector('.viewers').textContent = String(viewers);
  tr.querySelector('.ingress').textContent = isLive(s) ? kbps(m.ingress_bitrate_kbps) : '–';
  tr.querySelector('.health').textContent = isLive(s) ? int(m.health) : '–';
}

function insertSorted(tr) {
  const name = tr.dataset.stream;
  const after = [...tbody.children].find((r) => r.dataset.stream.localeCompare(name) > 0);
  tbody.insertBefore(tr, after || null);
}

const isLive = (s) => Boolean(s && s.status === 'ACTIVE');

/** Metrics stop when a stream stops being live, and so does its audience. */
const currentViewers = (s) => (isLive(s) ? num(s.metrics && s.metrics.concurrent_viewers) ?? 0 : 0);

function statusText(st) {
  switch (st) {
    case 'ACTIVE': return 'live';
    case 'PENDING_INGEST': return 'pending';
    case 'ENDED_GRACEFULLY': return 'ended';
    case 'ERROR': return 'error';
    default: return st ? String(st).toLowerCase() : '…';
  }
}

// ---- selection ----

function select(name, byUser) {
  if (byUser) {
    chosen = true;
    const url = new URL(location.href);
    url.searchParams.set('stream', name);
    history.replaceState(null, '', url);
  }
  if (selected === name) {
    renderDetail();
    return;
  }
  selected = name;
  for (const s of streams.values()) if (s.row) s.row.setAttribute('aria-selected', String(s.stream === name));
  renderDetail();
  seedSeries(name);
}

function autoSelect() {
  if (chosen) {
    if (selected) renderDetail();
    return;
  }
  if (selected && isLive(streams.get(selected))) return;
  const live = [...streams.values()].filter(isLive).map((s) => s.stream).sort();
  if (live.length) select(live[0], false);
}

async function seedSeries(name) {
  try {
    const r = await fetch(`/v1/streams/${encodeURIComponent(name)}/metrics?seconds=120`, { cache: 'no-store' });
    if (!r.ok) return;
    const body = await r.json();
    const fetched = Array.isArray(body.samples) ? body.samples.filter((x) => num(x.at_ms) !== null) : [];
    const last = fetched.length ? fetched[fetched.length - 1].at_ms : -Infinity;
    // Keep what the WebSocket delivered after the last fetched sample.
    const newer = (series.get(name) || []).filter((x) => x.at_ms > last);
    series.set(name, trim(fetched.concat(newer)));
    if (name === selected) renderDetail();
  } catch {
    // The history endpoint is optional for the page: live samples still arrive.
  }
}

function trim(list) {
  if (!list.length) return list;
  const newest = list[list.length - 1].at_ms;
  const from = list.findIndex((x) => x.at_ms >= newest - WINDOW_MS - 2000);
  return from > 0 ? list.slice(from) : list;
}

function renderDetail() {
  const s = selected ? streams.get(selected) : null;
  $('selected-name').textContent = selected || 'No stream selected';
  const st = $('selected-status');
  st.hidden = !s;
  if (s) {
    st.dataset.status = s.status || '';
    st.textContent = statusText(s.status);
  }
  const link = $('watch-link');
  link.hidden = !selected;
  if (selected) link.href = `/watch/${encodeURIComponent(selected)}`;

  const m = (s && s.metrics) || {};
  setNumber('viewers', s && s.metrics ? currentViewers(s) : null);
  setNumber('total-viewers', m.total_viewers);
  setNumber('ingress', m.ingress_bitrate_kbps);
  setNumber('egress', m.egress_bitrate_kbps);
  setNumber('health', m.health);
  setNumber('dropped', m.dropped_frames);
  setNumber('buffering', m.buffering_events);
  $('fps').textContent = num(m.fps) === null ? '–' : m.fps.toFixed(1);
  $('resolution').textContent = m.width && m.height ? `${m.width}×${m.height}` : '–';
  $('codecs').textContent = [m.video_codec, m.audio_codec].filter(Boolean).join(', ') || '–';
  $('stall-rate').textContent = num(m.stall_rate) === null ? '–' : `${(m.stall_rate * 100).toFixed(1)} %`;
  $('epoch').textContent = s && s.epoch !== null && s.epoch !== undefined ? String(s.epoch) : '–';
  $('renditions').textContent = s && s.renditions && s.renditions.length ? s.renditions.join(', ') : '–';
  renderQuality(s, isLive(s) ? m.quality : null);
  drawCharts();
}

function renditionRank(name) {
  if (name === 'source') return -1;
  const h = parseInt(name, 10);
  return Number.isFinite(h) ? -h / 10000 : 0; // higher first, unknown names last
}

function renderQuality(s, quality) {
  const box = $('quality');
  const counts = Object.assign({}, quality || {});
  for (const r of (s && s.renditions) || []) if (!(r in counts)) counts[r] = 0;
  const names = Object.keys(counts).sort((a, b) => renditionRank(a) - renditionRank(b) || a.localeCompare(b));
  if (!names.length) {
    box.innerHTML = '<div class="muted small">No data.</div>';
    return;
  }
  const total = names.reduce((t, n) => t + (num(counts[n]) || 0), 0);
  box.replaceChildren(...names.map((n) => {
    const c = num(counts[n]) || 0;
    const row = document.createElement('div');
    row.className = 'qbar';
    row.dataset.rendition = n;
    row.dataset.viewers = String(c);
    row.innerHTML = '<span class="name"></span><div class="track"><div class="fill"></div></div><span class="count"></span>';
    row.querySelector('.name').textContent = n;
    row.querySelector('.count').textContent = String(c);
    row.querySelector('.fill').style.width = `${total ? (100 * c) / total : 0}%`;
    return row;
  }));
}

// ---- charts (hand-drawn on canvas) ----

function cssVar(name) {
  return getComputedStyle(document.documentElement).getPropertyValue(name).trim();
}

function niceMax(v) {
  if (!(v > 0)) return 1;
  const p = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= v) return m * p;
  return 10 * p;
}

/** Lines: [{key, color}]; samples oldest first; `integer`: counts (whole-number grid lines). */
function drawChart(canvas, samples, lines, integer) {
  const dpr = window.devicePixelRatio || 1;
  const w = canvas.clientWidth;
  const h = canvas.clientHeight;
  if (!w || !h) return;
  if (canvas.width !== Math.round(w * dpr) || canvas.height !== Math.round(h * dpr)) {
    canvas.width = Math.round(w * dpr);
    canvas.height = Math.round(h * dpr);
  }
  const ctx = canvas.getContext('2d');
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  ctx.clearRect(0, 0, w, h);

  const pad = { l: 48, r: 10, t: 8, b: 20 };
  const pw = w - pad.l - pad.r;
  const ph = h - pad.t - pad.b;
  const ink = cssVar('--muted') || '#666';
  const grid = cssVar('--line') || '#ddd';
  ctx.font = '11px system-ui, sans-serif';

  // The x axis ends at the newest sample (server time): no dependence on the browser's clock.
  const end = samples.length ? samples[samples.length - 1].at_ms : 0;
  const start = end - WINDOW_MS;
  let max = 0;
  for (const s of samples) for (const l of lines) max = Math.max(max, num(s[l.key]) || 0);
  let steps = 4;
  if (integer) {
    max = Math.max(1, Math.ceil(max * 1.05));
    steps = Math.min(4, max);
    max = Math.ceil(max / steps) * steps;
  } else {
    max = niceMax(max * 1.05);
  }
  const x = (t) => pad.l + ((t - start) / WINDOW_MS) * pw;
  const y = (v) => pad.t + ph - (v / max) * ph;

  ctx.strokeStyle = grid;
  ctx.fillStyle = ink;
  ctx.lineWidth = 1;
  ctx.textAlign = 'right';
  ctx.textBaseline = 'middle';
  for (let i = 0; i <= steps; i++) {
    const v = (max * i) / steps;
    const yy = Math.round(y(v)) + 0.5;
    ctx.beginPath();
    ctx.moveTo(pad.l, yy);
    ctx.lineTo(pad.l + pw, yy);
    ctx.stroke();
    const label = max >= 10 ? String(Math.round(v)) : String(+v.toFixed(2));
    ctx.fillText(label, pad.l - 6, yy);
  }
  ctx.textAlign = 'center';
  ctx.textBaseline = 'top';
  for (let s = 120; s >= 0; s -= 30) {
    ctx.fillText(s ? `-${s}s` : 'now', x(end - s * 1000), pad.t + ph + 5);
  }
  if (!samples.length) {
    ctx.textAlign = 'center';
    ctx.textBaseline = 'middle';
    ctx.fillText('no samples yet', pad.l + pw / 2, pad.t + ph / 2);
    return;
  }

  ctx.save();
  ctx.beginPath();
  ctx.rect(pad.l, pad.t, pw, ph);
  ctx.clip();
  ctx.lineWidth = 2;
  ctx.lineJoin = 'round';
  for (const l of lines) {
    ctx.strokeStyle = l.color;
    ctx.beginPath();
    let pen = false;
    let prev = null;
    for (const s of samples) {
      const v = num(s[l.key]);
      // A gap of more than 3 s (the stream was down) breaks the line.
      if (v === null || (prev !== null && s.at_ms - prev > 3000)) pen = false;
      if (v !== null) {
        if (pen) ctx.lineTo(x(s.at_ms), y(v));
        else ctx.moveTo(x(s.at_ms), y(v));
        pen = true;
      }
      prev = s.at_ms;
    }
    ctx.stroke();
  }
  ctx.restore();
}

function drawCharts() {
  const samples = (selected && series.get(selected)) || [];
  const accent = cssVar('--accent') || '#2563eb';
  const accent2 = cssVar('--accent-2') || '#d97706';
  $('legend-ingress').style.background = accent;
  $('legend-egress').style.background = accent2;
  drawChart($('chart-viewers'), samples, [{ key: 'concurrent_viewers', color: accent }], true);
  drawChart($('chart-bitrate'), samples, [
    { key: 'ingress_bitrate_kbps', color: accent },
    { key: 'egress_bitrate_kbps', color: accent2 },
  ], false);
}

let redraw = 0;
const scheduleDraw = () => {
  cancelAnimationFrame(redraw);
  redraw = requestAnimationFrame(drawCharts);
};
if (typeof ResizeObserver === 'function') {
  const ro = new ResizeObserver(scheduleDraw);
  ro.observe($('chart-viewers'));
  ro.observe($('chart-bitrate'));
} else {
  window.addEventListener('resize', scheduleDraw);
}
matchMedia('(prefers-color-scheme: dark)').addEventListener?.('change', scheduleDraw);

// ---- data ----

async function loadStreams() {
  try {
    const r = await fetch('/v1/streams', { cache: 'no-store' });
    if (!r.ok) return;
    const list = await r.json();
    if (!Array.isArray(list)) return;
    for (const x of list) {
      if (!x || typeof x.stream !== 'string') continue;
      upsert(x.stream, {
        status: x.status,
        epoch: x.epoch ?? null,
        renditions: Array.isArray(x.renditions) ? x.renditions : [],
        metrics: x.metrics || streams.get(x.stream)?.metrics || null,
      });
    }
    autoSelect();
    if (selected) {
      renderDetail();
      if (!series.has(selected)) seedSeries(selected);
    }
  } catch {
    // The WebSocket brings streams in as they change.
  }
}

function onMessage(msg) {
  if (!msg || typeof msg.stream !== 'string') return;
  if (msg.type === 'status') {
    const known = streams.has(msg.stream);
    const prev = streams.get(msg.stream);
    const epochChanged = prev && prev.epoch !== msg.epoch;
    upsert(msg.stream, { status: msg.status, epoch: msg.epoch ?? null });
    // A new stream or a new session: its renditions come from the list.
    if ((!known || epochChanged) && msg.status === 'ACTIVE') setTimeout(loadStreams, 1500);
    autoSelect();
    if (msg.stream === selected) renderDetail();
  } else if (msg.type === 'metrics') {
    const m = { ...msg };
    delete m.type;
    // Metrics are sent for live streams only: one we have no status for yet is live.
    const patch = { metrics: m };
    if (msg.epoch !== undefined) patch.epoch = msg.epoch;
    if (!streams.get(msg.stream)?.status) patch.status = 'ACTIVE';
    upsert(msg.stream, patch);
    const list = series.get(msg.stream) || [];
    if (num(m.at_ms) !== null && (!list.length || m.at_ms > list[list.length - 1].at_ms)) {
      list.push(m);
      series.set(msg.stream, trim(list));
    }
    if (!selected && !chosen) autoSelect();
    if (msg.stream === selected) renderDetail();
  }
  // "lagged": ignored; the next metrics message is complete on its own.
}

let reconnectDelay = RECONNECT_MIN_MS;
let connectedBefore = false;
function connect() {
  const proto = location.protocol === 'https:' ? 'wss:' : 'ws:';
  const conn = $('conn');
  let ws;
  try {
    ws = new WebSocket(`${proto}//${location.host}/v1/events`);
  } catch {
    setTimeout(connect, reconnectDelay);
    return;
  }
  ws.onopen = () => {
    reconnectDelay = RECONNECT_MIN_MS;
    conn.dataset.state = 'live';
    conn.textContent = 'connected';
    // Status changes missed while disconnected.
    if (connectedBefore) loadStreams();
    connectedBefore = true;
  };
  ws.onmessage = (ev) => {
    try {
      onMessage(JSON.parse(ev.data));
    } catch {
      // not ours
    }
  };
  ws.onclose = () => {
    conn.dataset.state = 'unavailable';
    conn.textContent = 'reconnecting';
    const d = reconnectDelay;
    reconnectDelay = Math.min(reconnectDelay * 2, RECONNECT_MAX_MS);
    setTimeout(connect, d);
  };
}

renderDetail();
loadStreams().then(() => {
  if (selected && !series.has(selected)) seedSeries(selected);
});
connect();
