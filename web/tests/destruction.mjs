// Lawful destruction on the archive clerks' desk, in headless Chromium (playwright-core +
// Debian's /usr/bin/chromium):
//   node web/tests/destruction.mjs BASE_URL ARTEFACT_DIR SESSION_ID PROPOSER OTP APPROVER1 OTP APPROVER2 OTP HOLD_REFERENCE
// The proposer proposes the destruction of an expired session with its appraisal record: refused
// while a legal hold (placed by the test, reference HOLD_REFERENCE) stands, said on the page; the
// first approver releases the hold on their desk (with a reason); the proposal is made again; two
// other archive clerks approve it on their own desks (each with a reason); the proposer executes
// it. Prints a JSON summary; any failed check exits non-zero. Run by tests/it/browser.rs.

import { chromium } from 'playwright-core';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';

const [base, artefacts, sessionId, proposer, proposerOtp, first, firstOtp, second, secondOtp, holdReference] = process.argv.slice(2);
if (!holdReference) {
  console.error('usage: node destruction.mjs BASE_URL ARTEFACT_DIR SESSION_ID PROPOSER OTP APPROVER1 OTP APPROVER2 OTP');
  process.exit(2);
}
await mkdir(artefacts, { recursive: true });

function check(ok, message) {
  if (!ok) throw new Error(message);
}

const problems = [];

/// A page of the archive desk, logged in as `username` (the one-time password changed first);
/// prompts answer `answer`, confirmations are accepted.
async function desk(browser, username, oneTime, answer) {
  const context = await browser.newContext({ locale: 'zh-CN', timezoneId: 'Asia/Shanghai', viewport: { width: 1400, height: 1000 } });
  const api = context.request;
  const newPassword = `Desk-${username.length}-Pass-2026!`;
  let r = await api.post(`${base}/api/v1/auth/login`, { data: { username, password: oneTime } });
  check(r.ok(), `login ${username}: ${r.status()} ${await r.text()}`);
  const firstLogin = await r.json();
  r = await api.post(`${base}/api/v1/auth/password`, {
    data: { current_password: oneTime, new_password: newPassword },
    headers: { 'x-csrf-token': firstLogin.csrf_token },
  });
  check(r.status() === 204, `password change ${username}: ${r.status()} ${await r.text()}`);
  r = await api.post(`${base}/api/v1/auth/login`, { data: { username, password: newPassword } });
  check(r.ok(), `second login ${username}: ${r.status()}`);
  const page = await context.newPage();
  page.on('pageerror', (e) => problems.push(`${username} page error: ${e.message}`));
  page.on('dialog', (d) => (d.type() === 'prompt' ? d.accept(answer) : d.accept()));
  await page.goto(`${base}/#archive`);
  await page.waitForSelector('#destructions-table');
  return page;
}

/// The desk again, in the same logged-in context.
async function reopen(page) {
  await page.reload();
  await page.waitForSelector('#destructions-table');
  return page;
}

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
const summary = {};
try {
  // 1. The proposal, with its appraisal record.
  const p = await desk(browser, proposer, proposerOtp, '');
  await p.fill('#destruction-sessions', sessionId);
  await p.fill('#destruction-committee', '档案鉴定小组（张、李、王）');
  await p.fill('#destruction-conclusion', '保管期满，无继续保存价值，同意销毁');
  await p.fill('#destruction-reference', '鉴〔2026〕9号');
  await p.click('#destruction-form button[type=submit]');
  // Refused while the hold stands: the page says why.
  await p.waitForSelector('#messages .error');
  summary.refused = await p.textContent('#messages .error');
  check(summary.refused.includes(holdReference), `the refusal names the hold: ${summary.refused}`);
  // Another clerk releases the hold on their desk.
  const releaser = await desk(browser, first, firstOtp, `${first}：鉴定意见属实，同意`);
  const hold = '#holds-table tr[data-hold][data-active="true"]';
  await releaser.waitForSelector(hold);
  await releaser.click(`${hold} .hold-release`);
  await releaser.waitForSelector('#holds-table tr[data-hold][data-active="false"]');
  summary.released = await releaser.textContent('#holds-table tr[data-hold]');
  await p.click('#destruction-form button[type=submit]');
  const row = '#destructions-table tr[data-destruction]';
  await p.waitForSelector(`${row}[data-state="proposed"]`);
  summary.request = await p.getAttribute(row, 'data-destruction');
  check((await p.locator(`${row} .destruction-approve`).count()) === 0, 'the proposer is offered no approval of their own proposal');
  await p.screenshot({ path: join(artefacts, 'destruction-proposed.png'), fullPage: true });

  // 2. Two other clerks approve it, each on their own desk.
  for (const [who, otp, expect] of [
    [first, firstOtp, 'proposed'],
    [second, secondOtp, 'approved'],
  ]) {
    const a = who === first ? await reopen(releaser) : await desk(browser, who, otp, `${who}：鉴定意见属实，同意`);
    await a.click(`${row}[data-destruction="${summary.request}"] .destruction-approve`);
    await a.waitForSelector(`${row}[data-destruction="${summary.request}"][data-state="${expect}"]`);
    summary[`after_${who}`] = await a.textContent(`${row}[data-destruction="${summary.request}"]`);
  }

  // 3. The proposer executes it.
  await p.reload();
  await p.waitForSelector(`${row}[data-state="approved"] .destruction-execute`);
  await p.click(`${row} .destruction-execute`);
  await p.waitForSelector(`${row}[data-state="executed"]`, { timeout: 60_000 });
  summary.executed = await p.textContent(row);
  await p.screenshot({ path: join(artefacts, 'destruction-executed.png'), fullPage: true });
  check(problems.length === 0, problems.join('\n'));
  console.log(JSON.stringify(summary));
} finally {
  await browser.close();
}
