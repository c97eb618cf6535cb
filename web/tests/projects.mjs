// Drives the console's Projects page in headless Chromium (playwright-core + /usr/bin/chromium):
//   node web/tests/projects.mjs BASE_URL STAFF_USERNAME STAFF_ONE_TIME_PASSWORD ARTEFACT_DIR
// Witness staff log in (changing the one-time password), open Projects, submit a registration
// with several problems and see every one of them next to its field (in Chinese, then in
// English), correct it, register, and start a bid section from the project's page; the close
// button is not offered to them (closing needs project_events). Prints a JSON summary; any
// failed check exits non-zero.

import { chromium } from 'playwright-core';
import { mkdir } from 'node:fs/promises';
import { join } from 'node:path';

const [base, staff, oneTime, artefacts] = process.argv.slice(2);
if (!base || !staff || !oneTime || !artefacts) {
  console.error('usage: node projects.mjs BASE_URL STAFF_USERNAME STAFF_ONE_TIME_PASSWORD ARTEFACT_DIR');
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
  const context = await browser.newContext({ locale: 'zh-CN', timezoneId: 'Asia/Shanghai', viewport: { width: 1280, height: 1000 } });
  const page = await context.newPage();
  page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
  page.on('dialog', (d) => d.accept(''));
  const snap = async (name) => page.screenshot({ path: join(artefacts, `${String(++shot).padStart(2, '0')}-${name}.png`), fullPage: true });
  const shown = () => page.$$eval('#project-form .problem', (ps) => ps.map((p) => [p.dataset.problem, p.dataset.code, p.textContent]));

  await page.goto(`${base}/`);
  await page.waitForSelector('#login-form');
  await page.fill('#login-username', staff);
  await page.fill('#login-password', oneTime);
  await page.click('#login-submit');
  await page.waitForSelector('#password-form');
  const password = 'Staff-Projects-2026!';
  await page.fill('#pw-current', oneTime);
  await page.fill('#pw-new', password);
  await page.fill('#pw-again', password);
  await page.click('#password-form button[type=submit]');
  await page.waitForSelector('#nav-projects');

  // 1. A registration with four problems: all four, each beside its field, in Chinese.
  await page.click('#nav-projects');
  await page.waitForSelector('#projects');
  await page.click('#project-new');
  await page.waitForSelector('#project-form');
  // Every category of the catalogue is offered, by its Chinese name.
  summary.categories = await page.$$eval('#project-category option', (os) => os.map((o) => o.textContent));
  check(summary.categories.includes('碳排放权交易') && summary.categories.length === 12, `categories: ${summary.categories}`);
  await page.fill('#project-project_code', 'ZB/2026');
  await page.selectOption('#project-category', 'land');
  summary.land_methods = await page.$$eval('#project-method option', (os) => os.map((o) => o.value));
  check(summary.land_methods.includes('auction') && !summary.land_methods.includes('open_tender'), `land methods: ${summary.land_methods}`);
  await page.click('#project-submit');
  await page.waitForSelector('#project-form .problem');
  summary.problems_zh = await shown();
  const fields = summary.problems_zh.map((p) => p[0]).sort();
  check(JSON.stringify(fields) === JSON.stringify(['name', 'project_code', 'sections[0].name', 'tenderer']), `problems: ${JSON.stringify(summary.problems_zh)}`);
  check(summary.problems_zh.every((p) => /[\u4e00-\u9fff]/.test(p[2])), `in Chinese: ${JSON.stringify(summary.problems_zh)}`);
  // Each beside its own field.
  const beside = await page.$eval('[data-problem="tenderer"]', (p) => p.closest('label').querySelector('input').id);
  check(beside === 'project-tenderer', `tenderer problem beside ${beside}`);
  summary.message_zh = await page.textContent('#messages');
  await snap('problems-zh');

  // 2. Corrected, with a second section: registered, and the project's page shows it.
  await page.fill('#project-project_code', 'TD-2026-01');
  await page.fill('#project-name', '城北地块国有建设用地使用权出让');
  await page.fill('#project-tenderer', '某市自然资源和规划局');
  await page.fill('#project-form .section-name', '地块一');
  await page.click('#project-add-section');
  await page.fill('#project-form .section-row:nth-child(2) .section-name', '地块二');
  await page.click('#project-submit');
  await page.waitForSelector('#project-detail[data-project="TD-2026-01"]');
  summary.sections = await page.$$eval('#project-sections-table tr[data-section]', (rs) => rs.map((r) => [r.dataset.section, r.dataset.state]));
  check(JSON.stringify(summary.sections) === JSON.stringify([['1', 'registered'], ['2', 'registered']]), `sections: ${JSON.stringify(summary.sections)}`);
  // Staff may start a section, not close or terminate one.
  summary.staff_buttons = await page.$$eval('#project-sections-table tr[data-section="1"] button', (bs) => bs.map((b) => b.className));
  check(!summary.staff_buttons.includes('to-terminated') && summary.staff_buttons.includes('to-in_progress'), `buttons: ${summary.staff_buttons}`);
  await page.click('#project-sections-table tr[data-section="1"] button.to-in_progress');
  await page.waitForSelector('#project-sections-table tr[data-section="1"][data-state="in_progress"]');
  summary.history = await page.textContent('#project-sections-table tr[data-section="1"] ol.history');
  check(summary.history.includes('进行中') && summary.history.includes(staff), `history: ${summary.history}`);
  await snap('project-detail');

  // 3. In English: the same problems, in English.
  await page.goto(`${base}/?lang=en#projects`);
  await page.waitForSelector('#project-new');
  await page.click('#project-new');
  await page.fill('#project-project_code', 'TD-2026-01');
  await page.click('#project-submit');
  await page.waitForSelector('#project-form .problem');
  summary.problems_en = await shown();
  check(summary.problems_en.some((p) => p[0] === 'name' && p[2] === 'name is required'), `English: ${JSON.stringify(summary.problems_en)}`);
  await snap('problems-en');
} catch (e) {
  problems.push(e.message);
} finally {
  await browser.close();
}
if (problems.length) {
  console.error(problems.join('\n'));
  console.log(JSON.stringify(summary));
  process.exit(1);
}
console.log(JSON.stringify(summary));
