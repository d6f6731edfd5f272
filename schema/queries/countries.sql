-- name: countries
-- title: Countries
-- answers: Visitors by country (ISO 3166-1 code from GeoIP; empty when unknown).
-- params: site String, from Date, to Date, limit UInt32
-- columns: country, visitors
-- source: dimension_stats (materialised view, current as events land)
SELECT value AS country, sum(v) AS visitors
FROM
(
    SELECT day, value, uniqExactMerge(visitors) AS v
    FROM dimension_stats
    WHERE site = {site:String} AND dimension = 'country' AND day >= {from:Date} AND day <= {to:Date}
    GROUP BY day, value
)
GROUP BY value
ORDER BY visitors DESC, value
LIMIT {limit:UInt32}
