-- name: top_pages
-- title: Top pages
-- answers: Pages (path without host or query) by page views, with distinct visitors (per day, summed).
-- params: site String, from Date, to Date, limit UInt32
-- columns: path, pageviews, visitors
-- source: page_stats (materialised view, current as events land)
SELECT path, sum(pv) AS pageviews, sum(v) AS visitors
FROM
(
    SELECT day, path, sumMerge(pageviews) AS pv, uniqExactMerge(visitors) AS v
    FROM page_stats
    WHERE site = {site:String} AND day >= {from:Date} AND day <= {to:Date}
    GROUP BY day, path
)
GROUP BY path
ORDER BY pageviews DESC, path
LIMIT {limit:UInt32}
