-- 005: the per-dimension breakdown (`dimension_stats`) fed through a narrow Null table.
--
-- 003's view ran its ARRAY JOIN over the whole inserted block: ClickHouse 18.16 copies every
-- column of `events` once per dimension row (about ten per event), and that one view cost ~75 % of
-- an INSERT's time (30 000 events: 0.55 s of 0.73 s). Now one view computes each event's
-- dimension names and values into `dimension_input` (ENGINE = Null: it stores nothing, it only
-- passes the block on), and the ARRAY JOIN runs there over six columns (the same INSERT: ~0.2 s).
-- A view over a subquery would read the same, but 18.16 runs a view's query against the inserted
-- block and ignores the subquery, so the narrowing has to be a table. Which view an INSERT made by
-- a view triggers changed in 19.14: before, the views reading that view; since, the views reading
-- its target table. {{DIMENSION_INPUT}} is `dimension_input_mv` or `dimension_input` accordingly
-- (`schema::render`); on a server upgraded across 19.14, `footfall migrate` re-creates
-- `dimension_stats_mv` as the new version needs it (`schema::relink_chain`).
--
-- The rows are the same as 003's view wrote. An INSERT into `events` between the DROP and the
-- last CREATE (milliseconds) would not reach `dimension_stats`: footfall migrates before it
-- accepts events, and with several collectors apply this one while they are stopped (README,
-- "Upgrades and migrations").
CREATE TABLE IF NOT EXISTS dimension_input
(
    site String,
    day Date,
    pageview UInt8,
    visitor_id FixedString(16),
    dimensions Array(String),
    dimension_values Array(String)
)
ENGINE = Null;

-- The dimensions of an event, in the same order as their values (see 003 for the list).
CREATE MATERIALIZED VIEW IF NOT EXISTS dimension_input_mv TO dimension_input {{MV_SECURITY}} AS
SELECT site, toDate(received_at) AS day, kind = 'pageview' AS pageview, visitor_id,
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
    ) AS dimensions,
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
    ) AS dimension_values
FROM events;

DROP TABLE IF EXISTS dimension_stats_mv;

CREATE MATERIALIZED VIEW IF NOT EXISTS dimension_stats_mv TO dimension_stats {{MV_SECURITY}} AS
SELECT site, day, dimension, value,
       sumState(toUInt64(1)) AS events,
       sumState(toUInt64(pageview)) AS pageviews,
       uniqExactState(visitor_id) AS visitors
FROM {{DIMENSION_INPUT}}
ARRAY JOIN dimensions AS dimension, dimension_values AS value
GROUP BY site, day, dimension, value;
