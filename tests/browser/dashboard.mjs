#!/usr/bin/env node
// Drives the dashboard at /test-environments in headless Chromium against a running
// TestMesh API, as people would. alice (who may change things) signs in, reads the
// badges and countdowns, filters, sorts and searches, opens an environment's page and
// finds there what the API says (routing URLs, services, conditions, claims and queue,
// provider app and its link, lifecycle timeline, events), opens the same page from its
// link, extends a TTL, releases a claim and watches the queue move, destroys an
// environment and watches it turn `destroyed` without reloading, and switches workspaces
// without retyping. bob (who may only look) is offered no Extend, Destroy or Release,
// and gets a clear error in a workspace where he has no rights.
//
// Environment:
//   TESTMESH_URL              base URL of the operator's API server, e.g. http://127.0.0.1:8000
//   TESTMESH_WORKSPACE        the workspace (namespace) to open
//   TESTMESH_OTHER_WORKSPACE  a workspace where neither user has rights
//   TESTMESH_TOKEN            bearer token of a user who may change the workspace and read its events
//   TESTMESH_READONLY_TOKEN   bearer token of a user who may only get, list and watch there
//   TESTMESH_EXPECT           JSON {"<id>": "<state>", ...}: the badges expected after sign-in
//   TESTMESH_PAGE             id of the environment whose page is checked: held by a claim,
//                             with another queued behind it
//   TESTMESH_EXTEND           id of the environment whose TTL is extended
//   TESTMESH_EXTEND_MINUTES   the TTL to set
//   TESTMESH_RELEASE          id of the claim to release (the holder of TESTMESH_PAGE)
//   TESTMESH_DESTROY          id of the environment to destroy
//   TESTMESH_SCREENSHOT       optional: PNG of the list once the rows are shown (1280×720)
//   TESTMESH_PAGE_SCREENSHOT  optional: PNG of the whole environment page
//   CHROMIUM                  default /usr/bin/chromium
//   TESTMESH_TIMEOUT_SECONDS  optional: how long to wait for what the page must show (30)
//
// Prints one line of JSON and exits 0, or says what failed and exits 1.
import { chromium } from 'playwright-core';

const DESTROY_TIMEOUT_MS = 60_000;
const RUN_TIMEOUT_MS = 300_000;

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
// The states whose idle TTL counts down in the "Expires in" column.
const COUNTING_DOWN = new Set(['warm', 'cooling']);
const LIFECYCLE = ['cold', 'provisioning', 'warm', 'running', 'cooling', 'degraded', 'failed', 'destroying', 'destroyed'];

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
    otherWorkspace: setting('TESTMESH_OTHER_WORKSPACE'),
    token: setting('TESTMESH_TOKEN'),
    readonlyToken: setting('TESTMESH_READONLY_TOKEN'),
    expect,
    page: setting('TESTMESH_PAGE'),
    extend: setting('TESTMESH_EXTEND'),
    extendMinutes: Number(setting('TESTMESH_EXTEND_MINUTES')),
    release: setting('TESTMESH_RELEASE'),
    destroy: setting('TESTMESH_DESTROY'),
    screenshot: setting('TESTMESH_SCREENSHOT', ''),
    pageScreenshot: setting('TESTMESH_PAGE_SCREENSHOT', ''),
    chromium: setting('CHROMIUM', '/usr/bin/chromium'),
    timeoutMs: Number(setting('TESTMESH_TIMEOUT_SECONDS', '30')) * 1000,
  };
}

// ---- the API, as the page's user --------------------------------------------------

async function api(config, token, path) {
  const response = await fetch(`${config.url}${path}`, { headers: { Authorization: `Bearer ${token}` } });
  const body = await response.json().catch(() => null);
  return { status: response.status, body };
}

async function apiOk(config, token, path) {
  const { status, body } = await api(config, token, path);
  if (status !== 200) throw new Failure(`GET ${path} answered ${status}: ${JSON.stringify(body)}`);
  return body;
}

const workspacePath = (workspace) => `/api/v1/workspaces/${encodeURIComponent(workspace)}`;
const environmentsPath = (config) => `${workspacePath(config.workspace)}/test-environments`;
const environmentPath = (config, id) => `${environmentsPath(config)}/${encodeURIComponent(id)}`;
const claimsPath = (config) => `${workspacePath(config.workspace)}/claims`;

// ---- what the page shows ------------------------------------------------------------

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
    const button = (name) => {
      const found = document.querySelector(`[data-testid="${name}-${CSS.escape(id)}"]`);
      return found ? (found.disabled ? 'disabled' : 'enabled') : 'absent';
    };
    const expires = document.querySelector(`[data-testid="expires-${CSS.escape(id)}"]`);
    return {
      id,
      state: badge.textContent.trim(),
      classes: [...badge.classList],
      background: getComputedStyle(badge).backgroundColor,
      visible: badge.getClientRects().length > 0,
      destroyButton: button('destroy'),
      extendButton: button('extend'),
      expires: expires ? expires.textContent.trim() : null,
    };
  }));
  return Object.fromEntries(raw.map((badge) => [badge.id, { ...badge, colour: colourFamily(badge.background) }]));
}

// Why `badge` does not show `state` correctly for someone who may (`changes`) or may
// not change environments, or null when it does.
function badgeProblem(id, state, badge, changes) {
  if (!badge) return `no row for ${id}`;
  if (!badge.visible) return `${id}: badge not visible`;
  if (badge.state !== state) return `${id}: badge says "${badge.state}", expected "${state}"`;
  if (!badge.classes.includes(`badge-${state}`)) return `${id}: badge classes ${badge.classes.join(' ')} lack badge-${state}`;
  if (badge.colour !== COLOURS[state]) {
    return `${id}: badge is ${badge.colour} (${badge.background}), expected ${COLOURS[state]}`;
  }
  const destroy = !changes || state === 'destroyed' ? 'absent' : state === 'destroying' ? 'disabled' : 'enabled';
  if (badge.destroyButton !== destroy) return `${id}: Destroy button ${badge.destroyButton}, expected ${destroy}`;
  const extend = changes && !['destroying', 'destroyed'].includes(state) ? 'enabled' : 'absent';
  if (badge.extendButton !== extend) return `${id}: Extend TTL button ${badge.extendButton}, expected ${extend}`;
  let countdown = /^—$/;
  if (COUNTING_DOWN.has(state)) countdown = /^\d+ (s|min \d\d s|h \d\d min|d \d+ h)$/;
  if (state === 'running') countdown = /^in use$/;
  if (!countdown.test(badge.expires || '')) return `${id}: "Expires in" says "${badge.expires}", expected ${countdown}`;
  return null;
}

// Polls until `check()` returns no problems; fails with the last ones.
async function waitUntil(page, timeoutMs, what, check) {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const problems = await check();
    if (!problems.length) return;
    if (Date.now() > deadline) {
      const banner = await bannerText(page);
      throw new Failure(`${what} within ${timeoutMs / 1000} s: ${problems.join('; ')}`
        + (banner ? `; error banner: ${banner}` : ''));
    }
    await page.waitForTimeout(200);
  }
}

async function waitForBadges(page, expected, timeoutMs, what, changes = true) {
  let badges = {};
  await waitUntil(page, timeoutMs, what, async () => {
    badges = await readBadges(page);
    return Object.entries(expected)
      .map(([id, state]) => badgeProblem(id, state, badges[id], changes))
      .filter(Boolean);
  });
  return badges;
}

async function bannerText(page) {
  const banner = page.getByTestId('error-banner');
  return (await banner.isVisible()) ? (await banner.textContent()).trim() : '';
}

// The ids of the environment rows shown, in order.
async function shownRows(page) {
  return page.$$eval('[data-testid="environments"] tbody tr', (rows) => rows
    .filter((row) => row.getClientRects().length > 0)
    .map((row) => row.dataset.testid.slice('row-'.length)));
}

// The text of the element `testid`, or '' when there is none (at once, not waiting).
async function text(page, testid) {
  const element = page.getByTestId(testid).first();
  return (await element.count()) ? (await element.textContent()).trim() : '';
}

async function attribute(page, testid, name) {
  const element = page.getByTestId(testid).first();
  return (await element.count()) ? element.getAttribute(name) : null;
}

function same(a, b) {
  return JSON.stringify(a) === JSON.stringify(b);
}

async function openDashboard(browser, config, log, hash) {
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
  const address = `${config.url}/test-environments${hash}`;
  const response = await page.goto(address, { waitUntil: 'load' });
  if (!response || response.status() !== 200) {
    throw new Failure(`GET ${address} answered ${response ? response.status() : 'nothing'}`);
  }
  return { context, page, apiRequests };
}

// Signs in; resolves once the workspace's permissions were answered.
async function signIn(page, token) {
  await page.getByTestId('token-input').fill(token);
  const permissions = page.waitForResponse((response) => response.url().endsWith('/permissions'));
  await page.getByTestId('sign-in').click();
  const answer = await permissions;
  if (answer.status() !== 200) throw new Failure(`the permissions answered ${answer.status()}`);
  return answer.json();
}

// ---- the steps -----------------------------------------------------------------------

// The counts, filters and orders the list offers, against the API's list.
async function checkFilters(page, config, summary) {
  const environments = (await apiOk(config, config.token, environmentsPath(config))).items;
  const ids = environments.map((env) => env.id);
  const counts = {};
  for (const env of environments) counts[env.state] = (counts[env.state] || 0) + 1;
  const all = await text(page, 'count-all');
  if (!all.endsWith(String(ids.length))) throw new Failure(`the "All" filter says "${all}", expected ${ids.length}`);
  for (const [state, count] of Object.entries(counts)) {
    const chip = await text(page, `count-${state}`);
    if (!chip.endsWith(String(count))) throw new Failure(`the ${state} filter says "${chip}", expected ${count}`);
  }

  const expectRows = async (what, wanted) => waitUntil(page, 5000, what, async () => {
    const rows = await shownRows(page);
    return same(rows, wanted) ? [] : [`rows ${rows.join(', ')}, expected ${wanted.join(', ')}`];
  });
  // The rows the page must show for a filter, sorted by name as it sorts them first.
  const sorted = [...environments].sort((a, b) => a.name.localeCompare(b.name) || a.id.localeCompare(b.id));
  const named = (wanted) => sorted.filter(wanted).map((env) => env.id);
  const byName = named(() => true);
  const failed = named((env) => env.state === 'failed');
  if (!failed.length || failed.length === ids.length) throw new Failure(`filtering needs some failed rows: ${ids}`);
  await page.getByTestId('count-failed').click();
  await expectRows('filtering by state failed', failed);
  if (!page.url().includes('state=failed')) throw new Failure(`the state filter is not in the link: ${page.url()}`);
  await page.getByTestId('count-failed').click();
  await expectRows('clearing the state filter', byName);

  const { context } = environments.find((env) => env.state === 'provisioning');
  await page.getByTestId('context-filter').selectOption(context);
  await expectRows(`filtering by context ${context}`, named((env) => env.context === context));
  await page.getByTestId('context-filter').selectOption('');

  const searched = config.extend.slice(-3);
  await page.getByTestId('search').fill(searched);
  await expectRows(`searching "${searched}"`, named((env) => env.id.includes(searched)));
  await page.getByTestId('search').fill('');

  await page.getByTestId('sort').selectOption('state');
  const order = (env) => LIFECYCLE.indexOf(env.state);
  const byState = [...environments].sort((a, b) => order(a) - order(b) || a.name.localeCompare(b.name))
    .map((env) => env.id);
  await expectRows('sorting by state', byState);
  await page.getByTestId('sort').selectOption('name');
  await expectRows('sorting by name', byName);
  summary.filters = { failed, context, searched, by_state: byState };
}

async function checkEnvironmentPage(page, config, summary) {
  const env = await apiOk(config, config.token, environmentPath(config, config.page));
  const claims = (await apiOk(config, config.token, claimsPath(config))).items;
  const events = (await apiOk(config, config.token, `${environmentPath(config, config.page)}/events`)).items;
  // The test can only fail where the data says something.
  const routes = Object.entries(env.routing_policy || {});
  if (routes.length < 3) throw new Failure(`${config.page} has ${routes.length} routes; the test wants at least 3`);
  const queued = claims.filter((c) => c.bound_environment_id === env.id && c.state === 'pending' && c.queue_position);
  if (!env.claimed_by.length || !queued.length) {
    throw new Failure(`${config.page} needs a holder and a queue: ${JSON.stringify(claims)}`);
  }
  if (!env.provider_app_url || !env.provider_app_status) {
    throw new Failure(`${config.page} has no app link or status: ${JSON.stringify(env)}`);
  }
  // The phases the events tell, in order: what the timeline must show.
  const changes = events.map((e) => /^(\S+) → (\S+?):/.exec(e.note)).filter(Boolean);
  const lived = changes.length ? [changes[0][1], ...changes.map((change) => change[2])] : [];
  if (lived.length < 3 || lived[0] !== 'cold' || !lived.includes('warm')) {
    throw new Failure(`the events tell too little of ${config.page}'s life: ${JSON.stringify(events)}`);
  }

  const problems = async () => {
    const found = [];
    const check = (what, shown, wanted) => {
      if (shown !== wanted) found.push(`${what}: "${shown}", expected "${wanted}"`);
    };
    check('title', await text(page, 'env-title'), env.name);
    check('badge', await text(page, 'env-badge'), env.state);
    check('routes', await page.locator('[data-testid="env-routing"] tbody tr').count(), routes.length);
    for (const [service, url] of routes) {
      const link = page.getByTestId(`route-url-${service}`);
      if (!(await link.count())) {
        found.push(`no link for ${service}`);
        continue;
      }
      check(`${service}'s link`, await link.getAttribute('href'), new URL(url).href);
      check(`${service}'s URL`, (await link.textContent()).trim(), url);
    }
    for (const service of env.services) {
      const row = (await text(page, `service-${service.name}`));
      for (const part of [service.image, service.source_ref]) {
        if (!row.includes(part)) found.push(`service ${service.name} lacks ${part}: "${row}"`);
      }
    }
    for (const condition of env.conditions) {
      const row = await text(page, `condition-${condition.type}`);
      for (const part of [condition.status, condition.reason, condition.message]) {
        if (!row.includes(part)) found.push(`condition ${condition.type} lacks "${part}": "${row}"`);
      }
    }
    for (const holder of env.claimed_by) {
      const shown = page.locator(`[data-testid="env-holders"] [data-testid="env-claim-${holder}"]`);
      if (!(await shown.count())) found.push(`holder ${holder} not shown`);
    }
    for (const claim of queued) {
      const position = page.locator(`[data-testid="env-queue"] [data-testid="queue-position-${claim.id}"]`);
      if (!(await position.count())) found.push(`queued claim ${claim.id} not shown`);
      else check(`${claim.id}'s place`, (await position.textContent()).trim(), `#${claim.queue_position}`);
    }
    check('health', await text(page, 'env-app-health'), env.provider_app_status.health);
    check('sync', await text(page, 'env-app-sync'), env.provider_app_status.sync || '—');
    check('revision', await text(page, 'env-app-revision'), env.provider_app_status.revision || '—');
    check('app link', await attribute(page, 'env-app-link', 'href'), env.provider_app_url);
    const phases = await page.$$eval('[data-testid="env-timeline"] li', (items) => items.map((li) => li.dataset.phase));
    if (!same(phases, lived)) found.push(`timeline phases ${phases.join(', ')}, expected ${lived.join(', ')}`);
    // Each phase but the last lasted a measured time; the last one lasts "so far".
    for (let index = 0; index < lived.length; index += 1) {
      const lasted = page.getByTestId(`phase-duration-${index}`);
      const shown = (await lasted.count()) ? (await lasted.textContent()).trim() : 'none';
      const wanted = index === lived.length - 1 ? /^\d+ (s|min \d\d s) so far$/ : /^\d+ (s|min \d\d s)$/;
      if (!wanted.test(shown)) found.push(`${lived[index]} lasted "${shown}", expected ${wanted}`);
    }
    check('events', await page.locator('[data-testid="env-events"] tbody tr').count(), events.length);
    const eventText = await text(page, 'env-events');
    for (const event of events) {
      if (!eventText.includes(event.note)) found.push(`the events lack "${event.note}"`);
    }
    return found;
  };
  await waitUntil(page, config.timeoutMs, `${config.page}'s page did not show what the API says`, problems);
  summary.page = {
    routes: routes.length,
    conditions: env.conditions.length,
    holders: env.claimed_by,
    queued: queued.map((c) => `${c.id} #${c.queue_position}`),
    events: events.length,
    timeline: await page.$$eval('[data-testid="env-timeline"] li',
      (items) => items.map((li) => li.textContent.trim().replace(/\s+/g, ' '))),
  };
}

async function confirmNext(page, step) {
  const seen = { message: null };
  page.once('dialog', async (dialog) => {
    seen.message = `${dialog.type()}: ${dialog.message()}`;
    await dialog.accept();
  });
  await step();
  return seen;
}

async function extendTtl(page, config, summary) {
  await page.getByRole('button', { name: `Extend TTL of test environment ${config.extend}` }).click();
  const dialog = page.getByTestId('extend-dialog');
  await dialog.waitFor({ state: 'visible', timeout: 5000 });
  await page.getByTestId('extend-minutes').fill(String(config.extendMinutes));
  const preview = await text(page, 'extend-preview');
  if (!preview.startsWith('It would expire')) throw new Failure(`the dialog's preview says "${preview}"`);
  await page.getByTestId('extend-submit').click();
  await dialog.waitFor({ state: 'hidden', timeout: config.timeoutMs });
  await waitUntil(page, config.timeoutMs, 'the new TTL did not show', async () => {
    const ttl = await text(page, `ttl-${config.extend}`);
    return ttl === `${config.extendMinutes} min` ? [] : [`TTL "${ttl}"`];
  });
  const env = await apiOk(config, config.token, environmentPath(config, config.extend));
  if (env.ttl_minutes !== config.extendMinutes) throw new Failure(`the API says TTL ${env.ttl_minutes} after Extend`);
  summary.extended = { id: config.extend, ttl_minutes: env.ttl_minutes, preview };
}

async function checkClaims(page, config, summary) {
  const claims = (await apiOk(config, config.token, claimsPath(config))).items;
  if (!claims.some((c) => c.state === 'failed')) throw new Failure(`no failed claim to show: ${JSON.stringify(claims)}`);
  await page.getByTestId('tab-claims').click();
  if (!page.url().endsWith('/claims')) throw new Failure(`the claims view has no link of its own: ${page.url()}`);
  await waitUntil(page, config.timeoutMs, 'the claims did not show as the API says', async () => {
    const found = [];
    for (const claim of claims) {
      const badge = page.getByTestId(`claim-badge-${claim.id}`);
      if (!(await badge.count())) {
        found.push(`no row for claim ${claim.id}`);
        continue;
      }
      if ((await badge.textContent()).trim() !== claim.state) found.push(`${claim.id} shows ${await badge.textContent()}`);
      const queue = (await text(page, `claim-queue-${claim.id}`));
      if (queue !== (claim.queue_position ? `#${claim.queue_position}` : '')) found.push(`${claim.id}'s queue cell "${queue}"`);
      if (claim.state === 'failed' && !(await text(page, `claim-reason-${claim.id}`)).includes(claim.reason)) {
        found.push(`${claim.id} does not say why it failed (${claim.reason})`);
      }
      if (!(await page.getByTestId(`release-${claim.id}`).count())) found.push(`no Release for ${claim.id}`);
    }
    const pending = claims.filter((c) => c.state === 'pending').length;
    const chip = await text(page, 'claim-count-pending');
    if (!chip.endsWith(String(pending))) found.push(`the pending filter says "${chip}", expected ${pending}`);
    return found;
  });

  const holder = claims.find((c) => c.id === config.release);
  const next = claims.find((c) => c.bound_environment_id === holder.bound_environment_id && c.queue_position === 1);
  const seen = await confirmNext(page, () => page.getByRole('button', { name: `Release claim ${config.release}` }).click());
  if (!seen.message || !seen.message.startsWith('confirm:') || !seen.message.includes(config.release)) {
    throw new Failure(`expected a confirmation naming ${config.release}, got ${seen.message || 'no dialog'}`);
  }
  await waitUntil(page, config.timeoutMs, `releasing ${config.release} did not move the queue`, async () => {
    const gone = !(await page.getByTestId(`claim-row-${config.release}`).count());
    const bound = (await page.getByTestId(`claim-badge-${next.id}`).textContent()).trim();
    return gone && bound === 'bound' ? [] : [`${config.release} ${gone ? 'gone' : 'still shown'}, ${next.id} ${bound}`];
  });
  summary.released = { claim: config.release, next_bound: next.id, claims: claims.length };
}

async function destroy(page, config, summary) {
  const started = Date.now();
  const button = page.getByRole('button', { name: `Destroy test environment ${config.destroy}` });
  const seen = await confirmNext(page, () => button.click());
  if (!seen.message || !seen.message.startsWith('confirm:') || !seen.message.includes(config.destroy)) {
    throw new Failure(`expected a confirmation naming ${config.destroy}, got ${seen.message || 'no dialog'}`);
  }
  await waitForBadges(page, { [config.destroy]: 'destroyed' }, DESTROY_TIMEOUT_MS,
    `${config.destroy} did not turn destroyed`);
  summary.destroyed = config.destroy;
  summary.destroy_seconds = Math.round((Date.now() - started) / 100) / 10;
}

// A workspace without rights gives the API's own 403 message in the banner.
async function checkForbidden(page, config, token, summary) {
  const path = `${workspacePath(config.otherWorkspace)}/test-environments`;
  const { status, body } = await api(config, token, path);
  if (status !== 403 || !body || !body.error || !body.error.message) {
    throw new Failure(`GET ${path} answered ${status} ${JSON.stringify(body)}, expected 403 with a message`);
  }
  await page.getByTestId('workspace-input').fill(config.otherWorkspace);
  await page.getByTestId('workspace-input').press('Enter');
  const banner = page.getByTestId('error-banner');
  try {
    await banner.waitFor({ state: 'visible', timeout: config.timeoutMs });
  } catch (_) {
    throw new Failure(`no error banner in ${config.otherWorkspace}`);
  }
  const shown = (await banner.textContent()).trim();
  if ((await banner.getAttribute('role')) !== 'alert') throw new Failure('the error banner lacks role="alert"');
  const lead = `You may not list test environments in workspace ${config.otherWorkspace}`;
  if (!shown.includes(lead) || !shown.includes(body.error.message)) {
    throw new Failure(`the banner says "${shown}", expected "${lead}" and the API's "${body.error.message}"`);
  }
  if (await page.locator('[data-testid^="row-"]').count()) throw new Failure(`rows shown in ${config.otherWorkspace}`);
  summary.forbidden_banner = shown;
}

async function run(config) {
  const log = { pageErrors: [], consoleErrors: [] };
  let step = 'launching Chromium';
  const summary = { ok: false };
  const browser = await chromium.launch({ executablePath: config.chromium, headless: true });
  let page;
  try {
    step = 'opening the dashboard from an older link';
    const first = await openDashboard(browser, config, log, `#workspace=${encodeURIComponent(config.workspace)}`);
    page = first.page;

    step = 'showing only the sign-in';
    if (!(await page.getByTestId('token-input').isVisible())) throw new Failure('the token input is not visible');
    if ((await page.getByTestId('token-input').getAttribute('type')) !== 'password') {
      throw new Failure('the token input is not a password field');
    }
    if (!(await page.getByTestId('sign-in').isVisible())) throw new Failure('the Sign in button is not visible');
    for (const hidden of ['workspace-input', 'environments', 'error-banner', 'workspaces']) {
      if (await page.getByTestId(hidden).isVisible()) throw new Failure(`${hidden} is visible before sign-in`);
    }
    if (await page.locator('[data-testid^="row-"]').count()) throw new Failure('rows are shown before sign-in');
    if (first.apiRequests.length) throw new Failure(`fetched before sign-in: ${first.apiRequests.join(', ')}`);

    step = 'signing in';
    await page.evaluate(() => { window.testmeshSamePage = true; });
    const permissions = await signIn(page, config.token);
    if (!permissions.patch_test_environments || !permissions.delete_claims) {
      throw new Failure(`TESTMESH_TOKEN may not change the workspace: ${JSON.stringify(permissions)}`);
    }
    const workspaceShown = await page.getByTestId('workspace-input').inputValue();
    if (workspaceShown !== config.workspace) {
      throw new Failure(`the workspace input shows "${workspaceShown}", expected "${config.workspace}"`);
    }
    const listHash = `#/workspaces/${config.workspace}/environments`;
    if (!page.url().endsWith(listHash)) throw new Failure(`the older link did not become ${listHash}: ${page.url()}`);

    step = 'showing the expected badges, countdowns and buttons';
    const badges = await waitForBadges(page, config.expect, config.timeoutMs, 'the expected badges did not show');
    summary.rows = await page.locator('[data-testid^="row-"]').count();
    summary.badges = Object.fromEntries(Object.keys(config.expect)
      .map((id) => [id, `${badges[id].state} · ${badges[id].expires}`]));

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
      step = 'taking the screenshot of the list';
      await page.screenshot({ path: config.screenshot });
      summary.screenshot = config.screenshot;
    }

    step = 'filtering, searching and sorting';
    await checkFilters(page, config, summary);

    step = `opening ${config.page}'s page`;
    await page.getByTestId(`open-${config.page}`).click();
    const pageHash = `#/workspaces/${config.workspace}/environments/${config.page}`;
    if (!page.url().endsWith(pageHash)) throw new Failure(`the page's link is ${page.url()}, expected …${pageHash}`);
    await checkEnvironmentPage(page, config, summary);
    if (config.pageScreenshot) {
      step = 'taking the screenshot of the environment page';
      await page.screenshot({ path: config.pageScreenshot, fullPage: true });
      summary.page_screenshot = config.pageScreenshot;
    }

    step = `opening ${config.page}'s page from its link`;
    const linked = await openDashboard(browser, config, log, pageHash);
    await signIn(linked.page, config.token);
    await waitUntil(linked.page, config.timeoutMs, 'the linked page did not open', async () => {
      const visible = await linked.page.getByTestId('environment-page').isVisible();
      const title = visible ? await text(linked.page, 'env-title') : '';
      return visible && title ? [] : ['no environment page'];
    });
    await linked.context.close();

    step = `extending ${config.extend}'s TTL`;
    await page.getByTestId('env-back').click();
    await extendTtl(page, config, summary);

    step = 'releasing a claim from the claims view';
    await checkClaims(page, config, summary);

    step = `destroying ${config.destroy}`;
    await page.getByTestId('tab-environments').click();
    await destroy(page, config, summary);
    if (!(await page.evaluate(() => window.testmeshSamePage === true))) {
      throw new Failure('the page reloaded');
    }

    step = 'switching workspaces without retyping';
    await checkForbidden(page, config, config.token, summary);
    await page.getByTestId(`workspace-link-${config.workspace}`).click();
    await waitForBadges(page, { [config.destroy]: 'destroyed' }, config.timeoutMs, 'the first workspace did not come back');
    if (await page.getByTestId('error-banner').isVisible()) throw new Failure('the banner stayed after switching back');
    await first.context.close();

    step = 'looking without rights to change';
    const second = await openDashboard(browser, config, log, listHash);
    page = second.page;
    const readonly = await signIn(page, config.readonlyToken);
    if (readonly.patch_test_environments || readonly.delete_claims) {
      throw new Failure(`TESTMESH_READONLY_TOKEN may change the workspace: ${JSON.stringify(readonly)}`);
    }
    const now = await apiOk(config, config.readonlyToken, environmentsPath(config));
    const states = Object.fromEntries(now.items.map((env) => [env.id, env.state]));
    await waitForBadges(page, states, config.timeoutMs, 'the read-only view did not show the badges', false);
    // Any action button anywhere on the page, shown or not (the dialog is outside <main>).
    const offered = async () => page.locator(['extend-', 'destroy-', 'release-', 'env-release-']
      .map((prefix) => `main [data-testid^="${prefix}"]`)
      .concat(['main [data-testid="env-extend"]', 'main [data-testid="env-destroy"]'])
      .join(', ')).count();
    await page.getByTestId(`open-${config.page}`).click();
    await waitUntil(page, config.timeoutMs, 'the read-only page did not show its events', async () => (
      (await page.locator('[data-testid="env-events"] tbody tr').count()) ? [] : ['no events']));
    if (await offered()) throw new Failure('a read-only user is offered Extend, Destroy or Release on the page');
    await page.getByTestId('tab-claims').click();
    await waitUntil(page, config.timeoutMs, 'the read-only claims did not show', async () => (
      (await page.locator('[data-testid^="claim-row-"]').count()) ? [] : ['no claims']));
    if (await offered()) throw new Failure('a read-only user is offered Release');
    await page.getByTestId('tab-environments').click();
    if (await offered()) throw new Failure('a read-only user is offered Extend or Destroy');
    await checkForbidden(page, config, config.readonlyToken, summary);
    await second.context.close();

    if (log.pageErrors.length) throw new Failure(`uncaught errors in the page: ${log.pageErrors.join('; ')}`);
    summary.ok = true;
    // Expected: the 403 answers in the workspace without rights, a missing favicon.
    summary.console_errors = log.consoleErrors;
    return summary;
  } catch (error) {
    if (config.screenshot && page && !page.isClosed()) {
      const path = config.screenshot.replace(/(\.png)?$/, '.failure.png');
      await page.screenshot({ path, fullPage: true }).catch(() => {});
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
