//! credmgr's Proxy-Wasm HTTP filter.
//!
//! Runs the policy pipeline on each request: `get-authorization-context` (find the connection's
//! access token in Envoy shared data, or fetch it from the control plane) and `set-header`
//! (attach it to the request to the backend). The logic lives in plain Rust behind the
//! [`host::Host`] trait so it unit-tests natively; `wasm.rs` is the thin glue to Envoy.

pub mod cache;
pub mod config;
pub mod host;
pub mod pipeline;
pub mod stats;
pub mod template;
pub mod worker;

#[cfg(target_arch = "wasm32")]
mod wasm;
