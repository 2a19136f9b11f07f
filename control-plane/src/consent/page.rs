//! The HTML pages a person sees during consent: the interstitial and the error pages.
//!
//! Every page forbids framing (clickjacking a Continue button), scripts, referrers to other
//! sites (the login link and the callback's code must not leak through `Referer`), and
//! caching. Referrers stay on for the page's own origin (`same-origin`): with `no-referrer`
//! browsers send `Origin: null` on the interstitial's own Continue, which the CSRF check
//! needs to see.

use axum::http::header::{CACHE_CONTROL, CONTENT_TYPE, REFERRER_POLICY};
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

const CSP: &str =
    "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'";

/// Escapes text for HTML element content and double-quoted attributes.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A page with `title` and `body` (HTML, already escaped by the caller).
pub fn page(status: StatusCode, title: &str, body: &str) -> Response {
    let html = format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{title} - credmgr</title><style>\
         body{{font-family:system-ui,sans-serif;max-width:40em;margin:3em auto;padding:0 1em;\
         line-height:1.5}}code{{background:#eee;padding:0 .2em}}\
         button{{font-size:1.1em;padding:.4em 1.4em}}</style></head>\
         <body><h1>{title}</h1>\n{body}\n</body></html>\n",
        title = escape(title),
    );
    let mut response = (status, html).into_response();
    secure_headers(&mut response, CSP);
    response
}

/// The headers every HTML page of the control plane carries (the consent pages and the
/// console): no caching, no framing, no MIME sniffing, no referrer to other sites, and
/// `csp` as the Content-Security-Policy.
pub fn secure_headers(response: &mut Response, csp: &'static str) {
    let headers = response.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    headers.insert(
        HeaderName::from_static("content-security-policy"),
        HeaderValue::from_static(csp),
    );
    headers.insert(
        HeaderName::from_static("x-frame-options"),
        HeaderValue::from_static("DENY"),
    );
    headers.insert(
        HeaderName::from_static("x-content-type-options"),
        HeaderValue::from_static("nosniff"),
    );
}

/// An error page: what happened (plain text) and that nothing was changed.
pub fn error(status: StatusCode, title: &str, message: &str) -> Response {
    page(
        status,
        title,
        &format!(
            "<p>{}</p><p>Nothing was changed. Ask whoever manages the connection for a new \
             login link.</p>",
            escape(message)
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup() {
        assert_eq!(
            escape(r#"<a href="x">'&'</a>"#),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
    }
}
