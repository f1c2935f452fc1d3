//! Write a file under a temporary name beside it and rename it into place once complete, so that a
//! reader never sees half a file and a failure leaves nothing behind.

use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

/// Large writes: one system call per megabyte of packets.
const WRITE_BUFFER: usize = 1 << 20;

pub struct AtomicFile {
    out: Option<BufWriter<File>>,
    /// The temporary name, or `None` when writing straight to a device or pipe (e.g. /dev/null).
    temp: Option<PathBuf>,
    dest: PathBuf,
}

impl AtomicFile {
    pub fn create(dest: &Path) -> io::Result<AtomicFile> {
        let special = fs::metadata(dest)
            .map(|m| !m.is_file() && !m.is_dir())
            .unwrap_or(false);
        if special {
            let file = fs::OpenOptions::new().write(true).open(dest)?;
            return Ok(AtomicFile {
                out: Some(BufWriter::with_capacity(WRITE_BUFFER, file)),
                temp: None,
                dest: dest.into(),
            });
        }
        let name = dest
            .file_name()
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "not a file name"))?;
        let mut temp_name = std::ffi::OsString::from(".");
        temp_name.push(name);
        temp_name.push(format!(".{}.tmp", std::process::id()));
        let temp = dest.with_file_name(temp_name);
        let file = File::create(&temp)?;
        Ok(AtomicFile {
            out: Some(BufWriter::with_capacity(WRITE_BUFFER, file)),
            temp: Some(temp),
            dest: dest.into(),
        })
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
