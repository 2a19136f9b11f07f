//! [`Rotation`]: where keys are reloaded from, one reload at a time, and the state of the
//! background re-wrap that the key-usage report shows.

use std::path::PathBuf;
use std::sync::{Mutex, PoisonError};

use serde::Serialize;
use tokio::sync::Notify;

/// Where keys are reloaded from, and the state of the background re-wrap.
#[derive(Debug)]
pub struct Rotation {
    pub(super) key_file: Option<PathBuf>,
    pub(super) active_env: Option<String>,
    pub(super) wake: Notify,
    pub(super) status: Mutex<RewrapStatus>,
    pub(super) reloading: tokio::sync::Mutex<()>,
}

/// The last background re-wrap, for the report.
#[derive(Debug, Clone, Default, Serialize, utoipa::ToSchema)]
pub struct RewrapStatus {
    pub running: bool,
    /// Secrets re-wrapped with the active key since the control plane started.
    pub rewrapped: u64,
    /// Secrets that could not be re-wrapped in the last run (see the log).
    pub failed: u64,
    pub last_finished_at: Option<String>,
}

impl Rotation {
    pub fn new(key_file: Option<PathBuf>, active_env: Option<String>) -> Self {
        Rotation {
            key_file,
            active_env,
            wake: Notify::new(),
            status: Mutex::new(RewrapStatus::default()),
            reloading: tokio::sync::Mutex::new(()),
        }
    }

    pub(super) fn status(&self) -> std::sync::MutexGuard<'_, RewrapStatus> {
        self.status.lock().unwrap_or_else(PoisonError::into_inner)
    }
}
