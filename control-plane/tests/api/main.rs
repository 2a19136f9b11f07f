//! The HTTP APIs, driven through `app(state)` with `tower::ServiceExt::oneshot` against a
//! temporary SQLite file, or with `CREDMGR_TEST_STORE=postgres` a PostgreSQL database of
//! their own (`pg.rs`; `postgres.rs` tests what only PostgreSQL has: several replicas). No network beyond 127.0.0.1: "unreachable" providers are closed or
//! silent local ports.

// clippy.toml allows these in `#[test]` functions; the harness helpers are test code too.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod audit;
mod backoff;
mod connections;
mod consent;
mod etags;
mod event_inputs;
mod fake_saas;
mod fixtures;
mod gateway_tls;
mod gateway_tls_slots;
mod harness;
mod http_limits;
mod identities;
mod jwks_fetch;
mod management;
mod metrics;
mod openapi;
mod pg;
mod postgres;
mod presets;
mod provider_answers;
mod providers;
mod quirks;
mod refresh_tokens;
mod rejected;
mod runtime;
mod scheduler;
mod self_service;
mod self_service_access;
mod webhooks;
