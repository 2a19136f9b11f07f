//! Types shared by the credmgr filter (compiled to `wasm32-wasip1`) and the control plane.
//!
//! Everything that crosses the wire between a gateway and the control plane is defined here
//! once, so the two sides cannot drift apart. The crate is deliberately small and has no
//! dependencies beyond `serde` (and, with the `jwt` feature, `jwt-compact`; with `openapi`,
//! which only the control plane turns on, `utoipa` for its OpenAPI schemas): it is compiled into
//! the Wasm filter, where every byte counts.

pub mod access;
pub mod error;
pub mod ids;
#[cfg(feature = "jwt")]
pub mod jwt;
pub mod runtime;

pub use error::{ErrorBody, ErrorDetail};
pub use runtime::RuntimeToken;
