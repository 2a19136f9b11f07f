//! [`Settings`]: where browsers reach the control plane (its public URL, from which the
//! callback and login URLs are made), how long login links live, and how many the runtime API
//! makes for self-service callers.

use std::time::Duration;

use crate::store::LinkLimits;

/// The path of the redirect URI to register at providers.
pub const CALLBACK_PATH: &str = "/oauth2/callback";

/// Where browsers reach the control plane, how long login links live, and how many the
/// runtime API makes for self-service callers.
#[derive(Debug)]
pub struct Settings {
    pub public_url: url::Url,
    pub login_link_ttl: Duration,
    pub self_service_limits: LinkLimits,
}

impl Settings {
    pub fn new(
        public_url: url::Url,
        login_link_ttl: Duration,
        self_service_limits: LinkLimits,
    ) -> Self {
        Settings {
            public_url,
            login_link_ttl,
            self_service_limits,
        }
    }

    /// The public URL without a trailing `/`.
    pub fn base(&self) -> &str {
        self.public_url.as_str().trim_end_matches('/')
    }

    /// The redirect URI registered at providers.
    pub fn callback_url(&self) -> String {
        format!("{}{CALLBACK_PATH}", self.base())
    }

    /// The URL of the login link with this secret. A secret until used: never log it.
    pub fn login_url(&self, secret: &str) -> String {
        format!("{}/oauth2/login/{secret}", self.base())
    }

    /// Cookies are `Secure` when browsers reach the control plane over https.
    /// Whether browsers reach the control plane over https (cookies are then `Secure`).
    pub fn secure(&self) -> bool {
        self.public_url.scheme() == "https"
    }

    /// A warning for a public URL that is plain http on another host than this machine's
    /// loopback: login links, the callback's code and the consent cookie would cross the
    /// network readable. Loopback (the demo, tests, a browser on the same machine) is not
    /// warned about.
    pub fn plain_http_warning(&self) -> Option<String> {
        if self.secure() {
            return None;
        }
        let loopback = match self.public_url.host() {
            Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
            Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
            Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
            None => false,
        };
        (!loopback).then(|| {
            format!(
                "the public URL {} is plain http: login links, authorization codes and the \
                 consent cookie cross the network unencrypted and the cookie is not Secure; \
                 serve browsers over https (CREDMGR_PUBLIC_URL=https://...)",
                self.public_url
            )
        })
    }

    /// The `Set-Cookie` value of the consent cookie `name`: `value` for `max_age` seconds, or
    /// an empty value with `Max-Age=0` to clear it. Clearing carries the same attributes as
    /// setting (`Secure` included), as browsers only replace a cookie with a matching one.
    pub(super) fn consent_cookie(&self, name: &str, value: &str, max_age: i64) -> String {
        format!(
            "{name}={value}; Path={CALLBACK_PATH}; Max-Age={max_age}; HttpOnly; SameSite=Lax{}",
            if self.secure() { "; Secure" } else { "" }
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(url: &str) -> Settings {
        Settings::new(
            url::Url::parse(url).unwrap(),
            Duration::from_secs(60),
            crate::store::LinkLimits {
                per_caller: 10,
                per_connection: 5,
            },
        )
    }

    #[test]
    fn plain_http_is_warned_about_except_on_loopback() {
        assert!(at("http://credmgr.example:8080")
            .plain_http_warning()
            .is_some_and(|w| w.contains("https")));
        assert!(at("http://10.0.0.5").plain_http_warning().is_some());
        for quiet in [
            "https://credmgr.example",
            "http://127.0.0.1:8080",
            "http://localhost",
            "http://[::1]:80",
        ] {
            assert!(at(quiet).plain_http_warning().is_none(), "{quiet}");
        }
    }

    #[test]
    fn consent_cookies_are_secure_when_set_and_when_cleared_over_https() {
        let s = at("https://credmgr.example");
        for cookie in [
            s.consent_cookie("c", "v", 600),
            s.consent_cookie("c", "", 0),
        ] {
            assert!(
                cookie.ends_with("; Secure") && cookie.contains("HttpOnly"),
                "{cookie}"
            );
        }
        let plain = at("http://127.0.0.1:1");
        assert!(!plain.consent_cookie("c", "", 0).contains("Secure"));
    }
}
