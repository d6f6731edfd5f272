// Pure helpers shared by the beacon and the ports script. No DOM access here:
// everything in this file is unit-tested in Node (test/unit.test.mjs).

/**
 * FNV-1a 64-bit, computed with two 32-bit halves (exact), as 16 lowercase hex chars.
 * Hashes UTF-16 code units. prime = 2^40 + 435, so h * prime = h * 435 + (lo << 40).
 * Self-contained (no outer references): its source text is also copied into the device worker.
 */
export const hash = s => {
  let h = 0xcbf29ce4, l = 0x84222325, i = 0, t;
  for (; i < s.length; i++) {
    l = (l ^ s.charCodeAt(i)) >>> 0;
    t = l * 435;
    h = Math.imul(h, 435) + (l << 8) + (t / 2 ** 32 | 0) >>> 0;
    l = t >>> 0;
  }
  return [h, l].map(n => (n + 2 ** 32).toString(16).slice(1)).join('');
};

/** Random id: ~26 chars of [0-9a-z] (128 bits) from crypto.getRandomValues. */
export const rid = () => [].map.call(crypto.getRandomValues(new Uint32Array(4)), n => n.toString(36)).join('');

/**
 * Fallback CPU-architecture guess from navigator.platform, then the UA string, then the WebGL
 * renderer (Apple M-series): [arch, bits, src]; all '' when unknown.
 */
export const arch = (...a) => { // (platform, ua, renderer)
  for (const i in a) {
    const m = /(x86[-_]64|x64|amd64|wow64)|(aarch64|arm64|iphone|ipad|apple m\d)|(i[3-6]86)|(arm)/i.exec(a[i]);
    if (m) return [m[1] || m[3] ? 'x86' : 'arm', m[3] || m[4] ? '32' : '64', ['platform', 'ua', 'webgl'][i]];
  }
  return ['', '', ''];
};

export const TTL = 30 * 60 * 1000;

/**
 * Advance session state s = {i: sid, n: seq, t: last activity ms, p: prev url, u: uid}.
 * Starts a new session when none exists or after TTL of inactivity (unless `keep`,
 * used for engagement events that belong to the current page view).
 */
export const touch = (s, now, keep) => {
  if (!s.i || (!keep && now - s.t > TTL)) { s.i = rid(); s.n = 0; s.p = ''; }
  s.n++; s.t = now;
};

/**
 * Outbound-link test. `a` is anything with href/protocol/host (an <a> element or a URL object);
 * returns the absolute target URL when it is http(s) on another host than `host`, else false.
 */
export const outbound = (a, host) => /^https?:$/.test(a.protocol) && a.host != host && a.href;

/** Custom-event props: <= 16 keys, key <= 64 chars, value string <= 256 / finite number / boolean. */
export const props = o => {
  const r = {};
  let n = 0, k, v, t;
  for (k in o)
    if (n < 16 && /^(st|bo|nu)/.test(t = typeof (v = o[k])) && isFinite(t < 'o' ? v : 0))
      r[k.slice(0, 64)] = t < 'o' ? v : v.slice(0, 256), n++;
  return r;
};

/**
 * Bounded retry queue: keeps the newest 50 events by creation (ts, then seq), not the 50 that
 * failed last: failures of parallel requests come back in any order. Sorted only on overflow.
 */
export const qpush = (q, e) => q.push(e) > 50 && q.sort((a, b) => a.ts - b.ts || a.seq - b.seq).shift();

/** Retry-After header (delta-seconds) -> ms, clamped to [1 s, 1 h]; absent/0/HTTP-date -> 30 s. */
export const retryAfter = h => Math.min(Math.max(parseInt(h) * 1000 || 30000, 1000), 3600000);

/** data-ports="3389,5900" -> [3389, 5900] (valid TCP ports, max 16, deduplicated). */
export const portList = s => [...new Set(String(s || '').split(',').map(Number))]
  .filter(p => p > 0 && p < 65536 && p % 1 == 0).slice(0, 16);
