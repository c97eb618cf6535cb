// Issue 15 end to end in headless Chromium (playwright-core + Debian's /usr/bin/chromium):
//   node web/tests/archive.mjs BASE_URL ARTEFACT_DIR STAFF STAFF_OTP CLERK CLERK_OTP PROJECT OUT_FILE
// Witness staff book the simulated room a few seconds ahead in the console; the room starts
// recording by itself at the booked time; staff add a witness entry on the room card, sign the
// record with their password and stop. An archive clerk then opens the project archive, sees it
// complete (every booked activity recorded, INTACT, signed), exports the project package and
// downloads it to OUT_FILE (tests/it/browser.rs verifies it offline). Prints a JSON summary; any
// failed check exits non-zero.

import { chromium } from 'playwright-core';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';

const [base, artefacts, staff, staffOtp, clerk, clerkOtp, project, outFile] = process.argv.slice(2);
if (!outFile) {
  console.error('usage: node archive.mjs BASE_URL ARTEFACT_DIR STAFF STAFF_OTP CLERK CLERK_OTP PROJECT OUT_FILE');
  process.exit(2);
}
await mkdir(artefacts, { recursive: true });

function check(ok, message) {
  if (!ok) throw new Error(message);
}

/// A browser context logged in as `username`, the one-time password changed first.
async function loggedIn(browser, username, oneTime, newPassword) {
  const context = await browser.newContext({ locale: 'zh-CN', timezoneId: 'Asia/Shanghai', viewport: { width: 1400, height: 1000 }, acceptDownloads: true });
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
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
const summary = {};
const problems = [];
let shot = 0;
try {
  // 1. Staff book the room a few seconds ahead in the console.
  const staffPassword = 'Archive-Staff-2026!';
  const staffContext = await loggedIn(browser, staff, staffOtp, staffPassword);
  const page = await staffContext.newPage();
  const snap = async (p, name) => p.screenshot({ path: join(artefacts, `${String(++shot).padStart(2, '0')}-${name}.png`), fullPage: true });
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  page.on('dialog', (d) => (d.type() === 'prompt' ? d.accept(staffPassword) : d.accept()));
  await page.goto(`${base}/#bookings`);
  await page.waitForSelector('#booking-form');
  const slot = await page.evaluate(() => {
    const local = (ms) => {
      const d = new Date(ms);
      return new Date(d.getTime() - d.getTimezoneOffset() * 60000).toISOString().slice(0, 19);
    };
    const start = Math.ceil((Date.now() + 5000) / 1000) * 1000;
    return { start, startValue: local(start), endValue: local(start + 30000) };
  });
  const room = await page.$eval('#book-room option', (o) => o.value);
  await page.selectOption('#book-room', room);
  await page.fill('#book-project', project);
  await page.fill('#book-section', 'BD-01');
  await page.selectOption('#book-activity', 'bid_opening');
  await page.selectOption('#book-category', 'construction');
  await page.fill('#book-start', slot.startValue);
  await page.fill('#book-end', slot.endValue);
  await page.click('#book-submit');
  await page.waitForSelector('#messages .notice');
  await snap(page, 'booked');

  // 2. The recording starts by itself; staff add a witness entry, sign and stop.
  await page.click('#nav-rooms');
  const card = `#rooms article.room[data-room="${room}"]`;
  await page.waitForSelector(`${card}[data-state="recording"]`, { timeout: 30_000 });
  summary.recording_seen_ms = Date.now();
  summary.booked_start_ms = slot.start;
  const status = await (await staffContext.request.get(`${base}/api/v1/rooms/status`)).json();
  const session = status.find((r) => r.room_id === room).session;
  summary.session_id = session.id;
  summary.booking_id = session.booking_id;
  check(session.booking_id, `the recording is the booking's: ${JSON.stringify(session)}`);
  const panel = `[data-witness="${session.id}"]`;
  await page.waitForSelector(`${panel} form.witness-add:not([hidden])`, { timeout: 30_000 });
  await page.selectOption(`${panel} select[name=witness-kind]`, 'remark');
  await page.fill(`${panel} textarea[name=witness-text]`, '开标会按时开始，投标人 4 家到场');
  await page.click(`${panel} button.witness-submit`);
  await page.waitForSelector(`${panel} li[data-seq="1"]`);
  // A few segments on every source before the stop.
  await page.waitForTimeout(5000);
  await snap(page, 'witness-entry');
  await page.click('button.sign-stop');
  await page.waitForSelector('#messages .notice', { timeout: 60_000 });
  summary.stopped = await page.textContent('#messages');

  // 3. The clerk opens the project archive: complete.
  const clerkContext = await loggedIn(browser, clerk, clerkOtp, 'Archive-Clerk-2026!');
  const desk = await clerkContext.newPage();
  desk.on('pageerror', (e) => problems.push(`clerk page error: ${e.message}`));
  desk.on('dialog', (d) => d.accept());
  await desk.goto(`${base}/#archive`);
  await desk.waitForSelector('#archive-open');
  await desk.fill('#archive-code', project);
  await desk.click('#archive-open button[type=submit]');
  await desk.waitForSelector('#project-archive', { timeout: 60_000 });
  summary.completeness = await desk.textContent('#archive-complete');
  const complete = await desk.getAttribute('#archive-complete', 'data-complete');
  if (complete !== 'true') {
    await snap(desk, 'archive-incomplete');
    throw new Error(`the archive is not complete: ${summary.completeness} ${await desk.textContent('#project-archive')}`);
  }
  summary.verification = await desk.getAttribute(`#archive-sessions tr[data-session="${session.id}"]`, 'data-verification');
  summary.signed = await desk.getAttribute(`#archive-sessions tr[data-session="${session.id}"]`, 'data-signed');
  check(summary.verification === 'INTACT' && summary.signed === 'true', `session row: ${summary.verification} ${summary.signed}`);
  summary.catalogue_items = await desk.locator('#archive-catalogue tr[data-kind]').count();
  check(summary.catalogue_items >= 5, `the catalogue lists the project: ${summary.catalogue_items}`);
  await snap(desk, 'archive-complete');

  // 4. The project package: progress, then download.
  await desk.click('#archive-export-project');
  const link = desk.locator('#export-jobs tr[data-state="ready"] a.export-download');
  await link.waitFor({ timeout: 120_000 });
  await snap(desk, 'export-ready');
  const [download] = await Promise.all([desk.waitForEvent('download'), link.click()]);
  await download.saveAs(outFile);
  summary.package = outFile;
  summary.package_name = download.suggestedFilename();

  // 5. Holds on the clerks' desk: a project hold placed in the form shows in the list.
  await desk.click('#nav-archive');
  await desk.waitForSelector('#hold-form');
  await desk.selectOption('#hold-scope', 'project');
  await desk.fill('#hold-target', project);
  await desk.fill('#hold-reason', '投诉调查');
  await desk.fill('#hold-authority', '市纪委监委');
  await desk.fill('#hold-reference', '调〔2026〕3号');
  await desk.click('#hold-form button[type=submit]');
  await desk.waitForSelector('#holds-table tr[data-active="true"]');
  summary.holds = await desk.locator('#holds-table tr[data-hold]').count();
  check(summary.holds === 1, `one hold listed: ${summary.holds}`);
  await desk.waitForSelector('#destructions-table');
  await snap(desk, 'archive-desk');
  check(problems.length === 0, problems.join('\n'));
  console.log(JSON.stringify(summary));
} finally {
  await browser.close();
}
