-- footfall's ClickHouse roles and users for current ClickHouse (SQL-driven access control; checked
-- on 26.9, older 2x.x releases may not know every privilege named here). For 18.x/19.x use
-- users-18.xml beside this file. See README.md there.
--
-- Run it as a user with access management and ALL ON *.* WITH GRANT OPTION, e.g.
--   clickhouse-client --user admin --password --multiquery < deploy/clickhouse/grants.sql
-- It is idempotent: run it again after editing and the roles converge to exactly what is written
-- here (each role is reset with REVOKE ALL first, so a privilege removed here is removed on the
-- server too; the collector may see a refused query for that instant and retries).
--
-- Before the first run replace the three CHANGE_ME strings with the SHA-256 (hex) of each password:
--   PW=$(head -c 18 /dev/urandom | base64); echo "$PW"; echo -n "$PW" | sha256sum | cut -d' ' -f1
-- A CHANGE_ME string is not a hash, so CREATE USER refuses it: no user is ever created with a
-- known password. Existing users keep their password on later runs (CREATE USER IF NOT EXISTS);
-- to rotate: ALTER USER footfall_ingest IDENTIFIED WITH sha256_hash BY '<new hash>';
--
-- Keep access_control_improvements.select_from_system_db_requires_grant = true in the server
-- config (the default of current releases): otherwise every user can read system tables such as
-- system.query_log and system.mutations, whose query texts can name data subjects.

CREATE ROLE IF NOT EXISTS footfall_ingest_role;
CREATE ROLE IF NOT EXISTS footfall_analyst_role;
CREATE ROLE IF NOT EXISTS footfall_admin_role;

-- This file is the whole truth about the three roles.
REVOKE ALL ON *.* FROM footfall_ingest_role;
REVOKE ALL ON *.* FROM footfall_analyst_role;
REVOKE ALL ON *.* FROM footfall_admin_role;

-- footfall_ingest_role: the collector's delivery path. It writes events, reads the schema version
-- (readiness) and the subject block list. Nothing else: no DDL, no ALTER (so no DELETE/UPDATE
-- mutations), no DROP/TRUNCATE, no reading audit_log, no table functions. Of events it may read
-- only the four key columns with which the writer checks, after a failed INSERT or a restart,
-- whether rows already landed (exactly-once delivery); never a URL, title or any other column.
-- The materialised views that fill the rollups run as the user who created them (the admin user:
-- footfall's migrations create them SQL SECURITY DEFINER on 24.4+), so inserting into events needs
-- no rights on the columns they read or the tables they fill. A view created without the clause
-- by an older footfall would check the ingest user's rights instead (and the INSERT would fail):
-- re-create such views with footfall migrate after dropping them, or
--   ALTER TABLE footfall.<view> MODIFY DEFINER = footfall_admin SQL SECURITY DEFINER
GRANT INSERT ON footfall.events TO footfall_ingest_role;
GRANT SELECT(site, received_at, visitor_id, event_id) ON footfall.events TO footfall_ingest_role;
GRANT SELECT ON footfall.schema_migrations TO footfall_ingest_role;
GRANT SELECT ON footfall.subject_blocks TO footfall_ingest_role;
-- On a cluster (FOOTFALL_CLICKHOUSE_CLUSTER) each table `t` is a Distributed table over `t_local`
-- on the shards, which check the sender's rights on `t_local` too (with the cluster's inter-server
-- secret, as the Altinity example sets): the same rights on the `_local` names. On one server
-- those tables do not exist and these grants give nothing.
GRANT INSERT, SELECT(site, received_at, visitor_id, event_id) ON footfall.events_local TO footfall_ingest_role;
GRANT SELECT ON footfall.schema_migrations_local TO footfall_ingest_role;
GRANT SELECT ON footfall.subject_blocks_local TO footfall_ingest_role;

-- The shared visitor salts (table `salts`, FOOTFALL_SALT_STORE=clickhouse) are read, offered and
-- dropped by the admin account only: neither the ingest nor the analyst role can read them.

-- footfall_analyst_role: reads the analytic tables only (what schema/queries/ and the dashboards
-- read), never audit_log, subject_blocks or footfall's bookkeeping; no writes of any kind. It is
-- what footfall's stats API uses when clickhouse.analyst_user is set, and what Grafana should use.
GRANT SELECT ON footfall.events TO footfall_analyst_role;
GRANT SELECT ON footfall.session_states TO footfall_analyst_role;
GRANT SELECT ON footfall.navigation TO footfall_analyst_role;
GRANT SELECT ON footfall.outbound_links TO footfall_analyst_role;
GRANT SELECT ON footfall.daily_stats TO footfall_analyst_role;
GRANT SELECT ON footfall.page_stats TO footfall_analyst_role;
GRANT SELECT ON footfall.dimension_stats TO footfall_analyst_role;
GRANT SELECT ON footfall.daily_summary TO footfall_analyst_role;
GRANT SELECT ON footfall.session_breakdown TO footfall_analyst_role;
GRANT SELECT ON footfall.events_local TO footfall_analyst_role;
GRANT SELECT ON footfall.session_states_local TO footfall_analyst_role;
GRANT SELECT ON footfall.navigation_local TO footfall_analyst_role;
GRANT SELECT ON footfall.outbound_links_local TO footfall_analyst_role;
GRANT SELECT ON footfall.daily_stats_local TO footfall_analyst_role;
GRANT SELECT ON footfall.page_stats_local TO footfall_analyst_role;
GRANT SELECT ON footfall.dimension_stats_local TO footfall_analyst_role;
GRANT SELECT ON footfall.daily_summary_local TO footfall_analyst_role;
GRANT SELECT ON footfall.session_breakdown_local TO footfall_analyst_role;

-- footfall_admin_role: footfall's admin side in database footfall.
--   migrations:               CREATE DATABASE, CREATE TABLE, CREATE VIEW (the materialised views
--                             that keep the rollups; they then insert with this role's rights),
--                             ALTER (ADD/MODIFY COLUMN ...), INSERT and SELECT on schema_migrations
--   rollup job:               SELECT on the rollups, INSERT into daily_summary/session_breakdown
--   data-subject requests:    SELECT (access), ALTER UPDATE / ALTER DELETE on events (correction,
--                             erasure mutations), INSERT into audit_log and subject_blocks,
--                             SELECT on system.mutations (waits for the mutations)
--   retention:                ALTER ... DROP PARTITION for expired months and ALTER ... DELETE
--                             WHERE <time> < cutoff for the boundary month, on events and
--                             audit_log; both are checked as the ALTER DELETE privilege (there is
--                             no separate DROP PARTITION privilege); SELECT on system.parts
--                             DROP VIEW: a migration may replace a materialised view (005, 006)
--                             DROP TABLE on `sessions` only: 006 replaced it, 007 drops it
-- system.databases, system.tables and system.columns need no grant.
-- It gets no other DROP TABLE, no DROP DATABASE, TRUNCATE or OPTIMIZE: run such maintenance as a DBA.
GRANT CREATE DATABASE ON footfall.* TO footfall_admin_role;
GRANT CREATE TABLE ON footfall.* TO footfall_admin_role;
GRANT CREATE VIEW ON footfall.* TO footfall_admin_role;
GRANT DROP VIEW ON footfall.* TO footfall_admin_role;
GRANT DROP TABLE ON footfall.sessions TO footfall_admin_role;
GRANT DROP TABLE ON footfall.sessions_local TO footfall_admin_role;
GRANT SELECT, INSERT ON footfall.* TO footfall_admin_role;
GRANT ALTER TABLE ON footfall.* TO footfall_admin_role;
GRANT SELECT ON system.mutations TO footfall_admin_role;
GRANT SELECT ON system.parts TO footfall_admin_role;
-- On a cluster: migrations, mutations and retention run ON CLUSTER (the CLUSTER privilege; it
-- gives nothing on one server).
GRANT CLUSTER ON *.* TO footfall_admin_role;
-- On a cluster footfall also waits for mutations and finds partitions by reading
-- system.mutations/system.parts of every shard through cluster('<name>', system, ...), which
-- needs the REMOTE privilege. REMOTE also allows remote()/remoteSecure() to any host, a way to
-- copy data out, so it is not granted here: on a cluster, uncomment it and restrict where the
-- admin account can reach at the network level (or run subject requests and retention as a DBA).
-- GRANT REMOTE ON *.* TO footfall_admin_role;

-- audit_log is append-only as far as grants allow: no row updates (ALTER UPDATE, UPDATE), no
-- column drops/clears/type changes, no TTL that would expire rows, and (as above) no TRUNCATE or
-- DROP TABLE. ALTER DELETE must stay, because retention removes expired audit rows (DROP
-- PARTITION, and DELETE WHERE at < cutoff in the boundary month). Grants cannot restrict which
-- rows or partitions: ALTER DELETE on audit_log also allows deleting recent rows, DETACH
-- PARTITION, and (with INSERT, which writing the log needs) MOVE PARTITION ... TO TABLE and
-- REPLACE PARTITION. `footfall audit verify` detects rows edited or forged outside footfall.
REVOKE ALTER UPDATE, ALTER DROP COLUMN, ALTER CLEAR COLUMN, ALTER MODIFY COLUMN, ALTER MATERIALIZE COLUMN, ALTER TTL, ALTER MATERIALIZE TTL ON footfall.audit_log FROM footfall_admin_role;
REVOKE ALTER UPDATE, ALTER DROP COLUMN, ALTER CLEAR COLUMN, ALTER MODIFY COLUMN, ALTER MATERIALIZE COLUMN, ALTER TTL, ALTER MATERIALIZE TTL ON footfall.audit_log_local FROM footfall_admin_role;
-- If audit_log retention ever moves to a TTL in the table's definition (a server-side expiry;
-- not on 18.x), ALTER DELETE can go too:
-- REVOKE ALTER DELETE ON footfall.audit_log FROM footfall_admin_role;

-- The users. HOST: the collector's addresses only (loopback when it runs on the ClickHouse host).
CREATE USER IF NOT EXISTS footfall_ingest IDENTIFIED WITH sha256_hash BY 'CHANGE_ME_sha256_hex_of_the_ingest_password' HOST IP '127.0.0.1', IP '::1' DEFAULT ROLE footfall_ingest_role;
CREATE USER IF NOT EXISTS footfall_analyst IDENTIFIED WITH sha256_hash BY 'CHANGE_ME_sha256_hex_of_the_analyst_password' HOST IP '127.0.0.1', IP '::1' DEFAULT ROLE footfall_analyst_role;
CREATE USER IF NOT EXISTS footfall_admin IDENTIFIED WITH sha256_hash BY 'CHANGE_ME_sha256_hex_of_the_admin_password' HOST IP '127.0.0.1', IP '::1' DEFAULT ROLE footfall_admin_role;

-- Converge users that existed before: only the role's rights, the role active by default.
REVOKE ALL ON *.* FROM footfall_ingest;
REVOKE ALL ON *.* FROM footfall_analyst;
REVOKE ALL ON *.* FROM footfall_admin;
GRANT footfall_ingest_role TO footfall_ingest;
GRANT footfall_analyst_role TO footfall_analyst;
GRANT footfall_admin_role TO footfall_admin;
ALTER USER footfall_ingest DEFAULT ROLE footfall_ingest_role;
ALTER USER footfall_analyst DEFAULT ROLE footfall_analyst_role;
ALTER USER footfall_admin DEFAULT ROLE footfall_admin_role;
