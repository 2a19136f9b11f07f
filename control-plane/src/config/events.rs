//! The flags of webhooks and the audit trail, flattened into `credmgr serve`'s.

use std::time::Duration;

use anyhow::bail;
use clap::Args;

use super::duration::{parse_duration, parse_retention, DEFAULT_RETENTION};
use crate::webhooks::settings::{self, Settings};

#[derive(Args, Debug)]
pub struct EventArgs {
    /// Accept `http://` webhook URLs on the loopback interface (127.0.0.0/8, ::1,
    /// localhost): for tests and a receiver on the same machine. Every other webhook URL
    /// must be `https://`.
    #[arg(
        long,
        env = "CREDMGR_WEBHOOK_ALLOW_LOOPBACK_HTTP",
        default_value = "false",
        action = clap::ArgAction::Set,
        value_parser = clap::builder::BoolishValueParser::new()
    )]
    pub webhook_allow_loopback_http: bool,

    /// Wait before the first retry of a failed webhook delivery; each next wait doubles (up
    /// to 1h), less a random part of up to half.
    #[arg(long, env = "CREDMGR_WEBHOOK_RETRY_BASE", default_value = "5s", value_parser = parse_duration)]
    pub webhook_retry_base: Duration,

    /// Attempts of one webhook delivery before it fails for good.
    #[arg(
        long,
        env = "CREDMGR_WEBHOOK_MAX_ATTEMPTS",
        default_value_t = settings::DEFAULT_MAX_ATTEMPTS,
        value_parser = clap::value_parser!(u32).range(1..=100)
    )]
    pub webhook_max_attempts: u32,

    /// How long a webhook receiver has to answer.
    #[arg(long, env = "CREDMGR_WEBHOOK_TIMEOUT", default_value = "10s", value_parser = parse_duration)]
    pub webhook_timeout: Duration,

    /// How long audit entries (and finished webhook deliveries) are kept: `30d`, `12h`, `90m`.
    #[arg(long, env = "CREDMGR_AUDIT_RETENTION", default_value = "30d", value_parser = parse_retention)]
    pub audit_retention: Duration,

    /// Record every runtime-API token request in the audit trail (management changes are
    /// always recorded).
    #[arg(
        long,
        env = "CREDMGR_AUDIT_TOKENS",
        default_value = "true",
        action = clap::ArgAction::Set,
        value_parser = clap::builder::BoolishValueParser::new()
    )]
    pub audit_tokens: bool,
}

/// Webhooks' and the audit trail's settings.
#[derive(Debug, Clone)]
pub struct EventSettings {
    pub webhooks: Settings,
    pub audit_retention: Duration,
    pub audit_tokens: bool,
}

impl Default for EventSettings {
    fn default() -> Self {
        EventSettings {
            webhooks: Settings::default(),
            audit_retention: DEFAULT_RETENTION,
            audit_tokens: true,
        }
    }
}

impl EventArgs {
    pub fn settings(&self) -> anyhow::Result<EventSettings> {
        if self.webhook_retry_base.is_zero() {
            bail!("CREDMGR_WEBHOOK_RETRY_BASE (--webhook-retry-base) must be more than 0");
        }
        if self.webhook_timeout.is_zero() {
            bail!("CREDMGR_WEBHOOK_TIMEOUT (--webhook-timeout) must be more than 0");
        }
        Ok(EventSettings {
            webhooks: Settings {
                allow_loopback_http: self.webhook_allow_loopback_http,
                retry_base: self.webhook_retry_base,
                max_attempts: self.webhook_max_attempts,
                timeout: self.webhook_timeout,
                ..Settings::default()
            },
            audit_retention: self.audit_retention,
            audit_tokens: self.audit_tokens,
        })
    }
}
