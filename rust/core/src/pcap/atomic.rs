//! Write a file under a temporary name beside it and rename it into place once complete, so that a
//! reader never sees half a file and a failure leaves nothing behind.
//!
//! The temporary name is unpredictable and created exclusively, never through a link: another user who
//! can write to the folder cannot plant a file or a symlink there for us to write into. The rename
//! replaces whatever the destination is (a file, a symlink, a FIFO, a device) without following or
//! opening it.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Write};
#[cfg(unix)]
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// Large writes: one system call per megabyte of packets.
const WRITE_BUFFER: usize = 1 << 20;
/// How a temporary name ends; the agent removes leftovers of a killed writer by it.
pub const TEMP_SUFFIX: &str = ".tmp";

pub struct AtomicFile {
    out: Option<BufWriter<File>>,
    /// The temporary name, or `None` when writing straight to a device or pipe (e.g. /dev/null).
    temp: Option<PathBuf>,
    dest: PathBuf,
}

impl AtomicFile {
    /// A new file for `dest`, renamed over whatever `dest` is on `commit`.
    pub fn create(dest: &Path) -> io::Result<AtomicFile> {
        let (file, temp) = create_temp(dest)?;
        Ok(AtomicFile {
            out: Some(BufWriter::with_capacity(WRITE_BUFFER, file)),
            temp: Some(temp),
            dest: dest.into(),
        })
    }

    /// As `create` for a regular file or a name not taken yet: for outputs the user names (`read -w`,
    /// `pcapdump.write`). A device or FIFO there (`/dev/null`, a pipe) is opened and written as it is, as
    /// tcpdump does, and so is a symlink of the user's own or of root's (`/dev/stdout`): renaming over it
    /// would replace the link or the device itself. A symlink of another user (planted where we write)
    /// and a dangling one are refused, and a FIFO with no reader is an error rather than a wait.
    /// `-` is standard output, written as it is (never reopened, so never truncated: `>>` appends).
    pub fn create_or_stream(dest: &Path) -> io::Result<AtomicFile> {
        if dest == Path::new("-") {
            return AtomicFile::standard_output();
        }
        let Ok(meta) = fs::symlink_metadata(dest) else {
            return AtomicFile::create(dest);
        };
        if meta.is_file() || meta.is_dir() {
            return AtomicFile::create(dest);
        }
        let mut options = OpenOptions::new();
        options.write(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::MetadataExt;
            let mut flags = libc::O_NONBLOCK | libc::O_CLOEXEC;
            if meta.file_type().is_symlink() {
                // SAFETY: geteuid cannot fail.
                let me = unsafe { libc::geteuid() };
                if meta.uid() != me && meta.uid() != 0 {
                    return Err(io::Error::new(
                        io::ErrorKind::PermissionDenied,
                        format!(
                            "a symlink of uid {} (not yours): not written through",
                            meta.uid()
                        ),
                    ));
                }
                options.truncate(true);
            } else {
                // It is not a link now, and must not become one before it is opened.
                flags |= libc::O_NOFOLLOW;
            }
            options.custom_flags(flags);
        }
        let file = options.open(dest).map_err(|e| {
            if e.raw_os_error() == Some(libc::ENXIO) {
                io::Error::new(io::ErrorKind::BrokenPipe, "a pipe with no reader")
            } else {
                e
            }
        })?;
        #[cfg(unix)]
        blocking(&file)?;
        Ok(AtomicFile {
            out: Some(BufWriter::with_capacity(WRITE_BUFFER, file)),
            temp: None,
            dest: dest.into(),
        })
    }

    /// Standard output as it is: a copy of descriptor 1, nothing opened, truncated or renamed.
    #[cfg(unix)]
    fn standard_output() -> io::Result<AtomicFile> {
        use std::os::fd::{AsFd, OwnedFd};
        let fd: OwnedFd = io::stdout().as_fd().try_clone_to_owned()?;
        Ok(AtomicFile {
            out: Some(BufWriter::with_capacity(WRITE_BUFFER, File::from(fd))),
            temp: None,
            dest: PathBuf::from("-"),
        })
    }

    #[cfg(not(unix))]
    fn standard_output() -> io::Result<AtomicFile> {
        Err(io::Error::new(
            io::ErrorKind::Unsupported,
            "standard output as a file",
        ))
    }

    /// Flush and put the data on the disk now, so that `commit` is only a rename: filesystems such as
    /// ext4 flush a file renamed over another one at the rename, which can take a good part of a
    /// second for a big file. For a caller that must ask once more, just before the rename, whether
    /// the file is still wanted.
    pub fn settle(&mut self) -> io::Result<()> {
        let out = self.out.as_mut().expect("not committed");
        out.flush()?;
        out.get_ref().sync_data()
    }

    /// Flush and rename into place. Readers see the old file or the whole new one; like tcpdump and
    /// dumpcap we do not fsync, which would tie every write to the disk's speed.
    pub fn commit(mut self) -> io::Result<()> {
        let out = self.out.take().expect("committed once");
        let flushed = out.into_inner().map_err(|e| e.into_error());
        if let Some(temp) = self.temp.take() {
            let renamed = flushed.and_then(|_| fs::rename(&temp, &self.dest));
            if renamed.is_err() {
                let _ = fs::remove_file(&temp);
            }
            renamed?;
        } else {
            flushed?;
        }
        Ok(())
    }
}

impl AtomicFile {
    /// Write `buf` with one system call, past the buffer: for callers that gather their own chunks,
    /// small enough to still be in the CPU's cache when the kernel copies them.
    pub fn write_direct(&mut self, buf: &[u8]) -> io::Result<()> {
        let out = self.out.as_mut().expect("not committed");
        out.flush()?;
        out.get_mut().write_all(buf)
    }

    /// Write all of `bufs` in as few system calls as the kernel allows (writev), past the buffer.
    pub fn write_direct_vectored(&mut self, mut bufs: &mut [io::IoSlice<'_>]) -> io::Result<()> {
        let out = self.out.as_mut().expect("not committed");
        out.flush()?;
        let file = out.get_mut();
        while !bufs.is_empty() {
            match file.write_vectored(bufs) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => io::IoSlice::advance_slices(&mut bufs, n),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}

impl Write for AtomicFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.out.as_mut().expect("not committed").write(buf)
    }
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.out.as_mut().expect("not committed").write_all(buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.out.as_mut().expect("not committed").flush()
    }
}

impl Drop for AtomicFile {
    fn drop(&mut self) {
        if let Some(temp) = self.temp.take() {
            drop(self.out.take());
            let _ = fs::remove_file(temp);
        }
    }
}

/// Writes wait again, as usual, once the output is open (it was opened without waiting for a reader).
#[cfg(unix)]
fn blocking(file: &File) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let fd = file.as_raw_fd();
    // SAFETY: fcntl on a descriptor we own.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    if flags < 0 || unsafe { libc::fcntl(fd, libc::F_SETFL, flags & !libc::O_NONBLOCK) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// A fresh file beside `dest`, at a name nobody could have guessed, created exclusively (`O_EXCL` also
/// refuses a symlink planted at that name).
fn create_temp(dest: &Path) -> io::Result<(File, PathBuf)> {
    let name = dest
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "not a file name"))?;
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    options.custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC);
    loop {
        let mut temp_name = std::ffi::OsString::from(".");
        temp_name.push(name);
        temp_name.push(format!(".{:016x}{TEMP_SUFFIX}", random_u64()));
        let temp = dest.with_file_name(temp_name);
        match options.open(&temp) {
            Ok(file) => {
                // Held while it is written: whoever cleans up leftovers knows a live temporary by it.
                #[cfg(unix)]
                {
                    use std::os::fd::AsRawFd;
                    // SAFETY: flock on a descriptor we own; it cannot be held by anyone yet.
                    unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
                }
                return Ok((file, temp));
            }
            // Taken: by a writer of ours, or planted. Either way, another name.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
}

/// 64 bits from the system's random source.
fn random_u64() -> u64 {
    let mut bytes = [0u8; 8];
    #[cfg(target_os = "linux")]
    {
        // SAFETY: getrandom writes at most 8 bytes into our array.
        let got = unsafe { libc::getrandom(bytes.as_mut_ptr().cast(), bytes.len(), 0) };
        if got == 8 {
            return u64::from_ne_bytes(bytes);
        }
    }
    // Elsewhere (or if getrandom fails): the standard library's per-process random hash keys.
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    bytes = h.finish().to_ne_bytes();
    u64::from_ne_bytes(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nothing_is_left_when_not_committed() {
        let dir = std::env::temp_dir().join(format!("pcapdump-atomic-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let dest = dir.join("x.cap");
        {
            let mut f = AtomicFile::create(&dest).unwrap();
            f.write_all(b"half").unwrap();
        }
        assert_eq!(fs::read_dir(&dir).unwrap().count(), 0);
        let mut f = AtomicFile::create(&dest).unwrap();
        f.write_all(b"whole").unwrap();
        f.commit().unwrap();
        assert_eq!(fs::read(&dest).unwrap(), b"whole");
        assert_eq!(fs::read_dir(&dir).unwrap().count(), 1);
        fs::remove_dir_all(&dir).unwrap();
    }
}

#[cfg(all(test, unix))]
mod unix_tests {
    use super::*;

    fn scratch(tag: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("pcapdump-atomic-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn a_symlink_at_the_destination_is_replaced_not_followed() {
        let dir = scratch("link");
        let victim = dir.join("victim");
        fs::write(&victim, b"keep").unwrap();
        let dest = dir.join("x.cap");
        std::os::unix::fs::symlink(&victim, &dest).unwrap();
        let mut f = AtomicFile::create(&dest).unwrap();
        f.write_all(b"new").unwrap();
        f.commit().unwrap();
        assert_eq!(fs::read(&victim).unwrap(), b"keep");
        assert!(fs::symlink_metadata(&dest).unwrap().is_file());
        assert_eq!(fs::read(&dest).unwrap(), b"new");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn two_writers_of_one_name_never_share_a_temporary() {
        let dir = scratch("two");
        let dest = dir.join("x.cap");
        let mut a = AtomicFile::create(&dest).unwrap();
        let mut b = AtomicFile::create(&dest).unwrap();
        a.write_all(&[b'a'; 100_000]).unwrap();
        b.write_all(&[b'b'; 50_000]).unwrap();
        a.commit().unwrap();
        assert_eq!(fs::read(&dest).unwrap(), vec![b'a'; 100_000]);
        b.commit().unwrap();
        assert_eq!(fs::read(&dest).unwrap(), vec![b'b'; 50_000]);
        assert_eq!(fs::read_dir(&dir).unwrap().count(), 1);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn an_output_the_user_named_through_a_link_is_written_through_it() {
        let dir = scratch("through");
        let target = dir.join("target.cap");
        fs::write(&target, b"old contents, longer than the new").unwrap();
        let link = dir.join("link.cap");
        std::os::unix::fs::symlink(&target, &link).unwrap();
        let mut f = AtomicFile::create_or_stream(&link).unwrap();
        f.write_all(b"new").unwrap();
        f.commit().unwrap();
        assert!(fs::symlink_metadata(&link).unwrap().is_symlink());
        assert_eq!(fs::read(&target).unwrap(), b"new");
        let dangling = dir.join("dangling.cap");
        std::os::unix::fs::symlink(dir.join("nothing"), &dangling).unwrap();
        assert!(AtomicFile::create_or_stream(&dangling).is_err());
        assert!(!dir.join("nothing").exists());
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_fifo_in_the_store_is_replaced_without_being_opened() {
        let dir = scratch("fifo");
        let dest = dir.join("x.cap");
        let c = std::ffi::CString::new(dest.to_str().unwrap()).unwrap();
        // SAFETY: mkfifo with a NUL-terminated path.
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
        // Opening the FIFO for writing would block forever with no reader.
        let mut f = AtomicFile::create(&dest).unwrap();
        f.write_all(b"pcap").unwrap();
        f.commit().unwrap();
        assert!(fs::symlink_metadata(&dest).unwrap().is_file());
        fs::remove_dir_all(&dir).unwrap();
    }
}
