-- name: cpu_architectures
-- title: CPU architectures
-- answers: Visitors by processor architecture and bitness (client hints, else platform).
-- params: site String, from Date, to Date, limit UInt32
-- columns: arch, bitness, visitors
-- source: daily_breakdown (rollup job)
SELECT splitByChar('\t', value)[1] AS arch, splitByChar('\t', value)[2] AS bitness, sum(visitors) AS visitors
FROM daily_breakdown
WHERE site = {site:String} AND dimension = 'arch' AND day >= {from:Date} AND day <= {to:Date}
  AND (site, day, version) GLOBAL IN
  (
      SELECT site, day, max(version) FROM daily_breakdown
      WHERE site = {site:String} AND day >= {from:Date} AND day <= {to:Date}
      GROUP BY site, day
  )
GROUP BY value
ORDER BY visitors DESC, value
LIMIT {limit:UInt32}
