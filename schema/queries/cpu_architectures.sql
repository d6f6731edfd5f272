-- name: cpu_architectures
-- title: CPU architectures
-- answers: Visitors by processor architecture and bitness (client hints, else platform).
-- params: site String, from Date, to Date, limit UInt32
-- columns: arch, bitness, visitors
-- source: dimension_stats (materialised view, current as events land)
SELECT splitByChar('\t', value)[1] AS arch, splitByChar('\t', value)[2] AS bitness, sum(v) AS visitors
FROM
(
    SELECT day, value, uniqExactMerge(visitors) AS v
    FROM dimension_stats
    WHERE site = {site:String} AND dimension = 'arch' AND day >= {from:Date} AND day <= {to:Date}
    GROUP BY day, value
)
GROUP BY value
ORDER BY visitors DESC, value
LIMIT {limit:UInt32}
