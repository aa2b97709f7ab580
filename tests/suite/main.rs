//! The integration tests in one binary, so one shared PostgreSQL cluster (primary + 2
//! followers) serves them all instead of one per binary: `cargo test --test suite`, one group
//! with `cargo test --test suite lifecycle::`. The failure scenarios under load are a binary of
//! their own, `tests/failures.rs`: cargo runs test binaries one after another, so they measure
//! seconds with no other test of this binary running beside them.
//!
//! Tests here share the cluster, so none breaks its nodes (a test that does starts its own),
//! and none may assume it is the only user of it (rows, sessions, processes of other tests).

#[path = "../support/mod.rs"]
mod support;

mod badinput;
mod buildpack;
mod cnb;
mod engine;
mod families;
mod idle;
mod launcher;
mod lifecycle;
mod logical;
mod map;
mod observe;
mod pgpool_build;
mod properties;
mod routing;
mod selftest;
mod tls;
