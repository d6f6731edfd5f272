-- name: fingerprints_multi_visitor
-- title: Devices seen under many visitor ids
-- answers: Fingerprint ids that appeared with more than one visitor id in the range (same device from several addresses or browsers, or a device seen on several days), most first.
-- params: site String, from Date, to Date, limit UInt32
-- columns: fingerprint_id, visitors, events
-- source: events
SELECT lower(hex(fingerprint_id)) AS fingerprint_id, uniqExact(visitor_id) AS visitors, count() AS events
FROM events
WHERE site = {site:String} AND toDate(received_at) >= {from:Date} AND toDate(received_at) <= {to:Date}
  AND fingerprint_version != 0
GROUP BY fingerprint_id
HAVING visitors > 1
ORDER BY visitors DESC, events DESC, fingerprint_id
LIMIT {limit:UInt32}
