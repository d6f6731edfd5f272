-- name: devices
-- title: Devices
-- answers: Visitors by device category: desktop, mobile, tablet, appliance, bot or unknown.
-- params: site String, from Date, to Date, limit UInt32
-- columns: device, visitors
-- source: dimension_stats (materialised view, current as events land)
SELECT value AS device, sum(v) AS visitors
FROM
(
    SELECT day, value, uniqExactMerge(visitors) AS v
    FROM dimension_stats
    WHERE site = {site:String} AND dimension = 'device' AND day >= {from:Date} AND day <= {to:Date}
    GROUP BY day, value
)
GROUP BY value
ORDER BY visitors DESC, value
LIMIT {limit:UInt32}
