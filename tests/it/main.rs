//! Integration tests: one binary, one real ClickHouse server per run, a fresh database per test.
#![recursion_limit = "256"]

#[path = "../support/mmdb.rs"]
mod mmdb;

mod harness;

mod analytics;
mod bad_input;
mod binary;
mod collector;
mod faults;
mod fixtures;
mod hostile;
mod http_surface;
mod privacy;
mod salts;
