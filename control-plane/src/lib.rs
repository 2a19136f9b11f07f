//! credmgr's control plane: the management API for credential providers and connections,
//! the encrypted token store, token fetching and refresh, and the runtime API that gateways
//! call for tokens.
//!
//! [`app`] builds the HTTP router from an [`AppState`]; [`serve`] runs it on a socket.

pub mod access_policies;
pub mod advice;
pub mod audit;
pub mod auth;
pub mod cli;
pub mod clock;
pub mod config;
pub mod connection_template;
pub mod connections;
pub mod consent;
pub mod console;
pub mod crypto;
pub mod domain;
pub mod error;
pub mod etag;
pub mod events;
pub mod extract;
pub mod gateway_tls;
pub mod http;
pub mod http_server;
pub mod issuers;
pub mod keys;
pub mod management;
pub mod metrics;
pub mod openapi;
pub mod openapi_answers;
pub mod presets;
pub mod providers;
pub mod runtime;
pub mod self_service;
pub mod server;
pub mod state;
pub mod store;
pub mod telemetry;
pub mod tokens;
pub mod webhooks;

pub use config::Config;
pub use error::ApiError;
pub use http::app;
pub use server::serve;
pub use state::AppState;
