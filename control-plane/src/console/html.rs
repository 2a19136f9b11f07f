//! The console's HTML: the page frame with its navigation, and the small builders the pages
//! use. Every value from outside (ids, names, messages, URLs) goes through [`esc`]; the
//! builders take already escaped HTML only where their parameter says `html`.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};

use crate::consent::page::{escape, secure_headers};

/// Stricter than the consent pages': only the console's own stylesheet and script, forms
/// posting only to the console.
const CSP: &str = "default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self'; \
                   form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// Escapes text for element content and double-quoted attributes.
pub fn esc(text: &str) -> String {
    escape(text)
}

/// A console page: `title`, the navigation (when signed in: `csrf` is the session's token,
/// for the sign-out form), and `body` (HTML).
pub fn page(status: StatusCode, title: &str, csrf: Option<&str>, body: &str) -> Response {
    let nav = match csrf {
        Some(token) => format!(
            "<nav><a href=\"/console/providers\">Providers</a>\
             <a href=\"/console/connections\">Connections</a>\
             <a href=\"/console/issuers\">Trusted issuers</a>\
             <a href=\"/console/keys\">Keys</a>\
             <form method=\"post\" action=\"/console/sign-out\" class=\"inline\">{}\
             <button type=\"submit\">Sign out</button></form></nav>",
            csrf_field(token)
        ),
        None => String::new(),
    };
    let html = format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{title} - credmgr console</title>\
         <link rel=\"stylesheet\" href=\"/console/assets/console.css\">\
         <script src=\"/console/assets/console.js\" defer></script></head>\
         <body><header><strong>credmgr</strong> console{nav}</header>\
         <main><h1>{title}</h1>\n{body}\n</main></body></html>\n",
        title = esc(title),
    );
    let mut response = (status, html).into_response();
    secure_headers(&mut response, CSP);
    response
}

/// The hidden field that carries the CSRF token.
pub fn csrf_field(token: &str) -> String {
    format!(
        "<input type=\"hidden\" name=\"csrf\" value=\"{}\">",
        esc(token)
    )
}

/// A table: header names and rows of cells (HTML).
pub fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    if rows.is_empty() {
        return "<p class=\"empty\">None yet.</p>".to_owned();
    }
    let head: String = header
        .iter()
        .map(|h| format!("<th>{}</th>", esc(h)))
        .collect();
    let body: String = rows
        .iter()
        .map(|r| {
            let cells: String = r.iter().map(|c| format!("<td>{c}</td>")).collect();
            format!("<tr>{cells}</tr>")
        })
        .collect();
    format!("<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")
}

/// A message box: `kind` is `error` or `ok`; `text` is escaped here.
pub fn notice(kind: &str, text: &str) -> String {
    format!(
        "<p class=\"notice {kind}\" role=\"status\">{}</p>",
        esc(text)
    )
}

/// A labelled text input.
pub fn input(name: &str, label: &str, value: &str, required: bool, help: &str) -> String {
    format!(
        "<label>{label}{star}<input name=\"{name}\" value=\"{value}\"{req}>\
         <small>{help}</small></label>",
        label = esc(label),
        star = if required { " *" } else { "" },
        name = esc(name),
        value = esc(value),
        req = if required { " required" } else { "" },
        help = esc(help),
    )
}

/// A status as a coloured badge.
pub fn status_badge(status: &str) -> String {
    let class = match status {
        "connected" => "ok",
        "error" => "bad",
        _ => "wait",
    };
    format!("<span class=\"badge {class}\">{}</span>", esc(status))
}

/// A JSON array of strings as one line separated by spaces (not escaped).
pub fn words(v: &serde_json::Value) -> String {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(|i| i.as_str())
                .collect::<Vec<_>>()
                .join(" ")
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn everything_from_outside_is_escaped() {
        let t = table(&["<h>"], &[vec![esc("<script>")]]);
        assert!(t.contains("&lt;h&gt;") && t.contains("&lt;script&gt;"));
        assert!(!t.contains("<script>"));
        let i = input("n\"", "<l>", "\"><script>", true, "<b>");
        assert!(!i.contains("<script>") && !i.contains("<l>") && !i.contains("<b>"));
        assert_eq!(
            notice("ok", "<x>"),
            "<p class=\"notice ok\" role=\"status\">&lt;x&gt;</p>"
        );
        assert!(status_badge("<x>").contains("&lt;x&gt;"));
    }
}
