-- name: outbound_links
-- title: Outbound links
-- answers: Exit points: links to other sites that visitors clicked, per page, by clicks.
-- params: site String, from Date, to Date, limit UInt32
-- columns: path, target_host, target_url, clicks
-- source: outbound_links (materialised view)
SELECT path, target_host, target_url, sum(clicks) AS clicks
FROM outbound_links
WHERE site = {site:String} AND day >= {from:Date} AND day <= {to:Date}
GROUP BY path, target_host, target_url
ORDER BY clicks DESC, path, target_url
LIMIT {limit:UInt32}
