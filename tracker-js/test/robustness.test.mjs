// Robustness of dist/footfall.js in headless Debian Chromium (playwright-core): the beacon does
// nothing without data-site, never throws into the host page, and keeps working (dropping only the
// fields that need it) when an API is missing or hostile. Each hostile environment is injected with
// an init script, i.e. before any page script (and the beacon) runs, in a fresh browser context.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import { existsSync, readFileSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

const CHROMIUM = '/usr/bin/chromium';
const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
  '--disable-component-update', '--disable-sync', '--no-first-run', '--disable-quic'];
const sleep = ms => new Promise(r => setTimeout(r, ms));

// The host page. The beacon is deferred; the host's own deferred script /host.js comes after it in
// document order, so it runs after the beacon (deferred scripts run in order), and the host's
// `load` handler runs after both. The host cancels link navigation itself (bubbling listener), so
// an outbound click does not leave the page.
const page = (name, site) => `<!doctype html><html><head><meta charset="utf-8"><title>Robust ${name}</title>
<link rel="icon" href="data:,">
<script>window.hostInline = true; window.hostLoad = false; addEventListener('load', () => { window.hostLoad = true; });</script>
<script defer src="/footfall.js"${site ? ' data-site="shop"' : ''}></script>
<script defer src="/host.js"></script></head>
<body><h1>${name}</h1><a id="out" href="https://other.example/x?q=1">out</a>
<script>document.addEventListener('click', e => { if (e.target.closest('a')) e.preventDefault(); });</script>
</body></html>`;

// the host script that runs after the beacon
const HOST_JS = `window.hostOk = true; window.hostSawTracker = typeof window.footfall;`;

// Init script for every case (runs first): records uncaught errors and unhandled rejections as the
// page itself sees them (in addition to Playwright's 'pageerror').
const recorder = () => {
  window.__errors = []; window.__rejections = [];
  addEventListener('error', e => __errors.push(String(e.message)));
  addEventListener('unhandledrejection', e => __rejections.push(String(e.reason && (e.reason.stack || e.reason))));
};

// The hostile environments (Playwright serialises these functions into init scripts).
const ENV = {
  // a. no transport at all
  a: () => {
    delete Navigator.prototype.sendBeacon; delete navigator.sendBeacon;
    delete window.fetch; delete Window.prototype.fetch;
    window.__envOk = typeof navigator.sendBeacon == 'undefined' && typeof window.fetch == 'undefined';
  },
  // b. storage blocked: the getters throw (like a sandboxed iframe / blocked third-party storage)
  b: () => {
    for (const k of ['localStorage', 'sessionStorage'])
      Object.defineProperty(window, k, { get() { throw new Error('denied'); }, configurable: true });
    let ok = 0;
    try { localStorage; } catch (e) { ok++; }
    try { sessionStorage; } catch (e) { ok++; }
    window.__envOk = ok == 2;
  },
  // c. no OffscreenCanvas / Worker / WebGL, 2D contexts unavailable
  c: () => {
    delete window.OffscreenCanvas; delete window.Worker; delete window.WebGLRenderingContext; delete window.WebGL2RenderingContext;
    HTMLCanvasElement.prototype.getContext = () => null;
    window.__envOk = typeof OffscreenCanvas == 'undefined' && typeof Worker == 'undefined' &&
      typeof WebGLRenderingContext == 'undefined' && document.createElement('canvas').getContext('2d') === null;
  },
  // d. navigator APIs missing / hostile, Intl.DateTimeFormat throwing
  d: () => {
    Object.defineProperty(navigator, 'userAgentData', { get: () => undefined, configurable: true });
    Object.defineProperty(navigator, 'mediaDevices', { get: () => undefined, configurable: true });
    Object.defineProperty(navigator, 'plugins', { get() { throw new Error('denied'); }, configurable: true });
    Intl.DateTimeFormat = function () { throw new Error('denied'); };
    let ok = navigator.userAgentData === undefined && navigator.mediaDevices === undefined;
    try { navigator.plugins; ok = false; } catch (e) {}
    try { Intl.DateTimeFormat(); ok = false; } catch (e) {}
    window.__envOk = ok;
  },
  // d2/d3: the same APIs one at a time (to pin down which one costs the device block)
  d2: () => {
    Object.defineProperty(navigator, 'plugins', { get() { throw new Error('denied'); }, configurable: true });
    window.__envOk = true;
  },
  d3: () => {
    Object.defineProperty(navigator, 'userAgentData', { get: () => undefined, configurable: true });
    Object.defineProperty(navigator, 'mediaDevices', { get: () => undefined, configurable: true });
    Intl.DateTimeFormat = function () { throw new Error('denied'); };
    window.__envOk = navigator.userAgentData === undefined && navigator.mediaDevices === undefined;
  },
  // e. the host's own pushState throws (installed before the beacon wraps it)
  e: () => {
    window.HostError = class HostError extends Error {};
    history.pushState = function () { throw new HostError('host pushState refused'); };
    window.__envOk = true;
  },
  // f. fetch to the collector fails like a network error (rejected promise); everything else passes
  f: () => {
    const f = window.fetch;
    window.__fetchCalls = 0;
    window.fetch = function (u) {
      if (String(u && u.url || u).includes('/api/event')) { __fetchCalls++; return Promise.reject(new TypeError('Failed to fetch')); }
      return f.apply(this, arguments);
    };
    window.__envOk = true;
  }
};

test('beacon robustness in headless Chromium', { skip: !existsSync(CHROMIUM) && `${CHROMIUM} not found — robustness test skipped`, timeout: 240000 }, async t => {
  const { chromium } = await import('playwright-core');
  const posts = []; // every POST /api/event: { body, referer }
  const server = http.createServer((req, res) => {
    const u = new URL(req.url, 'http://x');
    if (req.method == 'POST' && u.pathname == '/api/event') {
      let b = '';
      req.on('data', d => b += d).on('end', () => {
        let body; try { body = JSON.parse(b); } catch (e) { body = { unparsable: b }; }
        posts.push({ body, referer: req.headers.referer || '' });
        res.writeHead(202, { 'Access-Control-Allow-Origin': '*' }).end();
      });
      return;
    }
    if (u.pathname == '/footfall.js') return res.writeHead(200, { 'Content-Type': 'text/javascript' }).end(readFileSync(join(root, 'dist', 'footfall.js')));
    if (u.pathname == '/host.js') return res.writeHead(200, { 'Content-Type': 'text/javascript' }).end(HOST_JS);
    if (u.pathname == '/favicon.ico') return res.writeHead(204).end();
    const name = u.searchParams.get('case') || 'x';
    res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8' }).end(page(name, !u.searchParams.has('nosite')));
  });
  await new Promise(r => server.listen(0, '127.0.0.1', r));
  const origin = `http://127.0.0.1:${server.address().port}`;
  const browser = await chromium.launch({ executablePath: CHROMIUM, args: ARGS });

  // events of one case: its pages carry ?case=NAME in the URL (also after the SPA route)
  const of = name => posts.filter(p => (p.body.url || '').includes(`case=${name}`) || p.referer.includes(`case=${name}`)).map(p => p.body);
  const waitFor = async (name, pred, ms) => {
    for (const t0 = Date.now(); Date.now() - t0 < ms; await sleep(25)) {
      const e = of(name).find(pred);
      if (e) return e;
    }
    return null;
  };

  /**
   * Loads /?case=NAME with the init script `env` in a fresh context, then: waits for `load` (and
   * for the first page view when `expectPv`), an SPA pushState, an outbound click,
   * footfall('event','x') if defined, and closing the page. Returns what was observed.
   */
  const run = async (name, env, { expectPv = true, site = true, pvWait = 8000 } = {}) => {
    const ctx = await browser.newContext({ viewport: { width: 1024, height: 700 } });
    const foreign = [];
    await ctx.route('**/*', r => {
      const u = new URL(r.request().url());
      if (u.hostname == '127.0.0.1' || u.protocol == 'blob:' || u.protocol == 'data:') return r.continue();
      foreign.push(u.href); return r.abort();
    });
    await ctx.addInitScript(recorder);
    if (env) await ctx.addInitScript(env);
    const p = await ctx.newPage();
    const pageErrors = [], consoleErrors = [];
    p.on('pageerror', e => pageErrors.push(String(e && (e.stack || e))));
    p.on('console', m => { if (m.type() == 'error') consoleErrors.push(m.text()); });
    if (process.env.FF_DEBUG) p.on('console', m => console.log(`[${name}] console.${m.type()}:`, m.text()));
    const o = { name, env: !!env, pageErrors, consoleErrors, foreign };
    try {
      const t0 = Date.now();
      await p.goto(`${origin}/?case=${name}${site ? '' : '&nosite'}`);
      await p.waitForFunction(() => window.hostLoad === true, null, { timeout: 10000 });
      o.pv = expectPv ? await waitFor(name, e => e.kind == 'pageview', pvWait) : null;
      o.pvMs = o.pv ? Date.now() - t0 : -1;
      if (!expectPv) await sleep(1500); // give a (wrongly) started beacon time to send something
      o.host = await p.evaluate(() => ({
        envOk: window.__envOk, inline: window.hostInline === true, ok: window.hostOk === true, load: window.hostLoad === true,
        sawTracker: window.hostSawTracker, footfall: typeof window.footfall,
        loaded: performance.getEntriesByType('resource').some(r => r.name.endsWith('/footfall.js'))
      }));
      // SPA route change, done by the host inside try/catch (case e: the host's pushState throws)
      o.push = await p.evaluate(() => {
        try { history.pushState({}, '', location.pathname.replace(/\/?$/, '/spa') + location.search); return 'ok'; }
        catch (e) { return { name: e.constructor.name, message: e.message, host: !!window.HostError && e instanceof window.HostError }; }
      });
      await sleep(300);
      await p.click('#out');
      o.custom = await p.evaluate(() => { if (typeof window.footfall != 'function') return 'undefined'; window.footfall('event', 'x'); return 'called'; });
      await sleep(700);
      o.page = await p.evaluate(() => ({ errors: window.__errors, rejections: window.__rejections, fetchCalls: window.__fetchCalls }));
      await p.close({ runBeforeUnload: true });
      await sleep(300);
    } finally {
      await ctx.close();
    }
    o.events = of(name);
    return o;
  };

  const noErrors = o => {
    assert.deepEqual(o.pageErrors, [], 'no pageerror (uncaught exception / unhandled rejection)');
    assert.deepEqual(o.page.errors, [], 'no error event in the page');
    assert.deepEqual(o.page.rejections, [], 'no unhandledrejection in the page');
    assert.deepEqual(o.foreign, [], 'no request to another host');
  };
  const hostRan = o => {
    if (o.env) assert.equal(o.host.envOk, true, 'hostile environment was installed before the page ran');
    assert.ok(o.host.inline && o.host.ok && o.host.load, `host scripts ran (inline ${o.host.inline}, after the beacon ${o.host.ok}, load ${o.host.load})`);
    assert.equal(o.host.loaded, true, 'the beacon script was loaded');
  };
  const kinds = o => o.events.map(e => e.kind).join(',') || '-';
  const summary = (o, extra = '') => console.log(`robustness ${o.name}: pageerrors ${o.pageErrors.length}, ` +
    `rejections ${o.page.rejections.length}, host ${o.host.ok && o.host.load ? 'ok' : 'BROKEN'}, ` +
    `pageview ${o.pv ? `after ${o.pvMs} ms${o.pv.device ? ' with device' : ' without device'}` : 'none'}, events [${kinds(o)}]${extra}`);

  try {
    await t.test('1. does nothing when data-site is missing', async () => {
      const before = posts.length;
      const o = await run('nosite', null, { expectPv: false, site: false });
      summary(o, `, footfall ${o.host.footfall}, console errors ${o.consoleErrors.length}`);
      assert.equal(posts.length - before, 0, `no POST /api/event at all (got ${JSON.stringify(posts.slice(before).map(p => p.body))})`);
      assert.deepEqual(o.events, []);
      noErrors(o);
      assert.deepEqual(o.consoleErrors, [], 'no console errors');
      hostRan(o);
      assert.equal(o.host.footfall, 'undefined', 'window.footfall not defined');
      assert.equal(o.custom, 'undefined');
      assert.equal(o.push, 'ok');
    });

    await t.test('2a. no navigator.sendBeacon and no fetch: nothing can be sent, nothing breaks', async () => {
      const o = await run('a', ENV.a, { expectPv: false });
      summary(o, `, footfall ${o.host.footfall}`);
      noErrors(o); hostRan(o);
      assert.equal(o.host.sawTracker, 'function', 'beacon ran before the host script (window.footfall defined)');
      assert.equal(o.custom, 'called');
      assert.equal(o.push, 'ok');
      assert.deepEqual(o.events, [], 'no transport -> no POST');
    });

    await t.test('2b. localStorage/sessionStorage getters throw: page view still arrives', async () => {
      const o = await run('b', ENV.b);
      summary(o);
      noErrors(o); hostRan(o);
      assert.ok(o.pv, 'pageview arrived');
      assert.equal(o.pv.site, 'shop'); assert.match(o.pv.sid, /^[0-9a-z]{16,64}$/); assert.equal(o.pv.seq, 1);
      assert.equal(o.pv.cid, undefined);
      const spa = o.events.find(e => e.kind == 'pageview' && e.url.includes('/spa'));
      assert.ok(spa, 'SPA pageview arrived'); assert.equal(spa.sid, o.pv.sid, 'session kept in memory');
      assert.ok(o.events.some(e => e.kind == 'outbound'), 'outbound arrived');
      assert.ok(o.events.some(e => e.kind == 'custom' && e.name == 'x'), 'custom event arrived');
    });

    await t.test('2c. no OffscreenCanvas/Worker/WebGL, getContext() null: page view without canvas/webgl/fonts', async () => {
      const o = await run('c', ENV.c);
      summary(o, o.pv?.device ? `, device keys ${Object.keys(o.pv.device).join(',')}` : '');
      noErrors(o); hostRan(o);
      assert.ok(o.pv, 'pageview arrived');
      const d = o.pv.device;
      assert.ok(d, 'device block still sent (only the canvas-based fields are dropped)');
      for (const k of ['canvas', 'webgl', 'fonts']) assert.ok(!(k in d) || d[k] == null, `no ${k} field (${JSON.stringify(d[k])})`);
      assert.equal(typeof d.tz, 'string', 'tz measured on the main thread instead');
      assert.deepEqual(d.vp, { w: 1024, h: 700 });
      assert.ok(o.events.some(e => e.kind == 'outbound') && o.events.some(e => e.name == 'x'));
    });

    await t.test('2d. no userAgentData/mediaDevices, throwing navigator.plugins and Intl.DateTimeFormat: page view arrives', async () => {
      const o = await run('d', ENV.d);
      summary(o, o.pv?.device ? `, device keys ${Object.keys(o.pv.device).join(',')}` : '');
      noErrors(o); hostRan(o);
      assert.ok(o.pv, 'pageview arrived');
      assert.equal(o.pv.site, 'shop');
      assert.ok(o.events.some(e => e.kind == 'outbound') && o.events.some(e => e.name == 'x'));
    });

    // Same environment, stricter: PROTOCOL.md says "missing APIs only drop the fields that need
    // them". d2 isolates the throwing navigator.plugins getter, d3 the other three APIs.
    const d2 = await run('d2', ENV.d2);
    summary(d2, d2.pv?.device ? `, device keys ${Object.keys(d2.pv.device).join(',')}` : '');
    await t.test('2d. (strict) a throwing navigator.plugins getter only drops `plugins`', async () => {
      noErrors(d2); hostRan(d2);
      assert.ok(d2.pv, 'pageview arrived');
      assert.ok(d2.pv.device, `device block sent (pageview arrived after ${d2.pvMs} ms without it)`);
      assert.ok(!d2.pv.device.plugins?.length, 'plugins absent/empty');
      assert.ok(d2.pvMs < 4000, `pageview not held until the 5 s fallback (${d2.pvMs} ms)`);
    });

    await t.test('2d. (strict) no userAgentData/mediaDevices, throwing Intl.DateTimeFormat only drop uach/media', async () => {
      const o = await run('d3', ENV.d3);
      summary(o, o.pv?.device ? `, device keys ${Object.keys(o.pv.device).join(',')}` : '');
      noErrors(o); hostRan(o);
      assert.ok(o.pv?.device, 'device block sent');
      const d = o.pv.device;
      assert.equal(d.uach, undefined); assert.equal(d.media, undefined);
      assert.deepEqual(d.vp, { w: 1024, h: 700 }); assert.ok(Array.isArray(d.plugins));
      // tz is measured in the worker, where the page's Intl override does not apply
      assert.ok(d.tz === undefined || typeof d.tz == 'string');
    });

    await t.test('2e. host pushState throws: the host gets its own exception, page view arrives', async () => {
      const o = await run('e', ENV.e);
      summary(o, `, host caught ${JSON.stringify(o.push)}`);
      noErrors(o); hostRan(o);
      assert.ok(o.pv, 'pageview arrived');
      assert.deepEqual(o.push, { name: 'HostError', message: 'host pushState refused', host: true },
        'the host sees its own exception, unchanged');
      assert.ok(!o.events.some(e => e.kind == 'pageview' && e.url.includes('/spa')), 'no SPA pageview: the URL did not change');
      assert.ok(o.events.some(e => e.kind == 'outbound') && o.events.some(e => e.name == 'x'));
    });

    await t.test('2f. fetch rejects (network failure): no unhandled rejection', async () => {
      const o = await run('f', ENV.f, { expectPv: false });
      summary(o, `, fetch calls ${o.page.fetchCalls}`);
      noErrors(o); hostRan(o);
      assert.ok(o.page.fetchCalls >= 2, `the beacon tried fetch (page view, custom event): ${o.page.fetchCalls} calls`);
      // sendBeacon still works: the outbound click and the engagement on close arrive that way
      assert.ok(o.events.some(e => e.kind == 'outbound'), 'outbound arrived via sendBeacon');
    });
  } finally {
    await browser.close();
    server.close();
  }
});
