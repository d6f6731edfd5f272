-- name: languages
-- title: Languages
-- answers: Visitors by each language their browser lists (a visitor with three languages counts for each).
-- params: site String, from Date, to Date, limit UInt32
-- columns: language, visitors
-- source: daily_breakdown (rollup job)
SELECT value AS language, sum(visitors) AS visitors
FROM daily_breakdown
WHERE site = {site:String} AND dimension = 'language' AND day >= {from:Date} AND day <= {to:Date}
  AND (site, day, version) GLOBAL IN
  (
      SELECT site, day, max(version) FROM daily_breakdown
      WHERE site = {site:String} AND day >= {from:Date} AND day <= {to:Date}
      GROUP BY site, day
  )
GROUP BY value
ORDER BY visitors DESC, value
LIMIT {limit:UInt32}
