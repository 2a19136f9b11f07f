//! The ids a `get-authorization-context` step uses for one request: its literal ids (checked
//! and keyed once, at load; handed out without allocating), or its `provider-id` and
//! `authorization-id` templates rendered with the request's headers and, in a `jwt` step, the
//! verified caller's claims. A rendered id that breaks the id rules is the caller's mistake:
//! a 400 naming the policy set, the step and the template, before any look-up or call.

use crate::config::{GetAuthorizationContext, IdentityType, Ids, StepIds};
use crate::failure::Failure;
use crate::template::{Template, Values};
use credmgr_common::error::codes;
use credmgr_common::ids::validate_id;
use credmgr_common::ErrorBody;
use std::rc::Rc;

/// The ids of `step` (of policy set `policy`) for the request `values` describe. The values
/// must hold verified claims only, and only once the step's caller was verified.
pub fn resolve(
    step: &GetAuthorizationContext,
    policy: &str,
    values: &impl Values,
) -> Result<Rc<StepIds>, Failure> {
    let (provider_t, authorization_t, provider_text, authorization_text) = match &step.ids {
        Ids::Literal(ids) => return Ok(Rc::clone(ids)),
        Ids::Templated {
            provider_id,
            authorization_id,
            provider_text,
            authorization_text,
        } => (
            provider_id,
            authorization_id,
            provider_text,
            authorization_text,
        ),
    };
    // The rendered value is never in the answer: a header could carry a credential.
    let render = |field: &str, t: &Template, text: &str| {
        t.render_id(values)
            .and_then(|id| {
                validate_id(&id)
                    .map(|()| id)
                    .map_err(|e| format!("the id {e}"))
            })
            .map_err(|why| Failure {
                status: 400,
                body: ErrorBody::new(
                    codes::INVALID_REQUEST,
                    format!(
                        "{field} of {} (template {text:?}) does not make a valid id for this \
                         request: {why}",
                        step.place
                    ),
                )
                .with_detail("policy_set", policy)
                .with_detail("step", step.place.as_str())
                .with_detail("field", field)
                .with_detail("template", text),
            })
    };
    let provider_id = render("provider-id", provider_t, provider_text)?;
    let authorization_id = render("authorization-id", authorization_t, authorization_text)?;
    let identity = match step.identity_type {
        IdentityType::Managed => "managed",
        IdentityType::Jwt => "jwt",
    };
    Ok(Rc::new(StepIds {
        cache_key: crate::cache::rendered_key(&provider_id, &authorization_id, identity),
        provider_id,
        authorization_id,
    }))
}
