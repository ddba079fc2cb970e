// TestMesh dashboard: a workspace's test environments and claims, live, with a page per
// environment (routing, services, conditions, claims and queue, provider app, lifecycle
// timeline, events) and the actions the signed-in identity may take.
//
// The bearer token lives only in this closure: never in storage, cookies or the URL, so
// closing or reloading the tab forgets it. Browsers' EventSource cannot send an
// Authorization header, so the live lists are read with fetch() and the server-sent
// events are parsed from the response body here. Everything shown is text or an http(s)
// link built with the DOM API, never parsed HTML, so nothing from an environment can
// become markup or code.
'use strict';

(() => {
  // Lifecycle order: how the state filter and the "state" sort order them.
  const STATES = [
    'cold', 'provisioning', 'warm', 'running', 'cooling', 'sleeping', 'degraded', 'failed',
    'destroying', 'destroyed',
  ];
  const CLAIM_STATES = ['pending', 'bound', 'released', 'expired', 'failed'];
  // Where the idle TTL counts down to a teardown that waiting alone brings: a countdown
  // elsewhere (provisioning, failed) would read as "ready until".
  const COUNTDOWN_STATES = new Set(['warm', 'cooling', 'sleeping']);
  const TEARDOWN_STATES = new Set(['destroying', 'destroyed']);
  const MAX_TTL_MINUTES = 43200;
  // A workspace is a Kubernetes namespace: a DNS-1123 label.
  const WORKSPACE_NAME = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;
  // The API sends a keep-alive every 15 s: three missed ones mean a dead connection.
  const SILENCE_LIMIT_MS = 45000;
  const RETRY_FIRST_MS = 1000;
  const RETRY_MAX_MS = 30000;
  // How long the workspace list remembered in the tab may grow.
  const KNOWN_WORKSPACES_MAX = 12;

  const $ = (id) => document.getElementById(id);
  const ui = {
    banner: $('error-banner'),
    signInView: $('sign-in-view'),
    signInForm: $('sign-in-form'),
    tokenInput: $('token-input'),
    session: $('session'),
    workspaceForm: $('workspace-form'),
    workspaceInput: $('workspace-input'),
    workspaceOptions: $('workspace-options'),
    workspacesNav: $('workspaces-nav'),
    workspaceLinks: $('workspace-links'),
    signOut: $('sign-out'),
    view: $('workspace-view'),
    title: $('workspace-title'),
    connection: $('connection'),
    tabEnvironments: $('tab-environments'),
    tabClaims: $('tab-claims'),
    tabEnvironmentsCount: $('tab-environments-count'),
    tabClaimsCount: $('tab-claims-count'),
    environmentsView: $('environments-view'),
    stateFilter: $('state-filter'),
    contextFilter: $('context-filter'),
    search: $('search'),
    sort: $('sort'),
    empty: $('empty'),
    table: $('environments'),
    caption: $('environments-caption'),
    rows: $('rows'),
    claimsView: $('claims-view'),
    claimStateFilter: $('claim-state-filter'),
    claimSearch: $('claim-search'),
    claimsEmpty: $('claims-empty'),
    claimsTable: $('claims'),
    claimRows: $('claim-rows'),
    envView: $('environment-view'),
    envBack: $('env-back'),
    envMissing: $('env-missing'),
    envBody: $('env-body'),
    envTitle: $('env-title'),
    envSubtitle: $('env-subtitle'),
    envBadge: $('env-badge'),
    envExpires: $('env-expires'),
    envActions: $('env-actions'),
    envReason: $('env-reason'),
    envRouting: $('env-routing'),
    envRoutingEmpty: $('env-routing-empty'),
    envApp: $('env-app'),
    envServices: $('env-services'),
    envClaims: $('env-claims'),
    envTimelineBar: $('env-timeline-bar'),
    envTimeline: $('env-timeline'),
    envTimelineNote: $('env-timeline-note'),
    envConditions: $('env-conditions'),
    envEvents: $('env-events'),
    envEventsNote: $('env-events-note'),
    extendDialog: $('extend-dialog'),
    extendForm: $('extend-form'),
    extendWhat: $('extend-what'),
    extendMinutes: $('extend-minutes'),
    extendPreview: $('extend-preview'),
    extendError: $('extend-error'),
    extendCancel: $('extend-cancel'),
    extendSubmit: $('extend-submit'),
  };

  let token = null;
  // Where the page is: #/workspaces/{workspace}[/environments[/{id}] | /claims][?filters]
  let route = { workspace: '', view: 'environments', id: '', query: new URLSearchParams() };
  // What is known of the open workspace; replaced whole when another is opened.
  let space = emptySpace('');
  const knownWorkspaces = new Set();

  function emptySpace(workspace) {
    return {
      workspace,
      watch: null, // AbortController of its streams and requests
      environments: new Map(), // id -> environment, from the snapshot stream
      loaded: false,
      claims: null, // [claim] once the claim stream answered
      claimsProblem: '',
      // undefined while asked, null when the API could not tell, else the answer
      permissions: undefined,
      rows: new Map(), // environment id -> table row
      claimRows: new Map(), // claim id -> table row
      destroyRequested: new Set(),
      events: { id: '', fingerprint: '', items: null, problem: '', loading: null },
    };
  }

  // ---- small helpers ------------------------------------------------------------

  function h(tag, attributes, ...children) {
    const element = document.createElement(tag);
    for (const [name, value] of Object.entries(attributes || {})) {
      if (value === undefined || value === null || value === false) continue;
      if (name === 'class') element.className = value;
      else element.setAttribute(name, value === true ? '' : value);
    }
    element.append(...children.flat(Infinity).filter((c) => c !== null && c !== undefined));
    return element;
  }

  // A link for an http(s) URL only: anything else is shown as text.
  function link(url, text, attributes) {
    let parsed = null;
    try {
      parsed = new URL(url);
    } catch (_) { /* not a URL */ }
    if (!parsed || (parsed.protocol !== 'http:' && parsed.protocol !== 'https:')) {
      return h('span', {}, text || url || '');
    }
    return h('a', { href: parsed.href, target: '_blank', rel: 'noopener noreferrer', ...attributes }, text || url);
  }

  function showError(text) {
    ui.banner.textContent = text;
    ui.banner.hidden = false;
  }

  function clearError() {
    ui.banner.hidden = true;
    ui.banner.textContent = '';
  }

  function setConnection(text, live) {
    ui.connection.textContent = text;
    ui.connection.classList.toggle('live', Boolean(live));
  }

  function sleep(ms, signal) {
    return new Promise((resolve) => {
      const timer = setTimeout(resolve, ms);
      signal.addEventListener('abort', () => { clearTimeout(timer); resolve(); }, { once: true });
    });
  }

  const enc = encodeURIComponent;
  const environmentsPath = (ws) => `/api/v1/workspaces/${enc(ws)}/test-environments`;
  const environmentPath = (ws, id) => `${environmentsPath(ws)}/${enc(id)}`;
  const claimPath = (ws, id) => `/api/v1/workspaces/${enc(ws)}/claims/${enc(id)}`;

  function request(method, path, options) {
    const { signal, accept, body } = options || {};
    const headers = { Authorization: `Bearer ${token}`, Accept: accept || 'application/json' };
    if (body !== undefined) headers['Content-Type'] = 'application/json';
    return fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      signal,
      cache: 'no-store',
      credentials: 'omit',
    });
  }

  // The API's `{"error": {...}}`, or what can be made of another answer.
  async function readError(response) {
    const text = await response.text().catch(() => '');
    try {
      const error = JSON.parse(text).error;
      if (error && error.message) return error;
    } catch (_) { /* not JSON: fall through */ }
    return {
      status: response.status,
      reason: response.statusText,
      message: text.trim().slice(0, 300) || `HTTP ${response.status} ${response.statusText}`,
    };
  }

  const stateOf = (env) => (STATES.includes(env.state) ? env.state : 'unknown');
  const claimStateOf = (claim) => (CLAIM_STATES.includes(claim.state) ? claim.state : 'unknown');
  const displayName = (env) => env.name || env.id;

  function badge(state, attributes) {
    return h('span', { class: `badge badge-${state}`, ...attributes }, state);
  }

  // ---- time ---------------------------------------------------------------------

  function parseTime(value) {
    const ms = value ? Date.parse(value) : NaN;
    return Number.isNaN(ms) ? null : ms;
  }

  function ago(at, now) {
    const s = Math.floor((now - at) / 1000);
    if (s < 5) return 'just now';
    if (s < 60) return `${s} s ago`;
    const m = Math.floor(s / 60);
    if (m < 60) return `${m} min ago`;
    const hours = Math.floor(m / 60);
    if (hours < 48) return `${hours} h ago`;
    return `${Math.floor(hours / 24)} d ago`;
  }

  // "3 min 52 s", "2 h 05 min", "1 d 4 h": a duration in its two largest units.
  function duration(ms) {
    const s = Math.max(0, Math.round(ms / 1000));
    const days = Math.floor(s / 86400);
    const hours = Math.floor((s % 86400) / 3600);
    const m = Math.floor((s % 3600) / 60);
    const sec = s % 60;
    if (days) return `${days} d ${hours} h`;
    if (hours) return `${hours} h ${String(m).padStart(2, '0')} min`;
    if (m) return `${m} min ${String(sec).padStart(2, '0')} s`;
    return `${sec} s`;
  }

  function remaining(until, now) {
    return until - now <= 0 ? 'expired' : duration(Math.ceil((until - now) / 1000) * 1000);
  }

  function localTime(ms) {
    return new Date(ms).toLocaleString();
  }

  function timeCell(value) {
    const ms = parseTime(value);
    return ms == null ? '—' : h('time', { datetime: value, title: localTime(ms) }, localTime(ms));
  }

  // What the "Expires in" cell says, and its tooltip.
  function expiry(env, now) {
    const expires = parseTime(env.expires_at);
    if (TEARDOWN_STATES.has(env.state)) return { text: '—', title: '' };
    if (env.state === 'running') {
      // A held environment never expires; its TTL restarts when the run releases it.
      const holders = env.claimed_by || [];
      return { text: 'in use', title: holders.length ? `held by claim ${holders.join(', ')}` : '' };
    }
    if (expires == null) return { text: '—', title: '' };
    if (!COUNTDOWN_STATES.has(env.state)) {
      return { text: '—', title: `torn down at ${localTime(expires)} if nobody has used it by then` };
    }
    const title = env.expiring_soon
      ? `expires ${localTime(expires)}: TestMesh warned that it is expiring soon`
      : `expires ${localTime(expires)}`;
    return { text: remaining(expires, now), title, running: true, soon: env.expiring_soon === true };
  }

  // ---- permissions --------------------------------------------------------------

  // Whether to offer an action: what the API server's authorizer answered for this
  // token, or — when it could not be asked — offer it and let the API decide.
  function may(action) {
    const permissions = space.permissions;
    if (permissions === undefined) return false;
    if (permissions === null) return true;
    return permissions[action] === true;
  }

  async function loadPermissions(current) {
    try {
      const response = await request('GET', `/api/v1/workspaces/${enc(current.workspace)}/permissions`,
        { signal: current.watch.signal });
      current.permissions = response.ok ? await response.json() : null;
    } catch (_) {
      if (current.watch.signal.aborted) return;
      current.permissions = null;
    }
    if (current !== space) return;
    renderEnvironments();
    renderClaims();
    renderEnvironmentPage();
  }

  // ---- routes -------------------------------------------------------------------

  function safeDecode(text) {
    try {
      return decodeURIComponent(text);
    } catch (_) {
      return text;
    }
  }

  // #/workspaces/team-a/environments/pr-1, #/workspaces/team-a/claims?q=x, and the
  // older #workspace=team-a.
  function parseRoute(hash) {
    const text = (hash || '').replace(/^#/, '');
    if (!text.startsWith('/')) {
      return { workspace: parseWorkspace(text), view: 'environments', id: '', query: new URLSearchParams() };
    }
    const cut = text.indexOf('?');
    const path = cut < 0 ? text : text.slice(0, cut);
    const query = new URLSearchParams(cut < 0 ? '' : text.slice(cut + 1));
    const parts = path.split('/').filter(Boolean).map(safeDecode);
    if (parts[0] !== 'workspaces' || !parts[1]) {
      return { workspace: '', view: 'environments', id: '', query };
    }
    const view = parts[2] === 'claims' ? 'claims' : parts[3] ? 'environment' : 'environments';
    return { workspace: parts[1], view, id: view === 'environment' ? parts[3] : '', query };
  }

  function hashOf(target) {
    if (!target.workspace) return '';
    const base = `#/workspaces/${enc(target.workspace)}`;
    const query = target.query && target.query.toString();
    const suffix = query ? `?${query}` : '';
    if (target.view === 'claims') return `${base}/claims${suffix}`;
    if (target.view === 'environment') return `${base}/environments/${enc(target.id)}`;
    return `${base}/environments${suffix}`;
  }

  // "team-a", "#workspace=team-a", "#/workspaces/team-a/…" or a whole dashboard link.
  function parseWorkspace(text) {
    let value = (text || '').trim();
    const slashed = /#\/workspaces\/([^/?#]+)/.exec(value);
    if (slashed) return safeDecode(slashed[1]);
    const cut = Math.max(value.lastIndexOf('#'), value.lastIndexOf('?'));
    if (cut >= 0) value = value.slice(cut + 1);
    if (value.includes('=')) value = new URLSearchParams(value).get('workspace') || '';
    return value.trim();
  }

  // The tab's history entries carry the workspaces seen in it, so they survive a reload
  // (the token does not: it is never written anywhere).
  function historyState() {
    return { workspaces: [...knownWorkspaces] };
  }

  function navigate(target, replace) {
    const hash = hashOf(target);
    const url = hash || `${location.pathname}${location.search}`;
    if (replace) history.replaceState(historyState(), '', url);
    else history.pushState(historyState(), '', url);
    applyRoute(parseRoute(hash));
  }

  function followLocation() {
    history.replaceState(historyState(), '', location.href);
    applyRoute(parseRoute(location.hash));
  }

  function applyRoute(next) {
    const workspaceChanged = next.workspace !== route.workspace;
    route = next;
    ui.workspaceInput.value = route.workspace;
    if (route.workspace && WORKSPACE_NAME.test(route.workspace)) remember([route.workspace]);
    if (workspaceChanged || !space.watch) connect();
    showView();
  }

  function updateQuery(changes) {
    const query = new URLSearchParams(route.query);
    for (const [name, value] of Object.entries(changes)) {
      if (value) query.set(name, value);
      else query.delete(name);
    }
    route = { ...route, query };
    history.replaceState(historyState(), '', hashOf(route));
  }

  function remember(workspaces) {
    const before = knownWorkspaces.size;
    for (const name of workspaces) {
      if (WORKSPACE_NAME.test(name) && knownWorkspaces.size < KNOWN_WORKSPACES_MAX) knownWorkspaces.add(name);
    }
    if (knownWorkspaces.size !== before) history.replaceState(historyState(), '', location.href);
    renderWorkspaces();
  }

  function renderWorkspaces() {
    const names = [...knownWorkspaces].sort();
    ui.workspaceLinks.replaceChildren(...names.map((name) => {
      const current = name === route.workspace;
      return h('li', {}, h('a', {
        href: hashOf({ workspace: name, view: 'environments' }),
        'data-testid': `workspace-link-${name}`,
        'aria-current': current ? 'page' : null,
      }, name));
    }));
    ui.workspaceOptions.replaceChildren(...names.map((name) => h('option', { value: name })));
    ui.workspacesNav.hidden = !token || names.length === 0;
  }

  // The workspaces the token may list across the cluster, when it may (most may not).
  async function loadWorkspaces() {
    try {
      const response = await request('GET', '/api/v1/workspaces');
      if (!response.ok) return;
      const list = await response.json();
      remember((list.items || []).map((item) => item.workspace_id));
    } catch (_) { /* offered only when available */ }
  }

  // ---- views --------------------------------------------------------------------

  function showView() {
    const ws = route.workspace;
    ui.tabEnvironments.href = hashOf({ workspace: ws, view: 'environments' });
    ui.tabClaims.href = hashOf({ workspace: ws, view: 'claims' });
    ui.envBack.href = hashOf({ workspace: ws, view: 'environments' });
    const tab = route.view === 'claims' ? ui.tabClaims : ui.tabEnvironments;
    for (const element of [ui.tabEnvironments, ui.tabClaims]) {
      if (element === tab) element.setAttribute('aria-current', 'page');
      else element.removeAttribute('aria-current');
    }
    ui.environmentsView.hidden = route.view !== 'environments';
    ui.claimsView.hidden = route.view !== 'claims';
    ui.envView.hidden = route.view !== 'environment';
    ui.title.textContent = ws ? `Workspace ${ws}` : 'Environments';
    const where = route.view === 'environment' ? route.id : route.view === 'claims' ? 'Claims' : 'Test environments';
    document.title = ws ? `${where} · ${ws} · TestMesh` : 'Test environments · TestMesh';
    // Filters from the link.
    ui.search.value = route.query.get('q') || '';
    ui.sort.value = route.query.get('sort') || 'name';
    ui.claimSearch.value = route.query.get('cq') || '';
    renderWorkspaces();
    renderEnvironments();
    renderClaims();
    renderEnvironmentPage();
  }

  // ---- the environments table ---------------------------------------------------

  function createRow(id) {
    const row = {
      tr: h('tr', { 'data-testid': `row-${id}` }),
      name: h('a', { class: 'name', 'data-testid': `open-${id}` }),
      nameSub: h('span', { class: 'sub' }),
      namespace: h('code'),
      provider: h('span', { class: 'sub' }),
      badge: h('span', { class: 'badge', 'data-testid': `badge-${id}` }),
      reason: h('span', { class: 'sub', 'data-testid': `reason-${id}` }),
      ttl: h('td', { class: 'num', 'data-testid': `ttl-${id}` }),
      lastUsed: h('td', { class: 'time', 'data-testid': `last-used-${id}` }),
      expires: h('td', { class: 'time', 'data-testid': `expires-${id}` }),
      extend: h('button', {
        type: 'button',
        class: 'secondary',
        'data-testid': `extend-${id}`,
        'aria-label': `Extend TTL of test environment ${id}`,
      }, 'Extend TTL'),
      destroy: h('button', {
        type: 'button',
        class: 'destroy',
        'data-testid': `destroy-${id}`,
        'aria-label': `Destroy test environment ${id}`,
      }, 'Destroy'),
      actions: h('td', { class: 'actions' }),
      env: null,
    };
    row.extend.addEventListener('click', () => openExtend(id));
    row.destroy.addEventListener('click', () => destroy(id));
    row.tr.append(
      h('th', { scope: 'row' }, h('strong', {}, row.name), row.nameSub),
      h('td', {}, row.namespace, row.provider),
      h('td', { class: 'reason' }, row.badge, row.reason),
      row.ttl,
      row.lastUsed,
      row.expires,
      row.actions,
    );
    return row;
  }

  function reasonText(env) {
    const why = [env.reason, env.message].filter(Boolean).join(': ');
    const missing = !TEARDOWN_STATES.has(env.state) && (env.missing_services || []).length
      ? `missing services: ${env.missing_services.join(', ')}` : '';
    return [why, missing].filter(Boolean).join(' · ');
  }

  function destroyBusy(env) {
    return env.state === 'destroying' || env.destroy_requested === true || space.destroyRequested.has(env.id);
  }

  // The Extend and Destroy buttons of `env` into `container`, as the caller may use them.
  function placeActions(container, extendButton, destroyButton, env) {
    const live = !TEARDOWN_STATES.has(env.state);
    const changeable = may('patch_test_environments');
    const wanted = [];
    if (changeable && live && !destroyBusy(env)) wanted.push(extendButton);
    if (changeable && env.state !== 'destroyed') {
      const busy = destroyBusy(env);
      destroyButton.disabled = busy;
      destroyButton.textContent = busy ? 'Destroying…' : 'Destroy';
      wanted.push(destroyButton);
    }
    // Keep buttons that stay in place, so focus is not lost.
    for (const child of [...container.children]) if (!wanted.includes(child)) child.remove();
    wanted.forEach((button, index) => {
      if (container.children[index] !== button) container.insertBefore(button, container.children[index] || null);
    });
  }

  function updateRow(row, env) {
    row.env = env;
    const state = stateOf(env);
    const name = displayName(env);
    row.name.textContent = name;
    row.name.href = hashOf({ workspace: space.workspace, view: 'environment', id: env.id });
    row.nameSub.textContent = name === env.id
      ? `context ${env.context}`
      : `context ${env.context} · id ${env.id}`;
    row.namespace.textContent = env.namespace;
    row.provider.textContent = env.provider_app_name
      ? `${env.provider} · ${env.provider_app_name}`
      : env.provider;
    row.badge.className = `badge badge-${state}`;
    row.badge.textContent = env.state || 'unknown';
    const detail = reasonText(env);
    row.reason.textContent = detail;
    row.reason.title = detail;
    row.badge.title = detail || env.state;
    row.ttl.textContent = env.ttl_minutes == null ? '—' : `${env.ttl_minutes} min`;
    row.tr.classList.toggle('gone', env.state === 'destroyed');
    placeActions(row.actions, row.extend, row.destroy, env);
    tickRow(row, Date.now());
  }

  // The cells that depend on the clock.
  function tickRow(row, now) {
    const env = row.env;
    const lastUsed = parseTime(env.last_used_at);
    const created = parseTime(env.created_at);
    row.lastUsed.textContent = lastUsed == null ? 'never' : ago(lastUsed, now);
    row.lastUsed.title = lastUsed == null
      ? (created == null ? '' : `created ${localTime(created)}`)
      : localTime(lastUsed);
    const shown = expiry(env, now);
    row.expires.textContent = shown.text;
    row.expires.title = shown.title;
    row.expires.classList.toggle('soon', Boolean(shown.soon));
  }

  function filters() {
    return {
      state: route.query.get('state') || '',
      context: route.query.get('context') || '',
      q: (route.query.get('q') || '').trim().toLowerCase(),
      sort: route.query.get('sort') || 'name',
    };
  }

  function matches(env, filter) {
    if (filter.state && env.state !== filter.state) return false;
    if (filter.context && env.context !== filter.context) return false;
    if (!filter.q) return true;
    return [env.id, env.name, env.context, env.namespace, env.provider_app_name]
      .some((field) => (field || '').toLowerCase().includes(filter.q));
  }

  const byName = (a, b) => displayName(a).localeCompare(displayName(b)) || a.id.localeCompare(b.id);
  const later = (field) => (a, b) => (parseTime(b[field]) || 0) - (parseTime(a[field]) || 0);
  const SORTS = {
    name: byName,
    state: (a, b) => STATES.indexOf(a.state) - STATES.indexOf(b.state) || byName(a, b),
    expires: (a, b) => {
      const at = (env) => (expiry(env, 0).running ? parseTime(env.expires_at) : Infinity);
      return at(a) - at(b) || byName(a, b);
    },
    'last-used': (a, b) => later('last_used_at')(a, b) || byName(a, b),
    created: (a, b) => later('created_at')(a, b) || byName(a, b),
  };

  // The state chips, rebuilt only when a count or the choice changed: a chip replaced
  // under the pointer would swallow the click.
  function renderStateFilter(container, states, counts, total, selected, prefix, onPick) {
    const shown = JSON.stringify([[...counts].sort(), total, selected]);
    if (container.dataset.shown === shown) return;
    container.dataset.shown = shown;
    const chip = (state, label, count) => {
      const pressed = (selected || '') === state;
      const button = h('button', {
        type: 'button',
        class: `chip${state ? '' : ' text'}${pressed ? ' on' : ''}`,
        'aria-pressed': pressed ? 'true' : 'false',
        'data-testid': `${prefix}${state || 'all'}`,
      }, state ? badge(state) : label, ' ', h('span', { class: 'n' }, String(count)));
      button.addEventListener('click', () => onPick(pressed ? '' : state));
      return h('li', {}, button);
    };
    const present = states.filter((state) => counts.get(state) || state === selected);
    container.replaceChildren(chip('', 'All', total), ...present.map((s) => chip(s, s, counts.get(s) || 0)));
  }

  function renderEnvironments() {
    const environments = [...space.environments.values()];
    const filter = filters();
    const counts = new Map();
    for (const env of environments) counts.set(env.state, (counts.get(env.state) || 0) + 1);
    renderStateFilter(ui.stateFilter, STATES, counts, environments.length, filter.state, 'count-',
      (state) => { updateQuery({ state }); renderEnvironments(); });
    ui.tabEnvironmentsCount.textContent = space.loaded ? String(environments.length) : '';

    const contexts = [...new Set(environments.map((env) => env.context))].sort();
    if (filter.context && !contexts.includes(filter.context)) contexts.push(filter.context);
    const options = [h('option', { value: '' }, 'all'), ...contexts.map((c) => h('option', { value: c }, c))];
    if (ui.contextFilter.options.length !== options.length
      || [...ui.contextFilter.options].some((option, i) => option.value !== options[i].value)) {
      ui.contextFilter.replaceChildren(...options);
    }
    ui.contextFilter.value = filter.context;

    const seen = new Set();
    for (const env of environments) {
      seen.add(env.id);
      let row = space.rows.get(env.id);
      if (!row) {
        row = createRow(env.id);
        space.rows.set(env.id, row);
      }
      if (TEARDOWN_STATES.has(env.state)) space.destroyRequested.delete(env.id);
      updateRow(row, env);
    }
    for (const [id, row] of space.rows) {
      if (!seen.has(id)) {
        row.tr.remove();
        space.rows.delete(id);
        space.destroyRequested.delete(id);
      }
    }
    const shown = environments.filter((env) => matches(env, filter)).sort(SORTS[filter.sort] || byName);
    shown.forEach((env, index) => {
      const row = space.rows.get(env.id);
      // Move a row only when out of place: moving a focused button would blur it.
      const current = ui.rows.children[index];
      if (current !== row.tr) ui.rows.insertBefore(row.tr, current || null);
    });
    const visible = new Set(shown.map((env) => env.id));
    for (const [id, row] of space.rows) if (!visible.has(id)) row.tr.remove();

    ui.table.hidden = shown.length === 0;
    ui.empty.hidden = !space.loaded || shown.length !== 0;
    ui.empty.textContent = environments.length
      ? 'No environment matches the filters.'
      : `No test environments in ${space.workspace}.`;
    ui.caption.textContent = `Test environments in workspace ${space.workspace}`;
  }

  // ---- the claims table ---------------------------------------------------------

  function createClaimRow(id) {
    const row = {
      tr: h('tr', { 'data-testid': `claim-row-${id}` }),
      id: h('strong'),
      context: h('span', { class: 'sub' }),
      badge: h('span', { class: 'badge', 'data-testid': `claim-badge-${id}` }),
      reason: h('span', { class: 'sub', 'data-testid': `claim-reason-${id}` }),
      environment: h('td', { 'data-testid': `claim-environment-${id}` }),
      queue: h('td', { class: 'num', 'data-testid': `claim-queue-${id}` }),
      created: h('td', { class: 'time' }),
      lease: h('td', { class: 'time' }),
      release: h('button', {
        type: 'button',
        class: 'destroy',
        'data-testid': `release-${id}`,
        'aria-label': `Release claim ${id}`,
      }, 'Release'),
      actions: h('td', { class: 'actions' }),
    };
    row.release.addEventListener('click', () => release(id));
    row.tr.append(
      h('th', { scope: 'row' }, row.id, row.context),
      h('td', { class: 'reason' }, row.badge, row.reason),
      row.environment,
      row.queue,
      row.created,
      row.lease,
      row.actions,
    );
    return row;
  }

  function environmentLink(id) {
    return h('a', { href: hashOf({ workspace: space.workspace, view: 'environment', id }) }, id);
  }

  function updateClaimRow(row, claim) {
    const state = claimStateOf(claim);
    row.id.textContent = claim.id;
    row.context.textContent = `context ${claim.context}`;
    row.badge.className = `badge badge-claim-${state}`;
    row.badge.textContent = claim.state || 'unknown';
    const detail = [claim.reason, claim.message].filter(Boolean).join(': ');
    row.reason.textContent = detail;
    row.reason.title = detail;
    const environment = claim.bound_environment_id || claim.environment_id;
    row.environment.replaceChildren(environment ? environmentLink(environment) : '—');
    row.queue.textContent = claim.queue_position ? `#${claim.queue_position}` : '';
    row.queue.title = claim.queue_position ? `position ${claim.queue_position} in the queue (1 = next)` : '';
    row.created.replaceChildren(timeCell(claim.created_at));
    row.lease.replaceChildren(timeCell(claim.lease_expires_at));
    const releasing = row.release.disabled;
    if (may('delete_claims')) {
      if (!row.release.isConnected) row.actions.append(row.release);
      row.release.textContent = releasing ? 'Releasing…' : 'Release';
    } else {
      row.release.remove();
    }
  }

  function claimMatches(claim, state, q) {
    if (state && claim.state !== state) return false;
    if (!q) return true;
    return [claim.id, claim.context, claim.bound_environment_id, claim.environment_id, claim.namespace]
      .some((field) => (field || '').toLowerCase().includes(q));
  }

  function renderClaims() {
    const claims = space.claims || [];
    ui.tabClaimsCount.textContent = space.claims ? String(claims.length) : '';
    const state = route.query.get('cstate') || '';
    const q = (route.query.get('cq') || '').trim().toLowerCase();
    const counts = new Map();
    for (const claim of claims) counts.set(claim.state, (counts.get(claim.state) || 0) + 1);
    renderStateFilter(ui.claimStateFilter, CLAIM_STATES, counts, claims.length, state, 'claim-count-',
      (picked) => { updateQuery({ cstate: picked }); renderClaims(); });

    const seen = new Set();
    const shown = claims.filter((claim) => claimMatches(claim, state, q));
    // Waiting claims by their place in the queue, then by name.
    shown.sort((a, b) => CLAIM_STATES.indexOf(a.state) - CLAIM_STATES.indexOf(b.state)
      || (a.queue_position || 0) - (b.queue_position || 0) || a.id.localeCompare(b.id));
    for (const claim of claims) {
      seen.add(claim.id);
      let row = space.claimRows.get(claim.id);
      if (!row) {
        row = createClaimRow(claim.id);
        space.claimRows.set(claim.id, row);
      }
      updateClaimRow(row, claim);
    }
    for (const [id, row] of space.claimRows) {
      if (!seen.has(id)) {
        row.tr.remove();
        space.claimRows.delete(id);
      }
    }
    shown.forEach((claim, index) => {
      const row = space.claimRows.get(claim.id);
      const current = ui.claimRows.children[index];
      if (current !== row.tr) ui.claimRows.insertBefore(row.tr, current || null);
    });
    const visible = new Set(shown.map((claim) => claim.id));
    for (const [id, row] of space.claimRows) if (!visible.has(id)) row.tr.remove();

    ui.claimsTable.hidden = shown.length === 0;
    ui.claimsEmpty.hidden = !(space.claimsProblem || (space.claims && shown.length === 0));
    ui.claimsEmpty.textContent = space.claimsProblem
      || (claims.length ? 'No claim matches the filters.' : `No claims in ${space.workspace}.`);
  }

  // ---- the environment page ------------------------------------------------------

  // Re-renders a section only when what it shows changed, so links and buttons in it
  // keep their focus while the rest of the page moves.
  const sectionInputs = new Map();
  function section(key, input, render) {
    const text = JSON.stringify(input);
    if (sectionInputs.get(key) === text) return;
    sectionInputs.set(key, text);
    render();
  }

  const envButtons = {
    extend: h('button', { type: 'button', class: 'secondary', 'data-testid': 'env-extend' }, 'Extend TTL'),
    destroy: h('button', { type: 'button', class: 'destroy', 'data-testid': 'env-destroy' }, 'Destroy'),
  };
  envButtons.extend.addEventListener('click', () => openExtend(route.id));
  envButtons.destroy.addEventListener('click', () => destroy(route.id));

  function renderEnvironmentPage() {
    if (route.view !== 'environment') {
      sectionInputs.clear();
      return;
    }
    const env = space.environments.get(route.id);
    ui.envMissing.hidden = Boolean(env) || !space.loaded;
    ui.envMissing.textContent = `No test environment ${route.id} in workspace ${space.workspace}.`;
    ui.envBody.hidden = !env;
    if (!env) return;
    const state = stateOf(env);
    ui.envTitle.textContent = displayName(env);
    ui.envSubtitle.textContent = [
      env.id, `context ${env.context}`, `namespace ${env.namespace}`, `TTL ${env.ttl_minutes} min`,
    ].join(' · ');
    ui.envBadge.className = `badge badge-${state}`;
    ui.envBadge.textContent = env.state;
    ui.envReason.textContent = reasonText(env);
    placeActions(ui.envActions, envButtons.extend, envButtons.destroy, env);
    tickEnvironmentPage(Date.now());

    section('routing', [env.routing_policy, env.namespace, env.routing], () => renderRouting(env));
    const app = [env.provider, env.provider_app_name, env.provider_app_namespace, env.provider_app_url,
      env.provider_app_status];
    section('app', app, () => renderApp(env));
    section('services', [env.services, env.missing_services], () => renderServices(env));
    section('conditions', env.conditions, () => renderConditions(env));
    const claims = space.claims && space.claims.filter((c) => c.bound_environment_id === env.id
      || (env.claimed_by || []).includes(c.id));
    const shownClaims = [claims, env.claimed_by, space.claimsProblem, may('delete_claims')];
    section('claims', shownClaims, () => renderEnvironmentClaims(env, claims));
    loadEventsFor(env);
    const events = space.events;
    section('events', [events.id, events.items, events.problem], renderEvents);
  }

  function renderRouting(env) {
    const policy = env.routing_policy || {};
    const overrides = (env.routing && env.routing.overrides) || {};
    const own = `.${env.namespace}.svc`;
    const rows = Object.keys(policy).sort().map((service) => {
      const url = policy[service];
      const from = service in overrides ? 'override' : url.includes(own) ? 'this environment' : 'baseline';
      return h('tr', { 'data-testid': `route-${service}` },
        h('th', { scope: 'row' }, service),
        h('td', {}, link(url, url, { 'data-testid': `route-url-${service}` })),
        h('td', { class: 'muted' }, from));
    });
    ui.envRouting.replaceChildren(...rows);
    ui.envRoutingEmpty.hidden = rows.length !== 0;
  }

  function fact(term, ...value) {
    return [h('dt', {}, term), h('dd', {}, ...value)];
  }

  function renderApp(env) {
    const app = env.provider_app_status || {};
    const namespace = env.provider_app_namespace ? ` in ${env.provider_app_namespace}` : '';
    const kind = env.provider === 'flux' ? 'Kustomization' : 'Application';
    const uiName = env.provider === 'flux' ? 'Flux' : 'Argo CD';
    const since = parseTime(app.health_since);
    const open = env.provider_app_url
      ? [' · ', link(env.provider_app_url, `Open in ${uiName}`, { 'data-testid': 'env-app-link' })]
      : '';
    ui.envApp.replaceChildren(
      ...fact(kind, h('code', {}, env.provider_app_name), namespace, open),
      ...fact('Health', h('span', { 'data-testid': 'env-app-health' }, app.health || 'not reported'),
        since == null ? '' : h('span', { class: 'sub inline' }, ` since ${localTime(since)}`)),
      ...fact('Sync', h('span', { 'data-testid': 'env-app-sync' }, app.sync || '—')),
      ...fact('Revision', h('code', { 'data-testid': 'env-app-revision' }, app.revision || '—')),
      ...(app.message ? fact('Message', app.message) : []),
    );
  }

  function renderServices(env) {
    const missing = new Set(TEARDOWN_STATES.has(env.state) ? [] : env.missing_services || []);
    const rows = (env.services || []).map((service) => {
      const absent = missing.has(service.name)
        ? h('span', { class: 'sub', title: 'declared, no Service in the namespace yet' }, 'not found yet')
        : '';
      const source = [
        service.repo ? h('span', {}, service.repo) : '',
        service.source_ref ? h('span', { class: 'ref' }, ` @ ${service.source_ref}`) : '',
      ];
      return h('tr', { 'data-testid': `service-${service.name}` },
        h('th', { scope: 'row' }, service.name, absent),
        h('td', {}, service.image ? h('code', {}, service.image) : '—'),
        h('td', {}, service.repo || service.source_ref ? source : '—'));
    });
    const none = h('tr', {}, h('td', { colspan: '3', class: 'muted' }, 'No services declared.'));
    ui.envServices.replaceChildren(...(rows.length ? rows : [none]));
  }

  function renderConditions(env) {
    ui.envConditions.replaceChildren(...(env.conditions || []).map((condition) => h('tr',
      { 'data-testid': `condition-${condition.type}` },
      h('th', { scope: 'row' }, condition.type),
      h('td', { class: `status-${(condition.status || '').toLowerCase()}` }, condition.status),
      h('td', {}, condition.reason),
      h('td', { class: 'message' }, condition.message),
      h('td', { class: 'time' }, timeCell(condition.last_transition_time)))));
  }

  function claimLine(claim, role) {
    const parts = [
      h('strong', {}, claim.id), ' ',
      h('span', { class: `badge badge-claim-${claimStateOf(claim)}` }, claim.state),
    ];
    if (role === 'queued') {
      const place = `#${claim.queue_position}`;
      parts.push(' ', h('span', { class: 'queue', 'data-testid': `queue-position-${claim.id}` }, place));
    }
    const since = parseTime(claim.bound_at || claim.created_at);
    if (since != null) {
      const what = claim.bound_at ? 'bound' : 'waiting since';
      parts.push(h('span', { class: 'sub inline' }, ` ${what} ${ago(since, Date.now())}`));
    }
    if (may('delete_claims')) {
      const button = h('button', {
        type: 'button',
        class: 'destroy small',
        'data-testid': `env-release-${claim.id}`,
        'aria-label': `Release claim ${claim.id}`,
      }, 'Release');
      button.addEventListener('click', () => release(claim.id));
      parts.push(' ', button);
    }
    return h('li', { 'data-testid': `env-claim-${claim.id}` }, ...parts);
  }

  function renderEnvironmentClaims(env, claims) {
    if (space.claimsProblem) {
      const holders = (env.claimed_by || []).join(', ') || 'no claim';
      ui.envClaims.replaceChildren(h('p', { class: 'sub' }, `Held by ${holders}. ${space.claimsProblem}`));
      return;
    }
    if (!claims) {
      ui.envClaims.replaceChildren(h('p', { class: 'sub' }, 'Loading claims…'));
      return;
    }
    const holding = new Set(env.claimed_by || []);
    const holders = claims.filter((c) => holding.has(c.id));
    const queued = claims.filter((c) => !holding.has(c.id) && c.state === 'pending' && c.queue_position)
      .sort((a, b) => a.queue_position - b.queue_position);
    const others = claims.filter((c) => !holding.has(c.id) && !queued.includes(c));
    const list = (items, role, testid) => h('ul', { class: 'claims-list', 'data-testid': testid },
      ...items.map((c) => claimLine(c, role)));
    const none = (testid, text) => h('p', { class: 'sub', 'data-testid': testid }, text);
    ui.envClaims.replaceChildren(
      h('h5', {}, 'Holding it'),
      holders.length ? list(holders, 'holder', 'env-holders') : none('env-holders', 'No claim holds it.'),
      h('h5', {}, 'Queue'),
      queued.length ? list(queued, 'queued', 'env-queue') : none('env-queue', 'No claim is waiting.'),
      ...(others.length ? [h('h5', {}, 'Other claims on it'), list(others, 'other', 'env-other-claims')] : []),
    );
  }

  // ---- events and the lifecycle timeline ---------------------------------------

  // What changes when the operator publishes an event about the environment.
  function fingerprint(env) {
    return JSON.stringify([env.state, env.conditions, env.claimed_by, env.last_used_at, env.ttl_minutes]);
  }

  async function loadEventsFor(env) {
    const current = space;
    const events = current.events;
    const print = fingerprint(env);
    if (events.id === env.id && events.fingerprint === print) return;
    if (events.id !== env.id) {
      events.items = null;
      events.problem = '';
    }
    events.id = env.id;
    events.fingerprint = print;
    const mine = {};
    events.loading = mine;
    try {
      const path = `${environmentPath(current.workspace, env.id)}/events`;
      const response = await request('GET', path, { signal: current.watch.signal });
      if (events.loading !== mine) return;
      if (response.ok) {
        events.items = (await response.json()).items || [];
        events.problem = '';
      } else {
        const error = await readError(response);
        if (response.status === 401) {
          rejectToken(error);
          return;
        }
        events.items = null;
        events.problem = response.status === 403
          ? `You may not read the Kubernetes Events of workspace ${current.workspace}: the timeline `
            + `shows the status timestamps only. The API said: “${error.message}”`
          : `Could not read the events: ${error.message}`;
      }
    } catch (error) {
      if (current.watch.signal.aborted || events.loading !== mine) return;
      events.problem = `Could not read the events (${error.message}).`;
    }
    if (current === space) renderEnvironmentPage();
  }

  function renderEvents() {
    const events = space.events;
    const table = ui.envEvents.closest('table');
    const items = events.items || [];
    ui.envEvents.replaceChildren(...items.slice().reverse().map((event) => h('tr',
      { class: event.type === 'Warning' ? 'warning' : '' },
      h('td', { class: 'time' }, timeCell(event.time)),
      h('td', {}, event.type),
      h('td', {}, event.reason),
      h('td', { class: 'message' }, event.note,
        event.count > 1 ? h('span', { class: 'sub inline' }, ` ×${event.count}`) : ''))));
    table.hidden = items.length === 0;
    ui.envEventsNote.textContent = events.problem
      || (events.items === null ? 'Loading events…'
        : items.length ? 'Newest first. Kubernetes keeps Events for about an hour.'
          : 'No events: Kubernetes keeps them for about an hour.');
  }

  // "provisioning → warm: message" as the operator writes a phase change.
  const PHASE_CHANGE = /^(\S+) → (\S+?)(?::\s*([\s\S]*))?$/;

  // The phases the environment went through, oldest first: from its phase-change events
  // when there are any, else from the status timestamps. Each segment may carry `why`:
  // the reason and message it was entered with.
  function phases(env, events) {
    const created = parseTime(env.created_at);
    const changes = (events || [])
      .map((event) => ({ event, match: PHASE_CHANGE.exec(event.note || ''), at: parseTime(event.time) }))
      .filter((change) => change.match && change.at != null);
    if (changes.length) {
      const first = changes[0].match[1];
      const segments = [{ phase: first, start: first === 'cold' && created != null ? created : changes[0].at }];
      for (const { event, match, at } of changes) {
        segments[segments.length - 1].end = at;
        segments.push({ phase: match[2], start: at, why: [event.reason, match[3]].filter(Boolean).join(': ') });
      }
      return { segments: closed(segments, env), source: 'events', partial: first !== 'cold' };
    }
    // Each status timestamp starts a phase; the Ready condition's last change tells when
    // the environment entered the phase it is in, if that came later.
    const ready = (env.conditions || []).find((c) => c.type === 'Ready');
    const starts = [
      ['cold', created],
      ['provisioning', parseTime(env.provisioning_started_at)],
      ['warm', parseTime(env.ready_at)],
      ['running', env.state === 'running' ? parseTime(env.held_since) : null],
      ['destroying', parseTime(env.teardown_started_at)],
      ['destroyed', parseTime(env.destroyed_at)],
    ].filter(([, at]) => at != null).sort((a, b) => a[1] - b[1]);
    const segments = starts.map(([phase, start]) => ({ phase, start }));
    const entered = parseTime(ready && ready.last_transition_time);
    const last = segments[segments.length - 1];
    if (last && last.phase !== env.state && entered != null && entered > last.start) {
      segments.push({ phase: stateOf(env), start: entered });
    }
    segments.forEach((segment, index) => {
      if (index > 0) segments[index - 1].end = segment.start;
    });
    return { segments: closed(segments, env), source: 'status', partial: false };
  }

  // The last segment ends only when the environment is destroyed.
  function closed(segments, env) {
    const last = segments[segments.length - 1];
    if (last) last.end = last.phase === 'destroyed' || env.state === 'destroyed' ? last.start : null;
    return segments;
  }

  function renderTimeline(env, now) {
    const { segments, source, partial } = phases(env, space.events.id === env.id ? space.events.items : null);
    const open = (segment) => (segment.end == null ? now : segment.end);
    const first = segments.length ? segments[0].start : now;
    const last = segments.length ? open(segments[segments.length - 1]) : now;
    const total = Math.max(1, last - first);
    ui.envTimelineBar.replaceChildren(...segments.filter((s) => s.phase !== 'destroyed').map((segment) => {
      const share = ((open(segment) - segment.start) / total) * 100;
      const title = `${segment.phase}: ${duration(open(segment) - segment.start)}`;
      const part = h('span', { class: `segment badge-${segment.phase}`, title });
      // Set through the CSSOM, which the style policy allows (unlike a style attribute).
      part.style.flexGrow = String(Math.max(share, 0.5));
      return part;
    }));
    ui.envTimeline.replaceChildren(...segments.map((segment, index) => {
      const length = open(segment) - segment.start;
      let lasting = segment.end == null ? `${duration(length)} so far` : duration(length);
      if (segment.phase === 'destroyed') lasting = '';
      return h('li', { 'data-testid': `phase-${index}`, 'data-phase': segment.phase },
        h('span', { class: 'when' }, timeCell(new Date(segment.start).toISOString()),
          h('span', { class: 'offset' }, index === 0 ? 'start' : `+${duration(segment.start - first)}`)),
        badge(segment.phase),
        lasting ? h('span', { class: 'lasting', 'data-testid': `phase-duration-${index}` }, lasting) : '',
        segment.why ? h('span', { class: 'why' }, segment.why) : '');
    }));
    const notes = [];
    if (source === 'status') {
      notes.push('From the status timestamps (the phase-change events have aged out or cannot be read).');
    }
    if (partial) notes.push('Earlier phase changes have aged out of the events.');
    const lastUsed = parseTime(env.last_used_at);
    if (lastUsed != null) notes.push(`Last used ${localTime(lastUsed)}.`);
    ui.envTimelineNote.textContent = notes.join(' ');
  }

  function tickEnvironmentPage(now) {
    const env = route.view === 'environment' && space.environments.get(route.id);
    if (!env) return;
    const shown = expiry(env, now);
    ui.envExpires.textContent = shown.text === '—' ? '' : shown.running ? `expires in ${shown.text}` : shown.text;
    ui.envExpires.title = shown.title;
    ui.envExpires.classList.toggle('soon', Boolean(shown.soon));
    renderTimeline(env, now);
  }

  setInterval(() => {
    if (!token) return;
    const now = Date.now();
    for (const row of space.rows.values()) tickRow(row, now);
    tickEnvironmentPage(now);
  }, 1000);

  // ---- server-sent events ------------------------------------------------------

  // Reads `body` as text/event-stream, calling onEvent(type, data) per event and
  // onActivity() per chunk received (keep-alive comments included).
  async function readEvents(body, onEvent, onActivity) {
    const reader = body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = '';
    let type = '';
    let data = [];
    let skipLineFeed = false; // a chunk ended in CR: a following LF belongs to it
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      onActivity();
      buffer += value;
      if (skipLineFeed && buffer.startsWith('\n')) buffer = buffer.slice(1);
      skipLineFeed = buffer.endsWith('\r');
      const lines = buffer.split(/\r\n|\r|\n/);
      buffer = lines.pop();
      for (const line of lines) {
        if (line === '') {
          if (data.length) onEvent(type || 'message', data.join('\n'));
          type = '';
          data = [];
        } else if (!line.startsWith(':')) {
          const colon = line.indexOf(':');
          const field = colon < 0 ? line : line.slice(0, colon);
          let value = colon < 0 ? '' : line.slice(colon + 1);
          if (value.startsWith(' ')) value = value.slice(1);
          if (field === 'event') type = value;
          else if (field === 'data') data.push(value);
        }
      }
    }
  }

  // Keeps a live list from the stream at `path` until `signal` aborts, reconnecting with
  // exponential backoff. `onItems(items)` gets each snapshot; `onRefused(status, error)`
  // an answer retrying cannot change, and watching stops; `onTrouble(text)` a failure
  // it retries after.
  async function liveList(path, signal, { onItems, onRefused, onTrouble, onRetry }) {
    let delay = RETRY_FIRST_MS;
    while (!signal.aborted) {
      let problem = null;
      const attempt = new AbortController();
      const stop = () => attempt.abort();
      signal.addEventListener('abort', stop, { once: true });
      let silence = null;
      let connected = false;
      const heard = () => {
        clearTimeout(silence);
        silence = setTimeout(() => attempt.abort(), SILENCE_LIMIT_MS);
      };
      try {
        heard();
        const response = await request('GET', path, { signal: attempt.signal, accept: 'text/event-stream' });
        if (!response.ok) {
          const error = await readError(response);
          if ([400, 401, 403, 404].includes(response.status)) {
            if (!signal.aborted) onRefused(response.status, error);
            return;
          }
          problem = `The TestMesh API answered ${response.status}: ${error.message}.`;
        } else {
          connected = true;
          await readEvents(response.body, (type, data) => {
            if (type !== 'snapshot' || signal.aborted) return;
            onItems(JSON.parse(data).items || []);
            delay = RETRY_FIRST_MS;
          }, heard);
        }
      } catch (error) {
        if (signal.aborted) return;
        problem = attempt.signal.aborted
          ? `No word from the TestMesh API for ${SILENCE_LIMIT_MS / 1000} s.`
          : `${connected ? 'Lost the connection to' : 'Cannot reach'} the TestMesh API (${error.message}).`;
      } finally {
        clearTimeout(silence);
        signal.removeEventListener('abort', stop);
        attempt.abort();
      }
      if (signal.aborted) return;
      const wait = Math.round(delay * (0.8 + Math.random() * 0.4));
      // A stream that simply ended (e.g. the operator restarted) reconnects quietly.
      if (problem) onTrouble(`${problem} Retrying in ${Math.ceil(wait / 1000)} s…`);
      onRetry();
      await sleep(wait, signal);
      delay = Math.min(delay * 2, RETRY_MAX_MS);
    }
  }

  function watchEnvironments(current) {
    const name = current.workspace;
    setConnection(`Connecting to ${name}…`);
    liveList(`/api/v1/watch/workspaces/${enc(name)}/test-environments`, current.watch.signal, {
      onItems: (items) => {
        current.environments = new Map(items.map((env) => [env.id, env]));
        current.loaded = true;
        clearError();
        setConnection(`Live · updated ${new Date().toLocaleTimeString()}`, true);
        renderEnvironments();
        renderEnvironmentPage();
      },
      onRefused: (status, error) => {
        if (status === 401) {
          rejectToken(error);
          return;
        }
        clearRows();
        setConnection('');
        showError(status === 403
          ? `You may not list test environments in workspace ${name}. The API said: “${error.message}”`
          : `Cannot list test environments in workspace ${name}: ${error.message}`);
      },
      onTrouble: showError,
      onRetry: () => setConnection('Reconnecting…'),
    });
  }

  function watchClaims(current) {
    liveList(`/api/v1/watch/workspaces/${enc(current.workspace)}/claims`, current.watch.signal, {
      onItems: (items) => {
        current.claims = items;
        current.claimsProblem = '';
        renderClaims();
        renderEnvironmentPage();
      },
      onRefused: (status, error) => {
        if (status === 401) {
          rejectToken(error);
          return;
        }
        current.claims = [];
        current.claimsProblem = status === 403
          ? `You may not list claims in workspace ${current.workspace}. The API said: “${error.message}”`
          : `Cannot list claims in workspace ${current.workspace}: ${error.message}`;
        renderClaims();
        renderEnvironmentPage();
      },
      // The environments' stream reports trouble with the API already.
      onTrouble: () => {},
      onRetry: () => {},
    });
  }

  function clearRows() {
    space.rows.clear();
    space.claimRows.clear();
    space.environments = new Map();
    ui.rows.replaceChildren();
    ui.claimRows.replaceChildren();
    ui.table.hidden = true;
    ui.empty.hidden = true;
  }

  function connect() {
    if (space.watch) space.watch.abort();
    clearRows();
    space = emptySpace(route.workspace);
    sectionInputs.clear();
    clearError();
    setConnection('');
    if (!token) return;
    if (!route.workspace) {
      ui.empty.textContent = 'Enter a workspace: the Kubernetes namespace that holds its test environments.';
      ui.empty.hidden = false;
      ui.workspaceInput.focus();
      return;
    }
    if (!WORKSPACE_NAME.test(route.workspace)) {
      showError(`“${route.workspace}” is not a workspace name: a workspace is a Kubernetes namespace `
        + '(lower-case letters, digits and “-”, at most 63).');
      return;
    }
    space.watch = new AbortController();
    watchEnvironments(space);
    watchClaims(space);
    loadPermissions(space);
  }

  // ---- actions ------------------------------------------------------------------

  // Runs `call` (a request) for an action on `what`, showing why it failed; true when
  // it succeeded.
  async function act(what, call) {
    const inWorkspace = space.workspace;
    let failure = null;
    try {
      const response = await call();
      if (response.ok) return true;
      const error = await readError(response);
      if (response.status === 401) {
        rejectToken(error);
        return false;
      }
      failure = response.status === 403
        ? `You may not ${what} in workspace ${inWorkspace}. The API said: “${error.message}”`
        : `Could not ${what}: ${error.message}`;
    } catch (error) {
      failure = `Could not reach the TestMesh API to ${what} (${error.message}). Try again.`;
    }
    if (space.workspace === inWorkspace) showError(failure);
    return false;
  }

  async function destroy(id) {
    const env = space.environments.get(id);
    if (!env || !token) return;
    const question = `Destroy test environment “${displayName(env)}” (${id})?\n\n`
      + `Its namespace ${env.namespace} and everything deployed in it will be deleted. `
      + 'This cannot be undone.';
    if (!window.confirm(question)) return;
    const current = space;
    current.destroyRequested.add(id);
    renderEnvironments();
    renderEnvironmentPage();
    // On success the live list shows `destroying`, then `destroyed`.
    const done = await act(`destroy ${id}`, () => request('DELETE', environmentPath(current.workspace, id)));
    if (!done && current === space) {
      current.destroyRequested.delete(id);
      renderEnvironments();
      renderEnvironmentPage();
    }
  }

  async function release(id) {
    const claim = (space.claims || []).find((c) => c.id === id);
    if (!claim || !token) return;
    const holding = claim.bound_environment_id && claim.state === 'bound'
      ? ` Environment ${claim.bound_environment_id} goes to the next claim in its queue, or stays warm `
        + 'until its TTL runs out.'
      : '';
    const question = `Release claim ${id} (context ${claim.context})?\n\n`
      + `The claim is deleted; a run still using it loses its environment.${holding}`;
    if (!window.confirm(question)) return;
    const row = space.claimRows.get(id);
    if (row) {
      row.release.disabled = true;
      row.release.textContent = 'Releasing…';
    }
    // On success the claim leaves the live list.
    const done = await act(`release claim ${id}`, () => request('DELETE', claimPath(space.workspace, id)));
    if (!done && row) {
      row.release.disabled = false;
      row.release.textContent = 'Release';
    }
  }

  // ---- extend TTL ----------------------------------------------------------------

  let extending = null; // the environment the dialog is for

  // Whole minutes since the idle TTL began: a TTL of this plus N minutes expires N
  // minutes from now.
  function idleMinutes(env, now) {
    const since = parseTime(env.last_used_at) ?? parseTime(env.created_at) ?? now;
    return Math.max(0, Math.ceil((now - since) / 60000));
  }

  function previewExtend() {
    if (!extending) return;
    const minutes = Number(ui.extendMinutes.value);
    const since = parseTime(extending.last_used_at) ?? parseTime(extending.created_at);
    if (!Number.isInteger(minutes) || minutes < 1 || minutes > MAX_TTL_MINUTES) {
      ui.extendPreview.textContent = `A TTL is 1 to ${MAX_TTL_MINUTES} minutes.`;
    } else if (extending.state === 'running') {
      ui.extendPreview.textContent = `In use now: it expires ${duration(minutes * 60000)} after the run releases it.`;
    } else if (since != null) {
      const at = since + minutes * 60000;
      ui.extendPreview.textContent = at <= Date.now()
        ? 'That TTL has run out already: the environment would be torn down at once.'
        : `It would expire ${localTime(at)}, in ${remaining(at, Date.now())}.`;
    } else {
      ui.extendPreview.textContent = '';
    }
  }

  function openExtend(id) {
    const env = space.environments.get(id);
    if (!env || !token) return;
    extending = env;
    const now = Date.now();
    ui.extendWhat.textContent = `${displayName(env)} (${env.id}) · TTL now ${env.ttl_minutes} min`;
    // An hour more than now, at least: from its last use, or from now if that is later.
    const minutes = Math.max(env.ttl_minutes + 60, idleMinutes(env, now) + 60);
    ui.extendMinutes.value = String(Math.min(MAX_TTL_MINUTES, minutes));
    ui.extendError.hidden = true;
    ui.extendSubmit.disabled = false;
    previewExtend();
    ui.extendDialog.showModal();
    ui.extendMinutes.focus();
    ui.extendMinutes.select();
  }

  async function submitExtend() {
    const env = extending;
    const minutes = Number(ui.extendMinutes.value);
    if (!env || !Number.isInteger(minutes) || minutes < 1 || minutes > MAX_TTL_MINUTES) {
      ui.extendError.textContent = `Enter whole minutes, 1 to ${MAX_TTL_MINUTES}.`;
      ui.extendError.hidden = false;
      return;
    }
    ui.extendSubmit.disabled = true;
    const current = space;
    try {
      const body = { ttl_minutes: minutes };
      const response = await request('PATCH', environmentPath(current.workspace, env.id), { body });
      if (response.ok) {
        const changed = await response.json();
        // The stream brings the same; showing it now spares a flicker.
        if (current === space) {
          current.environments.set(changed.id, changed);
          renderEnvironments();
          renderEnvironmentPage();
        }
        ui.extendDialog.close();
        return;
      }
      const error = await readError(response);
      if (response.status === 401) {
        ui.extendDialog.close();
        rejectToken(error);
        return;
      }
      ui.extendError.textContent = response.status === 403
        ? `You may not change environments in workspace ${current.workspace}. The API said: “${error.message}”`
        : `Could not set the TTL: ${error.message}`;
    } catch (error) {
      ui.extendError.textContent = `Could not reach the TestMesh API (${error.message}). Try again.`;
    }
    ui.extendError.hidden = false;
    ui.extendSubmit.disabled = false;
  }

  ui.extendForm.addEventListener('submit', (event) => {
    event.preventDefault();
    submitExtend();
  });
  ui.extendMinutes.addEventListener('input', previewExtend);
  ui.extendCancel.addEventListener('click', () => ui.extendDialog.close());
  ui.extendDialog.addEventListener('close', () => { extending = null; });
  for (const preset of ui.extendForm.querySelectorAll('[data-hours]')) {
    preset.addEventListener('click', () => {
      if (!extending) return;
      const minutes = idleMinutes(extending, Date.now()) + Number(preset.dataset.hours) * 60;
      ui.extendMinutes.value = String(Math.min(MAX_TTL_MINUTES, minutes));
      previewExtend();
    });
  }

  // ---- session and workspace ---------------------------------------------------

  function signIn(value) {
    token = value;
    ui.tokenInput.value = '';
    ui.signInView.hidden = true;
    ui.session.hidden = false;
    ui.view.hidden = false;
    connect();
    showView();
    loadWorkspaces();
  }

  function signOut() {
    token = null;
    if (space.watch) space.watch.abort();
    clearRows();
    space = emptySpace(route.workspace);
    if (ui.extendDialog.open) ui.extendDialog.close();
    clearError();
    setConnection('');
    ui.session.hidden = true;
    ui.view.hidden = true;
    ui.workspacesNav.hidden = true;
    ui.signInView.hidden = false;
    ui.tokenInput.focus();
  }

  function rejectToken(error) {
    signOut();
    showError(`The token was not accepted (${error.message}). `
      + 'Sign in again with a valid Kubernetes bearer token.');
  }

  ui.signInForm.addEventListener('submit', (event) => {
    event.preventDefault();
    const value = ui.tokenInput.value.trim().replace(/^Bearer\s+/i, '');
    if (value) signIn(value);
  });
  ui.signOut.addEventListener('click', signOut);
  ui.workspaceForm.addEventListener('submit', (event) => {
    event.preventDefault();
    const name = parseWorkspace(ui.workspaceInput.value);
    if (name === route.workspace) {
      connect();
      showView();
    } else {
      navigate({ workspace: name, view: 'environments' });
    }
  });
  ui.contextFilter.addEventListener('change', () => {
    updateQuery({ context: ui.contextFilter.value });
    renderEnvironments();
  });
  ui.search.addEventListener('input', () => {
    updateQuery({ q: ui.search.value.trim() });
    renderEnvironments();
  });
  ui.sort.addEventListener('change', () => {
    updateQuery({ sort: ui.sort.value === 'name' ? '' : ui.sort.value });
    renderEnvironments();
  });
  ui.claimSearch.addEventListener('input', () => {
    updateQuery({ cq: ui.claimSearch.value.trim() });
    renderClaims();
  });
  window.addEventListener('hashchange', followLocation);
  window.addEventListener('popstate', () => applyRoute(parseRoute(location.hash)));

  for (const name of (history.state && history.state.workspaces) || []) {
    if (WORKSPACE_NAME.test(name)) knownWorkspaces.add(name);
  }
  route = parseRoute(location.hash);
  ui.workspaceInput.value = route.workspace;
  if (route.workspace && WORKSPACE_NAME.test(route.workspace)) knownWorkspaces.add(route.workspace);
  // An older link (#workspace=team-a) becomes the current form.
  history.replaceState(historyState(), '', hashOf(route) || location.href);
  ui.tokenInput.focus();
})();
