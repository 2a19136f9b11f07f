//! The error answers operations share in the OpenAPI document (`#[utoipa::path(responses(
//! ...))]` names them, e.g. `crate::openapi_answers::AdminErrors`): each is `ErrorBody` with the
//! statuses and codes a kind of call can answer. Below the handlers, which use them, and
//! `openapi.rs`, which gathers the handlers' operations.

use std::collections::BTreeMap;

use utoipa::openapi::{ContentBuilder, RefOr, Response, ResponseBuilder};
use utoipa::IntoResponses;

/// An error answer: `ErrorBody` as JSON.
fn error(description: &str) -> RefOr<Response> {
    ResponseBuilder::new()
        .description(description)
        .content(
            "application/json",
            ContentBuilder::new()
                .schema(Some(RefOr::Ref(utoipa::openapi::Ref::from_schema_name(
                    "ErrorBody",
                ))))
                .build(),
        )
        .build()
        .into()
}

fn errors(list: &[(u16, &str)]) -> BTreeMap<String, RefOr<Response>> {
    list.iter()
        .map(|(status, description)| (status.to_string(), error(description)))
        .collect()
}

/// The errors every management call may answer.
pub struct AdminErrors;

impl IntoResponses for AdminErrors {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        errors(&[
            (401, "`unauthenticated`: no admin token, or a wrong one."),
            (
                500,
                "`internal_error`: a bug or a key that cannot decrypt; the log has the details.",
            ),
            (
                503,
                "`store_unavailable`: the database does not answer; retry shortly.",
            ),
        ])
    }
}

/// The errors of a call that names a resource by its path.
pub struct LookupErrors;

impl IntoResponses for LookupErrors {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        errors(&[
            (400, "`invalid_request`: an id in the path is not a valid id (`details.field` names it)."),
            (404, "`not_found`: the resource, or one it belongs to, does not exist."),
        ])
    }
}

/// The errors of a create-or-replace (`PUT`) with a JSON body.
pub struct WriteErrors;

impl IntoResponses for WriteErrors {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        errors(&[
            (400, "`invalid_request`: an invalid path id, body or field (`details.field` names it), or a malformed `If-Match`."),
            (409, "`conflict`: another request changed the resource at the same time, or a limit or uniqueness rule refuses it."),
            (412, "`precondition_failed`: `If-Match` names a version the resource no longer has."),
            (413, "`invalid_request`: the body is too large."),
            (415, "`invalid_request`: the body is not `application/json`."),
        ])
    }
}

/// The errors of a read with query parameters.
pub struct QueryErrors;

impl IntoResponses for QueryErrors {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        errors(&[(
            400,
            "`invalid_request`: an unknown or invalid query parameter (`details.field` names it).",
        )])
    }
}

/// The errors of a conditional delete.
pub struct DeleteErrors;

impl IntoResponses for DeleteErrors {
    fn responses() -> BTreeMap<String, RefOr<Response>> {
        errors(&[(
            412,
            "`precondition_failed`: `If-Match` names a version the resource no longer has.",
        )])
    }
}
