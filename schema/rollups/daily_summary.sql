-- name: daily_summary
-- answers: Recomputes one site's day in daily_summary from daily_stats and session_states (run by the rollup job for each day that changed).
-- params: site String, day Date, version UInt64
-- A session belongs to the day of its first event; sessions that began the day before and went on
-- past midnight are recognised by reading the neighbouring days' session rows too.
INSERT INTO daily_summary
SELECT site, day, {version:UInt64}, now(), ev, pv, auto, vis, usr, usr_state,
       sessions, bounces, duration_s_sum, engaged_ms_sum, duration_s
FROM
(
    SELECT site, day,
           sumMerge(events) AS ev, sumMerge(pageviews) AS pv,
           sumMerge(automated_events) AS auto,
           uniqExactMerge(visitors) AS vis,
           uniqExactIfMerge(users) AS usr, uniqExactIfMergeState(users) AS usr_state
    FROM daily_stats
    WHERE site = {site:String} AND day = {day:Date}
    GROUP BY site, day
) AS d
ANY LEFT JOIN
(
    SELECT site, first_day AS day, count() AS sessions, countIf(pages <= 1) AS bounces,
           sum(dur) AS duration_s_sum, sum(eng) AS engaged_ms_sum,
           quantileTimingState(0.5)(dur) AS duration_s
    FROM
    (
        SELECT site, session_id, min(day) AS first_day, uniqExactIfMerge(pageviews) AS pages,
               toUInt32(greatest(maxMerge(last_ts) - minMerge(first_ts), 0) / 1000) AS dur,
               arraySum(arrayMap(x -> toUInt64(x.2), groupUniqArrayIfMerge(engaged))) AS eng
        FROM session_states
        WHERE site = {site:String} AND day >= {day:Date} - 1 AND day <= {day:Date} + 1
        GROUP BY site, session_id
    )
    WHERE first_day = {day:Date}
    GROUP BY site, first_day
) AS s USING (site, day)
