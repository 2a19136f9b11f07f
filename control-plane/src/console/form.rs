//! A POSTed `application/x-www-form-urlencoded` body, by field name.

use std::collections::BTreeMap;

/// Fields by name (the last value wins), values trimmed.
pub struct Form(BTreeMap<String, String>);

impl Form {
    pub fn parse(body: &[u8]) -> Form {
        Form(
            url::form_urlencoded::parse(body)
                .map(|(k, v)| (k.into_owned(), v.trim().to_owned()))
                .collect(),
        )
    }

    /// A field's value; empty when absent.
    pub fn get(&self, name: &str) -> &str {
        self.0.get(name).map_or("", String::as_str)
    }

    /// A field's value, `None` when absent or empty.
    pub fn opt(&self, name: &str) -> Option<String> {
        Some(self.get(name))
            .filter(|v| !v.is_empty())
            .map(str::to_owned)
    }

    /// Fields whose names start with `prefix`, without it, non-empty values only.
    pub fn prefixed(&self, prefix: &str) -> BTreeMap<String, String> {
        self.0
            .iter()
            .filter_map(|(k, v)| Some((k.strip_prefix(prefix)?.to_owned(), v.clone())))
            .filter(|(_, v)| !v.is_empty())
            .collect()
    }

    /// A field split on whitespace (scopes, URLs).
    pub fn words(&self, name: &str) -> Vec<String> {
        self.get(name)
            .split_whitespace()
            .map(str::to_owned)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields() {
        let f = Form::parse(b"a=+1+&param.tenant=x&param.empty=&scopes=a%20b%0Ac");
        assert_eq!(f.get("a"), "1");
        assert_eq!(f.get("missing"), "");
        assert_eq!(f.opt("param.empty"), None);
        assert_eq!(
            f.prefixed("param.").into_iter().collect::<Vec<_>>(),
            vec![("tenant".into(), "x".into())]
        );
        assert_eq!(f.words("scopes"), vec!["a", "b", "c"]);
    }
}
