//! Small pieces the consent steps share: the random secrets of links, states and PKCE
//! verifiers, the SHA-256 under which they are stored, the cookie that binds a consent to the
//! browser that started it, and the 303 redirect to and from the provider.

use aes_gcm::aead::rand_core::RngCore;
use aes_gcm::aead::OsRng;
use axum::http::header::{COOKIE, LOCATION, SET_COOKIE};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use base64::Engine as _;
use secrecy::SecretString;
use sha2::{Digest, Sha256};

use crate::error::ApiError;

/// 256 random bits, base64url without padding (43 characters).
pub(super) fn random_token() -> SecretString {
    let mut bytes = zeroize::Zeroizing::new([0u8; 32]);
    OsRng.fill_bytes(bytes.as_mut());
    SecretString::from(B64URL.encode(bytes.as_ref()))
}

pub(super) fn sha256(text: &str) -> Vec<u8> {
    Sha256::digest(text.as_bytes()).to_vec()
}

pub(super) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// One cookie per authorization request, so two consents started in one browser do not
/// overwrite each other's binding.
pub(super) fn cookie_name(state_hash: &[u8]) -> String {
    format!(
        "credmgr_consent_{}",
        hex(state_hash.get(..8).unwrap_or(state_hash))
    )
}

pub(super) fn cookie_value<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim())
}

/// Whether a POST comes from a page of the control plane itself, so that another site's page
/// cannot press Continue for the user (cross-site request forgery). Browsers say where a
/// request comes from in headers a page cannot set: `Sec-Fetch-Site` (Fetch Metadata, every
/// current browser) must be `same-origin`, and `Origin` (sent on every cross-origin POST
/// since 2019) must be the public URL's origin. A request with neither is not from a
/// browser, and a tool that holds the link needs no forgery to use it. This needs no cookie
/// and no state between the page and Continue; a token bound to a cookie would only add
/// protection for browsers too old to send `Origin`.
pub fn from_own_page(headers: &HeaderMap, public_url: &url::Url) -> Result<(), String> {
    let header = |name: &str| {
        headers
            .get(name)
            .map(|v| v.to_str().unwrap_or("(not text)").to_owned())
    };
    let site = header("sec-fetch-site");
    if let Some(site) = &site {
        if site != "same-origin" {
            return Err(format!("Sec-Fetch-Site is `{site}`, not `same-origin`"));
        }
    }
    if let Some(origin) = header("origin") {
        let own = public_url.origin().ascii_serialization();
        // `null` is what a browser sends when a referrer policy or a privacy setting hides
        // the origin; then only `Sec-Fetch-Site` can say the request is the page's own.
        let hidden_but_same = origin == "null" && site.is_some();
        if origin != own && !hidden_but_same {
            return Err(format!("Origin `{origin}` is not the public URL's `{own}`"));
        }
    }
    Ok(())
}

/// A 303 to `location`, optionally setting a cookie.
pub(super) fn redirect(location: &str, cookie: Option<String>) -> Result<Response, ApiError> {
    let mut response = StatusCode::SEE_OTHER.into_response();
    let headers = response.headers_mut();
    headers.insert(
        LOCATION,
        HeaderValue::from_str(location)
            .map_err(|_| ApiError::Internal("redirect URL is not a header value".into()))?,
    );
    headers.insert(
        axum::http::header::CACHE_CONTROL,
        HeaderValue::from_static("no-store"),
    );
    headers.insert(
        axum::http::header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    if let Some(cookie) = cookie {
        let mut value = HeaderValue::from_str(&cookie)
            .map_err(|_| ApiError::Internal("cookie is not a header value".into()))?;
        value.set_sensitive(true);
        headers.insert(SET_COOKIE, value);
    }
    Ok(response)
}

#[cfg(test)]
mod tests {
    use secrecy::ExposeSecret;

    use super::*;

    #[test]
    fn cookies_are_found_by_name() {
        let mut h = HeaderMap::new();
        h.insert(
            COOKIE,
            HeaderValue::from_static("a=1; credmgr_consent_ab=xyz; b=2"),
        );
        assert_eq!(cookie_value(&h, "credmgr_consent_ab"), Some("xyz"));
        assert_eq!(cookie_value(&h, "credmgr_consent_cd"), None);
    }

    #[test]
    fn continue_is_accepted_only_from_the_control_planes_own_pages() {
        let public = url::Url::parse("https://credmgr.example/base").unwrap();
        let with = |pairs: &[(&'static str, &'static str)]| {
            let mut h = HeaderMap::new();
            for (k, v) in pairs {
                h.insert(*k, HeaderValue::from_static(v));
            }
            from_own_page(&h, &public)
        };
        assert!(with(&[]).is_ok(), "not a browser");
        assert!(with(&[
            ("sec-fetch-site", "same-origin"),
            ("origin", "https://credmgr.example")
        ])
        .is_ok());
        assert!(with(&[("origin", "https://credmgr.example")]).is_ok());
        assert!(with(&[("sec-fetch-site", "same-origin"), ("origin", "null")]).is_ok());
        for refused in [
            &[
                ("sec-fetch-site", "cross-site"),
                ("origin", "https://evil.example"),
            ][..],
            &[("sec-fetch-site", "same-site")],
            &[("origin", "https://evil.example")],
            &[("origin", "null")],
            &[("origin", "http://credmgr.example")],
            &[("sec-fetch-site", "none")],
        ] {
            assert!(with(refused).is_err(), "{refused:?}");
        }
    }

    #[test]
    fn random_tokens_are_long_and_distinct() {
        let (a, b) = (random_token(), random_token());
        assert_eq!(a.expose_secret().len(), 43);
        assert_ne!(a.expose_secret(), b.expose_secret());
    }
}
