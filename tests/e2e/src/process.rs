//! A child process that is stopped when dropped.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Why [`Process::try_wait_for_line`] gave up; each carries the whole explanation.
#[derive(Debug)]
pub enum NotReady {
    /// The process exited first.
    Exited(String),
    /// The process is still running but printed no ready line in time.
    TimedOut(String),
}

/// A running child. Its stdout is collected line by line (so a ready line can be awaited);
/// stdout and stderr also go to `<dir>/<name>.log`.
pub struct Process {
    name: String,
    child: Child,
    stdout: Arc<Mutex<Vec<String>>>,
    log: PathBuf,
}

impl Process {
    /// Starts `cmd`, logging to `dir/<name>.log`.
    pub fn spawn(name: &str, mut cmd: Command, dir: &Path) -> Process {
        let log = dir.join(format!("{name}.log"));
        let stderr = std::fs::File::create(&log)
            .unwrap_or_else(|e| panic!("creating {}: {e}", log.display()));
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr);
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("starting {name} ({cmd:?}): {e}"));
        let stdout = Arc::new(Mutex::new(Vec::new()));
        if let Some(out) = child.stdout.take() {
            let lines = Arc::clone(&stdout);
            let out_log = dir.join(format!("{name}.stdout.log"));
            std::thread::spawn(move || {
                let mut file = std::fs::File::create(out_log).ok();
                for line in BufReader::new(out).lines().map_while(Result::ok) {
                    if let Some(f) = file.as_mut() {
                        use std::io::Write;
                        let _ = writeln!(f, "{line}");
                    }
                    if let Ok(mut l) = lines.lock() {
                        l.push(line);
                    }
                }
            });
        }
        Process {
            name: name.to_owned(),
            child,
            stdout,
            log,
        }
    }

    /// Waits for a stdout line starting with `prefix` and returns the rest of it. Fails early,
    /// with the process's log, if the process exits first.
    pub fn wait_for_line(&mut self, prefix: &str, timeout: Duration) -> String {
        match self.try_wait_for_line(prefix, timeout) {
            Ok(rest) => rest,
            Err(NotReady::Exited(why) | NotReady::TimedOut(why)) => panic!("{why}"),
        }
    }

    /// [`Process::wait_for_line`] that says why it gave up instead of panicking, so a caller
    /// can tell a process that exited (its configuration is wrong) from one still running.
    pub fn try_wait_for_line(
        &mut self,
        prefix: &str,
        timeout: Duration,
    ) -> Result<String, NotReady> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(rest) = self.line_after(prefix) {
                return Ok(rest);
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(NotReady::Exited(format!(
                    "{} exited ({status}) before it was ready; its log:\n{}",
                    self.name,
                    self.log_text()
                )));
            }
            if Instant::now() >= deadline {
                return Err(NotReady::TimedOut(format!(
                    "{} not ready after {timeout:?} (no stdout line starting {prefix:?})\n{}",
                    self.name,
                    self.diagnosis()
                )));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn line_after(&self, prefix: &str) -> Option<String> {
        let lines = self.stdout.lock().ok()?;
        lines
            .iter()
            .find(|l| l.starts_with(prefix))
            .map(|l| l[prefix.len()..].trim().to_owned())
    }

    /// What can be seen of a process that is not answering: its stdout and stderr so far, its
    /// scheduler state and CPU time (busy, blocked or never scheduled), what it waits in, and
    /// the machine's load.
    fn diagnosis(&self) -> String {
        let pid = self.child.id();
        let proc_file = |f: &str| {
            std::fs::read_to_string(format!("/proc/{pid}/{f}"))
                .map(|s| s.trim().to_owned())
                .unwrap_or_else(|e| format!("({e})"))
        };
        // Fields of /proc/<pid>/stat after the command name: state, ..., utime (14), stime (15).
        let stat = proc_file("stat");
        let after_comm = stat.rsplit_once(") ").map_or("", |(_, rest)| rest);
        let fields: Vec<&str> = after_comm.split_whitespace().collect();
        let field = |n: usize| fields.get(n - 3).copied().unwrap_or("?");
        let threads = std::fs::read_dir(format!("/proc/{pid}/task")).map_or(0, |d| d.count());
        let stdout = self.stdout.lock().map(|l| l.join("\n")).unwrap_or_default();
        format!(
            "pid {pid}: state {}, utime {} stime {} (clock ticks), {threads} threads, wchan {}\n\
             machine load: {}\n\
             its stdout:\n{stdout}\n\
             its log:\n{}",
            field(3),
            field(14),
            field(15),
            proc_file("wchan"),
            std::fs::read_to_string("/proc/loadavg")
                .unwrap_or_default()
                .trim(),
            self.log_text()
        )
    }

    /// Everything the process wrote to stderr so far (stdout is in `<name>.stdout.log`).
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The log file's path.
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// Has the process exited? Returns its exit code (or -1 for a signal).
    pub fn exited(&mut self) -> Option<i32> {
        match self.child.try_wait() {
            Ok(Some(status)) => Some(status.code().unwrap_or(-1)),
            _ => None,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Kills the process with SIGKILL, as a crash or the OOM killer would: no shutdown code
    /// runs. Waits until it is gone.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Stops the process: SIGTERM, then SIGKILL if it has not exited within five seconds.
    pub fn stop(&mut self) {
        if self.exited().is_some() {
            return;
        }
        if let Ok(pid) = libc::pid_t::try_from(self.child.id()) {
            // SAFETY: kill(2) on our own child's pid; no memory is touched.
            unsafe {
                libc::kill(pid, libc::SIGTERM);
            }
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if self.exited().is_some() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shell(script: &str) -> Command {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", script]);
        cmd
    }

    #[test]
    fn a_silent_process_times_out_with_its_state_and_output_and_an_exited_one_says_so() {
        let dir = tempfile::tempdir().unwrap();
        let mut silent = Process::spawn(
            "silent",
            shell("echo starting; echo warming up >&2; exec sleep 30"),
            dir.path(),
        );
        match silent.try_wait_for_line("ready ", Duration::from_millis(500)) {
            Err(NotReady::TimedOut(why)) => {
                assert!(why.contains("silent not ready after 500ms"), "{why}");
                assert!(why.contains("state S"), "{why}");
                assert!(why.contains("starting"), "{why}");
                assert!(why.contains("warming up"), "{why}");
            }
            other => panic!("expected a time-out, got {other:?}"),
        }

        let mut quitter = Process::spawn("quitter", shell("echo bad flag >&2; exit 3"), dir.path());
        match quitter.try_wait_for_line("ready ", Duration::from_secs(30)) {
            Err(NotReady::Exited(why)) => assert!(why.contains("bad flag"), "{why}"),
            other => panic!("expected an exit, got {other:?}"),
        }

        let mut ready = Process::spawn(
            "ready",
            shell("echo ready at 1234; exec sleep 30"),
            dir.path(),
        );
        assert_eq!(
            ready
                .try_wait_for_line("ready at ", Duration::from_secs(30))
                .ok(),
            Some("1234".to_owned())
        );
    }
}
