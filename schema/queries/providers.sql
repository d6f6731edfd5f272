-- name: providers
-- title: Providers
-- answers: Visitors by internet provider: autonomous system number and organisation, and ISP name where the database has it.
-- params: site String, from Date, to Date, limit UInt32
-- columns: asn, as_org, isp, visitors
-- source: daily_breakdown (rollup job)
SELECT toUInt32OrZero(splitByChar('\t', value)[1]) AS asn, splitByChar('\t', value)[2] AS as_org, splitByChar('\t', value)[3] AS isp, sum(visitors) AS visitors
FROM daily_breakdown
WHERE site = {site:String} AND dimension = 'provider' AND day >= {from:Date} AND day <= {to:Date}
  AND (site, day, version) GLOBAL IN
  (
      SELECT site, day, max(version) FROM daily_breakdown
      WHERE site = {site:String} AND day >= {from:Date} AND day <= {to:Date}
      GROUP BY site, day
  )
GROUP BY value
ORDER BY visitors DESC, value
LIMIT {limit:UInt32}
