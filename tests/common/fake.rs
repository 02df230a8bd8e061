//! Fake proc roots: directories with the layout of /proc, whose fd links
//! lead to real sockets (through the real /proc of a holder).

use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

pub struct FakeRoot {
    pub path: PathBuf,
}

/// A stat line for `name` with start time `start`.
pub fn stat_line(pid: i32, name: &[u8], start: u64) -> Vec<u8> {
    let mut v = format!("{pid} (").into_bytes();
    v.extend_from_slice(name);
    v.extend_from_slice(format!(") S 1 1 1 0 -1 4194304 0 0 0 0 0 0 0 0 20 0 1 0 {start} 1000 10 0\n").as_bytes());
    v
}

impl FakeRoot {
    pub fn new(tag: &str) -> FakeRoot {
        let path = std::env::temp_dir().join(format!("procspy-fake-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&path);
        fs::create_dir_all(&path).unwrap();
        FakeRoot { path }
    }

    pub fn dir(&self, rel: &str) -> PathBuf {
        let p = self.path.join(rel);
        fs::create_dir_all(&p).unwrap();
        p
    }

    pub fn file(&self, rel: &str, bytes: &[u8]) {
        let p = self.path.join(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, bytes).unwrap();
    }

    pub fn link(&self, rel: &str, target: impl AsRef<Path>) {
        let p = self.path.join(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        symlink(target, p).unwrap();
    }

    /// A pid in the real namespace of `real_pid`, holding `fds` (fd number
    /// here, fd number of `real_pid`), named `name`.
    pub fn pid(&self, pid: i32, real_pid: i32, fds: &[(i32, i32)], name: &[u8]) {
        self.link(&format!("{pid}/ns/net"), format!("/proc/{real_pid}/ns/net"));
        self.dir(&format!("{pid}/fd"));
        for (fd, real) in fds {
            self.link(&format!("{pid}/fd/{fd}"), format!("/proc/{real_pid}/fd/{real}"));
        }
        self.file(&format!("{pid}/stat"), &stat_line(pid, name, 4242));
        self.file(&format!("{pid}/net/tcp"), b"  sl  local_address rem_address   st\n");
    }
}

impl Drop for FakeRoot {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.path);
    }
}
