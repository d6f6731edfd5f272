-- name: navigation
-- title: Navigation paths
-- answers: Movement between the site's pages: how often a page view of to_path followed one of from_path in the same session.
-- params: site String, from Date, to Date, limit UInt32
-- columns: from_path, to_path, transitions
-- source: navigation (materialised view)
SELECT from_path, to_path, sum(transitions) AS transitions
FROM navigation
WHERE site = {site:String} AND day >= {from:Date} AND day <= {to:Date}
GROUP BY from_path, to_path
ORDER BY transitions DESC, from_path, to_path
LIMIT {limit:UInt32}
