// Unit tests of the pure helpers in src/format.js (no browser).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  formatNumber, formatPercent, formatDuration, truncate, isDate, addDays, todayUtc, daysInRange,
  presetRange, presetOf, parseHash, buildHash, fillDays, columnLabel, columnKind, formatCell, retryDelay
} from '../src/format.js';

test('formatNumber: thousands separators, at most two decimals, dash for non-numbers', () => {
  assert.equal(formatNumber(0), '0');
  assert.equal(formatNumber(999), '999');
  assert.equal(formatNumber(1000), '1,000');
  assert.equal(formatNumber(1234567), '1,234,567');
  assert.equal(formatNumber(-45678), '-45,678');
  assert.equal(formatNumber(2.345), '2.35');
  assert.equal(formatNumber(2.5), '2.5');
  assert.equal(formatNumber(12345.678), '12,345.68');
  for (const v of [null, undefined, NaN, Infinity, '12', {}]) assert.equal(formatNumber(v), '–', String(v));
});

test('formatPercent: ratio 0..1 as percent with at most one decimal', () => {
  assert.equal(formatPercent(0), '0%');
  assert.equal(formatPercent(1), '100%');
  assert.equal(formatPercent(0.5), '50%');
  assert.equal(formatPercent(0.123), '12.3%');
  assert.equal(formatPercent(0.12345), '12.3%');
  assert.equal(formatPercent(0.0049), '0.5%');
  assert.equal(formatPercent(1 / 3), '33.3%');
  assert.equal(formatPercent(null), '–');
  assert.equal(formatPercent('0.5'), '–');
});

test('formatDuration: seconds, minutes with padded seconds, hours with padded minutes', () => {
  assert.equal(formatDuration(0), '0s');
  assert.equal(formatDuration(0.4), '0s');
  assert.equal(formatDuration(42), '42s');
  assert.equal(formatDuration(59.4), '59s');
  assert.equal(formatDuration(59.6), '1m 00s');
  assert.equal(formatDuration(65), '1m 05s');
  assert.equal(formatDuration(600), '10m 00s');
  assert.equal(formatDuration(3599), '59m 59s');
  assert.equal(formatDuration(3600), '1h 00m');
  assert.equal(formatDuration(7384), '2h 03m');
  assert.equal(formatDuration(-1), '–');
  assert.equal(formatDuration(null), '–');
  assert.equal(formatDuration(NaN), '–');
});

test('truncate: keeps short strings, cuts long ones to max characters with an ellipsis', () => {
  assert.equal(truncate('abc', 5), 'abc');
  assert.equal(truncate('abcde', 5), 'abcde');
  assert.equal(truncate('abcdef', 5), 'abcd…');
  const long = 'https://example.com/' + 'x'.repeat(100);
  assert.equal(truncate(long).length, 60);
  assert.ok(truncate(long).startsWith('https://example.com/xx'));
});

test('dates: validation, arithmetic across months, years and leap days', () => {
  assert.ok(isDate('2026-11-30'));
  assert.ok(isDate('2028-02-29'));
  for (const s of ['2026-02-29', '2026-13-01', '2026-11-31', '2026-1-01', '26-11-01', '', null, '2026-11-30T00:00'])
    assert.equal(isDate(s), false, String(s));
  assert.equal(addDays('2026-11-30', 1), '2026-12-01');
  assert.equal(addDays('2026-12-31', 1), '2027-01-01');
  assert.equal(addDays('2028-03-01', -1), '2028-02-29');
  assert.equal(addDays('2026-03-29', 1), '2026-03-30'); // no DST effects (UTC)
  assert.equal(daysInRange('2026-11-01', '2026-11-30'), 30);
  assert.equal(daysInRange('2026-11-30', '2026-11-30'), 1);
  assert.equal(todayUtc(Date.UTC(2026, 10, 30, 23, 59, 59)), '2026-11-30');
  assert.equal(todayUtc(Date.UTC(2026, 11, 1, 0, 0, 0)), '2026-12-01');
});

test('presets: inclusive ranges ending today', () => {
  const today = '2026-11-30';
  assert.deepEqual(presetRange('today', today), { from: '2026-11-30', to: '2026-11-30' });
  assert.deepEqual(presetRange('7d', today), { from: '2026-11-24', to: '2026-11-30' });
  assert.deepEqual(presetRange('30d', today), { from: '2026-11-01', to: '2026-11-30' });
  assert.deepEqual(presetRange('90d', today), { from: '2026-09-02', to: '2026-11-30' });
  assert.deepEqual(presetRange('7d', '2026-03-02'), { from: '2026-02-24', to: '2026-03-02' });
  for (const id of ['today', '7d', '30d', '90d']) {
    const r = presetRange(id, today);
    assert.equal(daysInRange(r.from, r.to), { today: 1, '7d': 7, '30d': 30, '90d': 90 }[id]);
    assert.equal(presetOf(r, today), id);
  }
  assert.equal(presetOf({ from: '2026-11-02', to: '2026-11-30' }, today), null);
  assert.throws(() => presetRange('1y', today));
});

test('hash state: parse, validate, swap reversed ranges, round-trip', () => {
  assert.deepEqual(parseHash('#site=shop&from=2026-11-01&to=2026-11-30'), { site: 'shop', from: '2026-11-01', to: '2026-11-30' });
  assert.deepEqual(parseHash('site=shop'), { site: 'shop' });
  assert.deepEqual(parseHash(''), {});
  assert.deepEqual(parseHash(undefined), {});
  assert.deepEqual(parseHash('#from=2026-11-01'), {}, 'a range needs both ends');
  assert.deepEqual(parseHash('#site=a&from=2026-11-31&to=2026-12-01'), { site: 'a' }, 'invalid date dropped');
  assert.deepEqual(parseHash('#from=2026-11-30&to=2026-11-01'), { from: '2026-11-01', to: '2026-11-30' }, 'reversed range swapped');
  assert.deepEqual(parseHash('#site=my%20site%26x&from=2026-11-01&to=2026-11-02'), { site: 'my site&x', from: '2026-11-01', to: '2026-11-02' });
  const s = { site: 'a b&c=d', from: '2026-01-01', to: '2026-01-31' };
  assert.equal(buildHash({ site: 'shop', from: '2026-11-01', to: '2026-11-30' }), 'site=shop&from=2026-11-01&to=2026-11-30');
  assert.deepEqual(parseHash('#' + buildHash(s)), s);
  assert.equal(buildHash({ site: 'shop' }), 'site=shop');
});

test('fillDays: one point per day, missing days are zeros, out-of-range rows ignored', () => {
  const cols = ['day', 'visitors', 'sessions', 'pageviews'];
  const rows = [
    ['2026-11-02', 5, 6, 10],
    ['2026-10-31', 99, 99, 99], // before the range
    ['2026-11-04', 1, 1, 3],
    ['2026-11-09', 7, 7, 7] // after the range
  ];
  const { columns, data } = fillDays(cols, rows, '2026-11-01', '2026-11-05');
  assert.deepEqual(columns, ['visitors', 'sessions', 'pageviews']);
  assert.deepEqual(data[0], [0, 1, 2, 3, 4].map(i => Date.UTC(2026, 10, 1 + i) / 1000));
  assert.deepEqual(data[1], [0, 5, 0, 1, 0]);
  assert.deepEqual(data[2], [0, 6, 0, 1, 0]);
  assert.deepEqual(data[3], [0, 10, 0, 3, 0]);
  // no rows at all: all zeros, day column anywhere, null values are zeros
  const empty = fillDays(cols, [], '2026-11-30', '2026-12-01');
  assert.deepEqual(empty.data, [[Date.UTC(2026, 10, 30) / 1000, Date.UTC(2026, 11, 1) / 1000], [0, 0], [0, 0], [0, 0]]);
  const other = fillDays(['pageviews', 'day'], [[4, '2026-11-30'], [null, '2026-12-01']], '2026-11-30', '2026-12-01');
  assert.deepEqual(other.columns, ['pageviews']);
  assert.deepEqual(other.data[1], [4, 0]);
  assert.equal(fillDays(cols, [], '2026-01-01', '2026-03-31').data[0].length, 90);
});

test('column labels and cell formatting by column kind', () => {
  assert.equal(columnLabel('pageviews'), 'Page views');
  assert.equal(columnLabel('bounce_rate'), 'Bounce rate');
  assert.equal(columnLabel('some_new_column'), 'Some new column');
  assert.equal(columnKind('bounce_rate'), 'percent');
  assert.equal(columnKind('automated_share'), 'percent');
  assert.equal(columnKind('share'), 'percent');
  assert.equal(columnKind('median_session_s'), 'duration');
  assert.equal(columnKind('visitor_id'), 'id');
  assert.equal(columnKind('visitors'), 'auto');
  assert.equal(formatCell('bounce_rate', 0.4567), '45.7%');
  assert.equal(formatCell('median_session_s', 65), '1m 05s');
  assert.equal(formatCell('pageviews', 12345), '12,345');
  assert.equal(formatCell('asn', 13335), '13335', 'ids get no thousands separators');
  assert.equal(formatCell('path', '/a<b>'), '/a<b>');
  assert.equal(formatCell('path', ''), '–');
  assert.equal(formatCell('path', null), '–');
});

test('retryDelay: Retry-After seconds clamped to 1..300, fallback when absent or not a number', () => {
  assert.equal(retryDelay('7'), 7);
  assert.equal(retryDelay('0'), 1);
  assert.equal(retryDelay('100000'), 300);
  assert.equal(retryDelay(null), 5);
  assert.equal(retryDelay(''), 5);
  assert.equal(retryDelay('Wed, 21 Oct 2015 07:28:00 GMT'), 5);
  assert.equal(retryDelay(null, 60), 60);
});

test('e2e seed: EXPECTED follows from SESSIONS, and the beacons are well-formed', async () => {
  const { SESSIONS, VISITORS, EXPECTED, seedBeacons, seedHeaders, SITE, PAGE_ORIGIN } = await import('./seed.mjs');
  const count = (xs, key) => xs.reduce((m, x) => (m.set(key(x), (m.get(key(x)) || 0) + 1), m), new Map());
  const top = m => [...m].sort((a, b) => b[1] - a[1]);
  const views = SESSIONS.flatMap(s => s.pages.map(p => ({ p, v: s.visitor })));
  const [topPath, topViews] = top(count(views, x => x.p))[0];
  assert.ok(top(count(views, x => x.p))[1][1] < topViews, 'top page is unique');
  const [entry, entries] = top(count(SESSIONS, s => s.pages[0]))[0];
  const pairs = SESSIONS.flatMap(s => s.pages.slice(1).map((p, i) => s.pages[i] + ' ' + p));
  const [pair, transitions] = top(count(pairs, x => x))[0];
  assert.deepEqual({
    visitors: new Set(SESSIONS.map(s => s.visitor)).size,
    sessions: new Set(SESSIONS.map(s => s.sid)).size,
    pageviews: views.length,
    users: new Set(SESSIONS.filter(s => s.uid).map(s => s.uid)).size,
    topPage: { path: topPath, pageviews: topViews, visitors: new Set(views.filter(x => x.p == topPath).map(x => x.v)).size },
    entryPage: { path: entry, entries },
    navigation: { from_path: pair.split(' ')[0], to_path: pair.split(' ')[1], transitions },
    outbound: { path: SESSIONS.find(s => s.outbound).outbound.on, target_host: new URL(SESSIONS.find(s => s.outbound).outbound.target).host, clicks: SESSIONS.filter(s => s.outbound).length },
    referrer: { referrer_host: new URL(SESSIONS.find(s => s.ref).ref).host, sessions: SESSIONS.filter(s => s.ref).length }
  }, EXPECTED);
  assert.equal(new Set(VISITORS.map(v => v.ip)).size, VISITORS.length);
  assert.equal(new Set(VISITORS.map(v => v.ua)).size, VISITORS.length);

  const now = Date.UTC(2026, 10, 30, 12);
  const bs = seedBeacons(now);
  assert.equal(bs.filter(b => b.body.kind == 'pageview').length, EXPECTED.pageviews);
  assert.equal(bs.filter(b => b.body.kind == 'outbound').length, EXPECTED.outbound.clicks);
  for (const s of SESSIONS) {
    const mine = bs.filter(b => b.body.sid == s.sid).map(b => b.body);
    assert.match(s.sid, /^[0-9a-z]{16,64}$/);
    assert.deepEqual(mine.map(b => b.seq), mine.map((_, i) => i + 1), 'seq 1..n');
    assert.ok(mine.every((b, i) => i == 0 || b.ts > mine[i - 1].ts), 'ts increasing');
    const pvs = mine.filter(b => b.kind == 'pageview');
    assert.deepEqual(pvs.map(b => b.url), s.pages.map(p => PAGE_ORIGIN + p));
    assert.deepEqual(pvs.map(b => b.prev), ['', ...s.pages.slice(0, -1).map(p => PAGE_ORIGIN + p)]);
    assert.ok(mine.every(b => b.v == 1 && b.site == SITE && (b.uid || null) == (s.uid || null)));
  }
  assert.ok(bs.every(b => b.body.ts < now && b.body.ts > now - 15 * 60000));
  assert.equal(seedHeaders(2)['X-Forwarded-For'], VISITORS[2].ip);
  assert.match(seedHeaders(0)['User-Agent'], /Chrome\/\d+/);
});
