// footfall browser beacon. See PROTOCOL.md for the wire format and behaviour.
import { rid, touch, outbound, props, qpush, retryAfter } from './lib.js';
import { collect, W, N, D, T } from './device.js';

T(() => {
  const L = 'localStorage', S = 'sessionStorage', sc = D.currentScript, ds = sc.dataset, site = ds.site;
  const pre = W.footfall, loc = location;
  if (!site || pre?.ff) return;
  const origin = new URL(sc.src).origin, API = origin + '/api/event';
  const yes = k => ds[k] == 'true', now = Date.now;
  const on = (t, f, o) => (o || W).addEventListener(t, f, true);
  // storage: st(store, key) reads JSON, st(store, key, falsy) removes, st(store, key, v) writes
  // (Storage named properties: a missing key reads as undefined, JSON.parse throws -> undefined;
  // W[s] is read inside T: the getter throws where storage is blocked)
  const st = (s, k, v) => T((o = W[s]) => v === undefined ? JSON.parse(o[k]) : v ? o[k] = JSON.stringify(v) : delete o[k]);

  const gpc = !!N.globalPrivacyControl, dnt = N.doNotTrack == '1';
  const blocked = yes('respectDnt') && (gpc || dnt), req = yes('consentRequired');
  let c = st(L, 'ff_c') || {}; // consent {a: analytics, f: fingerprint}; undefined = unset
  // storage level: 0 memory only, 1 sessionStorage, 2 sessionStorage + localStorage
  const lvl = () => blocked || c.a === false || (req && !c.a) ? 0 : c.a ? 2 : 1;
  const fpOK = () => !blocked && c.a !== false && c.f !== false && (!req || c.f === true);

  let s = (lvl() && (st(S, 'ff_s') || st(L, 'ff_s'))) || {}; // {i: sid, n: seq, t: last, p: prev, u: uid, x: ports sid}
  let q = st(L, 'ff_q') || [], hold, dev, rt, started;
  const save = () => {
    const l = lvl();
    st(S, 'ff_s', l && s); st(L, 'ff_s', l > 1 && s); st(L, 'ff_q', l > 1 && q.length && q);
    st(L, 'ff_id', l > 1 && (st(L, 'ff_id') || rid()));
  };

  const href = () => yes('hash') ? loc.href : loc.href.split('#')[0];
  let cur = href();

  const ev = (kind, x, keep) => {
    touch(s, now(), keep);
    const e = {
      v: 1, site, kind, url: cur, sid: s.i, seq: s.n, ts: now(), uid: s.u, cid: st(L, 'ff_id'),
      consent: c.a ? 'granted' : c.a === false ? 'denied' : 'unset', gpc, dnt, ...x
    };
    if (kind == 'pageview') {
      e.title = D.title; e.prev = s.p; s.p = cur;
      if (dev && fpOK()) e.device = dev, dev = 0; // once per page load
    }
    save();
    return e;
  };

  // transport: fetch keepalive normally (status visible), sendBeacon when the page goes away
  const tx = (e, beacon) => {
    const body = JSON.stringify(e);
    if (!(beacon && N.sendBeacon?.(API, body))) fetch(API, { method: 'POST', body, keepalive: true }).then(r => {
      if (r.status == 429 || r.status == 503) {
        clearTimeout(rt); rt = setTimeout(flush, retryAfter(r.headers.get('Retry-After')));
        throw 0; // -> retry queue, like a network failure
      }
    }).catch(() => save(qpush(q, e)));
  };
  // (always called without arguments, also by setTimeout; save() runs after the splice)
  const flush = (a = q.splice(0)) => a.map(e => tx(e), save());
  const out = (e, beacon) => hold ? hold.push([e, beacon]) : T(() => tx(e, beacon));
  // (hold = null is evaluated before map runs, so out() sends instead of queueing again)
  const release = (beacon, h = hold) => h?.map(x => out(x[0], beacon || x[1]), hold = null);

  // device fingerprint: after load, once per page load
  const go = () => T(() => collect(yes('fontList')).then(d => {
    if (hold && fpOK()) hold[0][0].device = d; else dev = d; // else: next pageview
  }).then(release, release));
  const fp = () => started || !fpOK() || (started = 1, D.readyState == 'complete' ? go() : on('load', go));

  // engagement: visible AND focused time, plus wall time, per page view (sent as deltas)
  let eng = 0, es = 0, ws = now(), dirty = 1;
  const tick = () => {
    const n = now();
    if (es) eng += n - es;
    es = !D.hidden && D.hasFocus() ? n : 0;
  };
  const engage = beacon => {
    tick();
    if (dirty) out(ev('engagement', { engaged_ms: eng, wall_ms: now() - ws }, 1), beacon);
    eng = 0; ws = now(); dirty = 0;
    if (es) es = ws; // engaged time restarts at the same instant as wall time
  };
  const hide = () => engage(1, release(1));
  on('visibilitychange', () => D.hidden ? hide() : (tick(), dirty = 1), D);
  on('pagehide', hide);
  on('focus', tick); on('blur', tick);
  tick();

  // SPA routes
  const route = (u = href()) => {
    if (u != cur) { engage(); cur = u; dirty = 1; tick(); out(ev('pageview')); }
  };
  const later = () => setTimeout(route);
  ["pushState", "replaceState"].map(m => {
    const o = history[m];
    history[m] = function () { later(); return o.apply(this, arguments); };
  });
  on('popstate', later); // also fires for #fragment navigations

  // exit points: left click / keyboard Enter (click), middle click (auxclick), modifiers included
  const click = e => {
    const l = e.button < 2 && e.target.closest?.('a[href]'); // not right-click
    const u = l && outbound(l, loc.host);
    if (u) out(ev('outbound', { target: u }), 1);
  };
  on('click', click, D); on('auxclick', click, D);

  // optional ports script: identified users, fingerprint allowed, once per session
  const ports = () => {
    if (ds.ports && s.u && fpOK() && s.x != s.i) {
      s.x = s.i; save();
      D.head.appendChild(D.createElement('script')).src = origin + '/footfall-ports.js';
    }
  };
  const cmd = {
    identify: id => { s.u = id ? String(id).slice(0, 256) : undefined; save(); ports(); },
    consent: o => { c = { a: o.analytics, f: o.fingerprint }; st(L, 'ff_c', c); save(); fp(); ports(); },
    event: (n, p) => { n = String(n).slice(0, 64); if (n) out(ev('custom', { name: n, props: props(p) })); }
  };
  const api = W.footfall = (k, ...a) => T(() => cmd[k](...a));
  api.ff = 1;
  const queued = [...pre?.q || []];
  queued.map(a => a[0] != 'event' && api(...a));
  const first = ev('pageview', { ref: D.referrer || undefined });
  if (fpOK()) { hold = [[first]]; fp(); setTimeout(release, 5000); } else out(first);
  queued.map(a => a[0] != 'event' || api(...a));
  flush();
});
