// The witness staff console at `/`: log in (password, one-time password change, TOTP), then the
// views the user's permissions allow: rooms (state, alarms, today's bookings, start/stop, live
// view), bookings (a week calendar per room, the booking form), sessions
// (search, replay links), users (security administrators: proposals and approvals, four eyes),
// audit trail (audit administrators, discipline officers).
// Everything goes through /api/v1 with the session cookie and the CSRF token.

import Hls from 'hls.js';
import { chooseLanguage, rememberLanguage, translator } from './i18n.js';
import { formatDateTime, formatTime } from './wallclock.js';

const lang = chooseLanguage();
const t = translator(lang);
const KINDS = ['bid_opening', 'evaluation', 'negotiation', 'auction', 'other'];
// Trading categories and methods: the server's catalogue (GET /catalogue, data a centre may
// extend), loaded at login; these five until then.
let CATEGORIES = ['construction', 'procurement', 'land', 'state_assets', 'other'];
// The server's catalogue (GET /catalogue): trading categories and methods, room kinds (with
// their default area) and booking activities.
let catalogue = { categories: [], methods: [], room_kinds: [], activities: [] };
const named = (entry) => (entry ? (lang === 'zh' ? entry.zh : entry.en) : null);
const catName = (id) => named(catalogue.categories.find((c) => c.id === id)) ?? t(`cats.${id}`);
const methodName = (id) => named(catalogue.methods.find((m) => m.id === id)) ?? id;
const ROLES = ['system_administrator', 'security_administrator', 'audit_administrator', 'witness_staff', 'regulator', 'archive_clerk', 'discipline_officer'];

const me = { user: null, permissions: [], csrf: '' };
const labelOf = (list, id) => {
  const item = list.find((x) => x.id === id);
  return item ? (item[lang] ?? item.en) : id;
};
const kindLabel = (id) => labelOf(catalogue.room_kinds, id);
const activityLabel = (id) => labelOf(catalogue.activities, id);
let refreshTimer = null;
let liveHls = [];
// Probe results by room id ({ running } | { result } | { error }): kept across the rooms view's
// refreshes, which redraw every card.
const probes = new Map();
let redrawRooms = null;
// The witness record panel of each live session (by session id): kept across the rooms view's
// refreshes, so that an entry being typed survives the redraw of its card.
const witnessPanels = new Map();
const WITNESS_KINDS = ['remark', 'anomaly', 'objection', 'deviation', 'device_problem'];

const el = (tag, attrs = {}, ...children) => {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === 'class') e.className = v;
    else if (k.startsWith('on')) e.addEventListener(k.slice(2), v);
    else if (v !== undefined && v !== null && v !== false) e.setAttribute(k, v === true ? '' : v);
  }
  for (const c of children) if (c != null) e.append(c);
  return e;
};

class ApiFailure extends Error {
  constructor(status, code, message, problems) {
    super(message);
    this.status = status;
    this.code = code;
    /// Every problem of the request, each naming its field (`invalid_project` …).
    this.problems = problems ?? [];
  }
}

/// JSON in and out; unsafe methods carry the CSRF token; a 401 sends the user to the login form.
async function api(method, path, body) {
  const headers = { accept: 'application/json' };
  if (body !== undefined) headers['content-type'] = 'application/json';
  if (method !== 'GET' && me.csrf) headers['x-csrf-token'] = me.csrf;
  const r = await fetch(`/api/v1${path}`, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (r.status === 204) return null;
  const data = await r.json().catch(() => ({}));
  if (!r.ok) {
    const err = new ApiFailure(r.status, data?.error?.code, data?.error?.message ?? `HTTP ${r.status}`, data?.error?.problems);
    // A session that ended while in use says so; a first visit just shows the form.
    if (r.status === 401 && path !== '/auth/login') showLogin(me.user ? err.message : undefined);
    throw err;
  }
  return data;
}

const can = (p) => me.permissions.includes(p);
const main = () => document.querySelector('main');
const say = (text, kind = 'error') => {
  const box = document.querySelector('#messages');
  box.replaceChildren(el('p', { class: kind, role: kind === 'error' ? 'alert' : 'status' }, text));
};
const clearMessages = () => document.querySelector('#messages').replaceChildren();

function stopRefreshing() {
  clearInterval(refreshTimer);
  refreshTimer = null;
  for (const h of liveHls) h.destroy();
  liveHls = [];
}

function field(label, input) {
  return el('label', { class: 'field' }, el('span', {}, label), input);
}

function options(values, labelOf, selected) {
  return values.map((v) => el('option', { value: v, selected: v === selected }, labelOf(v)));
}

// ---- login, password change, TOTP enrolment -----------------------------------------------

function showLogin(message) {
  stopRefreshing();
  me.user = null;
  me.csrf = '';
  document.querySelector('nav').replaceChildren(languageButton());
  const username = el('input', { id: 'login-username', autocomplete: 'username', required: true });
  const password = el('input', { id: 'login-password', type: 'password', autocomplete: 'current-password', required: true });
  const totp = el('input', { id: 'login-totp', inputmode: 'numeric', autocomplete: 'one-time-code', maxlength: '6' });
  const form = el(
    'form',
    {
      id: 'login-form',
      class: 'card narrow',
      onsubmit: async (e) => {
        e.preventDefault();
        try {
          const r = await api('POST', '/auth/login', {
            username: username.value.trim(),
            password: password.value,
            ...(totp.value.trim() ? { totp: totp.value.trim() } : {}),
          });
          me.csrf = r.csrf_token;
          clearMessages();
          await enter();
        } catch (err) {
          say(t('loginFailed', { detail: err.message }));
          if (err.code === 'totp_required' || err.code === 'totp_invalid') totp.focus();
        }
      },
    },
    el('h2', {}, t('login')),
    field(t('username'), username),
    field(t('password'), password),
    field(t('totpCode'), totp),
    el('button', { type: 'submit', id: 'login-submit' }, t('login')),
  );
  main().replaceChildren(form);
  if (message) say(message);
  username.focus();
}

function showPasswordChange() {
  const current = el('input', { id: 'pw-current', type: 'password', autocomplete: 'current-password', required: true });
  const next = el('input', { id: 'pw-new', type: 'password', autocomplete: 'new-password', required: true });
  const again = el('input', { id: 'pw-again', type: 'password', autocomplete: 'new-password', required: true });
  main().replaceChildren(
    el(
      'form',
      {
        id: 'password-form',
        class: 'card narrow',
        onsubmit: async (e) => {
          e.preventDefault();
          if (next.value !== again.value) return say(t('passwordsDiffer'));
          try {
            await api('POST', '/auth/password', { current_password: current.value, new_password: next.value });
            clearMessages();
            await enter();
          } catch (err) {
            say(err.message);
          }
        },
      },
      el('h2', {}, t('changePassword')),
      el('p', {}, t('mustChangePassword')),
      field(t('currentPassword'), current),
      field(t('newPassword'), next),
      field(t('repeatPassword'), again),
      el('button', { type: 'submit' }, t('save')),
    ),
  );
}

async function showTotpEnrolment() {
  const setup = await api('POST', '/auth/totp/setup');
  const code = el('input', { id: 'totp-code', inputmode: 'numeric', maxlength: '6', required: true });
  main().replaceChildren(
    el(
      'form',
      {
        id: 'totp-form',
        class: 'card narrow',
        onsubmit: async (e) => {
          e.preventDefault();
          try {
            await api('POST', '/auth/totp/confirm', { code: code.value.trim() });
            clearMessages();
            await enter();
          } catch (err) {
            say(err.message);
          }
        },
      },
      el('h2', {}, t('totpEnrol')),
      el('p', {}, t('totpExplain')),
      el('p', {}, `${t('totpSecret')}: `, el('code', { id: 'totp-secret' }, setup.secret)),
      el('p', { class: 'muted' }, el('code', {}, setup.otpauth_url)),
      field('6 位 / digits', code),
      el('button', { type: 'submit' }, t('confirm')),
    ),
  );
}

/// After any login step: where the account stands decides what comes next.
async function enter() {
  const r = await api('GET', '/auth/me');
  me.user = r.user;
  me.permissions = r.permissions;
  if (r.csrf_token) me.csrf = r.csrf_token;
  if (r.restriction === 'password_change_required') return showPasswordChange();
  if (r.restriction === 'totp_enrollment_required') return showTotpEnrolment();
  const c = await api('GET', '/catalogue').catch(() => null);
  if (c) {
    catalogue = c;
    CATEGORIES = c.categories.map((e) => e.id);
  }
  renderNav();
  route();
}

// ---- navigation ------------------------------------------------------------------------------

function languageButton() {
  const other = lang === 'zh' ? 'en' : 'zh';
  return el(
    'button',
    {
      type: 'button',
      id: 'language',
      onclick: () => {
        rememberLanguage(other);
        location.reload();
      },
    },
    t('language'),
  );
}

const VIEWS = [
  { hash: '#rooms', label: 'navRooms', needs: 'rooms_read', show: showRooms },
  { hash: '#bookings', label: 'navBookings', needs: 'rooms_read', show: showBookings },
  { hash: '#sessions', label: 'navSessions', needs: 'sessions_read', show: showSessions },
  { hash: '#projects', label: 'navProjects', needs: 'sessions_read', show: showProjects },
  { hash: '#archive', label: 'navArchive', needs: 'holds', show: showArchiveDesk },
  { hash: '#users', label: 'navUsers', needs: 'users_manage', show: showUsers },
  { hash: '#audit', label: 'navAudit', needs: 'audit_read', show: showAudit },
];

function renderNav() {
  const links = VIEWS.filter((v) => can(v.needs)).map((v) =>
    // A click on the view already shown (a project or its archive opened from it) shows it again.
    el('a', { href: v.hash, id: `nav-${v.hash.slice(1)}`, onclick: () => location.hash === v.hash && setTimeout(route) }, t(v.label)),
  );
  document.querySelector('nav').replaceChildren(
    ...links,
    el('span', { class: 'who' }, `${me.user.display_name} · ${t(`roles.${me.user.role}`)}`),
    languageButton(),
    el(
      'button',
      {
        type: 'button',
        id: 'logout',
        onclick: async () => {
          await api('POST', '/auth/logout').catch(() => {});
          showLogin();
        },
      },
      t('logout'),
    ),
  );
}

function route() {
  if (!me.user) return;
  stopRefreshing();
  clearMessages();
  const allowed = VIEWS.filter((v) => can(v.needs));
  const view = allowed.find((v) => v.hash === location.hash) ?? allowed[0];
  for (const a of document.querySelectorAll('nav a')) a.classList.toggle('current', a.getAttribute('href') === view?.hash);
  if (view) view.show().catch((err) => say(t('error', { detail: err.message })));
  else main().replaceChildren(el('p', {}, '—'));
}

// ---- rooms -----------------------------------------------------------------------------------

const duration = (s) => {
  const two = (n) => String(Math.floor(n)).padStart(2, '0');
  return `${two(s / 3600)}:${two((s % 3600) / 60)}:${two(s % 60)}`;
};

async function showRooms() {
  const grid = el('section', { id: 'rooms', class: 'rooms' });
  const live = el('section', { id: 'live', class: 'grid' });
  main().replaceChildren(grid, live);
  const draw = async () => {
    const from = startOfDay(new Date());
    const [rooms, today] = await Promise.all([
      api('GET', '/rooms/status'),
      api('GET', `/bookings?from=${encodeURIComponent(from.toISOString())}&to=${encodeURIComponent(addDays(from, 1).toISOString())}`).catch(() => []),
    ]);
    grid.replaceChildren(...rooms.map((room) => roomCard(room, today.filter((b) => b.room_id === room.room_id))));
  };
  redrawRooms = () => draw().catch(() => {});
  await draw();
  refreshTimer = setInterval(() => draw().catch(() => {}), 2000);
}

async function stopRoom(room) {
  if (!confirm(t('confirmStop', { room: room.name }))) return;
  try {
    await api('POST', `/rooms/${room.room_id}/stop`);
    redrawRooms?.();
  } catch (err) {
    say(err.message);
  }
}

/// Today's bookings of a room, the one under way marked.
function scheduleOf(today) {
  const now = Date.now();
  return el(
    'section',
    { class: 'schedule' },
    el('h4', {}, t('todaySchedule')),
    today.length
      ? el(
          'ul',
          {},
          ...today.map((b) => {
            const [from, to] = [Date.parse(b.starts_at), Date.parse(b.ends_at)];
            return el(
              'li',
              { 'data-booking': b.id, class: from <= now && now < to ? 'now' : '' },
              `${hhmm(from)}–${hhmm(to)} ${b.project_code} / ${b.section_code} · ${activityLabel(b.activity)}`,
            );
          }),
        )
      : el('p', { class: 'muted' }, t('noBookingsToday')),
  );
}

function roomCard(room, today = []) {
  const alarms = room.sources.filter((s) => s.state === 'reconnecting' || s.state === 'stopped');
  // A stream that stopped reaching the segment files while the source as a whole still runs.
  const stalls = room.sources.flatMap((s) =>
    s.state === 'reconnecting' ? [] : (s.streams ?? []).filter((st) => st.stalled).map((st) => ({ source: s.name, stream: st.stream })),
  );
  const card = el(
    'article',
    { class: `card room ${room.state}`, 'data-room': room.room_id, 'data-state': room.state },
    el(
      'header',
      {},
      el('h3', {}, room.name),
      el('span', { class: `badge ${room.state}` }, t(`roomState.${room.state}`)),
    ),
    el('p', { class: `muted area ${room.area}`, 'data-area': room.area }, `${kindLabel(room.kind)} · ${t(`areas.${room.area}`)}`),
    room.location ? el('p', { class: 'muted' }, room.location) : null,
  );
  if (room.booking_alarm) {
    card.append(
      el('p', { class: 'alarm', role: 'alert', 'data-booking-alarm': room.booking_alarm.booking_id }, t('bookingAlarm'), ` · ${room.booking_alarm.message}`),
    );
  }
  if (room.overrun) {
    card.append(
      el(
        'div',
        { class: 'prompt', role: 'alert', 'data-overrun': room.overrun.booking_id },
        el('p', {}, t('overrun'), ` · ${room.overrun.message}`),
        can('recording_control') ? el('button', { type: 'button', class: 'stop-overrun danger', onclick: () => stopRoom(room) }, t('stopNow')) : null,
      ),
    );
  }
  if (room.storage_alarm) {
    card.append(el('p', { class: 'alarm', role: 'alert', 'data-storage': '' }, t('storageAlarm'), ` · ${room.storage_alarm}`));
  }
  if (room.timestamp_alarm) {
    card.append(el('p', { class: 'alarm', role: 'alert', 'data-timestamp': '' }, t('timestampAlarm'), ` · ${room.timestamp_alarm}`));
  }
  if (room.signing_alarm) {
    card.append(el('p', { class: 'alarm', role: 'alert', 'data-signing': '' }, t('signingAlarm'), ` · ${room.signing_alarm}`));
  }
  for (const a of alarms) {
    card.append(el('p', { class: 'alarm', role: 'alert', 'data-source': a.name }, t('alarm', { source: a.name }), a.problem ? ` · ${a.problem}` : ''));
  }
  for (const st of stalls) {
    card.append(el('p', { class: 'alarm', role: 'alert', 'data-source': st.source }, t('streamStalled', { source: st.source, stream: t(`stream.${st.stream}`) })));
  }
  if (room.session) {
    card.append(
      el(
        'p',
        {},
        `${room.session.project_code} · ${room.session.session_code} · ${t(`kinds.${room.session.kind}`)} · `,
        el('span', { class: 'elapsed' }, `${t('elapsed')} ${duration(room.elapsed_seconds ?? 0)}`),
      ),
    );
    card.append(
      el(
        'table',
        { class: 'sources' },
        el('tr', {}, el('th', {}, ''), el('th', {}, t('state')), el('th', {}, t('transport')), el('th', {}, t('bitrate')), el('th', {}, t('lastSegment'))),
        ...room.sources.map((s) =>
          el(
            'tr',
            { 'data-source': s.name, class: s.state },
            el('td', {}, s.name),
            el('td', {}, t(`sourceState.${s.state}`)),
            el('td', {}, s.transport ? s.transport.toUpperCase() : '—'),
            el('td', {}, `${Math.round(s.bitrate_bps / 1000)} kbit/s`),
            el('td', {}, s.last_segment_age_seconds == null ? '—' : t('secondsAgo', { n: Math.round(s.last_segment_age_seconds) })),
          ),
        ),
      ),
    );
  }
  // A confidential (评标) session's record is read there only by its witness (others' reads are
  // audited: on the replay page or the API, not every 2 s from a card).
  const witnessOfCard = room.session?.started_by === me.user.username;
  if (room.session && can('sessions_read') && (room.session.kind !== 'evaluation' || witnessOfCard)) card.append(witnessPanel(room));
  const buttons = el('div', { class: 'buttons' });
  if (can('recording_control')) {
    if (room.state === 'idle') {
      buttons.append(el('button', { type: 'button', class: 'start', onclick: () => startForm(room) }, t('start')));
    } else {
      if (room.session?.started_by === me.user.username && room.state === 'recording') {
        buttons.append(el('button', { type: 'button', class: 'sign-stop', onclick: () => signAndStop(room) }, t('witness.signAndStop')));
      }
      buttons.append(
        el(
          'button',
          {
            type: 'button',
            class: 'stop danger',
            onclick: () => stopRoom(room),
          },
          t('stop'),
        ),
      );
    }
  }
  if (can('live_view') && room.session) {
    buttons.append(
      room.live_view
        ? el('button', { type: 'button', class: 'live', onclick: () => openLive(room) }, t('liveView'))
        : ['regulator', 'discipline_officer'].includes(me.user.role)
          ? el(
              'button',
              {
                type: 'button',
                class: 'supervise',
                onclick: () => {
                  // Live supervision of a confidential room: with a reason, audited.
                  const reason = prompt(t('superviseReason'));
                  if (reason?.trim()) openLive(room, reason.trim()).catch((err) => say(err.message));
                },
              },
              t('supervise'),
            )
          : el('span', { class: 'muted' }, t('noLiveView')),
    );
  }
  if (can('rooms_probe')) {
    const running = probes.get(room.room_id)?.running;
    buttons.append(el('button', { type: 'button', class: 'probe', disabled: running, onclick: () => probeRoom(room) }, t('probe')));
  }
  card.append(scheduleOf(today), buttons);
  const probe = probes.get(room.room_id);
  if (probe) {
    card.classList.add('probed');
    card.append(probeView(room, probe));
  }
  return card;
}

// ---- witness record (见证记录) of a live session --------------------------------------------------

/// The panel of a live session's witness record: its entries (corrections marked) and, for the
/// session's witness, the form to add one (kind, text, time: now unless changed).
function witnessPanel(room) {
  const id = room.session.id;
  for (const k of witnessPanels.keys()) if (k !== id && !document.querySelector(`[data-witness="${k}"]`)) witnessPanels.delete(k);
  let p = witnessPanels.get(id);
  if (!p) {
    p = makeWitnessPanel(room);
    witnessPanels.set(id, p);
  }
  p.refresh();
  return p.box;
}

function makeWitnessPanel(room) {
  const id = room.session.id;
  const mine = room.session.started_by === me.user.username && can('recording_control');
  const list = el('ol', { class: 'witness-entries' });
  const box = el('section', { class: 'witness', 'data-witness': id }, el('h4', {}, t('witness.title')), list);
  const refresh = async () => {
    try {
      const r = await api('GET', `/sessions/${id}/witness-record`);
      list.replaceChildren(
        ...r.entries.map((e) =>
          el(
            'li',
            { 'data-seq': e.seq, class: e.corrected_by.length ? 'corrected' : '' },
            el('time', {}, formatDateTime(Date.parse(e.at))),
            ' ',
            el('b', {}, t(`witness.kinds.${e.kind}`)),
            e.corrects_seq ? el('span', { class: 'muted' }, ` ${t('witness.correctsN', { n: e.corrects_seq })}`) : null,
            ` ${e.text}`,
          ),
        ),
      );
      box.querySelector('.witness-signed')?.remove();
      if (r.signed_by) box.append(el('p', { class: 'witness-signed ok' }, t('witness.signedBy', { who: r.signed_by, at: formatDateTime(Date.parse(r.signed_at)) })));
      form.hidden = !mine || !!r.signed_by;
      // Redrawn every 2 s: what the witness chose meanwhile stays chosen.
      const chosen = correct.value;
      correct.replaceChildren(el('option', { value: '' }, '—'), ...r.entries.map((e) => el('option', { value: e.id }, `#${e.seq} ${e.text.slice(0, 20)}`)));
      correct.value = chosen;
    } catch {
      /* shown at the next refresh */
    }
  };
  const kind = el('select', { name: 'witness-kind' }, ...options(WITNESS_KINDS, (k) => t(`witness.kinds.${k}`), 'remark'));
  const text = el('textarea', { name: 'witness-text', rows: '2', maxlength: '2000', required: true });
  const at = el('input', { name: 'witness-at', type: 'datetime-local', step: '1' });
  const correct = el('select', { name: 'witness-corrects' });
  const form = el(
    'form',
    {
      class: 'witness-add',
      hidden: !mine,
      onsubmit: async (e) => {
        e.preventDefault();
        try {
          const body = { kind: kind.value, text: text.value };
          if (at.value) body.at = new Date(at.value).toISOString();
          if (correct.value) body.corrects = correct.value;
          await api('POST', `/sessions/${id}/witness-entries`, body);
          text.value = '';
          at.value = '';
          correct.value = '';
          clearMessages();
          await refresh();
        } catch (err) {
          say(err.message);
        }
      },
    },
    field(t('witness.kind'), kind),
    field(t('witness.text'), text),
    field(t('witness.at'), at),
    field(t('witness.corrects'), correct),
    el('button', { type: 'submit', class: 'witness-submit' }, t('witness.add')),
  );
  box.append(form);
  return { box, refresh };
}

/// The witness signs the record with their password re-entered, then the recording stops.
async function signAndStop(room) {
  const password = prompt(t('witness.passwordPrompt', { room: room.name }));
  if (password == null) return;
  try {
    await api('POST', `/sessions/${room.session.id}/witness-record/sign`, { password });
    await api('POST', `/rooms/${room.room_id}/stop`);
    say(t('witness.signedAndStopped'), 'notice');
  } catch (err) {
    say(err.message);
  }
  redrawRooms?.();
}

// ---- probe: check a room's sources before a session --------------------------------------------

const PROBE_SECONDS = 4;

async function probeRoom(room) {
  probes.set(room.room_id, { running: true });
  redrawRooms?.();
  try {
    const result = await api('POST', `/rooms/${room.room_id}/probe?seconds=${PROBE_SECONDS}`);
    probes.set(room.room_id, { result });
  } catch (err) {
    probes.set(room.room_id, { error: err.message });
  }
  redrawRooms?.();
}

const yesNo = (b) => el('span', { class: b ? 'ok' : 'bad' }, t(b ? 'yes' : 'no'));

function codecLines(s) {
  if (!s.codecs.length) return ['—'];
  return s.codecs.map((c) =>
    el(
      'div',
      { class: c.recorded ? '' : 'muted' },
      `${c.media === 'video' ? t('video') : c.media === 'audio' ? t('audio') : c.media} ${c.codec} (${c.encoding})${c.recorded ? '' : ` ${t('notRecorded')}`}`,
    ),
  );
}

function probeView(room, probe) {
  const box = el('section', { class: 'probe', 'data-probe': room.room_id });
  const close = el('button', { type: 'button', class: 'probe-close', onclick: () => { probes.delete(room.room_id); redrawRooms?.(); } }, t('close'));
  if (probe.running) {
    box.append(el('p', { class: 'muted', role: 'status' }, t('probing', { n: PROBE_SECONDS })));
    return box;
  }
  if (probe.error) {
    box.append(el('p', { class: 'error', role: 'alert' }, t('error', { detail: probe.error })), close);
    return box;
  }
  const r = probe.result;
  box.setAttribute('data-recordable', String(r.recordable));
  box.append(
    el(
      'p',
      {},
      el('strong', { class: r.recordable ? 'ok' : 'bad' }, t(r.recordable ? 'probeRecordable' : 'probeNotRecordable')),
      ' · ',
      el('span', { class: 'muted' }, t('probedAt', { time: formatDateTime(Date.parse(r.probed_at)) })),
    ),
  );
  const head = ['probeSource', 'reachable', 'transport', 'codecs', 'resolution', 'frameRate', 'bitrate', 'clockOffset', 'recordable'];
  const table = el('table', { class: 'probe-result' }, el('tr', {}, ...head.map((h) => el('th', {}, t(h)))));
  for (const s of r.sources) {
    table.append(
      el(
        'tr',
        { 'data-probe-source': s.name, class: s.recordable ? 'ok' : 'bad' },
        el('td', {}, s.name),
        el('td', {}, yesNo(s.reachable)),
        el('td', {}, s.transport ? s.transport.toUpperCase() : '—'),
        el('td', {}, ...codecLines(s)),
        el('td', {}, s.resolution ? `${s.resolution.width}×${s.resolution.height}` : '—'),
        el('td', {}, s.frame_rate == null ? '—' : `${s.frame_rate} fps`),
        el('td', {}, s.bitrate_bps == null ? '—' : `${Math.round(s.bitrate_bps / 1000)} kbit/s`),
        el('td', { title: s.clock_note ?? '' }, s.clock_offset_seconds == null ? '—' : `${s.clock_offset_seconds > 0 ? '+' : ''}${s.clock_offset_seconds} s`),
        el('td', {}, yesNo(s.recordable)),
      ),
    );
    const notes = [...s.problems];
    if (s.clock_note) notes.push(`${t('clockOffset')}: ${s.clock_note}`);
    if (notes.length) {
      table.append(
        el(
          'tr',
          { class: 'problems' },
          el('td', { colspan: String(head.length) }, el('ul', {}, ...notes.map((p) => el('li', {}, p)))),
        ),
      );
    }
  }
  box.append(table, close);
  return box;
}

function startForm(room) {
  stopRefreshing();
  const project = el('input', { id: 'start-project', required: true, pattern: '[A-Za-z0-9][A-Za-z0-9._-]{0,63}' });
  const session = el('input', { id: 'start-session', required: true, pattern: '[A-Za-z0-9][A-Za-z0-9._-]{0,63}' });
  const kind = el('select', { id: 'start-kind' }, ...options(KINDS, (k) => t(`kinds.${k}`), room.kind));
  const category = el('select', { id: 'start-category' }, ...options(CATEGORIES, (c) => catName(c), 'other'));
  const note = el('input', { id: 'start-note', maxlength: '2000' });
  const reason = el('input', { id: 'start-reason', maxlength: '2000' });
  main().replaceChildren(
    el(
      'form',
      {
        id: 'start-form',
        class: 'card narrow',
        onsubmit: async (e) => {
          e.preventDefault();
          if (!confirm(`${t('confirmStart')} ${room.name}: ${project.value} ${session.value}`)) return;
          try {
            await api('POST', `/rooms/${room.room_id}/start`, {
              project_code: project.value.trim(),
              session_code: session.value.trim(),
              kind: kind.value,
              category: category.value,
              note: note.value,
              reason: reason.value.trim(),
            });
            location.hash = '#rooms';
            route();
          } catch (err) {
            say(err.message);
          }
        },
      },
      el('h2', {}, `${t('start')} · ${room.name}`),
      field(t('projectCode'), project),
      field(t('sessionCode'), session),
      field(t('kind'), kind),
      field(t('category'), category),
      field(t('note'), note),
      field(t('startReason'), reason),
      el('div', { class: 'buttons' }, el('button', { type: 'submit', id: 'start-submit' }, t('start')), el('button', { type: 'button', onclick: route }, t('cancel'))),
    ),
  );
  project.focus();
}

// ---- bookings: a week per room, and the booking form ------------------------------------------

const startOfDay = (d) => {
  const x = new Date(d);
  x.setHours(0, 0, 0, 0);
  return x;
};
const addDays = (d, n) => {
  const x = new Date(d);
  x.setDate(x.getDate() + n);
  return x;
};
const mondayOf = (d) => addDays(startOfDay(d), -((new Date(d).getDay() + 6) % 7));
const hhmm = (ms) => formatTime(ms).slice(0, 5);
const dayOf = (d) => formatDateTime(d.getTime()).slice(0, 10);
/// A `datetime-local` value (the browser's zone, to the second).
const localInput = (d) => new Date(d.getTime() - d.getTimezoneOffset() * 60000).toISOString().slice(0, 19);
let weekStart = null;

async function showBookings() {
  weekStart ??= mondayOf(new Date());
  const section = el('section', { id: 'bookings' });
  main().replaceChildren(section);
  const draw = async () => {
    const end = addDays(weekStart, 7);
    const [rooms, bookings] = await Promise.all([
      api('GET', '/rooms'),
      api('GET', `/bookings?from=${encodeURIComponent(weekStart.toISOString())}&to=${encodeURIComponent(end.toISOString())}`),
    ]);
    const days = [...Array(7)].map((_, i) => addDays(weekStart, i));
    const go = (id, label, to) =>
      el('button', { type: 'button', id, onclick: () => { weekStart = to; draw().catch((err) => say(err.message)); } }, label);
    const nav = el(
      'div',
      { class: 'buttons week-nav' },
      go('week-prev', t('prevWeek'), addDays(weekStart, -7)),
      go('week-this', t('thisWeek'), mondayOf(new Date())),
      go('week-next', t('nextWeek'), addDays(weekStart, 7)),
      el('strong', { id: 'week-label' }, `${t('week')} ${dayOf(weekStart)} – ${dayOf(days[6])}`),
    );
    const today = dayOf(new Date());
    const table = el(
      'table',
      { id: 'calendar', class: 'calendar' },
      el('tr', {}, el('th', {}, t('room')), ...days.map((d) => el('th', { 'data-day': dayOf(d), class: dayOf(d) === today ? 'today' : '' }, dayOf(d).slice(5)))),
      ...rooms.map((r) =>
        el(
          'tr',
          { 'data-room': r.id },
          el('th', {}, r.name, el('div', { class: 'muted' }, `${kindLabel(r.kind)} · ${t(`areas.${r.area}`)}`)),
          ...days.map((d) =>
            el(
              'td',
              { 'data-day': dayOf(d) },
              ...bookings
                .filter((b) => b.room_id === r.id && Date.parse(b.starts_at) < addDays(d, 1).getTime() && Date.parse(b.ends_at) > d.getTime())
                .map((b) => bookingChip(b, draw)),
            ),
          ),
        ),
      ),
    );
    section.replaceChildren(
      ...[nav, bookings.length ? null : el('p', { class: 'muted' }, t('noBookings')), table, can('bookings') ? bookingForm(rooms, draw) : null].filter(Boolean),
    );
  };
  await draw();
}

function bookingChip(b, redraw) {
  const [from, to] = [Date.parse(b.starts_at), Date.parse(b.ends_at)];
  return el(
    'div',
    { class: 'booking', 'data-booking': b.id, title: `${formatDateTime(from)} – ${formatDateTime(to)}${b.note ? ` · ${b.note}` : ''}` },
    el('strong', {}, `${hhmm(from)}–${hhmm(to)}`),
    ` ${b.project_code} / ${b.section_code} · ${activityLabel(b.activity)}`,
    can('bookings')
      ? el(
          'button',
          {
            type: 'button',
            class: 'cancel-booking',
            title: t('cancelBooking'),
            onclick: async () => {
              const reason = prompt(t('cancelReason'));
              if (!reason?.trim()) return;
              try {
                await api('POST', `/bookings/${b.id}/cancel`, { reason });
                await redraw();
              } catch (err) {
                say(err.message);
              }
            },
          },
          '×',
        )
      : null,
  );
}

function bookingForm(rooms, redraw) {
  const next = new Date();
  next.setMinutes(0, 0, 0);
  next.setHours(next.getHours() + 1);
  const room = el('select', { id: 'book-room', required: true }, ...rooms.map((r) => el('option', { value: r.id }, r.name)));
  const project = el('input', { id: 'book-project', required: true, pattern: '[A-Za-z0-9][A-Za-z0-9._-]{0,63}' });
  const sectionCode = el('input', { id: 'book-section', required: true, pattern: '[A-Za-z0-9][A-Za-z0-9._-]{0,63}' });
  const activity = el('select', { id: 'book-activity' }, ...options(catalogue.activities.map((a) => a.id), activityLabel, 'bid_opening'));
  const category = el('select', { id: 'book-category' }, ...options(CATEGORIES, (c) => t(`cats.${c}`), 'other'));
  const starts = el('input', { id: 'book-start', type: 'datetime-local', step: '1', required: true, value: localInput(next) });
  const ends = el('input', { id: 'book-end', type: 'datetime-local', step: '1', required: true, value: localInput(new Date(next.getTime() + 3600e3)) });
  const note = el('input', { id: 'book-note', maxlength: '1000' });
  return el(
    'form',
    {
      id: 'booking-form',
      class: 'card narrow',
      onsubmit: async (e) => {
        e.preventDefault();
        try {
          const b = await api('POST', '/bookings', {
            room_id: room.value,
            project_code: project.value.trim(),
            section_code: sectionCode.value.trim(),
            activity: activity.value,
            category: category.value,
            starts_at: new Date(starts.value).toISOString(),
            ends_at: new Date(ends.value).toISOString(),
            note: note.value,
          });
          const name = rooms.find((r) => r.id === b.room_id)?.name ?? b.room_id;
          await redraw();
          say(t('booked', { room: name, from: formatDateTime(Date.parse(b.starts_at)), to: hhmm(Date.parse(b.ends_at)) }), 'notice');
        } catch (err) {
          say(err.message);
        }
      },
    },
    el('h2', {}, t('bookRoom')),
    field(t('room'), room),
    field(t('projectCode'), project),
    field(t('sectionCode'), sectionCode),
    field(t('activity'), activity),
    field(t('category'), category),
    field(t('startsAt'), starts),
    field(t('endsAt'), ends),
    field(t('note'), note),
    el('div', { class: 'buttons' }, el('button', { type: 'submit', id: 'book-submit' }, t('book'))),
  );
}

async function openLive(room, reason) {
  const view = await api('POST', `/rooms/${room.room_id}/live${reason ? `?reason=${encodeURIComponent(reason)}` : ''}`);
  const live = document.querySelector('#live');
  for (const h of liveHls) h.destroy();
  liveHls = [];
  live.replaceChildren(
    ...view.sources
      .filter((s) => s.media !== 'audio')
      .map((s) => {
        const video = el('video', { muted: true, autoplay: true, playsinline: true });
        video.muted = true;
        if (Hls.isSupported()) {
          const hls = new Hls({ liveSyncDurationCount: 2 });
          hls.loadSource(s.playlist);
          hls.attachMedia(video);
          liveHls.push(hls);
        } else {
          video.src = s.playlist;
        }
        return el('figure', { class: 'tile video', 'data-source': s.name }, video, el('figcaption', {}, el('span', {}, `${room.name} · ${s.name}`)));
      }),
  );
}

// ---- sessions --------------------------------------------------------------------------------

async function showSessions() {
  const rooms = await api('GET', '/rooms');
  const project = el('input', { id: 'search-project', placeholder: 'ZB-2026-0001' });
  const room = el('select', { id: 'search-room' }, el('option', { value: '' }, t('all')), ...rooms.map((r) => el('option', { value: r.id }, r.name)));
  const date = el('input', { id: 'search-date', type: 'date' });
  const table = el('table', { id: 'sessions', class: 'list' });
  const search = async () => {
    const q = new URLSearchParams({ limit: '200' });
    if (project.value.trim()) q.set('project_code', project.value.trim());
    if (room.value) q.set('room_id', room.value);
    let list = await api('GET', `/sessions?${q}`);
    if (date.value) list = list.filter((s) => formatDateTime(Date.parse(s.started_at)).startsWith(date.value));
    table.replaceChildren(
      el('tr', {}, ...[t('projectCode'), t('sessionCode'), t('kind'), t('category'), t('room'), t('started'), t('stopped'), t('state'), ''].map((h) => el('th', {}, h))),
      ...list.map((s) =>
        el(
          'tr',
          { 'data-session': s.id },
          el('td', {}, s.project_code),
          el('td', {}, s.session_code),
          el('td', {}, t(`kinds.${s.kind}`)),
          el('td', {}, catName(s.category)),
          el('td', {}, s.room_name),
          el('td', {}, formatDateTime(Date.parse(s.started_at))),
          el('td', {}, s.stopped_at ? formatDateTime(Date.parse(s.stopped_at)) : '—'),
          el('td', {}, t(`states.${s.state}`)),
          el('td', {}, can('replay') && s.state !== 'recording' ? el('a', { href: `/sessions/${s.id}`, class: 'replay' }, t('replay')) : ''),
        ),
      ),
    );
    if (!list.length) table.append(el('tr', {}, el('td', { colspan: '9' }, t('noSessions'))));
  };
  main().replaceChildren(
    el(
      'form',
      {
        id: 'session-search',
        class: 'filters',
        onsubmit: (e) => {
          e.preventDefault();
          search().catch((err) => say(err.message));
        },
      },
      field(t('projectCode'), project),
      field(t('room'), room),
      field(t('date'), date),
      el('button', { type: 'submit' }, t('search')),
    ),
    table,
  );
  await search();
}

// ---- projects --------------------------------------------------------------------------------

const SECTION_STATES = ['registered', 'in_progress', 'closed', 'suspended', 'terminated'];
/// The states a change needs a reason for (the server says the same).
const NEEDS_REASON = ['suspended', 'terminated'];

/// The problems of a refused request, each shown next to its field (`data-problem` names the
/// field); those without a field on the form at the top. Every problem at once.
function showProblems(form, err) {
  for (const p of form.querySelectorAll('.problem')) p.remove();
  for (const f of form.querySelectorAll('[aria-invalid]')) f.removeAttribute('aria-invalid');
  if (!err.problems?.length) return say(err.message);
  say(t('problemsFound', { n: err.problems.length }));
  for (const p of err.problems) {
    const text = lang === 'zh' ? p.zh : p.en;
    const input = form.querySelector(`[data-field="${CSS.escape(p.field)}"]`);
    const note = el('small', { class: 'problem bad', 'data-problem': p.field, 'data-code': p.code }, text);
    if (input) {
      input.setAttribute('aria-invalid', 'true');
      input.closest('label, .section-row')?.append(note);
    } else {
      form.querySelector('.form-problems').append(note);
    }
  }
}

function registerForm(onDone) {
  const input = (name, attrs = {}) => el('input', { id: `project-${name}`, 'data-field': name, ...attrs });
  const code = input('project_code', { placeholder: 'ZB-2026-0001' });
  const name = input('name');
  const category = el('select', { id: 'project-category', 'data-field': 'category' }, ...options(CATEGORIES, catName, 'construction'));
  const method = el('select', { id: 'project-method', 'data-field': 'method' });
  const fillMethods = () => {
    const fits = catalogue.methods.filter((m) => !m.categories.length || m.categories.includes(category.value));
    method.replaceChildren(...fits.map((m) => el('option', { value: m.id }, methodName(m.id))));
  };
  category.addEventListener('change', fillMethods);
  fillMethods();
  const tenderer = input('tenderer');
  const agent = input('agent');
  const person = input('service_person', { value: me.user.role === 'witness_staff' ? me.user.username : '' });
  const sections = el('div', { id: 'project-sections' });
  const addSection = () => {
    const i = sections.children.length;
    sections.append(
      el(
        'div',
        { class: 'section-row filters' },
        field(t('sectionCode'), el('input', { class: 'section-code', 'data-field': `sections[${i}].code`, value: `${i + 1}` })),
        field(t('sectionName'), el('input', { class: 'section-name', 'data-field': `sections[${i}].name` })),
      ),
    );
  };
  addSection();
  const form = el(
    'form',
    {
      id: 'project-form',
      class: 'card narrow',
      novalidate: true,
      onsubmit: async (e) => {
        e.preventDefault();
        const body = {
          project_code: code.value.trim(),
          name: name.value,
          category: category.value,
          method: method.value,
          tenderer: tenderer.value,
          agent: agent.value,
          service_person: person.value.trim(),
          sections: [...sections.children].map((row) => ({
            code: row.querySelector('.section-code').value.trim(),
            name: row.querySelector('.section-name').value,
          })),
        };
        try {
          const p = await api('POST', '/projects', body);
          say(t('projectRegistered', { code: p.project_code }), 'ok');
          onDone(p.project_code);
        } catch (err) {
          showProblems(form, err);
        }
      },
    },
    el('h2', {}, t('registerProject')),
    el('div', { class: 'form-problems' }),
    field(t('projectCode'), code),
    field(t('projectName'), name),
    field(t('category'), category),
    field(t('method'), method),
    field(t('tenderer'), tenderer),
    field(t('agent'), agent),
    field(t('servicePerson'), person),
    el('h3', {}, t('sections')),
    sections,
    el(
      'div',
      { class: 'buttons' },
      el('button', { type: 'button', id: 'project-add-section', onclick: addSection }, t('addSection')),
      el('button', { type: 'submit', id: 'project-submit' }, t('register')),
      el('button', { type: 'button', onclick: route }, t('cancel')),
    ),
  );
  return form;
}

async function showProjects() {
  const category = el('select', { id: 'projects-category' }, el('option', { value: '' }, t('all')), ...options(CATEGORIES, catName));
  const state = el('select', { id: 'projects-state' }, el('option', { value: '' }, t('all')), ...options(SECTION_STATES, (s) => t(`sectionStates.${s}`)));
  const table = el('table', { id: 'projects', class: 'list' });
  const search = async () => {
    const q = new URLSearchParams({ limit: '200' });
    if (category.value) q.set('category', category.value);
    if (state.value) q.set('state', state.value);
    const list = await api('GET', `/projects?${q}`);
    table.replaceChildren(
      el('tr', {}, ...[t('projectCode'), t('projectName'), t('category'), t('method'), t('tenderer'), t('servicePerson'), t('registeredAt'), ''].map((h) => el('th', {}, h))),
      ...list.map((p) =>
        el(
          'tr',
          { 'data-project': p.project_code },
          el('td', {}, el('a', { href: '#projects', class: 'open-project', onclick: (e) => { e.preventDefault(); showProject(p.project_code).catch((err) => say(err.message)); } }, p.project_code)),
          el('td', {}, p.name),
          el('td', {}, catName(p.category)),
          el('td', {}, methodName(p.method)),
          el('td', {}, p.tenderer),
          el('td', {}, p.service_person),
          el('td', {}, formatDateTime(Date.parse(p.registered_at))),
          el('td', {}, p.ended ? t('projectEnded') : ''),
        ),
      ),
    );
    if (!list.length) table.append(el('tr', {}, el('td', { colspan: '8' }, t('noProjects'))));
  };
  main().replaceChildren(
    el(
      'form',
      {
        id: 'project-search',
        class: 'filters',
        onsubmit: (e) => {
          e.preventDefault();
          search().catch((err) => say(err.message));
        },
      },
      field(t('category'), category),
      field(t('sectionState'), state),
      el('button', { type: 'submit' }, t('search')),
      can('projects_register')
        ? el('button', { type: 'button', id: 'project-new', onclick: () => main().replaceChildren(registerForm((code) => showProject(code).catch((err) => say(err.message)))) }, t('registerProject'))
        : null,
    ),
    table,
  );
  await search();
}

async function showProject(code) {
  const p = await api('GET', `/projects/${encodeURIComponent(code)}`);
  const change = async (section, to) => {
    let reason = '';
    if (NEEDS_REASON.includes(to) || to === 'closed') {
      reason = prompt(t('reasonFor', { state: t(`sectionStates.${to}`) })) ?? null;
      if (reason === null) return;
    }
    try {
      const r = await api('POST', `/projects/${encodeURIComponent(code)}/sections/${encodeURIComponent(section)}/state`, { state: to, reason });
      await showProject(code);
      say(r.project_ended ? t('projectEndedClock') : t('sectionChanged', { section, state: t(`sectionStates.${to}`) }), 'ok');
    } catch (err) {
      say(err.problems?.length ? err.problems.map((x) => (lang === 'zh' ? x.zh : x.en)).join('；') : err.message);
    }
  };
  const mayChange = (to) => can('projects_register') && (!['closed', 'terminated'].includes(to) || can('project_events'));
  const dl = (pairs) => el('dl', { class: 'facts' }, ...pairs.flatMap(([k, v]) => [el('dt', {}, k), el('dd', {}, v ?? '—')]));
  main().replaceChildren(
    el(
      'section',
      { id: 'project-detail', class: 'card', 'data-project': code },
      el('h2', {}, `${code} ${p.name ?? ''}`),
      p.registered
        ? dl([
            [t('category'), catName(p.category)],
            [t('method'), methodName(p.method)],
            [t('tenderer'), p.tenderer],
            [t('agent'), p.agent || '—'],
            [t('servicePerson'), p.service_person],
            [t('registeredAt'), `${formatDateTime(Date.parse(p.registered_at))} · ${p.registered_by}`],
            [t('closedAt'), p.closed_at ? formatDateTime(Date.parse(p.closed_at)) : t('projectOpen')],
          ])
        : el('p', {}, t('notRegistered')),
      el('h3', {}, t('sections')),
      el(
        'table',
        { id: 'project-sections-table', class: 'list' },
        el('tr', {}, ...[t('sectionCode'), t('sectionName'), t('state'), t('history'), ''].map((h) => el('th', {}, h))),
        ...(p.sections ?? []).map((s) =>
          el(
            'tr',
            { 'data-section': s.section_code, 'data-state': s.state },
            el('td', {}, s.section_code),
            el('td', {}, s.name),
            el('td', { class: 'section-state' }, t(`sectionStates.${s.state}`)),
            el(
              'td',
              {},
              el('ol', { class: 'history' }, ...s.history.map((h) => el('li', {}, `${formatDateTime(Date.parse(h.at))} ${t(`sectionStates.${h.to}`)} · ${h.actor}${h.reason ? ` · ${h.reason}` : ''}`))),
            ),
            el(
              'td',
              { class: 'buttons' },
              ...s.next.filter(mayChange).map((to) => el('button', { type: 'button', class: `to-${to}`, onclick: () => change(s.section_code, to) }, t(`sectionTo.${to}`))),
            ),
          ),
        ),
      ),
      el('h3', {}, t('navSessions')),
      p.sessions?.length ? null : el('p', {}, t('noSessions')),
      el(
        'table',
        { class: 'list', id: 'project-sessions' },
        ...(p.sessions ?? []).map((s) =>
          el('tr', {}, el('td', {}, s.session_code), el('td', {}, t(`kinds.${s.kind}`)), el('td', {}, s.room_name), el('td', {}, formatDateTime(Date.parse(s.started_at))), el('td', {}, t(`states.${s.state}`))),
        ),
      ),
      el(
        'div',
        { class: 'buttons' },
        can('session_audit_read')
          ? el('button', { type: 'button', id: 'project-archive', onclick: () => showArchive(code).catch((err) => say(err.message)) }, t('archive.open'))
          : null,
        el('button', { type: 'button', id: 'project-back', onclick: route }, t('back')),
      ),
    ),
  );
}

// ---- the archive: one archive per project, holds, exports, destruction (archive clerks) ------

/// Export jobs started from this console (session and project packages), newest first.
const exportJobs = [];
let redrawExports = null;

function exportRow(job) {
  const pct = Math.round(job.percent ?? 0);
  const what = job.project_code ? `${t('archive.projectPackage')} ${job.project_code}` : `${t('archive.sessionPackage')} ${job.session_id}`;
  return el(
    'tr',
    { 'data-export': job.id, 'data-state': job.state, class: 'export-job' },
    el('td', {}, what),
    el('td', {}, t(`archive.jobStates.${job.state}`)),
    el('td', {}, el('progress', { max: '100', value: String(pct) }), ` ${pct} %`, job.eta_seconds ? ` · ${t('archive.eta', { s: Math.ceil(job.eta_seconds) })}` : ''),
    el(
      'td',
      {},
      job.state === 'ready' ? el('a', { href: job.download, class: 'export-download', download: '' }, t('archive.download')) : job.error ? el('span', { class: 'bad' }, job.error) : '',
    ),
  );
}

function exportsTable() {
  const table = el('table', { class: 'list exports', id: 'export-jobs' });
  const draw = () =>
    table.replaceChildren(
      el('tr', {}, ...[t('archive.package'), t('state'), t('archive.progress'), ''].map((h) => el('th', {}, h))),
      ...(exportJobs.length ? exportJobs.map(exportRow) : [el('tr', {}, el('td', { colspan: '4' }, t('archive.noExports')))]),
    );
  draw();
  redrawExports = draw;
  return table;
}

/// Starts an export job (`path`: `/sessions/{id}/exports` or `/projects/{code}/exports`) and
/// follows its progress until it is ready or failed.
async function startExport(path, reason) {
  const job = await api('POST', path, { reason });
  exportJobs.unshift(job);
  redrawExports?.();
  const follow = setInterval(async () => {
    try {
      const now = await api('GET', `/exports/${job.id}`);
      Object.assign(job, now);
    } catch (err) {
      job.state = 'failed';
      job.error = err.message;
    }
    if (job.state !== 'preparing') clearInterval(follow);
    redrawExports?.();
  }, 400);
  return job;
}

const verdictClass = (v) => (v === 'INTACT' ? 'ok' : v === 'RECORDING' ? '' : 'bad');

async function showArchive(code) {
  const a = await api('GET', `/projects/${encodeURIComponent(code)}/archive`);
  const when = (iso) => (iso ? formatDateTime(Date.parse(iso)) : '—');
  const c = a.completeness;
  const reason = el('input', { id: 'archive-export-reason', value: t('archive.defaultReason'), size: '30' });
  const sessionExport = (s) =>
    can('export') && s.verification !== 'RECORDING'
      ? el('button', { type: 'button', class: 'export-session', onclick: () => startExport(`/sessions/${s.id}/exports`, reason.value).catch((err) => say(err.message)) }, t('archive.exportSession'))
      : null;
  const record = (w) => (w.signed ? t('archive.recordSigned', { n: w.entries, who: w.signed_by }) : t('archive.recordUnsigned', { n: w.entries }));
  main().replaceChildren(
    el(
      'section',
      { id: 'project-archive', class: 'card', 'data-project': a.project_code },
      el('h2', {}, `${t('archive.title')} · ${a.project_code} ${a.registered?.name ?? ''}`),
      el(
        'p',
        { id: 'archive-complete', 'data-complete': String(c.complete), class: c.complete ? 'ok' : 'bad' },
        c.complete ? t('archive.complete', { n: c.activities_checked }) : t('archive.incomplete', { n: c.missing.length }),
        ` · ${t('archive.checkedAt', { at: when(a.checked_at) })}`,
      ),
      c.missing.length
        ? el('ul', { id: 'archive-missing' }, ...c.missing.map((m) => el('li', { 'data-code': m.code, 'data-reference': m.reference }, lang === 'zh' ? m.zh : m.en)))
        : null,
      c.pending.length ? el('p', {}, t('archive.pending', { n: c.pending.length })) : null,
      el('h3', {}, t('sections')),
      el(
        'table',
        { class: 'list', id: 'archive-sections' },
        el('tr', {}, ...[t('sectionCode'), t('sectionName'), t('state'), t('history')].map((h) => el('th', {}, h))),
        ...(a.registered?.sections ?? []).map((s) =>
          el(
            'tr',
            {},
            el('td', {}, s.section_code),
            el('td', {}, s.name),
            el('td', {}, t(`sectionStates.${s.state}`)),
            el('td', {}, s.history.map((h) => `${when(h.at)} ${t(`sectionStates.${h.to}`)} · ${h.actor}`).join('；')),
          ),
        ),
      ),
      el('h3', {}, t('navBookings')),
      el(
        'table',
        { class: 'list', id: 'archive-bookings' },
        el('tr', {}, ...[t('sectionCode'), t('archive.activity'), t('archive.slot'), t('state'), t('navSessions')].map((h) => el('th', {}, h))),
        ...a.bookings.map((b) =>
          el(
            'tr',
            { 'data-booking': b.id },
            el('td', {}, b.section_code),
            el('td', {}, lang === 'zh' ? b.activity_zh : b.activity_en),
            el('td', {}, `${when(b.starts_at)} – ${when(b.ends_at)}`),
            el('td', {}, t(`archive.bookingStates.${b.state}`)),
            el('td', {}, b.session_ids.length ? String(b.session_ids.length) : '—'),
          ),
        ),
      ),
      el('h3', {}, t('navSessions')),
      el(
        'table',
        { class: 'list', id: 'archive-sessions' },
        el('tr', {}, ...[t('sessionCode'), t('room'), t('started'), t('archive.verification'), t('archive.witnessRecord'), ''].map((h) => el('th', {}, h))),
        ...a.sessions.map((s) =>
          el(
            'tr',
            { 'data-session': s.id, 'data-verification': s.verification, 'data-signed': String(s.witness_record.signed) },
            el('td', {}, s.session_code),
            el('td', {}, s.room_name),
            el('td', {}, when(s.started_at)),
            el('td', { class: verdictClass(s.verification), title: s.verdict }, s.verification),
            el('td', { class: s.witness_record.signed ? 'ok' : 'bad' }, record(s.witness_record)),
            el('td', {}, el('a', { href: `/sessions/${s.id}` }, t('archive.replay')), ' ', sessionExport(s)),
          ),
        ),
      ),
      el('h3', {}, t('archive.holds')),
      a.holds.length
        ? el('ul', { id: 'archive-holds' }, ...a.holds.map((h) => el('li', {}, `${when(h.placed_at)} ${h.reason} · ${h.authority} · ${h.reference}${h.released_at ? ` (${t('archive.released')})` : ''}`)))
        : el('p', {}, t('archive.noHolds')),
      el('h3', {}, t('archive.exports')),
      a.exports.length
        ? el('ul', { id: 'archive-exports' }, ...a.exports.map((e) => el('li', {}, `${when(e.at)} ${e.action} · ${e.actor} · ${e.reason}`)))
        : el('p', {}, t('archive.noExports')),
      el('h3', {}, t('archive.catalogue')),
      el(
        'table',
        { class: 'list', id: 'archive-catalogue' },
        el('tr', {}, ...[t('archive.no'), t('archive.date'), t('archive.itemTitle'), t('archive.reference')].map((h) => el('th', {}, h))),
        ...a.catalogue.items.map((i) => el('tr', { 'data-kind': i.kind }, el('td', {}, String(i.no)), el('td', {}, when(i.date)), el('td', {}, i.title), el('td', {}, el('code', {}, i.reference)))),
      ),
      can('export')
        ? el(
            'form',
            {
              id: 'archive-export',
              class: 'filters',
              onsubmit: (e) => {
                e.preventDefault();
                startExport(`/projects/${encodeURIComponent(a.project_code)}/exports`, reason.value).catch((err) => say(err.message));
              },
            },
            field(t('archive.reason'), reason),
            el('button', { type: 'submit', id: 'archive-export-project' }, t('archive.exportProject')),
          )
        : null,
      can('export') ? exportsTable() : null,
      el('div', { class: 'buttons' }, el('button', { type: 'button', id: 'archive-back', onclick: () => showProject(code).catch((err) => say(err.message)) }, t('back'))),
    ),
  );
}

/// The archive clerks' desk: open a project's archive, holds, exports, destructions.
async function showArchiveDesk() {
  const code = el('input', { id: 'archive-code', required: true, placeholder: 'ZB-…' });
  const holdsBox = el('div', { id: 'holds' });
  const destructionsBox = el('div', { id: 'destructions' });
  const drawHolds = async () => {
    const holds = await api('GET', '/holds?all=true');
    const release = async (h) => {
      const why = prompt(t('archive.releaseReason'));
      if (!why) return;
      try {
        await api('POST', `/holds/${h.id}/release`, { reason: why });
        await drawHolds();
        say(t('archive.holdReleased'), 'ok');
      } catch (err) {
        say(err.message);
      }
    };
    holdsBox.replaceChildren(
      el(
        'table',
        { class: 'list', id: 'holds-table' },
        el('tr', {}, ...[t('archive.scope'), t('archive.covers'), t('archive.reason'), t('archive.authority'), t('archive.placed'), ''].map((h) => el('th', {}, h))),
        holds.length ? null : el('tr', {}, el('td', { colspan: '6' }, t('archive.noHolds'))),
        ...holds.map((h) =>
          el(
            'tr',
            { 'data-hold': h.id, 'data-active': String(!h.released_at) },
            el('td', {}, t(`archive.scopes.${h.scope}`)),
            el('td', {}, h.session_id ?? h.project_code ?? `${h.room_id} ${h.from}–${h.to}`),
            el('td', {}, h.reason),
            el('td', {}, `${h.authority} · ${h.reference}`),
            el('td', {}, `${formatDateTime(Date.parse(h.placed_at))} · ${h.placed_by}`),
            el('td', {}, h.released_at ? `${t('archive.released')} · ${h.released_by}` : el('button', { type: 'button', class: 'hold-release', onclick: () => release(h) }, t('archive.release'))),
          ),
        ),
      ),
    );
  };
  const scope = el('select', { id: 'hold-scope' }, ...options(['project', 'session'], (s) => t(`archive.scopes.${s}`)));
  const target = el('input', { id: 'hold-target', required: true });
  const holdReason = el('input', { id: 'hold-reason', required: true });
  const authority = el('input', { id: 'hold-authority', required: true });
  const reference = el('input', { id: 'hold-reference', required: true });
  const holdForm = el(
    'form',
    {
      id: 'hold-form',
      class: 'filters',
      onsubmit: async (e) => {
        e.preventDefault();
        const body = { scope: scope.value, reason: holdReason.value, authority: authority.value, reference: reference.value };
        body[scope.value === 'project' ? 'project_code' : 'session_id'] = target.value.trim();
        try {
          await api('POST', '/holds', body);
          await drawHolds();
          say(t('archive.holdPlaced'), 'ok');
        } catch (err) {
          say(err.message);
        }
      },
    },
    field(t('archive.scope'), scope),
    field(t('archive.covers'), target),
    field(t('archive.reason'), holdReason),
    field(t('archive.authority'), authority),
    field(t('archive.reference'), reference),
    el('button', { type: 'submit' }, t('archive.placeHold')),
  );
  const drawDestructions = async () => {
    const list = await api('GET', '/destructions');
    const act = async (f, done) => {
      try {
        await f();
        await drawDestructions();
        say(done, 'ok');
      } catch (err) {
        say(err.message);
      }
    };
    // The proposer, and whoever decided already, is offered no decision (the server refuses it).
    const mine = (actor) => actor.split('/')[0] === me.user.username;
    const decide = (d, decision) => {
      const why = prompt(t('archive.decisionReason'));
      if (!why) return;
      act(() => api('POST', `/destructions/${d.id}/decision`, { decision, reason: why }), t('archive.decided'));
    };
    destructionsBox.replaceChildren(
      el(
        'table',
        { class: 'list', id: 'destructions-table' },
        el('tr', {}, ...[t('archive.proposed'), t('navSessions'), t('archive.appraisal'), t('state'), t('archive.approvals'), ''].map((h) => el('th', {}, h))),
        ...list.map((d) =>
          el(
            'tr',
            { 'data-destruction': d.id, 'data-state': d.state },
            el('td', {}, `${formatDateTime(Date.parse(d.proposed_at))} · ${d.proposed_by}`),
            el('td', {}, d.session_ids.join(', ')),
            el('td', {}, `${d.appraisal_committee}：${d.appraisal_conclusion}（${d.appraisal_reference}）`),
            el('td', {}, t(`archive.destructionStates.${d.state}`)),
            el('td', {}, d.approvals.map((x) => `${x.approver} ${t(`archive.decisions.${x.decision}`)}：${x.reason}`).join('；') || '—'),
            el(
              'td',
              { class: 'buttons' },
              ...(d.state === 'proposed' && can('disposal_approve') && !mine(d.proposed_by) && !d.approvals.some((x) => mine(x.approver))
                ? [
                    el('button', { type: 'button', class: 'destruction-approve', onclick: () => decide(d, 'approve') }, t('archive.approve')),
                    el('button', { type: 'button', class: 'destruction-reject', onclick: () => decide(d, 'reject') }, t('archive.reject')),
                  ]
                : []),
              d.state === 'approved' && can('disposal')
                ? el('button', { type: 'button', class: 'destruction-execute', onclick: () => confirm(t('archive.executeConfirm')) && act(() => api('POST', `/destructions/${d.id}/execute`), t('archive.executed')) }, t('archive.execute'))
                : null,
            ),
          ),
        ),
        list.length ? null : el('tr', {}, el('td', { colspan: '6' }, t('archive.noDestructions'))),
      ),
    );
  };
  const sessionsInput = el('input', { id: 'destruction-sessions', required: true, placeholder: 'id, id, …' });
  const committee = el('input', { id: 'destruction-committee', required: true });
  const conclusion = el('input', { id: 'destruction-conclusion', required: true });
  const appraisalRef = el('input', { id: 'destruction-reference', required: true });
  const proposeForm = can('disposal')
    ? el(
        'form',
        {
          id: 'destruction-form',
          class: 'filters',
          onsubmit: async (e) => {
            e.preventDefault();
            const ids = sessionsInput.value.split(/[\s,，]+/).filter(Boolean);
            try {
              await api('POST', '/destructions', { session_ids: ids, appraisal: { committee: committee.value, conclusion: conclusion.value, reference: appraisalRef.value } });
              await drawDestructions();
              say(t('archive.proposedOk'), 'ok');
            } catch (err) {
              say(err.message);
            }
          },
        },
        field(t('navSessions'), sessionsInput),
        field(t('archive.committee'), committee),
        field(t('archive.conclusion'), conclusion),
        field(t('archive.reference'), appraisalRef),
        el('button', { type: 'submit' }, t('archive.propose')),
      )
    : null;
  main().replaceChildren(
    el(
      'section',
      { class: 'card', id: 'archive-desk' },
      can('session_audit_read')
        ? el(
            'form',
            {
              id: 'archive-open',
              class: 'filters',
              onsubmit: (e) => {
                e.preventDefault();
                showArchive(code.value.trim()).catch((err) => say(err.message));
              },
            },
            field(t('projectCode'), code),
            el('button', { type: 'submit' }, t('archive.open')),
          )
        : null,
      el('h3', {}, t('archive.holds')),
      holdForm,
      holdsBox,
      can('export') ? el('h3', {}, t('archive.exports')) : null,
      can('export') ? exportsTable() : null,
      el('h3', {}, t('archive.destructions')),
      proposeForm,
      destructionsBox,
    ),
  );
  await Promise.all([drawHolds(), drawDestructions()]);
}

// ---- users -----------------------------------------------------------------------------------

async function showUsers() {
  // Everything first, then one render: what waits for a second security administrator (account
  // changes and resets) with the accounts.
  const [list, changes, resets] = await Promise.all([api('GET', '/users'), api('GET', '/account-changes'), api('GET', '/user-resets')]);
  const username = el('input', { id: 'user-username', required: true });
  const name = el('input', { id: 'user-name' });
  const role = el('select', { id: 'user-role' }, ...options(ROLES, (r) => t(`roles.${r}`), 'witness_staff'));
  const cats = el('select', { id: 'user-categories', multiple: true }, ...options(CATEGORIES, (c) => catName(c)));
  const oneTime = (user, password) => say(`${user}: ${t('oneTimePassword', { password })}`, 'notice');
  const add = el(
    'form',
    {
      id: 'user-add',
      class: 'filters',
      onsubmit: async (e) => {
        e.preventDefault();
        try {
          const r = await api('POST', '/users', {
            username: username.value.trim(),
            display_name: name.value.trim(),
            role: role.value,
            categories: role.value === 'regulator' ? [...cats.selectedOptions].map((o) => o.value) : [],
          });
          await showUsers();
          say(t('changeProposed', { name: r.username }), 'notice');
        } catch (err) {
          say(err.message);
        }
      },
    },
    field(t('username'), username),
    field(t('displayName'), name),
    field(t('role'), role),
    field(t('categories'), cats),
    el('button', { type: 'submit' }, t('addUser')),
  );
  const table = el(
    'table',
    { id: 'users', class: 'list' },
    el('tr', {}, ...[t('username'), t('displayName'), t('role'), t('categories'), 'TOTP', t('state'), ''].map((h) => el('th', {}, h))),
    ...list.map((u) =>
      el(
        'tr',
        { 'data-user': u.username },
        el('td', {}, u.username),
        el('td', {}, u.display_name),
        el(
          'td',
          {},
          u.id === me.user.id
            ? t(`roles.${u.role}`)
            : el(
                'select',
                {
                  class: 'role',
                  onchange: async (e) => {
                    const role = e.target.value;
                    const body = { role };
                    if (role === 'regulator') {
                      const typed = prompt(`${t('categories')}: ${CATEGORIES.join(', ')}`, u.categories.join(',') || 'construction');
                      if (typed === null) return showUsers();
                      body.categories = typed.split(',').map((c) => c.trim()).filter(Boolean);
                    }
                    try {
                      const r = await api('PATCH', `/users/${u.id}`, body);
                      await showUsers();
                      if (r.state === 'proposed') say(t('changeProposed', { name: u.username }), 'notice');
                    } catch (err) {
                      say(err.message);
                      await showUsers();
                    }
                  },
                },
                ...options(ROLES, (r) => t(`roles.${r}`), u.role),
              ),
        ),
        el('td', {}, u.categories.map((c) => catName(c)).join('、')),
        el('td', {}, u.totp_enabled ? '✔' : ''),
        el('td', {}, [u.disabled && t('disabled'), u.locked && t('locked')].filter(Boolean).join(' ')),
        el(
          'td',
          {},
          el('button', {
            type: 'button',
            onclick: async () => {
              try {
                const r = await api('POST', `/users/${u.id}/reset`);
                if (r.state === 'proposed') say(t('resetProposed', { name: u.username }));
                else oneTime(u.username, r.one_time_password);
              } catch (err) {
                say(err.message);
              }
            },
          }, t('reset')),
          u.id === me.user.id
            ? null
            : el('button', {
                type: 'button',
                onclick: async () => {
                  try {
                    await api('PATCH', `/users/${u.id}`, { disabled: !u.disabled });
                    await showUsers();
                  } catch (err) {
                    say(err.message);
                  }
                },
              }, u.disabled ? t('enable') : t('disable')),
        ),
      ),
    ),
  );
  // The approver of a new account or a reset receives its one-time password.
  const decide = (path, who) => async () => {
    try {
      const r = await api('POST', path);
      await showUsers();
      if (r.one_time_password) oneTime(who, r.one_time_password);
    } catch (err) {
      say(err.message);
    }
  };
  const pending = [
    ...changes.filter((c) => c.state === 'proposed').map((c) => ({ id: c.id, kind: 'account-changes', who: c.username, what: c.summary, by: c.proposed_by, reason: c.reason })),
    ...resets.filter((r) => r.state === 'proposed').map((r) => ({ id: r.id, kind: 'user-resets', who: r.username, what: r.totp ? 'password + TOTP reset' : 'password reset', by: r.proposed_by, reason: r.reason })),
  ];
  const waiting = el(
    'table',
    { id: 'account-changes', class: 'list' },
    el('caption', {}, t('pendingChanges')),
    ...pending.map((p) =>
      el(
        'tr',
        { 'data-change': p.id },
        el('td', {}, p.who),
        el('td', {}, p.what),
        el('td', {}, p.by),
        el('td', {}, p.reason),
        el(
          'td',
          {},
          el('button', { type: 'button', class: 'approve', onclick: decide(`/${p.kind}/${p.id}/approve`, p.who) }, t('approve')),
          el('button', { type: 'button', class: 'reject', onclick: decide(`/${p.kind}/${p.id}/reject`, p.who) }, t('reject')),
        ),
      ),
    ),
  );
  main().replaceChildren(add, waiting, table);
}

// ---- audit trail -----------------------------------------------------------------------------

async function showAudit() {
  const inputs = {
    user: el('input', { id: 'audit-user' }),
    action: el('input', { id: 'audit-action', placeholder: 'replay_start' }),
    project: el('input', { id: 'audit-project' }),
    session: el('input', { id: 'audit-session' }),
    from: el('input', { id: 'audit-from', type: 'datetime-local' }),
    to: el('input', { id: 'audit-to', type: 'datetime-local' }),
  };
  const flagged = el('input', { id: 'audit-flagged', type: 'checkbox' });
  const table = el('table', { id: 'audit', class: 'list' });
  const csv = el('a', { id: 'audit-csv', download: 'witness-audit.csv' }, t('csv'));
  const query = () => {
    const q = new URLSearchParams();
    for (const [k, input] of Object.entries(inputs)) {
      const v = input.value.trim();
      if (!v) continue;
      q.set(k, k === 'from' || k === 'to' ? new Date(v).toISOString() : v);
    }
    if (flagged.checked) q.set('flagged', 'true');
    return q;
  };
  const search = async () => {
    const q = query();
    csv.href = `/api/v1/audit?${q}&format=csv`;
    const r = await api('GET', `/audit?${q}`);
    table.replaceChildren(
      el('tr', {}, ...['#', t('time'), t('actor'), t('address'), t('action'), t('target'), t('reason'), t('outcome')].map((h) => el('th', {}, h))),
      ...r.entries.map((e) =>
        el(
          'tr',
          { class: e.flagged ? 'flagged' : '' },
          el('td', {}, String(e.seq)),
          el('td', {}, formatDateTime(e.at_us / 1000)),
          el('td', {}, `${e.actor}${e.actor_role ? ` (${t(`roles.${e.actor_role}`)})` : ''}`),
          el('td', {}, e.address),
          el('td', {}, e.action),
          el('td', {}, e.target),
          el('td', {}, e.reason),
          el('td', {}, e.outcome),
        ),
      ),
    );
  };
  main().replaceChildren(
    el(
      'form',
      {
        id: 'audit-search',
        class: 'filters',
        onsubmit: (e) => {
          e.preventDefault();
          search().catch((err) => say(err.message));
        },
      },
      field(t('actor'), inputs.user),
      field(t('action'), inputs.action),
      field(t('projectCode'), inputs.project),
      field(t('session'), inputs.session),
      field(t('from'), inputs.from),
      field(t('to'), inputs.to),
      field(t('flaggedOnly'), flagged),
      el('button', { type: 'submit' }, t('search')),
      csv,
    ),
    table,
  );
  await search();
}

// The server key's fingerprint at the foot of every view, login included, for people to compare
// with the one they pin (`witness verify --trust`).
async function showServerKey() {
  const r = await fetch('/api/v1/keys').catch(() => null);
  const keys = r?.ok ? await r.json() : null;
  const current = keys?.keys?.find((k) => k.status === 'current');
  if (!current) return;
  const foot = el('footer', { id: 'server-key', class: 'muted' }, `${t('serverKey')} `, el('code', { 'data-key-id': current.key_id }, current.fingerprint));
  document.body.append(foot);
}

// ---- start -----------------------------------------------------------------------------------

document.documentElement.lang = lang === 'zh' ? 'zh-CN' : 'en';
document.title = t('appName');
window.addEventListener('hashchange', route);
showServerKey();
enter().catch((err) => {
  if (err.status !== 401) showLogin(err.message);
});
