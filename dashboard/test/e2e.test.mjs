// End-to-end test: the dashboard served by the REAL footfall collector, over real ClickHouse, in
// headless Chromium. Run with `npm run test:e2e` (not part of `npm test`).
//
// It seeds known traffic (test/seed.mjs) through POST /api/event, waits until the spool is drained
// and /api/stats/overview sees it, then signs in to /dashboard with the admin token and checks that
// the cards and panels show exactly the seeded answers. Skips (does not fail) when the binary is
// missing or does not serve /dashboard yet.
//
// env:
//   FOOTFALL_BIN                   collector binary (default ../target/release/footfall)
//   FOOTFALL_TEST_CLICKHOUSE_URL   use this ClickHouse (database dash_e2e_<random>, dropped at the
//                                  end) instead of the managed one the collector starts itself
//   FF_DEBUG=1                     print collector stderr, page console and all requests
import { test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { SITE, EXPECTED, seedBeacons, seedHeaders } from './seed.mjs';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const BIN = resolve(root, process.env.FOOTFALL_BIN || '../target/release/footfall');
const CHROMIUM = '/usr/bin/chromium';
const RESULTS = join(root, 'test-results');
const ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
  '--disable-component-update', '--disable-sync', '--no-first-run', '--disable-quic'];
const DEBUG = !!process.env.FF_DEBUG;
const DAY = 86400000;

const skip = !existsSync(BIN) ? `collector binary ${BIN} not found (set FOOTFALL_BIN) — dashboard e2e test skipped`
  : !existsSync(CHROMIUM) ? `${CHROMIUM} not found — dashboard e2e test skipped` : false;

const sleep = ms => new Promise(r => setTimeout(r, ms));
const freePort = () => new Promise((res, rej) => {
  const s = net.createServer().on('error', rej);
  s.listen(0, '127.0.0.1', () => { const { port } = s.address(); s.close(() => res(port)); });
});
const utcDate = ms => new Date(ms).toISOString().slice(0, 10);

/** Starts the collector; `ready` resolves with its base URL once it printed its listening line. */
function startCollector(env) {
  const child = spawn(BIN, [], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '', err = '';
  child.stderr.on('data', d => { err += d; if (DEBUG) process.stderr.write('collector: ' + d); });
  const exited = new Promise(r => child.on('exit', (code, signal) => r({ code, signal })));
  const ready = new Promise((res, rej) => {
    const t = setTimeout(() => rej(new Error(`collector did not print its listening line within 90 s\nstdout: ${out}\nstderr: ${err.slice(-4000)}`)), 90000);
    child.stdout.on('data', d => {
      out += d;
      const m = /footfall is listening on (http:\/\/\S+?)\/? \((ClickHouse at http:\/\/[^\s)]+|no ClickHouse[^)]*)\)/.exec(out);
      if (m) { clearTimeout(t); res({ url: m[1], clickhouse: !m[2].startsWith('no ') }); }
    });
    exited.then(x => { clearTimeout(t); rej(new Error(`collector exited early (${JSON.stringify(x)})\nstdout: ${out}\nstderr: ${err.slice(-4000)}`)); });
  });
  return { child, ready, exited, log: () => err };
}

/** POST with full control of the headers (Origin, User-Agent, X-Forwarded-For). */
function post(url, headers, body) {
  return new Promise((res, rej) => {
    const req = http.request(url, { method: 'POST', headers: { ...headers, 'Content-Length': Buffer.byteLength(body) } }, r => {
      let text = '';
      r.on('data', d => text += d).on('end', () => res({ status: r.statusCode, text }));
    });
    req.on('error', rej);
    req.end(body);
  });
}

test('dashboard e2e: seeded traffic -> collector -> ClickHouse -> /dashboard in Chromium', { skip, timeout: 300000 }, async t => {
  const dataDir = mkdtempSync(join(tmpdir(), 'footfall-dash-e2e-'));
  const port = await freePort();
  const token = 'e2e-' + randomBytes(24).toString('hex');
  const extCH = process.env.FOOTFALL_TEST_CLICKHOUSE_URL;
  const db = 'dash_e2e_' + randomBytes(4).toString('hex');
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('FOOTFALL_')));
  Object.assign(env, {
    FOOTFALL_LISTEN: `127.0.0.1:${port}`,
    FOOTFALL_DATA_DIR: dataDir,
    FOOTFALL_SITES: `${SITE}=http://127.0.0.1:*`,
    FOOTFALL_ADMIN_TOKEN: token,
    FOOTFALL_TRUSTED_PROXIES: '127.0.0.1/32',
    FOOTFALL_RATE_PER_SECOND: '100000',
    FOOTFALL_RATE_BURST: '100000',
    FOOTFALL_BATCH_PERIOD_MS: '200',
    // The overview and entry pages come from the rollup job: run it every second here.
    FOOTFALL_ROLLUP_INTERVAL_SECS: '1'
  }, extCH ? { FOOTFALL_CLICKHOUSE_URL: extCH, FOOTFALL_CLICKHOUSE_DATABASE: db } : {});

  const collector = startCollector(env);
  let browser = null, stopped = false;
  const stop = async () => {
    if (stopped) return collector.exited;
    stopped = true;
    collector.child.kill('SIGTERM');
    const kill = setTimeout(() => collector.child.kill('SIGKILL'), 30000);
    const r = await collector.exited;
    clearTimeout(kill);
    return r;
  };
  try {
    const { url: base, clickhouse } = await collector.ready;
    assert.equal(base, `http://127.0.0.1:${port}`);
    assert.ok(clickhouse, 'the collector runs with ClickHouse (managed or FOOTFALL_TEST_CLICKHOUSE_URL)');

    // --- is the dashboard there yet? ----------------------------------------------------------
    const dash = await fetch(base + '/dashboard');
    if (dash.status == 404) {
      t.skip('the collector does not serve /dashboard yet (GET /dashboard answered 404) — dashboard e2e test skipped');
      return;
    }
    assert.equal(dash.status, 200, 'GET /dashboard');
    assert.match(dash.headers.get('content-type') || '', /^text\/html/);
    for (const [path, file, type] of [['/dashboard', 'index.html', /^text\/html/], ['/dashboard/app.js', 'app.js', /javascript/], ['/dashboard/app.css', 'app.css', /^text\/css/]]) {
      const r = await fetch(base + path);
      assert.equal(r.status, 200, path);
      assert.match(r.headers.get('content-type') || '', type, `${path} content type`);
      const served = Buffer.from(await r.arrayBuffer()), dist = readFileSync(join(root, 'dist', file));
      if (!served.equals(dist)) console.log(`warning: the collector serves a ${path} (${served.length} B) that differs from ` +
        `dashboard/dist/${file} (${dist.length} B): the binary was built before the last "npm run build"`);
    }
    // the API wants the token
    const anon = await fetch(base + '/api/stats/sites');
    assert.equal(anon.status, 401, 'GET /api/stats/sites without a token');
    assert.ok(anon.headers.get('www-authenticate'), 'WWW-Authenticate on 401');
    const auth = { Authorization: `Bearer ${token}` };
    const getJson = async path => {
      const r = await fetch(base + path, { headers: auth });
      const text = await r.text();
      assert.equal(r.status, 200, `GET ${path}: ${text}`);
      return JSON.parse(text);
    };
    assert.deepEqual((await getJson('/api/stats/sites')).sites, [SITE]);

    // --- seed -----------------------------------------------------------------------------------
    const beacons = seedBeacons(Date.now());
    for (const b of beacons) {
      const r = await post(base + '/api/event', seedHeaders(b.visitor), JSON.stringify(b.body));
      assert.equal(r.status, 202, `beacon ${b.body.sid}/${b.body.seq} (${b.body.kind}): ${r.status} ${r.text}`);
    }

    // --- wait until delivered and visible ---------------------------------------------------------
    let ready;
    for (const t0 = Date.now(); ; await sleep(200)) {
      ready = await (await fetch(base + '/readyz')).json();
      if (ready.spool && ready.spool.pending_records == 0) break;
      if (Date.now() - t0 > 30000) assert.fail(`spool not drained within 30 s: ${JSON.stringify(ready)}\n${collector.log().slice(-3000)}`);
    }
    const now = Date.now(), from = utcDate(now - DAY), to = utcDate(now + DAY);
    const range = `site=${SITE}&from=${from}&to=${to}`;
    let overview;
    for (const t0 = Date.now(); ; await sleep(300)) {
      overview = await getJson(`/api/stats/overview?${range}`);
      const pv = overview.rows?.[0]?.[overview.columns.indexOf('pageviews')];
      if (pv == EXPECTED.pageviews) break;
      if (Date.now() - t0 > 30000) assert.fail(`overview did not reach ${EXPECTED.pageviews} page views within 30 s: ${JSON.stringify(overview)}`);
    }
    // the API's own answers first (clearer failures than the page's)
    const api = async name => {
      const r = await getJson(`/api/stats/${name}?${range}`);
      return r.rows.map(row => Object.fromEntries(r.columns.map((c, i) => [c, row[i]])));
    };
    const ov = (await api('overview'))[0];
    assert.deepEqual({ visitors: ov.visitors, sessions: ov.sessions, pageviews: ov.pageviews, users: ov.users },
      { visitors: EXPECTED.visitors, sessions: EXPECTED.sessions, pageviews: EXPECTED.pageviews, users: EXPECTED.users }, 'API overview');
    assert.deepEqual(pick((await api('top_pages'))[0], EXPECTED.topPage), EXPECTED.topPage, 'API top_pages');
    assert.deepEqual(pick((await api('entry_pages'))[0], EXPECTED.entryPage), EXPECTED.entryPage, 'API entry_pages');
    assert.deepEqual(pick((await api('navigation'))[0], EXPECTED.navigation), EXPECTED.navigation, 'API navigation');

    // --- the page -----------------------------------------------------------------------------
    const { chromium } = await import('playwright-core');
    browser = await chromium.launch({ executablePath: CHROMIUM, args: ARGS });
    const ctx = await browser.newContext({ viewport: { width: 1280, height: 900 } });
    const foreign = [], errors = [], apiAuth = [];
    await ctx.route(u => new URL(u.href).origin != base, r => { foreign.push(r.request().url()); return r.abort(); });
    const page = await ctx.newPage();
    page.on('request', r => {
      const u = r.url();
      if (!u.startsWith('data:') && new URL(u).origin != base) foreign.push(u);
      if (new URL(u).pathname.startsWith('/api/')) apiAuth.push(r.headers().authorization);
      if (DEBUG) console.log('req:', r.method(), u);
    });
    page.on('console', m => { if (DEBUG) console.log('console:', m.type(), m.text()); if (m.type() == 'error') errors.push(m.text()); });
    page.on('pageerror', e => errors.push('pageerror: ' + e.message));

    await page.goto(`${base}/dashboard#${range}`);
    await page.getByTestId('signin').waitFor();
    await page.fill('#token', token);
    await page.getByRole('button', { name: 'Sign in' }).click();
    const queries = (await getJson('/api/stats/queries')).queries;
    const tables = queries.filter(q => !['overview', 'timeseries'].includes(q.name));
    await page.waitForFunction(n => {
      const panels = [...document.querySelectorAll('[data-testid^="panel-"]')];
      return panels.length == n && panels.every(p => p.getAttribute('aria-busy') == 'false') &&
        document.querySelector('#overview').getAttribute('aria-busy') == 'false' &&
        document.querySelector('#timeseries').getAttribute('aria-busy') == 'false';
    }, tables.length, { timeout: 30000 });
    assert.equal(new URL(page.url()).hash, '#' + range, 'the range from the hash is used');

    const card = async c => page.getByTestId(`card-${c}`).getAttribute('data-value');
    assert.equal(await card('pageviews'), String(EXPECTED.pageviews), 'page views card');
    assert.equal(await card('sessions'), String(EXPECTED.sessions), 'sessions card');
    assert.equal(await card('visitors'), String(EXPECTED.visitors), 'visitors card');
    assert.equal(await card('users'), String(EXPECTED.users), 'users card');
    assert.equal(await page.getByTestId('card-pageviews').locator('.value').textContent(), String(EXPECTED.pageviews));

    // panels as {column: shown text}, by the API's column order
    const panel = async name => {
      const cols = queries.find(q => q.name == name).columns;
      const rows = await page.$$eval(`[data-testid="panel-${name}"] tbody tr`, trs => trs.map(tr => [...tr.cells].map(td => td.title || td.textContent)));
      return rows.map(r => Object.fromEntries(cols.map((c, i) => [c, r[i]])));
    };
    const text = o => Object.fromEntries(Object.entries(o).map(([k, v]) => [k, String(v)]));
    assert.deepEqual(pick((await panel('top_pages'))[0], EXPECTED.topPage), text(EXPECTED.topPage), 'top page panel');
    assert.deepEqual(pick((await panel('entry_pages'))[0], EXPECTED.entryPage), text(EXPECTED.entryPage), 'entry page panel');
    assert.deepEqual(pick((await panel('navigation'))[0], EXPECTED.navigation), text(EXPECTED.navigation), 'navigation panel');
    assert.deepEqual((await panel('outbound_links')).map(r => pick(r, EXPECTED.outbound)), [text(EXPECTED.outbound)], 'outbound links panel');
    assert.ok((await panel('referrers')).some(r => r.referrer_host == EXPECTED.referrer.referrer_host && r.sessions == String(EXPECTED.referrer.sessions)), 'referrer panel');
    for (const q of tables) {
      const err = await page.getByTestId(`panel-${q.name}`).getByTestId('error').count();
      assert.equal(err, 0, `panel ${q.name} shows no error: ${err && await page.getByTestId(`panel-${q.name}`).getByTestId('error').textContent()}`);
    }

    const box = await page.getByTestId('chart').locator('canvas').boundingBox();
    assert.ok(box && box.width > 300 && box.height > 100, `chart canvas ${JSON.stringify(box)}`);
    assert.equal(await page.getByTestId('chart').getAttribute('data-days'), '3');

    mkdirSync(RESULTS, { recursive: true });
    await page.screenshot({ path: join(RESULTS, 'dashboard-e2e.png'), fullPage: true });

    assert.ok(apiAuth.length >= queries.length + 2);
    assert.ok(apiAuth.every(a => a == `Bearer ${token}`), 'every API request carries the token');
    assert.ok(!page.url().includes(token), 'the token is not in the URL');
    assert.deepEqual(foreign, [], 'no request to another origin');
    assert.deepEqual(errors, [], 'no console errors');
    await browser.close(); browser = null;

    if (extCH) await fetch(extCH + '/', { method: 'POST', body: `DROP DATABASE IF EXISTS ${db}` }).catch(() => {});
    const { code, signal } = await stop();
    assert.equal(signal, null, `collector killed by ${signal}`);
    assert.equal(code, 0, `collector exit code\n${collector.log().slice(-3000)}`);
  } finally {
    await browser?.close().catch(() => {});
    await stop();
    rmSync(dataDir, { recursive: true, force: true });
  }
});

/** The fields of `row` named in `like`. */
function pick(row, like) {
  return Object.fromEntries(Object.keys(like).map(k => [k, row?.[k]]));
}
