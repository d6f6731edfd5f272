-- name: exit_pages
-- title: Exit pages
-- answers: The last page viewed in each session started in the range.
-- params: site String, from Date, to Date, limit UInt32
-- columns: path, exits
-- source: session_breakdown (rollup job)
SELECT value AS path, sum(sessions) AS exits
FROM session_breakdown
WHERE site = {site:String} AND day >= {from:Date} AND day <= {to:Date} AND dimension = 'exit'
  AND (site, day, version) GLOBAL IN
  (
      SELECT site, day, max(version) FROM session_breakdown
      WHERE site = {site:String} AND day >= {from:Date} AND day <= {to:Date}
      GROUP BY site, day
  )
GROUP BY path
ORDER BY exits DESC, path
LIMIT {limit:UInt32}
