//! footfall: a self-hosted, privacy-aware, passive visitor-statistics collector.
//!
//! The data path reads top to bottom:
//! tracker-js -> [`http`] -> [`beacon`] (parse, validate) -> [`enrich`] (named ordered steps)
//! -> [`writer`] (batches into ClickHouse) -> `schema/*.sql`.

pub mod beacon;
pub mod clock;
pub mod config;
pub mod enrich;
pub mod http;
pub mod keys;
pub mod managed;
pub mod metrics;
pub mod row;
pub mod schema;
pub mod serve;
pub mod writer;
