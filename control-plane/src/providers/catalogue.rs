//! `GET /v1/provider-types` and `GET /v1/provider-types/{id}`: the catalogue as a client
//! needs it to render a form (each preset's parameters with description, whether required,
//! an example), plus what the preset fills in and its quirks.

use axum::extract::Path;
use axum::routing::get;
use axum::{Json, Router};

use crate::error::ApiError;
use crate::presets::{self, Preset};
use crate::state::AppState;

/// The operations of this module, for the OpenAPI document.
#[derive(utoipa::OpenApi)]
#[openapi(paths(list, show))]
pub struct Api;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/provider-types", get(list))
        .route("/v1/provider-types/{id}", get(show))
}

/// The provider catalogue: every preset, with the parameters a form needs.
#[utoipa::path(
    get,
    path = "/v1/provider-types",
    operation_id = "list_provider_types",
    tag = "provider types",
    security(("admin_token" = [])),
    responses(
        (status = 200, description = "Every preset", body = Vec<Preset>),
        crate::openapi_answers::AdminErrors
    )
)]
async fn list() -> Json<&'static [Preset]> {
    Json(presets::all())
}

/// One preset of the catalogue.
#[utoipa::path(
    get,
    path = "/v1/provider-types/{id}",
    operation_id = "get_provider_type",
    tag = "provider types",
    params(("id" = String, Path, description = "The preset's id (`github`, `entra-id`, ...)")),
    security(("admin_token" = [])),
    responses(
        (status = 200, description = "The preset", body = Preset),
        (
            status = 404,
            description = "`not_found`: no such preset",
            body = credmgr_common::ErrorBody
        ),
        crate::openapi_answers::AdminErrors
    )
)]
async fn show(Path(id): Path<String>) -> Result<Json<&'static Preset>, ApiError> {
    presets::get(&id).map(Json).ok_or_else(|| {
        ApiError::NotFound(format!(
            "provider type `{id}` does not exist; GET /v1/provider-types lists them"
        ))
    })
}
