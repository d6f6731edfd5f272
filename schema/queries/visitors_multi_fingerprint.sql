-- name: visitors_multi_fingerprint
-- title: Visitors seen with many devices
-- answers: Visitor ids whose events carried more than one fingerprint id in the range (a changing or spoofed device, or one address and browser shared by several devices), most first.
-- params: site String, from Date, to Date, limit UInt32
-- columns: visitor_id, fingerprints, events
-- source: events
SELECT lower(hex(visitor_id)) AS visitor_id, uniqExact(fingerprint_id) AS fingerprints, count() AS events
FROM events
WHERE site = {site:String} AND toDate(received_at) >= {from:Date} AND toDate(received_at) <= {to:Date}
  AND fingerprint_version != 0
GROUP BY visitor_id
HAVING fingerprints > 1
ORDER BY fingerprints DESC, events DESC, visitor_id
LIMIT {limit:UInt32}
