//! credmgr's Proxy-Wasm HTTP filter.
//!
//! Runs the policy pipeline on each request: `get-authorization-context` (find the connection's
//! access token in Envoy shared data, or fetch it from the control plane) and `set-header`
//! (attach it to the request to the backend). The logic lives in plain Rust behind the
//! [`host::Host`] trait so it unit-tests natively; `wasm.rs` is the thin glue to Envoy.
//!
//! Each module imports only those below it: `wasm` (the glue) on top; [`worker`] (Envoy's
//! events, the requests kept and the calls in flight); [`pipeline`] (one request's steps);
//! [`view`] (what the pipeline sees of its worker) and [`step_ids`] (a step's ids for one
//! request); [`refresh`], [`control_plane`] and
//! [`denials`]; and at the bottom [`failure`], [`config`] (with its private `config_raw` and
//! `config_compile`), [`cache`], [`identity`], [`stats`], [`template`], [`host`] and
//! [`matching`] (the request rules, which import nothing of the crate).

pub mod cache;
pub mod config;
mod config_compile;
mod config_raw;
pub mod control_plane;
pub mod denials;
pub mod failure;
pub mod host;
pub mod identity;
pub mod matching;
pub mod pipeline;
pub mod refresh;
pub mod refused;
pub mod route;
pub mod stats;
pub mod step_ids;
pub mod template;
#[cfg(test)]
mod test_host;
mod vars;
pub mod view;
pub mod worker;

// The glue to Envoy; left out of unit-test builds, which run the logic through a fake host
// (natively, and as wasm32 under Node's WASI: see scripts/wasi-run.mjs).
#[cfg(all(target_arch = "wasm32", not(test)))]
mod wasm;
