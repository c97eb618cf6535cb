// The witness record in headless Chromium (playwright-core + Debian's /usr/bin/chromium):
//   node web/tests/witness.mjs BASE_URL SESSION_ID ARTEFACT_DIR STAFF STAFF_OTP OFFICER OFFICER_OTP
// The session's witness (STAFF) logs in, adds two entries on the room card of the live session
// (an objection, then a remark correcting it), signs the record with their password and stops
// the recording ("sign and stop"). A discipline officer then opens the replay page: the timeline shows
// two markers, the correction marked, and a click on one seeks there. Prints a JSON summary;
// any failed check exits non-zero. Run by tests/it/witness_record.rs.

import { chromium } from 'playwright-core';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';

const [base, sessionId, artefacts, staff, staffOtp, officer, officerOtp] = process.argv.slice(2);
if (!officerOtp) {
  console.error('usage: node witness.mjs BASE_URL SESSION_ID ARTEFACT_DIR STAFF STAFF_OTP OFFICER OFFICER_OTP');
  process.exit(2);
}
await mkdir(artefacts, { recursive: true });

function check(ok, message) {
  if (!ok) throw new Error(message);
}

/// A browser context logged in as `username`, the one-time password changed first.
async function loggedIn(browser, username, oneTime, newPassword) {
  const context = await browser.newContext({ locale: 'zh-CN', timezoneId: 'Asia/Shanghai', viewport: { width: 1280, height: 900 } });
  const api = context.request;
  let r = await api.post(`${base}/api/v1/auth/login`, { data: { username, password: oneTime } });
  check(r.ok(), `login ${username}: ${r.status()} ${await r.text()}`);
  const first = await r.json();
  r = await api.post(`${base}/api/v1/auth/password`, {
    data: { current_password: oneTime, new_password: newPassword },
    headers: { 'x-csrf-token': first.csrf_token },
  });
  check(r.status() === 204, `password change ${username}: ${r.status()} ${await r.text()}`);
  r = await api.post(`${base}/api/v1/auth/login`, { data: { username, password: newPassword } });
  check(r.ok(), `second login ${username}: ${r.status()}`);
  return context;
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--autoplay-policy=no-user-gesture-required'],
});
const summary = {};
const problems = [];
try {
  // 1. The witness on the console: two entries on the room card, then sign and stop.
  const staffPassword = 'Witness-Record-2026!';
  const staffContext = await loggedIn(browser, staff, staffOtp, staffPassword);
  const page = await staffContext.newPage();
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  page.on('dialog', (d) => (d.type() === 'prompt' ? d.accept(staffPassword) : d.accept()));
  await page.goto(`${base}/`);
  const panel = `[data-witness="${sessionId}"]`;
  await page.waitForSelector(`${panel} form.witness-add:not([hidden])`, { timeout: 30_000 });
  await page.selectOption(`${panel} select[name=witness-kind]`, 'objection');
  await page.fill(`${panel} textarea[name=witness-text]`, '投标人乙对唱标价格提出异议');
  await page.click(`${panel} button.witness-submit`);
  await page.waitForSelector(`${panel} li[data-seq="1"]`);
  // The card is redrawn every 2 s: the panel (and what is typed in it) survives.
  await page.waitForTimeout(2500);
  await page.selectOption(`${panel} select[name=witness-kind]`, 'remark');
  await page.fill(`${panel} textarea[name=witness-text]`, '更正：异议由投标人丙提出');
  await page.selectOption(`${panel} select[name=witness-corrects]`, { index: 1 });
  await page.click(`${panel} button.witness-submit`);
  await page.waitForSelector(`${panel} li[data-seq="2"]`);
  summary.card = await page.textContent(panel);
  check(summary.card.includes('现场异议') && summary.card.includes('更正第 1 条'), `the card shows the entries: ${summary.card}`);
  check(await page.$(`${panel} li[data-seq="1"].corrected`), 'the corrected entry is marked on the card');
  await page.screenshot({ path: join(artefacts, 'witness-card.png'), fullPage: true });
  await page.click('button.sign-stop');
  await page.waitForSelector('#messages .notice', { timeout: 60_000 });
  summary.message = await page.textContent('#messages');
  const record = await (await staffContext.request.get(`${base}/api/v1/sessions/${sessionId}/witness-record`)).json();
  summary.signed_by = record.signed_by;
  summary.state = record.state;
  check(record.signed_by === staff, `signed by the witness: ${JSON.stringify(record)}`);

  // 2. The replay page: two markers on the timeline, the correction marked, a click seeks.
  const regContext = await loggedIn(browser, officer, officerOtp, 'Replay-Witness-2026!');
  const replay = await regContext.newPage();
  replay.on('pageerror', (e) => problems.push(`replay page error: ${e.message}`));
  replay.on('console', (m) => m.type() === 'error' && problems.push(`replay console: ${m.text()}`));
  await replay.goto(`${base}/sessions/${encodeURIComponent(sessionId)}`);
  try {
    await replay.waitForSelector('#timeline .row.witness .witness-marker', { timeout: 30_000 });
  } catch (e) {
    await replay.screenshot({ path: join(artefacts, 'witness-replay-failed.png'), fullPage: true });
    throw new Error(`${e.message}\n${problems.join('\n')}\n${await replay.content()}`);
  }
  const markers = await replay.$$eval('#timeline .row.witness .witness-marker', (ms) =>
    ms.map((m) => ({ seq: m.dataset.seq, cls: m.className, title: m.title })),
  );
  summary.markers = markers;
  check(markers.length === 2, `two markers: ${JSON.stringify(markers)}`);
  check(markers[1].cls.includes('correction') && markers[0].cls.includes('corrected'), `correction marked: ${JSON.stringify(markers)}`);
  check(markers[0].title.includes('现场异议'), `the marker names the kind: ${markers[0].title}`);
  await replay.click('#timeline .row.witness .witness-marker[data-seq="1"]');
  const wall = await replay.evaluate(() => window.witnessReplay.state().wall);
  summary.seek_off_ms = Math.abs(wall - Date.parse(record.entries[0].at));
  check(summary.seek_off_ms < 1000, `a click on the marker seeks to its time: off by ${summary.seek_off_ms} ms`);
  await replay.screenshot({ path: join(artefacts, 'witness-replay.png'), fullPage: true });
  check(problems.length === 0, problems.join('\n'));
  console.log(JSON.stringify(summary));
} finally {
  await browser.close();
}
