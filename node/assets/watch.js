// The player page, GET /watch/{stream}. Plain ES module, no build step.
//
// The stream's state comes from the node's WebSocket (/v1/streams/{stream}/events), not from
// the player: #state is "connecting", "live", "ended" or "unavailable". Playback is hls.js
// (LL-HLS on /cmaf/, or TS HLS on /hls/ with ?format=ts), served by the node from its npm
// install at /assets/vendor/hls.min.js; Safari without MSE plays the same URL natively.
// Viewer analytics: CMCD in request headers (query-mode CMCD would make every viewer's segment
// URLs different and defeat CDN caching) and beacons to /v1/beacon.
//
// window.hivecast is kept current for automated browser tests: {sid, stream, format, state, epoch,
// player, firstFrameMs, latencyMs, bufferMs, level, rendition, levels, switches, requested, emergencies,
// stalls, errors}.

const HLS_URL = '/assets/vendor/hls.min.js';
const BEACON_URL = '/v1/beacon';
const HEARTBEAT_MS = 5000;
const RECONNECT_MIN_MS = 2000;
const RECONNECT_MAX_MS = 5000;
const PLAYER_RETRY_MS = 1000;
const MAX_ERRORS = 10;

const stream = streamFromPath(location.pathname);
const params = new URLSearchParams(location.search);
const format = params.get('format') === 'ts' ? 'ts' : 'cmaf';
// A protected stream's page is opened with its playback token (`/watch/{stream}?token=...`);
// the node carries it into every URL below the multivariant playlist.
const token = params.get('token');
const src = (format === 'ts'
  ? `/hls/${encodeURIComponent(stream)}/master.m3u8`
  : `/cmaf/${encodeURIComponent(stream)}/master.m3u8`)
  + (token ? `?token=${encodeURIComponent(token)}` : '');
const sid = newSid();

const $ = (id) => document.getElementById(id);
const video = $('video');
const stateEl = $('state');
const messageEl = $('message');
const qualityEl = $('quality-select');

/** What automated tests read. */
const hc = {
  sid,
  stream,
  format,
  state: 'connecting',
  epoch: null,
  player: null, // "hls.js" | "native" | null
  firstFrameMs: null,
  latencyMs: null,
  bufferMs: null,
  level: -1,
  rendition: null,
  levels: [],
  switches: [],
  // ABR decisions (hls.js LEVEL_SWITCHING: the player starts loading another rendition), each
  // {at, to}; `switches` are the ones that reached the screen (LEVEL_SWITCHED).
  requested: [],
  stalls: 0,
  errors: [],
  // Emergency switches to the lowest rung made by this page (see abrWithLowestRung).
  emergencies: [],
};
window.hivecast = hc;

document.title = `${stream} · hivecast`;
$('title').textContent = stream;
$('format').textContent = format === 'ts' ? 'HLS (MPEG-TS)' : 'LL-HLS (CMAF)';

function streamFromPath(path) {
  const parts = path.split('/').filter(Boolean);
  const i = parts.indexOf('watch');
  try {
    return decodeURIComponent(parts[i + 1] || parts[parts.length - 1] || '');
  } catch {
    return '';
  }
}

function newSid() {
  const c = globalThis.crypto;
  // randomUUID exists in secure contexts only (https, localhost).
  if (c && typeof c.randomUUID === 'function') return c.randomUUID();
  const bytes = new Uint8Array(16);
  if (c && typeof c.getRandomValues === 'function') {
    c.getRandomValues(bytes);
  } else {
    for (let i = 0; i < bytes.length; i++) bytes[i] = Math.floor(Math.random() * 256);
  }
  return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
}

function noteError(text) {
  hc.errors.push(String(text));
  if (hc.errors.length > MAX_ERRORS) hc.errors.splice(0, hc.errors.length - MAX_ERRORS);
}

function showMessage(text, kind = 'info') {
  if (!text) {
    messageEl.hidden = true;
    messageEl.textContent = '';
    return;
  }
  messageEl.textContent = text;
  messageEl.dataset.kind = kind;
  messageEl.hidden = false;
}

// ---- state, from the WebSocket ----

function setState(s) {
  hc.state = s;
  if (stateEl.dataset.state !== s) {
    stateEl.dataset.state = s;
    stateEl.textContent = s;
  }
}

let socket = null;
let reconnectDelay = RECONNECT_MIN_MS;

function connect() {
  const proto = location.protocol === 'https:' ? 'wss:' : 'ws:';
  const url = `${proto}//${location.host}/v1/streams/${encodeURIComponent(stream)}/events`;
  let opened = false;
  let ws;
  try {
    ws = new WebSocket(url);
  } catch (e) {
    noteError(`websocket: ${e}`);
    setState('unavailable');
    scheduleReconnect();
    return;
  }
  socket = ws;
  ws.onopen = () => {
    opened = true;
    reconnectDelay = RECONNECT_MIN_MS;
  };
  ws.onmessage = (ev) => {
    let msg;
    try {
      msg = JSON.parse(ev.data);
    } catch {
      return;
    }
    if (msg && msg.type === 'status') onStatus(msg);
  };
  ws.onclose = () => {
    if (socket !== ws) return;
    socket = null;
    // Never opened: an unknown stream (404 before the upgrade) or no node.
    if (!opened) {
      setState('unavailable');
      stopLoading();
      if (!hc.player) showMessage('This stream is not available.');
    }
    scheduleReconnect();
  };
}

function scheduleReconnect() {
  const delay = reconnectDelay;
  reconnectDelay = Math.min(Math.round(reconnectDelay * 1.5), RECONNECT_MAX_MS);
  setTimeout(connect, delay);
}

function onStatus(msg) {
  if (msg.stream && msg.stream !== stream) return;
  const wasLive = hc.state === 'live';
  const epochChanged = hc.epoch !== null && msg.epoch !== hc.epoch;
  if (typeof msg.epoch === 'number') hc.epoch = msg.epoch;
  switch (msg.status) {
    case 'ACTIVE':
      setState('live');
      // First live status, a re-publish, or a new session we did not see start.
      if (!wasLive || epochChanged || !hc.player) startPlayer();
      break;
    case 'ENDED_GRACEFULLY':
      setState('ended');
      stopLoading();
      showMessage('The stream has ended.');
      break;
    default: // PENDING_INGEST, ERROR
      setState('unavailable');
      stopLoading();
      showMessage(msg.status === 'ERROR'
        ? 'The stream was interrupted.' + (msg.reason ? ` (${msg.reason})` : '')
        : 'Waiting for the broadcaster…');
  }
}

// ---- hls.js, loaded from the node ----

let hlsLoad = null;
/** Resolves to the Hls class, or null if the node has no hls.js. */
function loadHls() {
  if (!hlsLoad) {
    hlsLoad = new Promise((resolve) => {
      if (window.Hls) return resolve(window.Hls);
      const s = document.createElement('script');
      s.src = HLS_URL;
      s.async = true;
      s.onload = () => resolve(window.Hls || null);
      s.onerror = () => resolve(null);
      document.head.appendChild(s);
    });
  }
  return hlsLoad;
}
loadHls();

// ---- the player ----

let hls = null;
let generation = 0; // bumps on every (re)load; late callbacks of an older load are ignored
let started = false; // first frame of the current load seen
let retryTimer = null;

function renditionOfUrl(uri) {
  if (!uri) return null;
  try {
    const parts = new URL(uri, location.href).pathname.split('/');
    // .../{stream}/{rendition}/index.m3u8
    return parts.length >= 3 ? decodeURIComponent(parts[parts.length - 2]) || null : null;
  } catch {
    return null;
  }
}

function renditionOf(level) {
  if (!level) return null;
  const uri = level.uri || (Array.isArray(level.url) ? level.url[0] : level.url);
  return renditionOfUrl(uri) || level.name || (level.height ? `${level.height}p` : null);
}

function destroyPlayer() {
  generation++;
  clearTimeout(retryTimer);
  if (hls) {
    hls.destroy();
    hls = null;
  }
  hc.player = null;
  started = false;
  hc.level = -1;
  hc.rendition = null;
  hc.levels = [];
  fillQualitySelect();
}

function stopLoading() {
  clearTimeout(retryTimer);
  // Keep the last frame: stop fetching, leave the media element attached.
  if (hls) hls.stopLoad();
}

async function startPlayer() {
  destroyPlayer();
  const gen = generation;
  showMessage('Loading…');
  const Hls = await loadHls();
  if (gen !== generation || hc.state !== 'live') return;
  if (!Hls) {
    noteError('hls.js is not installed on this node');
    const notice = $('notice');
    notice.hidden = false;
    if (video.canPlayType('application/vnd.apple.mpegurl')) {
      notice.textContent = 'hls.js is not installed on this node (run `npm ci --prefix node/assets`): ' +
        'playing with the browser\'s own HLS support, without low-latency mode or analytics headers.';
      startNative(gen);
    } else {
      notice.textContent = 'hls.js is not installed on this node (run `npm ci --prefix node/assets`), ' +
        'and this browser cannot play HLS by itself.';
      showMessage('hls.js is not installed on this node.', 'error');
    }
    return;
  }
  if (Hls.isSupported()) {
    startHls(Hls, gen);
  } else if (video.canPlayType('application/vnd.apple.mpegurl')) {
    startNative(gen);
  } else {
    showMessage('This browser cannot play HLS (no Media Source Extensions).', 'error');
  }
}

// ---- emergency switch-down to the lowest rung ----
//
// hls.js's emergency rule (AbrController._abandonRulesCheck, every 100 ms while a fragment or
// part loads) looks for a rung between the loading one and the lowest, never at the lowest
// itself (its loop stops above minAutoLevel), so from the second-lowest rung, the whole ladder
// of a two-rung stream, a throttled viewer waits for the slow parts already in flight and then
// for the estimate to catch up: 3.5-5 s. This adds the missing case with hls.js's own numbers:
// when the part in flight will not arrive before the buffer runs dry and the lowest rung's part
// would load sooner at the rate actually seen, abort it, restart the estimate from that rate and
// load the lowest rung next, as hls.js does for the rungs it does consider. Returns a subclass
// of hls.js's AbrController, or hls.js's own if its internals are not the ones expected.

function abrWithLowestRung(Hls, E) {
  const Base = Hls.DefaultConfig.abrController;
  return class extends Base {
    constructor(h, ...rest) {
      super(h, ...rest);
      const own = this._abandonRulesCheck;
      if (typeof own !== 'function') return;
      this._abandonRulesCheck = (levelLoaded) => {
        own(levelLoaded);
        try {
          this.lowestRungCheck(h, E);
        } catch (e) {
          noteError(`abr: ${e}`);
        }
      };
    }

    lowestRungCheck(h, E) {
      const frag = this.fragCurrent;
      const part = this.partCurrent;
      const media = h.media;
      if (!frag || !media || !h.autoLevelEnabled || !this.bwEstimator) return;
      const stats = part ? part.stats : frag.stats;
      const lowest = h.minAutoLevel;
      // Only where hls.js's own rule has no candidate; above that it decides.
      if (frag.level !== lowest + 1 || stats.aborted) return;
      if (stats.loaded && stats.loaded === stats.total) return;
      if (h.loadLevel < frag.level) return; // already switching down
      if (media.paused || !media.readyState) return;
      const now = performance.now();
      const duration = part ? part.duration : frag.duration;
      const timeLoading = now - stats.loading.start;
      const ttfbEstimate = this.bwEstimator.getEstimateTTFB();
      if (timeLoading <= Math.max(ttfbEstimate, (1000 * duration) / 2)) return;
      // No byte yet: a preload-hinted part is held by the node until it exists. Wait.
      if (!stats.loading.first || !stats.loaded) return;
      const ttfb = stats.loading.first - stats.loading.start;
      const rate = (stats.loaded * 1000) / Math.max(1, timeLoading - ttfb); // bytes/s
      const level = h.levels[frag.level];
      const expected = Math.max(
        stats.loaded,
        (duration * (frag.bitrate || level.averageBitrate || level.bitrate)) / 8,
      );
      const remaining = (expected - stats.loaded) / rate; // s
      const info = h.mainForwardBufferInfo;
      const buffer = info ? info.len : bufferAhead();
      // Either this part will not make it before the buffer runs dry (hls.js's test), or it has
      // been arriving for longer than it plays: the link is slower than real time for this
      // rung, and the parts queued behind it (and the blocking playlist reloads) will be too.
      const behind = timeLoading - ttfb > 1000 * duration && rate * 8 < level.bitrate;
      if (!behind && remaining <= buffer) return;
      const low = h.levels[lowest];
      // Its playlist (a live rung's details are stale) and its part, each a round trip.
      const lowDelay = (2 * ttfbEstimate) / 1000 + (duration * low.maxBitrate) / (rate * 8);
      if (!behind && (lowDelay >= remaining || lowDelay > duration * 10)) return;
      hc.emergencies.push({ at: Math.round(now), from: frag.level, to: lowest, behind,
        rateKbps: Math.round((rate * 8) / 1000), bufferMs: Math.round(buffer * 1000) });
      if (hc.emergencies.length > 20) hc.emergencies.shift();
      h.nextLoadLevel = h.nextAutoLevel = lowest;
      this.resetEstimator(Math.min(rate * 8, low.bitrate));
      this.clearTimer();
      frag.abortRequests();
      this.fragCurrent = this.partCurrent = null;
      h.trigger(E.FRAG_LOAD_EMERGENCY_ABORTED, { frag, part, stats });
    }
  };
}

function startHls(Hls, gen) {
  hc.player = 'hls.js';
  const E = Hls.Events;
  const h = new Hls({
    lowLatencyMode: true,
    backBufferLength: 30,
    cmcd: { sessionId: sid, contentId: stream, useHeaders: true },
    abrController: abrWithLowestRung(Hls, E),
  });
  hls = h;
  h.on(E.MANIFEST_PARSED, () => {
    if (gen !== generation) return;
    updateLevels();
    video.play().catch(() => {});
  });
  h.on(E.LEVELS_UPDATED, () => gen === generation && updateLevels());
  h.on(E.LEVEL_SWITCHING, (_, data) => {
    if (gen !== generation) return;
    hc.requested.push({ at: performance.now(), to: renditionOf(h.levels[data.level]) });
    if (hc.requested.length > 50) hc.requested.shift();
  });
  h.on(E.LEVEL_SWITCHED, (_, data) => {
    if (gen !== generation) return;
    onLevelSwitched(data.level);
  });
  h.on(E.ERROR, (_, data) => {
    if (gen !== generation) return;
    onHlsError(Hls, h, data, gen);
  });
  watchFirstFrame(gen);
  h.loadSource(src);
  h.attachMedia(video);
}

function startNative(gen) {
  hc.player = 'native';
  watchFirstFrame(gen);
  video.src = src;
  video.play().catch(() => {});
}

function updateLevels() {
  if (!hls) return;
  hc.levels = hls.levels.map((l, index) => ({
    index,
    name: renditionOf(l),
    height: l.height || null,
    bitrate: l.bitrate || null,
  }));
  fillQualitySelect();
}

function fillQualitySelect() {
  const current = hls ? (hls.autoLevelEnabled ? -1 : hls.nextLoadLevel) : -1;
  qualityEl.replaceChildren(new Option('Auto', '-1'));
  hc.levels.forEach((l) => {
    const kbps = l.bitrate ? ` · ${Math.round(l.bitrate / 1000)} kbps` : '';
    qualityEl.add(new Option(`${l.name || l.index}${kbps}`, String(l.index)));
  });
  qualityEl.value = String(current);
  qualityEl.disabled = hc.levels.length < 2;
}

qualityEl.addEventListener('change', () => {
  if (!hls) return;
  // nextLevel: switch at the next fragment without flushing the buffer; -1 is automatic.
  hls.nextLevel = Number(qualityEl.value);
});

function bitrateKbps(index) {
  const l = hls && hls.levels ? hls.levels[index] : null;
  return l && l.bitrate ? Math.round(l.bitrate / 1000) : null;
}

function onLevelSwitched(index) {
  const level = hls && hls.levels ? hls.levels[index] : null;
  const from = hc.rendition;
  const to = renditionOf(level);
  const firstOfLoad = hc.level === -1;
  hc.level = index;
  hc.rendition = to;
  if (!firstOfLoad && from !== to) {
    hc.switches.push({ at: performance.now(), from, to, level: index });
    beacon('switch', { rendition: to, bitrate_kbps: bitrateKbps(index) });
  }
  render();
}

function onHlsError(Hls, h, data, gen) {
  const text = `${data.type}: ${data.details}${data.fatal ? ' (fatal)' : ''}` +
    (data.response && data.response.code ? ` HTTP ${data.response.code}` : '');
  noteError(text);
  if (!data.fatal) {
    // A stall after the end is the buffer running out, not the viewer's experience.
    if (data.details === Hls.ErrorDetails.BUFFER_STALLED_ERROR && hc.state === 'live') {
      hc.stalls++;
      beacon('stall', snapshot());
    }
    return;
  }
  beacon('error', { message: text.slice(0, 200), rendition: hc.rendition });
  if (hc.state !== 'live') return; // ended or gone: nothing to recover
  if (data.type === Hls.ErrorTypes.MEDIA_ERROR) {
    h.recoverMediaError();
    return;
  }
  // A playlist not there yet (the first segment of a fresh publish) or a network blip:
  // start over shortly, as long as the stream is still live.
  clearTimeout(retryTimer);
  retryTimer = setTimeout(() => {
    if (gen === generation && hc.state === 'live') startPlayer();
  }, PLAYER_RETRY_MS);
}

function watchFirstFrame(gen) {
  const first = () => {
    if (gen !== generation || started) return;
    started = true;
    if (hc.firstFrameMs === null) hc.firstFrameMs = Math.round(performance.now());
    showMessage('');
    beacon('start', snapshot());
  };
  if (typeof video.requestVideoFrameCallback === 'function') {
    video.requestVideoFrameCallback(() => first());
  } else {
    const onTime = () => {
      if (video.currentTime > 0) {
        video.removeEventListener('timeupdate', onTime);
        first();
      }
    };
    video.addEventListener('timeupdate', onTime);
  }
}

// ---- numbers ----

function bufferAhead() {
  const b = video.buffered;
  const t = video.currentTime;
  for (let i = 0; i < b.length; i++) {
    if (b.start(i) <= t + 0.1 && t <= b.end(i)) return Math.max(0, b.end(i) - t);
  }
  return 0;
}

function droppedFrames() {
  if (typeof video.getVideoPlaybackQuality === 'function') {
    return video.getVideoPlaybackQuality().droppedVideoFrames;
  }
  return null;
}

function snapshot() {
  return {
    rendition: hc.rendition,
    bitrate_kbps: hc.level >= 0 ? bitrateKbps(hc.level) : null,
    buffer_ms: hc.bufferMs,
    latency_ms: hc.latencyMs,
    dropped_frames: droppedFrames(),
  };
}

function render() {
  const lat = hls ? hls.latency : NaN;
  // hls.js estimates latency from the playlist before the first frame too: meaningless then.
  hc.latencyMs = started && Number.isFinite(lat) && lat > 0 ? Math.round(lat * 10000) / 10 : null;
  hc.bufferMs = hc.player ? Math.round(bufferAhead() * 1000) : null;
  $('latency').textContent = hc.latencyMs === null ? '–' : `${(hc.latencyMs / 1000).toFixed(1)} s`;
  $('buffer').textContent = hc.bufferMs === null ? '–' : `${(hc.bufferMs / 1000).toFixed(1)} s`;
  const auto = hls && hls.autoLevelEnabled ? ' (auto)' : '';
  $('rendition').textContent = hc.rendition ? `${hc.rendition}${auto}` : '–';
  $('resolution').textContent = video.videoWidth ? `${video.videoWidth}×${video.videoHeight}` : '–';
}
setInterval(render, 500);

// A hidden tab may have its muted video paused by the browser: back in view, rejoin the live
// edge rather than play on minutes behind.
document.addEventListener('visibilitychange', () => {
  if (document.visibilityState !== 'visible' || !hls || hc.state !== 'live') return;
  const edge = hls.liveSyncPosition;
  if (Number.isFinite(edge) && video.currentTime < edge - 3) video.currentTime = edge;
  video.play().catch(() => {});
});

// ---- beacons ----

function body(event, extra) {
  const b = { sid, stream, event };
  for (const [k, v] of Object.entries(extra || {})) {
    if (v !== null && v !== undefined && !(typeof v === 'number' && !Number.isFinite(v))) b[k] = v;
  }
  return b;
}

function beacon(event, extra) {
  fetch(BEACON_URL, {
    method: 'POST',
    keepalive: true,
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body(event, extra)),
  }).catch(() => {});
}

setInterval(() => {
  if (!started || hc.state !== 'live') return;
  render();
  beacon('heartbeat', snapshot());
}, HEARTBEAT_MS);

let ended = false;
window.addEventListener('pagehide', () => {
  if (ended || !hc.player) return;
  ended = true;
  const data = JSON.stringify(body('end', snapshot()));
  const blob = new Blob([data], { type: 'application/json' });
  if (!(navigator.sendBeacon && navigator.sendBeacon(BEACON_URL, blob))) {
    fetch(BEACON_URL, { method: 'POST', keepalive: true, headers: { 'content-type': 'application/json' }, body: data })
      .catch(() => {});
  }
});
// Back from the bfcache: a new viewing session of the same page.
window.addEventListener('pageshow', (e) => {
  if (e.persisted) {
    ended = false;
    if (hc.state === 'live') startPlayer();
  }
});

if (stream) {
  connect();
} else {
  setState('unavailable');
  showMessage('No stream named in the address (/watch/STREAM).', 'error');
}
