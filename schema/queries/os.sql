-- name: os
-- title: Operating systems
-- answers: Visitors by operating system.
-- params: site String, from Date, to Date, limit UInt32
-- columns: os, visitors
-- source: dimension_stats (materialised view, current as events land)
SELECT value AS os, sum(v) AS visitors
FROM
(
    SELECT day, value, uniqExactMerge(visitors) AS v
    FROM dimension_stats
    WHERE site = {site:String} AND dimension = 'os' AND day >= {from:Date} AND day <= {to:Date}
    GROUP BY day, value
)
GROUP BY value
ORDER BY visitors DESC, value
LIMIT {limit:UInt32}
