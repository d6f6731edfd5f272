-- name: os
-- title: Operating systems
-- answers: Visitors by operating system.
-- params: site String, from Date, to Date, limit UInt32
-- columns: os, visitors
-- source: daily_breakdown (rollup job)
SELECT value AS os, sum(visitors) AS visitors
FROM daily_breakdown
WHERE site = {site:String} AND dimension = 'os' AND day >= {from:Date} AND day <= {to:Date}
  AND (site, day, version) GLOBAL IN
  (
      SELECT site, day, max(version) FROM daily_breakdown
      WHERE site = {site:String} AND day >= {from:Date} AND day <= {to:Date}
      GROUP BY site, day
  )
GROUP BY value
ORDER BY visitors DESC, value
LIMIT {limit:UInt32}
