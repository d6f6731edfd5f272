-- name: channels
-- title: Channels
-- answers: Sessions started in the range by acquisition channel: Direct, Search, Social, Email, Paid, Referral, Internal.
-- params: site String, from Date, to Date, limit UInt32
-- columns: channel, sessions
-- source: session_breakdown (rollup job)
SELECT value AS channel, sum(sessions) AS sessions
FROM session_breakdown
WHERE site = {site:String} AND day >= {from:Date} AND day <= {to:Date} AND dimension = 'channel'
  AND (site, day, version) GLOBAL IN
  (
      SELECT site, day, max(version) FROM session_breakdown
      WHERE site = {site:String} AND day >= {from:Date} AND day <= {to:Date}
      GROUP BY site, day
  )
GROUP BY channel
ORDER BY sessions DESC, channel
LIMIT {limit:UInt32}
