//! The token cache shared by every worker: what Proxy-Wasm calls shared data. The dynamic
//! modules ABI has no key-value store (its "shared data registry" hands out raw pointers by
//! name), and needs none: Envoy loads a module once per process, so a process-global map in
//! the module, behind a mutex, is seen by every worker thread. Values carry a version, bumped
//! on each write, with Proxy-Wasm's compare-and-swap rules, so the filter's logic reads and
//! writes it exactly as it does Envoy's shared data.

use credmgr_filter::host::SetSharedError;
use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, OnceLock};

type Entries = HashMap<String, (Vec<u8>, u32)>;

fn entries() -> MutexGuard<'static, Entries> {
    static ENTRIES: OnceLock<Mutex<Entries>> = OnceLock::new();
    // A panic while the lock was held cannot leave a half-written entry (each write is one
    // insert), so a poisoned lock is still usable.
    match ENTRIES.get_or_init(Mutex::default).lock() {
        Ok(guard) => guard,
        Err(poisoned) => poisoned.into_inner(),
    }
}

/// The value under `key` and its version.
pub fn get(key: &str) -> (Option<Vec<u8>>, Option<u32>) {
    match entries().get(key) {
        Some((value, version)) => (Some(value.clone()), Some(*version)),
        None => (None, None),
    }
}

/// Writes `value` under `key`; with `cas` (other than 0), only if the version is still that.
pub fn set(key: &str, value: &[u8], cas: Option<u32>) -> Result<(), SetSharedError> {
    let mut entries = entries();
    let current = entries.get(key).map_or(0, |(_, v)| *v);
    if let Some(expected) = cas.filter(|c| *c != 0) {
        if expected != current {
            return Err(SetSharedError::CasMismatch);
        }
    }
    let version = current.wrapping_add(1).max(1);
    entries.insert(key.to_owned(), (value.to_vec(), version));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_write_with_a_stale_version_loses() {
        set("t1", b"a", None).unwrap();
        let (_, v) = get("t1");
        set("t1", b"b", v).unwrap();
        assert_eq!(set("t1", b"c", v), Err(SetSharedError::CasMismatch));
        assert_eq!(get("t1").0.as_deref(), Some(&b"b"[..]));
        assert_eq!(get("absent"), (None, None));
    }
}
