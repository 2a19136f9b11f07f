//! Value templates: literal text with `{{expression}}` placeholders, parsed once at configure
//! time and rendered per request by plain lookups.
//!
//! Expressions:
//! - `{{<var>.AccessToken}}`: the access token held by context variable `<var>`;
//! - `{{<var>.Claims.<name>}}`: a non-secret field of the token response (`scope`, ...);
//! - `{{request.headers.<name>}}`: a request header (the first value; empty when absent).

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
            }
        }
        Some(out)
    }
}

fn parse_expression(expr: &str) -> Result<Segment, String> {
    let parts: Vec<&str> = expr.splitn(3, '.').collect();
    match parts.as_slice() {
        ["request", "headers", name] if !name.is_empty() => {
            Ok(Segment::RequestHeader(name.to_ascii_lowercase()))
        }
        [var, "AccessToken"] if is_var(var) => Ok(Segment::AccessToken((*var).to_owned())),
        [var, "Claims", name] if is_var(var) && !name.is_empty() => {
            Ok(Segment::Claim((*var).to_owned(), (*name).to_owned()))
        }
        _ => Err(format!(
            "unknown expression {{{{{expr}}}}}; expected {{{{<variable>.AccessToken}}}}, \
             {{{{<variable>.Claims.<name>}}}} or {{{{request.headers.<name>}}}}"
        )),
    }
}

fn is_var(s: &str) -> bool {
    !s.is_empty() && s != "request" && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
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
        assert!(Template::parse("{{}}").is_err());
    }
}
