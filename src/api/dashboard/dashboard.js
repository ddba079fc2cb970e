// TestMesh dashboard: a workspace's test environments, live, with Destroy.
//
// The bearer token lives only in this closure: never in storage, cookies or the URL, so
// closing or reloading the tab forgets it. Browsers' EventSource cannot send an
// Authorization header, so the live list is read with fetch() and the server-sent
// events are parsed from the response body here.
'use strict';

(() => {
  const KNOWN_STATES = new Set([
    'cold', 'provisioning', 'warm', 'running', 'cooling', 'degraded', 'failed', 'destroying',
    'destroyed',
  ]);
  // A workspace is a Kubernetes namespace: a DNS-1123 label.
  const WORKSPACE_NAME = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;
  // The API sends a keep-alive every 15 s: three missed ones mean a dead connection.
  const SILENCE_LIMIT_MS = 45000;
  const RETRY_FIRST_MS = 1000;
  const RETRY_MAX_MS = 30000;

  const $ = (id) => document.getElementById(id);
  const ui = {
    banner: $('error-banner'),
    signInView: $('sign-in-view'),
    signInForm: $('sign-in-form'),
    tokenInput: $('token-input'),
    session: $('session'),
    workspaceForm: $('workspace-form'),
    workspaceInput: $('workspace-input'),
    signOut: $('sign-out'),
    view: $('environments-view'),
    connection: $('connection'),
    empty: $('empty'),
    table: $('environments'),
    caption: $('environments-caption'),
    rows: $('rows'),
  };

  let token = null;
  let workspace = '';
  let watch = null; // the AbortController of the running watch
  const rows = new Map(); // environment id -> row (see createRow)
  const destroyRequested = new Set();

  // ---- small helpers ------------------------------------------------------------

  function h(tag, attributes, ...children) {
    const element = document.createElement(tag);
    for (const [name, value] of Object.entries(attributes || {})) {
      if (name === 'class') element.className = value;
      else element.setAttribute(name, value);
    }
    element.append(...children);
    return element;
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

  function workspacePath(name) {
    return `/api/v1/workspaces/${encodeURIComponent(name)}/test-environments`;
  }

  function watchPath(name) {
    return `/api/v1/watch/workspaces/${encodeURIComponent(name)}/test-environments`;
  }

  function request(method, path, signal, accept) {
    return fetch(path, {
      method,
      headers: { Authorization: `Bearer ${token}`, Accept: accept || 'application/json' },
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

  function remaining(until, now) {
    const ms = until - now;
    if (ms <= 0) return 'expired';
    const s = Math.ceil(ms / 1000);
    const days = Math.floor(s / 86400);
    const hours = Math.floor((s % 86400) / 3600);
    const m = Math.floor((s % 3600) / 60);
    const sec = s % 60;
    if (days) return `${days} d ${hours} h`;
    if (hours) return `${hours} h ${String(m).padStart(2, '0')} min`;
    if (m) return `${m} min ${String(sec).padStart(2, '0')} s`;
    return `${sec} s`;
  }

  function localTime(ms) {
    return new Date(ms).toLocaleString();
  }

  // ---- the table ----------------------------------------------------------------

  function createRow(id) {
    const row = {
      tr: h('tr', { 'data-testid': `row-${id}` }),
      name: h('span', { class: 'name' }),
      nameSub: h('span', { class: 'sub' }),
      namespace: h('code'),
      provider: h('span', { class: 'sub' }),
      badge: h('span', { class: 'badge', 'data-testid': `badge-${id}` }),
      reason: h('span', { class: 'sub', 'data-testid': `reason-${id}` }),
      ttl: h('td', { class: 'num' }),
      lastUsed: h('td', { class: 'time', 'data-testid': `last-used-${id}` }),
      expires: h('td', { class: 'time', 'data-testid': `expires-${id}` }),
      destroy: h('button', {
        type: 'button',
        class: 'destroy',
        'data-testid': `destroy-${id}`,
        'aria-label': `Destroy test environment ${id}`,
      }, 'Destroy'),
      actions: h('td', { class: 'actions' }),
      env: null,
    };
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

  function updateRow(row, env) {
    row.env = env;
    const state = KNOWN_STATES.has(env.state) ? env.state : 'unknown';
    const name = env.name || env.id;
    row.name.textContent = name;
    row.nameSub.textContent = name === env.id
      ? `context ${env.context}`
      : `context ${env.context} · id ${env.id}`;
    row.namespace.textContent = env.namespace;
    row.provider.textContent = env.provider_app_name
      ? `${env.provider} · ${env.provider_app_name}`
      : env.provider;

    row.badge.className = `badge badge-${state}`;
    row.badge.textContent = env.state || 'unknown';
    const why = [env.reason, env.message].filter(Boolean).join(': ');
    const live = env.state !== 'destroying' && env.state !== 'destroyed';
    const missing = live && (env.missing_services || []).length
      ? `missing services: ${env.missing_services.join(', ')}` : '';
    const detail = [why, missing].filter(Boolean).join(' · ');
    row.reason.textContent = detail;
    row.reason.title = detail;
    row.badge.title = detail || env.state;

    row.ttl.textContent = env.ttl_minutes == null ? '—' : `${env.ttl_minutes} min`;
    row.tr.classList.toggle('gone', env.state === 'destroyed');

    if (env.state === 'destroyed') {
      row.destroy.remove();
    } else {
      if (!row.destroy.isConnected) row.actions.append(row.destroy);
      const busy = env.state === 'destroying' || env.destroy_requested === true
        || destroyRequested.has(env.id);
      row.destroy.disabled = busy;
      row.destroy.textContent = busy ? 'Destroying…' : 'Destroy';
    }
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

    const expires = parseTime(env.expires_at);
    let text;
    let title = '';
    if (env.state === 'destroyed' || env.state === 'destroying') {
      text = '—';
    } else if (env.state === 'running') {
      // A held environment never expires; its TTL restarts when the run releases it.
      text = 'in use';
      const holders = [].concat(env.claimed_by || []);
      title = holders.length ? `held by claim ${holders.join(', ')}` : '';
    } else if (expires == null) {
      text = '—';
    } else {
      text = remaining(expires, now);
      title = `expires ${localTime(expires)}`;
    }
    row.expires.textContent = text;
    row.expires.title = title;
  }

  function render(items) {
    const seen = new Set();
    items.forEach((env, index) => {
      seen.add(env.id);
      let row = rows.get(env.id);
      if (!row) {
        row = createRow(env.id);
        rows.set(env.id, row);
      }
      if (env.state === 'destroying' || env.state === 'destroyed') destroyRequested.delete(env.id);
      updateRow(row, env);
      // Move a row only when out of place: moving a focused button would blur it.
      const current = ui.rows.children[index];
      if (current !== row.tr) ui.rows.insertBefore(row.tr, current || null);
    });
    for (const [id, row] of rows) {
      if (!seen.has(id)) {
        row.tr.remove();
        rows.delete(id);
        destroyRequested.delete(id);
      }
    }
    ui.table.hidden = items.length === 0;
    ui.empty.hidden = items.length !== 0;
    ui.empty.textContent = `No test environments in ${workspace}.`;
    ui.caption.textContent = `Test environments in workspace ${workspace}`;
  }

  function clearTable() {
    rows.clear();
    destroyRequested.clear();
    ui.rows.replaceChildren();
    ui.table.hidden = true;
    ui.empty.hidden = true;
  }

  setInterval(() => {
    if (!token) return;
    const now = Date.now();
    for (const row of rows.values()) tickRow(row, now);
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

  // Keeps a live list of `name`'s environments until `signal` aborts, reconnecting
  // with exponential backoff; stops for answers that retrying cannot change.
  async function watchWorkspace(name, signal) {
    let delay = RETRY_FIRST_MS;
    setConnection(`Connecting to ${name}…`);
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
        const response = await request('GET', watchPath(name), attempt.signal, 'text/event-stream');
        if (!response.ok) {
          const error = await readError(response);
          if (stopsWatching(response.status, error, name)) return;
          problem = `The TestMesh API answered ${response.status}: ${error.message}.`;
        } else {
          connected = true;
          await readEvents(response.body, (type, data) => {
            if (type !== 'snapshot' || signal.aborted) return;
            render(JSON.parse(data).items || []);
            clearError();
            delay = RETRY_FIRST_MS;
            setConnection(`Live · updated ${new Date().toLocaleTimeString()}`, true);
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
      if (problem) showError(`${problem} Retrying in ${Math.ceil(wait / 1000)} s…`);
      setConnection('Reconnecting…');
      await sleep(wait, signal);
      delay = Math.min(delay * 2, RETRY_MAX_MS);
    }
  }

  // Shows an answer that retrying cannot change; true when watching should stop.
  function stopsWatching(status, error, name) {
    if (status === 401) {
      rejectToken(error);
      return true;
    }
    if (status === 403) {
      clearTable();
      setConnection('');
      showError(`You may not list test environments in workspace ${name}. `
        + `The API said: “${error.message}”`);
      return true;
    }
    if (status === 400 || status === 404) {
      clearTable();
      setConnection('');
      showError(`Cannot list test environments in workspace ${name}: ${error.message}`);
      return true;
    }
    return false;
  }

  function connect() {
    if (watch) watch.abort();
    watch = null;
    clearTable();
    clearError();
    setConnection('');
    document.title = workspace ? `${workspace} · Test environments` : 'Test environments · TestMesh';
    if (!token) return;
    if (!workspace) {
      ui.empty.textContent = 'Enter a workspace: the Kubernetes namespace that holds its test environments.';
      ui.empty.hidden = false;
      ui.workspaceInput.focus();
      return;
    }
    if (!WORKSPACE_NAME.test(workspace)) {
      showError(`“${workspace}” is not a workspace name: a workspace is a Kubernetes namespace `
        + '(lower-case letters, digits and “-”, at most 63).');
      return;
    }
    watch = new AbortController();
    watchWorkspace(workspace, watch.signal);
  }

  // ---- destroy ------------------------------------------------------------------

  async function destroy(id) {
    const row = rows.get(id);
    if (!row || !token) return;
    const env = row.env;
    const name = env.name || id;
    const question = `Destroy test environment “${name}” (${id})?\n\n`
      + `Its namespace ${env.namespace} and everything deployed in it will be deleted. `
      + 'This cannot be undone.';
    if (!window.confirm(question)) return;
    const inWorkspace = workspace;
    destroyRequested.add(id);
    updateRow(row, env);
    let failure = null;
    try {
      const response = await request('DELETE', `${workspacePath(inWorkspace)}/${encodeURIComponent(id)}`);
      if (!response.ok) {
        const error = await readError(response);
        if (response.status === 401) {
          rejectToken(error);
          return;
        }
        failure = response.status === 403
          ? `You may not destroy test environments in workspace ${inWorkspace}. The API said: “${error.message}”`
          : `Could not destroy ${id}: ${error.message}`;
      }
      // On success the live list shows `destroying`, then `destroyed`.
    } catch (error) {
      failure = `Could not reach the TestMesh API to destroy ${id} (${error.message}). Try again.`;
    }
    if (failure && workspace === inWorkspace) {
      destroyRequested.delete(id);
      const current = rows.get(id);
      if (current) updateRow(current, current.env);
      showError(failure);
    }
  }

  // ---- session and workspace ---------------------------------------------------

  // "team-a", "#workspace=team-a", "workspace=team-a" or a whole dashboard link.
  function parseWorkspace(text) {
    let value = (text || '').trim();
    const cut = Math.max(value.lastIndexOf('#'), value.lastIndexOf('?'));
    if (cut >= 0) value = value.slice(cut + 1);
    if (value.includes('=')) value = new URLSearchParams(value).get('workspace') || '';
    return value.trim();
  }

  function chooseWorkspace(name) {
    ui.workspaceInput.value = name;
    if (name !== workspace) {
      workspace = name;
      const hash = name ? `#workspace=${encodeURIComponent(name)}` : '';
      history.pushState(null, '', hash || `${location.pathname}${location.search}`);
    }
    connect();
  }

  function followLocation() {
    const name = parseWorkspace(location.hash);
    if (name === workspace) return;
    workspace = name;
    ui.workspaceInput.value = name;
    connect();
  }

  function signIn(value) {
    token = value;
    ui.tokenInput.value = '';
    ui.signInView.hidden = true;
    ui.session.hidden = false;
    ui.view.hidden = false;
    connect();
  }

  function signOut() {
    token = null;
    if (watch) watch.abort();
    watch = null;
    clearTable();
    clearError();
    setConnection('');
    ui.session.hidden = true;
    ui.view.hidden = true;
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
    chooseWorkspace(parseWorkspace(ui.workspaceInput.value));
  });
  window.addEventListener('hashchange', followLocation);
  window.addEventListener('popstate', followLocation);

  workspace = parseWorkspace(location.hash);
  ui.workspaceInput.value = workspace;
  ui.tokenInput.focus();
})();
