-- Top pages computed from `events` alone: the "before" of benches/queries/run.py (same answer as
-- schema/queries/top_pages.sql).
SELECT path, sum(pv) AS pageviews, sum(v) AS visitors
FROM
(
    SELECT toDate(received_at) AS d, path, count() AS pv, uniqExact(visitor_id) AS v
    FROM events
    WHERE site = {site:String} AND kind = 'pageview'
      AND toDate(received_at) >= {from:Date} AND toDate(received_at) <= {to:Date}
    GROUP BY d, path
)
GROUP BY path
ORDER BY pageviews DESC, path
LIMIT {limit:UInt32}
