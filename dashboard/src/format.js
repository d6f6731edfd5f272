// Pure helpers (no DOM): formatting, dates, URL-hash state. Unit-tested in test/unit.test.mjs.

const DAY_MS = 86400000;
const DATE_RE = /^(\d{4})-(\d{2})-(\d{2})$/;

const intFmt = new Intl.NumberFormat('en-US', { maximumFractionDigits: 0 });
const decFmt = new Intl.NumberFormat('en-US', { maximumFractionDigits: 2 });
const pctFmt = new Intl.NumberFormat('en-US', { maximumFractionDigits: 1 });

const isNum = v => typeof v == 'number' && Number.isFinite(v);

/** 1234567 -> "1,234,567"; 2.345 -> "2.35" (at most 2 decimals); non-numbers -> "–". */
export function formatNumber(v) {
  if (!isNum(v)) return '–';
  return Number.isInteger(v) ? intFmt.format(v) : decFmt.format(v);
}

/** Ratio 0..1 -> "12.3%" (at most one decimal); non-numbers -> "–". */
export function formatPercent(r) {
  if (!isNum(r)) return '–';
  return pctFmt.format(r * 100) + '%';
}

/** Seconds -> "42s", "1m 05s", "2h 03m"; non-numbers or negative -> "–". */
export function formatDuration(s) {
  if (!isNum(s) || s < 0) return '–';
  const t = Math.round(s);
  if (t < 60) return `${t}s`;
  const pad = n => String(n).padStart(2, '0');
  if (t < 3600) return `${Math.floor(t / 60)}m ${pad(t % 60)}s`;
  return `${Math.floor(t / 3600)}h ${pad(Math.floor(t % 3600 / 60))}m`;
}

/** "Text that is too long" -> "Text that…" (at most `max` characters including the ellipsis). */
export function truncate(s, max = 60) {
  s = String(s);
  if (s.length <= max) return s;
  return s.slice(0, Math.max(1, max - 1)) + '…';
}

/** Is "YYYY-MM-DD" a real calendar date? */
export function isDate(s) {
  const m = DATE_RE.exec(s || '');
  if (!m) return false;
  const d = new Date(Date.UTC(+m[1], +m[2] - 1, +m[3]));
  return d.getUTCFullYear() == +m[1] && d.getUTCMonth() == +m[2] - 1 && d.getUTCDate() == +m[3];
}

/** "YYYY-MM-DD" -> ms since the epoch at 00:00 UTC. */
export const dateToMs = s => Date.parse(s + 'T00:00:00Z');
/** ms since the epoch -> its UTC date "YYYY-MM-DD". */
export const msToDate = ms => new Date(ms).toISOString().slice(0, 10);
/** "YYYY-MM-DD" plus n days. */
export const addDays = (s, n) => msToDate(dateToMs(s) + n * DAY_MS);
/** Today's UTC date. */
export const todayUtc = (now = Date.now()) => msToDate(now);
/** Number of days from `from` to `to`, both included. */
export const daysInRange = (from, to) => Math.round((dateToMs(to) - dateToMs(from)) / DAY_MS) + 1;

export const PRESETS = [
  { id: 'today', label: 'Today', days: 1 },
  { id: '7d', label: '7 days', days: 7 },
  { id: '30d', label: '30 days', days: 30 },
  { id: '90d', label: '90 days', days: 90 }
];

/** The range of a preset ending today (UTC), both ends inclusive. */
export function presetRange(id, today) {
  const p = PRESETS.find(p => p.id == id);
  if (!p) throw new Error(`unknown preset ${id}`);
  return { from: addDays(today, 1 - p.days), to: today };
}

/** Which preset (if any) a range is, relative to today. */
export function presetOf(range, today) {
  for (const p of PRESETS) {
    const r = presetRange(p.id, today);
    if (r.from == range.from && r.to == range.to) return p.id;
  }
  return null;
}

/** "#site=shop&from=2026-11-01&to=2026-11-30" -> {site, from, to}; invalid or missing parts are omitted. */
export function parseHash(hash) {
  const q = new URLSearchParams(String(hash || '').replace(/^#/, ''));
  const out = {};
  const site = q.get('site');
  if (site) out.site = site;
  const from = q.get('from'), to = q.get('to');
  if (isDate(from) && isDate(to)) {
    if (from <= to) { out.from = from; out.to = to; } else { out.from = to; out.to = from; }
  }
  return out;
}

/** {site, from, to} -> "site=shop&from=…&to=…" (without "#"). */
export function buildHash({ site, from, to }) {
  const q = new URLSearchParams();
  if (site) q.set('site', site);
  if (from && to) { q.set('from', from); q.set('to', to); }
  return q.toString();
}

/**
 * Time-series rows -> uPlot data: one x value (seconds, 00:00 UTC) per day from `from` to `to`,
 * and one array per value column; days without a row are zeros. Rows outside the range are
 * ignored. `columns` names the row fields; `dayCol` is the date column.
 */
export function fillDays(columns, rows, from, to, dayCol = 'day') {
  const di = columns.indexOf(dayCol);
  const valueCols = columns.filter((_, i) => i != di);
  const n = Math.max(0, Math.min(daysInRange(from, to), 3660));
  const start = dateToMs(from);
  const xs = Array.from({ length: n }, (_, i) => (start + i * DAY_MS) / 1000);
  const series = valueCols.map(() => new Array(n).fill(0));
  for (const row of rows || []) {
    const i = Math.round((dateToMs(String(row[di]).slice(0, 10)) - start) / DAY_MS);
    if (!(i >= 0 && i < n)) continue;
    let k = 0;
    columns.forEach((_, c) => { if (c != di) { const v = row[c]; series[k++][i] = isNum(v) ? v : 0; } });
  }
  return { columns: valueCols, data: [xs, ...series] };
}

const LABELS = {
  visitors: 'Visitors', users: 'Users', sessions: 'Sessions', pageviews: 'Page views',
  views_per_session: 'Views per session', bounce_rate: 'Bounce rate', median_session_s: 'Median session',
  avg_engaged_s: 'Avg. engaged time', automated_share: 'Automated', day: 'Day', path: 'Page',
  entries: 'Entries', exits: 'Exits', target_host: 'Host', target_url: 'Link', clicks: 'Clicks',
  referrer_host: 'Referrer', channel: 'Channel', from_path: 'From', to_path: 'To',
  transitions: 'Transitions', country: 'Country', region_code: 'Code', region_name: 'Region',
  asn: 'ASN', as_org: 'Network', isp: 'ISP', browser: 'Browser', os: 'OS', device: 'Device',
  screen: 'Screen', language: 'Language', timezone: 'Time zone', arch: 'Architecture',
  bitness: 'Bits', signal: 'Signal', events: 'Events', share: 'Share', fingerprint_id: 'Fingerprint',
  fingerprints: 'Fingerprints', visitor_id: 'Visitor', user_id: 'User'
};

/** Column name -> header label ("some_column" -> "Some column" when unknown). */
export function columnLabel(col) {
  if (LABELS[col]) return LABELS[col];
  const s = String(col).replace(/_/g, ' ').trim();
  return s.charAt(0).toUpperCase() + s.slice(1);
}

/** How a column is formatted: "percent" (ratios 0..1), "duration" (seconds), "number", "id" or "text". */
export function columnKind(col) {
  if (/(^|_)(rate|share|ratio)$/.test(col)) return 'percent';
  if (/_s$/.test(col)) return 'duration';
  if (/(^|_)id$/.test(col) || col == 'asn') return 'id';
  return 'auto';
}

/** A cell value as text, by column. */
export function formatCell(col, v) {
  if (v === null || v === undefined || v === '') return '–';
  const kind = columnKind(col);
  if (isNum(v)) {
    if (kind == 'percent') return formatPercent(v);
    if (kind == 'duration') return formatDuration(v);
    if (kind == 'id') return String(v);
    return formatNumber(v);
  }
  return String(v);
}

/** Seconds to wait after a 429/503, from a Retry-After header (delta-seconds), clamped to 1…300. */
export function retryDelay(header, fallback = 5) {
  const n = Number(header);
  const s = header != null && header !== '' && Number.isFinite(n) ? n : fallback;
  return Math.min(300, Math.max(1, Math.round(s)));
}
