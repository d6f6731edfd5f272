-- 002: the audit log and the subject block list (privacy, data-subject rights).
-- audit_log is append-only through footfall: no footfall code path updates or deletes its rows
-- except the retention run, which drops whole expired months and is itself audited.
-- Identifiers are never stored here in the clear: id_hash is a keyed hash (see src/audit.rs).
-- mac is an HMAC over the record with the footfall secret, so an edit made outside footfall is
-- detected by `footfall audit verify`.
CREATE TABLE IF NOT EXISTS audit_log
(
    at DateTime,
    audit_id UUID,
    instance String,
    actor String,
    action String,
    site String,
    id_kind String,
    id_hash String,
    detail String,
    result String,
    mac String
)
ENGINE = MergeTree
PARTITION BY toYYYYMM(at)
ORDER BY (at, audit_id);

-- Subjects whose events are dropped at ingest (and at delivery). The latest change per identifier
-- wins: read with argMax(blocked, changed_ms). id_hash has the representation of the column it
-- matches in events (hex of the stored hash, or the raw client session id).
CREATE TABLE IF NOT EXISTS subject_blocks
(
    site String,
    id_kind String,
    id_hash String,
    blocked UInt8,
    changed_at DateTime,
    changed_ms UInt64,
    actor String
)
ENGINE = ReplacingMergeTree(changed_ms)
ORDER BY (site, id_kind, id_hash);
