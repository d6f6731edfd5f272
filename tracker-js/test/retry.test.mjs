// Retry queue of dist/footfall.js in headless Debian Chromium (playwright-core), against a stub
// collector whose answers the test controls (PROTOCOL.md, "Transport" and "Consent and storage"):
// 429/503 or a network failure put the event in a retry queue of at most 50 events (oldest
// dropped), kept in localStorage.ff_q at storage level 2 (consent analytics:true), otherwise in
// memory; it is flushed on the next page load and, after 429/503, after Retry-After seconds;
// retried events keep their original ts/seq; other 4xx are not retried.
//
// The page is served by one server and the stub collector is a second one (another port, so a
// cross-origin collector, as in production): the stub can be stopped (connection refused) while the
// page stays up.
import { describe, it, before, after } from 'node:test';
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
const SKIP = !existsSync(CHROMIUM) && `${CHROMIUM} not found — retry browser tests skipped`;

/** Polls `fn` (sync or async) every 25 ms until it returns a truthy value; fails after `ms`. */
async function until(fn, what, ms = 5000, diag = () => '') {
  for (const t0 = Date.now(); Date.now() - t0 < ms; await sleep(25)) {
    const v = await fn();
    if (v) return v;
  }
  assert.fail(`timed out after ${ms} ms waiting for ${what}${diag() ? `; ${diag()}` : ''}`);
}

const key = e => `${e.sid}/${e.seq}`;

/**
 * Stub collector. `answer` ({status, retryAfter, delay}) decides the reply to every POST /api/event
 * (`delay(body)`: ms to wait before answering);
 * `posts` records each attempt: {body, status, rx: arrival ms, at: answer ms}. It also serves
 * /footfall.js (the beacon takes the collector origin from its own src). stop() closes the
 * listener and every open connection (the browser then gets "connection refused"); start() listens
 * again on the same port.
 */
async function collector() {
  const js = readFileSync(join(root, 'dist', 'footfall.js'));
  const c = {
    port: 0, posts: [], answer: { status: 202 },
    attempts: name => c.posts.filter(a => a.body.name == name),
    delivered: pred => c.posts.find(a => a.status == 202 && pred(a.body)),
    summary: () => `collector saw ${JSON.stringify(c.posts.map(a => [a.body.kind, a.body.name, a.body.seq, a.status]))}`
  };
  c.server = http.createServer((req, res) => {
    const rx = Date.now();
    // what footfall sends for configured origins: the status and Retry-After must be readable
    const cors = { 'Access-Control-Allow-Origin': '*', 'Access-Control-Expose-Headers': 'Retry-After' };
    if (req.method == 'GET' && req.url == '/footfall.js') return res.writeHead(200, { ...cors, 'Content-Type': 'text/javascript' }).end(js);
    if (req.method != 'POST' || req.url != '/api/event') return res.writeHead(404, cors).end();
    let b = '';
    req.on('data', d => b += d).on('end', async () => {
      const body = JSON.parse(b), { status, retryAfter, delay } = c.answer;
      if (delay) await sleep(delay(body));
      res.writeHead(status, retryAfter ? { ...cors, 'Retry-After': retryAfter } : cors).end();
      c.posts.push({ body, status, rx, at: Date.now() });
    }).on('error', () => {}); // (a page closed mid-request)
  });
  c.start = () => new Promise(r => c.server.listen(c.port, '127.0.0.1', () => { c.port = c.server.address().port; r(); }));
  c.stop = () => new Promise(r => { c.server.close(r); c.server.closeAllConnections(); });
  await c.start();
  return c;
}

// The host page; ?collector=PORT selects the stub, ?consent=1 grants analytics consent (storage
// level 2, so the queue is persisted) through the documented pre-load snippet. Fingerprinting is
// declined there so the first page view is not held for the device block.
const page = (port, consent) => `<!doctype html><html><head><meta charset="utf-8"><title>Retry</title>
<link rel="icon" href="data:,">
<script>window.footfall=window.footfall||function(){(footfall.q=footfall.q||[]).push(arguments)};
${consent ? "footfall('consent',{analytics:true,fingerprint:false});" : ''}</script>
<script defer src="http://127.0.0.1:${port}/footfall.js" data-site="shop"></script></head>
<body><h1>Retry</h1></body></html>`;

// Init script: what the page itself sees of errors thrown by the beacon.
const recorder = () => {
  window.__errors = [];
  addEventListener('error', e => __errors.push(String(e.message)));
  addEventListener('unhandledrejection', e => __errors.push(String(e.reason)));
};

/** localStorage.ff_q of the page, parsed (null when absent). */
const storedQueue = async p => JSON.parse(await p.evaluate(() => localStorage.getItem('ff_q')) ?? 'null');

describe('retry queue in headless Chromium', { skip: SKIP, timeout: 180000 }, () => {
  let browser, site, siteOrigin;
  const open = []; // contexts and collectors of the running test, closed by cleanup()

  before(async () => {
    site = http.createServer((req, res) => {
      const u = new URL(req.url, 'http://x');
      res.writeHead(200, { 'Content-Type': 'text/html; charset=utf-8' })
        .end(page(+u.searchParams.get('collector'), u.searchParams.has('consent')));
    });
    await new Promise(r => site.listen(0, '127.0.0.1', r));
    siteOrigin = `http://127.0.0.1:${site.address().port}`;
    const { chromium } = await import('playwright-core');
    browser = await chromium.launch({ executablePath: CHROMIUM, args: ARGS });
  });
  after(async () => {
    await browser?.close();
    site?.close();
  });

  /** A fresh stub collector and a fresh browser context (empty storage) with the page loaded. */
  const setup = async ({ consent }) => {
    const col = await collector();
    const ctx = await browser.newContext();
    open.push(col, ctx); // closed in reverse: the page first
    await ctx.addInitScript(recorder);
    const p = await ctx.newPage();
    if (process.env.FF_DEBUG) p.on('console', m => console.log('console:', m.text()));
    p.setDefaultTimeout(15000);
    await p.goto(`${siteOrigin}/?collector=${col.port}${consent ? '&consent=1' : ''}`);
    // (without consent the first page view waits for the device block: up to ~5 s)
    const pv = await until(() => col.delivered(e => e.kind == 'pageview'), 'the first page view', 8000, col.summary);
    return { col, ctx, p, pv: pv.body };
  };
  const cleanup = async () => {
    for (const x of open.splice(0).reverse()) await (x.stop ? x.stop() : x.close()).catch(() => {});
  };
  const noPageErrors = async p => assert.deepEqual(await p.evaluate(() => window.__errors), [], 'no errors thrown into the page');

  for (const status of [503, 429]) {
    it(`${status} with Retry-After: 1 — the event waits in localStorage.ff_q and is delivered about 1 s later with its original ts/seq`, async () => {
      try {
        const { col, p } = await setup({ consent: true });
        col.answer = { status, retryAfter: '1' };
        await p.evaluate(() => footfall('event', 'checkout', { step: 1 }));

        // the collector refuses the event ...
        const first = await until(() => col.attempts('checkout')[0], 'the first attempt', 5000, col.summary);
        assert.equal(first.status, status);
        // ... and it is not lost: it waits in localStorage.ff_q, unchanged
        const queued = await until(async () => (await storedQueue(p))?.find(e => e.name == 'checkout'), 'the event in localStorage.ff_q');
        assert.deepEqual(queued, first.body);

        // while the collector keeps refusing, it is retried after Retry-After (1 s, not the 30 s
        // default) and goes back into the queue
        const second = await until(() => col.attempts('checkout')[1], 'the second attempt', 5000, col.summary);
        assert.equal(second.status, status);
        assert.deepEqual(second.body, first.body, 'the retry is the same event (same ts/seq)');
        const gap1 = second.rx - first.at;
        assert.ok(gap1 >= 900 && gap1 < 3000, `retried ${gap1} ms after the ${status} (Retry-After: 1)`);
        assert.deepEqual(await until(async () => (await storedQueue(p))?.find(e => e.name == 'checkout'), 'the event back in ff_q'), first.body);

        // once the collector accepts, the next retry (again ~1 s later) delivers it
        col.answer = { status: 202 };
        const ok = await until(() => col.attempts('checkout').find(a => a.status == 202), 'the delivery', 5000, col.summary);
        const lastRefusal = Math.max(...col.attempts('checkout').filter(a => a.status == status).map(a => a.at));
        const gap2 = ok.rx - lastRefusal;
        assert.ok(gap2 >= 900 && gap2 < 3000, `delivered ${gap2} ms after the last ${status} (Retry-After: 1)`);
        assert.deepEqual(ok.body, first.body, 'delivered with its original ts, seq and fields');
        assert.equal(ok.body.ts, first.body.ts); assert.equal(ok.body.seq, first.body.seq);

        // and the queue is empty: nothing in ff_q, no further attempt
        assert.equal(await storedQueue(p), null, 'localStorage.ff_q removed');
        await sleep(1500);
        assert.equal(col.posts.filter(a => a.status == 202 && key(a.body) == key(first.body)).length, 1, 'delivered exactly once');
        assert.equal(col.attempts('checkout').at(-1), ok, 'no attempt after the delivery');
        assert.equal(await storedQueue(p), null);
        await noPageErrors(p);
      } finally {
        await cleanup();
      }
    });
  }

  it('400 (even with Retry-After) is final: not queued, not retried, not resent on the next page load', async () => {
    try {
      const { col, p, pv } = await setup({ consent: true });
      col.answer = { status: 400, retryAfter: '1' };
      await p.evaluate(() => footfall('event', 'malformed'));
      const first = await until(() => col.attempts('malformed')[0], 'the attempt', 5000, col.summary);
      assert.equal(first.status, 400);

      await sleep(2500); // > Retry-After: a retry would have happened by now
      assert.equal(col.attempts('malformed').length, 1, 'no second POST');
      assert.equal(await storedQueue(p), null, 'localStorage.ff_q stays absent');

      col.answer = { status: 202 };
      await p.reload();
      await until(() => col.delivered(e => e.kind == 'pageview' && e.seq > pv.seq), 'the page view after the reload', 5000, col.summary);
      await sleep(800);
      assert.equal(col.attempts('malformed').length, 1, 'not resent on page load');
      await noPageErrors(p);
    } finally {
      await cleanup();
    }
  });

  it('network failure (collector down, page up): events wait in localStorage.ff_q and are delivered exactly once on the next page load', async () => {
    try {
      const { col, p, pv } = await setup({ consent: true });
      await col.stop(); // connection refused from now on
      await p.evaluate(() => { for (let i = 1; i <= 3; i++) footfall('event', 'offline', { i }); });

      const queued = await until(async () => {
        const q = await storedQueue(p);
        return q?.filter(e => e.name == 'offline').length == 3 && q;
      }, 'the 3 events in localStorage.ff_q');
      const offline = queued.filter(e => e.name == 'offline').sort((a, b) => a.seq - b.seq);
      assert.deepEqual(offline.map(e => e.props.i), [1, 2, 3]);
      assert.deepEqual(offline.map(e => e.sid), [pv.sid, pv.sid, pv.sid]);
      assert.equal(col.attempts('offline').length, 0, 'nothing reached the collector');

      await col.start(); // back, on the same port
      await p.reload();
      for (const e of offline) {
        const d = await until(() => col.delivered(x => key(x) == key(e)), `delivery of offline #${e.props.i}`, 5000, col.summary);
        assert.deepEqual(d.body, e, 'delivered as queued (original ts/seq)');
      }
      await until(() => col.delivered(e => e.kind == 'pageview' && e.seq > pv.seq), 'the page view after the reload', 5000, col.summary);
      await sleep(1000);
      for (const e of offline) assert.equal(col.posts.filter(a => key(a.body) == key(e)).length, 1, `offline #${e.props.i} delivered exactly once`);
      const keys = col.posts.map(a => key(a.body));
      assert.equal(new Set(keys).size, keys.length, `every sid+seq arrived exactly once (${keys})`);
      assert.equal(await storedQueue(p), null, 'localStorage.ff_q removed');
      await noPageErrors(p);
    } finally {
      await cleanup();
    }
  });

  it('the queue is bounded: 60 refused events keep the newest 50 in ff_q, and those 50 are delivered on the next page load', async () => {
    try {
      const { col, p, pv } = await setup({ consent: true });
      // spool full for an hour (no timed retry); the answers come back in a shuffled order, as they
      // may from parallel requests: the queue must still keep the newest events, not the last failures
      col.answer = { status: 503, retryAfter: '3600', delay: e => (e.props?.i ?? 0) * 37 % 60 * 4 };
      await p.evaluate(() => { for (let i = 1; i <= 60; i++) footfall('event', 'burst', { i }); });
      await until(() => col.attempts('burst').length == 60, 'all 60 attempts', 10000, () => `${col.attempts('burst').length} attempts`);

      // wait until the page has handled every answer (ff_q unchanged for 300 ms)
      let q = await storedQueue(p);
      for (const t0 = Date.now(); ; q = await storedQueue(p)) {
        await sleep(300);
        if (JSON.stringify(await storedQueue(p)) == JSON.stringify(q)) break;
        assert.ok(Date.now() - t0 < 5000, 'ff_q settles');
      }
      assert.equal(q.length, 50, 'at most 50 events');
      const is = q.map(e => e.props.i).sort((a, b) => a - b);
      assert.deepEqual(is, Array.from({ length: 50 }, (_, k) => k + 11), 'the newest 50 (#11…#60) are kept, #1…#10 dropped');

      col.answer = { status: 202 };
      await p.reload();
      await until(() => col.posts.filter(a => a.status == 202 && a.body.name == 'burst').length >= 50, '50 deliveries', 8000,
        () => `${col.posts.filter(a => a.status == 202 && a.body.name == 'burst').length} delivered`);
      await until(() => col.delivered(e => e.kind == 'pageview' && e.seq > pv.seq), 'the page view after the reload', 5000, col.summary);
      await sleep(1000);
      const delivered = col.posts.filter(a => a.status == 202 && a.body.name == 'burst').map(a => a.body);
      assert.deepEqual(delivered.map(e => e.props.i).sort((a, b) => a - b), is, 'exactly the 50 queued events, each once');
      for (const e of q) assert.deepEqual(delivered.find(d => key(d) == key(e)), e, 'with their original ts/seq');
      assert.equal(await storedQueue(p), null, 'localStorage.ff_q removed');
      await noPageErrors(p);
    } finally {
      await cleanup();
    }
  });

  it('without consent (storage level 1) the queue is in memory only: nothing in localStorage, still delivered after Retry-After in the same page', async () => {
    try {
      const { col, p } = await setup({ consent: false });
      await p.evaluate(() => { window.__samePage = true; });
      col.answer = { status: 503, retryAfter: '1' };
      await p.evaluate(() => footfall('event', 'in-memory'));
      const first = await until(() => col.attempts('in-memory')[0], 'the first attempt', 5000, col.summary);
      assert.equal(first.status, 503);

      // during the Retry-After window: no ff_q, in fact nothing at all in localStorage
      for (let k = 0; k < 10; k++, await sleep(50)) {
        const st = await p.evaluate(() => ({ local: Object.keys(localStorage), session: Object.keys(sessionStorage) }));
        assert.deepEqual(st, { local: [], session: ['ff_s'] }, 'level 1: session state only, the queue is not stored');
      }

      col.answer = { status: 202 };
      const ok = await until(() => col.attempts('in-memory').find(a => a.status == 202), 'the delivery', 5000, col.summary);
      const lastRefusal = Math.max(...col.attempts('in-memory').filter(a => a.status == 503).map(a => a.at));
      const gap = ok.rx - lastRefusal;
      assert.ok(gap >= 900 && gap < 3000, `delivered ${gap} ms after the last 503 (Retry-After: 1)`);
      assert.deepEqual(ok.body, first.body, 'delivered with its original ts/seq');
      assert.equal(await p.evaluate(() => window.__samePage), true, 'by the same page (no reload)');
      await sleep(1500);
      assert.equal(col.posts.filter(a => a.status == 202 && key(a.body) == key(first.body)).length, 1, 'delivered exactly once');
      assert.equal(col.attempts('in-memory').at(-1), ok, 'no attempt after the delivery');
      assert.equal(await p.evaluate(() => localStorage.getItem('ff_q')), null);
      await noPageErrors(p);
    } finally {
      await cleanup();
    }
  });
});
