//! footfall: a self-hosted, privacy-aware, passive visitor-statistics collector.
//!
//! The data path reads top to bottom:
//! tracker-js -> [`http`] -> [`beacon`] (parse, validate) -> [`enrich`] (named ordered steps)
//! -> [`spool`] (durable, on disk before the 202) -> [`writer`] (batches into ClickHouse)
//! -> `schema/*.sql`.

pub mod admin;
pub mod audit;
pub mod auth;
pub mod beacon;
pub mod clock;
pub mod config;
pub mod enrich;
pub mod health;
pub mod http;
pub mod keys;
pub mod managed;
pub mod metrics;
pub mod privacy;
pub mod rebuild;
pub mod retention;
pub mod rollup;
pub mod row;
pub mod schema;
pub mod serve;
pub mod shared_salts;
pub mod spool;
pub mod stats;
pub mod subjects;
pub mod writer;
