// Replay timings in headless Chromium (Debian's /usr/bin/chromium via playwright-core), run by
// benches/replay.sh on a recorded session:
//   node web/tests/replay-bench.mjs BASE_URL SESSION_ID USERNAME ONE_TIME_PASSWORD [ARTEFACT_DIR]
// Measures, with timestamps taken in the page (performance.now(), from navigation start):
//   - first frame: navigation → every camera's <video> has its first decoded frame
//     (`loadeddata`, readyState ≥ 2), in COLD_LOADS fresh browser contexts (empty cache), each
//     left until the page shows the chain check's verdict (also timed), so that every load and
//     the seeks start on a server at rest;
//   - seek: `witnessReplay.seek(wall)` (what a typed time or a click on the timeline calls) →
//     every camera has finished seeking and has a decoded frame at the new position, for points
//     near the middle and near the end of the session;
//   - the server's time to first byte of every request the page made, by kind.
// Prints a markdown table (and the raw figures as JSON to ARTEFACT_DIR/replay-bench.json).
// A benchmark, not a test: the figures are reported, not judged.

import { chromium } from 'playwright-core';
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { firstFrameProbe, seekAndTime } from './replay-timing.mjs';

const [base, sessionId, username, oneTimePassword, artefacts = 'target/tmp/replay-bench'] = process.argv.slice(2);
if (!base || !sessionId || !username || !oneTimePassword) {
  console.error('usage: node replay-bench.mjs BASE_URL SESSION_ID USERNAME ONE_TIME_PASSWORD [ARTEFACT_DIR]');
  process.exit(2);
}
await mkdir(artefacts, { recursive: true });
const COLD_LOADS = 3;
const SEEKS_PER_POINT = 4;

const check = (ok, message) => {
  if (!ok) throw new Error(message);
};
const median = (xs) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? (s.length % 2 ? s[(s.length - 1) / 2] : (s[s.length / 2 - 1] + s[s.length / 2]) / 2) : NaN;
};
const ms = (x) => (Number.isFinite(x) ? `${Math.round(x)}` : 'timeout');

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
  args: [
    '--no-sandbox',
    '--disable-gpu',
    '--disable-quic',
    '--no-first-run',
    '--disable-background-networking',
    '--disable-component-update',
    '--disable-sync',
    '--autoplay-policy=no-user-gesture-required',
  ],
});
const results = { first_frame: [], seeks: [], requests: [] };
try {
  // Log in once (the one-time password must be changed first); each cold load is a new context
  // with the same cookies and an empty HTTP cache.
  const login = await browser.newContext();
  const api = login.request;
  let r = await api.post(`${base}/api/v1/auth/login`, { data: { username, password: oneTimePassword } });
  check(r.ok(), `login: ${r.status()} ${await r.text()}`);
  let body = await r.json();
  const password = 'Replay-Bench-2026!';
  if (body.restriction === 'password_change_required') {
    r = await api.post(`${base}/api/v1/auth/password`, {
      data: { current_password: oneTimePassword, new_password: password },
      headers: { 'x-csrf-token': body.csrf_token },
    });
    check(r.status() === 204, `password change: ${r.status()} ${await r.text()}`);
    r = await api.post(`${base}/api/v1/auth/login`, { data: { username, password } });
    body = await r.json();
  }
  check(r.ok() && body.restriction === null, `login: ${JSON.stringify(body)}`);
  const storageState = await login.storageState();
  await login.close();

  let page;
  let context;
  for (let load = 0; load < COLD_LOADS; load++) {
    if (context) await context.close();
    context = await browser.newContext({ storageState, viewport: { width: 1280, height: 900 }, timezoneId: 'Asia/Shanghai' });
    page = await context.newPage();
    const problems = [];
    page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
    page.on('requestfinished', (req) => {
      const t = req.timing();
      const url = new URL(req.url());
      const kind = url.pathname.endsWith('.m3u8')
        ? 'playlist'
        : url.pathname.includes('/segments/')
          ? 'segment'
          : url.pathname.startsWith('/api/')
            ? `GET ${url.pathname.replace(sessionId, '{id}')}`
            : 'page and assets';
      results.requests.push({ load, kind, ttfb: t.responseStart - t.requestStart, total: t.responseEnd, at: t.startTime });
    });
    await page.addInitScript(firstFrameProbe);
    await page.goto(`${base}/sessions/${encodeURIComponent(sessionId)}?lang=en`);
    const first = await page.waitForFunction(
      () => {
        const b = window.__replayTiming;
        const videos = document.querySelectorAll('figure.tile.video video');
        return videos.length > 0 && Object.keys(b.loaded).length === videos.length && { ...b };
      },
      null,
      { timeout: 60_000, polling: 50 },
    ).then((h) => h.jsonValue()).catch(() => null);
    check(first, `load ${load}: not every camera showed a frame within 60 s`);
    check(problems.length === 0, problems.join('; '));
    // The chain check (a re-hash of every segment on the server) runs in the background: let it
    // finish, so that each load and the seeks start on a server at rest.
    await page.waitForSelector('#chain.intact, #chain.broken, #chain.incomplete', { timeout: 900_000 });
    results.first_frame.push({
      load,
      origin: first.origin,
      all: Math.max(...Object.values(first.loaded)),
      per_camera: first.loaded,
      presented: Object.keys(first.presented).length === Object.keys(first.loaded).length ? Math.max(...Object.values(first.presented)) : null,
      chain_done: await page.evaluate(() => performance.now()),
    });
    results.chain = await page.textContent('#chain p');
    if (load === 0) await page.screenshot({ path: join(artefacts, 'replay-bench-first.png') });
  }

  // Seeks: alternately near the middle and near the end, each to a different second so that
  // nothing is already buffered (hls.js keeps 20 s ahead and 30 s behind).
  const st = await page.evaluate(() => window.witnessReplay.state());
  const span = st.end - st.start;
  const points = [];
  for (let i = 0; i < SEEKS_PER_POINT; i++) {
    points.push({ where: 'middle', at: st.start + span * (0.5 + 0.04 * i) });
    points.push({ where: 'end', at: st.end - 15_000 - span * 0.03 * i });
  }
  // Each point moved forward, a second at a time, to where every camera has media (a camera in
  // a gap there is not sought, and would say nothing about seeking).
  const view = await (await context.request.get(`${base}/api/v1/sessions/${encodeURIComponent(sessionId)}`)).json();
  const covered = (ms) =>
    view.recordings
      .filter((r) => r.media !== 'audio')
      .every((r) => r.segments.some((g) => ms >= Date.parse(g.start) + 200 && ms < Date.parse(g.start) + g.duration_seconds * 1000 - 200));
  for (const p of points) {
    let at = Math.floor(p.at / 1000) * 1000 + 500;
    for (let i = 0; i < 120 && !covered(at); i++) at += 1000;
    const got = await page.evaluate(seekAndTime, { at, timeoutMs: 30_000 });
    results.seeks.push({ where: p.where, at: new Date(at).toISOString(), ...got });
    await page.waitForTimeout(3000);
  }
  await page.screenshot({ path: join(artefacts, 'replay-bench-seeked.png') });
} finally {
  await browser.close();
}
await writeFile(join(artefacts, 'replay-bench.json'), JSON.stringify(results, null, 2));

const row = (label, values) => {
  const xs = values.map((x) => x ?? Infinity);
  return `| ${label} | ${xs.length} | ${ms(median(xs))} | ${ms(Math.max(...xs))} |`;
};
const lines = [
  '| measure (ms, in the page) | n | median | max |',
  '|---|---:|---:|---:|',
  row('first frame, every camera (navigation → loadeddata, cold)', results.first_frame.map((f) => f.all)),
];
const presented = results.first_frame.map((f) => f.presented).filter((x) => x != null);
if (presented.length) lines.push(row('first frame presented, every camera (requestVideoFrameCallback)', presented));
lines.push(row('chain check shown (navigation → verdict on the page)', results.first_frame.map((f) => f.chain_done)));
for (const where of ['middle', 'end']) {
  lines.push(row(`seek near the ${where}, every camera (seek → frame at the new position)`, results.seeks.filter((s) => s.where === where).map((s) => s.all)));
}
lines.push(row('seek, all', results.seeks.map((s) => s.all)));
lines.push('', '| server, time to first byte (ms) | n | median | max |', '|---|---:|---:|---:|');
const kinds = [...new Set(results.requests.map((q) => q.kind))].sort();
for (const k of kinds) lines.push(row(k, results.requests.filter((q) => q.kind === k).map((q) => q.ttfb)));
const worst = Math.max(...results.seeks.map((s) => Math.abs(s.off_s ?? 0)));
lines.push('', `seeks landed within ${worst.toFixed(2)} s of the wall-clock time asked for; chain: ${results.chain}`);
console.log(lines.join('\n'));
