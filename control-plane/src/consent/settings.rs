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

    fn base(&self) -> &str {
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
    pub(super) fn secure(&self) -> bool {
        self.public_url.scheme() == "https"
    }
}
