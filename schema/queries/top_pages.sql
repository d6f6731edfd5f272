-- name: top_pages
-- title: Top pages
-- answers: Pages (path without host or query) by page views, with distinct visitors (per day, summed).
-- params: site String, from Date, to Date, limit UInt32
-- columns: path, pageviews, visitors
-- source: daily_breakdown (rollup job)
SELECT value AS path, sum(pageviews) AS pageviews, sum(visitors) AS visitors
FROM daily_breakdown
WHERE site = {site:String} AND dimension = 'page' AND day >= {from:Date} AND day <= {to:Date}
  AND (site, day, version) GLOBAL IN
  (
      SELECT site, day, max(version) FROM daily_breakdown
      WHERE site = {site:String} AND day >= {from:Date} AND day <= {to:Date}
      GROUP BY site, day
  )
GROUP BY value
ORDER BY pageviews DESC, path
LIMIT {limit:UInt32}
