-- 006: `session_states` replaces `sessions`: the same columns, keyed by one number.
--
-- 003's `sessions` orders a session's events for its first and last values (entry and exit page,
-- the first event's visitor id, country, browser, ...) by the tuple (seq, client_ts). On 18.16
-- an argMin/argMax keyed by a tuple compares and copies it as a generic value, and with twenty of
-- them that one view cost more than the INSERT into `events` itself. `session_states` is keyed by
-- one UInt64 that sorts the same way: seq in the high 22 bits, client_ts (milliseconds, clamped to
-- 0 .. 2^42 - 1, i.e. until 2109) in the low 42; past seq 4 194 303 a session's events sort by
-- time alone. One INSERT of 88 344 events of visits on 18.16: 0.56-0.76 s against 0.65-1.22 s
-- with the tuple (0.32-0.43 s without the view); merging three such parts 0.33-0.45 s against
-- 0.55-0.76 s (benches/README.md).
-- The columns and the functions that read them are the same; only the key's type differs.
--
-- Every state here is a min, a max, a set or an argMin/argMax: the same event added twice changes
-- nothing. So the new view starts before the table is filled from `events` (an event landing
-- in between is counted once), and a migration stopped half-way simply runs again.
-- Rows of `sessions` from days that `events` no longer holds whole (`retention.events_days`
-- shorter than `sessions_days`) are carried over, each with its day as its key: it is smaller
-- than any event's key, so a carried day's first values come first and its last values come
-- after no event of a later day, as before. Its view is dropped here and the table itself by 007,
-- so that this migration can run again from the start until it is recorded.
CREATE TABLE IF NOT EXISTS session_states
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
    entry_path AggregateFunction(argMinIf, String, UInt64, UInt8),
    exit_path AggregateFunction(argMaxIf, String, UInt64, UInt8),
    entry_host AggregateFunction(argMinIf, String, UInt64, UInt8),
    entry_referrer_host AggregateFunction(argMinIf, String, UInt64, UInt8),
    entry_utm_source AggregateFunction(argMinIf, String, UInt64, UInt8),
    entry_utm_medium AggregateFunction(argMinIf, String, UInt64, UInt8),
    entry_utm_campaign AggregateFunction(argMinIf, String, UInt64, UInt8),
    visitor_id AggregateFunction(argMin, FixedString(16), UInt64),
    user_id AggregateFunction(max, String),
    fingerprint_id AggregateFunction(max, FixedString(16)),
    country AggregateFunction(argMin, String, UInt64),
    region_code AggregateFunction(argMin, String, UInt64),
    region_name AggregateFunction(argMin, String, UInt64),
    asn AggregateFunction(argMin, UInt32, UInt64),
    as_org AggregateFunction(argMin, String, UInt64),
    isp AggregateFunction(argMin, String, UInt64),
    browser AggregateFunction(argMin, String, UInt64),
    os AggregateFunction(argMin, String, UInt64),
    device AggregateFunction(argMin, String, UInt64),
    automated AggregateFunction(max, UInt8)
)
ENGINE = AggregatingMergeTree
PARTITION BY toYYYYMM(day)
ORDER BY (site, day, session_id);

CREATE MATERIALIZED VIEW IF NOT EXISTS session_states_mv TO session_states {{MV_SECURITY}} AS
WITH bitOr(bitShiftLeft(toUInt64(least(seq, 4194303)), 42),
          toUInt64(least(greatest(client_ts, 0), 4398046511103))) AS order_key
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
    argMinIfState(path, order_key, kind = 'pageview') AS entry_path,
    argMaxIfState(path, order_key, kind = 'pageview') AS exit_path,
    argMinIfState(toString(host), order_key, kind = 'pageview') AS entry_host,
    argMinIfState(toString(referrer_host), order_key, kind = 'pageview') AS entry_referrer_host,
    argMinIfState(toString(utm_source), order_key, kind = 'pageview') AS entry_utm_source,
    argMinIfState(toString(utm_medium), order_key, kind = 'pageview') AS entry_utm_medium,
    argMinIfState(toString(utm_campaign), order_key, kind = 'pageview') AS entry_utm_campaign,
    argMinState(visitor_id, order_key) AS visitor_id,
    maxState(user_id) AS user_id,
    maxState(fingerprint_id) AS fingerprint_id,
    argMinState(toString(country), order_key) AS country,
    argMinState(toString(region_code), order_key) AS region_code,
    argMinState(toString(region_name), order_key) AS region_name,
    argMinState(asn, order_key) AS asn,
    argMinState(toString(as_org), order_key) AS as_org,
    argMinState(toString(isp), order_key) AS isp,
    argMinState(toString(browser), order_key) AS browser,
    argMinState(toString(os), order_key) AS os,
    argMinState(toString(device), order_key) AS device,
    maxState(automated) AS automated
FROM events
WHERE session_id != ''
GROUP BY site, day, session_id;

-- What `events` holds now, by the view's own query.
INSERT INTO session_states
{{SELECT_OF session_states_mv}};

INSERT INTO session_states
SELECT site, day, session_id,
    s_start,
    s_end,
    s_first_ts,
    s_last_ts,
    s_events,
    s_pageviews,
    s_engaged,
    arrayReduce('argMinIfState', [v_entry_path], [k], [viewed]),
    arrayReduce('argMaxIfState', [v_exit_path], [k], [viewed]),
    arrayReduce('argMinIfState', [v_entry_host], [k], [viewed]),
    arrayReduce('argMinIfState', [v_entry_referrer_host], [k], [viewed]),
    arrayReduce('argMinIfState', [v_entry_utm_source], [k], [viewed]),
    arrayReduce('argMinIfState', [v_entry_utm_medium], [k], [viewed]),
    arrayReduce('argMinIfState', [v_entry_utm_campaign], [k], [viewed]),
    arrayReduce('argMinState', [v_visitor_id], [k]),
    s_user_id,
    s_fingerprint_id,
    arrayReduce('argMinState', [v_country], [k]),
    arrayReduce('argMinState', [v_region_code], [k]),
    arrayReduce('argMinState', [v_region_name], [k]),
    arrayReduce('argMinState', [v_asn], [k]),
    arrayReduce('argMinState', [v_as_org], [k]),
    arrayReduce('argMinState', [v_isp], [k]),
    arrayReduce('argMinState', [v_browser], [k]),
    arrayReduce('argMinState', [v_os], [k]),
    arrayReduce('argMinState', [v_device], [k]),
    s_automated
FROM
(
    SELECT site, day, session_id, toUInt64(day) AS k, uniqExactIfMerge(pageviews) > 0 AS viewed,
        minMergeState(start) AS s_start,
        maxMergeState(end) AS s_end,
        minMergeState(first_ts) AS s_first_ts,
        maxMergeState(last_ts) AS s_last_ts,
        uniqExactMergeState(events) AS s_events,
        uniqExactIfMergeState(pageviews) AS s_pageviews,
        groupUniqArrayIfMergeState(engaged) AS s_engaged,
        argMinIfMerge(entry_path) AS v_entry_path,
        argMaxIfMerge(exit_path) AS v_exit_path,
        argMinIfMerge(entry_host) AS v_entry_host,
        argMinIfMerge(entry_referrer_host) AS v_entry_referrer_host,
        argMinIfMerge(entry_utm_source) AS v_entry_utm_source,
        argMinIfMerge(entry_utm_medium) AS v_entry_utm_medium,
        argMinIfMerge(entry_utm_campaign) AS v_entry_utm_campaign,
        argMinMerge(visitor_id) AS v_visitor_id,
        maxMergeState(user_id) AS s_user_id,
        maxMergeState(fingerprint_id) AS s_fingerprint_id,
        argMinMerge(country) AS v_country,
        argMinMerge(region_code) AS v_region_code,
        argMinMerge(region_name) AS v_region_name,
        argMinMerge(asn) AS v_asn,
        argMinMerge(as_org) AS v_as_org,
        argMinMerge(isp) AS v_isp,
        argMinMerge(browser) AS v_browser,
        argMinMerge(os) AS v_os,
        argMinMerge(device) AS v_device,
        maxMergeState(automated) AS s_automated
    FROM sessions
    WHERE day <= (SELECT if(count() = 0, toDate('2105-12-31'), min(toDate(received_at))) FROM events)
    GROUP BY site, day, session_id
);

DROP TABLE IF EXISTS sessions_mv;
