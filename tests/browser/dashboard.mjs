#!/usr/bin/env node
// Drives the dashboard at /test-environments in headless Chromium against a running
// TestMesh API, as a person would: sign in, read the badges, destroy one environment and
// watch it turn `destroyed` without reloading, then sign in as someone without rights.
//
// Environment:
//   TESTMESH_URL          base URL of the operator's API server, e.g. http://127.0.0.1:8000
//   TESTMESH_WORKSPACE    the workspace (namespace) to open
//   TESTMESH_TOKEN        bearer token of a user allowed in the workspace
//   TESTMESH_OTHER_TOKEN  bearer token of a user with no rights there
//   TESTMESH_EXPECT       JSON {"<id>": "<state>", ...}: the badges expected after sign-in
//   TESTMESH_DESTROY      id of the environment to destroy
//   TESTMESH_SCREENSHOT   optional: PNG written once the rows are shown (1280×720)
//   CHROMIUM              default /usr/bin/chromium
//   TESTMESH_TIMEOUT_SECONDS  optional: how long to wait for the expected badges (30)
//
// Prints one line of JSON and exits 0, or says what failed and exits 1.
import { chromium } from 'playwright-core';

const DESTROY_TIMEOUT_MS = 60_000;
const RUN_TIMEOUT_MS = 240_000;

// The colour family each state's badge must show, checked on the computed style.
const COLOURS = {
  cold: 'grey',
  provisioning: 'blue',
  warm: 'green',
  running: 'green',
  cooling: 'orange',
  failed: 'purple',
  destroying: 'dark red',
  destroyed: 'red',
};

class Failure extends Error {}

function setting(name, fallback) {
  const value = process.env[name];
  if (value !== undefined && value !== '') return value;
  if (fallback !== undefined) return fallback;
  throw new Failure(`${name} is not set`);
}

function readConfig() {
  const expectText = setting('TESTMESH_EXPECT');
  let expect;
  try {
    expect = JSON.parse(expectText);
  } catch (error) {
    throw new Failure(`TESTMESH_EXPECT is not JSON: ${error.message}`);
  }
  if (!expect || typeof expect !== 'object' || Array.isArray(expect) || !Object.keys(expect).length) {
    throw new Failure('TESTMESH_EXPECT must be a non-empty object {"<id>": "<state>"}');
  }
  for (const [id, state] of Object.entries(expect)) {
    if (!(state in COLOURS)) throw new Failure(`TESTMESH_EXPECT: unknown state "${state}" for ${id}`);
  }
  return {
    url: setting('TESTMESH_URL').replace(/\/+$/, ''),
    workspace: setting('TESTMESH_WORKSPACE'),
    token: setting('TESTMESH_TOKEN'),
    otherToken: setting('TESTMESH_OTHER_TOKEN'),
    expect,
    destroy: setting('TESTMESH_DESTROY'),
    screenshot: setting('TESTMESH_SCREENSHOT', ''),
    chromium: setting('CHROMIUM', '/usr/bin/chromium'),
    timeoutMs: Number(setting('TESTMESH_TIMEOUT_SECONDS', '30')) * 1000,
  };
}

// "rgb(207, 34, 46)" → a colour family name.
function colourFamily(css) {
  const match = /rgba?\((\d+),\s*(\d+),\s*(\d+)/.exec(css || '');
  if (!match) return `unparsed ${css}`;
  const [r, g, b] = match.slice(1, 4).map((c) => Number(c) / 255);
  const max = Math.max(r, g, b);
  const min = Math.min(r, g, b);
  const light = (max + min) / 2;
  const chroma = max - min;
  if (chroma < 0.12) return 'grey';
  let hue;
  if (max === r) hue = ((g - b) / chroma) % 6;
  else if (max === g) hue = (b - r) / chroma + 2;
  else hue = (r - g) / chroma + 4;
  hue = (hue * 60 + 360) % 360;
  if (hue >= 335 || hue < 12) return light < 0.36 ? 'dark red' : 'red';
  if (hue < 48) return 'orange';
  if (hue < 75) return 'yellow';
  if (hue < 170) return 'green';
  if (hue < 245) return 'blue';
  return 'purple';
}

// What the page shows for each environment row: id → {state, classes, colour, ...}.
async function readBadges(page) {
  const raw = await page.$$eval('[data-testid^="badge-"]', (badges) => badges.map((badge) => {
    const id = badge.dataset.testid.slice('badge-'.length);
    const button = document.querySelector(`[data-testid="destroy-${CSS.escape(id)}"]`);
    return {
      id,
      state: badge.textContent.trim(),
      classes: [...badge.classList],
      background: getComputedStyle(badge).backgroundColor,
      visible: badge.getClientRects().length > 0,
      destroyButton: button ? (button.disabled ? 'disabled' : 'enabled') : 'absent',
    };
  }));
  return Object.fromEntries(raw.map((badge) => [badge.id, { ...badge, colour: colourFamily(badge.background) }]));
}

// Why `badge` does not show `state` correctly, or null when it does.
function badgeProblem(id, state, badge) {
  if (!badge) return `no row for ${id}`;
  if (!badge.visible) return `${id}: badge not visible`;
  if (badge.state !== state) return `${id}: badge says "${badge.state}", expected "${state}"`;
  if (!badge.classes.includes(`badge-${state}`)) return `${id}: badge classes ${badge.classes.join(' ')} lack badge-${state}`;
  if (badge.colour !== COLOURS[state]) return `${id}: badge is ${badge.colour} (${badge.background}), expected ${COLOURS[state]}`;
  const wanted = state === 'destroyed' ? 'absent' : state === 'destroying' ? 'disabled' : 'enabled';
  if (badge.destroyButton !== wanted) return `${id}: Destroy button ${badge.destroyButton}, expected ${wanted}`;
  return null;
}

// Polls until every expected badge is right; fails with the last differences.
async function waitForBadges(page, expected, timeoutMs, what) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const badges = await readBadges(page);
    const problems = Object.entries(expected)
      .map(([id, state]) => badgeProblem(id, state, badges[id]))
      .filter(Boolean);
    if (!problems.length) return badges;
    if (Date.now() > deadline) {
      const banner = await bannerText(page);
      throw new Failure(`${what} within ${timeoutMs / 1000} s: ${problems.join('; ')}`
        + (banner ? `; error banner: ${banner}` : ''));
    }
    await page.waitForTimeout(200);
  }
}

async function bannerText(page) {
  const banner = page.getByTestId('error-banner');
  return (await banner.isVisible()) ? (await banner.textContent()).trim() : '';
}

async function openDashboard(browser, config, log) {
  const context = await browser.newContext({ viewport: { width: 1280, height: 720 } });
  const page = await context.newPage();
  const apiRequests = [];
  page.on('request', (request) => {
    if (new URL(request.url()).pathname.startsWith('/api/')) apiRequests.push(`${request.method()} ${request.url()}`);
  });
  page.on('pageerror', (error) => log.pageErrors.push(error.message));
  page.on('console', (message) => {
    if (message.type() === 'error') log.consoleErrors.push(message.text());
  });
  const address = `${config.url}/test-environments#workspace=${encodeURIComponent(config.workspace)}`;
  const response = await page.goto(address, { waitUntil: 'load' });
  if (!response || response.status() !== 200) {
    throw new Failure(`GET ${address} answered ${response ? response.status() : 'nothing'}`);
  }
  return { context, page, apiRequests };
}

async function signIn(page, token) {
  await page.getByTestId('token-input').fill(token);
  await page.getByTestId('sign-in').click();
}

// The API's own 403 message for `token`, which the banner must quote.
async function apiForbiddenMessage(config) {
  const url = `${config.url}/api/v1/workspaces/${encodeURIComponent(config.workspace)}/test-environments`;
  const response = await fetch(url, { headers: { Authorization: `Bearer ${config.otherToken}` } });
  const body = await response.json().catch(() => null);
  if (response.status !== 403) {
    throw new Failure(`GET ${url} with TESTMESH_OTHER_TOKEN answered ${response.status}, expected 403`);
  }
  const message = body && body.error && body.error.message;
  if (!message) throw new Failure(`the 403 answer has no error.message: ${JSON.stringify(body)}`);
  return message;
}

async function run(config) {
  const log = { pageErrors: [], consoleErrors: [] };
  let step = 'launching Chromium';
  const summary = { ok: false };
  const browser = await chromium.launch({ executablePath: config.chromium, headless: true });
  let page;
  try {
    step = 'opening the dashboard';
    const first = await openDashboard(browser, config, log);
    page = first.page;

    step = 'showing only the sign-in';
    if (!(await page.getByTestId('token-input').isVisible())) throw new Failure('the token input is not visible');
    if ((await page.getByTestId('token-input').getAttribute('type')) !== 'password') {
      throw new Failure('the token input is not a password field');
    }
    if (!(await page.getByTestId('sign-in').isVisible())) throw new Failure('the Sign in button is not visible');
    for (const hidden of ['workspace-input', 'environments', 'error-banner']) {
      if (await page.getByTestId(hidden).isVisible()) throw new Failure(`${hidden} is visible before sign-in`);
    }
    if (await page.locator('[data-testid^="row-"]').count()) throw new Failure('rows are shown before sign-in');
    if (first.apiRequests.length) throw new Failure(`fetched before sign-in: ${first.apiRequests.join(', ')}`);

    step = 'signing in';
    await page.evaluate(() => { window.testmeshSamePage = true; });
    await signIn(page, config.token);
    const workspaceShown = await page.getByTestId('workspace-input').inputValue();
    if (workspaceShown !== config.workspace) {
      throw new Failure(`the workspace input shows "${workspaceShown}", expected "${config.workspace}"`);
    }

    step = 'showing the expected badges';
    const badges = await waitForBadges(page, config.expect, config.timeoutMs, 'the expected badges did not show');
    summary.rows = await page.locator('[data-testid^="row-"]').count();
    summary.badges = Object.fromEntries(Object.keys(config.expect).map((id) => [id, badges[id].state]));

    step = 'keeping the token out of storage';
    const stored = await page.evaluate(() => ({
      local: localStorage.length,
      session: sessionStorage.length,
      cookie: document.cookie,
      url: location.href,
    }));
    const cookies = await first.context.cookies();
    if (stored.local || stored.session || stored.cookie || cookies.length || stored.url.includes(config.token)) {
      throw new Failure(`the session left traces: ${JSON.stringify({ ...stored, cookies: cookies.length })}`);
    }

    if (config.screenshot) {
      step = 'taking the screenshot';
      await page.screenshot({ path: config.screenshot });
      summary.screenshot = config.screenshot;
    }

    step = `destroying ${config.destroy}`;
    let dialogMessage = null;
    page.once('dialog', async (dialog) => {
      dialogMessage = `${dialog.type()}: ${dialog.message()}`;
      await dialog.accept();
    });
    const started = Date.now();
    await page.getByRole('button', { name: `Destroy test environment ${config.destroy}` }).click();
    if (!dialogMessage || !dialogMessage.startsWith('confirm:') || !dialogMessage.includes(config.destroy)) {
      throw new Failure(`expected a confirmation naming ${config.destroy}, got ${dialogMessage || 'no dialog'}`);
    }
    await waitForBadges(page, { [config.destroy]: 'destroyed' }, DESTROY_TIMEOUT_MS,
      `${config.destroy} did not turn destroyed`);
    summary.destroyed = config.destroy;
    summary.destroy_seconds = Math.round((Date.now() - started) / 100) / 10;
    if (!(await page.evaluate(() => window.testmeshSamePage === true))) {
      throw new Failure('the page reloaded while destroying');
    }
    await first.context.close();

    step = 'signing in without rights';
    const expectedMessage = await apiForbiddenMessage(config);
    const second = await openDashboard(browser, config, log);
    page = second.page;
    await signIn(page, config.otherToken);
    const banner = page.getByTestId('error-banner');
    try {
      await banner.waitFor({ state: 'visible', timeout: config.timeoutMs });
    } catch (_) {
      throw new Failure('no error banner for a user without rights');
    }
    const text = (await banner.textContent()).trim();
    if ((await banner.getAttribute('role')) !== 'alert') throw new Failure('the error banner lacks role="alert"');
    const lead = `You may not list test environments in workspace ${config.workspace}`;
    if (!text.includes(lead) || !text.includes(expectedMessage)) {
      throw new Failure(`the banner says "${text}", expected "${lead}" and the API's "${expectedMessage}"`);
    }
    if (await page.locator('[data-testid^="row-"]').count()) throw new Failure('rows shown to a user without rights');
    summary.forbidden_banner = text;
    await second.context.close();

    if (log.pageErrors.length) throw new Failure(`uncaught errors in the page: ${log.pageErrors.join('; ')}`);
    summary.ok = true;
    // Expected: the 403 answer to the user without rights, a missing favicon.
    summary.console_errors = log.consoleErrors;
    return summary;
  } catch (error) {
    if (config.screenshot && page && !page.isClosed()) {
      const path = config.screenshot.replace(/(\.png)?$/, '.failure.png');
      await page.screenshot({ path }).catch(() => {});
    }
    throw new Failure(`${step}: ${error.message}`);
  } finally {
    await browser.close();
  }
}

const timer = setTimeout(() => {
  console.error(`dashboard test failed: no result within ${RUN_TIMEOUT_MS / 1000} s`);
  process.exit(1);
}, RUN_TIMEOUT_MS);
timer.unref();

try {
  const summary = await run(readConfig());
  console.log(JSON.stringify(summary));
  process.exit(0);
} catch (error) {
  console.error(`dashboard test failed: ${error instanceof Failure ? error.message : error.stack}`);
  console.log(JSON.stringify({ ok: false, error: error.message }));
  process.exit(1);
}
