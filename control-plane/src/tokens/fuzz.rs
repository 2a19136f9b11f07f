//! Entry points for the fuzz targets in `fuzz/` (not an API): the token endpoint's answer as
//! the token client reads it, without a network.

use super::error::TokenFailure;
use super::response::{self, BodyFormat};
use super::TokenResponse;
use crate::presets::Quirks;

/// [`response::interpret`] on `body`, answered with HTTP `status`; `form_label`: the answer
/// was labelled `application/x-www-form-urlencoded`. `None` for a status that is no HTTP
/// status.
pub fn interpret(
    status: u16,
    form_label: bool,
    body: &[u8],
    quirks: &Quirks,
) -> Option<Result<TokenResponse, TokenFailure>> {
    let status = reqwest::StatusCode::from_u16(status).ok()?;
    let format = if form_label {
        BodyFormat::Form
    } else {
        BodyFormat::Json
    };
    Some(response::interpret(status, format, body, quirks))
}

/// [`response::jwt_exp`]: the `exp` of an access token that is a JWT, unverified.
pub fn jwt_exp(token: &str) -> Option<i64> {
    response::jwt_exp(token)
}
