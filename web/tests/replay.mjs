// Drives the replay page in headless Chromium (Debian's /usr/bin/chromium via playwright-core):
//   node web/tests/replay.mjs BASE_URL SESSION_ID ARTEFACT_DIR
// Checks that every camera plays (time advances, real changing frames), that typing a wall-clock
// time seeks every camera to within one segment of it (against our own parse of the HLS
// playlist, not the page's), speed and language switching. Prints a JSON summary; any failed
// check throws and exits non-zero. Run by tests/it/browser.rs. The summary's `timing` reports the
// first-frame and seek times seen here (no check on them: benches/replay.sh measures replay).

import { chromium } from 'playwright-core';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { firstFrameProbe, seekAndTime } from './replay-timing.mjs';

const [base, sessionId, artefacts, username, oneTimePassword] = process.argv.slice(2);
if (!base || !sessionId || !artefacts || !username || !oneTimePassword) {
  console.error('usage: node replay.mjs BASE_URL SESSION_ID ARTEFACT_DIR USERNAME ONE_TIME_PASSWORD');
  process.exit(2);
}
await mkdir(artefacts, { recursive: true });
const ZONE = 'Asia/Shanghai';
const REASON = '质疑复核 objection review';

function check(ok, message) {
  if (!ok) throw new Error(message);
}

/// An independent reading of one HLS playlist: [{start (media s), duration, wall (ms)}].
async function playlistFrags(url, cookie) {
  const text = await (await fetch(url, { headers: { cookie } })).text();
  check(text.startsWith('#EXTM3U'), `${url} is not an m3u8 playlist`);
  const frags = [];
  let pdt = null;
  let start = 0;
  for (const line of text.split('\n')) {
    if (line.startsWith('#EXT-X-PROGRAM-DATE-TIME:')) pdt = Date.parse(line.slice(25));
    else if (line.startsWith('#EXTINF:')) {
      const duration = parseFloat(line.slice(8));
      frags.push({ start, duration, wall: pdt });
      start += duration;
      pdt = null;
    }
  }
  return frags;
}

const hhmmss = (ms) =>
  new Intl.DateTimeFormat('en-GB', {
    timeZone: ZONE,
    hour: '2-digit',
    minute: '2-digit',
    second: '2-digit',
    hourCycle: 'h23',
  }).format(new Date(ms));

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
const summary = { sources: {} };
const problems = [];
try {
  const context = await browser.newContext({
    timezoneId: ZONE,
    locale: 'zh-CN',
    viewport: { width: 1280, height: 900 },
  });
  // Log in as a new user would: the one-time password must be changed first. The context's
  // request API shares its cookies with the pages.
  const api = context.request;
  let r = await api.post(`${base}/api/v1/auth/login`, { data: { username, password: oneTimePassword } });
  check(r.ok(), `login: ${r.status()} ${await r.text()}`);
  let login = await r.json();
  check(login.restriction === 'password_change_required', `restriction: ${login.restriction}`);
  const unauthenticated = await fetch(`${base}/api/v1/sessions/${sessionId}`);
  check(unauthenticated.status === 401, `without a login: ${unauthenticated.status}`);
  const newPassword = 'Replay-Check-2026!';
  r = await api.post(`${base}/api/v1/auth/password`, {
    data: { current_password: oneTimePassword, new_password: newPassword },
    headers: { 'x-csrf-token': login.csrf_token },
  });
  check(r.status() === 204, `password change: ${r.status()} ${await r.text()}`);
  r = await api.post(`${base}/api/v1/auth/login`, { data: { username, password: newPassword } });
  login = await r.json();
  check(r.ok() && login.restriction === null, `second login: ${JSON.stringify(login)}`);
  const page = await context.newPage();
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  page.on('console', (m) => m.type() === 'error' && problems.push(`console: ${m.text()} (${m.location().url})`));

  // A confidential (评标) session: nothing loads until a reason is given, and it is recorded.
  const playlists = [];
  page.on('request', (r) => r.url().includes('.m3u8') && playlists.push(r.url()));
  await page.addInitScript(firstFrameProbe);
  await page.goto(`${base}/sessions/${encodeURIComponent(sessionId)}`);
  await page.waitForSelector('#reason-form', { timeout: 30_000 });
  await page.screenshot({ path: join(artefacts, 'replay-reason.png') });
  check(playlists.length === 0, `playlists requested before a reason was given: ${playlists}`);
  await page.fill('#reason', REASON);
  const reasonGiven = await page.evaluate(() => performance.now());
  await page.click('#reason-form button[type=submit]');
  await page.waitForSelector('#chain.intact, #chain.broken, #chain.incomplete', { timeout: 60_000 });
  summary.chain = await page.textContent('#chain p');
  check((await page.getAttribute('#chain', 'class')) === 'intact', `chain status: ${summary.chain}`);
  // Someone else's request to replay this session waits here for a second person: approve it.
  const pending = await page.$$('[data-grant] button[data-decide=approve]');
  summary.requests_to_decide = pending.length;
  if (pending.length > 0) {
    await pending[0].click();
    await page.waitForFunction(() => !document.querySelector('[data-grant] button'), null, { timeout: 10_000 });
    summary.decided = await page.textContent('[data-grant]');
  }
  // Retention and the legal hold are on the page.
  summary.header = await page.textContent('header dl');
  check(summary.header.includes('保存至') && summary.header.includes('异议〔2026〕8号'), `retention and hold in the header: ${summary.header}`);
  check((await page.$$('#timeline .row.holds .hold')).length === 1, 'the hold on the timeline');
  summary.title = await page.textContent('header h1');
  check(summary.title.includes('回放'), `Chinese by default, got title ${summary.title}`);

  const videos = await page.$$eval('figure.tile.video', (fs) => fs.map((f) => f.dataset.source));
  summary.videos = videos;
  check(videos.length >= 2, `expected every camera in the grid, got ${videos}`);
  const timeline = await page.$$eval('#timeline .row', (rs) => rs.map((r) => r.dataset.source));
  check(timeline.length >= videos.length, `timeline rows ${timeline}`);

  // Play: every camera's currentTime advances and shows real, changing pictures.
  await page.click('#play');
  await page.waitForFunction(
    () => window.witnessReplay.state().sources.every((s) => !s.video || s.currentTime > 1.0),
    null,
    { timeout: 30_000 },
  );
  const frame = (name) =>
    page.$eval(`figure[data-source="${name}"] video`, (v) => {
      const c = document.createElement('canvas');
      c.width = v.videoWidth;
      c.height = v.videoHeight;
      const g = c.getContext('2d');
      g.drawImage(v, 0, 0);
      const px = g.getImageData(0, 0, c.width, c.height).data;
      let sum = 0;
      let sq = 0;
      let hash = 0;
      const n = px.length / 4;
      for (let i = 0; i < px.length; i += 4) {
        const y = 0.299 * px[i] + 0.587 * px[i + 1] + 0.114 * px[i + 2];
        sum += y;
        sq += y * y;
        hash = (hash * 31 + px[i] + 7 * px[i + 1] + 13 * px[i + 2]) | 0;
      }
      const mean = sum / n;
      return { width: c.width, height: c.height, mean, stddev: Math.sqrt(sq / n - mean * mean), hash, t: v.currentTime };
    });
  const first = Object.fromEntries(await Promise.all(videos.map(async (v) => [v, await frame(v)])));
  await page.waitForTimeout(1500);
  for (const v of videos) {
    const a = first[v];
    const b = await frame(v);
    summary.sources[v] = { width: a.width, height: a.height, stddev: Math.round(a.stddev), advanced: +(b.t - a.t).toFixed(2) };
    check(a.width > 0 && a.height > 0, `${v}: no decoded picture`);
    check(a.stddev > 5, `${v}: picture is flat (stddev ${a.stddev.toFixed(1)}), not a camera image`);
    check(b.t > a.t + 0.5, `${v}: currentTime did not advance (${a.t} → ${b.t})`);
    check(a.hash !== b.hash, `${v}: the picture did not change while playing`);
  }
  await page.screenshot({ path: join(artefacts, 'replay-playing.png') });
  // Reported, not checked: from the reason given to a first decoded frame on every camera.
  const loaded = await page.evaluate(() => window.__replayTiming.loaded);
  summary.timing = {
    first_frame_ms: Math.round(Math.max(...videos.map((v) => loaded[v] ?? Infinity)) - reasonGiven),
  };

  // Speed.
  await page.selectOption('#speed', '2');
  await page.waitForFunction(() =>
    [...document.querySelectorAll('video')].every((v) => v.playbackRate === 2),
  );
  // Pause. The page pauses by itself at the session's end, when a click would play again: on a
  // slow machine playback may have got there, so click until the page says it is paused.
  if ((await page.evaluate(() => window.witnessReplay.state().playing))) await page.click('#play');
  await page.waitForFunction(() =>
    !window.witnessReplay.state().playing && [...document.querySelectorAll('video')].every((v) => v.paused),
  );

  // Seek by typed wall-clock time, checked against an independent parse of each playlist.
  const st = await page.evaluate(() => window.witnessReplay.state());
  const frags = {};
  const cookie = (await context.cookies()).map((c) => `${c.name}=${c.value}`).join('; ');
  for (const v of videos) {
    frags[v] = await playlistFrags(`${base}/api/v1/sessions/${encodeURIComponent(sessionId)}/sources/${v}/index.m3u8?reason=${encodeURIComponent(REASON)}`, cookie);
  }
  const longest = Math.max(...Object.values(frags).flat().map((f) => f.duration));
  // A time inside media on every camera, well before the end and away from where we are now.
  let target = Math.floor((st.start + (st.end - st.start) * 0.3) / 1000) * 1000;
  const hasMedia = (ms) => Object.values(frags).every((fs) => fs.some((f) => ms >= f.wall && ms < f.wall + f.duration * 1000));
  while (!hasMedia(target) && target < st.end) target += 1000;
  check(hasMedia(target), 'no second with media on every camera');
  const typed = hhmmss(target);
  await page.fill('#seek', typed);
  await page.press('#seek', 'Enter');
  await page.waitForFunction(
    () => [...document.querySelectorAll('video')].every((v) => !v.seeking && v.readyState >= 2),
    null,
    { timeout: 20_000 },
  );
  const after = await page.evaluate(() => window.witnessReplay.state());
  summary.seek = { typed, target: new Date(target).toISOString(), longest_segment_s: longest, landed: {} };
  for (const s of after.sources.filter((s) => s.video)) {
    const fs = frags[s.name];
    const f = fs.find((f) => s.currentTime >= f.start && s.currentTime < f.start + f.duration) ?? fs[fs.length - 1];
    const landed = f.wall + (s.currentTime - f.start) * 1000;
    summary.seek.landed[s.name] = { currentTime: +s.currentTime.toFixed(3), wall: new Date(landed).toISOString(), off_s: +((landed - target) / 1000).toFixed(3) };
    check(Math.abs(landed - target) <= longest * 1000, `${s.name}: seek to ${typed} landed at ${new Date(landed).toISOString()}, more than one segment (${longest} s) away`);
  }
  check((await page.textContent('#clock')) === typed, `clock shows ${await page.textContent('#clock')}, typed ${typed}`);
  await page.screenshot({ path: join(artefacts, 'replay-seeked.png') });
  // A seek timed in the page (reported, not checked): to 70 % of the session, until every camera
  // has a decoded frame there.
  const timed = await page.evaluate(seekAndTime, { at: st.start + (st.end - st.start) * 0.7, timeoutMs: 20_000 });
  summary.timing.seek_ms = timed.all == null ? null : Math.round(timed.all);
  summary.timing.seek_landed_off_s = timed.off_s;

  // A time outside the session is refused on the page, not sought.
  await page.fill('#seek', hhmmss(st.end + 3_600_000));
  await page.press('#seek', 'Enter');
  check((await page.textContent('#seek-error')).length > 0, 'a time outside the session was not refused');

  // English on request.
  await page.click('#language');
  await page.waitForSelector('#reason-form', { timeout: 30_000 });
  await page.fill('#reason', REASON);
  await page.click('#reason-form button[type=submit]');
  await page.waitForSelector('#chain.intact, #chain.broken, #chain.incomplete', { timeout: 60_000 });
  summary.title_en = await page.textContent('header h1');
  check(summary.title_en.includes('Replay'), `English title: ${summary.title_en}`);
  await page.screenshot({ path: join(artefacts, 'replay-english.png') });
  check(problems.length === 0, `page problems: ${problems.join('; ')}`);
} finally {
  await browser.close();
}
console.log(JSON.stringify(summary));
