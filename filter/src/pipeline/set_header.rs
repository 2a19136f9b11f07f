//! The `set-header` step of a request's pipeline: the header's value rendered from the context
//! variables (or, on the hot path, the value kept for the same token), checked for bytes no
//! header may hold, written to the request, and the tokens that went out remembered.

use super::Request;
use crate::config::{ExistsAction, SetHeader};
use crate::host::{Host, HostError};
use crate::template::Segment;
use crate::vars::Vars;
use std::rc::Rc;

impl Request {
    /// Applies a `set-header` step; `Ok(true)` when it wrote an access token. With `record`,
    /// the tokens written are remembered, for a backend's 401 to retire them.
    pub(super) fn set_header(
        &mut self,
        host: &impl Host,
        step: &SetHeader,
        record: bool,
    ) -> Result<bool, SetHeaderFailure> {
        if let (Some(var), ExistsAction::Override) = (&step.token_only, step.exists_action) {
            return self.set_token_header(host, step, var, record);
        }
        let values = Vars {
            vars: &self.vars,
            host,
            claims: &[],
        };
        let mut rendered = Vec::with_capacity(step.values.len());
        for t in &step.values {
            match t.render(&values) {
                Some(v) => rendered.push(v),
                // A null context (ignored error): leave the header alone.
                None => return Ok(false),
            }
        }
        if rendered.iter().any(|v| v.bytes().any(unsafe_byte)) {
            return Err(SetHeaderFailure::Unsafe);
        }
        match step.exists_action {
            ExistsAction::Delete => {
                return Ok(host.remove_request_header(&step.name).map(|()| false)?)
            }
            ExistsAction::Skip if host.request_header(&step.name)?.is_some() => return Ok(false),
            ExistsAction::Override | ExistsAction::Skip => {
                let mut it = rendered.iter();
                if let Some(first) = it.next() {
                    host.set_request_header(&step.name, first)?;
                }
                it.try_for_each(|v| host.add_request_header(&step.name, v))?;
            }
            ExistsAction::Append => rendered
                .iter()
                .try_for_each(|v| host.add_request_header(&step.name, v))?,
        }
        // Remember which tokens went out, so a 401 from the backend can retire them.
        let mut wrote_token = false;
        for t in &step.values {
            for seg in t.segments() {
                if let Segment::AccessToken(var) = seg {
                    if let Some(v) = self.vars.iter().rev().find(|v| &*v.name == var) {
                        if let (Some(token), Some(ids)) = (&v.token, &v.ids) {
                            wrote_token = true;
                            if record {
                                self.injected.push((Rc::clone(ids), Rc::clone(token)));
                            }
                        }
                    }
                }
            }
        }
        Ok(wrote_token)
    }

    /// The hot path of `set-header`: one value made of literals and the access token of
    /// context variable `var` only, overriding the header. The value rendered for a token is
    /// kept with the step and set again while the token is the same, without rendering or
    /// allocating.
    pub(super) fn set_token_header(
        &mut self,
        host: &impl Host,
        step: &SetHeader,
        var: &str,
        record: bool,
    ) -> Result<bool, SetHeaderFailure> {
        let Some(v) = self.vars.iter().rev().find(|v| &*v.name == var) else {
            return Ok(false);
        };
        // A null context (ignored error): leave the header alone.
        let Some(token) = &v.token else {
            return Ok(false);
        };
        let kept = match &*step.rendered.borrow() {
            Some((t, value)) if Rc::ptr_eq(t, token) => Some(Rc::clone(value)),
            _ => None,
        };
        let value = match kept {
            Some(value) => value,
            None => {
                let values = Vars {
                    vars: &self.vars,
                    host,
                    claims: &[],
                };
                let Some(rendered) = step.values.first().and_then(|t| t.render(&values)) else {
                    return Ok(false);
                };
                if rendered.bytes().any(unsafe_byte) {
                    return Err(SetHeaderFailure::Unsafe);
                }
                let value: Rc<str> = Rc::from(rendered);
                *step.rendered.borrow_mut() = Some((Rc::clone(token), Rc::clone(&value)));
                value
            }
        };
        host.set_request_header(&step.name, &value)?;
        // Remember which token went out, so a 401 from the backend can retire it.
        if let (true, Some(ids)) = (record, &v.ids) {
            let entry = (Rc::clone(ids), Rc::clone(token));
            self.injected.push(entry);
        }
        Ok(true)
    }
}

/// RFC 9110 §5.5: no CR, LF or NUL in a field value (Envoy would answer 503 for it, and a CR
/// LF could add headers of the provider's choosing); HTAB is allowed.
fn unsafe_byte(b: u8) -> bool {
    (b < 0x20 && b != b'\t') || b == 0x7f
}

/// Why a `set-header` step did not complete.
pub(super) enum SetHeaderFailure {
    /// The rendered value holds a byte no header value may hold.
    Unsafe,
    Host(HostError),
}

impl From<HostError> for SetHeaderFailure {
    fn from(e: HostError) -> Self {
        SetHeaderFailure::Host(e)
    }
}
