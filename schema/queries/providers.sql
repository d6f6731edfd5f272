-- name: providers
-- title: Providers
-- answers: Visitors by internet provider: autonomous system number and organisation, and ISP name where the database has it.
-- params: site String, from Date, to Date, limit UInt32
-- columns: asn, as_org, isp, visitors
-- source: dimension_stats (materialised view, current as events land)
SELECT toUInt32OrZero(splitByChar('\t', value)[1]) AS asn, splitByChar('\t', value)[2] AS as_org, splitByChar('\t', value)[3] AS isp, sum(v) AS visitors
FROM
(
    SELECT day, value, uniqExactMerge(visitors) AS v
    FROM dimension_stats
    WHERE site = {site:String} AND dimension = 'provider' AND day >= {from:Date} AND day <= {to:Date}
    GROUP BY day, value
)
GROUP BY value
ORDER BY visitors DESC, value
LIMIT {limit:UInt32}
