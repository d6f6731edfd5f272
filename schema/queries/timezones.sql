-- name: timezones
-- title: Time zones
-- answers: Visitors by the time zone set on their device.
-- params: site String, from Date, to Date, limit UInt32
-- columns: timezone, visitors
-- source: dimension_stats (materialised view, current as events land)
SELECT value AS timezone, sum(v) AS visitors
FROM
(
    SELECT day, value, uniqExactMerge(visitors) AS v
    FROM dimension_stats
    WHERE site = {site:String} AND dimension = 'timezone' AND day >= {from:Date} AND day <= {to:Date}
    GROUP BY day, value
)
GROUP BY value
ORDER BY visitors DESC, value
LIMIT {limit:UInt32}
