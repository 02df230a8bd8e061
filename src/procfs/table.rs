//! Appending whole table files to a caller's buffer, which may be
//! uninitialised memory, and counting what does not fit.

use std::mem::MaybeUninit;
use std::os::fd::BorrowedFd;

use nix::errno::Errno;

use super::sys;

/// A read shorter than asked and shorter than this ends the file: no final
/// read that can only return 0 (for a proc net table, that read walks the
/// kernel's whole socket hash again). Why it is safe: a seq_file read stops
/// short only at the end of the records, or when its own buffer (at least
/// one 4096-byte page) cannot take the next record; the lines of
/// tcp/tcp6/udp/udp6 are under 256 bytes, so a read that stopped on a full
/// buffer returned more than 4096 - 256 bytes (`PID/stat` is one record,
/// which the seq_file buffer grows to hold whole). A regular file (a fake
/// tree) is at its end after any short read.
const SHORT_READ_EOF: usize = 4096 - 256;

/// Whether a read that returned `n` of `asked` bytes was the file's last.
pub(super) fn at_eof(n: usize, asked: usize) -> bool {
    n == 0 || (n < asked && n < SHORT_READ_EOF)
}

/// A buffer that receives whole files only. Once one file does not fit,
/// later files are counted but not stored, so the content is always a prefix
/// of the full output made of whole files.
pub struct TableBuf<'a> {
    buf: &'a mut [MaybeUninit<u8>],
    filled: usize,
    needed: u64,
    overflowed: bool,
}

/// A point to roll a `TableBuf` back to.
#[derive(Clone, Copy, Debug)]
pub struct Mark {
    filled: usize,
    needed: u64,
    overflowed: bool,
}

impl<'a> TableBuf<'a> {
    pub fn new(buf: &'a mut [MaybeUninit<u8>]) -> Self {
        Self { buf, filled: 0, needed: 0, overflowed: false }
    }

    /// Over a buffer of initialised bytes (the walker's own scratch).
    pub fn from_init(buf: &'a mut [u8]) -> Self {
        Self::new(sys::as_uninit_mut(buf))
    }

    pub fn capacity(&self) -> usize {
        self.buf.len()
    }

    /// Bytes stored.
    pub fn written(&self) -> usize {
        self.filled
    }

    /// Bytes of every file appended, stored or not.
    pub fn needed(&self) -> u64 {
        self.needed
    }

    /// Whether some file did not fit.
    pub fn overflowed(&self) -> bool {
        self.overflowed
    }

    /// The stored bytes.
    pub fn filled(&self) -> &[u8] {
        sys::assume_init(self.buf, self.filled)
    }

    pub fn mark(&self) -> Mark {
        Mark { filled: self.filled, needed: self.needed, overflowed: self.overflowed }
    }

    pub fn reset_to(&mut self, mark: Mark) {
        self.filled = mark.filled;
        self.needed = mark.needed;
        self.overflowed = mark.overflowed;
    }

    /// Starts over, empty.
    pub fn clear(&mut self) {
        self.filled = 0;
        self.needed = 0;
        self.overflowed = false;
    }

    /// Reads `fd` to its end. Stores the file if it fits whole (and nothing
    /// before it overflowed); otherwise only counts it, reading through
    /// `spill`. On an error nothing of the file remains and the error is
    /// returned. Returns the file's length.
    pub fn append_file(&mut self, fd: BorrowedFd<'_>, spill: &mut [u8]) -> Result<u64, Errno> {
        let start = self.filled;
        let mut len: u64 = 0;
        let mut spilled = self.overflowed;
        loop {
            let (n, asked) = if spilled || self.filled == self.buf.len() {
                let n = sys::retry(|| nix::unistd::read(fd, spill)).inspect_err(|_| self.filled = start)?;
                if n > 0 && !spilled {
                    spilled = true;
                    self.filled = start;
                }
                (n, spill.len())
            } else {
                let space = &mut self.buf[self.filled..];
                let asked = space.len();
                let n = sys::retry(|| sys::read_uninit(fd, space)).inspect_err(|_| self.filled = start)?;
                self.filled += n;
                (n, asked)
            };
            len += n as u64;
            if at_eof(n, asked) {
                break;
            }
        }
        self.needed += len;
        self.overflowed |= spilled;
        Ok(len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;
    use std::os::fd::AsFd;

    fn file_with(bytes: &[u8]) -> std::fs::File {
        let mut f = tempfile();
        f.write_all(bytes).unwrap();
        use std::io::Seek;
        f.seek(std::io::SeekFrom::Start(0)).unwrap();
        f
    }

    fn tempfile() -> std::fs::File {
        let path = std::env::temp_dir().join(format!(
            "procspy-table-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let f = std::fs::OpenOptions::new().read(true).write(true).create(true).truncate(true).open(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        f
    }

    #[test]
    fn whole_files_or_nothing() {
        let a = b"first file\n".as_slice();
        let b = b"second\n".as_slice();
        let mut spill = [0u8; 3];
        for cap in [0, 1, a.len() - 1, a.len(), a.len() + 1, a.len() + b.len(), a.len() + b.len() + 1] {
            let mut mem = vec![MaybeUninit::new(0xAAu8); cap];
            let mut t = TableBuf::new(&mut mem);
            t.append_file(file_with(a).as_fd(), &mut spill).unwrap();
            t.append_file(file_with(b).as_fd(), &mut spill).unwrap();
            assert_eq!(t.needed(), (a.len() + b.len()) as u64, "cap {cap}");
            let want: &[u8] = if cap >= a.len() + b.len() {
                b"first file\nsecond\n"
            } else if cap >= a.len() {
                a
            } else {
                b""
            };
            assert_eq!(t.filled(), want, "cap {cap}");
            assert_eq!(t.overflowed(), cap < a.len() + b.len(), "cap {cap}");
        }
    }

    /// `files` appended in turn to a buffer of `cap` bytes, the spill `spill`
    /// bytes, with a mark taken before the file at `mark_at`: the buffer's
    /// content and its count once rolled back to that mark (if any).
    fn appended(cap: usize, spill: usize, files: &[&[u8]], mark_at: Option<usize>) -> (Vec<u8>, u64) {
        let mut mem = vec![MaybeUninit::new(0u8); cap];
        let mut t = TableBuf::new(&mut mem);
        let mut spill = vec![0u8; spill];
        let mut mark = None;
        for (i, f) in files.iter().enumerate() {
            if mark_at == Some(i) {
                mark = Some(t.mark());
            }
            t.append_file(file_with(f).as_fd(), &mut spill).unwrap();
        }
        if let Some(m) = mark {
            t.reset_to(m);
        }
        (t.filled().to_vec(), t.needed())
    }

    #[test]
    fn a_later_small_file_does_not_follow_one_that_overflowed() {
        assert_eq!(appended(4, 2, &[b"toolong", b"ab"], None), (vec![], 9));
    }

    #[test]
    fn rollback_to_mark() {
        assert_eq!(appended(64, 8, &[b"keep\n", b"drop\n"], Some(1)), (b"keep\n".to_vec(), 5));
    }
}
