// End-to-end test: headless Chromium -> the real footfall collector binary -> real ClickHouse.
// Run with `npm run test:e2e` (not part of `npm test`).
//
// env:
//   FOOTFALL_BIN                   collector binary (default ../target/release/footfall)
//   FOOTFALL_TEST_CLICKHOUSE_URL   use this ClickHouse (database e2e_<random>, dropped at the end)
//                                  instead of the managed one the collector starts itself
//   FF_E2E_LOCAL_JS=1              serve tracker-js/dist/footfall.js in place of the collector's
//                                  embedded copy (to try a beacon change before the collector is rebuilt)
//   FF_DEBUG=1                     print collector stderr, page console and all requests
import { test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import { spawn } from 'node:child_process';
import { createHmac } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const BIN = resolve(root, process.env.FOOTFALL_BIN || '../target/release/footfall');
const CHROMIUM = '/usr/bin/chromium';
const FIXTURE = join(root, '..', 'tests', 'fixtures', 'beacons.jsonl');
const ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
  '--disable-component-update', '--disable-sync', '--no-first-run', '--disable-quic'];
const DEBUG = !!process.env.FF_DEBUG;
const CTX = { viewport: { width: 1280, height: 720 }, timezoneId: 'Asia/Almaty', locale: 'kk-KZ' };
// columns that legitimately contain the page address (http://127.0.0.1:PORT/...)
const ADDRESS_COLUMNS = ['url', 'referrer', 'prev_url', 'target_url', 'host', 'referrer_host'];

const skip = !existsSync(BIN) ? `collector binary ${BIN} not found (set FOOTFALL_BIN) — e2e test skipped`
  : !existsSync(CHROMIUM) ? `${CHROMIUM} not found — e2e test skipped` : false;

const sleep = ms => new Promise(r => setTimeout(r, ms));
const freePort = () => new Promise((res, rej) => {
  const s = net.createServer().on('error', rej);
  s.listen(0, '127.0.0.1', () => { const { port } = s.address(); s.close(() => res(port)); });
});
const isLoopback = u => ['127.0.0.1', 'localhost'].includes(new URL(u).hostname);

const shopPage = collector => `<!doctype html><html><head><meta charset="utf-8"><title>Shop</title>
<script>window.footfall=window.footfall||function(){(footfall.q=footfall.q||[]).push(arguments)};</script>
<script defer src="${collector}/footfall.js" data-site="shop"></script></head>
<body><nav><a href="/" data-route>Home</a> <a id="products" href="/products?utm_source=newsletter&utm_medium=email" data-route>Products</a>
<a id="cart" href="/cart" data-route>Cart</a> <a id="out" href="https://example.com/" target="_blank">example.com</a></nav>
<main id="view"></main>
<button id="identify">identify</button> <button id="add">add to cart</button>
<button id="consent">consent</button> <button id="checkout">checkout</button>
<script>
const titles = { '/': 'Shop', '/products': 'Products', '/cart': 'Cart' };
const render = () => { document.title = titles[location.pathname] || '?'; document.getElementById('view').textContent = document.title; };
document.addEventListener('click', e => {
  const a = e.target.closest('a[data-route]');
  if (!a || e.button || e.ctrlKey || e.metaKey || e.shiftKey) return;
  e.preventDefault(); history.pushState({}, '', a.href); render();
});
addEventListener('popstate', render);
document.getElementById('identify').onclick = () => footfall('identify', 'cust-7');
document.getElementById('add').onclick = () => footfall('event', 'add_to_cart', { sku: 'A1', qty: 2 });
document.getElementById('consent').onclick = () => footfall('consent', { analytics: true, fingerprint: true });
document.getElementById('checkout').onclick = () => footfall('event', 'checkout', { total: 9.5, paid: true });
render();
</script></body></html>`;

/** Starts the collector; resolves once it printed its "listening" line. */
// User and client ids are stored as keyed hashes (src/privacy/ids.rs): HMAC-SHA-256 under the
// secret over length-prefixed (purpose, site, value), first 16 bytes in hex.
const E2E_SECRET = 'e2e-secret';
function storedId(purpose, site, value) {
  if (!value) return '';
  const tag = { uid: 'footfall/uid/v1', cid: 'footfall/cid/v1' }[purpose];
  const mac = createHmac('sha256', Buffer.from(E2E_SECRET));
  for (const part of [tag, site, value]) {
    const b = Buffer.from(part), len = Buffer.alloc(4);
    len.writeUInt32LE(b.length);
    mac.update(len); mac.update(b);
  }
  return mac.digest().subarray(0, 16).toString('hex');
}

function startCollector(env) {
  const child = spawn(BIN, [], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '', err = '';
  child.stderr.on('data', d => { err += d; if (DEBUG) process.stderr.write('collector: ' + d); });
  const exited = new Promise(r => child.on('exit', (code, signal) => r({ code, signal })));
  const ready = new Promise((res, rej) => {
    const t = setTimeout(() => rej(new Error(`collector did not print its listening line within 60 s\nstdout: ${out}\nstderr: ${err.slice(-4000)}`)), 60000);
    child.stdout.on('data', d => {
      out += d;
      const m = /footfall is listening on (http:\/\/\S+?)\/? \(ClickHouse at (http:\/\/[^\s)]+)\)/.exec(out);
      if (m) { clearTimeout(t); res({ url: m[1], ch: m[2] }); }
    });
    exited.then(x => { clearTimeout(t); rej(new Error(`collector exited early (${JSON.stringify(x)})\nstdout: ${out}\nstderr: ${err.slice(-4000)}`)); });
  });
  return { child, ready, exited, log: () => err };
}

test('e2e: Chromium -> collector -> ClickHouse', { skip, timeout: 240000 }, async t => {
  const { chromium } = await import('playwright-core');
  const dataDir = mkdtempSync(join(tmpdir(), 'footfall-e2e-'));
  const [port, shopPort] = [await freePort(), await freePort()];
  const extCH = process.env.FOOTFALL_TEST_CLICKHOUSE_URL;
  const db = extCH ? 'e2e_' + Math.random().toString(36).slice(2, 10) : 'footfall';
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('FOOTFALL_')));
  Object.assign(env, {
    FOOTFALL_LISTEN: `127.0.0.1:${port}`,
    FOOTFALL_DATA_DIR: dataDir,
    FOOTFALL_SITES: `demo=http://localhost:*,demo=http://127.0.0.1:*,shop=http://127.0.0.1:${shopPort}`,
    FOOTFALL_RATE_BURST: '1000',
    FOOTFALL_BATCH_PERIOD_MS: '200',
    FOOTFALL_SECRET: E2E_SECRET
  }, extCH ? { FOOTFALL_CLICKHOUSE_URL: extCH, FOOTFALL_CLICKHOUSE_DATABASE: db } : {});

  const collector = startCollector(env);
  let browser, shop, stopped = false;
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
    const { url: base, ch } = await collector.ready;
    assert.equal(base, `http://127.0.0.1:${port}`);
    const dist = readFileSync(join(root, 'dist', 'footfall.js'));
    const served = Buffer.from(await (await fetch(base + '/footfall.js')).arrayBuffer());
    if (!served.equals(dist)) console.log(`warning: the collector serves a footfall.js (${served.length} B) that differs from ` +
      `tracker-js/dist/footfall.js (${dist.length} B): the binary was built before the last "npm run build"` +
      (process.env.FF_E2E_LOCAL_JS ? '; FF_E2E_LOCAL_JS=1: the test uses dist/footfall.js' : ''));
    const chQuery = async (sql, method = 'GET') => {
      const r = method == 'GET' ? await fetch(ch + '/?query=' + encodeURIComponent(sql))
        : await fetch(ch + '/', { method, body: sql });
      const text = await r.text();
      if (!r.ok) throw new Error(`ClickHouse ${r.status} for ${sql}: ${text}`);
      return text;
    };

    // shop: a page on another origin that embeds the collector's script (the deployment shape)
    shop = http.createServer((req, res) => {
      const u = new URL(req.url, 'http://x');
      if (u.pathname == '/favicon.ico') return res.writeHead(404).end();
      res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8' }).end(shopPage(base));
    });
    await new Promise(r => shop.listen(shopPort, '127.0.0.1', r));
    const shopOrigin = `http://127.0.0.1:${shopPort}`;

    browser = await chromium.launch({ executablePath: CHROMIUM, args: ARGS }); // fresh temp profile
    const beacons = []; // {scenario, url, body, req} of every POST /api/event Playwright reported
    const foreign = [], pageErrors = [];
    const newContext = async name => {
      const ctx = await browser.newContext(CTX);
      // nothing leaves the machine: example.com gets a local blank page, anything else is aborted
      await ctx.route(u => !isLoopback(u.href), r => {
        const u = r.request().url();
        foreign.push(u);
        return new URL(u).hostname == 'example.com'
          ? r.fulfill({ status: 200, contentType: 'text/html', body: '<!doctype html><title>blank</title>' }) : r.abort();
      });
      if (process.env.FF_E2E_LOCAL_JS) await ctx.route(base + '/footfall.js', r => r.fulfill({
        status: 200, contentType: 'application/javascript', headers: { 'Access-Control-Allow-Origin': '*' }, body: readFileSync(join(root, 'dist', 'footfall.js'))
      }));
      ctx.on('request', r => {
        if (r.method() == 'POST' && new URL(r.url()).pathname == '/api/event')
          beacons.push({ scenario: name, url: r.url(), body: JSON.parse(r.postData()), req: r });
        if (DEBUG) console.log('req:', r.method(), r.url());
      });
      ctx.on('requestfailed', r => DEBUG && console.log('failed:', r.url(), r.failure()?.errorText));
      ctx.on('page', p => {
        p.on('console', m => DEBUG && console.log('console:', m.text()));
        p.on('pageerror', e => { console.log('pageerror:', e); pageErrors.push(String(e)); });
      });
      return ctx;
    };
    const sent = (name, pred = () => true) => beacons.filter(b => b.scenario == name && pred(b.body));
    // the sendBeacon fired by pagehide while a page closes is not reported to Playwright, and
    // closing the context right away can drop it: wait until its row is in ClickHouse
    const waitCloseRow = async name => {
      const seq = Math.max(...sent(name).map(b => b.body.seq)) + 1;
      for (const t0 = Date.now(); Date.now() - t0 < 20000; await sleep(100))
        if (+(await chQuery(`SELECT count() FROM ${db}.events WHERE site='${name}' AND kind='engagement' AND seq=${seq}`)) > 0) return;
      assert.fail(`${name}: no engagement row (seq ${seq}) in ClickHouse within 20 s after closing the page; page errors: ${JSON.stringify(pageErrors)}`);
    };
    const waitSent = async (name, pred, what, ms = 10000) => {
      for (const t0 = Date.now(); Date.now() - t0 < ms; await sleep(25)) {
        const b = sent(name, pred);
        if (b.length) return b[0].body;
      }
      assert.fail(`${name}: timed out waiting for beacon ${what}; sent: ${JSON.stringify(sent(name).map(b => [b.body.kind, b.body.url]))}`);
    };

    // --- scenario A: the collector's own demo page (same origin) ------------------------------
    const ctxA = await newContext('demo');
    const pA = await ctxA.newPage();
    await pA.goto(base + '/');
    const pvA = await waitSent('demo', e => e.kind == 'pageview', 'first pageview');
    assert.ok(pvA.device, 'first demo pageview carries the device block');
    // the embedded demo page may be minimal: drive it through the public API and history only
    await pA.evaluate(() => { history.pushState({}, '', '/pricing'); document.title = 'Pricing'; });
    await waitSent('demo', e => e.kind == 'pageview' && e.url.endsWith('/pricing'), 'SPA pageview');
    await pA.evaluate(() => {
      const a = Object.assign(document.createElement('a'), { id: 'ff-out', href: 'https://example.com/', target: '_blank', textContent: 'out' });
      document.body.append(a);
    });
    const [popA] = await Promise.all([ctxA.waitForEvent('page'), pA.click('#ff-out')]);
    await popA.close();
    await pA.evaluate(() => { footfall('identify', 'user-42'); footfall('consent', { analytics: true, fingerprint: true }); footfall('event', 'signup', { plan: 'pro', seats: 3 }); });
    await waitSent('demo', e => e.kind == 'custom', 'custom event');
    await sleep(300);
    await pA.close({ runBeforeUnload: true });
    await waitCloseRow('demo');
    await ctxA.close();

    // --- scenario B: cross-origin shop page -----------------------------------------------------
    const ctxB = await newContext('shop');
    const pB = await ctxB.newPage();
    await pB.goto(shopOrigin + '/');
    const pvB = await waitSent('shop', e => e.kind == 'pageview', 'first pageview');
    assert.ok(pvB.device, 'first shop pageview carries the device block');
    await pB.click('#products');
    await waitSent('shop', e => e.kind == 'pageview' && e.url.includes('/products'), '/products pageview');
    await pB.click('#identify');
    await pB.click('#add');
    await waitSent('shop', e => e.name == 'add_to_cart', 'add_to_cart');
    await pB.click('#consent');
    await pB.click('#cart');
    await waitSent('shop', e => e.kind == 'pageview' && e.url.endsWith('/cart'), '/cart pageview');
    const [popB] = await Promise.all([ctxB.waitForEvent('page'), pB.click('#out')]);
    await popB.waitForLoadState();
    assert.equal(popB.url(), 'https://example.com/');
    await popB.close();
    await waitSent('shop', e => e.kind == 'outbound', 'outbound');
    await pB.click('#checkout');
    await waitSent('shop', e => e.name == 'checkout', 'checkout');
    await sleep(300);
    await pB.close({ runBeforeUnload: true });
    await waitCloseRow('shop');
    await ctxB.close();
    await browser.close(); browser = null;

    assert.deepEqual(pageErrors, [], 'no page errors');
    assert.deepEqual([...new Set(foreign.map(u => new URL(u).origin))], ['https://example.com'],
      `only the (locally fulfilled) example.com navigations left loopback: ${foreign}`);
    // response statuses of the beacons whose response the browser reported (sendBeacon on close
    // may not report one)
    const statuses = await Promise.all(beacons.map(async b => (await b.req.response().catch(() => null))?.status() ?? null));
    const bad = beacons.map((b, i) => [statuses[i], b.scenario, b.body.kind, b.body.seq]).filter(x => x[0] != null && x[0] != 202);
    assert.deepEqual(bad, [], 'collector answered 202 to every beacon');
    for (const b of beacons) assert.equal(b.url, base + '/api/event');

    // --- ClickHouse ---------------------------------------------------------------------------
    const cols = (await chQuery(`SELECT name, type FROM system.columns WHERE database='${db}' AND table='events' FORMAT JSONEachRow`))
      .trim().split('\n').filter(Boolean).map(l => JSON.parse(l));
    assert.ok(cols.length > 50, `events table has ${cols.length} columns`);
    assert.deepEqual(cols.filter(c => /(^|_)ip($|_)|addr/i.test(c.name)), [], 'no IP column');
    // FixedString ids as hex (raw bytes are not valid JSON text), UUID as text
    const select = cols.map(c => /^FixedString/.test(c.type) ? `hex(${c.name}) AS ${c.name}`
      : c.type == 'UUID' ? `toString(${c.name}) AS ${c.name}` : c.name).join(', ');
    const rowsOf = async site => (await chQuery(`SELECT ${select} FROM ${db}.events WHERE site='${site}' ORDER BY seq FORMAT JSONEachRow`))
      .trim().split('\n').filter(Boolean).map(l => JSON.parse(l));
    // expected: every captured beacon plus the engagement sent on close
    const expectCount = site => beacons.filter(b => b.body.site == site).length + 1;
    const complete = rs => rs.length >= expectCount(rs[0]?.site) && rs[rs.length - 1].kind == 'engagement';
    let rows = {};
    for (const t0 = Date.now(); ; await sleep(250)) {
      rows = { demo: await rowsOf('demo'), shop: await rowsOf('shop') };
      if (complete(rows.demo) && complete(rows.shop)) break;
      if (Date.now() - t0 > 20000) assert.fail(`rows did not arrive within 20 s: demo ${rows.demo.length}/${expectCount('demo')}, ` +
        `shop ${rows.shop.length}/${expectCount('shop')}: ${JSON.stringify(Object.values(rows).flat().map(r => [r.site, r.seq, r.kind, r.path]))}` +
        `\ncollector log tail:\n${collector.log().slice(-3000)}`);
    }

    const ZERO = '0'.repeat(32);
    const kinds = rs => rs.reduce((m, r) => (m[r.kind] = (m[r.kind] || 0) + 1, m), {});
    const checkCommon = (name, rs) => {
      const sentB = sent(name).map(b => b.body).sort((a, b) => a.seq - b.seq);
      // every beacon the browser sent is one row, plus the engagement sent by pagehide on close
      // (same session state as the last captured beacon), nothing else
      const lastB = sentB[sentB.length - 1];
      sentB.push({ ...lastB, kind: 'engagement', seq: lastB.seq + 1, ts: rs[rs.length - 1].client_ts, device: undefined, title: undefined, target: undefined });
      assert.deepEqual(rs.map(r => [r.seq, r.kind]), sentB.map(e => [e.seq, e.kind]), `${name}: rows = sent beacons + close engagement`);
      assert.deepEqual(rs.map(r => r.seq), rs.map((_, i) => i + 1), `${name}: seq 1..n strictly increasing`);
      assert.equal(new Set(rs.map(r => r.session_id)).size, 1, `${name}: one session_id`);
      assert.match(rs[0].session_id, /^[0-9a-z]{16,64}$/);
      assert.equal(rs[0].session_id, sentB[0].sid);
      assert.equal(new Set(rs.map(r => r.visitor_id)).size, 1, `${name}: one visitor_id`);
      assert.notEqual(rs[0].visitor_id, ZERO);
      assert.equal(new Set(rs.map(r => r.event_id)).size, rs.length, `${name}: distinct event_id`);
      rs.forEach((r, i) => {
        const e = sentB[i], w = `${name} seq ${r.seq} (${r.kind})`;
        assert.equal(r.url, e.url, w); assert.equal(String(r.client_ts), String(e.ts), w);
        assert.equal(r.browser, 'HeadlessChrome', w); assert.equal(r.os, 'Linux', w); assert.equal(r.device, 'desktop', w);
        assert.equal(r.automated, 1, w);
        assert.equal(r.user_id, storedId('uid', name, e.uid), w); assert.equal(r.client_id, storedId('cid', name, e.cid), w);
        assert.equal(r.consent, e.consent, w); assert.equal(r.gpc, 0, w); assert.equal(r.dnt, 0, w);
        assert.ok(r.received_at, w);
        if (r.kind == 'engagement') {
          if (e != sentB[sentB.length - 1]) { assert.equal(r.engaged_ms, e.engaged_ms, w); assert.equal(r.wall_ms, e.wall_ms, w); }
          assert.ok(r.engaged_ms <= r.wall_ms, `${w}: engaged_ms ${r.engaged_ms} <= wall_ms ${r.wall_ms}`);
        }
        if (r.kind == 'pageview') assert.equal(r.title, e.title, w);
        // no raw client address outside the columns that hold the page's own address
        const rest = { ...r };
        for (const k of ADDRESS_COLUMNS) delete rest[k];
        assert.ok(!JSON.stringify(rest).includes('127.0.0.1'), `${w}: 127.0.0.1 outside address columns: ${JSON.stringify(rest)}`);
        // device columns only where a device block was sent
        if (!e.device) {
          assert.equal(r.fingerprint_id, ZERO, w); assert.equal(r.timezone, '', w); assert.equal(r.canvas_hash, '', w);
        }
      });
      const dev = rs.filter((r, i) => sentB[i].device);
      assert.equal(dev.length, 1, `${name}: exactly one row with a device block`);
      const d = dev[0];
      assert.equal(d.kind, 'pageview'); assert.equal(d.seq, 1);
      assert.notEqual(d.fingerprint_id, ZERO, 'fingerprint_id on the pageview with a device block');
      assert.ok(d.fingerprint_version > 0);
      assert.equal(d.timezone, 'Asia/Almaty'); assert.equal(d.tz_offset, 300);
      assert.deepEqual(d.languages, ['kk-KZ']);
      assert.deepEqual([d.screen_w, d.screen_h, d.viewport_w, d.viewport_h], [1280, 720, 1280, 720]);
      assert.equal(d.color_depth, 24); assert.equal(d.pixel_ratio, 1);
      assert.match(d.platform, /^Linux/);
      assert.equal(d.arch, 'x86'); assert.equal(d.bitness, '64'); assert.ok(d.arch_source);
      assert.ok(d.cores >= 1); assert.equal(d.touch_points, 0);
      for (const k of ['canvas_hash', 'webgl_hash', 'fonts_hash']) assert.match(d[k], /^[0-9a-f]{16}$/, k);
      assert.ok(d.fonts_count > 0, 'fonts_count'); assert.deepEqual(d.fonts, []);
      assert.ok(d.webgl_renderer, 'webgl_renderer'); assert.ok(d.webgl_vendor, 'webgl_vendor');
      assert.equal(d.webdriver, 1); assert.ok(d.automation_headless.includes('ua'));
      assert.equal(d.media_known, 1, 'media device kinds counted');
      assert.ok(Array.isArray(d.plugins) && Array.isArray(d.automation_globals) && Array.isArray(d.automation_flags));
      assert.equal(d.activex, 0);
      return d;
    };

    // scenario A (demo, same origin)
    const A = rows.demo, kA = kinds(A);
    checkCommon('demo', A);
    assert.equal(kA.pageview, 2); assert.equal(kA.outbound, 1); assert.equal(kA.custom, 1); assert.ok(kA.engagement >= 2);
    assert.deepEqual(A.filter(r => r.kind == 'pageview').map(r => [r.path, r.prev_path]), [['/', ''], ['/pricing', '/']]);
    assert.ok(A.every(r => r.host == `127.0.0.1:${port}`));
    const oA = A.find(r => r.kind == 'outbound');
    assert.equal(oA.target_url, 'https://example.com/'); assert.equal(oA.target_host, 'example.com');
    const cA = A.find(r => r.kind == 'custom');
    assert.equal(cA.event_name, 'signup'); assert.deepEqual(JSON.parse(cA.event_props), { plan: 'pro', seats: 3 });
    assert.equal(cA.user_id, storedId('uid', 'demo', 'user-42')); assert.match(cA.client_id, /^[0-9a-f]{32}$/); assert.equal(cA.consent, 'granted');

    // scenario B (shop, cross-origin)
    const B = rows.shop, kB = kinds(B);
    checkCommon('shop', B);
    assert.equal(kB.pageview, 3); assert.equal(kB.outbound, 1); assert.equal(kB.custom, 2); assert.ok(kB.engagement >= 3);
    const pvs = B.filter(r => r.kind == 'pageview');
    assert.deepEqual(pvs.map(r => [r.path, r.prev_path]), [['/', ''], ['/products', '/'], ['/cart', '/products']]);
    assert.deepEqual(pvs.map(r => r.title), ['Shop', 'Products', 'Cart']);
    assert.equal(pvs[1].url, shopOrigin + '/products?utm_source=newsletter&utm_medium=email');
    assert.equal(pvs[1].utm_source, 'newsletter'); assert.equal(pvs[1].utm_medium, 'email');
    assert.equal(pvs[2].prev_url, pvs[1].url);
    assert.ok(B.every(r => r.host == `127.0.0.1:${shopPort}`));
    // engagement deltas: one per route, each before the next route's pageview
    for (const [route, next] of [['/', '/products'], ['/products', '/cart']]) {
      const eg = B.find(r => r.kind == 'engagement' && r.path == route), pv = pvs.find(r => r.path == next);
      assert.ok(eg && eg.seq < pv.seq, `engagement for ${route} before pageview ${next}`);
    }
    const last = B[B.length - 1];
    assert.equal(last.kind, 'engagement'); assert.equal(last.path, '/cart'); // pagehide on close
    const out = B.find(r => r.kind == 'outbound');
    assert.equal(out.target_url, 'https://example.com/'); assert.equal(out.target_host, 'example.com'); assert.equal(out.path, '/cart');
    const [add, checkout] = B.filter(r => r.kind == 'custom');
    assert.equal(add.event_name, 'add_to_cart'); assert.deepEqual(JSON.parse(add.event_props), { sku: 'A1', qty: 2 });
    assert.equal(checkout.event_name, 'checkout'); assert.deepEqual(JSON.parse(checkout.event_props), { total: 9.5, paid: true });
    // identify happened after the /products pageview, consent after add_to_cart
    const idSeq = pvs[1].seq;
    for (const r of B) assert.equal(r.user_id, r.seq > idSeq ? storedId('uid', 'shop', 'cust-7') : '', `user_id at seq ${r.seq}`);
    for (const r of B) {
      if (r.seq <= add.seq) { assert.equal(r.client_id, '', `client_id before consent (seq ${r.seq})`); assert.equal(r.consent, 'unset'); }
      else { assert.match(r.client_id, /^[0-9a-z]{16,64}$/, `client_id after consent (seq ${r.seq})`); assert.equal(r.consent, 'granted'); }
    }
    assert.equal(new Set(B.filter(r => r.client_id).map(r => r.client_id)).size, 1);
    // same browser, same collector: the two sites must not share a visitor id
    assert.notEqual(A[0].visitor_id, B[0].visitor_id, 'visitor_id is per site');

    const fmt = rs => Object.entries(kinds(rs)).map(([k, n]) => `${k} ${n}`).join(', ');
    console.log(`e2e rows in ClickHouse ${db}.events — demo: ${fmt(A)}; shop: ${fmt(B)}`);
    console.log(`device row (shop): browser ${B[0].browser} ${B[0].browser_version}, os ${B[0].os}, ` +
      `webgl ${B[0].webgl_renderer}, fonts ${B[0].fonts_count}, server_flags ${JSON.stringify(B[0].server_flags)}`);

    if (!existsSync(FIXTURE)) {
      writeFileSync(FIXTURE, beacons.map(b => JSON.stringify(b.body)).join('\n') + '\n');
      console.log(`wrote ${beacons.length} beacons to ${FIXTURE}`);
    }
    if (extCH) await chQuery(`DROP DATABASE IF EXISTS ${db}`, 'POST');

    const { code, signal } = await stop();
    assert.equal(signal, null, `collector killed by ${signal}`);
    assert.equal(code, 0, `collector exit code\n${collector.log().slice(-3000)}`);
  } finally {
    await browser?.close().catch(() => {});
    shop?.close();
    await stop();
    rmSync(dataDir, { recursive: true, force: true });
  }
});
