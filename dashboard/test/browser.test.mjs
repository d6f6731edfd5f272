// The built dashboard (dist/) in headless Debian Chromium (playwright-core) against the mock API in
// test/mock-api.mjs. The page clock is fixed at 2026-11-30 12:00 UTC, so the default range is
// 2026-11-01..2026-11-30. Every test also asserts: no request left the mock's origin, and no
// console error or page error (except the browser's own "Failed to load resource" line for an
// HTTP status the test provoked).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { startMock, TOKEN, NO_SCOPE_TOKEN, QUERIES, DATA, XSS_PATH, LONG_URL, timeseriesRows } from './mock-api.mjs';

const CHROMIUM = '/usr/bin/chromium';
const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const RESULTS = join(root, 'test-results');
const ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
  '--disable-component-update', '--disable-sync', '--no-first-run', '--disable-quic'];
const NOW = new Date('2026-11-30T12:00:00Z');
const TABLES = QUERIES.filter(q => !['overview', 'timeseries'].includes(q.name));
const OV = Object.fromEntries(QUERIES[0].columns.map((c, i) => [c, DATA.shop.overview[0][i]]));
const skip = !existsSync(CHROMIUM) ? `${CHROMIUM} not found — browser tests skipped` : false;
const DEBUG = !!process.env.FF_DEBUG;

let browser, mock;
before(async () => {
  if (skip) return;
  const { chromium } = await import('playwright-core');
  mkdirSync(RESULTS, { recursive: true });
  mock = await startMock();
  browser = await chromium.launch({ executablePath: CHROMIUM, args: ARGS });
});
after(async () => { await browser?.close(); await mock?.close(); });

/** A fresh context + page; records foreign requests and console/page errors. */
async function open(t, { allowStatus = [], ...ctxOpts } = {}) {
  mock.reset();
  const ctx = await browser.newContext({ viewport: { width: 1280, height: 900 }, ...ctxOpts });
  await ctx.clock.setFixedTime(NOW);
  const foreign = [], errors = [];
  const mockOrigin = new URL(mock.origin).origin;
  await ctx.route(u => new URL(u.href).origin != mockOrigin, r => { foreign.push(r.request().url()); return r.abort(); });
  const page = await ctx.newPage();
  page.on('request', r => {
    const u = r.url();
    if (!u.startsWith('data:') && new URL(u).origin != mockOrigin) foreign.push(u);
    if (DEBUG) console.log('req:', r.method(), u);
  });
  const allowed = new RegExp(`^Failed to load resource: the server responded with a status of (${allowStatus.join('|') || 'none'}) `);
  page.on('console', m => { if (DEBUG) console.log('console:', m.type(), m.text()); if (m.type() == 'error' && !allowed.test(m.text())) errors.push(m.text()); });
  page.on('pageerror', e => errors.push('pageerror: ' + e.message));
  t.after(async () => {
    await ctx.close();
    assert.deepEqual(foreign, [], 'no request to another origin');
    assert.deepEqual(errors, [], 'no console errors');
  });
  return page;
}

const api = (name, pred = () => true) => mock.requests.filter(r => r.path == `/api/stats/${name}` && pred(r));

async function signIn(page, token = TOKEN) {
  await page.goto(mock.origin + '/dashboard');
  await page.getByTestId('signin').waitFor();
  await page.fill('#token', token);
  await page.getByRole('button', { name: 'Sign in' }).click();
}

/** Waits until every table panel has finished (rows, empty state or error). */
async function waitLoaded(page) {
  await page.waitForFunction(n => {
    const panels = [...document.querySelectorAll('[data-testid^="panel-"]')];
    return panels.length == n && panels.every(p => p.getAttribute('aria-busy') == 'false') &&
      document.querySelector('#overview').getAttribute('aria-busy') == 'false' &&
      document.querySelector('#timeseries').getAttribute('aria-busy') == 'false';
  }, TABLES.length);
}

const cardValues = page => page.$$eval('[data-testid^="card-"]', els => Object.fromEntries(els.map(e =>
  [e.dataset.testid.slice(5), { value: e.dataset.value, text: e.querySelector('.value').textContent }])));
const panelRows = (page, name) => page.$$eval(`[data-testid="panel-${name}"] tbody tr`, trs => trs.map(tr => [...tr.cells].map(td => td.textContent)));

test('without a token the sign-in form is shown and nothing is requested', { skip, timeout: 60000 }, async t => {
  const page = await open(t);
  await page.goto(mock.origin + '/dashboard');
  await page.getByTestId('signin').waitFor();
  assert.equal(await page.getByTestId('signin').isVisible(), true);
  assert.equal(await page.locator('#token').getAttribute('type'), 'password');
  assert.equal(await page.locator('#dashboard').isVisible(), false);
  assert.equal(await page.locator('#controls').isVisible(), false);
  assert.equal(await page.evaluate(() => document.activeElement.id), 'token', 'token input focused');
  await page.waitForTimeout(200);
  assert.deepEqual([...new Set(mock.requests.map(r => r.path))].sort(), ['/dashboard', '/dashboard/app.css', '/dashboard/app.js'],
    'only the page and its two assets, no API request without a token');
});

test('a wrong token (401) keeps the form with an error and is not kept', { skip, timeout: 60000 }, async t => {
  const page = await open(t, { allowStatus: [401, 403] });
  await signIn(page, 'wrong-token');
  await page.getByTestId('signin-error').waitFor();
  assert.match(await page.getByTestId('signin-error').textContent(), /not accepted/);
  assert.equal(await page.getByTestId('signin').isVisible(), true);
  assert.equal(await page.locator('#dashboard').isVisible(), false);
  assert.equal(await page.locator('#token').getAttribute('aria-invalid'), 'true');
  const apiReqs = mock.requests.filter(r => r.path.startsWith('/api/'));
  assert.ok(apiReqs.length >= 1);
  for (const r of apiReqs) assert.equal(r.auth, 'Bearer wrong-token');
  assert.equal(await page.evaluate(() => sessionStorage.getItem('ff_dashboard_token')), null, 'rejected token removed');
  assert.ok(!page.url().includes('wrong-token'), 'token not in the URL');

  // a token without the stats scope (403) gets its own message
  await page.fill('#token', NO_SCOPE_TOKEN);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await page.waitForFunction(() => /stats.? scope/.test(document.getElementById('signin-error').textContent));
  assert.equal(await page.locator('#dashboard').isVisible(), false);
});

test('with the right token: cards, chart and every panel show the API data', { skip, timeout: 90000 }, async t => {
  const page = await open(t);
  await signIn(page);
  await waitLoaded(page);

  // the token lives in sessionStorage only, never in the URL or localStorage
  assert.equal(await page.evaluate(() => sessionStorage.getItem('ff_dashboard_token')), TOKEN);
  assert.equal(await page.evaluate(() => localStorage.length), 0);
  assert.ok(!page.url().includes(TOKEN));
  assert.equal(new URL(page.url()).hash, '#site=shop&from=2026-11-01&to=2026-11-30');
  assert.equal(await page.inputValue('#from'), '2026-11-01');
  assert.equal(await page.inputValue('#to'), '2026-11-30');
  assert.equal(await page.locator('#site').inputValue(), 'shop');
  assert.deepEqual(await page.$$eval('#site option', os => os.map(o => o.value)), ['shop', 'demo']);
  assert.equal(await page.locator('[data-preset="30d"]').getAttribute('aria-pressed'), 'true');

  // every API request: the bearer token, and each query once with the default range
  const apiReqs = mock.requests.filter(r => r.path.startsWith('/api/'));
  for (const r of apiReqs) assert.equal(r.auth, `Bearer ${TOKEN}`, r.path);
  for (const q of QUERIES) {
    const rs = api(q.name);
    assert.equal(rs.length, 1, `${q.name} requested once`);
    assert.equal(rs[0].params.site, 'shop'); assert.equal(rs[0].params.from, '2026-11-01'); assert.equal(rs[0].params.to, '2026-11-30');
  }
  assert.equal(api('top_pages')[0].params.limit, '20');
  assert.ok(+api('timeseries')[0].params.limit >= 30, 'timeseries limit covers every day');

  // overview cards: raw numbers in data-value, formatted text
  const cards = await cardValues(page);
  assert.deepEqual(Object.keys(cards), Object.keys(OV));
  for (const [c, v] of Object.entries(OV)) assert.equal(cards[c].value, String(v), c);
  assert.deepEqual(Object.fromEntries(Object.entries(cards).map(([k, v]) => [k, v.text])), {
    visitors: '1,234', users: '56', sessions: '1,500', pageviews: '4,321', views_per_session: '2.88',
    bounce_rate: '41.2%', median_session_s: '1m 05s', avg_engaged_s: '43s', automated_share: '3.1%'
  });

  // chart: uPlot canvas with a size, one point per day (missing days filled)
  const chart = page.getByTestId('chart');
  const box = await chart.locator('canvas').boundingBox();
  assert.ok(box && box.width > 300 && box.height > 100, `canvas size ${JSON.stringify(box)}`);
  assert.equal(await chart.getAttribute('data-days'), '30');
  const totals = timeseriesRows('shop', '2026-11-01', '2026-11-30').reduce((a, r) => a + r[1], 0);
  assert.match(await chart.getAttribute('aria-label'), new RegExp(`visitors ${totals.toLocaleString('en-US')}`));
  assert.ok(await page.evaluate(() => {
    const c = document.querySelector('[data-testid=chart] canvas'), g = c.getContext('2d');
    const d = g.getImageData(0, 0, c.width, c.height).data;
    for (let i = 3; i < d.length; i += 4) if (d[i]) return true;
    return false;
  }), 'the chart drew something');

  // panels: title, description, one <tr> per row, in order
  for (const q of TABLES) {
    const panel = page.getByTestId(`panel-${q.name}`);
    assert.equal(await panel.locator('h2').textContent(), q.title);
    assert.equal(await panel.locator('.desc').textContent(), q.description);
    const want = DATA.shop[q.name] || [];
    assert.equal(await panel.locator('tbody tr').count(), want.length, `${q.name} rows`);
    if (!want.length) assert.equal(await panel.locator('.empty').textContent(), 'No data for this range');
  }
  assert.deepEqual(await panelRows(page, 'top_pages'), [['/', '2,100', '1,100'], ['/pricing', '1,200', '800'], ['/blog/launch', '700', '512'], [XSS_PATH, '321', '300']]);
  assert.deepEqual(await panelRows(page, 'entry_pages'), [['/', '900', '35%'], ['/pricing', '400', '50%']]);
  assert.deepEqual(await panelRows(page, 'navigation'), [['/', '/pricing', '610'], ['/pricing', '/signup', '230']]);
  assert.deepEqual(await panelRows(page, 'automation'), [['any', '134', '3.1%'], ['webdriver', '100', '2.3%']]);
  assert.deepEqual(await panelRows(page, 'providers'), [['3320', 'Deutsche Telekom AG', 'Telekom', '400'], ['12322', 'Free SAS', 'Free', '150']]);
  assert.deepEqual((await panelRows(page, 'referrers'))[1], ['www.google.com', 'search', '1,180']);
  assert.deepEqual(await page.$$eval('[data-testid=panel-top_pages] th', ths => ths.map(th => th.textContent)), ['Page', 'Page views', 'Visitors']);
  // long URL: truncated text, full value in the title attribute
  const link = page.locator('[data-testid=panel-outbound_links] tbody tr').first().locator('td').nth(2);
  assert.equal(await link.getAttribute('title'), LONG_URL);
  const shown = await link.textContent();
  assert.ok(shown.length == 60 && shown.endsWith('…') && LONG_URL.startsWith(shown.slice(0, -1)), shown);
  assert.equal(await page.locator('[data-testid=panel-countries] tbody td').first().getAttribute('title'), 'Germany');
  // data is text, never markup
  assert.equal(await page.locator('main img').count(), 0);
  assert.equal(await page.evaluate(() => window.__xss), undefined);

  await page.screenshot({ path: join(RESULTS, 'dashboard.png'), fullPage: true });
});

test('changing the site or the range refetches with the right parameters; reload keeps them', { skip, timeout: 90000 }, async t => {
  const page = await open(t);
  await signIn(page);
  await waitLoaded(page);

  // site
  mock.requests.length = 0;
  await page.selectOption('#site', 'demo');
  await page.waitForFunction(() => document.querySelector('[data-testid=card-visitors]')?.dataset.value == '7');
  await waitLoaded(page);
  for (const q of QUERIES) {
    const rs = api(q.name);
    assert.equal(rs.length, 1, `${q.name} refetched once`);
    assert.deepEqual([rs[0].params.site, rs[0].params.from, rs[0].params.to, rs[0].auth], ['demo', '2026-11-01', '2026-11-30', `Bearer ${TOKEN}`], q.name);
  }
  assert.equal(new URL(page.url()).hash, '#site=demo&from=2026-11-01&to=2026-11-30');
  assert.deepEqual(await panelRows(page, 'top_pages'), [['/', '12', '6'], ['/about', '8', '4']]);
  assert.equal(await page.locator('[data-testid=panel-referrers] .empty').textContent(), 'No data for this range');
  // more rows than the limit: 20 shown, "Show more" asks for 100
  const exits = page.getByTestId('panel-exit_pages');
  assert.equal(await exits.locator('tbody tr').count(), 20);
  mock.requests.length = 0;
  await exits.getByRole('button', { name: 'Show more' }).click();
  await page.waitForFunction(() => document.querySelectorAll('[data-testid=panel-exit_pages] tbody tr').length == 25);
  assert.deepEqual(mock.requests.map(r => [r.path, r.params.site, r.params.limit]), [['/api/stats/exit_pages', 'demo', '100']]);
  assert.equal(await exits.getByRole('button', { name: 'Show more' }).count(), 0, 'no more rows to show');

  // presets
  for (const [preset, from, days] of [['7d', '2026-11-24', 7], ['90d', '2026-09-02', 90], ['today', '2026-11-30', 1]]) {
    mock.requests.length = 0;
    await page.locator(`[data-preset="${preset}"]`).click();
    await page.waitForFunction(d => document.querySelector('[data-testid=chart]').dataset.days == String(d), days);
    await waitLoaded(page);
    for (const q of QUERIES) {
      const rs = api(q.name);
      assert.equal(rs.length, 1, `${preset}: ${q.name}`);
      assert.deepEqual([rs[0].params.site, rs[0].params.from, rs[0].params.to], ['demo', from, '2026-11-30'], `${preset}: ${q.name}`);
    }
    assert.ok(+api('timeseries')[0].params.limit >= days, `${preset}: timeseries limit ${api('timeseries')[0].params.limit}`);
    assert.equal(await page.locator(`[data-preset="${preset}"]`).getAttribute('aria-pressed'), 'true');
    assert.equal(await page.inputValue('#from'), from);
    assert.equal(new URL(page.url()).hash, `#site=demo&from=${from}&to=2026-11-30`);
  }
  const box = await page.getByTestId('chart').locator('canvas').boundingBox();
  assert.ok(box.width > 300 && box.height > 100, 'a single day still draws a chart');

  // typed dates
  mock.requests.length = 0;
  await page.fill('#from', '2026-10-01');
  await page.fill('#to', '2026-10-15');
  await page.waitForFunction(() => document.querySelector('[data-testid=chart]').dataset.days == '15');
  await waitLoaded(page);
  const last = api('top_pages').at(-1);
  assert.deepEqual([last.params.site, last.params.from, last.params.to], ['demo', '2026-10-01', '2026-10-15']);
  assert.equal(new URL(page.url()).hash, '#site=demo&from=2026-10-01&to=2026-10-15');
  assert.equal(await page.locator('[data-preset][aria-pressed="true"]').count(), 0);

  // an inverted range is refused in place, without requests
  mock.requests.length = 0;
  await page.fill('#from', '2026-10-20');
  assert.equal(await page.locator('#range-error').isVisible(), true);
  await page.waitForTimeout(200);
  assert.equal(mock.requests.length, 0, 'no request for an inverted range');
  await page.fill('#from', '2026-10-01');
  assert.equal(await page.locator('#range-error').isVisible(), false);

  // reload: hash + sessionStorage restore site, range and sign-in
  mock.requests.length = 0;
  await page.reload();
  await waitLoaded(page);
  assert.equal(await page.locator('#site').inputValue(), 'demo');
  assert.equal(await page.inputValue('#from'), '2026-10-01');
  assert.equal(await page.inputValue('#to'), '2026-10-15');
  const r = api('overview')[0];
  assert.deepEqual([r.params.site, r.params.from, r.params.to, r.auth], ['demo', '2026-10-01', '2026-10-15', `Bearer ${TOKEN}`]);

  // editing the hash by hand (or back/forward) is followed
  mock.requests.length = 0;
  await page.evaluate(() => { location.hash = '#site=shop&from=2026-11-10&to=2026-11-12'; });
  await page.waitForFunction(() => document.querySelector('[data-testid=card-visitors]')?.dataset.value == '1234');
  await waitLoaded(page);
  assert.deepEqual(Object.values(api('overview')[0].params).slice(0, 3), ['shop', '2026-11-10', '2026-11-12']);
  assert.equal(await page.locator('#site').inputValue(), 'shop');
});

test('a failing query shows its error in its own panel only; a 503 retries after Retry-After', { skip, timeout: 90000 }, async t => {
  const page = await open(t, { allowStatus: [500, 503] });
  mock.faults.set('referrers', { status: 500, error: 'boom: query failed', times: Infinity });
  mock.faults.set('top_pages', { status: 503, error: 'ClickHouse is unavailable', retryAfter: 1, times: 1 });
  await signIn(page);
  const refErr = page.getByTestId('panel-referrers').getByTestId('error');
  await refErr.waitFor();
  assert.match(await refErr.textContent(), /500.*boom: query failed/);
  assert.equal(await page.getByTestId('panel-referrers').locator('tbody tr').count(), 0);
  // the 503 panel says it is retrying, then shows its rows
  const tpMsg = page.getByTestId('panel-top_pages').getByTestId('error');
  await tpMsg.waitFor();
  assert.equal(await tpMsg.textContent(), 'ClickHouse is unavailable, retrying…');
  await page.getByTestId('panel-top_pages').locator('tbody tr').first().waitFor({ timeout: 10000 });
  const tp = api('top_pages');
  assert.equal(tp.length, 2, 'one retry');
  assert.ok(tp[1].at - tp[0].at >= 900, `retried after ${tp[1].at - tp[0].at} ms (Retry-After: 1)`);
  await waitLoaded(page);
  // everything else rendered
  for (const q of TABLES.filter(q => q.name != 'referrers')) {
    assert.equal(await page.getByTestId(`panel-${q.name}`).locator('tbody tr').count(), (DATA.shop[q.name] || []).length, q.name);
  }
  assert.equal((await cardValues(page)).visitors.value, '1234');
  assert.equal(api('referrers').length, 1, 'a 500 is not retried');
});

test('an API 401 during use returns to sign-in; sign out forgets the token', { skip, timeout: 90000 }, async t => {
  const page = await open(t, { allowStatus: [401] });
  await signIn(page);
  await waitLoaded(page);
  // the token is revoked on the server
  mock.accept('rotated-token');
  await page.locator('[data-preset="7d"]').click();
  await page.getByTestId('signin-error').waitFor();
  assert.match(await page.getByTestId('signin-error').textContent(), /not accepted/);
  assert.equal(await page.locator('#dashboard').isVisible(), false);
  assert.equal(await page.evaluate(() => sessionStorage.getItem('ff_dashboard_token')), null);
  assert.equal(await page.locator('[data-testid^="panel-"]').count(), 0, 'data removed from the page');

  // sign in again with the new token, then sign out
  await page.fill('#token', 'rotated-token');
  await page.getByRole('button', { name: 'Sign in' }).click();
  await waitLoaded(page);
  assert.equal(await page.evaluate(() => sessionStorage.getItem('ff_dashboard_token')), 'rotated-token');
  await page.getByTestId('signout').click();
  await page.getByTestId('signin').waitFor();
  assert.equal(await page.getByTestId('signin-error').isVisible(), false);
  assert.equal(await page.evaluate(() => sessionStorage.getItem('ff_dashboard_token')), null);
  assert.equal(await page.locator('[data-testid^="card-"]').count(), 0);
  mock.requests.length = 0;
  await page.reload();
  await page.getByTestId('signin').waitFor();
  await page.waitForTimeout(200);
  assert.equal(mock.requests.filter(r => r.path.startsWith('/api/')).length, 0, 'still signed out after reload');
});

test('narrow screen in dark mode: no horizontal overflow, dark colours', { skip, timeout: 60000 }, async t => {
  const page = await open(t, { viewport: { width: 390, height: 844 }, colorScheme: 'dark', isMobile: true, hasTouch: true });
  await signIn(page);
  await waitLoaded(page);
  const { scroll, width, bg } = await page.evaluate(() => ({
    scroll: document.documentElement.scrollWidth, width: document.documentElement.clientWidth,
    bg: getComputedStyle(document.body).backgroundColor
  }));
  assert.ok(scroll <= width, `page is ${scroll} px wide in a ${width} px viewport`);
  const [r, g, b] = bg.match(/\d+/g).map(Number);
  assert.ok(r + g + b < 150, `dark background: ${bg}`);
  const box = await page.getByTestId('chart').locator('canvas').boundingBox();
  assert.ok(box.width > 250 && box.width <= 390, `chart fits: ${box.width}`);
  await page.screenshot({ path: join(RESULTS, 'dashboard-mobile-dark.png'), fullPage: true });
});
