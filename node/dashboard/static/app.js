/* borderlink dashboard: the region's message flow, live.
 *
 * Signing in: the link `borderlink dashboard` prints carries a one-time token in its fragment
 * (#login=...), which the browser never sends anywhere. The page takes it out of the address at
 * once, trades it (POST /api/login) for a session key, keeps the key in sessionStorage (this tab
 * and this origin only, port included) and sends it as `Authorization: Bearer` on every call.
 * There is no cookie: a cookie on 127.0.0.1 would also go to every other local server the
 * browser visits, whatever its port (node/dashboard/sessions.py).
 *
 * Live: one server-sent event stream (/api/events, filtered by the controls), read with fetch()
 * because EventSource cannot send the key in a header: `view` carries the whole view (units,
 * links, alarms, disagreements, the latest feed) about once a second, `flow` each new event as
 * it is stored. Changing a filter opens another stream; a stream that breaks is opened again
 * with Last-Event-ID, so no event is missed. The page never reloads.
 *
 * Every string the server sends may come from a peer. It reaches the page only as text
 * (textContent, setAttribute, title), never as markup, and always through shown(), which makes
 * control and bidi characters visible as \u{XXXX} so no value can reorder or hide what is read.
 */
'use strict';

const FEED_MAX = 200;
const STALE_AFTER_MS = 5000; // the server sends a view every second
const DEAD_AFTER_MS = 15000; // a stream this quiet is a dead connection: open another
const RETRY_MS = [1000, 3000]; // before opening a broken stream again: first, then each time
const BUSY_RETRY_MS = 10000; // when the node has all the streams it serves open
const SESSION_KEY = 'borderlink.session';
const NOT_SIGNED_IN =
  "This tab is not signed in to the dashboard (or its session ended: signed out, expired after " +
  '12 hours, or the node restarted).';

// C0, DEL, C1, the line and paragraph separators, and every format character (Unicode category
// Cf: the bidi controls, zero-width space and joiners, BOM, soft hyphen, tag characters), and the
// invisible others (combining grapheme joiner, Hangul fillers, variation selectors), as
// protocol/text.py escapes them.
const UNSAFE =
  /[\u0000-\u001F\u007F-\u009F\u2028\u2029\u034F\u115F\u1160\u3164\uFFA0\uFE00-\uFE0F\u{E0100}-\u{E01EF}]|\p{Cf}/gu;

/** A value from the server as text a person can trust: unsafe characters as \u{XXXX}. */
function shown(s) {
  if (s === null || s === undefined) return '';
  return String(s).replace(
    UNSAFE,
    (c) => '\\u{' + c.codePointAt(0).toString(16).toUpperCase().padStart(4, '0') + '}'
  );
}

// Classes come from fixed tables, never from the data itself.
const LINK_CLASS = { up: 'up', failing: 'failing', silent: 'silent', 'never reported': 'never' };
const KEY_CLASS = { ok: 'ok', expiring: 'warn', expired: 'bad', revoked: 'bad', blocked: 'bad' };
const EVENT_CLASS = {
  queued: 'queued',
  delivered: 'delivered',
  failed: 'failed',
  expired: 'expired',
  rejected: 'rejected',
  received: 'received',
  acknowledged: 'acknowledged',
};
const TLP_CLASS = {
  RED: 'red',
  'AMBER+STRICT': 'amber',
  AMBER: 'amber',
  GREEN: 'green',
  CLEAR: 'clear',
};
const PRIORITY_CLASS = { flash: 'flash', urgent: 'urgent', routine: 'routine' };
const WINDOWS = ['1m', '10m', '1h', '24h'];
const FILTERS = ['country', 'unit', 'type', 'priority', 'window'];

const $ = (id) => document.getElementById(id);

/** An element with a class and text (the text through shown()). */
function el(tag, cls, text) {
  const e = document.createElement(tag);
  if (cls) e.className = cls;
  if (text !== undefined && text !== null) e.textContent = shown(text);
  return e;
}

function td(text, cls, title) {
  const c = el('td', cls || '', text === null || text === undefined || text === '' ? '—' : text);
  if (text === null || text === undefined || text === '') c.classList.add('nil');
  if (title) c.title = shown(title);
  return c;
}

function clear(node) {
  while (node.firstChild) node.removeChild(node.firstChild);
}

// ---- formatting -------------------------------------------------------------------------

const pad = (n) => String(n).padStart(2, '0');

function isNum(v) {
  return typeof v === 'number' && isFinite(v);
}

/** Local wall time of a Unix time in seconds: HH:MM:SS, with the date when not today. */
function fmtTime(t) {
  if (!isNum(t)) return null;
  const d = new Date(t * 1000);
  const hms = pad(d.getHours()) + ':' + pad(d.getMinutes()) + ':' + pad(d.getSeconds());
  const today = new Date();
  if (d.toDateString() === today.toDateString()) return hms;
  return fmtDate(t) + ' ' + hms.slice(0, 5);
}

function fmtDate(t) {
  if (!isNum(t)) return null;
  const d = new Date(t * 1000);
  return d.getFullYear() + '-' + pad(d.getMonth() + 1) + '-' + pad(d.getDate());
}

function fmtAge(s) {
  if (!isNum(s)) return null;
  const n = Math.max(0, Math.floor(s));
  if (n < 120) return n + ' s';
  if (n < 7200) return Math.floor(n / 60) + ' min';
  if (n < 172800) return Math.floor(n / 3600) + ' h';
  return Math.floor(n / 86400) + ' d';
}

function fmtMs(v) {
  if (!isNum(v)) return null;
  if (v < 1000) return Math.round(v) + ' ms';
  if (v < 60000) return (v / 1000).toFixed(1) + ' s';
  return fmtAge(v / 1000);
}

function fmtInt(v) {
  return isNum(v) ? String(v) : null;
}

// ---- state ------------------------------------------------------------------------------

const state = {
  key: null, // the session key (also in sessionStorage, to survive a reload of this tab)
  stream: null, // the AbortController of the open stream
  lastId: null, // the id of the last flow event seen, sent as Last-Event-ID on a resume
  failures: 0, // streams broken in a row
  lastUpdate: 0, // Date.now() of the last message
  live: false,
  signedOut: false,
  retryTimer: null,
  countries: new Set(),
  units: new Set(),
  feed: new Map(), // rid -> {tr, at}
  feedOrder: [], // rids, newest (highest) first
  windowSec: 3600,
};

// ---- filters ----------------------------------------------------------------------------

function filterValues() {
  const out = {};
  for (const name of FILTERS) out[name] = $('f-' + name).value;
  return out;
}

function filterQuery() {
  const q = new URLSearchParams();
  const f = filterValues();
  for (const name of FILTERS) {
    if (f[name] && !(name === 'window' && f[name] === '1h')) q.set(name, f[name]);
  }
  return q.toString();
}

/** Set a select's value, adding the option first when it is not there (e.g. from the URL). */
function selectValue(select, value) {
  if (value && ![...select.options].some((o) => o.value === value)) {
    const o = el('option', '', value);
    o.value = value;
    select.appendChild(o);
  }
  select.value = value;
}

function filtersFromUrl() {
  const q = new URLSearchParams(window.location.search);
  for (const name of FILTERS) {
    const v = q.get(name);
    if (v === null) continue;
    if (name === 'window' && !WINDOWS.includes(v)) continue;
    if (name === 'type' || name === 'priority') {
      if (![...$('f-' + name).options].some((o) => o.value === v)) continue;
    }
    selectValue($('f-' + name), v.slice(0, 64));
  }
}

/** Keep a select's options the set of values seen, keeping its choice. */
function syncOptions(select, values) {
  const chosen = select.value;
  const have = [...select.options].slice(1).map((o) => o.value);
  const want = [...values].sort();
  if (chosen && !want.includes(chosen)) want.push(chosen);
  if (have.length === want.length && have.every((v, i) => v === want[i])) return;
  while (select.options.length > 1) select.remove(1);
  for (const v of want) {
    const o = el('option', '', v);
    o.value = v;
    select.appendChild(o);
  }
  select.value = chosen;
}

function describeFilters() {
  const f = filterValues();
  const parts = [];
  if (f.country) parts.push('country ' + f.country);
  if (f.unit) parts.push('unit ' + f.unit);
  if (f.type) parts.push(f.type);
  if (f.priority) parts.push(f.priority);
  $('filter-note').textContent = shown(parts.length ? 'showing only: ' + parts.join(', ') : '');
  $('filters').classList.toggle('active', parts.length > 0);
}

function filtersChanged() {
  const q = filterQuery();
  window.history.replaceState(null, '', q ? '/?' + q : '/');
  describeFilters();
  clearFeed();
  state.lastId = null; // another filter: start from its view, not from the last event seen
  state.failures = 0;
  if (!state.signedOut) connect();
}

// ---- signing in and out ----------------------------------------------------------------

/** The login token from the address, which is taken out of it (and its history entry) first. */
function takeLoginToken() {
  const hash = window.location.hash;
  if (!hash) return null;
  window.history.replaceState(null, '', window.location.pathname + window.location.search);
  const m = /^#login=([A-Za-z0-9_-]{16,128})$/.exec(hash);
  return m ? m[1] : null;
}

// Before anything else runs: the token is then in no address, history entry or bookmark.
const LOGIN_TOKEN = takeLoginToken();

function storedKey() {
  try {
    return window.sessionStorage.getItem(SESSION_KEY);
  } catch (err) {
    return null; // storage off: the key lives in this page only
  }
}

function keepKey(key) {
  state.key = key;
  try {
    if (key) window.sessionStorage.setItem(SESSION_KEY, key);
    else window.sessionStorage.removeItem(SESSION_KEY);
  } catch (err) {
    // storage off: a reload signs out
  }
}

/** fetch() for the dashboard's own API: never a cookie or a referrer, and the key as a bearer. */
function api(path, options, key) {
  const headers = Object.assign({}, (options && options.headers) || {});
  const k = key === undefined ? state.key : key;
  if (k) headers.Authorization = 'Bearer ' + k;
  return fetch(path, Object.assign({}, options, {
    headers,
    cache: 'no-store',
    credentials: 'omit',
    redirect: 'error',
    referrerPolicy: 'no-referrer',
  }));
}

/** The message of one of the dashboard's error answers ({"error", "message"}). */
async function errorText(response) {
  try {
    const body = await response.json();
    if (body && typeof body.message === 'string') return body.message;
  } catch (err) {
    // not ours: say the status
  }
  return 'the node answered ' + response.status;
}

async function logIn(token) {
  setStatus('connecting', 'signing in…');
  let response;
  try {
    response = await api(
      '/api/login',
      {
        method: 'POST',
        headers: { 'Content-Type': 'application/json' },
        body: JSON.stringify({ token }),
      },
      null
    );
  } catch (err) {
    if (state.key) return connect();
    return signedOut('The node did not answer the sign-in; is it running?');
  }
  if (!response.ok) {
    const why = await errorText(response);
    // A refused link does not end a session this tab already has.
    if (state.key) {
      connect();
      setStatus('error', why);
      return;
    }
    return signedOut(why);
  }
  let body = null;
  try {
    body = await response.json();
  } catch (err) {
    // said below
  }
  if (!body || typeof body.session !== 'string') return signedOut('The node sent no session.');
  const previous = state.key;
  keepKey(body.session);
  if (previous && previous !== body.session) endSession(previous);
  state.signedOut = false;
  document.body.classList.remove('signed-out');
  $('signin').hidden = true;
  connect();
}

function endSession(key) {
  api('/api/logout', { method: 'POST' }, key).catch(() => {});
}

async function logOut() {
  const key = state.key;
  stopStream();
  keepKey(null);
  if (key) {
    try {
      await api('/api/logout', { method: 'POST' }, key);
    } catch (err) {
      // the node is gone, and the session with it
    }
  }
  signedOut('You signed out.');
}

/** Nothing of the session stays on screen; the page says how to get back in. */
function signedOut(why) {
  stopStream();
  keepKey(null);
  state.signedOut = true;
  state.live = false;
  clearFeed();
  for (const id of ['me', 'role', 'summary', 'updated']) clear($(id));
  document.title = 'borderlink: signed out';
  document.body.classList.add('signed-out');
  $('logout').hidden = true;
  $('signin-text').textContent = shown(why);
  $('signin').hidden = false;
  setStatus('signedout', 'signed out');
}

// ---- the stream -------------------------------------------------------------------------

function setStatus(kind, text) {
  const s = $('status');
  s.className = 'status ' + kind;
  $('status-text').textContent = shown(text);
}

function stopStream() {
  if (state.retryTimer) {
    clearTimeout(state.retryTimer);
    state.retryTimer = null;
  }
  if (state.stream) state.stream.abort();
  state.stream = null;
}

function retryLater(ms) {
  state.live = false;
  state.retryTimer = setTimeout(connect, ms);
}

async function connect() {
  stopStream();
  if (!state.key) return signedOut(NOT_SIGNED_IN);
  const ctl = new AbortController();
  state.stream = ctl;
  state.live = false;
  $('logout').hidden = false;
  if (state.failures) setStatus('reconnecting', 'reconnecting…');
  else setStatus('connecting', 'connecting…');
  const headers = { Accept: 'text/event-stream' };
  if (state.lastId !== null) headers['Last-Event-ID'] = state.lastId;
  let response;
  try {
    response = await api('/api/events?' + filterQuery(), { headers, signal: ctl.signal });
  } catch (err) {
    if (state.stream === ctl) broken();
    return;
  }
  if (state.stream !== ctl) return;
  if (response.status === 401) return signedOut(NOT_SIGNED_IN);
  const type = response.headers.get('Content-Type') || '';
  if (!response.ok || !type.startsWith('text/event-stream')) {
    setStatus('error', await errorText(response));
    if (state.stream === ctl) retryLater(response.status === 503 ? BUSY_RETRY_MS : RETRY_MS[1]);
    return;
  }
  state.live = true;
  state.failures = 0;
  state.lastUpdate = Date.now();
  setStatus('live', 'live');
  try {
    await readEvents(response.body, ctl);
  } catch (err) {
    // aborted by us, or the connection broke: the same as the stream ending
  }
  if (state.stream === ctl) broken();
}

/** The stream broke or went quiet: drop it, and open another a little later. */
function broken() {
  if (state.stream) state.stream.abort();
  state.stream = null;
  const wait = RETRY_MS[Math.min(state.failures, RETRY_MS.length - 1)];
  state.failures++;
  setStatus('reconnecting', 'reconnecting…');
  retryLater(wait);
}

/**
 * Server-sent events (the WHATWG format) from a fetch() body: `field: value` lines, an event
 * ended by an empty line. The server ends lines with \n; a \r before it is dropped too.
 */
async function readEvents(body, ctl) {
  const reader = body.getReader();
  const decoder = new TextDecoder();
  let buf = '';
  let ev = { event: '', data: [], id: null };
  for (;;) {
    const { value, done } = await reader.read();
    if (done || state.stream !== ctl) {
      if (!done) reader.cancel().catch(() => {});
      return;
    }
    buf += decoder.decode(value, { stream: true });
    let nl;
    while ((nl = buf.indexOf('\n')) >= 0) {
      let line = buf.slice(0, nl);
      buf = buf.slice(nl + 1);
      if (line.endsWith('\r')) line = line.slice(0, -1);
      if (line === '') {
        if (ev.data.length) dispatch(ctl, ev.event || 'message', ev.data.join('\n'), ev.id);
        ev = { event: '', data: [], id: null };
        continue;
      }
      if (line.startsWith(':')) continue; // a comment
      const colon = line.indexOf(':');
      const field = colon < 0 ? line : line.slice(0, colon);
      let v = colon < 0 ? '' : line.slice(colon + 1);
      if (v.startsWith(' ')) v = v.slice(1);
      if (field === 'event') ev.event = v;
      else if (field === 'data') ev.data.push(v);
      else if (field === 'id') ev.id = v;
    }
  }
}

function dispatch(ctl, name, data, id) {
  if (state.stream !== ctl) return;
  if (id !== null && /^[0-9]+$/.test(id)) state.lastId = id;
  if (name === 'view') handle(() => renderView(JSON.parse(data)));
  else if (name === 'flow') handle(() => addFeed(JSON.parse(data), true));
}

function handle(fn) {
  try {
    fn();
    state.lastUpdate = Date.now();
    $('updated').textContent = 'updated ' + fmtTime(state.lastUpdate / 1000);
    if (state.live) setStatus('live', 'live');
  } catch (err) {
    setStatus('error', 'cannot show an update: ' + (err && err.message ? err.message : err));
  }
}

function tick() {
  if (!state.live || !state.lastUpdate) return;
  const quiet = Date.now() - state.lastUpdate;
  if (quiet > DEAD_AFTER_MS) {
    broken(); // a connection that died without closing: fetch() would wait for ever
  } else if (quiet > STALE_AFTER_MS) {
    setStatus('stale', 'stale: no update for ' + Math.round(quiet / 1000) + ' s');
  }
}

// ---- the view ---------------------------------------------------------------------------

function renderView(v) {
  $('me').textContent = shown(v.me);
  $('role').textContent = v.coordinator ? 'coordinator' : 'unit (own traffic)';
  document.title = shown('borderlink: ' + v.me);
  state.windowSec = v.filters && isNum(v.filters.window) ? v.filters.window : 3600;
  const units = Array.isArray(v.units) ? v.units : [];
  for (const u of units) {
    if (u.country) state.countries.add(u.country);
    if (u.name) state.units.add(u.name);
  }
  syncOptions($('f-country'), state.countries);
  syncOptions($('f-unit'), state.units);
  renderSummary(units);
  renderAlarms(v, units);
  renderUnits(units, v.now);
  renderMatrix(Array.isArray(v.links) ? v.links : []);
  for (const e of Array.isArray(v.feed) ? v.feed : []) addFeed(e, false);
  pruneFeed(v.now);
}

function renderSummary(units) {
  const box = $('summary');
  clear(box);
  const count = (pred) => units.filter(pred).length;
  const items = [
    [units.length + ' units', ''],
    [count((u) => u.link === 'up') + ' up', 'up'],
    [count((u) => u.link === 'failing') + ' failing', 'failing'],
    [count((u) => u.link === 'silent') + ' silent', 'silent'],
    [count((u) => u.link === 'never reported') + ' never reported', 'never'],
  ];
  for (const [text, cls] of items) {
    const n = parseInt(text, 10);
    const s = el('span', 'pill ' + cls + (n === 0 && cls ? ' zero' : ''), text);
    box.appendChild(s);
  }
}

function alarmItem(kind, label, text) {
  const li = el('li', kind);
  li.appendChild(el('span', 'tag', label));
  li.appendChild(el('span', 'text', text));
  return li;
}

function renderAlarms(v, units) {
  const list = $('alarm-list');
  clear(list);
  let n = 0;
  for (const a of Array.isArray(v.alarms) ? v.alarms : []) {
    list.appendChild(alarmItem('alarm', 'ALARM', a));
    n++;
  }
  for (const d of Array.isArray(v.disagreements) ? v.disagreements : []) {
    const at = fmtTime(d.delivered_at) || '?';
    list.appendChild(
      alarmItem(
        'disagree',
        'DISAGREEMENT',
        d.sender + ' delivered ' + String(d.id || '').slice(0, 12) + ' to ' + d.recipient +
          ' at ' + at + ', which never reported receiving it'
      )
    );
    n++;
  }
  for (const u of units) {
    if (u.me || (u.link !== 'failing' && u.link !== 'silent')) continue;
    const since = fmtTime(u.failing_since);
    list.appendChild(
      alarmItem(
        'link',
        u.link.toUpperCase(),
        u.name + (since ? ' since ' + since : '') + ': ' + (u.failing || u.link)
      )
    );
    n++;
  }
  if (n === 0) list.appendChild(el('li', 'none', 'no alarms'));
  $('alarms').className = 'banner ' + (n ? 'raised' : 'quiet');
}

function keyCell(u, now) {
  const status = u.key_status || 'ok';
  const cls = KEY_CLASS[status] || 'bad';
  const c = el('td', 'key key-' + cls);
  if (status !== 'ok') c.appendChild(el('span', 'key-status', status));
  const date = fmtDate(u.key_expires);
  if (!date && status === 'ok') c.appendChild(el('span', 'key-status', 'ok'));
  if (date) {
    let text = (status !== 'ok' ? ' ' : '') + date;
    if (isNum(now) && status !== 'ok') {
      const days = Math.floor((u.key_expires - now) / 86400);
      text += days >= 0 ? ' (' + days + ' d)' : '';
    }
    c.appendChild(el('span', 'key-date', text));
  }
  return c;
}

function policyText(w) {
  if (!w || typeof w !== 'object') return null;
  const parts = [];
  for (const tlp of Object.keys(w)) {
    const fields = Array.isArray(w[tlp]) ? w[tlp] : [];
    if (fields.length) parts.push(tlp + ': ' + fields.join(', '));
  }
  return parts.length ? parts.join('; ') : 'nothing';
}

function renderUnits(units, now) {
  const body = $('units-body');
  clear(body);
  for (const u of units) {
    const linkCls = LINK_CLASS[u.link] || 'failing';
    const tr = el('tr', 'link-' + linkCls);
    if (linkCls === 'failing' || linkCls === 'silent') tr.classList.add('failing');
    if (u.me) tr.classList.add('me');
    tr.setAttribute('data-unit', u.name);

    const name = el('td', 'unit');
    name.appendChild(el('span', 'name', u.name));
    if (u.me) name.appendChild(el('span', 'badge self', 'this node'));
    if (u.witness_alarms > 0) {
      name.appendChild(el('span', 'badge alarm', u.witness_alarms + ' witness alarm(s)'));
    }
    name.title = shown((u.unit_type ? u.unit_type + ', ' : '') + 'node id ' + u.node_id);
    tr.appendChild(name);
    tr.appendChild(td(u.country, 'cc'));
    tr.appendChild(td(u.location, 'loc'));

    const link = el('td', 'link state-' + linkCls, u.link);
    link.setAttribute('data-link', u.link);
    if (u.reported_at) link.title = shown('last report ' + fmtTime(u.reported_at));
    tr.appendChild(link);

    tr.appendChild(keyCell(u, now));
    tr.appendChild(td(fmtInt(u.outbox_depth), 'num' + (u.outbox_depth > 0 ? ' warn' : '')));
    tr.appendChild(td(fmtAge(u.oldest_undelivered), 'num'));
    tr.appendChild(td(fmtMs(u.p50_ms), 'num'));
    tr.appendChild(td(fmtMs(u.p95_ms), 'num'));
    tr.appendChild(td(fmtTime(u.failing_since), 'since'));
    tr.appendChild(td(u.failing, 'why', u.failing));
    const retry = fmtTime(u.next_retry);
    const due = retry && isNum(now) && u.next_retry <= now;
    tr.appendChild(td(retry && due ? retry + ' (due)' : retry, 'retry'));
    tr.appendChild(td(u.out_1m + ' / ' + u.out_1h, 'num'));
    tr.appendChild(td(u.in_1m + ' / ' + u.in_1h, 'num'));
    const policy = policyText(u.withholds);
    tr.appendChild(td(u.me ? null : policy, 'policy', policy));
    body.appendChild(tr);
  }
  $('units-count').textContent = String(units.length);
}

function renderMatrix(links) {
  const table = $('matrix');
  clear(table);
  const sources = [...new Set(links.map((l) => l.source))].sort();
  const targets = [...new Set(links.map((l) => l.target))].sort();
  $('matrix-empty').hidden = links.length > 0;
  if (!links.length) return;
  const cell = new Map(links.map((l) => [l.source + '\u0000' + l.target, l]));
  const max = Math.max(...links.map((l) => l.count || 0), 1);
  const head = el('thead');
  const hr = el('tr');
  hr.appendChild(el('th', 'corner', 'from ↓  to →'));
  for (const t of targets) hr.appendChild(el('th', 'to', t));
  head.appendChild(hr);
  table.appendChild(head);
  const body = el('tbody');
  for (const s of sources) {
    const tr = el('tr');
    tr.appendChild(el('th', 'from', s));
    for (const t of targets) {
      const l = cell.get(s + '\u0000' + t);
      if (!l) {
        tr.appendChild(el('td', s === t ? 'self' : 'zero', '·'));
        continue;
      }
      const level = Math.min(4, Math.ceil((4 * l.count) / max));
      const c = el('td', 'hit heat-' + level);
      c.setAttribute('data-source', l.source);
      c.setAttribute('data-target', l.target);
      c.appendChild(el('span', 'n', fmtInt(l.count)));
      const ms = fmtMs(l.mean_ms);
      if (ms) c.appendChild(el('span', 'ms', ms));
      c.title = shown(l.source + ' → ' + l.target + ': ' + l.count + ' deliveries' +
        (ms ? ', mean ' + ms : ''));
      tr.appendChild(c);
    }
    body.appendChild(tr);
  }
  table.appendChild(body);
}

// ---- the feed ---------------------------------------------------------------------------

function withheld(e, ...fields) {
  return Array.isArray(e.withheld) && fields.some((f) => e.withheld.includes(f));
}

function otherParty(e) {
  if (e.peer) return e.peer;
  if (e.event === 'queued' && Array.isArray(e.recipients) && e.recipients.length) {
    return e.recipients.join(', ');
  }
  if (withheld(e, 'recipients', 'peer')) return 'withheld';
  return null;
}

function orWithheld(e, value, field) {
  if (value !== null && value !== undefined && value !== '') return value;
  return withheld(e, field) ? 'withheld' : null;
}

function feedRow(e) {
  const tr = el('tr', 'ev-' + (EVENT_CLASS[e.event] || 'other'));
  tr.setAttribute('data-id', e.id || '');
  tr.setAttribute('data-event', e.event || '');
  tr.appendChild(td(fmtTime(e.at), 'time'));
  tr.appendChild(td(e.unit, 'unit'));
  tr.appendChild(td(e.event, 'event'));

  const type = orWithheld(e, e.type, 'type');
  tr.appendChild(td(type, type === 'withheld' ? 'type withheld' : 'type'));

  const prio = orWithheld(e, e.priority, 'priority');
  const pc = el('td', 'prio');
  if (prio === 'withheld') {
    pc.classList.add('withheld');
    pc.textContent = 'withheld';
  } else if (prio) {
    const cls = PRIORITY_CLASS[prio] || 'routine';
    pc.appendChild(el('span', 'prio-' + cls, cls === 'routine' ? prio : String(prio).toUpperCase()));
  } else {
    pc.textContent = '—';
    pc.classList.add('nil');
  }
  tr.appendChild(pc);

  const tc = el('td', 'tlp-cell');
  if (e.tlp) {
    tc.appendChild(el('span', 'tlp tlp-' + (TLP_CLASS[e.tlp] || 'unknown'), 'TLP:' + e.tlp));
  } else {
    tc.appendChild(el('span', 'tlp tlp-unknown', 'TLP:?'));
  }
  tr.appendChild(tc);

  const party = otherParty(e);
  tr.appendChild(td(party, party === 'withheld' ? 'party withheld' : 'party', party));
  const lat = isNum(e.latency_ms) ? fmtMs(e.latency_ms) : withheld(e, 'latency') ? 'withheld' : null;
  tr.appendChild(td(lat, 'num' + (lat === 'withheld' ? ' withheld' : '')));

  let why = e.reason || e.action || null;
  if (!why && withheld(e, 'reason', 'action') && ['failed', 'rejected', 'acknowledged'].includes(e.event)) {
    why = 'withheld';
  }
  tr.appendChild(td(why, why === 'withheld' ? 'why withheld' : 'why', why));

  const idc = el('td', 'msgid');
  if (e.id) {
    idc.textContent = shown(String(e.id).slice(0, 12));
    idc.title = shown(e.id);
  } else {
    idc.textContent = '(withheld)';
    idc.classList.add('withheld');
  }
  tr.appendChild(idc);
  return tr;
}

function addFeed(e, fresh) {
  if (!e || !isNum(e.rid) || state.feed.has(e.rid)) return;
  const order = state.feedOrder;
  let i = 0;
  while (i < order.length && order[i] > e.rid) i++;
  if (i >= FEED_MAX) return; // older than all we keep
  const tr = feedRow(e);
  if (fresh) tr.classList.add('fresh');
  const before = i < order.length ? state.feed.get(order[i]).tr : null;
  $('feed-body').insertBefore(tr, before);
  order.splice(i, 0, e.rid);
  state.feed.set(e.rid, { tr, at: e.at });
  while (order.length > FEED_MAX) dropFeed(order.length - 1);
  feedChanged();
}

function dropFeed(index) {
  const rid = state.feedOrder[index];
  state.feedOrder.splice(index, 1);
  const row = state.feed.get(rid);
  if (row) row.tr.remove();
  state.feed.delete(rid);
}

/** Forget rows that fell out of the window. */
function pruneFeed(now) {
  if (!isNum(now)) return;
  const from = now - state.windowSec;
  for (let i = state.feedOrder.length - 1; i >= 0; i--) {
    const row = state.feed.get(state.feedOrder[i]);
    if (row && isNum(row.at) && row.at < from) dropFeed(i);
  }
  feedChanged();
}

function clearFeed() {
  state.feed.clear();
  state.feedOrder = [];
  clear($('feed-body'));
  feedChanged();
}

function feedChanged() {
  const n = state.feedOrder.length;
  $('feed-empty').hidden = n > 0;
  $('feed-count').textContent = n ? n + (n >= FEED_MAX ? ' (newest ' + FEED_MAX + ')' : '') : '';
}

// ---- start ------------------------------------------------------------------------------

function start() {
  filtersFromUrl();
  describeFilters();
  for (const name of FILTERS) $('f-' + name).addEventListener('change', filtersChanged);
  $('filters').addEventListener('submit', (ev) => ev.preventDefault());
  $('f-clear').addEventListener('click', () => {
    for (const name of FILTERS) $('f-' + name).value = name === 'window' ? '1h' : '';
    filtersChanged();
  });
  $('logout').addEventListener('click', logOut);
  // A new link pasted into this tab changes only the fragment: the page does not reload.
  window.addEventListener('hashchange', () => {
    const token = takeLoginToken();
    if (token) logIn(token);
  });
  feedChanged();
  setInterval(tick, 1000);
  state.key = storedKey();
  if (LOGIN_TOKEN) logIn(LOGIN_TOKEN);
  else connect(); // with the key this tab kept, or straight to "not signed in"
}

document.addEventListener('DOMContentLoaded', start);
