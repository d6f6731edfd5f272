-- 007: drops 003's `sessions`, which 006 replaced with `session_states` and stopped filling.
--
-- A migration of its own, after 006 is recorded: 006 reads `sessions` and runs again from the
-- start if it is interrupted. footfall's admin user needs DROP TABLE on footfall.sessions for
-- this one statement (deploy/clickhouse/grants.sql gives it on that table only; re-run the file
-- before upgrading). On 18.x/19.x the admin user of users-18.xml may drop tables anyway.
DROP TABLE IF EXISTS sessions;
