//! Value templates: literal text with `{{expression}}` placeholders, parsed once at configure
//! time and rendered per request by plain lookups.
//!
//! Expressions:
//! - `{{<var>.AccessToken}}`: the access token held by context variable `<var>`;
//! - `{{<var>.Claims.<name>}}`: a non-secret field of the token response (`scope`, ...);
//! - `{{request.headers.<name>}}`: a request header (the first value; empty when absent);
//! - `{{identity.Claims.<name>}}`: a claim of the caller's verified JWT, only in the
//!   `provider-id` and `authorization-id` of a step with `identity-type: jwt` (the
//!   configuration refuses it anywhere else), rendered only after that JWT was verified.

/// A parsed template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    segments: Vec<Segment>,
}

/// One piece of a template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Segment {
    Literal(String),
    /// `{{var.AccessToken}}`
    AccessToken(String),
    /// `{{var.Claims.name}}`
    Claim(String, String),
    /// `{{request.headers.name}}`, name lower-cased.
    RequestHeader(String),
    /// `{{identity.Claims.name}}`: a claim of the caller's verified JWT.
    IdentityClaim(String),
}

/// What a template is rendered against.
pub trait Values {
    /// The context variable's access token; `None` when the variable is null (for example
    /// after an ignored error).
    fn access_token(&self, var: &str) -> Option<&str>;
    /// A claim of the context variable, rendered as text; `Some("")` when the variable is set
    /// but the claim absent, `None` when the variable is null.
    fn claim(&self, var: &str, name: &str) -> Option<String>;
    /// A request header's value, or `None`.
    fn request_header(&self, name: &str) -> Option<String>;
    /// A claim of the caller's verified JWT; `None` when there is no verified caller or the
    /// claim was not kept (absent, not text, too long).
    fn identity_claim(&self, _name: &str) -> Option<&str> {
        None
    }
}

impl Template {
    /// Parses `text`; the error says what is wrong.
    pub fn parse(text: &str) -> Result<Template, String> {
        let mut segments = Vec::new();
        let mut rest = text;
        while let Some(start) = rest.find("{{") {
            let (lit, after) = rest.split_at(start);
            if !lit.is_empty() {
                segments.push(Segment::Literal(lit.to_owned()));
            }
            let after = after.get(2..).unwrap_or_default();
            let end = after
                .find("}}")
                .ok_or_else(|| format!("unclosed '{{{{' in template {text:?}"))?;
            let expr = after.get(..end).unwrap_or_default().trim();
            segments.push(parse_expression(expr)?);
            rest = after.get(end + 2..).unwrap_or_default();
        }
        if !rest.is_empty() {
            segments.push(Segment::Literal(rest.to_owned()));
        }
        Ok(Template { segments })
    }

    /// The parsed pieces, in order.
    pub fn segments(&self) -> &[Segment] {
        &self.segments
    }

    /// Renders the template; `None` when it uses a context variable that is null, in which
    /// case the step using it is skipped rather than sending a half-made value.
    pub fn render(&self, values: &impl Values) -> Option<String> {
        let mut out = String::new();
        for seg in &self.segments {
            match seg {
                Segment::Literal(s) => out.push_str(s),
                Segment::AccessToken(var) => out.push_str(values.access_token(var)?),
                Segment::Claim(var, name) => out.push_str(&values.claim(var, name)?),
                Segment::RequestHeader(name) => {
                    if let Some(v) = values.request_header(name) {
                        out.push_str(&v);
                    }
                }
                Segment::IdentityClaim(name) => out.push_str(values.identity_claim(name)?),
            }
        }
        Some(out)
    }

    /// Renders an id template (`provider-id`, `authorization-id`). Unlike [`Template::render`],
    /// a verified claim that is missing is an error, never an empty piece: `gh-{{identity.Claims.sub}}`
    /// must not become `gh-` for every caller without `sub`.
    pub fn render_id(&self, values: &impl Values) -> Result<String, String> {
        let mut out = String::new();
        for seg in &self.segments {
            match seg {
                Segment::Literal(s) => out.push_str(s),
                Segment::RequestHeader(name) => {
                    if let Some(v) = values.request_header(name) {
                        out.push_str(&v);
                    }
                }
                Segment::IdentityClaim(name) => match values.identity_claim(name) {
                    Some(v) => out.push_str(v),
                    None => {
                        return Err(format!(
                            "the caller's verified JWT has no claim {name:?} usable in an id \
                             (absent, not a string or number, or longer than 256 characters)"
                        ))
                    }
                },
                Segment::AccessToken(var) | Segment::Claim(var, _) => {
                    return Err(format!("context variable {var:?} cannot be used in an id"))
                }
            }
        }
        Ok(out)
    }

    /// The template's text when it has no placeholder.
    pub fn literal(&self) -> Option<String> {
        match self.segments.as_slice() {
            [] => Some(String::new()),
            [Segment::Literal(s)] => Some(s.clone()),
            _ => None,
        }
    }

    /// Whether the template uses the caller's verified claims.
    /// The context variable this template depends on when it is made of literals and that
    /// one variable's access token only (`Bearer {{auth.AccessToken}}`); its rendering is then
    /// a function of the token alone.
    pub fn token_only(&self) -> Option<&str> {
        let mut var = None;
        for seg in &self.segments {
            match seg {
                Segment::Literal(_) => {}
                Segment::AccessToken(v) if var.is_none_or(|w: &str| w == v) => {
                    var = Some(v.as_str())
                }
                _ => return None,
            }
        }
        var
    }

    pub fn uses_identity(&self) -> bool {
        self.segments
            .iter()
            .any(|s| matches!(s, Segment::IdentityClaim(_)))
    }

    /// The verified claims the template uses.
    pub fn identity_claims(&self) -> impl Iterator<Item = &str> {
        self.segments.iter().filter_map(|s| match s {
            Segment::IdentityClaim(name) => Some(name.as_str()),
            _ => None,
        })
    }
}

fn parse_expression(expr: &str) -> Result<Segment, String> {
    let parts: Vec<&str> = expr.splitn(3, '.').collect();
    match parts.as_slice() {
        ["request", "headers", name] if !name.is_empty() => {
            Ok(Segment::RequestHeader(name.to_ascii_lowercase()))
        }
        ["identity", "Claims", name] if !name.is_empty() => {
            Ok(Segment::IdentityClaim((*name).to_owned()))
        }
        [var, "AccessToken"] if is_var(var) => Ok(Segment::AccessToken((*var).to_owned())),
        [var, "Claims", name] if is_var(var) && !name.is_empty() => {
            Ok(Segment::Claim((*var).to_owned(), (*name).to_owned()))
        }
        _ => Err(format!(
            "unknown expression {{{{{expr}}}}}; expected {{{{<variable>.AccessToken}}}}, \
             {{{{<variable>.Claims.<name>}}}}, {{{{request.headers.<name>}}}} or \
             {{{{identity.Claims.<name>}}}}"
        )),
    }
}

fn is_var(s: &str) -> bool {
    !s.is_empty()
        && s != "request"
        && s != "identity"
        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

#[cfg(test)]
mod tests {
    use super::*;

    struct V {
        token: Option<&'static str>,
    }
    impl Values for V {
        fn access_token(&self, var: &str) -> Option<&str> {
            if var == "auth" {
                self.token
            } else {
                None
            }
        }
        fn claim(&self, var: &str, name: &str) -> Option<String> {
            self.access_token(var)?;
            Some(if name == "scope" {
                "a b".into()
            } else {
                String::new()
            })
        }
        fn request_header(&self, name: &str) -> Option<String> {
            (name == "x-user").then(|| "bob".to_owned())
        }
    }

    #[test]
    fn renders_every_kind_of_expression() {
        let t = Template::parse("Bearer {{auth.AccessToken}}; s={{ auth.Claims.scope }}; u={{request.headers.X-User}}; n={{request.headers.none}}").unwrap();
        assert_eq!(
            t.render(&V { token: Some("tok") }).unwrap(),
            "Bearer tok; s=a b; u=bob; n="
        );
    }

    struct Caller(Option<&'static str>);
    impl Values for Caller {
        fn access_token(&self, _: &str) -> Option<&str> {
            None
        }
        fn claim(&self, _: &str, _: &str) -> Option<String> {
            None
        }
        fn request_header(&self, name: &str) -> Option<String> {
            (name == "x-team").then(|| "blue".to_owned())
        }
        fn identity_claim(&self, name: &str) -> Option<&str> {
            if name == "sub" {
                self.0
            } else {
                None
            }
        }
    }

    #[test]
    fn ids_render_headers_and_verified_claims_and_refuse_missing_claims() {
        let t = Template::parse("gh-{{request.headers.x-team}}-{{identity.Claims.sub}}").unwrap();
        assert!(t.uses_identity());
        assert_eq!(t.identity_claims().collect::<Vec<_>>(), ["sub"]);
        assert_eq!(t.render_id(&Caller(Some("u1"))).unwrap(), "gh-blue-u1");
        let err = t.render_id(&Caller(None)).unwrap_err();
        assert!(err.contains("\"sub\""), "{err}");
        assert_eq!(
            Template::parse("alice").unwrap().literal().as_deref(),
            Some("alice")
        );
        assert_eq!(t.literal(), None);
    }

    #[test]
    fn a_null_context_renders_nothing() {
        let t = Template::parse("Bearer {{auth.AccessToken}}").unwrap();
        assert_eq!(t.render(&V { token: None }), None);
        let plain = Template::parse("fixed").unwrap();
        assert_eq!(plain.render(&V { token: None }).unwrap(), "fixed");
    }

    #[test]
    fn bad_templates_say_why() {
        assert!(Template::parse("{{auth.AccessToken")
            .unwrap_err()
            .contains("unclosed"));
        assert!(Template::parse("{{auth.Token}}")
            .unwrap_err()
            .contains("unknown expression"));
        assert!(Template::parse("{{request.AccessToken}}").is_err());
        assert!(Template::parse("{{identity.AccessToken}}").is_err());
        assert!(Template::parse("{{identity.Claims.}}").is_err());
        assert!(Template::parse("{{}}").is_err());
    }
}
