-- name: timeseries
-- title: Visitors, sessions and page views per day
-- answers: One row per day of the range that has data: distinct visitor ids, sessions started, page views.
-- params: site String, from Date, to Date, limit UInt32
-- columns: day, visitors, sessions, pageviews
-- source: daily_summary
SELECT toString(d) AS day, visitors, sessions, pageviews
FROM
(
    SELECT day AS d, visitors, sessions, pageviews
    FROM daily_summary FINAL
    WHERE site = {site:String} AND day >= {from:Date} AND day <= {to:Date}
)
ORDER BY d
LIMIT {limit:UInt32}
