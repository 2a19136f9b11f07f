//! credmgr's filter built natively, as an Envoy dynamic module (a shared library that Envoy
//! 1.40's `envoy.extensions.filters.http.dynamic_modules.v3.DynamicModuleFilter` loads): the
//! same logic as the Proxy-Wasm build (`credmgr-filter`, behind its `Host` trait), a second
//! thin glue to Envoy. The dynamic modules ABI is locked to one Envoy version: this module is
//! for Envoy 1.40.x only; the Proxy-Wasm build stays the portable one.
//!
//! Modules, from the ground up: `abi` (the ABI's declarations), `shared` (the token cache all
//! workers share: process-global, since Envoy loads a module once per process), `config` (one
//! filter configuration), `root_calls` (calls bound to no request, made by the main thread),
//! `host` (`Host` over the ABI, per worker thread), and `hooks`/`noop` (what Envoy calls).

mod abi;
mod config;
mod hooks;
mod host;
mod noop;
mod root_calls;
mod shared;
