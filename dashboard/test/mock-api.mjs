// A small Node mock of the collector's stats API contract and of its /dashboard routes (serving
// dist/), with canned data, recorded requests and injectable faults. Used by test/browser.test.mjs.
//
// Run it by hand to look at the dashboard without a collector:
//   node test/mock-api.mjs [port]   -> prints the address and the token
import http from 'node:http';
import { readFileSync } from 'node:fs';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');

export const TOKEN = 'mock-stats-token-0123456789';
/** A token that authenticates but lacks the `stats` scope (answers 403). */
export const NO_SCOPE_TOKEN = 'mock-admin-only-token';
export const SITES = ['shop', 'demo'];
/** The CSP the mock sends with the page: the dashboard must work under it (no inline code/styles). */
export const CSP = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; " +
  "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'";

const q = (name, title, description, columns) => ({ name, title, description, columns });
export const QUERIES = [
  q('overview', 'Overview', 'Totals for the range.', ['visitors', 'users', 'sessions', 'pageviews', 'views_per_session', 'bounce_rate', 'median_session_s', 'avg_engaged_s', 'automated_share']),
  q('timeseries', 'Per day', 'Visitors, sessions and page views per day.', ['day', 'visitors', 'sessions', 'pageviews']),
  q('top_pages', 'Top pages', 'Pages by page views, with unique visitors.', ['path', 'pageviews', 'visitors']),
  q('entry_pages', 'Entry pages', 'First page of each session.', ['path', 'entries', 'bounce_rate']),
  q('exit_pages', 'Exit pages', 'Last page of each session.', ['path', 'exits']),
  q('outbound_links', 'Outbound links', 'Clicks on links to other sites.', ['path', 'target_host', 'target_url', 'clicks']),
  q('referrers', 'Referrers', 'Sessions by referring site.', ['referrer_host', 'channel', 'sessions']),
  q('channels', 'Channels', 'Sessions by channel.', ['channel', 'sessions']),
  q('navigation', 'Navigation', 'Page-to-page transitions.', ['from_path', 'to_path', 'transitions']),
  q('countries', 'Countries', 'Visitors by country.', ['country', 'visitors']),
  q('regions', 'Regions', 'Visitors by region.', ['country', 'region_code', 'region_name', 'visitors']),
  q('providers', 'Providers', 'Visitors by network.', ['asn', 'as_org', 'isp', 'visitors']),
  q('browsers', 'Browsers', 'Visitors by browser.', ['browser', 'visitors']),
  q('os', 'Operating systems', 'Visitors by OS.', ['os', 'visitors']),
  q('devices', 'Devices', 'Visitors by device type.', ['device', 'visitors']),
  q('screens', 'Screens', 'Visitors by screen size.', ['screen', 'visitors']),
  q('languages', 'Languages', 'Visitors by first browser language.', ['language', 'visitors']),
  q('timezones', 'Time zones', 'Visitors by time zone.', ['timezone', 'visitors']),
  q('cpu_architectures', 'CPU architectures', 'Visitors by CPU architecture.', ['arch', 'bitness', 'visitors']),
  q('automation', 'Automation', 'Events with automation signals.', ['signal', 'events', 'share']),
  q('fingerprints_multi_visitor', 'Shared fingerprints', 'Fingerprints seen with several visitor ids.', ['fingerprint_id', 'visitors', 'events']),
  q('visitors_multi_fingerprint', 'Changing fingerprints', 'Visitor ids seen with several fingerprints.', ['visitor_id', 'fingerprints', 'events']),
  q('sessions_per_user', 'Sessions per user', 'Identified users by sessions.', ['user_id', 'sessions', 'pageviews'])
];

export const XSS_PATH = '/search?q=<img src=x onerror="window.__xss=1">';
export const LONG_URL = 'https://docs.example.net/guides/getting-started/installation/with-a-very-long-path?utm_source=newsletter&utm_campaign=autumn';

/** Canned rows per site; the timeseries is generated from the requested range. */
export const DATA = {
  shop: {
    overview: [[1234, 56, 1500, 4321, 2.88, 0.4123, 65, 42.5, 0.031]],
    top_pages: [['/', 2100, 1100], ['/pricing', 1200, 800], ['/blog/launch', 700, 512], [XSS_PATH, 321, 300]],
    entry_pages: [['/', 900, 0.35], ['/pricing', 400, 0.5]],
    exit_pages: [['/checkout/done', 300], ['/', 250]],
    outbound_links: [['/docs', 'docs.example.net', LONG_URL, 42], ['/', 'github.com', 'https://github.com/example/footfall', 7]],
    referrers: [['news.example.org', 'referral', 210], ['www.google.com', 'search', 1180]],
    channels: [['direct', 800], ['search', 500], ['referral', 200]],
    navigation: [['/', '/pricing', 610], ['/pricing', '/signup', 230]],
    countries: [['DE', 600], ['FR', 300], ['US', 200]],
    regions: [['DE', 'BE', 'Berlin', 300], ['FR', 'IDF', 'Île-de-France', 250]],
    providers: [[3320, 'Deutsche Telekom AG', 'Telekom', 400], [12322, 'Free SAS', 'Free', 150]],
    browsers: [['Chrome', 700], ['Firefox', 300], ['Safari', 234]],
    os: [['Windows', 500], ['macOS', 400], ['Linux', 334]],
    devices: [['desktop', 900], ['mobile', 300], ['tablet', 34]],
    screens: [['1920x1080', 500], ['1440x900', 200]],
    languages: [['de-DE', 600], ['en-US', 400]],
    timezones: [['Europe/Berlin', 600], ['Europe/Paris', 300]],
    cpu_architectures: [['x86', '64', 1000], ['arm', '64', 234]],
    automation: [['any', 134, 0.031], ['webdriver', 100, 0.023]],
    fingerprints_multi_visitor: [['9f86d081884c7d65', 4, 30]],
    visitors_multi_fingerprint: [['0a1b2c3d4e5f60718293a4b5c6d7e8f9', 3, 12]],
    sessions_per_user: [] // empty state
  },
  demo: {
    overview: [[7, 0, 9, 20, 2.22, 0.5, 30, 12, 0]],
    top_pages: [['/', 12, 6], ['/about', 8, 4]],
    // more rows than the default limit (20): the panel offers "Show more"
    exit_pages: Array.from({ length: 25 }, (_, i) => [`/docs/page-${i + 1}`, 25 - i])
  }
};

/** One row per day of the range except every third day (missing days must show as zeros). */
export function timeseriesRows(site, from, to) {
  const rows = [], scale = site == 'shop' ? 10 : 1;
  for (let t = Date.parse(from + 'T00:00:00Z'), i = 0; t <= Date.parse(to + 'T00:00:00Z'); t += 86400000, i++) {
    if (i % 3 == 2) continue;
    const v = (i % 7 + 1) * scale;
    rows.push([new Date(t).toISOString().slice(0, 10), v, v + scale, 3 * v]);
  }
  return rows;
}

const DATE = /^\d{4}-\d{2}-\d{2}$/;
const addDays = (d, n) => new Date(Date.parse(d + 'T00:00:00Z') + n * 86400000).toISOString().slice(0, 10);

/**
 * Starts the mock on 127.0.0.1:port (0 = free port). Returns
 * { origin, requests, faults, close(), reset(), accept(token) } where `requests` records every
 * request ({method, path, params, auth, at}) and `faults` maps a query name to
 * { status, error, retryAfter, times } (times = how many answers to fault; Infinity = always).
 */
export async function startMock({ port = 0, now = () => Date.now() } = {}) {
  const requests = [];
  const faults = new Map();
  let accepted = TOKEN;
  const json = (res, status, body, headers = {}) => {
    res.writeHead(status, { 'Content-Type': 'application/json', 'Cache-Control': 'no-store', ...headers });
    res.end(JSON.stringify(body));
  };
  const file = (res, name, type, headers = {}) => {
    res.writeHead(200, { 'Content-Type': type, 'Cache-Control': 'no-cache', 'X-Content-Type-Options': 'nosniff', ...headers });
    res.end(readFileSync(join(root, 'dist', name)));
  };
  const server = http.createServer((req, res) => {
    const u = new URL(req.url, 'http://mock');
    const rec = { method: req.method, path: u.pathname, params: Object.fromEntries(u.searchParams), auth: req.headers.authorization ?? null, at: Date.now() };
    requests.push(rec);
    if (req.method != 'GET' && req.method != 'HEAD') return json(res, 405, { error: 'method not allowed' });
    if (u.pathname == '/dashboard' || u.pathname == '/dashboard/')
      return file(res, 'index.html', 'text/html; charset=utf-8', { 'Content-Security-Policy': CSP, 'Referrer-Policy': 'no-referrer' });
    if (u.pathname == '/dashboard/app.js') return file(res, 'app.js', 'text/javascript; charset=utf-8');
    if (u.pathname == '/dashboard/app.css') return file(res, 'app.css', 'text/css; charset=utf-8');
    if (!u.pathname.startsWith('/api/stats/')) return json(res, 404, { error: 'not found' });

    // auth
    const m = /^Bearer (.+)$/.exec(req.headers.authorization || '');
    if (!m || (m[1] != accepted && m[1] != NO_SCOPE_TOKEN))
      return json(res, 401, { error: m ? 'invalid token' : 'missing bearer token' }, { 'WWW-Authenticate': 'Bearer realm="footfall"' });
    if (m[1] == NO_SCOPE_TOKEN) return json(res, 403, { error: 'this token lacks the stats scope' });

    const name = decodeURIComponent(u.pathname.slice('/api/stats/'.length));
    if (name == 'sites') return json(res, 200, { sites: SITES });
    if (name == 'queries') return json(res, 200, { queries: QUERIES });
    const query = QUERIES.find(x => x.name == name);
    if (!query) return json(res, 404, { error: `unknown query ${name}` });

    const f = faults.get(name);
    if (f && f.times > 0) {
      f.times--;
      return json(res, f.status, { error: f.error || `injected ${f.status}` }, f.retryAfter != null ? { 'Retry-After': String(f.retryAfter) } : {});
    }
    const site = u.searchParams.get('site') || SITES[0];
    if (!SITES.includes(site)) return json(res, 400, { error: `unknown site ${site}` });
    const today = new Date(now()).toISOString().slice(0, 10);
    const to = u.searchParams.get('to') || today, from = u.searchParams.get('from') || addDays(to, -29);
    if (!DATE.test(from) || !DATE.test(to) || from > to) return json(res, 400, { error: 'from/to must be YYYY-MM-DD with from <= to' });
    const limit = u.searchParams.has('limit') ? Number(u.searchParams.get('limit')) : 20;
    if (!Number.isInteger(limit) || limit < 1 || limit > 1000) return json(res, 400, { error: 'limit must be 1..1000' });

    const rows = name == 'timeseries' ? timeseriesRows(site, from, to) : (DATA[site][name] || []);
    return json(res, 200, { query: name, site, from, to, columns: query.columns, rows: rows.slice(0, limit), elapsed_ms: 3 });
  });
  await new Promise(r => server.listen(port, '127.0.0.1', r));
  const origin = `http://127.0.0.1:${server.address().port}`;
  return {
    origin, requests, faults,
    accept(token) { accepted = token; },
    reset() { requests.length = 0; faults.clear(); accepted = TOKEN; },
    close: () => new Promise(r => { server.closeAllConnections?.(); server.close(() => r()); })
  };
}

if (process.argv[1] && fileURLToPath(import.meta.url) == process.argv[1]) {
  const mock = await startMock({ port: Number(process.argv[2] || 0) });
  console.log(`mock stats API: ${mock.origin}/dashboard  token: ${TOKEN}`);
}
