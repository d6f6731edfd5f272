// End-to-end test of dist/footfall.js (+ dist/footfall-ports.js) in headless Debian Chromium via
// playwright-core. With UPDATE_FIXTURES=1 it rewrites ../tests/fixtures/beacons.jsonl, the captured
// beacons the Rust tests replay; a normal run leaves the committed fixtures alone.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

const CHROMIUM = '/usr/bin/chromium';
const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const FIXTURE = join(root, '..', 'tests', 'fixtures', 'beacons.jsonl');
const ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
  '--disable-component-update', '--disable-sync', '--no-first-run', '--disable-quic'];

// Init script: records each Worker the page creates (time until its first message, the keys of
// that message) and every long task (> 50 ms) on the main thread.
const instrument = () => {
  const Wk = window.Worker;
  window.__workers = []; window.__longtasks = [];
  window.Worker = class extends Wk {
    constructor(...a) {
      super(...a);
      const r = { messages: 0, keys: null, ms: -1 }, t = performance.now();
      window.__workers.push(r);
      this.addEventListener('message', e => { if (!r.messages++) r.ms = performance.now() - t, r.keys = Object.keys(e.data || {}); });
    }
  };
  try {
    new PerformanceObserver(l => l.getEntries().forEach(e => window.__longtasks.push({ start: e.startTime, duration: e.duration })))
      .observe({ type: 'longtask', buffered: true });
  } catch (e) {}
};

const page = (attrs, ports) => `<!doctype html><html><head><meta charset="utf-8"><title>Home</title>
<script>window.footfall=window.footfall||function(){(footfall.q=footfall.q||[]).push(arguments)};
footfall('event','early',{queued:true});</script>
<script defer src="/footfall.js" data-site="shop" ${attrs} data-ports="${ports}"></script></head>
<body><h1 id="h">Home</h1>
<a id="spa" href="/spa/a">SPA</a> <a id="out" href="https://other.example/x?q=1">out</a>
<a id="out2" href="https://other.example/y"><span id="inner">out2</span></a> <a id="same" href="/about">same</a>
<script>
window.__prevented = []; window.__errors = []; addEventListener('error', e => __errors.push(String(e.message))); addEventListener('unhandledrejection', e => __errors.push(String(e.reason)));
const stop = e => { const a = e.target.closest('a'); if (a && a.id.startsWith('out')) __prevented.push(e.defaultPrevented); if (a && a.id != 'spa') e.preventDefault(); };
document.addEventListener('click', stop); document.addEventListener('auxclick', stop);
</script></body></html>`;

async function listen(server) {
  await new Promise(r => server.listen(0, '127.0.0.1', r));
  return server.address().port;
}

test('beacon in headless Chromium', { skip: !existsSync(CHROMIUM) && `${CHROMIUM} not found — browser test skipped`, timeout: 180000 }, async () => {
  const { chromium } = await import('playwright-core');
  const events = [], headers = [];
  // probe targets for the ports script: an HTTP server (open), a silent TCP listener (no answer
  // -> blocked by timeout), and a port that was just released (closed)
  const openSrv = http.createServer((q, s) => s.end('hi'));
  const silent = net.createServer(() => {});
  const tmp = net.createServer();
  const [pOpen, pSilent, pClosed] = [await listen(openSrv), await listen(silent), await listen(tmp)];
  await new Promise(r => tmp.close(r));

  const server = http.createServer((req, res) => {
    const u = new URL(req.url, 'http://x');
    if (req.method == 'POST' && u.pathname == '/api/event') {
      let b = '';
      req.on('data', d => b += d).on('end', () => {
        events.push(JSON.parse(b)); headers.push(req.headers['content-type']);
        res.writeHead(202, { 'Access-Control-Allow-Origin': '*' }).end();
      });
      return;
    }
    const js = { '/footfall.js': 'footfall.js', '/footfall-ports.js': 'footfall-ports.js' }[u.pathname];
    if (js) return res.writeHead(200, { 'Content-Type': 'text/javascript' }).end(readFileSync(join(root, 'dist', js)));
    if (u.pathname == '/favicon.ico') return res.writeHead(404).end();
    const attrs = u.searchParams.has('cr') ? 'data-consent-required="true"' : '';
    res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8' }).end(page(attrs, [pOpen, pClosed, pSilent].join()));
  });
  const origin = `http://127.0.0.1:${await listen(server)}`;
  // launch() always runs Chromium with a fresh temporary user-data-dir (removed on close)
  const browser = await chromium.launch({ executablePath: CHROMIUM, args: ARGS });
  const foreign = [];
  const wait = async (pred, what, ms = 5000) => {
    for (const t0 = Date.now(); Date.now() - t0 < ms; await new Promise(r => setTimeout(r, 25))) {
      const e = events.find(pred);
      if (e) return e;
    }
    assert.fail(`timed out waiting for ${what}; got ${JSON.stringify(events.map(e => [e.kind, e.url, e.name]))}`);
  };
  try {
    // --- scenario 1: default config (no consent required) ---------------------------------
    const ctx = await browser.newContext({ viewport: { width: 1280, height: 720 }, timezoneId: 'Asia/Almaty', locale: 'kk-KZ' });
    await ctx.route('**/*', r => {
      const u = new URL(r.request().url());
      if (u.hostname == '127.0.0.1') return r.continue();
      foreign.push(u.href); return r.abort();
    });
    await ctx.addInitScript(instrument);
    const p = await ctx.newPage();
    if (process.env.FF_DEBUG) { p.on('console', m => console.log('console:', m.text())); p.on('pageerror', e => console.log('pageerror:', e)); p.on('request', r => console.log('req:', r.method(), r.url())); p.on('requestfailed', r => console.log('failed:', r.url(), r.failure()?.errorText)); }
    await p.goto(origin + '/');
    const pv1 = await wait(e => e.kind == 'pageview', 'first pageview');
    const nav = await p.evaluate(() => ({ langs: [...navigator.languages], ua: navigator.userAgent, uach: !!navigator.userAgentData }));
    console.log(`navigator.languages under locale kk-KZ: ${JSON.stringify(nav.langs)}`);
    const d = pv1.device;
    console.log('device block:', JSON.stringify(d));
    // canvas/WebGL/fonts/tz were measured in one worker (no main-thread fallback)
    const w1 = await p.evaluate(() => window.__workers);
    assert.deepEqual(w1.map(w => [w.messages, w.keys]), [[1, ['tz', 'webgl', 'canvas', 'fonts']]]);
    console.log(`device worker answered after ${w1[0].ms.toFixed(0)} ms (page load)`);

    assert.equal(pv1.v, 1); assert.equal(pv1.site, 'shop'); assert.equal(pv1.url, origin + '/');
    assert.equal(pv1.title, 'Home'); assert.equal(pv1.prev, ''); assert.equal(pv1.seq, 1);
    assert.match(pv1.sid, /^[0-9a-z]{16,64}$/); assert.equal(pv1.consent, 'unset');
    assert.equal(pv1.cid, undefined); assert.equal(pv1.gpc, false); assert.equal(pv1.dnt, false);
    assert.ok(Math.abs(pv1.ts - Date.now()) < 60000);
    assert.equal(d.tz, 'Asia/Almaty'); assert.equal(d.tzo, 300);
    assert.deepEqual(d.langs, nav.langs); assert.equal(d.langs[0], 'kk-KZ');
    assert.deepEqual({ w: d.screen.w, h: d.screen.h }, { w: 1280, h: 720 });
    assert.deepEqual(d.vp, { w: 1280, h: 720 });
    assert.equal(typeof d.screen.dpr, 'number'); assert.equal(typeof d.win.ow, 'number');
    assert.match(d.platform, /Linux/);
    assert.equal(d.arch, 'x86'); assert.equal(d.bits, '64'); assert.match(d.arch_src, /^(uach|platform)$/);
    assert.ok(d.cores >= 1); assert.equal(d.touch, 0); assert.equal(d.activex, false);
    assert.match(d.canvas.h, /^[0-9a-f]{16}$/); assert.equal(typeof d.canvas.stable, 'boolean');
    assert.match(d.fonts.h, /^[0-9a-f]{16}$/); assert.equal(d.fonts.list, undefined); assert.ok(d.fonts.n >= 0);
    assert.ok(Array.isArray(d.plugins));
    assert.equal(d.auto.webdriver, true);
    assert.ok(Array.isArray(d.auto.headless) && Array.isArray(d.auto.globals) && Array.isArray(d.auto.flags));
    if (/HeadlessChrome/.test(nav.ua)) assert.ok(d.auto.headless.includes('ua'));
    if (d.webgl) { assert.equal(typeof d.webgl.renderer, 'string'); assert.match(d.webgl.h, /^[0-9a-f]{16}$/); }
    // headless Chromium has no media devices, but the kinds are counted (zeros), not omitted
    assert.ok(d.media, 'media device kinds'); for (const k of ['ai', 'vi', 'ao']) assert.equal(typeof d.media[k], 'number');
    if (nav.uach) assert.ok(d.uach.brands.length > 0);

    // queued-before-load custom event is replayed after the first pageview
    const early = await wait(e => e.name == 'early', 'replayed early event');
    assert.deepEqual(early.props, { queued: true }); assert.ok(early.seq > pv1.seq);

    // SPA route: pushState -> engagement for "/" then pageview for /spa/a with prev "/"
    await p.evaluate(() => { history.pushState({}, '', '/spa/a'); document.title = 'Page A'; });
    const pvA = await wait(e => e.kind == 'pageview' && e.url == origin + '/spa/a', 'SPA pageview');
    assert.equal(pvA.prev, origin + '/'); assert.equal(pvA.title, 'Page A'); assert.equal(pvA.sid, pv1.sid);
    assert.equal(pvA.device, undefined);
    const engHome = events.find(e => e.kind == 'engagement' && e.url == origin + '/');
    assert.ok(engHome && engHome.seq < pvA.seq, 'engagement for previous route before SPA pageview');
    // same URL again -> no duplicate pageview
    await p.evaluate(() => history.replaceState({ x: 1 }, '', '/spa/a'));
    await new Promise(r => setTimeout(r, 150));
    assert.equal(events.filter(e => e.kind == 'pageview' && e.url == origin + '/spa/a').length, 1);
    // back (popstate)
    await p.goBack();
    const pvBack = await wait(e => e.kind == 'pageview' && e.prev == origin + '/spa/a', 'popstate pageview');
    assert.equal(pvBack.url, origin + '/');

    // outbound: left click, ctrl-click, middle click, keyboard Enter; same-host link is not outbound
    await p.click('#same');
    await p.click('#out');
    await p.click('#inner', { modifiers: ['Control'] });
    await p.click('#out', { button: 'middle' });
    await p.focus('#out2'); await p.keyboard.press('Enter');
    await wait(() => events.filter(e => e.kind == 'outbound').length >= 4, '4 outbound events');
    const outs = events.filter(e => e.kind == 'outbound');
    assert.deepEqual(outs.map(e => e.target), ['https://other.example/x?q=1', 'https://other.example/y',
      'https://other.example/x?q=1', 'https://other.example/y']);
    assert.deepEqual(await p.evaluate(() => __prevented), [false, false, false, false], 'beacon never preventDefaults');

    // identify + custom event with limits
    await p.evaluate(() => {
      footfall('identify', 'user-42');
      const props = { plan: 'pro', n: 2, ok: true, long: 'x'.repeat(300), bad: { o: 1 }, nan: NaN };
      for (let i = 0; i < 20; i++) props['k' + i] = i;
      footfall('event', 'signup' + 'y'.repeat(100), props);
    });
    const cu = await wait(e => e.kind == 'custom' && e.name.startsWith('signup'), 'custom event');
    assert.equal(cu.uid, 'user-42'); assert.equal(cu.name.length, 64);
    assert.equal(Object.keys(cu.props).length, 16); assert.equal(cu.props.plan, 'pro');
    assert.equal(cu.props.n, 2); assert.equal(cu.props.ok, true); assert.equal(cu.props.long.length, 256);
    assert.ok(!('bad' in cu.props) && !('nan' in cu.props));

    // ports script: loaded after identify (data-ports + fingerprint allowed), loopback page => probes
    const ports = await wait(e => e.name == 'ports', 'ports event', 10000);
    assert.deepEqual(ports.props, { [pOpen]: 'open', [pClosed]: 'closed', [pSilent]: 'blocked' });
    assert.equal(ports.uid, 'user-42');

    // consent -> cid in localStorage and on subsequent events
    await p.evaluate(() => { footfall('consent', { analytics: true, fingerprint: true }); footfall('event', 'after-consent'); });
    const ac = await wait(e => e.name == 'after-consent', 'post-consent event');
    assert.equal(ac.consent, 'granted'); assert.match(ac.cid, /^[0-9a-z]{16,64}$/);
    assert.equal(await p.evaluate(() => JSON.parse(localStorage.ff_id)), ac.cid);

    // close the page: engagement via visibilitychange/pagehide (sendBeacon)
    const before = events.length;
    await new Promise(r => setTimeout(r, 300));
    assert.equal(await p.evaluate(() => localStorage.ff_q), undefined, 'no event left in the retry queue');
    assert.deepEqual(await p.evaluate(() => window.__errors), [], 'no errors thrown into the page');
    await p.close({ runBeforeUnload: true });
    const engLast = await wait(e => events.indexOf(e) >= before && e.kind == 'engagement', 'engagement on close');
    assert.equal(engLast.url, origin + '/'); assert.equal(engLast.uid, 'user-42');
    await ctx.close();

    const main = events.slice();
    const seqs = main.map(e => e.seq);
    assert.equal(new Set(main.map(e => e.sid)).size, 1, 'one session');
    assert.deepEqual([...seqs].sort((a, b) => a - b), [...new Set(seqs)].sort((a, b) => a - b), 'seq unique');
    const engs = main.filter(e => e.kind == 'engagement');
    if (process.env.FF_DEBUG) console.log(JSON.stringify(main.map(e => [e.seq, e.kind, e.url, e.engaged_ms, e.wall_ms, e.ts])));
    assert.ok(engs.length >= 3);
    for (const e of engs) {
      assert.ok(e.wall_ms >= 0 && e.wall_ms < 120000, `wall_ms ${e.wall_ms}`);
      assert.ok(e.engaged_ms >= 0 && e.engaged_ms <= e.wall_ms + 5, `engaged_ms ${e.engaged_ms} <= wall ${e.wall_ms}`);
    }
    assert.ok(engs.some(e => e.engaged_ms > 0), 'some engaged time measured');
    for (const e of main) if (e.kind != 'pageview') assert.equal(e.device, undefined);

    // --- scenario 2: data-consent-required="true" --------------------------------------------
    events.length = 0;
    const ctx2 = await browser.newContext({ viewport: { width: 800, height: 600 }, timezoneId: 'Asia/Almaty', locale: 'kk-KZ' });
    await ctx2.route('**/*', r => new URL(r.request().url()).hostname == '127.0.0.1' ? r.continue() : (foreign.push(r.request().url()), r.abort()));
    await ctx2.addInitScript(instrument);
    const p2 = await ctx2.newPage();
    await p2.goto(origin + '/?cr');
    const c1 = await wait(e => e.kind == 'pageview', 'cookieless pageview');
    assert.equal(c1.consent, 'unset'); assert.equal(c1.device, undefined); assert.equal(c1.cid, undefined);
    await new Promise(r => setTimeout(r, 200));
    assert.deepEqual(await p2.evaluate(() => Object.keys(localStorage).concat(Object.keys(sessionStorage))), [], 'nothing stored before consent');

    // Fingerprint main-thread time. With consent required nothing is collected until consent, so
    // the collection starts at a known moment on an idle, loaded page. Main-thread time = CDP
    // Performance.getMetrics TaskDuration (wall time of every task on the renderer main thread:
    // script, style, layout, GC, message handling; worker threads are not counted) over a window
    // that starts right before footfall('consent') and ends after the device block is ready,
    // minus the same metric over an equally long window with an equivalent call and no
    // fingerprint (measurement overhead and background noise). Everything else the page does in
    // that window is counted too, so this is an upper bound. The cost of the worker thread itself
    // is reported separately (it does not block the page).
    const cdp = await ctx2.newCDPSession(p2);
    await cdp.send('Performance.enable');
    const taskMs = async () => (await cdp.send('Performance.getMetrics')).metrics.find(m => m.name == 'TaskDuration').value * 1000;
    const WINDOW = 1500;
    // returns [TaskDuration over the window, duration of the synchronous call itself]
    const measure = async fn => {
      const t0 = await taskMs();
      const sync = await p2.evaluate(fn);
      await new Promise(r => setTimeout(r, WINDOW));
      return [(await taskMs()) - t0, sync];
    };
    const [base] = await measure(() => { const t = performance.now(); footfall('event', 'noop'); return performance.now() - t; });
    const [fpWin, sync] = await measure(() => {
      const t = performance.now(); footfall('consent', { analytics: true, fingerprint: true }); return performance.now() - t;
    });
    const fpMs = Math.max(0, fpWin - base);
    const ins = await p2.evaluate(() => ({ workers: window.__workers, longtasks: window.__longtasks }));
    const lt = ins.longtasks; // long tasks (> 50 ms) on the main thread since navigation
    console.log(`fingerprint main-thread ms: ${fpMs.toFixed(1)} (TaskDuration ${fpWin.toFixed(1)} ms in a ${WINDOW} ms window ` +
      `minus ${base.toFixed(1)} ms baseline; the synchronous consent call incl. starting the worker: ${sync.toFixed(1)} ms); worker: ${ins.workers.map(w => w.ms.toFixed(0) + ' ms until its answer').join(', ')}; ` +
      `long tasks: ${JSON.stringify(lt.map(x => Math.round(x.duration)))}`);
    assert.deepEqual(ins.workers.map(w => [w.messages, w.keys]), [[1, ['tz', 'webgl', 'canvas', 'fonts']]], 'one worker answered');
    assert.ok(ins.workers[0].ms < WINDOW - 300, `the worker answered within the measured window (${ins.workers[0].ms} ms)`);
    // Requirement: <= 50 ms of main-thread time. Asserted on the raw window (baseline not
    // subtracted: conservative). FP_BUDGET_MS overrides the budget for debugging only.
    const budget = +(process.env.FP_BUDGET_MS || 50);
    assert.ok(fpWin <= budget, `fingerprint window took ${fpWin.toFixed(1)} ms of main-thread time (budget ${budget} ms; ` +
      `${fpMs.toFixed(1)} ms above the baseline)`);
    await p2.evaluate(() => history.pushState({}, '', '/spa/b'));
    const c2 = await wait(e => e.kind == 'pageview' && e.url.endsWith('/spa/b'), 'post-consent pageview');
    assert.equal(c2.consent, 'granted'); assert.ok(c2.cid); assert.ok(c2.device, 'device after consent');
    assert.deepEqual(c2.device.vp, { w: 800, h: 600 }); assert.equal(c2.prev, origin + '/?cr');
    await p2.close({ runBeforeUnload: true });
    await wait(e => e.kind == 'engagement' && e.url.endsWith('/spa/b'), 'engagement on close (scenario 2)');
    await ctx2.close();

    assert.deepEqual(foreign, [], 'no request to any other host');
    assert.ok(headers.every(h => h == 'text/plain;charset=UTF-8'), `content types ${[...new Set(headers)]}`);

    const bySeq = a => a.slice().sort((x, y) => x.seq - y.seq);
    const all = bySeq(main).concat(bySeq(events));
    if (process.env.UPDATE_FIXTURES === '1') {
      writeFileSync(FIXTURE, all.map(e => JSON.stringify(e)).join('\n') + '\n');
      console.log(`wrote ${all.length} beacons to ${FIXTURE}`);
    }
  } finally {
    await browser.close();
    server.close(); openSrv.close(); silent.close();
  }
});
