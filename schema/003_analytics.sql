-- 003: the analyst model, maintained incrementally from `events` by materialised views.
--
-- Every table below is filled by a materialised view at INSERT time, so it is current as soon as
-- a batch lands, whatever order events arrive in and however a session is split over batches:
-- the aggregate states merge in any order. A row here is a partial aggregate of one INSERT block;
-- queries always GROUP BY the key and merge (`-Merge` functions, `sum`), never read raw rows.
-- The writer delivers every event exactly once (it checks what already landed before re-sending
-- after a failure or a crash), so counts are plain sums. Sessions additionally count by event id.
--
-- No table holds anything that `events` does not: the same pseudonymous ids, no address. The
-- retention of each table is configured separately (`retention.sessions_days`, `rollups_days`).
--
-- {{MV_SECURITY}} is `SQL SECURITY DEFINER` on servers that know it (24.4+): a view inserts with
-- the rights of the admin user that created it, so the ingest user needs none on these tables.

-- One row per (site, day, client session) and insert block; merged per session by queries.
-- `day` is the UTC day of the event, so a session across midnight has a row on both days: queries
-- group by (site, session_id) and take the first day as the session's day.
CREATE TABLE IF NOT EXISTS sessions
(
    site String,
    day Date,
    session_id String,
    start AggregateFunction(min, DateTime),
    end AggregateFunction(max, DateTime),
    first_ts AggregateFunction(min, Int64),
    last_ts AggregateFunction(max, Int64),
    events AggregateFunction(uniqExact, UUID),
    pageviews AggregateFunction(uniqExactIf, UUID, UInt8),
    engaged AggregateFunction(groupUniqArrayIf, Tuple(UUID, UInt32), UInt8),
    entry_path AggregateFunction(argMinIf, String, Tuple(UInt32, Int64), UInt8),
    exit_path AggregateFunction(argMaxIf, String, Tuple(UInt32, Int64), UInt8),
    entry_host AggregateFunction(argMinIf, String, Tuple(UInt32, Int64), UInt8),
    entry_referrer_host AggregateFunction(argMinIf, String, Tuple(UInt32, Int64), UInt8),
    entry_utm_source AggregateFunction(argMinIf, String, Tuple(UInt32, Int64), UInt8),
    entry_utm_medium AggregateFunction(argMinIf, String, Tuple(UInt32, Int64), UInt8),
    entry_utm_campaign AggregateFunction(argMinIf, String, Tuple(UInt32, Int64), UInt8),
    visitor_id AggregateFunction(argMin, FixedString(16), Tuple(UInt32, Int64)),
    user_id AggregateFunction(max, String),
    fingerprint_id AggregateFunction(max, FixedString(16)),
    country AggregateFunction(argMin, String, Tuple(UInt32, Int64)),
    region_code AggregateFunction(argMin, String, Tuple(UInt32, Int64)),
    region_name AggregateFunction(argMin, String, Tuple(UInt32, Int64)),
    asn AggregateFunction(argMin, UInt32, Tuple(UInt32, Int64)),
    as_org AggregateFunction(argMin, String, Tuple(UInt32, Int64)),
    isp AggregateFunction(argMin, String, Tuple(UInt32, Int64)),
    browser AggregateFunction(argMin, String, Tuple(UInt32, Int64)),
    os AggregateFunction(argMin, String, Tuple(UInt32, Int64)),
    device AggregateFunction(argMin, String, Tuple(UInt32, Int64)),
    automated AggregateFunction(max, UInt8)
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(day)
ORDER BY (site, day, session_id);

CREATE MATERIALIZED VIEW IF NOT EXISTS sessions_mv TO sessions {{MV_SECURITY}} AS
SELECT
    site,
    toDate(received_at) AS day,
    session_id,
    minState(received_at) AS start,
    maxState(received_at) AS end,
    minState(client_ts) AS first_ts,
    maxState(client_ts) AS last_ts,
    uniqExactState(event_id) AS events,
    uniqExactIfState(event_id, kind = 'pageview') AS pageviews,
    groupUniqArrayIfState((event_id, engaged_ms), kind = 'engagement') AS engaged,
    argMinIfState(path, (seq, client_ts), kind = 'pageview') AS entry_path,
    argMaxIfState(path, (seq, client_ts), kind = 'pageview') AS exit_path,
    argMinIfState(toString(host), (seq, client_ts), kind = 'pageview') AS entry_host,
    argMinIfState(toString(referrer_host), (seq, client_ts), kind = 'pageview') AS entry_referrer_host,
    argMinIfState(toString(utm_source), (seq, client_ts), kind = 'pageview') AS entry_utm_source,
    argMinIfState(toString(utm_medium), (seq, client_ts), kind = 'pageview') AS entry_utm_medium,
    argMinIfState(toString(utm_campaign), (seq, client_ts), kind = 'pageview') AS entry_utm_campaign,
    argMinState(visitor_id, (seq, client_ts)) AS visitor_id,
    maxState(user_id) AS user_id,
    maxState(fingerprint_id) AS fingerprint_id,
    argMinState(toString(country), (seq, client_ts)) AS country,
    argMinState(toString(region_code), (seq, client_ts)) AS region_code,
    argMinState(toString(region_name), (seq, client_ts)) AS region_name,
    argMinState(asn, (seq, client_ts)) AS asn,
    argMinState(toString(as_org), (seq, client_ts)) AS as_org,
    argMinState(toString(isp), (seq, client_ts)) AS isp,
    argMinState(toString(browser), (seq, client_ts)) AS browser,
    argMinState(toString(os), (seq, client_ts)) AS os,
    argMinState(toString(device), (seq, client_ts)) AS device,
    maxState(automated) AS automated
FROM events
WHERE session_id != ''
GROUP BY site, day, session_id;

-- When each (site, day) last received events: the rollup job recomputes the summaries below for
-- the days that changed since it last looked (late events from a spool replay included).
CREATE TABLE IF NOT EXISTS day_changes
(
    site String,
    day Date,
    changed AggregateFunction(max, DateTime)
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(day)
ORDER BY (site, day);

CREATE MATERIALIZED VIEW IF NOT EXISTS day_changes_mv TO day_changes {{MV_SECURITY}} AS
SELECT site, toDate(received_at) AS day, maxState(now()) AS changed
FROM events
GROUP BY site, day;

-- Page-to-page transitions: a page view whose previous page (same session) was from_path.
CREATE TABLE IF NOT EXISTS navigation
(
    site String,
    day Date,
    from_path String,
    to_path String,
    transitions UInt64
)
ENGINE = SummingMergeTree
PARTITION BY toYYYYMM(day)
ORDER BY (site, day, from_path, to_path);

CREATE MATERIALIZED VIEW IF NOT EXISTS navigation_mv TO navigation {{MV_SECURITY}} AS
SELECT site, toDate(received_at) AS day, prev_path AS from_path, path AS to_path,
       count() AS transitions
FROM events
WHERE kind = 'pageview' AND prev_path != ''
GROUP BY site, day, from_path, to_path;

-- Exit links: outbound clicks per page and target.
CREATE TABLE IF NOT EXISTS outbound_links
(
    site String,
    day Date,
    path String,
    target_host String,
    target_url String,
    clicks UInt64
)
ENGINE = SummingMergeTree
PARTITION BY toYYYYMM(day)
ORDER BY (site, day, path, target_host, target_url);

CREATE MATERIALIZED VIEW IF NOT EXISTS outbound_links_mv TO outbound_links {{MV_SECURITY}} AS
SELECT site, toDate(received_at) AS day, path, target_host, target_url, count() AS clicks
FROM events
WHERE kind = 'outbound'
GROUP BY site, day, path, target_host, target_url;

-- Per site and day: the counts of the overview and the time series.
CREATE TABLE IF NOT EXISTS daily_stats
(
    site String,
    day Date,
    events AggregateFunction(sum, UInt64),
    pageviews AggregateFunction(sum, UInt64),
    automated_events AggregateFunction(sum, UInt64),
    visitors AggregateFunction(uniqExact, FixedString(16)),
    users AggregateFunction(uniqExactIf, String, UInt8),
    sessions AggregateFunction(uniqExactIf, String, UInt8)
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(day)
ORDER BY (site, day);

CREATE MATERIALIZED VIEW IF NOT EXISTS daily_stats_mv TO daily_stats {{MV_SECURITY}} AS
SELECT
    site,
    toDate(received_at) AS day,
    sumState(toUInt64(1)) AS events,
    sumState(toUInt64(kind = 'pageview')) AS pageviews,
    sumState(toUInt64(automated)) AS automated_events,
    uniqExactState(visitor_id) AS visitors,
    uniqExactIfState(user_id, user_id != '') AS users,
    uniqExactIfState(session_id, session_id != '') AS sessions
FROM events
GROUP BY site, day;

-- Per site, day and page: page views and unique visitors (top pages).
CREATE TABLE IF NOT EXISTS page_stats
(
    site String,
    day Date,
    path String,
    pageviews AggregateFunction(sum, UInt64),
    visitors AggregateFunction(uniqExact, FixedString(16))
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(day)
ORDER BY (site, day, path);

CREATE MATERIALIZED VIEW IF NOT EXISTS page_stats_mv TO page_stats {{MV_SECURITY}} AS
SELECT site, toDate(received_at) AS day, path,
       sumState(toUInt64(1)) AS pageviews,
       uniqExactState(visitor_id) AS visitors
FROM events
WHERE kind = 'pageview'
GROUP BY site, day, path;

-- Per site, day and value of one dimension (country, browser, screen, language, ...): events,
-- page views and unique visitors. One table answers every breakdown of the dashboards.
-- Dimensions: country, region (country/code/name joined by a tab), provider (asn/org/isp), browser,
-- os, device (every event has these, derived at ingest), and from the device block where an event
-- carries one: timezone, arch (arch/bitness), screen (WxH), language (one row per listed language);
-- automation_signal (`any` for an automated event, then one row per browser or server signal).
CREATE TABLE IF NOT EXISTS dimension_stats
(
    site String,
    day Date,
    dimension String,
    value String,
    events AggregateFunction(sum, UInt64),
    pageviews AggregateFunction(sum, UInt64),
    visitors AggregateFunction(uniqExact, FixedString(16))
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(day)
ORDER BY (site, dimension, day, value);

CREATE MATERIALIZED VIEW IF NOT EXISTS dimension_stats_mv TO dimension_stats {{MV_SECURITY}} AS
SELECT site, toDate(received_at) AS day, dimension, value,
       sumState(toUInt64(1)) AS events,
       sumState(toUInt64(kind = 'pageview')) AS pageviews,
       uniqExactState(visitor_id) AS visitors
FROM events
ARRAY JOIN
    arrayConcat(
        ['country', 'region', 'provider', 'browser', 'os', 'device'],
        if(timezone = '', emptyArrayString(), ['timezone']),
        if(arch = '', emptyArrayString(), ['arch']),
        if(screen_w = 0, emptyArrayString(), ['screen']),
        arrayMap(x -> 'language', languages),
        if(automated = 1, ['automation_signal'], emptyArrayString()),
        arrayMap(x -> 'automation_signal', automation_headless),
        arrayMap(x -> 'automation_signal', automation_globals),
        arrayMap(x -> 'automation_signal', automation_flags),
        arrayMap(x -> 'automation_signal', server_flags),
        if(webdriver = 1, ['automation_signal'], emptyArrayString())
    ) AS dimension,
    arrayConcat(
        [toString(country),
         concat(toString(country), '\t', toString(region_code), '\t', toString(region_name)),
         concat(toString(asn), '\t', toString(as_org), '\t', toString(isp)),
         toString(browser), toString(os), toString(device)],
        if(timezone = '', emptyArrayString(), [toString(timezone)]),
        if(arch = '', emptyArrayString(), [concat(toString(arch), '\t', toString(bitness))]),
        if(screen_w = 0, emptyArrayString(), [concat(toString(screen_w), 'x', toString(screen_h))]),
        languages,
        if(automated = 1, ['any'], emptyArrayString()),
        arrayMap(x -> concat('headless:', x), automation_headless),
        arrayMap(x -> concat('global:', x), automation_globals),
        arrayMap(x -> concat('flag:', x), automation_flags),
        arrayMap(x -> concat('server:', x), server_flags),
        if(webdriver = 1, ['webdriver'], emptyArrayString())
    ) AS value
GROUP BY site, day, dimension, value;

-- Per site and day, written by footfall's rollup job (`src/rollup.rs`) for each day that changed:
-- the numbers of the overview and the time series, including the session metrics that need whole
-- sessions (sessions started that day, bounces, the median length). Every run writes a new
-- version; queries read the newest with FINAL. `visitors` counts the day's distinct visitor ids
-- (they change daily by design, so a range sums days); `users_state` merges across days.
CREATE TABLE IF NOT EXISTS daily_summary
(
    site String,
    day Date,
    version UInt64,
    computed_at DateTime,
    events UInt64,
    pageviews UInt64,
    automated_events UInt64,
    visitors UInt64,
    users UInt64,
    users_state AggregateFunction(uniqExactIf, String, UInt8),
    sessions UInt64,
    bounces UInt64,
    duration_s_sum UInt64,
    engaged_ms_sum UInt64,
    duration_s AggregateFunction(quantileTiming(0.5), UInt32)
)
ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMM(day)
ORDER BY (site, day);

-- Per site, day (the session's first day) and value: sessions and bounces by entry page, exit
-- page, referrer (host and channel, tab-separated) and channel. Written by the rollup job; a day's
-- rows from one run share a version and queries read only the newest version of each day.
CREATE TABLE IF NOT EXISTS session_breakdown
(
    site String,
    day Date,
    version UInt64,
    dimension String,
    value String,
    sessions UInt64,
    bounces UInt64
)
ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMM(day)
ORDER BY (site, day, dimension, value);

-- Per site, day and value of a dimension (`page` for paths, and every dimension of
-- dimension_stats): events, page views and the day's distinct visitors, as plain numbers. Written
-- by the rollup job from page_stats and dimension_stats, so the breakdowns read numbers instead of
-- merging a set of visitor ids per value; queries read only the newest version of each day.
CREATE TABLE IF NOT EXISTS daily_breakdown
(
    site String,
    day Date,
    version UInt64,
    dimension String,
    value String,
    events UInt64,
    pageviews UInt64,
    visitors UInt64
)
ENGINE = ReplacingMergeTree(version)
PARTITION BY toYYYYMM(day)
ORDER BY (site, day, dimension, value);
