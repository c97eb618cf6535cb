// Drives the staff console's bookings in headless Chromium (Debian's /usr/bin/chromium via
// playwright-core):
//   node web/tests/bookings.mjs BASE_URL ARTEFACT_DIR USERNAME ONE_TIME_PASSWORD DEAD_ROOM_ID
// Witness staff book the simulated room a few seconds ahead in the booking form, find the booking
// in the week calendar and on the room card's schedule, and see the room start recording by
// itself at the booked time; the room whose camera is down (booked by the test) shows the
// not-recording alarm. Prints a JSON summary; any failed check throws and exits non-zero. Run by
// tests/it/browser.rs.

import { chromium } from 'playwright-core';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';

const [base, artefacts, username, oneTimePassword, deadRoom] = process.argv.slice(2);
if (!base || !artefacts || !username || !oneTimePassword || !deadRoom) {
  console.error('usage: node bookings.mjs BASE_URL ARTEFACT_DIR USERNAME ONE_TIME_PASSWORD DEAD_ROOM_ID');
  process.exit(2);
}
await mkdir(artefacts, { recursive: true });

function check(ok, message) {
  if (!ok) throw new Error(message);
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
const summary = {};
const problems = [];
let shot = 0;
try {
  const context = await browser.newContext({ locale: 'zh-CN', timezoneId: 'Asia/Shanghai', viewport: { width: 1400, height: 1000 } });
  const snap = async (page, name) => page.screenshot({ path: join(artefacts, `${String(++shot).padStart(2, '0')}-${name}.png`), fullPage: true });
  // A new account changes its one-time password first; the context's request API shares cookies.
  const api = context.request;
  let r = await api.post(`${base}/api/v1/auth/login`, { data: { username, password: oneTimePassword } });
  check(r.ok(), `login: ${r.status()} ${await r.text()}`);
  const first = await r.json();
  const newPassword = 'Bookings-Check-2026!';
  r = await api.post(`${base}/api/v1/auth/password`, {
    data: { current_password: oneTimePassword, new_password: newPassword },
    headers: { 'x-csrf-token': first.csrf_token },
  });
  check(r.status() === 204, `password change: ${r.status()} ${await r.text()}`);
  r = await api.post(`${base}/api/v1/auth/login`, { data: { username, password: newPassword } });
  check(r.ok(), `second login: ${r.status()}`);

  const page = await context.newPage();
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  page.on('dialog', (d) => d.accept());
  await page.goto(`${base}/#bookings`);
  await page.waitForSelector('#booking-form');
  await page.waitForSelector('#calendar');
  summary.week = await page.textContent('#week-label');

  // Book the simulated room from 6 s from now for a minute, in the browser's own zone.
  const slot = await page.evaluate(() => {
    const local = (ms) => {
      const d = new Date(ms);
      return new Date(d.getTime() - d.getTimezoneOffset() * 60000).toISOString().slice(0, 19);
    };
    const start = Math.ceil((Date.now() + 6000) / 1000) * 1000;
    return { start, end: start + 60000, startValue: local(start), endValue: local(start + 60000) };
  });
  const simRoom = await page.$eval('#book-room option', (o) => o.value);
  await page.selectOption('#book-room', simRoom);
  await page.fill('#book-project', 'ZB-CAL-01');
  await page.fill('#book-section', 'BD-02');
  await page.selectOption('#book-activity', 'bid_opening');
  await page.selectOption('#book-category', 'procurement');
  await page.fill('#book-start', slot.startValue);
  await page.fill('#book-end', slot.endValue);
  await page.fill('#book-note', '开标会 booked in the console');
  await page.click('#book-submit');
  await page.waitForSelector('#messages .notice');
  summary.notice = await page.textContent('#messages .notice');
  const chip = page.locator(`#calendar tr[data-room="${simRoom}"] .booking[data-booking]`);
  await chip.first().waitFor();
  summary.booking_id = await chip.first().getAttribute('data-booking');
  summary.calendar_chip = await chip.first().textContent();
  summary.calendar_day = await chip.first().evaluate((e) => e.closest('td').dataset.day);
  check(summary.calendar_chip.includes('ZB-CAL-01') && summary.calendar_chip.includes('开标'), `calendar chip: ${summary.calendar_chip}`);
  summary.booked_start_ms = slot.start;
  await snap(page, 'calendar-booked');
  // The week navigates and comes back.
  await page.click('#week-next');
  await page.waitForFunction((w) => document.querySelector('#week-label').textContent !== w, summary.week);
  check((await page.locator(`.booking[data-booking="${summary.booking_id}"]`).count()) === 0, 'next week does not show this booking');
  await page.click('#week-this');
  await page.locator(`.booking[data-booking="${summary.booking_id}"]`).waitFor();

  // The rooms page: today's schedule, then the recording starting by itself.
  await page.click('#nav-rooms');
  const card = `#rooms article.room[data-room="${simRoom}"]`;
  await page.waitForSelector(`${card} .schedule li[data-booking="${summary.booking_id}"]`);
  summary.schedule = await page.textContent(`${card} .schedule`);
  check((await page.getAttribute(`${card}`, 'data-state')) === 'idle', 'idle before the booking');
  await snap(page, 'rooms-scheduled');
  await page.waitForSelector(`${card}[data-state="recording"]`, { timeout: 30_000 });
  summary.recording_seen_ms = Date.now();
  summary.card = await page.textContent(card);
  check(summary.card.includes('ZB-CAL-01'), `the card shows the booked project: ${summary.card}`);
  await snap(page, 'rooms-recording-by-itself');

  // The room whose camera is down: booked, not recording, the alarm on its card.
  const dead = `#rooms article.room[data-room="${deadRoom}"]`;
  await page.waitForSelector(`${dead} [data-booking-alarm]`, { timeout: 30_000 });
  summary.alarm = await page.textContent(`${dead} [data-booking-alarm]`);
  check(summary.alarm.includes('已预约但未在录制'), `alarm text: ${summary.alarm}`);
  await snap(page, 'rooms-booking-alarm');
  check(problems.length === 0, problems.join('\n'));
  console.log(JSON.stringify(summary));
} finally {
  await browser.close();
}
