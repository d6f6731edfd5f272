-- name: overview
-- title: Overview
-- answers: The headline numbers for a site and date range: visitors (distinct cookieless ids per day, summed: the ids change daily by design), identified users (distinct across the range), sessions started, page views, views per session, bounce rate (sessions with at most one page view), median session length, average engaged time per session, and the share of events from automated browsers.
-- params: site String, from Date, to Date
-- columns: visitors, users, sessions, pageviews, views_per_session, bounce_rate, median_session_s, avg_engaged_s, automated_share
-- source: daily_summary, written by the rollup job (current within rollups.interval_secs)
SELECT
    v AS visitors,
    u AS users,
    s AS sessions,
    pv AS pageviews,
    if(s = 0, 0, round(pv / s, 2)) AS views_per_session,
    if(s = 0, 0, round(b / s, 4)) AS bounce_rate,
    toUInt32(if(s = 0, 0, med)) AS median_session_s,
    if(s = 0, 0, round(eng / s / 1000, 1)) AS avg_engaged_s,
    if(ev = 0, 0, round(auto / ev, 4)) AS automated_share
FROM
(
    SELECT
        sum(visitors) AS v,
        uniqExactIfMerge(users_state) AS u,
        sum(sessions) AS s,
        sum(pageviews) AS pv,
        sum(bounces) AS b,
        quantileTimingMerge(0.5)(duration_s) AS med,
        sum(engaged_ms_sum) AS eng,
        sum(events) AS ev,
        sum(automated_events) AS auto
    FROM daily_summary FINAL
    WHERE site = {site:String} AND day >= {from:Date} AND day <= {to:Date}
)
