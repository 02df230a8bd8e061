//! Helper processes: started, waited for until they say they are ready,
//! and killed when the test ends, however it ends.

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};

/// A script of tests/common/.
pub fn script(name: &str) -> String {
    format!("{}/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// The system python, which an unprivileged user can run too.
pub fn python3() -> &'static str {
    if Path::new("/usr/bin/python3").exists() { "/usr/bin/python3" } else { "python3" }
}

/// Run as the user nobody, with no supplementary group.
pub const AS_NOBODY: &[&str] = &["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"];

/// A child process, killed and reaped on drop.
pub struct Reaped(pub Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A started helper: the process, the lines it printed before "ready",
/// and the rest of its output.
pub struct Started {
    pub child: Reaped,
    pub lines: Vec<String>,
    pub out: BufReader<ChildStdout>,
}

/// Spawns `cmd` with its stdout piped and reads that until a line "ready";
/// fails the test if the output ends first.
pub fn start_until_ready(cmd: &mut Command, what: &str) -> Started {
    let mut child = Reaped(cmd.stdout(Stdio::piped()).spawn().unwrap_or_else(|e| panic!("start {what}: {e}")));
    let mut out = BufReader::new(child.0.stdout.take().unwrap());
    let mut lines = Vec::new();
    loop {
        let mut line = String::new();
        assert_ne!(out.read_line(&mut line).unwrap(), 0, "{what} did not get ready: {lines:?}");
        match line.strip_suffix('\n') {
            Some("ready") => return Started { child, lines, out },
            _ => lines.push(line.trim_end_matches('\n').to_string()),
        }
    }
}

/// A directory of copies the user nobody can read (the checkout may sit
/// where nobody can reach it); removed on drop.
pub struct ForNobody {
    pub dir: PathBuf,
}

impl ForNobody {
    pub fn new(tag: &str) -> ForNobody {
        let dir = std::env::temp_dir().join(format!("procspy-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        ForNobody { dir }
    }

    /// A copy of `from` named `name`, with permissions `mode`.
    pub fn copy(&self, from: impl AsRef<Path>, name: &str, mode: u32) -> PathBuf {
        let to = self.dir.join(name);
        std::fs::copy(from, &to).unwrap();
        std::fs::set_permissions(&to, std::fs::Permissions::from_mode(mode)).unwrap();
        to
    }
}

impl Drop for ForNobody {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
