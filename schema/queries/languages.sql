-- name: languages
-- title: Languages
-- answers: Visitors by each language their browser lists (a visitor with three languages counts for each).
-- params: site String, from Date, to Date, limit UInt32
-- columns: language, visitors
-- source: dimension_stats (materialised view, current as events land)
SELECT value AS language, sum(v) AS visitors
FROM
(
    SELECT day, value, uniqExactMerge(visitors) AS v
    FROM dimension_stats
    WHERE site = {site:String} AND dimension = 'language' AND day >= {from:Date} AND day <= {to:Date}
    GROUP BY day, value
)
GROUP BY value
ORDER BY visitors DESC, value
LIMIT {limit:UInt32}
