// Unit tests for the pure pieces in src/lib.js (no browser needed).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { hash, rid, arch, touch, TTL, outbound, props, qpush, retryAfter, portList } from '../src/lib.js';

test('hash = FNV-1a 64 (reference vectors), lowercase hex', () => {
  assert.equal(hash(''), 'cbf29ce484222325');
  assert.equal(hash('a'), 'af63dc4c8601ec8c');
  assert.equal(hash('foobar'), '85944171f73967e8');
  assert.match(hash('data:image/png;base64,iVBORw0KGgo='), /^[0-9a-f]{16}$/);
  assert.notEqual(hash('Arial,Calibri'), hash('Arial,Calibri,'));
});

test('rid: >= 16 chars of [0-9a-z], unique', () => {
  const ids = new Set(Array.from({ length: 200 }, rid));
  assert.equal(ids.size, 200);
  for (const id of ids) assert.match(id, /^[0-9a-z]{16,64}$/);
});

test('arch fallback parsing', () => {
  const mac = 'Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36';
  const cases = [
    [['Linux x86_64', ''], ['x86', '64', 'platform']],
    [['Linux aarch64', ''], ['arm', '64', 'platform']],
    [['Linux armv7l', ''], ['arm', '32', 'platform']],
    [['Linux armv8l', ''], ['arm', '32', 'platform']],
    [['Linux i686', ''], ['x86', '32', 'platform']],
    [['iPhone', ''], ['arm', '64', 'platform']],
    [['Win32', 'Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36'], ['x86', '64', 'ua']],
    [['Win32', 'Mozilla/5.0 (Windows NT 10.0; WOW64; rv:52.0) Gecko/20100101'], ['x86', '64', 'ua']],
    [['Win32', 'Mozilla/5.0 (Windows NT 10.0; ARM64)'], ['arm', '64', 'ua']],
    [['MacIntel', mac, 'ANGLE (Apple, ANGLE Metal Renderer: Apple M2, Unspecified Version)'], ['arm', '64', 'webgl']],
    [['MacIntel', mac, 'Apple GPU'], ['', '', '']],
    [['', '', undefined], ['', '', '']],
    [[undefined, undefined, undefined], ['', '', '']]
  ];
  for (const [args, want] of cases) assert.deepEqual(arch(...args), want, JSON.stringify(args));
});

test('session: new sid after 30 min inactivity, seq increments, prev reset', () => {
  const s = {};
  touch(s, 1000);
  assert.equal(s.n, 1); assert.match(s.i, /^[0-9a-z]{16,}$/);
  const sid = s.i;
  s.p = 'https://shop.example/a';
  touch(s, 1000 + TTL); // exactly 30 min: still the same session
  assert.equal(s.i, sid); assert.equal(s.n, 2); assert.equal(s.p, 'https://shop.example/a');
  touch(s, 1000 + 2 * TTL + 1); // > 30 min since last activity
  assert.notEqual(s.i, sid); assert.equal(s.n, 1); assert.equal(s.p, '');
  const sid2 = s.i;
  touch(s, 1000 + 4 * TTL, true); // engagement keeps the page view's session
  assert.equal(s.i, sid2); assert.equal(s.n, 2);
});

test('outbound link detection', () => {
  const o = h => outbound(new URL(h), 'shop.example');
  assert.equal(o('https://other.example/x?q=1'), 'https://other.example/x?q=1');
  assert.equal(o('http://sub.shop.example/'), 'http://sub.shop.example/');
  assert.equal(o('https://shop.example:8443/'), 'https://shop.example:8443/');
  assert.equal(o('https://shop.example/p'), false);
  assert.equal(o('mailto:a@b.c'), false);
  assert.equal(o('javascript:void(0)'), false);
  assert.equal(o('tel:+123'), false);
});

test('custom-event prop limits', () => {
  const p = { plan: 'pro', n: 2, ok: false, s: 'x'.repeat(300), ['k'.repeat(80)]: 1,
    nan: NaN, inf: Infinity, nul: null, obj: {}, arr: [], und: undefined, sym: Symbol('s'), big: 1n, fn() {} };
  for (let i = 0; i < 30; i++) p['z' + i] = i;
  const r = props(p);
  assert.equal(Object.keys(r).length, 16);
  assert.equal(r.plan, 'pro'); assert.equal(r.n, 2); assert.equal(r.ok, false);
  assert.equal(r.s.length, 256); assert.equal(r['k'.repeat(64)], 1);
  for (const k of ['nan', 'inf', 'nul', 'obj', 'arr', 'und', 'sym', 'big', 'fn']) assert.ok(!(k in r), k);
  assert.deepEqual(props(undefined), {}); assert.deepEqual(props(null), {});
});

test('retry queue is bounded to the newest 50', () => {
  const q = [];
  for (let i = 0; i < 120; i++) qpush(q, { seq: i });
  assert.equal(q.length, 50); assert.equal(q[0].seq, 70); assert.equal(q[49].seq, 119);
});

test('retry queue keeps the newest 50 by creation (ts, seq), whatever order the failures come back in', () => {
  // 60 events created in two milliseconds, failing in a shuffled order (parallel requests)
  const evs = Array.from({ length: 60 }, (_, i) => ({ ts: 1000 + (i >= 30), seq: i + 1 }));
  const order = evs.map((e, i) => [(i * 37) % 60, e]).sort((a, b) => a[0] - b[0]).map(x => x[1]);
  const q = [];
  for (const e of order) qpush(q, e);
  assert.deepEqual(q.map(e => e.seq).sort((a, b) => a - b), Array.from({ length: 50 }, (_, i) => i + 11));
  // an older session's events (earlier ts, higher seq) are older than a new session's
  const r = [];
  for (let i = 1; i <= 50; i++) qpush(r, { ts: i, seq: 100 + i });
  qpush(r, { ts: 5000, seq: 1 });
  assert.equal(r.length, 50); assert.equal(r[0].seq, 102); assert.deepEqual(r.at(-1), { ts: 5000, seq: 1 });
});

test('Retry-After parsing', () => {
  assert.equal(retryAfter('120'), 120000);
  assert.equal(retryAfter(null), 30000);
  assert.equal(retryAfter('Wed, 21 Oct 2015 07:28:00 GMT'), 30000);
  assert.equal(retryAfter('999999'), 3600000);
  assert.equal(retryAfter('-5'), 1000);
});

test('ports list parsing', () => {
  assert.deepEqual(portList('3389,5900, 5938,6568,7070'), [3389, 5900, 5938, 6568, 7070]);
  assert.deepEqual(portList('0,70000,abc,3389,3389,1.5'), [3389]);
  assert.deepEqual(portList(undefined), []);
  assert.equal(portList(Array.from({ length: 40 }, (_, i) => 1000 + i).join()).length, 16);
});
