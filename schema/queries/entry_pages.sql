-- name: entry_pages
-- title: Entry pages
-- answers: The first page of each session started in the range, with the share of those sessions that bounced (at most one page view).
-- params: site String, from Date, to Date, limit UInt32
-- columns: path, entries, bounce_rate
-- source: session_breakdown (rollup job)
SELECT value AS path, sum(sessions) AS entries, round(sum(bounces) / entries, 4) AS bounce_rate
FROM session_breakdown
WHERE site = {site:String} AND day >= {from:Date} AND day <= {to:Date} AND dimension = 'entry'
  AND (site, day, version) GLOBAL IN
  (
      SELECT site, day, max(version) FROM session_breakdown
      WHERE site = {site:String} AND day >= {from:Date} AND day <= {to:Date}
      GROUP BY site, day
  )
GROUP BY path
ORDER BY entries DESC, path
LIMIT {limit:UInt32}
