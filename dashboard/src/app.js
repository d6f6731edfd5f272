// footfall dashboard: sign-in, controls, overview cards, the daily chart and one table per query.
// Everything is built with createElement/textContent: no data ever goes through innerHTML.
import { getJson, ApiError } from './api.js';
import { Chart } from './chart.js';
import {
  PRESETS, presetRange, presetOf, parseHash, buildHash, todayUtc, isDate, fillDays, daysInRange,
  columnLabel, columnKind, formatCell, formatNumber, truncate, retryDelay
} from './format.js';

const TOKEN_KEY = 'ff_dashboard_token';
const DEFAULT_LIMIT = 20, MAX_LIMIT = 1000;
const SPECIAL = new Set(['overview', 'timeseries']);
const CARD_ORDER = ['visitors', 'users', 'sessions', 'pageviews', 'views_per_session', 'bounce_rate',
  'median_session_s', 'avg_engaged_s', 'automated_share'];
const TEXT_MAX = 60;

const $ = id => document.getElementById(id);

/** Element builder: props are attributes (strings, set with setAttribute), plus class/text/on*. */
function h(tag, props, ...kids) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(props || {})) {
    if (v == null || v === false) continue;
    if (k == 'class') el.className = v;
    else if (k == 'text') el.textContent = v;
    else if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else el.setAttribute(k, v === true ? '' : String(v));
  }
  for (const c of kids.flat()) if (c != null && c !== false) el.append(c instanceof Node ? c : String(c));
  return el;
}

const state = {
  sites: [], queries: [], site: '', from: '', to: '',
  gen: 0, ctrl: null, timers: new Set(), limits: new Map(), chart: null, signingIn: false
};

// --- token --------------------------------------------------------------------------------------
const getToken = () => { try { return sessionStorage.getItem(TOKEN_KEY) || ''; } catch (e) { return ''; } };
const setToken = t => { try { t ? sessionStorage.setItem(TOKEN_KEY, t) : sessionStorage.removeItem(TOKEN_KEY); } catch (e) { /* storage off */ } };

// --- views --------------------------------------------------------------------------------------
function setStatus(text, kind = 'info', retry) {
  const s = $('status');
  s.replaceChildren();
  s.className = 'status' + (text ? ' ' + kind : '');
  if (!text) return;
  s.append(h('span', { text }));
  if (retry) s.append(' ', h('button', { type: 'button', class: 'link', onclick: retry, text: 'Retry' }));
}

function stopLoading() {
  state.gen++;
  if (state.ctrl) state.ctrl.abort();
  state.ctrl = null;
  for (const t of state.timers) clearTimeout(t);
  state.timers.clear();
}

function showSignin(error) {
  stopLoading();
  if (state.chart) { state.chart.destroy(); state.chart = null; }
  $('dashboard').hidden = true;
  $('controls').hidden = true;
  $('signout').hidden = true;
  $('cards').replaceChildren();
  $('panels').replaceChildren();
  setStatus('');
  $('signin').hidden = false;
  const err = $('signin-error');
  err.textContent = error || '';
  err.hidden = !error;
  const input = $('token');
  input.value = '';
  input.setAttribute('aria-invalid', error ? 'true' : 'false');
  input.focus();
}

function authMessage(e) {
  if (e.status == 403) return 'This token is valid but lacks the “stats” scope.';
  if (e.status == 429) return `Too many failed sign-in attempts. Try again in ${retryDelay(e.retryAfter, 60)} s.`;
  return 'The token was not accepted. Check it and sign in again.';
}

/** An auth failure anywhere: forget the token and ask for one. */
function authFailed(e) {
  setToken('');
  showSignin(authMessage(e));
}

// --- boot: sites + queries ----------------------------------------------------------------------
async function boot() {
  const token = getToken();
  if (!token) return showSignin();
  stopLoading();
  const gen = state.gen;
  $('signin').hidden = true;
  $('signout').hidden = false;
  setStatus('Loading…');
  let sites, queries;
  try {
    [sites, queries] = await Promise.all([
      getJson('/api/stats/sites', token), getJson('/api/stats/queries', token)
    ]);
  } catch (e) {
    if (gen != state.gen) return;
    if (e instanceof ApiError && (e.auth || (e.status == 429 && state.signingIn))) return authFailed(e);
    if (e instanceof ApiError && e.status == 503) {
      const s = retryDelay(e.retryAfter);
      setStatus('ClickHouse is unavailable, retrying…', 'warn');
      state.timers.add(setTimeout(boot, s * 1000));
      return;
    }
    setStatus(`Could not load the dashboard: ${e.message}`, 'error', boot);
    return;
  } finally {
    state.signingIn = false;
  }
  if (gen != state.gen) return;
  state.sites = Array.isArray(sites.sites) ? sites.sites.map(String) : [];
  state.queries = (Array.isArray(queries.queries) ? queries.queries : []).filter(q => q && typeof q.name == 'string');
  setStatus('');
  if (!state.sites.length) { setStatus('No sites are configured on this collector.', 'warn'); return; }
  applyHash(parseHash(location.hash));
  buildControls();
  buildLayout();
  $('controls').hidden = false;
  $('dashboard').hidden = false;
  loadAll();
}

function applyHash(hs) {
  state.site = state.sites.includes(hs.site) ? hs.site : (state.sites.includes(state.site) ? state.site : state.sites[0]);
  if (hs.from) { state.from = hs.from; state.to = hs.to; }
  else if (!state.from) Object.assign(state, presetRange('30d', todayUtc()));
}

function writeHash() {
  const hash = '#' + buildHash(state);
  if (location.hash != hash) history.replaceState(null, '', hash);
}

// --- controls -----------------------------------------------------------------------------------
function buildControls() {
  const sel = $('site');
  sel.replaceChildren(...state.sites.map(s => h('option', { value: s, text: s })));
  sel.value = state.site;
  $('from').value = state.from;
  $('to').value = state.to;
  $('range-error').hidden = true;
  markPreset();
}

function markPreset() {
  const p = presetOf(state, todayUtc());
  for (const b of $('presets').querySelectorAll('button')) b.setAttribute('aria-pressed', String(b.dataset.preset == p));
}

function onRangeInput() {
  const from = $('from').value, to = $('to').value;
  const bad = !isDate(from) || !isDate(to) || from > to;
  $('range-error').hidden = !bad;
  for (const id of ['from', 'to']) $(id).setAttribute('aria-invalid', String(bad));
  if (bad) return;
  if (from == state.from && to == state.to) return;
  state.from = from; state.to = to;
  markPreset();
  loadAll();
}

function wireControls() {
  $('presets').replaceChildren(...PRESETS.map(p => h('button', {
    type: 'button', 'data-preset': p.id, 'aria-pressed': 'false', text: p.label,
    onclick: () => {
      Object.assign(state, presetRange(p.id, todayUtc()));
      $('from').value = state.from; $('to').value = state.to;
      $('range-error').hidden = true;
      markPreset();
      loadAll();
    }
  })));
  $('site').addEventListener('change', e => { state.site = e.target.value; loadAll(); });
  $('from').addEventListener('change', onRangeInput);
  $('to').addEventListener('change', onRangeInput);
  $('controls').addEventListener('submit', e => e.preventDefault());
  $('signout').addEventListener('click', () => { setToken(''); showSignin(); });
  $('signin-form').addEventListener('submit', e => {
    e.preventDefault();
    const t = $('token').value.trim();
    if (!t) { $('signin-error').textContent = 'Enter an access token.'; $('signin-error').hidden = false; return; }
    setToken(t);
    state.signingIn = true;
    boot();
  });
  addEventListener('hashchange', () => {
    if ($('dashboard').hidden) return;
    const before = buildHash(state);
    applyHash(parseHash(location.hash));
    if (buildHash(state) == before) return;
    buildControls();
    loadAll();
  });
}

// --- layout -------------------------------------------------------------------------------------
function buildLayout() {
  if (state.chart) { state.chart.destroy(); state.chart = null; }
  const has = n => state.queries.some(q => q.name == n);
  $('overview').hidden = !has('overview');
  $('timeseries').hidden = !has('timeseries');
  $('cards').replaceChildren();
  $('chart-msg').textContent = '';
  $('panels').replaceChildren(...state.queries.filter(q => !SPECIAL.has(q.name)).map(q => {
    const id = 'panel-title-' + q.name;
    return h('section', { class: 'panel', 'data-testid': 'panel-' + q.name, 'data-query': q.name, 'aria-labelledby': id },
      h('header', null,
        h('h2', { id, text: q.title || columnLabel(q.name) }),
        q.description ? h('p', { class: 'desc', text: q.description }) : null),
      h('div', { class: 'body' }, h('p', { class: 'muted', text: 'Loading…' })),
      h('footer', null));
  }));
}

const panelOf = name => $('panels').querySelector(`[data-query="${CSS.escape(name)}"]`);

// --- loading ------------------------------------------------------------------------------------
function loadAll() {
  stopLoading();
  state.ctrl = new AbortController();
  writeHash();
  for (const q of state.queries) loadQuery(q.name);
}

function queryUrl(name) {
  const p = new URLSearchParams({ site: state.site, from: state.from, to: state.to });
  if (name == 'timeseries') p.set('limit', String(Math.min(MAX_LIMIT, Math.max(DEFAULT_LIMIT, daysInRange(state.from, state.to)))));
  else if (name != 'overview') p.set('limit', String(state.limits.get(name) || DEFAULT_LIMIT));
  return `/api/stats/${encodeURIComponent(name)}?${p}`;
}

async function loadQuery(name) {
  const gen = state.gen, signal = state.ctrl.signal;
  setBusy(name, true);
  let data;
  try {
    data = await getJson(queryUrl(name), getToken(), signal);
  } catch (e) {
    if (gen != state.gen || (e && e.name == 'AbortError')) return;
    if (e instanceof ApiError && e.auth) return authFailed(e);
    if (e instanceof ApiError && e.status == 503) {
      const s = retryDelay(e.retryAfter);
      showError(name, 'ClickHouse is unavailable, retrying…', 'warn');
      const t = setTimeout(() => { state.timers.delete(t); if (gen == state.gen) loadQuery(name); }, s * 1000);
      state.timers.add(t);
      return;
    }
    showError(name, e instanceof ApiError ? `Error ${e.status || ''}: ${e.message}`.replace(' :', ':') : String(e));
    return;
  }
  if (gen != state.gen) return;
  const columns = Array.isArray(data.columns) ? data.columns.map(String) : [];
  const rows = Array.isArray(data.rows) ? data.rows.filter(Array.isArray) : [];
  if (name == 'overview') renderCards(columns, rows);
  else if (name == 'timeseries') renderChart(columns, rows, data.from || state.from, data.to || state.to);
  else renderTable(name, columns, rows, data.elapsed_ms);
}

function setBusy(name, busy) {
  const el = name == 'overview' ? $('overview') : name == 'timeseries' ? $('timeseries') : panelOf(name);
  if (el) el.setAttribute('aria-busy', String(busy));
}

function showError(name, msg, kind = 'error') {
  setBusy(name, false);
  const p = h('p', { class: kind, role: 'alert', 'data-testid': 'error', text: msg });
  if (name == 'overview') $('cards').replaceChildren(p);
  else if (name == 'timeseries') {
    if (state.chart) { state.chart.destroy(); state.chart = null; }
    $('chart-msg').replaceChildren(p);
  } else {
    const panel = panelOf(name);
    if (!panel) return;
    panel.querySelector('.body').replaceChildren(p);
    panel.querySelector('footer').replaceChildren();
  }
}

// --- rendering ----------------------------------------------------------------------------------
function renderCards(columns, rows) {
  setBusy('overview', false);
  const row = rows[0] || [];
  const cols = [...CARD_ORDER.filter(c => columns.includes(c)), ...columns.filter(c => !CARD_ORDER.includes(c))];
  $('cards').replaceChildren(...cols.map(c => {
    const v = row[columns.indexOf(c)];
    return h('div', { class: 'card', 'data-testid': 'card-' + c, 'data-value': v == null ? '' : String(v) },
      h('div', { class: 'label', text: columnLabel(c) }),
      h('div', { class: 'value', text: formatCell(c, v) }));
  }));
}

function renderChart(columns, rows, from, to) {
  setBusy('timeseries', false);
  $('chart-msg').replaceChildren();
  if (!isDate(from) || !isDate(to) || !columns.includes('day')) return;
  const { columns: vcols, data } = fillDays(columns, rows, from, to);
  const el = $('chart');
  if (!state.chart) state.chart = new Chart(el);
  state.chart.render(vcols, data);
  const totals = vcols.map((c, i) => `${columnLabel(c).toLowerCase()} ${formatNumber(data[i + 1].reduce((a, b) => a + b, 0))}`);
  el.setAttribute('aria-label', `Per day from ${from} to ${to} (UTC). Totals: ${totals.join(', ')}.`);
  if (!rows.length) $('chart-msg').replaceChildren(h('p', { class: 'muted', text: 'No data for this range' }));
}

let regionNames = null;
function countryName(code) {
  try {
    regionNames = regionNames || new Intl.DisplayNames(['en'], { type: 'region' });
    return /^[A-Z]{2}$/.test(code) ? regionNames.of(code) : null;
  } catch (e) { return null; }
}

function renderTable(name, columns, rows, elapsed) {
  setBusy(name, false);
  const panel = panelOf(name);
  if (!panel) return;
  const body = panel.querySelector('.body'), foot = panel.querySelector('footer');
  foot.replaceChildren();
  if (!rows.length) { body.replaceChildren(h('p', { class: 'empty', text: 'No data for this range' })); return; }
  const numeric = columns.map((_, i) => rows.every(r => r[i] == null || typeof r[i] == 'number'));
  // the bar behind the first cell shows the first plain count column
  const measure = columns.findIndex((c, i) => numeric[i] && columnKind(c) == 'auto');
  const max = measure < 0 ? 0 : Math.max(0, ...rows.map(r => +r[measure] || 0));
  const table = h('table', null,
    h('thead', null, h('tr', null, columns.map((c, i) => h('th', { scope: 'col', class: numeric[i] ? 'num' : null, text: columnLabel(c) })))),
    h('tbody', null, rows.map(r => h('tr', null, columns.map((c, i) => {
      const v = r[i], text = formatCell(c, v);
      const td = h('td', { class: numeric[i] ? 'num' : null, text: numeric[i] ? text : truncate(text, TEXT_MAX) });
      if (!numeric[i] && (text.length > 24 || text != truncate(text, TEXT_MAX))) td.title = text;
      if (c == 'country' && typeof v == 'string') { const n = countryName(v); if (n) td.title = n; }
      if (i == 0 && max > 0) { td.classList.add('bar'); td.style.setProperty('--bar', `${((+r[measure] || 0) / max * 100).toFixed(1)}%`); }
      return td;
    })))));
  body.replaceChildren(h('div', { class: 'scroll' }, table));
  const limit = state.limits.get(name) || DEFAULT_LIMIT;
  if (rows.length >= limit && limit < MAX_LIMIT) {
    foot.append(h('button', {
      type: 'button', class: 'link', text: 'Show more',
      onclick: () => { state.limits.set(name, Math.min(MAX_LIMIT, limit * 5)); loadQuery(name); }
    }));
  }
  if (typeof elapsed == 'number') foot.append(h('span', { class: 'muted small', text: `${formatNumber(rows.length)} rows · ${formatNumber(elapsed)} ms` }));
}

// --- start --------------------------------------------------------------------------------------
wireControls();
boot();
