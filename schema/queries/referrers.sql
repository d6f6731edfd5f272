-- name: referrers
-- title: Referrers
-- answers: Entry points: the site each session came from (referrer host, empty for direct visits) and its channel, by sessions started in the range.
-- params: site String, from Date, to Date, limit UInt32
-- columns: referrer_host, channel, sessions
-- source: session_breakdown (rollup job)
SELECT splitByChar('\t', value)[1] AS referrer_host, splitByChar('\t', value)[2] AS channel,
       sum(sessions) AS sessions
FROM session_breakdown
WHERE site = {site:String} AND day >= {from:Date} AND day <= {to:Date} AND dimension = 'referrer'
  AND (site, day, version) GLOBAL IN
  (
      SELECT site, day, max(version) FROM session_breakdown
      WHERE site = {site:String} AND day >= {from:Date} AND day <= {to:Date}
      GROUP BY site, day
  )
GROUP BY value
ORDER BY sessions DESC, value
LIMIT {limit:UInt32}
