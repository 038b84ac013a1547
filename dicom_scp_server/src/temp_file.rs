//! The temp file a received instance is written to, before its fsync and rename (store.rs).
//!
//! Written with O_DIRECT where the file system takes it: the bytes go from an aligned buffer of ours to
//! the device instead of being copied into the page cache. The store fsyncs the file before anyone is
//! answered anyway, so the page cache only added a copy into freshly allocated pages, plus writeback
//! later. On this VM that copy cost 0.7-1.7 ms of CPU per 0.5 MB CT slice against 0.1-0.2 ms written
//! directly (`make bench` has the end-to-end figures). Where the file system refuses O_DIRECT (tmpfs on
//! older kernels, some network file systems) the writer falls back to buffered writes, once for the
//! whole process, and says so in the log.

use std::fs;
use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// O_DIRECT needs buffer addresses, file offsets and lengths aligned to the device's logical block size;
/// 4096 covers both 512-byte and 4K devices.
pub const ALIGN: usize = 4096;
/// Bytes gathered before each direct write. Each direct write waits for the device (here a VM exit and a
/// wake-up), so fewer, larger writes cost less: at 512 KB a 0.5 MB CT slice is one write instead of two
/// (4 associations, `make profile-ingest`: write phase p50 1.19 → 0.93 ms, SCP CPU 0.87 → 0.83 ms and one
/// context switch fewer per instance). Writing the first half while the second arrives did not pay for
/// the extra write: a slice arrives in about 0.25 ms.
pub const DIRECT_CHUNK: usize = 512 * 1024;
/// Small fragments (senders with small PDUs) are gathered up to this before a buffered write.
const BUFFERED_GATHER: usize = 64 * 1024;
/// Buffered mode only: start the kernel's writeback every this many bytes of a large instance, so the
/// final fsync finds little left to write (one write-out per typical instance measured best).
const WRITEBACK_STEP: u64 = 2 * 1024 * 1024;
/// Aligned buffers kept for reuse (one per store in flight): reused memory is already mapped, fresh
/// memory costs a page fault per page.
const POOL_MAX: usize = 64;

/// Set once a file system refused O_DIRECT: later temp files are written buffered.
static DIRECT_REFUSED: AtomicBool = AtomicBool::new(false);

/// A DIRECT_CHUNK-byte window of a Vec, starting at an ALIGN-aligned address (safe code: the Vec is never
/// resized, so its buffer does not move). Goes back to its pool when dropped.
pub struct AlignedBuf {
    backing: Vec<u8>,
    start: usize,
    pool: Arc<AlignedPool>,
}

impl AlignedBuf {
    fn bytes(&mut self) -> &mut [u8] {
        &mut self.backing[self.start..self.start + DIRECT_CHUNK]
    }
}

impl Drop for AlignedBuf {
    fn drop(&mut self) {
        self.pool.give(std::mem::take(&mut self.backing));
    }
}

/// Aligned buffers shared by all temp file writers.
#[derive(Default)]
pub struct AlignedPool {
    free: Mutex<Vec<Vec<u8>>>,
}

impl AlignedPool {
    fn take(self: &Arc<Self>) -> AlignedBuf {
        let reused = self.free.lock().ok().and_then(|mut free| free.pop());
        let backing = reused.unwrap_or_else(|| vec![0u8; DIRECT_CHUNK + ALIGN]);
        let start = (ALIGN - backing.as_ptr() as usize % ALIGN) % ALIGN;
        AlignedBuf {
            backing,
            start,
            pool: self.clone(),
        }
    }

    fn give(&self, backing: Vec<u8>) {
        if backing.len() != DIRECT_CHUNK + ALIGN {
            return;
        }
        if let Ok(mut free) = self.free.lock() {
            if free.len() < POOL_MAX {
                free.push(backing);
            }
        }
    }
}

enum Mode {
    /// `fill` bytes of `buf` wait for the next aligned write.
    Direct { buf: AlignedBuf, fill: usize },
    /// Small fragments wait in `pending`; `written` bytes are with the kernel.
    Buffered {
        pending: Vec<u8>,
        written: u64,
        writeback_from: u64,
    },
}

/// Writes one temp file sequentially. `finish` completes it (not fsynced); dropping it part-way leaves
/// the partial file to its owner (store.rs removes it).
pub struct TempWriter {
    file: fs::File,
    mode: Mode,
    /// Bytes handed to `write` so far: the file's final length.
    size: u64,
}

impl TempWriter {
    /// Create (truncate) `path`, with O_DIRECT unless `direct` is false or a file system refused it.
    pub fn create(path: &Path, direct: bool, pool: &Arc<AlignedPool>) -> std::io::Result<TempWriter> {
        let mut options = fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        let try_direct = direct && cfg!(target_os = "linux") && !DIRECT_REFUSED.load(Ordering::Relaxed);
        let direct_file = if try_direct {
            match options.clone().custom_flags_direct().open(path) {
                Ok(file) => Some(file),
                Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                    direct_refused(&e);
                    None
                }
                Err(e) => return Err(e),
            }
        } else {
            None
        };
        let (file, mode) = match direct_file {
            Some(file) => (
                file,
                Mode::Direct {
                    buf: pool.take(),
                    fill: 0,
                },
            ),
            None => (options.open(path)?, buffered_mode(0)),
        };
        Ok(TempWriter { file, mode, size: 0 })
    }

    /// Bytes written so far: the file's length once finished.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Whether this file is being written with O_DIRECT.
    pub fn is_direct(&self) -> bool {
        matches!(self.mode, Mode::Direct { .. })
    }

    pub fn write(&mut self, mut data: &[u8]) -> std::io::Result<()> {
        self.size += data.len() as u64;
        while !data.is_empty() {
            let Mode::Direct { buf, fill } = &mut self.mode else {
                return self.buffered_append(data);
            };
            let n = data.len().min(DIRECT_CHUNK - *fill);
            buf.bytes()[*fill..*fill + n].copy_from_slice(&data[..n]);
            *fill += n;
            data = &data[n..];
            if *fill == DIRECT_CHUNK {
                *fill = 0;
                self.direct_write(DIRECT_CHUNK)?;
            }
        }
        Ok(())
    }

    /// Write out what is left and set the exact length. The file is complete but not yet fsynced.
    pub fn finish(mut self) -> std::io::Result<fs::File> {
        if let Mode::Direct { buf, fill } = &mut self.mode {
            let tail = *fill;
            *fill = 0;
            // The whole blocks of the tail go direct; the last partial block (under ALIGN bytes) goes
            // through the page cache and is written by the fsync that follows. Padding it to a block and
            // cutting the file back instead made ext4 read that block back from the disk, synchronously,
            // to zero it past the new end (ext4_block_zero_page_range), then write it again at the fsync.
            let whole = tail / ALIGN * ALIGN;
            let rest = buf.bytes()[whole..tail].to_vec();
            if whole > 0 {
                self.direct_write(whole)?;
            }
            if !rest.is_empty() {
                direct_flag_clear(&self.file)?;
                self.file.write_all(&rest)?;
            }
        }
        self.pending_flush()?;
        Ok(self.file)
    }

    /// Write the first `len` bytes of the aligned buffer. A file system that refuses the direct write
    /// (EINVAL) gets it buffered, and so do the rest of this file and every later one.
    fn direct_write(&mut self, len: usize) -> std::io::Result<()> {
        let Mode::Direct { buf, .. } = &mut self.mode else {
            unreachable!("direct_write in direct mode only");
        };
        match self.file.write_all(&buf.bytes()[..len]) {
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                direct_refused(&e);
                direct_flag_clear(&self.file)?;
                self.file.write_all(&buf.bytes()[..len])?;
                let position = std::io::Seek::stream_position(&mut self.file)?;
                self.mode = buffered_mode(position);
                Ok(())
            }
            other => other,
        }
    }

    fn buffered_append(&mut self, data: &[u8]) -> std::io::Result<()> {
        let Mode::Buffered { pending, .. } = &mut self.mode else {
            unreachable!("buffered_append in buffered mode only");
        };
        if !pending.is_empty() && pending.len() + data.len() > BUFFERED_GATHER {
            self.pending_flush()?;
        }
        if data.len() >= BUFFERED_GATHER {
            return self.buffered_write(data);
        }
        if let Mode::Buffered { pending, .. } = &mut self.mode {
            pending.extend_from_slice(data);
        }
        Ok(())
    }

    fn pending_flush(&mut self) -> std::io::Result<()> {
        let Mode::Buffered { pending, .. } = &mut self.mode else {
            return Ok(());
        };
        let gathered = std::mem::take(pending);
        let result = self.buffered_write(&gathered);
        if let Mode::Buffered { pending, .. } = &mut self.mode {
            *pending = gathered;
            pending.clear();
        }
        result
    }

    fn buffered_write(&mut self, data: &[u8]) -> std::io::Result<()> {
        self.file.write_all(data)?;
        if let Mode::Buffered {
            written,
            writeback_from,
            ..
        } = &mut self.mode
        {
            *written += data.len() as u64;
            if *written - *writeback_from >= WRITEBACK_STEP {
                writeback_start(&self.file, *writeback_from, *written - *writeback_from);
                *writeback_from = *written;
            }
        }
        Ok(())
    }
}

fn buffered_mode(written: u64) -> Mode {
    Mode::Buffered {
        pending: Vec::with_capacity(BUFFERED_GATHER),
        written,
        writeback_from: written,
    }
}

fn direct_refused(e: &std::io::Error) {
    if !DIRECT_REFUSED.swap(true, Ordering::Relaxed) {
        tracing::warn!(error = %e, "the storage file system refuses O_DIRECT; writing through the page cache");
    }
}

trait DirectFlag {
    fn custom_flags_direct(&mut self) -> &mut Self;
}

impl DirectFlag for fs::OpenOptions {
    fn custom_flags_direct(&mut self) -> &mut Self {
        #[cfg(target_os = "linux")]
        {
            use std::os::unix::fs::OpenOptionsExt;
            self.custom_flags(libc::O_DIRECT);
        }
        self
    }
}

/// Turn O_DIRECT off on an open file (Linux allows it through F_SETFL).
fn direct_flag_clear(file: &fs::File) -> std::io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        let fd = file.as_raw_fd();
        // SAFETY: fcntl on a descriptor we own; no memory of ours is passed.
        let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
        if flags < 0 {
            return Err(std::io::Error::last_os_error());
        }
        // SAFETY: as above.
        if unsafe { libc::fcntl(fd, libc::F_SETFL, flags & !libc::O_DIRECT) } < 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = file;
    Ok(())
}

/// Ask the kernel to start writing a range of the file out now (Linux `sync_file_range`, no waiting).
/// Only an early start: durability still comes from the fsync before the rename.
fn writeback_start(file: &fs::File, offset: u64, len: u64) {
    #[cfg(target_os = "linux")]
    {
        use std::os::fd::AsRawFd;
        // SAFETY: a plain syscall on a file descriptor we own; it reads no memory of ours.
        unsafe {
            libc::sync_file_range(
                file.as_raw_fd(),
                offset as libc::off64_t,
                len as libc::off64_t,
                libc::SYNC_FILE_RANGE_WRITE,
            );
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = (file, offset, len);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Fragment sizes that cross the chunk boundary, end unaligned, and mix tiny and large pieces.
    fn fragments() -> Vec<Vec<u8>> {
        let sizes = [
            132usize,
            7,
            65_536,
            1,
            DIRECT_CHUNK - 3,
            4096,
            200_000,
            3,
            DIRECT_CHUNK,
            17,
        ];
        sizes
            .iter()
            .enumerate()
            .map(|(i, &n)| (0..n).map(|j| (i * 31 + j * 7) as u8).collect())
            .collect()
    }

    fn write_all(path: &Path, direct: bool, pool: &Arc<AlignedPool>) -> (Vec<u8>, bool) {
        let mut writer = TempWriter::create(path, direct, pool).unwrap();
        let was_direct = writer.is_direct();
        let mut expected = vec![];
        for f in fragments() {
            writer.write(&f).unwrap();
            expected.extend_from_slice(&f);
        }
        let file = writer.finish().unwrap();
        file.sync_all().unwrap();
        (expected, was_direct)
    }

    #[test]
    fn both_modes_write_exactly_the_bytes_given() {
        let dir = tempfile::tempdir_in(env!("CARGO_MANIFEST_DIR")).unwrap();
        let pool = Arc::new(AlignedPool::default());
        for direct in [true, false] {
            let path = dir.path().join(format!("{direct}.part"));
            let (expected, was_direct) = write_all(&path, direct, &pool);
            assert_eq!(fs::read(&path).unwrap(), expected, "direct={direct}");
            if !direct {
                assert!(!was_direct);
            }
        }
        // Each writer gave its aligned buffer back, and the pool hands it out again.
        assert_eq!(pool.free.lock().unwrap().len(), 1);
        let mut again = pool.take();
        assert_eq!(again.bytes().as_ptr() as usize % ALIGN, 0);
        assert_eq!(again.bytes().len(), DIRECT_CHUNK);
    }

    #[test]
    fn a_small_file_is_written_exactly() {
        let dir = tempfile::tempdir_in(env!("CARGO_MANIFEST_DIR")).unwrap();
        let pool = Arc::new(AlignedPool::default());
        let path = dir.path().join("small.part");
        let mut writer = TempWriter::create(&path, true, &pool).unwrap();
        writer.write(b"DICM and a little").unwrap();
        writer.finish().unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"DICM and a little");
    }
}
