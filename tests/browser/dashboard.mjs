// The operators' dashboard in a real browser: Debian's chromium (/usr/bin/chromium) driven by
// playwright-core. Run by tests/external/test_60_browser.py, which starts the broker (with
// web_users) and a FakeNOS device and passes everything through the environment:
//
//   BROKER_URL          http://127.0.0.1:PORT (the broker, dashboard and API alike)
//   BROKER_API_TOKEN    the API token (X-API-Token), for the API side of the scenario
//   WEB_USERNAME, WEB_PASSWORD, WEB_WRONG_PASSWORD   the dashboard login
//   DEVICE_HOST, DEVICE_PORT, DEVICE_USERNAME, DEVICE_PASSWORD   the SSH device
//   SCREENSHOT_DIR      where the PNGs go (created)
//   CHROMIUM            the browser (default /usr/bin/chromium)
//
// Scenario: wrong password -> error on the login page; log in through the form; a session
// opened through the API, with a command containing <script>alert(1)</script>, appears by the
// page's own 5 s refresh (never reloaded here), the command shown as text and no dialog; Close
// on its row -> row gone, API 404; two more sessions -> Close all -> confirmation page ->
// confirm -> none left (API count 0); log out -> login page.
//
// The whole run fails on: a request to anything but the broker on 127.0.0.1 (such requests are
// also aborted), a console error, an uncaught page error, a CSP violation, a dialog, an HTTP
// status >= 400 other than the wrong login's 401. Progress goes to stderr; the last stdout line
// is a JSON summary. Exit 0 = passed. Secrets from the environment are never printed.

import { chromium } from 'playwright-core';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

const T0 = Date.now();
const PLAYWRIGHT_VERSION = JSON.parse(
  fs.readFileSync(new URL('./node_modules/playwright-core/package.json', import.meta.url), 'utf8'),
).version;
const OVERALL_MS = 100_000;
const REFRESH_WAIT_MS = 12_000; // the page refreshes every 5 s; a slow CI machine gets slack
const XSS_COMMAND = 'show <script>alert(1)</script>';

function env(name, fallback) {
  const v = process.env[name] ?? fallback;
  if (v === undefined || v === '') throw new Error(`environment variable ${name} is not set`);
  return v;
}

const BASE = env('BROKER_URL').replace(/\/$/, '');
const BASE_URL = new URL(BASE);
const TOKEN = env('BROKER_API_TOKEN');
const WEB_USER = env('WEB_USERNAME');
const WEB_PW = env('WEB_PASSWORD');
const WEB_WRONG_PW = env('WEB_WRONG_PASSWORD');
const DEVICE = {
  host: env('DEVICE_HOST'),
  port: Number(env('DEVICE_PORT')),
  username: env('DEVICE_USERNAME'),
  password: env('DEVICE_PASSWORD'),
};
const SHOTS = env('SCREENSHOT_DIR');
const CHROMIUM = env('CHROMIUM', '/usr/bin/chromium');

if (BASE_URL.hostname !== '127.0.0.1') throw new Error(`BROKER_URL must be on 127.0.0.1, not ${BASE}`);

function log(msg) {
  process.stderr.write(`[${((Date.now() - T0) / 1000).toFixed(1).padStart(5)}s] ${msg}\n`);
}

class Failure extends Error {}
function check(cond, msg) {
  if (!cond) throw new Failure(msg);
}

// --- the API side (node's fetch; 127.0.0.1 only, like the browser) ---------------------------
async function api(method, p, body) {
  const headers = { 'X-API-Token': TOKEN };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  const r = await fetch(BASE + p, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    signal: AbortSignal.timeout(60_000),
    redirect: 'manual',
  });
  const text = await r.text();
  let json = null;
  try {
    json = JSON.parse(text);
  } catch {
    /* not JSON */
  }
  return { status: r.status, json, text };
}

async function openSession(commands) {
  const r = await api('POST', '/session', { ...DEVICE, device_type: 'cisco_ios' });
  check(r.status === 201, `POST /session: ${r.status} ${r.text.slice(0, 300)}`);
  const id = r.json.session_id;
  if (commands.length) {
    const e = await api('POST', `/session/${id}/exec`, { commands });
    check(e.status === 200, `exec on ${id.slice(0, 8)}: ${e.status} ${e.text.slice(0, 300)}`);
  }
  log(`API: opened session ${id.slice(0, 8)}, ran ${JSON.stringify(commands)}`);
  return id;
}

async function sessionCount() {
  const r = await api('GET', '/sessions');
  check(r.status === 200, `GET /sessions: ${r.status}`);
  return r.json.count;
}

// --- the browser -----------------------------------------------------------------------------
const problems = []; // anything that fails the run whatever the scenario says
const dialogs = [];
const requests = [];
// Allowed once each: the wrong login's 401 ([method, path, status]) and the console error
// Chrome logs for it ([text, url]).
const expectedErrors = [];
const expectedConsole = [];
const navigations = []; // main-frame navigations: [ms since start, url]
let page;

function isBroker(urlText) {
  let u;
  try {
    u = new URL(urlText);
  } catch {
    return false;
  }
  return u.protocol === 'http:' && u.hostname === '127.0.0.1' && u.port === BASE_URL.port;
}

function watch(context) {
  // Every request of every page and worker of the context: the broker's origin only.
  context.on('request', (req) => {
    requests.push(`${req.method()} ${req.url()}`);
    if (!isBroker(req.url())) problems.push(`request outside the broker: ${req.method()} ${req.url()}`);
  });
  context.on('response', (res) => {
    const req = res.request();
    const p = new URL(res.url()).pathname;
    if (res.status() < 400) return;
    const i = expectedErrors.findIndex(([m, ep, s]) => m === req.method() && ep === p && s === res.status());
    if (i >= 0) expectedErrors.splice(i, 1);
    else problems.push(`HTTP ${res.status()} for ${req.method()} ${res.url()}`);
  });
  context.on('page', (p) => problems.push(`unexpected new page: ${p.url()}`));
  context.on('weberror', (e) => problems.push(`page error: ${e.error().message}`));
}

function watchPage(p) {
  p.on('console', (m) => {
    if (m.type() !== 'error') return;
    const i = expectedConsole.findIndex(([text, url]) => text === m.text() && url === m.location().url);
    if (i >= 0) expectedConsole.splice(i, 1);
    else problems.push(`console error: ${m.text()} (${m.location().url})`);
  });
  p.on('pageerror', (e) => problems.push(`uncaught page error: ${e.message}`));
  p.on('dialog', async (d) => {
    dialogs.push(`${d.type()}: ${d.message()}`);
    problems.push(`a ${d.type()} dialog fired: ${d.message()}`);
    await d.dismiss().catch(() => {});
  });
  p.on('framenavigated', (f) => {
    if (f === p.mainFrame()) navigations.push([Date.now() - T0, f.url()]);
  });
}

// Reported as a console error by the page itself (Chrome logs CSP refusals as console errors
// too; this catches any that it would not).
const CSP_WATCH = `
  document.addEventListener('securitypolicyviolation', (e) => {
    console.error('CSP violation: ' + e.violatedDirective + ' blocked ' + (e.blockedURI || 'inline') +
      ' in ' + e.sourceFile + ':' + e.lineNumber);
  });
`;

async function shot(name) {
  const file = path.join(SHOTS, name);
  await page.screenshot({ path: file, fullPage: false });
  log(`screenshot ${file}`);
  return file;
}

function row(id) {
  return page.locator(`tr.session[data-session-id="${id}"]`);
}

async function expectLoginPage(why) {
  await page.locator('main.login form[action="/login"]').waitFor({ timeout: 10_000 });
  check((await page.locator('tr.session').count()) === 0, `${why}: session rows on the login page`);
  check(new URL(page.url()).pathname === '/', `${why}: login page at ${page.url()}`);
}

async function main() {
  fs.mkdirSync(SHOTS, { recursive: true });
  const userDataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'ndb-chromium-'));
  let context;
  const summary = { playwright: PLAYWRIGHT_VERSION, screenshots: [] };
  try {
    check((await sessionCount()) === 0, 'the broker has sessions before the test');

    context = await chromium.launchPersistentContext(userDataDir, {
      executablePath: CHROMIUM,
      headless: true,
      args: [
        '--headless',
        '--no-sandbox',
        '--disable-gpu',
        '--disable-quic',
        '--no-first-run',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
        // No name resolves but 127.0.0.1: the browser's own background traffic has nowhere to go.
        '--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1',
      ],
      viewport: { width: 1280, height: 720 },
      deviceScaleFactor: 1,
      locale: 'en-US',
      timezoneId: 'UTC',
      acceptDownloads: false,
      serviceWorkers: 'block',
    });
    summary.chromium = context.browser()?.version() ?? 'unknown';
    watch(context);
    await context.addInitScript(CSP_WATCH);
    // Abort (not just report) anything not for the broker.
    await context.route(
      (u) => !isBroker(u.href),
      (route) => route.abort('blockedbyclient'),
    );
    page = context.pages()[0] ?? (await context.newPage());
    watchPage(page);
    page.setDefaultTimeout(15_000);
    log(`chromium ${summary.chromium} (${CHROMIUM}), playwright-core ${summary.playwright}`);

    // 1. Login page; a wrong password shows the error and logs nobody in.
    await page.goto(BASE + '/');
    await expectLoginPage('first visit');
    check((await page.title()).includes('Log in'), `login page title: ${await page.title()}`);
    summary.screenshots.push(await shot('login.png'));
    await page.fill('#username', WEB_USER);
    await page.fill('#password', WEB_WRONG_PW);
    expectedErrors.push(['POST', '/login', 401]);
    expectedConsole.push(['Failed to load resource: the server responded with a status of 401 (Unauthorized)', BASE + '/login']);
    const [bad] = await Promise.all([
      page.waitForResponse((r) => r.request().method() === 'POST' && new URL(r.url()).pathname === '/login'),
      page.click('form[action="/login"] button[type="submit"]'),
    ]);
    check(bad.status() === 401, `wrong password: HTTP ${bad.status()}, want 401`);
    const err = page.locator('main.login p.error[role="alert"]');
    await err.waitFor();
    check(
      (await err.textContent()).trim() === 'Invalid username or password.',
      `wrong password message: ${await err.textContent()}`,
    );
    check(
      !(await context.cookies()).some((c) => c.name === 'ndb_web' && c.value),
      'a login cookie after a wrong password',
    );
    summary.screenshots.push(await shot('login-error.png'));
    log('wrong password: 401 with "Invalid username or password."');

    // 2. Log in through the form.
    await page.fill('#username', WEB_USER);
    await page.fill('#password', WEB_PW);
    await Promise.all([page.waitForURL(BASE + '/'), page.click('form[action="/login"] button[type="submit"]')]);
    await page.locator('header form.logout').waitFor();
    check((await page.locator('header .user').textContent()).trim() === WEB_USER, 'user name in the header');
    await page.locator('p.empty', { hasText: 'No open sessions.' }).waitFor();
    const cookie = (await context.cookies()).find((c) => c.name === 'ndb_web');
    check(cookie && cookie.httpOnly && cookie.sameSite === 'Strict', `login cookie: ${JSON.stringify(cookie && { ...cookie, value: '…' })}`);
    check(
      (await page.evaluate(() => document.cookie)) === '',
      'the login cookie is readable from scripts (must be HttpOnly)',
    );
    check(
      (await page.locator('meta[http-equiv="refresh"]').getAttribute('content')) === '5',
      'the dashboard has no 5 s meta refresh',
    );
    log('logged in: empty dashboard');

    // 3. A session opened through the API appears by the page's own refresh (no reload here),
    //    its commands shown as text.
    const navsBefore = navigations.length;
    const tOpen = Date.now();
    const first = await openSession(['show version', XSS_COMMAND]);
    const xssCode = row(first).locator('td.recent li.cmd code', { hasText: XSS_COMMAND });
    await xssCode.waitFor({ timeout: REFRESH_WAIT_MS });
    summary.first_row_seconds = (Date.now() - tOpen) / 1000;
    const refreshes = navigations.slice(navsBefore);
    check(refreshes.length >= 1, 'the row appeared without a navigation?');
    check(
      refreshes.every(([, u]) => u === BASE + '/'),
      `unexpected navigations: ${JSON.stringify(refreshes)}`,
    );
    log(`row ${first.slice(0, 8)} appeared ${summary.first_row_seconds}s after the API open (${refreshes.length} refresh(es))`);
    check((await xssCode.textContent()) === XSS_COMMAND, `command text: ${await xssCode.textContent()}`);
    const html = await xssCode.innerHTML();
    check(html.includes('&lt;script&gt;alert(1)&lt;/script&gt;'), `command not escaped: ${html}`);
    check((await page.locator('script').count()) === 0, 'a <script> element in the dashboard');
    check(
      (await row(first).locator('td.id code').textContent()) === first.slice(0, 8),
      'short session id in the row',
    );
    check((await row(first).locator('td.host').textContent()).includes(`${DEVICE.host}:${DEVICE.port}`), 'host:port in the row');
    check((await page.locator('header .meta').textContent()).includes('1 session'), 'header session count');
    check(dialogs.length === 0, `dialogs: ${dialogs}`);
    summary.screenshots.push(await shot('dashboard.png'));

    // 4. Close on that row: gone from the page and from the API.
    await Promise.all([
      page.waitForResponse((r) => r.request().method() === 'POST' && new URL(r.url()).pathname === `/ui/close/${first}`),
      row(first).getByRole('button', { name: 'Close', exact: true }).click(),
    ]);
    await row(first).waitFor({ state: 'detached' });
    await page.locator('p.empty', { hasText: 'No open sessions.' }).waitFor();
    const gone = await api('GET', `/session/${first}/status`);
    check(gone.status === 404, `closed session: API status ${gone.status}, want 404`);
    summary.screenshots.push(await shot('after-close.png'));
    log(`closed ${first.slice(0, 8)} from its row: gone, API 404`);

    // 5. Two more sessions; Close all -> confirmation page -> confirm.
    const tTwo = Date.now();
    const two = [
      await openSession(['show version', 'show ip interface brief']),
      await openSession(['show clock']),
    ];
    for (const id of two) await row(id).locator('td.recent li.cmd').first().waitFor({ timeout: REFRESH_WAIT_MS });
    await row(two[1]).locator('td.recent code', { hasText: 'show clock' }).waitFor({ timeout: REFRESH_WAIT_MS });
    summary.two_rows_seconds = (Date.now() - tTwo) / 1000;
    check((await page.locator('tr.session').count()) === 2, 'two rows');
    check((await page.locator('header .meta').textContent()).includes('2 sessions'), 'header session count 2');
    summary.screenshots.push(await shot('dashboard-two.png'));
    log(`two more rows appeared ${summary.two_rows_seconds}s after the first API open`);

    await Promise.all([page.waitForURL(BASE + '/ui/close-all'), page.getByRole('link', { name: 'Close all…' }).click()]);
    await page.locator('main.confirm h2', { hasText: 'Close all 2 sessions?' }).waitFor();
    check((await page.locator('main.confirm li').count()) === 2, 'the confirmation page lists both sessions');
    for (const id of two) {
      check((await page.locator('main.confirm li code', { hasText: id.slice(0, 8) }).count()) === 1, `${id.slice(0, 8)} listed`);
    }
    check((await page.locator('meta[http-equiv="refresh"]').count()) === 0, 'the confirmation page must not refresh away');
    summary.screenshots.push(await shot('confirm-close-all.png'));
    check((await sessionCount()) === 2, 'sessions closed before confirming');
    await Promise.all([
      page.waitForURL(BASE + '/'),
      page.getByRole('button', { name: 'Close all sessions', exact: true }).click(),
    ]);
    await page.locator('p.empty', { hasText: 'No open sessions.' }).waitFor();
    check((await page.locator('tr.session').count()) === 0, 'rows left after Close all');
    for (const id of two) {
      const s = await api('GET', `/session/${id}/status`);
      check(s.status === 404, `after Close all: ${id.slice(0, 8)} API status ${s.status}`);
    }
    check((await sessionCount()) === 0, 'API /sessions count after Close all');
    log('Close all: confirmed, none left (API count 0)');

    // 6. Log out: back to the login page, and the dashboard stays behind it.
    await Promise.all([page.waitForURL(BASE + '/'), page.getByRole('button', { name: 'Log out', exact: true }).click()]);
    await expectLoginPage('after logout');
    check(!(await context.cookies()).some((c) => c.name === 'ndb_web' && c.value), 'login cookie left after logout');
    await page.goto(BASE + '/');
    await expectLoginPage('dashboard after logout');
    summary.screenshots.push(await shot('logged-out.png'));
    log('logged out: login page');

    check(expectedErrors.length === 0, `expected HTTP errors not seen: ${JSON.stringify(expectedErrors)}`);
    check(problems.length === 0, `browser problems:\n  ${problems.join('\n  ')}`);
    summary.requests = requests.length;
    summary.navigations = navigations.length;
    summary.ok = true;
  } catch (e) {
    if (page) {
      const file = path.join(SHOTS, 'failure.png');
      await page
        .screenshot({ path: file })
        .then(() => log(`screenshot ${file} (at ${page.url()})`))
        .catch(() => {});
    }
    throw e;
  } finally {
    if (context) await context.close().catch((e) => log(`closing the browser: ${e.message}`));
    fs.rmSync(userDataDir, { recursive: true, force: true });
  }
  summary.seconds = (Date.now() - T0) / 1000;
  return summary;
}

const timer = setTimeout(() => {
  log(`FAILED: the scenario did not finish in ${OVERALL_MS / 1000} s`);
  process.exit(3);
}, OVERALL_MS);

try {
  const summary = await main();
  clearTimeout(timer);
  log(`passed in ${summary.seconds}s`);
  process.stdout.write(JSON.stringify(summary) + '\n');
  process.exit(0);
} catch (e) {
  clearTimeout(timer);
  log(`FAILED: ${e instanceof Failure ? e.message : e.stack}`);
  if (problems.length) log(`browser problems:\n  ${problems.join('\n  ')}`);
  process.stdout.write(JSON.stringify({ ok: false, error: String(e.message ?? e), problems, requests }) + '\n');
  process.exit(1);
}
