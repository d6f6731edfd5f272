// Known traffic for the end-to-end test (test/e2e.test.mjs) and its answers, written once here.
// The beacons follow tracker-js/PROTOCOL.md (v1); they are POSTed to /api/event as text/plain with
// each visitor's User-Agent and X-Forwarded-For (the collector trusts 127.0.0.1 as a proxy in the
// test), so the three visitors get three cookieless visitor ids.
//
// test/unit.test.mjs re-derives EXPECTED from SESSIONS, so the two cannot drift apart.

export const SITE = 'shop';
/** The page origin the beacons claim (any 127.0.0.1 port is allowed for `shop` in the test). */
export const PAGE_ORIGIN = 'http://127.0.0.1:5173';

const chrome = platform => `Mozilla/5.0 (${platform}) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36`;
export const VISITORS = [
  { ip: '203.0.113.10', ua: chrome('Windows NT 10.0; Win64; x64'), lang: 'de-DE,de;q=0.9,en;q=0.8' },
  { ip: '198.51.100.20', ua: chrome('Macintosh; Intel Mac OS X 10_15_7'), lang: 'fr-FR,fr;q=0.9' },
  { ip: '192.0.2.30', ua: chrome('X11; Linux x86_64'), lang: 'en-US,en;q=0.9' }
];

/** 4 sessions of 3 visitors; `pages` in visit order (each page view has `prev` = the page before). */
export const SESSIONS = [
  { visitor: 0, sid: 'seedsession0000000000000a1', pages: ['/', '/pricing', '/signup'], ref: 'https://news.example.org/item?id=1',
    outbound: { on: '/signup', target: 'https://docs.example.com/start' } },
  { visitor: 0, sid: 'seedsession0000000000000a2', pages: ['/pricing'], uid: 'seed-user-1' },
  { visitor: 1, sid: 'seedsession0000000000000b1', pages: ['/', '/pricing'] },
  { visitor: 2, sid: 'seedsession0000000000000c1', pages: ['/blog/hello'] }
];

export const TITLES = { '/': 'Home', '/pricing': 'Pricing', '/signup': 'Sign up', '/blog/hello': 'Hello' };

/** The answers the dashboard must show for SESSIONS (whole range around today). */
export const EXPECTED = {
  visitors: 3,
  sessions: 4,
  pageviews: 7,
  users: 1,
  topPage: { path: '/pricing', pageviews: 3, visitors: 2 },
  entryPage: { path: '/', entries: 2 },
  navigation: { from_path: '/', to_path: '/pricing', transitions: 2 },
  outbound: { path: '/signup', target_host: 'docs.example.com', clicks: 1 },
  referrer: { referrer_host: 'news.example.org', sessions: 1 }
};

/**
 * The beacons to send, in order: [{ visitor, body }]. Page views with an engagement event after
 * each one, the outbound click before the engagement of its page. Client timestamps start
 * 10 minutes before `now`, one second apart; sessions never overlap the 30-minute timeout.
 */
export function seedBeacons(now = Date.now(), origin = PAGE_ORIGIN) {
  const out = [];
  let ts = now - 10 * 60 * 1000;
  for (const s of SESSIONS) {
    let seq = 0, prev = '';
    const base = () => ({
      v: 1, site: SITE, sid: s.sid, seq: ++seq, ts: (ts += 1000), consent: 'unset', gpc: false, dnt: false,
      ...(s.uid ? { uid: s.uid } : {})
    });
    s.pages.forEach((path, i) => {
      const url = origin + path;
      out.push({ visitor: s.visitor, body: { ...base(), kind: 'pageview', url, title: TITLES[path], prev, ...(i == 0 && s.ref ? { ref: s.ref } : {}) } });
      if (s.outbound && s.outbound.on == path) out.push({ visitor: s.visitor, body: { ...base(), kind: 'outbound', url, target: s.outbound.target } });
      out.push({ visitor: s.visitor, body: { ...base(), kind: 'engagement', url, engaged_ms: 4000 + 1000 * i, wall_ms: 5000 + 1000 * i } });
      prev = url;
    });
  }
  return out;
}

/** Request headers for a visitor's beacon. */
export function seedHeaders(visitor, origin = PAGE_ORIGIN) {
  const v = VISITORS[visitor];
  return {
    'Content-Type': 'text/plain;charset=UTF-8', Origin: origin, Referer: origin + '/',
    'User-Agent': v.ua, 'Accept-Language': v.lang, 'X-Forwarded-For': v.ip
  };
}
