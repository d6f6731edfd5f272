-- The overview computed from `events` alone (no rollups): the "before" of benches/queries/run.py.
-- Same definitions as schema/queries/overview.sql, so both must give the same answer.
SELECT visitors, users, sessions, pageviews,
       if(sessions = 0, 0, round(pageviews / sessions, 2)) AS views_per_session,
       if(sessions = 0, 0, round(bounces / sessions, 4)) AS bounce_rate,
       toUInt32(if(sessions = 0, 0, median_s)) AS median_session_s,
       if(sessions = 0, 0, round(engaged / sessions / 1000, 1)) AS avg_engaged_s,
       if(events = 0, 0, round(automated / events, 4)) AS automated_share
FROM
(
    SELECT
        (
            SELECT sum(v)
            FROM
            (
                SELECT toDate(received_at) AS d, uniqExact(visitor_id) AS v
                FROM events
                WHERE site = {site:String} AND toDate(received_at) >= {from:Date} AND toDate(received_at) <= {to:Date}
                GROUP BY d
            )
        ) AS visitors,
        uniqExactIf(user_id, user_id != '') AS users, countIf(kind = 'pageview') AS pageviews,
        count() AS events, sum(automated) AS automated
    FROM events
    WHERE site = {site:String} AND toDate(received_at) >= {from:Date} AND toDate(received_at) <= {to:Date}
) AS b
CROSS JOIN
(
    SELECT count() AS sessions, countIf(pv <= 1) AS bounces, quantileTiming(0.5)(dur) AS median_s,
           sum(eng) AS engaged
    FROM
    (
        SELECT session_id, min(toDate(received_at)) AS first_day, uniqExactIf(event_id, kind = 'pageview') AS pv,
               toUInt32(greatest(max(client_ts) - min(client_ts), 0) / 1000) AS dur,
               sumIf(toUInt64(engaged_ms), kind = 'engagement') AS eng
        FROM events
        WHERE site = {site:String} AND session_id != ''
          AND toDate(received_at) >= {from:Date} - 1 AND toDate(received_at) <= {to:Date} + 1
        GROUP BY session_id
    )
    WHERE first_day >= {from:Date} AND first_day <= {to:Date}
) AS c
