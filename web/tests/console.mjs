// Drives the staff console in headless Chromium (playwright-core + Debian's /usr/bin/chromium):
//   node web/tests/console.mjs BASE_URL ADMIN_ONE_TIME_PASSWORD ARTEFACT_DIR SECOND_ADMIN_TOKEN
// The first (security) administrator logs in with the one-time password printed at first start,
// must change it and enrol TOTP (codes computed here, RFC 6238), then logs in again with
// password + TOTP and proposes a witness staff user, which waits in the console's list until a
// second security administrator (here through their API token) approves it and receives its
// one-time password. That user logs in, probes the simulated room, starts a
// recording of it, sees it recording, stops it and finds the session in the list. Screenshots of each step
// go to ARTEFACT_DIR. Prints a JSON summary; any failed check exits non-zero.

import { chromium } from 'playwright-core';
import { createHmac } from 'node:crypto';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';

const [base, adminPassword, artefacts, secondAdminToken] = process.argv.slice(2);
if (!base || !adminPassword || !artefacts || !secondAdminToken) {
  console.error('usage: node console.mjs BASE_URL ADMIN_ONE_TIME_PASSWORD ARTEFACT_DIR SECOND_ADMIN_TOKEN');
  process.exit(2);
}
await mkdir(artefacts, { recursive: true });

function check(ok, message) {
  if (!ok) throw new Error(message);
}

/// RFC 6238 TOTP (SHA-1, 6 digits, 30 s) from a base32 secret, written here independently.
function totp(secretB32, unixSeconds = Date.now() / 1000) {
  const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';
  let bits = '';
  for (const c of secretB32.replace(/=+$/, '').toUpperCase()) bits += alphabet.indexOf(c).toString(2).padStart(5, '0');
  const key = Buffer.from(bits.match(/.{8}/g).map((b) => parseInt(b, 2)));
  const counter = Buffer.alloc(8);
  counter.writeBigUInt64BE(BigInt(Math.floor(unixSeconds / 30)));
  const h = createHmac('sha1', key).update(counter).digest();
  const o = h[h.length - 1] & 0xf;
  const n = ((h[o] & 0x7f) << 24) | (h[o + 1] << 16) | (h[o + 2] << 8) | h[o + 3];
  return String(n % 1_000_000).padStart(6, '0');
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
const summary = {};
const problems = [];
let shot = 0;
try {
  const context = await browser.newContext({ locale: 'zh-CN', timezoneId: 'Asia/Shanghai', viewport: { width: 1280, height: 900 } });
  const page = await context.newPage();
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  page.on('dialog', (d) => d.accept()); // the confirmations of start and stop
  const snap = async (name) => page.screenshot({ path: join(artefacts, `${String(++shot).padStart(2, '0')}-${name}.png`), fullPage: true });
  const login = async (username, password, code) => {
    await page.goto(`${base}/`);
    await page.waitForSelector('#login-form');
    await page.fill('#login-username', username);
    await page.fill('#login-password', password);
    if (code) await page.fill('#login-totp', code);
    await page.click('#login-submit');
  };
  const logout = async () => {
    await page.click('#logout');
    await page.waitForSelector('#login-form');
  };

  // 1. The first administrator: one-time password → new password → TOTP enrolment.
  await login('admin', 'admin'); // there is no default password
  await page.waitForSelector('#messages .error:has-text("登录失败")');
  summary.default_password_refused = await page.textContent('#messages .error');
  await login('admin', adminPassword);
  // The server key's fingerprint is shown for publication, before anyone logs in.
  await page.waitForSelector('#server-key code');
  summary.key_id = await page.getAttribute('#server-key code', 'data-key-id');
  summary.fingerprint = await page.textContent('#server-key code');
  await page.waitForSelector('#password-form');
  await snap('admin-must-change-password');
  const adminNew = 'Witness-Console-2026!'; // the policy refuses passwords containing the user name
  await page.fill('#pw-current', adminPassword);
  await page.fill('#pw-new', adminNew);
  await page.fill('#pw-again', adminNew);
  await page.click('#password-form button[type=submit]');
  await page.waitForSelector('#totp-form');
  const secret = (await page.textContent('#totp-secret')).trim();
  await snap('admin-totp-enrolment');
  await page.fill('#totp-code', totp(secret));
  await page.click('#totp-form button[type=submit]');
  await page.waitForSelector('#nav-users');
  await logout();

  // 2. Password + TOTP: without the code refused, with a fresh code in. (A code works once: wait
  // for the next 30-second step rather than reuse the enrolment's.)
  await login('admin', adminNew);
  await page.waitForSelector('#messages .error:has-text("登录失败")');
  summary.without_totp = await page.textContent('#messages .error');
  const step = Math.floor(Date.now() / 30000);
  while (Math.floor(Date.now() / 30000) === step) await new Promise((r) => setTimeout(r, 250));
  await login('admin', adminNew, totp(secret));
  await page.waitForSelector('#nav-users');
  summary.admin_nav = await page.$$eval('nav a', (as) => as.map((a) => a.id));
  check(!summary.admin_nav.includes('nav-audit'), 'security administrators do not read the audit trail');
  check(!summary.admin_nav.includes('nav-rooms'), 'security administrators do not configure rooms');
  await page.click('#nav-users');
  await page.waitForSelector('#user-add');
  // The click re-renders the view the login already showed: let that finish before typing.
  await page.waitForLoadState('networkidle');
  await page.fill('#user-username', 'console-staff');
  await page.fill('#user-name', '见证员 王');
  await page.selectOption('#user-role', 'witness_staff');
  await page.click('#user-add button[type=submit]');
  await page.waitForSelector('#messages .notice');
  summary.proposed = await page.textContent('#messages .notice');
  await page.waitForSelector('#account-changes tr[data-change]');
  const changeId = await page.getAttribute('#account-changes tr[data-change]', 'data-change');
  await snap('admin-users-proposed');
  // Four eyes: the second security administrator approves, and receives the one-time password.
  const approved = await fetch(`${base}/api/v1/account-changes/${changeId}/approve`, {
    method: 'POST',
    headers: { authorization: `Bearer ${secondAdminToken}` },
  }).then((r) => r.json());
  const staffPassword = approved.one_time_password;
  check(staffPassword?.length >= 12, `one-time password in: ${JSON.stringify(approved)}`);
  await logout();

  // 3. Witness staff: start the simulated room, see it recording, stop it, find the session.
  await login('console-staff', staffPassword);
  await page.waitForSelector('#password-form');
  const staffNew = 'Staff-Console-2026!';
  await page.fill('#pw-current', staffPassword);
  await page.fill('#pw-new', staffNew);
  await page.fill('#pw-again', staffNew);
  await page.click('#password-form button[type=submit]');
  await page.waitForSelector('#rooms article.room');
  await snap('staff-rooms-idle');
  // Check the room before the session: every source reachable and recordable.
  await page.click('#rooms article.room button.probe');
  await page.waitForSelector('#rooms article.room section.probe[data-recordable]', { timeout: 30_000 });
  summary.probe = await page.$$eval('#rooms article.room .probe-result tr[data-probe-source]', (rs) => rs.map((r) => [...r.cells].map((c) => c.textContent)));
  check(summary.probe.length === 3, `three sources probed: ${JSON.stringify(summary.probe)}`);
  check(summary.probe.every((cells) => cells[8] === '是' && cells[2] === 'TCP'), `probe: ${JSON.stringify(summary.probe)}`);
  await snap('staff-probe');
  const room = page.locator('#rooms article.room').first();
  await room.locator('button.start').click();
  await page.waitForSelector('#start-form');
  await page.fill('#start-project', 'ZB-CONSOLE-01');
  await page.fill('#start-session', 'KB-01');
  await page.selectOption('#start-category', 'procurement');
  await page.fill('#start-note', '开标会 console test');
  await page.fill('#start-reason', 'console test: no booking');
  await page.click('#start-submit');
  await page.waitForSelector('#rooms article.room[data-state="recording"]', { timeout: 30_000 });
  // Segments arrive: a source shows a last-segment age.
  await page.waitForFunction(
    () => [...document.querySelectorAll('#rooms article.room[data-state="recording"] .sources tr[data-source] td:nth-child(4)')].some((td) => td.textContent !== '—'),
    null,
    { timeout: 30_000 },
  );
  summary.recording_badge = await page.textContent('#rooms article.room .badge');
  await page.click('#rooms article.room button.live');
  await page.waitForFunction(() => [...document.querySelectorAll('#live video')].some((v) => v.readyState >= 2), null, { timeout: 30_000 });
  await snap('staff-recording-live');
  await page.click('#rooms article.room button.stop');
  await page.waitForSelector('#rooms article.room[data-state="idle"]', { timeout: 30_000 });
  await snap('staff-stopped');
  await page.click('#nav-sessions');
  await page.fill('#search-project', 'ZB-CONSOLE-01');
  await page.click('#session-search button[type=submit]');
  await page.waitForSelector('#sessions tr[data-session]');
  summary.sessions_listed = await page.$$eval('#sessions tr[data-session]', (rs) => rs.map((r) => [...r.cells].map((c) => c.textContent)));
  check(summary.sessions_listed.length === 1, `one session listed: ${JSON.stringify(summary.sessions_listed)}`);
  check(summary.sessions_listed[0][0] === 'ZB-CONSOLE-01', 'project code in the list');
  check(summary.sessions_listed[0][7] === '已结束', `state stopped: ${summary.sessions_listed[0][7]}`);
  summary.session_id = await page.getAttribute('#sessions tr[data-session]', 'data-session');
  await snap('staff-sessions');
  // English on request.
  await page.click('#language');
  await page.waitForSelector('#nav-rooms');
  summary.english_nav = await page.textContent('#nav-rooms');
  check(summary.english_nav === 'Rooms', `English: ${summary.english_nav}`);
  check(problems.length === 0, `page problems: ${problems.join('; ')}`);
} catch (e) {
  // Keep the page as it was when the check failed, for whoever reads the test output.
  for (const ctx of browser.contexts()) for (const p of ctx.pages()) await p.screenshot({ path: join(artefacts, 'failure.png'), fullPage: true }).catch(() => {});
  throw e;
} finally {
  await browser.close();
}
console.log(JSON.stringify(summary));
