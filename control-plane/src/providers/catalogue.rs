//! `GET /v1/provider-types` and `GET /v1/provider-types/{id}`: the catalogue as a client
//! needs it to render a form (each preset's parameters with description, whether required,
//! an example), plus what the preset fills in and its quirks.

use axum::extract::Path;
use axum::routing::get;
use axum::{Json, Router};

use crate::error::ApiError;
use crate::presets::{self, Preset};
use crate::state::AppState;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/provider-types", get(list))
        .route("/v1/provider-types/{id}", get(show))
}

async fn list() -> Json<&'static [Preset]> {
    Json(presets::all())
}

async fn show(Path(id): Path<String>) -> Result<Json<&'static Preset>, ApiError> {
    presets::get(&id).map(Json).ok_or_else(|| {
        ApiError::NotFound(format!(
            "provider type `{id}` does not exist; GET /v1/provider-types lists them"
        ))
    })
}
