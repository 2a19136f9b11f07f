//! [`Settings`]: where browsers reach the control plane (its public URL, from which the
//! callback and login URLs are made) and how long login links live.

use std::time::Duration;

/// The path of the redirect URI to register at providers.
pub const CALLBACK_PATH: &str = "/oauth2/callback";

/// Where browsers reach the control plane, and how long login links live.
#[derive(Debug)]
pub struct Settings {
    pub public_url: url::Url,
    pub login_link_ttl: Duration,
}

impl Settings {
    pub fn new(public_url: url::Url, login_link_ttl: Duration) -> Self {
        Settings {
            public_url,
            login_link_ttl,
        }
    }

    fn base(&self) -> &str {
        self.public_url.as_str().trim_end_matches('/')
    }

    /// The redirect URI registered at providers.
    pub fn callback_url(&self) -> String {
        format!("{}{CALLBACK_PATH}", self.base())
    }

    pub(super) fn login_url(&self, secret: &str) -> String {
        format!("{}/oauth2/login/{secret}", self.base())
    }

    /// Cookies are `Secure` when browsers reach the control plane over https.
    pub(super) fn secure(&self) -> bool {
        self.public_url.scheme() == "https"
    }
}
