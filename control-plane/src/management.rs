//! The management API's routes (`/v1/...`), without authentication: `http.rs` serves them
//! behind the admin token, the web console calls them in process behind its session. One list,
//! so a resource added here reaches both, and both record their changes in the audit trail.

use axum::Router;

use crate::state::AppState;
use crate::{access_policies, audit, connections, consent, issuers, keys, providers, webhooks};

/// Every management route.
pub fn routes() -> Router<AppState> {
    Router::new()
        .merge(providers::routes())
        .merge(providers::catalogue::routes())
        .merge(connections::routes())
        .merge(consent::management_routes())
        .merge(keys::routes())
        .merge(issuers::routes())
        .merge(access_policies::routes())
        .merge(webhooks::routes())
        .merge(audit::routes())
}
