-- name: screens
-- title: Screens
-- answers: Visitors by screen resolution (CSS pixels, width x height).
-- params: site String, from Date, to Date, limit UInt32
-- columns: screen, visitors
-- source: dimension_stats (materialised view, current as events land)
SELECT value AS screen, sum(v) AS visitors
FROM
(
    SELECT day, value, uniqExactMerge(visitors) AS v
    FROM dimension_stats
    WHERE site = {site:String} AND dimension = 'screen' AND day >= {from:Date} AND day <= {to:Date}
    GROUP BY day, value
)
GROUP BY value
ORDER BY visitors DESC, value
LIMIT {limit:UInt32}
