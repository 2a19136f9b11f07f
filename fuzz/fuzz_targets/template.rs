//! Value templates (`Template::parse`, `render`): `{{var.AccessToken}}`,
//! `{{var.Claims.name}}`, `{{request.headers.name}}`, `{{identity.Claims.name}}` in literal
//! text, rendered as values and as ids.
//!
//! Checks: a template that parses, written back from its segments, parses to the same
//! segments; rendering with every value present yields exactly the literals and the values
//! in order, and puts the access token in only where the template asks for it; rendering
//! with a null context variable yields nothing whenever the template uses it.
#![no_main]

use credmgr_filter::template::{Segment, Template, Values};
use libfuzzer_sys::fuzz_target;

const TOKEN: &str = "\u{1}TOKEN\u{1}";
const IDENTITY_CLAIM: &str = "<identity claim>";

struct All;
impl Values for All {
    fn access_token(&self, _var: &str) -> Option<&str> {
        Some(TOKEN)
    }
    fn claim(&self, var: &str, name: &str) -> Option<String> {
        Some(format!("<claim {var} {name}>"))
    }
    fn request_header(&self, name: &str) -> Option<String> {
        Some(format!("<header {name}>"))
    }
    fn identity_claim(&self, _name: &str) -> Option<&str> {
        Some(IDENTITY_CLAIM)
    }
}

struct NoVars;
impl Values for NoVars {
    fn access_token(&self, _var: &str) -> Option<&str> {
        None
    }
    fn claim(&self, _var: &str, _name: &str) -> Option<String> {
        None
    }
    fn request_header(&self, _name: &str) -> Option<String> {
        None
    }
}

fn write_back(segments: &[Segment]) -> String {
    segments
        .iter()
        .map(|s| match s {
            Segment::Literal(text) => text.clone(),
            Segment::AccessToken(var) => format!("{{{{ {var}.AccessToken }}}}"),
            Segment::Claim(var, name) => format!("{{{{ {var}.Claims.{name} }}}}"),
            Segment::RequestHeader(name) => format!("{{{{ request.headers.{name} }}}}"),
            Segment::IdentityClaim(name) => format!("{{{{ identity.Claims.{name} }}}}"),
        })
        .collect()
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(template) = Template::parse(text) else {
        return;
    };
    let segments = template.segments();
    let written = write_back(segments);
    match Template::parse(&written) {
        Ok(re) => assert_eq!(re.segments(), segments, "written back as {written:?}"),
        Err(e) => panic!("written back as {written:?}, refused: {e}"),
    }

    let expected: String = segments
        .iter()
        .map(|s| match s {
            Segment::Literal(text) => text.clone(),
            Segment::AccessToken(_) => TOKEN.to_owned(),
            Segment::Claim(var, name) => All.claim(var, name).unwrap_or_default(),
            Segment::RequestHeader(name) => All.request_header(name).unwrap_or_default(),
            Segment::IdentityClaim(_) => IDENTITY_CLAIM.to_owned(),
        })
        .collect();
    let rendered = template.render(&All);
    assert_eq!(rendered.as_deref(), Some(expected.as_str()));
    let asks_for_token = segments
        .iter()
        .any(|s| matches!(s, Segment::AccessToken(_)));
    if !asks_for_token {
        assert!(!expected.contains(TOKEN) || text.contains(TOKEN));
    }

    let uses_var = segments.iter().any(|s| {
        matches!(
            s,
            Segment::AccessToken(_) | Segment::Claim(..) | Segment::IdentityClaim(_)
        )
    });
    let without = template.render(&NoVars);
    assert_eq!(without.is_none(), uses_var, "{text:?}");

    // As an id: context variables are refused, verified claims required, and with every
    // value present an id renders exactly what `render` does.
    let context = segments
        .iter()
        .any(|s| matches!(s, Segment::AccessToken(_) | Segment::Claim(..)));
    match template.render_id(&All) {
        Ok(id) => {
            assert!(!context, "{text:?}");
            assert_eq!(id, expected);
        }
        Err(_) => assert!(context, "{text:?}"),
    }
});
