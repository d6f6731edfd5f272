-- name: browsers
-- title: Browsers
-- answers: Visitors by browser (User-Agent, completed by client hints).
-- params: site String, from Date, to Date, limit UInt32
-- columns: browser, visitors
-- source: dimension_stats (materialised view, current as events land)
SELECT value AS browser, sum(v) AS visitors
FROM
(
    SELECT day, value, uniqExactMerge(visitors) AS v
    FROM dimension_stats
    WHERE site = {site:String} AND dimension = 'browser' AND day >= {from:Date} AND day <= {to:Date}
    GROUP BY day, value
)
GROUP BY value
ORDER BY visitors DESC, value
LIMIT {limit:UInt32}
