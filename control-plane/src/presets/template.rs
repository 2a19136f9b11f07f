//! Preset parameters and the endpoint templates they fill (`https://{domain}/oauth/token`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::ParamError;

/// One parameter of a preset, as `GET /v1/provider-types` shows it to a form.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Parameter {
    pub name: String,
    pub description: String,
    pub required: bool,
    pub example: String,
    /// The value when left out; only for optional parameters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<String>,
    pub format: ParamFormat,
}

/// What a parameter's value may be. The value lands in a URL, so it is held to the shape of
/// the URL part it fills: nothing that could add a path, a query or another host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ParamFormat {
    /// A DNS host name (`dev-123.okta.com`): letters, digits, `-` and `.`.
    Host,
    /// One path segment (`common`, a GUID, `contoso.onmicrosoft.com`, `my-realm`):
    /// RFC 3986 unreserved characters only.
    Segment,
    /// A URL's origin, `https://host[:port]` (http is allowed, for local servers), without a
    /// path; a trailing `/` is dropped.
    Origin,
}

impl Parameter {
    /// The value to put in the templates, or why `value` does not fit.
    pub(super) fn check(&self, preset: &str, value: &str) -> Result<String, ParamError> {
        let bad = |why: &str| ParamError {
            field: format!("parameters.{}", self.name),
            message: format!(
                "parameter `{}` of provider type `{preset}` {why} (for example `{}`)",
                self.name, self.example
            ),
        };
        if value.is_empty() {
            return Err(bad("must not be empty"));
        }
        let host_ok = |h: &str| {
            !h.is_empty()
                && !h.starts_with(['.', '-'])
                && h.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.'))
        };
        match self.format {
            ParamFormat::Host => {
                if !host_ok(value) {
                    return Err(bad("must be a host name: letters, digits, `-` and `.`"));
                }
                Ok(value.to_ascii_lowercase())
            }
            ParamFormat::Segment => {
                let ok = value
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_' | '~'))
                    && value != "."
                    && value != "..";
                if !ok {
                    return Err(bad(
                        "must be one URL path segment: letters, digits, `-`, `.`, `_` and `~`",
                    ));
                }
                Ok(value.to_owned())
            }
            ParamFormat::Origin => {
                let trimmed = value.strip_suffix('/').unwrap_or(value);
                let url = url::Url::parse(trimmed)
                    .map_err(|_| bad("must be an absolute http(s) URL such as the example"))?;
                let plain = matches!(url.scheme(), "http" | "https")
                    && url.host_str().is_some_and(host_ok)
                    && url.username().is_empty()
                    && url.password().is_none()
                    && url.path() == "/"
                    && url.query().is_none()
                    && url.fragment().is_none();
                if !plain {
                    return Err(bad(
                        "must be an origin: http(s)://host[:port], without path, query or \
                         credentials",
                    ));
                }
                Ok(trimmed.to_owned())
            }
        }
    }
}

/// Replaces every `{name}` in `template` by its value. Preset files only name declared
/// parameters (a unit test checks), so every placeholder has a value.
pub(super) fn render(template: &str, values: &BTreeMap<String, String>) -> String {
    let mut out = template.to_owned();
    for (name, value) in values {
        out = out.replace(&format!("{{{name}}}"), value);
    }
    out
}

/// The placeholders a template uses, for the catalogue's own checks.
#[cfg(test)]
pub(super) fn placeholders(template: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = template;
    while let Some(start) = rest.find('{') {
        let Some(len) = rest[start..].find('}') else {
            break;
        };
        names.push(rest[start + 1..start + len].to_owned());
        rest = &rest[start + len + 1..];
    }
    names
}
