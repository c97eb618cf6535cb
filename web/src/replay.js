// The replay page `/sessions/{id}`: every source of a session in one grid, kept in step by one
// session clock in wall-clock time; a timeline of segments and gaps; seek by click or typed time;
// playback speed; the evidence chain's verification beside it.
//
// The clock follows the first source that has media at the current wall-clock time (so the
// clock and what is on screen never drift apart); other sources are seeked to the same wall
// clock when they stray more than a few frames. When no source has media (all in a gap), the
// clock runs on real time until one does.

import Hls from 'hls.js';
import { chooseLanguage, rememberLanguage, translator } from './i18n.js';
import {
  formatDateTime,
  formatTime,
  mediaTimeAt,
  parseTypedTime,
  wallAt,
  zoneLabel,
} from './wallclock.js';

const CONFIDENTIAL_KINDS = ['evaluation'];
const TOLERANCE_S = 0.35;

const lang = chooseLanguage();
const t = translator(lang);
const sessionId = decodeURIComponent(location.pathname.split('/').filter(Boolean)[1] ?? '');
const api = `/api/v1/sessions/${encodeURIComponent(sessionId)}`;

const el = (tag, attrs = {}, ...children) => {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === 'class') e.className = v;
    // Through the CSSOM: the page's content security policy refuses inline style attributes.
    else if (k === 'style') Object.assign(e.style, v);
    else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else if (v !== undefined && v !== null) e.setAttribute(k, v);
  }
  for (const c of children) if (c != null) e.append(c);
  return e;
};

const state = {
  session: null,
  reason: '',
  sources: [],
  start: 0,
  end: 0,
  wall: 0,
  playing: false,
  rate: 1,
  lastTick: 0,
};

// A plain GET (the API answers JSON): the page's HTML preloads the session's view, and only a
// request like the preload's takes its answer.
async function getJson(url) {
  const r = await fetch(url);
  const body = await r.json().catch(() => ({}));
  if (r.status === 401) throw new Error(t('loginRequired'));
  if (!r.ok) throw new Error(body?.error?.message ?? `HTTP ${r.status}`);
  return body;
}

function withReason(url) {
  return state.reason ? `${url}?reason=${encodeURIComponent(state.reason)}` : url;
}

// A confidential session plays only with a grant another person approved: find the viewer's,
// or ask for one with the reason just typed (answered: wait for the approval).
async function ensureGrant(session) {
  const me = await getJson('/api/v1/auth/me');
  const grants = await getJson('/api/v1/confidential-access');
  const mine = grants.filter((g) => g.session_id === session.id && g.grantee === me.user.username);
  showRequestsToDecide(session, grants, me);
  if (mine.some((g) => g.active)) return true;
  if (!mine.some((g) => g.state === 'requested')) {
    const r = await fetch(`/api/v1/sessions/${encodeURIComponent(session.id)}/confidential-access`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-csrf-token': me.csrf_token ?? '' },
      body: JSON.stringify({ reason: state.reason }),
    });
    if (!r.ok) {
      const body = await r.json().catch(() => ({}));
      throw new Error(body?.error?.message ?? `HTTP ${r.status}`);
    }
  }
  document.querySelector('#messages').append(el('p', { class: 'notice' }, t('grantRequested')));
  return false;
}

// Other people's requests to replay this session, for the second person to decide here, with
// the session in front of them (the server refuses the requester's own and dependent accounts).
function showRequestsToDecide(session, grants, me) {
  const waiting = grants.filter(
    (g) => g.session_id === session.id && g.grantee !== me.user.username && g.state === 'requested',
  );
  for (const g of waiting) {
    const line = el('p', { class: 'notice', 'data-grant': g.id }, t('grantToDecide', { who: g.grantee, reason: g.reason }), ' ');
    for (const [verb, label] of [['approve', t('approve')], ['reject', t('reject')]]) {
      const b = el('button', { type: 'button', 'data-decide': verb }, label);
      b.addEventListener('click', async () => {
        const r = await fetch(`/api/v1/confidential-access/${encodeURIComponent(g.id)}/${verb}`, {
          method: 'POST',
          headers: { 'x-csrf-token': me.csrf_token ?? '' },
        });
        const body = await r.json().catch(() => ({}));
        line.replaceChildren(r.ok ? t(verb === 'approve' ? 'grantApproved' : 'grantRejected', { who: g.grantee }) : body?.error?.message ?? `HTTP ${r.status}`);
      });
      line.append(b, ' ');
    }
    document.querySelector('#messages').append(line);
  }
}

function showError(text) {
  document.querySelector('#messages').append(el('p', { class: 'error' }, text));
}

// ---- page skeleton -----------------------------------------------------------------------

function header(s) {
  const fields = [
    [t('project'), s.project_code],
    [t('session'), s.session_code],
    [t('room'), s.room_name],
    [t('kind'), t(`kinds.${s.kind}`)],
    [t('started'), formatDateTime(Date.parse(s.started_at))],
    [t('stopped'), s.stopped_at ? formatDateTime(Date.parse(s.stopped_at)) : t('live')],
    [t('timezone'), zoneLabel(Date.parse(s.started_at))],
  ];
  const r = s.retention;
  if (r) {
    const until = r.retain_until ? formatDateTime(Date.parse(r.retain_until)) : t('retainOpen');
    fields.push([t('retainUntil'), `${until} · ${r.rule.basis.law} ${r.rule.basis.article}`]);
    if (r.holds.length) fields.push([t('holds'), r.holds.map((h) => `${h.reference} (${h.authority})`).join('; ')]);
  }
  const other = lang === 'zh' ? 'en' : 'zh';
  return el(
    'header',
    {},
    el('h1', {}, `${t('title')} · ${s.project_code} · ${s.session_code}`),
    el(
      'button',
      {
        id: 'language',
        type: 'button',
        onclick: () => {
          rememberLanguage(other);
          const u = new URL(location.href);
          u.searchParams.set('lang', other);
          location.href = u.toString();
        },
      },
      t('language'),
    ),
    el('dl', {}, ...fields.flatMap(([k, v]) => [el('dt', {}, k), el('dd', {}, v)])),
  );
}

function askReason() {
  return new Promise((resolve) => {
    const input = el('input', { id: 'reason', type: 'text', maxlength: '500', required: '' });
    const form = el(
      'form',
      {
        id: 'reason-form',
        class: 'confidential',
        onsubmit: (e) => {
          e.preventDefault();
          const reason = input.value.trim();
          if (!reason) return input.setCustomValidity(t('reasonRequired'));
          form.remove();
          resolve(reason);
        },
      },
      el('p', {}, t('confidential')),
      el('label', {}, `${t('reason')} `, input),
      el('button', { type: 'submit' }, t('reasonGo')),
    );
    input.addEventListener('input', () => input.setCustomValidity(''));
    document.querySelector('main').append(form);
  });
}

function controls() {
  const speed = el('select', { id: 'speed', onchange: (e) => setRate(Number(e.target.value)) });
  for (const r of [0.5, 1, 1.5, 2, 4, 8]) {
    speed.append(el('option', { value: String(r), ...(r === 1 ? { selected: '' } : {}) }, `${r}×`));
  }
  const sound = el('select', { id: 'sound', onchange: (e) => setSound(e.target.value) });
  sound.append(el('option', { value: '' }, t('soundNone')));
  for (const s of state.sources.filter((s) => s.hasAudio)) {
    sound.append(el('option', { value: s.name }, s.name));
  }
  const seekInput = el('input', { id: 'seek', type: 'text', placeholder: t('seekPlaceholder') });
  const seekForm = el(
    'form',
    {
      id: 'seek-form',
      onsubmit: (e) => {
        e.preventDefault();
        const got = parseTypedTime(seekInput.value, state.start, state.end);
        document.querySelector('#seek-error').textContent = got.error
          ? t(got.error, { value: seekInput.value })
          : '';
        if (!got.error) seek(got.ms);
      },
    },
    el('label', {}, `${t('seek')} `, seekInput),
    el('button', { type: 'submit' }, t('seekGo')),
    el('span', { id: 'seek-error', class: 'error', role: 'alert' }),
  );
  return el(
    'div',
    { class: 'controls' },
    el('button', { id: 'play', type: 'button', onclick: togglePlay }, t('play')),
    el('output', { id: 'clock' }, '--:--:--'),
    el('label', {}, `${t('speed')} `, speed),
    el('label', {}, `${t('sound')} `, sound),
    seekForm,
  );
}

// ---- sources -----------------------------------------------------------------------------

function addSource(rec) {
  const isVideo = rec.media !== 'audio';
  const media = el(isVideo ? 'video' : 'audio', { playsinline: '', preload: 'auto' });
  media.muted = true;
  const status = el('div', { class: 'status' });
  const name = rec.source;
  const download = el(
    'a',
    { href: withReason(`${api}/sources/${encodeURIComponent(name)}/download.mp4`), download: '' },
    t('download'),
  );
  const tile = el(
    'figure',
    { class: `tile ${isVideo ? 'video' : 'audio'}`, 'data-source': name },
    media,
    isVideo ? null : el('div', { class: 'audio-only' }, `♪ ${t('audioOnly')}`),
    status,
    el('figcaption', {}, el('span', {}, name), el('span', { class: 'wall' }), download),
  );
  const source = {
    name,
    rec,
    media,
    tile,
    status,
    isVideo,
    hasAudio: rec.media !== 'video',
    frags: fragsFromRecording(rec),
    failed: false,
    hls: null,
  };
  const url = withReason(`${api}/sources/${encodeURIComponent(name)}/index.m3u8`);
  if (!notHls(source)) return addPlayer(source, url);
  state.sources.push(source);
  return source;
}

/// Segments that are not MPEG-TS cannot play through HLS: the source fails with the reason
/// (known once the view with segments is read).
function notHls(source) {
  if (!source.rec.segments.some((s) => !s.object_key.endsWith('.ts'))) return false;
  source.hls?.destroy();
  source.hls = null;
  fail(source, t('notHls', { template: source.rec.template }));
  return true;
}

function addPlayer(source, url) {
  const { media } = source;
  if (Hls.isSupported()) {
    const hls = new Hls({ maxBufferLength: 20, backBufferLength: 30, startPosition: 0 });
    hls.on(Hls.Events.LEVEL_LOADED, (_, data) => {
      // The player's own reading of the playlist: its media timeline is what currentTime uses.
      // Live views: hls.js refines each fragment's start from the real timestamps as it plays.
      source.frags = data.details.fragments
        .filter((f) => f.programDateTime != null)
        .map((f) => ({
          get start() {
            return f.start;
          },
          get duration() {
            return f.duration;
          },
          get wall() {
            return f.programDateTime;
          },
        }));
    });
    hls.on(Hls.Events.ERROR, (_, data) => {
      if (data.fatal) fail(source, t('playbackError', { detail: data.details }));
    });
    hls.loadSource(url);
    hls.attachMedia(media);
    source.hls = hls;
  } else if (media.canPlayType('application/vnd.apple.mpegurl')) {
    media.src = url;
  } else {
    fail(source, t('playbackError', { detail: 'HLS' }));
  }
  media.addEventListener('error', () => fail(source, t('playbackError', { detail: media.error?.message ?? '' })));
  state.sources.push(source);
  return source;
}

/// Until the player has read the playlist (and for native HLS): the same mapping from the API,
/// where the media timeline is the segments' durations laid end to end.
function fragsFromRecording(rec) {
  let start = 0;
  return rec.segments.map((s) => {
    const f = { start, duration: s.duration_seconds, wall: Date.parse(s.start) };
    start += s.duration_seconds;
    return f;
  });
}

function fail(source, text) {
  source.failed = true;
  source.tile.classList.add('failed');
  source.status.textContent = text;
}

function setRate(rate) {
  state.rate = rate;
  for (const s of state.sources) s.media.playbackRate = rate;
}

function setSound(name) {
  for (const s of state.sources) s.media.muted = s.name !== name;
}

function togglePlay() {
  state.playing = !state.playing;
  if (state.playing && state.wall >= state.end) state.wall = state.start;
  document.querySelector('#play').textContent = state.playing ? t('pause') : t('play');
  for (const s of state.sources) sync(s, true);
}

function seek(ms) {
  state.wall = Math.min(Math.max(ms, state.start), state.end);
  for (const s of state.sources) sync(s, true);
  render();
}

/// Brings one source to the session clock: seek when it strays, pause it in its gaps.
function sync(source, exact = false) {
  if (source.failed) return;
  const target = mediaTimeAt(source.frags, state.wall);
  const m = source.media;
  source.tile.classList.toggle('gap', target === null);
  if (target === null) {
    source.status.textContent = gapReason(source) ?? t('noMedia');
    if (!m.paused) m.pause();
    return;
  }
  source.status.textContent = '';
  if (!m.seeking && Math.abs(m.currentTime - target) > (exact ? 0.04 : TOLERANCE_S)) {
    m.currentTime = target;
  }
  if (m.playbackRate !== state.rate) m.playbackRate = state.rate;
  if (state.playing && m.paused) m.play().catch(() => {});
  if (!state.playing && !m.paused) m.pause();
}

function gapReason(source) {
  const gap = source.rec.gaps.find(
    (g) => state.wall >= Date.parse(g.start) && state.wall < Date.parse(g.end),
  );
  return gap ? `${t('gap')}: ${gap.reason}` : null;
}

/// The session clock: taken from the first source playing media now, else real time.
function tick(now) {
  const dt = state.lastTick ? now - state.lastTick : 0;
  state.lastTick = now;
  if (state.playing) {
    const expected = state.wall + dt * state.rate;
    let next = expected;
    for (const s of state.sources) {
      if (s.failed || s.media.seeking || s.media.paused || s.media.readyState < 3) continue;
      const w = wallAt(s.frags, s.media.currentTime);
      // A jump means the leader crossed into its own gap: keep real time, sync() pauses it.
      if (w !== null && Math.abs(w - expected) < 1000) {
        next = w;
        break;
      }
    }
    state.wall = Math.max(state.wall, next);
    if (state.wall >= state.end) {
      state.wall = state.end;
      togglePlay();
    }
    for (const s of state.sources) sync(s);
  }
  render();
  requestAnimationFrame(tick);
}

// ---- timeline ----------------------------------------------------------------------------

function timeline() {
  const span = Math.max(state.end - state.start, 1);
  const pct = (ms) => `${(((ms - state.start) / span) * 100).toFixed(4)}%`;
  const width = (ms) => `${((ms / span) * 100).toFixed(4)}%`;
  const rows = state.sources.map((s) => {
    const row = el('div', { class: 'row', 'data-source': s.name }, el('span', { class: 'label' }, s.name));
    const track = el('div', { class: 'track' });
    for (const seg of s.rec.segments) {
      track.append(
        el('span', {
          class: seg.clock === 'server' && /server clock used|outside the session/.test(seg.note ?? '') ? 'segment corrected' : 'segment',
          style: { left: pct(Date.parse(seg.start)), width: width(seg.duration_seconds * 1000) },
          title: `#${seg.seq} ${formatTime(Date.parse(seg.start))} ${seg.duration_seconds.toFixed(2)} s · ${seg.clock}${seg.note ? ` · ${seg.note}` : ''}`,
        }),
      );
    }
    for (const gap of s.rec.gaps) {
      track.append(
        el('span', {
          class: 'gap',
          style: { left: pct(Date.parse(gap.start)), width: width(gap.duration_seconds * 1000) },
          title: `${t('gapReason')}: ${gap.reason} (${formatTime(Date.parse(gap.start))}–${formatTime(Date.parse(gap.end))})`,
        }),
      );
    }
    row.append(track);
    return row;
  });
  // Legal holds over the session: a band over the time they cover.
  const holds = state.session?.retention?.holds ?? [];
  if (holds.length) {
    const track = el('div', { class: 'track' });
    for (const h of holds) {
      const from = h.from ? Math.max(Date.parse(h.from), state.start) : state.start;
      const to = h.to ? Math.min(Date.parse(h.to), state.end) : state.end;
      track.append(
        el('span', {
          class: 'hold',
          style: { left: pct(from), width: width(Math.max(to - from, 0)) },
          title: `${t('holds')}: ${h.reference} · ${h.authority} · ${h.reason}`,
        }),
      );
    }
    rows.push(el('div', { class: 'row holds', 'data-source': 'holds' }, el('span', { class: 'label' }, t('holds')), track));
  }
  // The witness record (见证记录): a marker per entry at the moment it is about; a click seeks there.
  const entries = state.witness?.entries ?? [];
  if (entries.length) {
    const track = el('div', { class: 'track' });
    for (const e of entries) {
      const at = Math.min(Math.max(Date.parse(e.at), state.start), state.end);
      const marker = el('span', {
        class: `witness-marker ${e.kind}${e.corrects ? ' correction' : ''}${e.corrected_by.length ? ' corrected' : ''}`,
        'data-seq': String(e.seq),
        style: { left: pct(at) },
        title: `#${e.seq} ${formatTime(Date.parse(e.at))} ${t(`witness.kinds.${e.kind}`)}${e.corrects_seq ? ` (${t('witness.correctsN', { n: e.corrects_seq })})` : ''}${e.corrected_by.length ? ` · ${t('witness.corrected')}` : ''}: ${e.text}`,
      });
      marker.addEventListener('click', (ev) => {
        ev.stopPropagation();
        seek(Date.parse(e.at));
      });
      track.append(marker);
    }
    rows.push(el('div', { class: 'row witness', 'data-source': 'witness' }, el('span', { class: 'label' }, t('witness.title')), track));
  }
  const ticks = el('div', { class: 'ticks' });
  for (const ms of tickTimes(state.start, state.end)) {
    ticks.append(el('span', { style: { left: pct(ms) } }, formatTime(ms)));
  }
  const cursor = el('div', { id: 'cursor' });
  const box = el('div', { id: 'timeline', class: 'timeline' }, ...rows, ticks, cursor);
  box.addEventListener('click', (e) => {
    const track = box.querySelector('.track').getBoundingClientRect();
    const x = Math.min(Math.max(e.clientX - track.left, 0), track.width);
    seek(state.start + (x / track.width) * span);
  });
  return box;
}

/// Round clock times for the timeline's labels: at most eight, on whole steps of the clock.
function tickTimes(start, end) {
  const steps = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800];
  const step = (steps.find((s) => (end - start) / (s * 1000) <= 8) ?? 21600) * 1000;
  // Whole steps of local time, not of UTC: the zone offset shifts where the hours fall.
  const zone = new Date(start).getTimezoneOffset() * 60_000;
  const times = [];
  for (let ms = Math.ceil((start - zone) / step) * step + zone; ms <= end; ms += step) times.push(ms);
  return times;
}

function render() {
  document.querySelector('#clock').textContent = formatTime(state.wall);
  const track = document.querySelector('#timeline .track');
  const cursor = document.querySelector('#cursor');
  if (track && cursor) {
    const box = document.querySelector('#timeline').getBoundingClientRect();
    const r = track.getBoundingClientRect();
    const f = (state.wall - state.start) / Math.max(state.end - state.start, 1);
    cursor.style.left = `${r.left - box.left + f * r.width}px`;
  }
  for (const s of state.sources) {
    s.tile.querySelector('.wall').textContent = formatTime(state.wall);
  }
}

// ---- chain status ------------------------------------------------------------------------

async function chainStatus() {
  const box = el('aside', { id: 'chain', class: 'checking' }, el('h2', {}, t('chain')), el('p', {}, t('chainChecking')));
  document.querySelector('main').prepend(box);
  const p = box.querySelector('p');
  try {
    const report = await getJson(`${api}/verify`);
    const segments = report.recordings.reduce((n, r) => n + r.media_segments, 0);
    const gaps = report.recordings.reduce((n, r) => n + r.gaps, 0);
    const status = report.status ?? (report.intact ? 'INTACT' : 'TAMPERED');
    box.className = { INTACT: 'intact', INCOMPLETE: 'incomplete' }[status] ?? 'broken';
    box.dataset.intact = String(report.intact);
    box.dataset.status = status;
    if (status === 'INTACT') {
      p.textContent = `✔ ${t('chainIntact')} · ${segments} ${t('segments')} · ${gaps} ${t('gaps')}`;
    } else if (status === 'INCOMPLETE') {
      p.textContent = `⚠ ${t('chainIncomplete')} · ${segments} ${t('segments')} · ${gaps} ${t('gaps')}`;
      for (const u of report.uncovered ?? []) {
        if (!u.from) continue;
        box.append(el('p', { class: 'uncovered' }, t('uncovered', { source: u.source, from: formatTime(Date.parse(u.from)), to: formatTime(Date.parse(u.to)), seconds: u.seconds.toFixed(1) })));
      }
      markUncovered(report.uncovered ?? []);
    } else {
      const f = report.first_failure ?? {};
      p.textContent = `✘ ${t('chainBroken')}: ${t('chainAt', { source: f.source ?? '?', seq: f.seq ?? '?', problem: f.problem ?? report.verdict })}`;
    }
    // Segments whose camera clock was rejected: the server's clock stands in for it.
    const corrected = state.sources.reduce(
      (n, s) => n + s.rec.segments.filter((seg) => seg.clock === 'server' && /server clock used|outside the session/.test(seg.note ?? '')).length,
      0,
    );
    if (corrected) box.append(el('p', { class: 'clock-corrections' }, t('clockCorrections', { n: corrected })));
  } catch (e) {
    box.className = 'broken';
    p.textContent = `${t('chainUnavailable')}: ${e.message}`;
  }
}

/// Stretches no chain entry covers, drawn on the timeline where they are.
function markUncovered(uncovered) {
  const span = Math.max(state.end - state.start, 1);
  for (const u of uncovered) {
    if (!u.from) continue;
    const track = document.querySelector(`.timeline .row[data-source="${CSS.escape(u.source)}"] .track`);
    if (!track) continue;
    const from = Date.parse(u.from);
    const to = Date.parse(u.to);
    track.append(
      el('span', {
        class: 'uncovered',
        style: { left: `${(((from - state.start) / span) * 100).toFixed(4)}%`, width: `${(((to - from) / span) * 100).toFixed(4)}%` },
        title: t('uncovered', { source: u.source, from: formatTime(from), to: formatTime(to), seconds: u.seconds.toFixed(1) }),
      }),
    );
  }
}

// ---- start -------------------------------------------------------------------------------

async function main() {
  document.documentElement.lang = lang === 'zh' ? 'zh-CN' : 'en';
  let session;
  try {
    // Without its segments (an hour of four cameras is 7000 of them, 2 MB): the players need
    // only the playlists. The whole view follows for the timeline, once the pictures show.
    session = await getJson(`${api}?segments=none`);
  } catch (e) {
    showError(t('notFound', { detail: e.message }));
    return;
  }
  state.session = session;
  // The witness record shows on the timeline; a page without it still plays. Awaited only for
  // the timeline: the players start loading meanwhile.
  const witness = getJson(`${api}/witness-record`).catch(() => null);
  document.title = `${t('title')} · ${session.project_code} · ${session.session_code}`;
  document.querySelector('main').before(header(session));
  if (CONFIDENTIAL_KINDS.includes(session.kind)) {
    state.reason = await askReason();
    try {
      if (!(await ensureGrant(session))) return;
    } catch (e) {
      showError(e.message);
      return;
    }
  }

  const grid = el('section', { id: 'grid', class: 'grid' });
  for (const rec of session.recordings) grid.append(addSource(rec).tile);
  setSpan(session.recordings);
  state.wall = state.start;

  const main = document.querySelector('main');
  main.append(controls(), grid);
  const firstAudio = state.sources.find((s) => !s.isVideo) ?? state.sources.find((s) => s.hasAudio);
  if (firstAudio) {
    document.querySelector('#sound').value = firstAudio.name;
    setSound(firstAudio.name);
  }
  requestAnimationFrame(tick);
  // The timeline draws every segment and gap (an hour of four cameras is some 7000 spans) and
  // the witness record's markers: drawn once every source shows its first picture (or after a
  // few seconds), so that the main thread is free while the players start. The chain check,
  // which re-reads and re-hashes every stored segment (some 7 GB for that hour), follows it,
  // so that it does not compete with the pictures for the server's and the browser's cores.
  await firstPictures(5000);
  // The whole view only now: asked for earlier, it competed with the players' first requests.
  const full = await getJson(api).catch((e) => e);
  if (full instanceof Error) {
    showError(t('loadError', { detail: full.message }));
  } else {
    state.session = full;
    for (const source of state.sources) {
      const rec = full.recordings.find((r) => r.source === source.name);
      if (!rec) continue;
      source.rec = rec;
      // Native HLS has no playlist reading of its own to map media time to wall clock.
      if (!source.hls) source.frags = fragsFromRecording(rec);
      notHls(source);
    }
    const atStart = state.wall === state.start;
    setSpan(full.recordings);
    if (atStart) state.wall = state.start;
  }
  state.witness = await witness;
  main.append(timeline());
  render();
  chainStatus();
}

/// The span the page shows: the whole session, start to stop, so that a stretch nothing covers
/// shows as such, and any segment or gap reaching past it.
function setSpan(recordings) {
  const s = state.session;
  const walls = recordings.flatMap((r) => [
    ...r.segments.map((x) => [Date.parse(x.start), Date.parse(x.start) + x.duration_seconds * 1000]),
    ...r.gaps.map((g) => [Date.parse(g.start), Date.parse(g.end)]),
  ]);
  const begun = Date.parse(s.started_at);
  const ended = s.stopped_at ? Date.parse(s.stopped_at) : begun;
  state.start = walls.reduce((m, w) => Math.min(m, w[0]), begun);
  state.end = walls.reduce((m, w) => Math.max(m, w[1]), ended);
}

/// Resolves once every source has data at its current position (or failed), or after `ms`.
function firstPictures(ms) {
  const pending = state.sources.filter((s) => !s.failed && s.media.readyState < 2);
  return Promise.race([
    new Promise((resolve) => setTimeout(resolve, ms)),
    Promise.all(
      pending.map(
        (s) =>
          new Promise((resolve) => {
            s.media.addEventListener('loadeddata', resolve, { once: true });
            s.media.addEventListener('error', resolve, { once: true });
          }),
      ),
    ),
  ]);
}

// For tests and for people debugging in the console: the page's view of the clock.
window.witnessReplay = {
  seek,
  state: () => ({
    wall: state.wall,
    start: state.start,
    end: state.end,
    playing: state.playing,
    rate: state.rate,
    sources: state.sources.map((s) => ({
      name: s.name,
      video: s.isVideo,
      failed: s.failed,
      currentTime: s.media.currentTime,
      readyState: s.media.readyState,
      paused: s.media.paused,
      wall: wallAt(s.frags, s.media.currentTime),
    })),
  }),
};

main().catch((e) => showError(t('loadError', { detail: e.message })));
