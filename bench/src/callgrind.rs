//! The callgrind driver: the valgrind command Envoy runs under, and the control of the running
//! process through `callgrind_control` (zeroing the counters, dumping them and reading each
//! thread's total from the dump files).

use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::Command;

/// The valgrind command Envoy runs under; its dumps go to `dir`.
pub fn wrapper(dir: &Path) -> Vec<String> {
    vec![
        "valgrind".into(),
        "--tool=callgrind".into(),
        "--instr-atstart=no".into(),
        // A count per thread: the worker's is the requests' work.
        "--separate-threads=yes".into(),
        // V8 writes and patches machine code; valgrind must notice.
        "--smc-check=all-non-file".into(),
        format!("--callgrind-out-file={}/callgrind.out.%p", dir.display()),
    ]
}

/// Callgrind's control of one process, through `callgrind_control` (vgdb).
pub(crate) struct Control {
    pub(crate) pid: u32,
    pub(crate) dir: PathBuf,
}

impl Control {
    /// Runs `callgrind_control <arg> <pid>`. vgdb, which carries the command, has been seen
    /// to hang now and then; it is given a minute, then tried again (up to three times).
    pub(crate) fn run(&self, arg: &str) -> Result<()> {
        let mut last = String::new();
        for _ in 0..3 {
            let out = Command::new("timeout")
                .args(["-k", "5", "60", "callgrind_control"])
                .args(arg.split(' '))
                .arg(self.pid.to_string())
                .output()
                .context(
                    "running callgrind_control (valgrind is needed: apt-get install valgrind)",
                )?;
            if out.status.success() {
                return Ok(());
            }
            last = String::from_utf8_lossy(&out.stderr).into_owned();
        }
        bail!("callgrind_control {arg}: {last}")
    }

    /// Dumps the counters and reads each thread's total, largest first (the dump files
    /// are removed).
    pub(crate) fn dump_threads(&self) -> Result<Vec<u64>> {
        self.run("-d")?;
        let prefix = format!("callgrind.out.{}.", self.pid);
        // With --separate-threads, dump n of thread t is `callgrind.out.<pid>.<n>-<t>`.
        let files: Vec<(u64, PathBuf)> = std::fs::read_dir(&self.dir)?
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                let rest = name.strip_prefix(&prefix)?;
                let n: u64 = rest.split('-').next()?.parse().ok()?;
                Some((n, e.path()))
            })
            .collect();
        let last = files
            .iter()
            .map(|(n, _)| *n)
            .max()
            .context("callgrind wrote no dump")?;
        let mut totals = Vec::new();
        for (n, path) in files {
            if n != last {
                continue;
            }
            let text = std::fs::read_to_string(&path)?;
            let total = text
                .lines()
                .find_map(|l| {
                    l.strip_prefix("totals:")
                        .or_else(|| l.strip_prefix("summary:"))
                })
                .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
                .with_context(|| format!("no totals in {}", path.display()))?;
            totals.push(total);
            let _ = std::fs::remove_file(&path);
        }
        totals.sort_unstable_by(|a, b| b.cmp(a));
        Ok(totals)
    }
}
