-- 004: the daily visitor salts, when several footfall instances share them (salts.store =
-- "clickhouse"; with the default "local" this table stays empty).
--
-- Each instance offers a random salt for today and tomorrow when none is there yet; all use the
-- earliest offer (smallest created_ms, then salt), so instances behind one load balancer give a
-- visitor the same id. Tomorrow's is agreed a day ahead, so the switch at midnight needs no
-- coordination. Partitions older than yesterday are dropped by every instance's salt sync: once
-- gone, the visitor ids of that day cannot be recomputed from an address and a user agent.
-- Only footfall's admin account reads it; keep it out of backups (see README, "Backups").
CREATE TABLE IF NOT EXISTS salts
(
    day Date,
    salt String,
    created_ms UInt64,
    instance String
)
ENGINE = MergeTree
PARTITION BY toYYYYMMDD(day)
ORDER BY (day, created_ms, salt);
