-- name: regions
-- title: Regions
-- answers: Visitors by first-level region (ISO 3166-2 code and name from GeoIP).
-- params: site String, from Date, to Date, limit UInt32
-- columns: country, region_code, region_name, visitors
-- source: daily_breakdown (rollup job)
SELECT splitByChar('\t', value)[1] AS country, splitByChar('\t', value)[2] AS region_code, splitByChar('\t', value)[3] AS region_name, sum(visitors) AS visitors
FROM daily_breakdown
WHERE site = {site:String} AND dimension = 'region' AND day >= {from:Date} AND day <= {to:Date}
  AND (site, day, version) GLOBAL IN
  (
      SELECT site, day, max(version) FROM daily_breakdown
      WHERE site = {site:String} AND day >= {from:Date} AND day <= {to:Date}
      GROUP BY site, day
  )
GROUP BY value
ORDER BY visitors DESC, value
LIMIT {limit:UInt32}
