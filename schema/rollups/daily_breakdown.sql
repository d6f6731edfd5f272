-- name: daily_breakdown
-- answers: Recomputes one site's day in daily_breakdown: page views and distinct visitors per page, and events, page views and distinct visitors per value of every dimension.
-- params: site String, day Date, version UInt64
INSERT INTO daily_breakdown
SELECT {site:String}, {day:Date}, {version:UInt64}, 'page', path,
       sumMerge(pageviews) AS events_, sumMerge(pageviews) AS pageviews_, uniqExactMerge(visitors) AS visitors_
FROM page_stats
WHERE site = {site:String} AND day = {day:Date}
GROUP BY path
UNION ALL
SELECT {site:String}, {day:Date}, {version:UInt64}, dimension, value,
       sumMerge(events) AS events_, sumMerge(pageviews) AS pageviews_, uniqExactMerge(visitors) AS visitors_
FROM dimension_stats
WHERE site = {site:String} AND day = {day:Date}
GROUP BY dimension, value
