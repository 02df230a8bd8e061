//! Namespaces made by `ip netns add`, for the tests that need a real one.

use std::os::unix::fs::MetadataExt;
use std::process::{Command, Stdio};

/// A namespace made by `ip netns add`, deleted on drop.
pub struct IpNetns {
    pub name: String,
    pub inode: u64,
}

impl IpNetns {
    pub fn add(tag: &str) -> IpNetns {
        let name = format!("procspy-t-{tag}-{}", std::process::id());
        let _ = Command::new("ip").args(["netns", "delete", &name]).stderr(Stdio::null()).status();
        assert!(Command::new("ip").args(["netns", "add", &name]).status().unwrap().success(), "ip netns add");
        let inode = std::fs::metadata(format!("/run/netns/{name}")).unwrap().ino();
        IpNetns { name, inode }
    }

    pub fn path(&self) -> String {
        format!("/run/netns/{}", self.name)
    }

    /// Removes the mount: the namespace lives on only while something holds it.
    pub fn delete(&self) {
        assert!(Command::new("ip").args(["netns", "delete", &self.name]).status().unwrap().success());
    }
}

impl Drop for IpNetns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "delete", &self.name]).stderr(Stdio::null()).status();
    }
}
