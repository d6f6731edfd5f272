-- name: screens
-- title: Screens
-- answers: Visitors by screen resolution (CSS pixels, width x height).
-- params: site String, from Date, to Date, limit UInt32
-- columns: screen, visitors
-- source: daily_breakdown (rollup job)
SELECT value AS screen, sum(visitors) AS visitors
FROM daily_breakdown
WHERE site = {site:String} AND dimension = 'screen' AND day >= {from:Date} AND day <= {to:Date}
  AND (site, day, version) GLOBAL IN
  (
      SELECT site, day, max(version) FROM daily_breakdown
      WHERE site = {site:String} AND day >= {from:Date} AND day <= {to:Date}
      GROUP BY site, day
  )
GROUP BY value
ORDER BY visitors DESC, value
LIMIT {limit:UInt32}
