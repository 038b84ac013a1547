//! Durable storage of one C-STORE, in a fixed order, all of the file work on one blocking writer thread
//! per store: stream to STORAGE_ROOT/.incoming (Part-10: preamble, DICM, file meta from the command, then
//! the data set bytes exactly as received, written with O_DIRECT and hashed while the association reads
//! on; temp_file.rs) → the identifying UIDs parsed from the bytes kept in memory and validated → fsync →
//! under the SOP Instance UID's lock, create study/series folders (fsync their parents), rename into
//! `<StudyUID>/<SeriesUID>/<SOPInstanceUID>.dcm` when nothing is there and fsync the series folder →
//! (durability.rs, grouped with concurrent stores) the receipt INSERT, committed → only then success.
//! Nothing is renamed before its fsync has finished, and no receipt is committed before its file is
//! durable in place. A SOP Instance UID that already has a receipt (its INSERT conflicts) is looked up and
//! handled here: duplicate, keep the first, or overwrite.
//! Every failure leaves nothing behind: the temp file goes, and a file renamed into place goes if its
//! receipt cannot be committed. A crash can leave a complete file without a receipt, never
//! acknowledged: a resend replaces it.
use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use dicom_dictionary_std::tags;
use dicom_object::mem::InMemDicomObject;
use dicom_object::OpenFileOptions;
use tokio::sync::{mpsc, oneshot};

use crate::config::OnConflict;
use crate::digest::{self, FileHasher};
use crate::durability::{self, Barrier, PlaceRequest};
use crate::error::{StoreError, UidError};
use crate::receipt::{self, Db, NewReceipt};
use crate::temp_file::{AlignedPool, TempWriter};

pub const MAX_UID_LENGTH: usize = 64;
pub const INCOMING_DIR: &str = ".incoming";
/// Held (flock) by the process owning an `.incoming/<id>/` folder.
pub const LOCK_FILE: &str = ".lock";
/// Our Implementation Class UID (2.25 form, generated once for NoctisPro's SCP) and version name.
pub const IMPLEMENTATION_CLASS_UID: &str = "2.25.38107447410552702401369630246412861942";
pub const IMPLEMENTATION_VERSION_NAME: &str = "NOCTIS_SCP_0_1";

/// The attribute keywords copied into the receipt's `attrs` (tests/contracts/receipt.json "attr_keywords").
pub const ATTR_KEYWORDS: &[&str] = &[
    "PatientName",
    "PatientID",
    "IssuerOfPatientID",
    "PatientBirthDate",
    "PatientSex",
    "StudyDate",
    "StudyTime",
    "AccessionNumber",
    "StudyDescription",
    "ReferringPhysicianName",
    "StudyID",
    "InstitutionName",
    "Modality",
    "SeriesNumber",
    "SeriesDescription",
    "SeriesDate",
    "SeriesTime",
    "BodyPartExamined",
    "Manufacturer",
    "InstanceNumber",
    "Rows",
    "Columns",
    "NumberOfFrames",
    "BitsAllocated",
    "PhotometricInterpretation",
    "ImageType",
    "SliceThickness",
    "SliceLocation",
    "ImagePositionPatient",
    "ImageOrientationPatient",
    "PixelSpacing",
    "AcquisitionDateTime",
    "ContentDate",
    "ContentTime",
];

/// ATTR_KEYWORDS with their tags, looked up once. Lookups by tag return an Option: the by-name and
/// by-tag accessors of dicom-object build an error with a captured backtrace for every absent
/// attribute, which costs milliseconds per instance when RUST_BACKTRACE is set.
fn attr_tags() -> &'static [(&'static str, dicom_core::Tag)] {
    use dicom_core::dictionary::{DataDictionary, DataDictionaryEntry};
    static TAGS: std::sync::OnceLock<Vec<(&'static str, dicom_core::Tag)>> = std::sync::OnceLock::new();
    TAGS.get_or_init(|| {
        ATTR_KEYWORDS
            .iter()
            .filter_map(|k| {
                let entry = dicom_dictionary_std::StandardDataDictionary.by_name(k)?;
                match entry.tag_range() {
                    dicom_core::dictionary::TagRange::Single(tag) => Some((*k, tag)),
                    _ => None,
                }
            })
            .collect()
    })
}

/// A UID: digits and dots, at most 64 characters, no empty component, no leading zero in a multi-digit
/// component (PS3.5 9.1). It becomes a path component, so this is also what keeps `../x` out.
pub fn uid_check(value: &str) -> Result<(), UidError> {
    if value.is_empty() {
        return Err(UidError::Missing);
    }
    if value.len() > MAX_UID_LENGTH {
        return Err(UidError::TooLong);
    }
    for component in value.split('.') {
        let ok = !component.is_empty()
            && component.bytes().all(|b| b.is_ascii_digit())
            && (component == "0" || !component.starts_with('0'));
        if !ok {
            return Err(UidError::NotDigitsAndDots);
        }
    }
    Ok(())
}

/// `<StudyUID>/<SeriesUID>/<SOPInstanceUID>.dcm`, relative to STORAGE_ROOT (tests/contracts/storage_paths.json).
pub fn instance_relpath(study: &str, series: &str, sop_instance: &str) -> Result<String, StoreError> {
    for (keyword, value) in [
        ("StudyInstanceUID", study),
        ("SeriesInstanceUID", series),
        ("SOPInstanceUID", sop_instance),
    ] {
        uid_check(value).map_err(|problem| StoreError::BadUid {
            keyword,
            value: value.to_string(),
            problem,
        })?;
    }
    Ok(format!("{study}/{series}/{sop_instance}.dcm"))
}

/// Preamble, "DICM" and the file meta group (Explicit VR Little Endian) for a received instance.
pub fn file_meta_bytes(
    sop_class: &str,
    sop_instance: &str,
    transfer_syntax: &str,
    calling_ae: &str,
) -> Vec<u8> {
    fn element(out: &mut Vec<u8>, element: u16, vr: &[u8; 2], value: &[u8], pad: u8) {
        let mut v = value.to_vec();
        if v.len() % 2 == 1 {
            v.push(pad);
        }
        out.extend_from_slice(&0x0002u16.to_le_bytes());
        out.extend_from_slice(&element.to_le_bytes());
        out.extend_from_slice(vr);
        if vr == b"OB" {
            out.extend_from_slice(&[0, 0]);
            out.extend_from_slice(&(v.len() as u32).to_le_bytes());
        } else {
            out.extend_from_slice(&(v.len() as u16).to_le_bytes());
        }
        out.extend_from_slice(&v);
    }
    let mut group = Vec::with_capacity(256);
    element(&mut group, 0x0001, b"OB", &[0x00, 0x01], 0);
    element(&mut group, 0x0002, b"UI", sop_class.as_bytes(), 0);
    element(&mut group, 0x0003, b"UI", sop_instance.as_bytes(), 0);
    element(&mut group, 0x0010, b"UI", transfer_syntax.as_bytes(), 0);
    element(&mut group, 0x0012, b"UI", IMPLEMENTATION_CLASS_UID.as_bytes(), 0);
    element(
        &mut group,
        0x0013,
        b"SH",
        IMPLEMENTATION_VERSION_NAME.as_bytes(),
        b' ',
    );
    let ae = calling_ae.trim();
    if !ae.is_empty() {
        element(&mut group, 0x0016, b"AE", ae.as_bytes(), b' ');
    }
    let mut out = vec![0u8; 128];
    out.extend_from_slice(b"DICM");
    element(&mut out, 0x0000, b"UL", &(group.len() as u32).to_le_bytes(), 0);
    out.extend_from_slice(&group);
    out
}

/// What the C-STORE-RQ command said, plus the association context.
#[derive(Debug, Clone)]
pub struct StoreRequest {
    pub sop_class_uid: String,
    pub sop_instance_uid: String,
    pub transfer_syntax_uid: String,
    pub calling_ae: String,
    pub called_ae: String,
}

/// Identity and attributes read back from the received data set.
#[derive(Debug, Clone, PartialEq)]
pub struct InstanceIdentity {
    pub sop_class_uid: String,
    pub sop_instance_uid: String,
    pub study_instance_uid: String,
    pub series_instance_uid: String,
    pub attrs: BTreeMap<String, String>,
}

/// How a successful store ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreOutcome {
    /// A new receipt row was written (its id is queued for the webhook).
    Stored { receipt_id: i64 },
    /// The same instance was already stored: nothing rewritten.
    Duplicate,
    /// Different content for a known SOP Instance UID, SCP_ON_CONFLICT=keep: the first stays.
    KeptFirst,
    /// Different content, SCP_ON_CONFLICT=overwrite: file and receipt replaced.
    Overwritten { receipt_id: i64 },
}

/// Time spent in each phase of one store, for the log line (where ingest time goes).
#[derive(Debug, Default, Clone, Copy)]
pub struct Phases {
    /// Writing received bytes to the temp file and hashing them.
    pub write: Duration,
    /// Flushing and fsyncing the temp file.
    pub fsync: Duration,
    /// Reading identity and attributes back (up to PixelData).
    pub parse: Duration,
    /// Looking up an earlier receipt for the SOP Instance UID.
    pub find: Duration,
    /// Folders, rename, folder fsync and receipt row committed (the durability barrier, or the
    /// overwrite path).
    pub place: Duration,
}

impl std::fmt::Display for Phases {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let us = |d: Duration| d.as_micros();
        write!(
            f,
            "write={}us fsync={}us parse={}us find={}us place={}us",
            us(self.write),
            us(self.fsync),
            us(self.parse),
            us(self.find),
            us(self.place)
        )
    }
}

/// The storage area and what a store needs around it.
pub struct Storage {
    root: PathBuf,
    incoming: PathBuf,
    _lock: fs::File,
    on_conflict: OnConflict,
    db: Db,
    barrier: Barrier,
    /// One store at a time per SOP Instance UID, so two associations sending the same instance don't race.
    locks: Arc<LockMap>,
    counter: AtomicU64,
    buffers: Arc<BufferPool>,
    aligned: Arc<AlignedPool>,
    /// Temp files with O_DIRECT (SCP_DIRECT_IO).
    direct_io: bool,
}

/// Reusable PDV buffers: the association reads PDV data into one, the temp file writer gives it back.
#[derive(Default)]
pub struct BufferPool {
    free: Mutex<Vec<Vec<u8>>>,
}

/// At most this many buffers are kept, each of at most `POOL_BUFFER_MAX` bytes (bounded memory).
const POOL_MAX: usize = 64;
const POOL_BUFFER_MAX: usize = 1024 * 1024;

impl BufferPool {
    /// A buffer of exactly `len` bytes (zeroed only where it was never written before).
    pub fn take(&self, len: usize) -> Vec<u8> {
        let mut v = self
            .free
            .lock()
            .ok()
            .and_then(|mut free| free.pop())
            .unwrap_or_default();
        v.resize(len, 0);
        v
    }

    pub fn give(&self, v: Vec<u8>) {
        if v.capacity() < 4096 || v.capacity() > POOL_BUFFER_MAX {
            return;
        }
        if let Ok(mut free) = self.free.lock() {
            if free.len() < POOL_MAX {
                free.push(v);
            }
        }
    }
}

/// Fragments of a data set in flight to the writer; bounded so a slow disk slows the sender (TCP
/// back-pressure) instead of filling memory.
const CHUNKS_IN_FLIGHT: usize = 8;
/// The first bytes of each temp file are also kept in memory, so the identity and receipt attributes are
/// parsed from there instead of read back from the file (which, written with O_DIRECT, is not in the page
/// cache). Enough for the attributes before the pixel data of nearly every instance; the rest are read
/// from the file.
const HEAD_KEPT: usize = 64 * 1024;

/// The temp file once every fragment is written (not yet fsynced).
struct Written {
    /// "blake3:<hex>" of the whole file (digest.rs).
    digest: String,
    /// The file's first bytes (up to HEAD_KEPT).
    head: Vec<u8>,
    /// The file's length.
    size: u64,
    /// Time spent writing and hashing.
    busy: Duration,
}

/// What the writer thread hands back: the instance written, parsed and checked, fsynced, and (usually)
/// already in its final place with its folder fsynced, all on the one thread (no hand-over between
/// threads on the way, each of which cost a wake-up).
struct Prepared {
    digest: String,
    identity: InstanceIdentity,
    relpath: String,
    /// None when another store of the same UID held its lock: the writer never waits for it (a blocking
    /// thread waiting on a store that needs a blocking thread itself could wait forever); the association's
    /// task waits, then places the file.
    placed: Option<Placement>,
    phases: Phases,
}

/// The writer's attempt at placing the file, under the SOP Instance UID's lock.
struct Placement {
    /// Taken before the rename and held until the store is answered.
    lock: InstanceLock,
    /// Renamed to `<Study>/<Series>/<SOP>.dcm` and the folder fsynced; false: the path was taken, the file
    /// is still the temp file (the barrier places it the careful way).
    early: bool,
}

/// What the writer needs to parse, check and place the instance.
struct WriterJob {
    request: StoreRequest,
    root: PathBuf,
    locks: Arc<LockMap>,
}

/// A data set being received into a temp file, by a blocking writer thread that writes and hashes each
/// fragment while the association reads the next. Dropping it (failure, abort) removes the temp file.
pub struct Incoming {
    chunks: Option<mpsc::Sender<Vec<u8>>>,
    /// The writer's word once the instance is prepared (or why it could not be).
    ready: Option<oneshot::Receiver<Result<Prepared, StoreError>>>,
    path: PathBuf,
    size: u64,
    request: StoreRequest,
    keep_file: bool,
    /// Set when the Incoming is dropped without keeping its file (see Drop).
    abandoned: Arc<Mutex<bool>>,
    phases: Phases,
}

impl Drop for Incoming {
    fn drop(&mut self) {
        if !self.keep_file {
            // Under the lock the writer creates the file with: either the file exists now and goes,
            // or the writer sees `abandoned` and never creates it.
            let mut abandoned = self.abandoned.lock().unwrap_or_else(|e| e.into_inner());
            *abandoned = true;
            let _ = fs::remove_file(&self.path);
        }
    }
}

impl Incoming {
    /// Hand one fragment to the writer. An error is the writer's (create, write) and is final.
    pub async fn write(&mut self, data: Vec<u8>) -> Result<(), StoreError> {
        let Some(chunks) = self.chunks.as_ref() else {
            return Err(StoreError::Io {
                context: "write temp file",
                source: std::io::Error::other("already closed"),
            });
        };
        self.size += data.len() as u64;
        if chunks.send(data).await.is_ok() {
            return Ok(());
        }
        // The writer stopped early: it failed. Its error is the one to report.
        self.chunks = None;
        match self.prepared().await {
            Err(e) => Err(e),
            Ok(_) => Err(StoreError::Io {
                context: "write temp file",
                source: std::io::Error::other("writer stopped"),
            }),
        }
    }

    /// Close the fragment channel and wait for the writer to have prepared the instance.
    async fn prepared(&mut self) -> Result<Prepared, StoreError> {
        self.chunks = None;
        let closed = || StoreError::Io {
            context: "write temp file",
            source: std::io::Error::other("writer stopped"),
        };
        let ready = self.ready.take().ok_or_else(closed)?;
        ready.await.map_err(|_| closed())?
    }

    pub fn request(&self) -> &StoreRequest {
        &self.request
    }

    /// Bytes written so far (file meta included).
    pub fn size(&self) -> u64 {
        self.size
    }
}

/// The writer thread: write the temp file, parse and check the data set, fsync, then under the SOP
/// Instance UID's lock rename it into place and fsync the folder (`temp_prepare`); the result goes on
/// `ready`. A store given up on meanwhile (nobody takes the result) has its placed file taken out again:
/// it was never acknowledged.
fn temp_write(
    path: PathBuf,
    abandoned: Arc<Mutex<bool>>,
    meta: Vec<u8>,
    chunks: mpsc::Receiver<Vec<u8>>,
    setup: (Arc<BufferPool>, Arc<AlignedPool>, bool),
    job: WriterJob,
    ready: oneshot::Sender<Result<Prepared, StoreError>>,
) {
    let result = temp_prepare(&path, &abandoned, meta, chunks, setup, &job);
    if let Err(Ok(prepared)) = ready.send(result) {
        if prepared.placed.is_some_and(|p| p.early) {
            durability::files_remove(&[job.root.join(&prepared.relpath)]);
        }
    }
}

fn temp_prepare(
    path: &Path,
    abandoned: &Arc<Mutex<bool>>,
    meta: Vec<u8>,
    chunks: mpsc::Receiver<Vec<u8>>,
    setup: (Arc<BufferPool>, Arc<AlignedPool>, bool),
    job: &WriterJob,
) -> Result<Prepared, StoreError> {
    let (file, written) = temp_fill(path.to_path_buf(), abandoned.clone(), meta, chunks, setup)?;
    let mut phases = Phases {
        write: written.busy,
        ..Phases::default()
    };
    let t = Instant::now();
    let identity = match instance_identity_from_head(&written.head, written.size) {
        Some(identity) => identity?,
        None => instance_identity_read(path)?,
    };
    phases.parse = t.elapsed();
    let r = &job.request;
    if identity.sop_instance_uid != r.sop_instance_uid {
        return Err(StoreError::InstanceMismatch {
            command: r.sop_instance_uid.clone(),
            dataset: identity.sop_instance_uid,
        });
    }
    if identity.sop_class_uid != r.sop_class_uid {
        return Err(StoreError::ClassMismatch {
            command: r.sop_class_uid.clone(),
            dataset: identity.sop_class_uid,
        });
    }
    let relpath = instance_relpath(
        &identity.study_instance_uid,
        &identity.series_instance_uid,
        &identity.sop_instance_uid,
    )?;
    // A store given up on (its file removed) needs no fsync.
    if *abandoned.lock().unwrap_or_else(|e| e.into_inner()) {
        return Err(StoreError::Io {
            context: "fsync temp file",
            source: std::io::Error::other("store abandoned"),
        });
    }
    // The data is durable before the file takes its final name, so a crash never leaves a torn file
    // there.
    let t = Instant::now();
    file.sync_all().map_err(StoreError::io("fsync temp file"))?;
    drop(file);
    phases.fsync = t.elapsed();
    let t = Instant::now();
    let placed = match InstanceLock::try_acquire(&job.locks, &identity.sop_instance_uid) {
        // Any file already at our path without a receipt is a leftover that was never acknowledged; the
        // barrier replaces it unless it is this very content.
        Some(lock) => Some(Placement {
            early: durability::file_place_early(path, &job.root.join(&relpath))
                .map_err(StoreError::io("rename into place"))?,
            lock,
        }),
        None => None,
    };
    phases.place = t.elapsed();
    Ok(Prepared {
        digest: written.digest,
        identity,
        relpath,
        placed,
        phases,
    })
}

/// Create the temp file, write the file meta then each fragment, hash everything, keep the head. Stops at
/// the first error (the association sees the channel closed).
fn temp_fill(
    path: PathBuf,
    abandoned: Arc<Mutex<bool>>,
    meta: Vec<u8>,
    mut chunks: mpsc::Receiver<Vec<u8>>,
    (buffers, aligned, direct_io): (Arc<BufferPool>, Arc<AlignedPool>, bool),
) -> Result<(fs::File, Written), StoreError> {
    let mut out = {
        let abandoned = abandoned.lock().unwrap_or_else(|e| e.into_inner());
        if *abandoned {
            return Err(StoreError::Io {
                context: "create temp file",
                source: std::io::Error::other("store abandoned"),
            });
        }
        TempWriter::create(&path, direct_io, &aligned).map_err(StoreError::io("create temp file"))?
    };
    let started = Instant::now();
    let mut hasher = FileHasher::default();
    let mut head = Vec::with_capacity(HEAD_KEPT);
    let mut put = |out: &mut TempWriter, data: &[u8]| -> Result<(), StoreError> {
        out.write(data).map_err(StoreError::io("write temp file"))?;
        hasher.update(data);
        let keep = data.len().min(HEAD_KEPT - head.len());
        head.extend_from_slice(&data[..keep]);
        Ok(())
    };
    put(&mut out, &meta)?;
    let mut busy = started.elapsed();
    while let Some(chunk) = chunks.blocking_recv() {
        let t = Instant::now();
        put(&mut out, &chunk)?;
        buffers.give(chunk);
        busy += t.elapsed();
    }
    let t = Instant::now();
    let size = out.size();
    let file = out.finish().map_err(StoreError::io("write temp file"))?;
    busy += t.elapsed();
    let written = Written {
        digest: hasher.finish(),
        head,
        size,
        busy,
    };
    Ok((file, written))
}

impl Storage {
    /// Create STORAGE_ROOT and this process's own temp folder `.incoming/<id>/`, held by a file lock for
    /// the life of the process. Folders whose lock is free belong to processes that died: their files were
    /// never acknowledged, so they are removed. Replicas sharing STORAGE_ROOT (--scale) never touch each
    /// other's temp files. Starts the receipt writer, so it must run inside a tokio runtime.
    pub fn open(root: &Path, on_conflict: OnConflict, db: Db) -> std::io::Result<Storage> {
        fs::create_dir_all(root)?;
        let incoming_root = root.join(INCOMING_DIR);
        fs::create_dir_all(&incoming_root)?;
        for entry in fs::read_dir(&incoming_root)? {
            let path = entry?.path();
            if !path.is_dir() {
                let _ = fs::remove_file(&path);
                continue;
            }
            let stale = match fs::File::open(path.join(LOCK_FILE)) {
                Ok(f) => f.try_lock().is_ok(),
                Err(_) => true,
            };
            if stale {
                tracing::info!(path = %path.display(), "removing temp files left by a stopped SCP");
                fs::remove_dir_all(&path)?;
            }
        }
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let incoming = incoming_root.join(format!("{nanos}-{}", std::process::id()));
        fs::create_dir(&incoming)?;
        let lock = fs::File::create(incoming.join(LOCK_FILE))?;
        lock.try_lock().map_err(std::io::Error::other)?;
        Ok(Storage {
            root: root.to_path_buf(),
            incoming,
            _lock: lock,
            on_conflict,
            barrier: Barrier::start(db.clone()),
            db,
            locks: Arc::new(LockMap::default()),
            counter: AtomicU64::new(0),
            buffers: Arc::new(BufferPool::default()),
            aligned: Arc::new(AlignedPool::default()),
            direct_io: true,
        })
    }

    /// Write temp files through the page cache instead of with O_DIRECT (SCP_DIRECT_IO=false).
    pub fn direct_io(mut self, on: bool) -> Storage {
        self.direct_io = on;
        self
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn db(&self) -> &Db {
        &self.db
    }

    /// Counters of the durability barrier (/metrics).
    pub fn barrier_stats(&self) -> &durability::BarrierStats {
        self.barrier.stats()
    }

    /// The PDV buffers shared by associations and temp file writers.
    pub fn buffers(&self) -> &BufferPool {
        &self.buffers
    }

    /// Whether the storage area accepts writes (health check).
    pub async fn storage_check(&self) -> std::io::Result<()> {
        let probe = self
            .incoming
            .join(format!("health-{}", self.counter.fetch_add(1, Ordering::Relaxed)));
        tokio::fs::write(&probe, b"ok").await?;
        tokio::fs::remove_file(&probe).await
    }

    /// Start the writer of a temp file that begins with preamble + file meta built from the command.
    pub async fn store_begin(&self, request: StoreRequest) -> Result<Incoming, StoreError> {
        let n = self.counter.fetch_add(1, Ordering::Relaxed);
        let path = self.incoming.join(format!("{n}.part"));
        let meta = file_meta_bytes(
            &request.sop_class_uid,
            &request.sop_instance_uid,
            &request.transfer_syntax_uid,
            &request.calling_ae,
        );
        let (tx, rx) = mpsc::channel(CHUNKS_IN_FLIGHT);
        let size = meta.len() as u64;
        let abandoned = Arc::new(Mutex::new(false));
        let (p, a) = (path.clone(), abandoned.clone());
        let setup = (self.buffers.clone(), self.aligned.clone(), self.direct_io);
        let (ready_tx, ready) = oneshot::channel();
        let job = WriterJob {
            request: request.clone(),
            root: self.root.clone(),
            locks: self.locks.clone(),
        };
        tokio::task::spawn_blocking(move || temp_write(p, a, meta, rx, setup, job, ready_tx));
        Ok(Incoming {
            chunks: Some(tx),
            ready: Some(ready),
            path,
            size,
            keep_file: false,
            abandoned,
            request,
            phases: Phases::default(),
        })
    }

    /// Validate, make durable, record the receipt. Success means the file and its row are both durable.
    pub async fn store_commit(
        &self,
        mut incoming: Incoming,
    ) -> Result<(StoreOutcome, NewReceipt, Phases), StoreError> {
        // The writer has written, parsed and checked, fsynced and, under the SOP Instance UID's lock (held
        // until the answer), placed the file: the barrier records it.
        let Prepared {
            digest,
            identity,
            relpath,
            placed,
            phases,
        } = incoming.prepared().await?;
        incoming.phases = phases;
        let r = incoming.request.clone();
        let receipt = NewReceipt {
            sop_instance_uid: identity.sop_instance_uid.clone(),
            sop_class_uid: identity.sop_class_uid.clone(),
            study_instance_uid: identity.study_instance_uid.clone(),
            series_instance_uid: identity.series_instance_uid.clone(),
            transfer_syntax_uid: r.transfer_syntax_uid.clone(),
            path: relpath.clone(),
            size_bytes: incoming.size as i64,
            digest,
            calling_ae: r.calling_ae.trim().to_string(),
            called_ae: r.called_ae.trim().to_string(),
            attrs: serde_json::to_string(&identity.attrs).expect("string map serializes"),
        };

        let (lock, early) = match placed {
            Some(Placement { lock, early }) => (lock, Some(early)),
            None => (
                InstanceLock::acquire(&self.locks, &receipt.sop_instance_uid).await,
                None,
            ),
        };
        let outcome = self.place(&mut incoming, &receipt, early).await;
        drop(lock);
        Ok((outcome?, receipt, incoming.phases))
    }

    /// A new instance goes through the barrier (receipt INSERT, rename, COMMIT); a SOP Instance UID that
    /// already has a receipt (the INSERT conflicted, nothing was moved) is then looked up and handled as a
    /// known instance.
    async fn place(
        &self,
        incoming: &mut Incoming,
        receipt: &NewReceipt,
        early: Option<bool>,
    ) -> Result<StoreOutcome, StoreError> {
        if let Some(outcome) = self.place_new(incoming, receipt, early).await? {
            return Ok(outcome);
        }
        let t = Instant::now();
        let existing = receipt::receipt_find(&self.db, &receipt.sop_instance_uid).await?;
        incoming.phases.find = t.elapsed();
        match existing {
            Some(existing) => self.place_known(incoming, receipt, existing).await,
            // The receipt went away in between: new after all (the temp file is already fsynced).
            None => self.place_new(incoming, receipt, None).await?.ok_or_else(|| {
                StoreError::Receipt(crate::error::ReceiptError::Unavailable(
                    "receipt appeared and vanished concurrently".into(),
                ))
            }),
        }
    }

    /// Through the barrier; `None` when the SOP Instance UID already has a receipt (nothing moved).
    /// `early`: whether the writer already placed the file (None: not tried, so try now).
    async fn place_new(
        &self,
        incoming: &mut Incoming,
        receipt: &NewReceipt,
        early: Option<bool>,
    ) -> Result<Option<StoreOutcome>, StoreError> {
        let t = Instant::now();
        let final_path = self.root.join(&receipt.path);
        let early = match early {
            Some(early) => early,
            None => {
                let (temp, fin) = (incoming.path.clone(), final_path.clone());
                tokio::task::spawn_blocking(move || durability::file_place_early(&temp, &fin))
                    .await
                    .map_err(|e| StoreError::Io {
                        context: "rename into place",
                        source: std::io::Error::other(e),
                    })?
                    .map_err(StoreError::io("rename into place"))?
            }
        };
        let placed = self
            .barrier
            .instance_place(PlaceRequest {
                temp: incoming.path.clone(),
                final_path,
                receipt: receipt.clone(),
                early,
            })
            .await;
        incoming.phases.place += t.elapsed();
        let placed = placed?;
        incoming.keep_file = placed.renamed;
        Ok(placed
            .receipt_id
            .map(|receipt_id| StoreOutcome::Stored { receipt_id }))
    }

    /// Same SOP Instance UID as an earlier receipt: identical → duplicate; different → the
    /// SCP_ON_CONFLICT policy (keep the first, or overwrite file and receipt).
    async fn place_known(
        &self,
        incoming: &mut Incoming,
        receipt: &NewReceipt,
        existing: receipt::ExistingReceipt,
    ) -> Result<StoreOutcome, StoreError> {
        let final_path = self.root.join(&receipt.path);
        let temp = incoming.path.clone();
        let existing_path = self.root.join(&existing.path);
        let existing_present = tokio::fs::metadata(&existing_path).await.is_ok();
        if existing_present {
            let identical = existing.digest == receipt.digest
                || same_dataset(&existing_path, &temp).await.unwrap_or(false);
            if identical {
                tracing::info!(sop = %receipt.sop_instance_uid, "instance already stored; nothing rewritten");
                return Ok(StoreOutcome::Duplicate);
            }
            if self.on_conflict == OnConflict::Keep {
                tracing::warn!(
                    sop = %receipt.sop_instance_uid,
                    kept = %existing.path,
                    "SOP Instance UID received again with different content; keeping the first (SCP_ON_CONFLICT=keep)"
                );
                return Ok(StoreOutcome::KeptFirst);
            }
        } else {
            tracing::warn!(sop = %receipt.sop_instance_uid, path = %existing.path, "receipt without its file; storing again");
        }

        // Overwrite (or heal a missing file): move any file at our path aside so a failed receipt update
        // can put it back.
        let aside = self.incoming.join(format!(
            "{}.old",
            incoming.path.file_name().unwrap().to_string_lossy()
        ));
        let had_old = tokio::fs::rename(&final_path, &aside).await.is_ok();
        if let Err(e) = self.rename_into_place(&temp, &final_path).await {
            if had_old {
                let _ = tokio::fs::rename(&aside, &final_path).await;
            }
            return Err(e);
        }
        incoming.keep_file = true;
        match receipt::receipt_upsert(&self.db, receipt).await {
            Ok(id) => {
                let _ = tokio::fs::remove_file(&aside).await;
                if existing.path != receipt.path && existing_present {
                    self.remove_durably(&existing_path).await;
                }
                tracing::warn!(sop = %receipt.sop_instance_uid, "instance replaced (SCP_ON_CONFLICT=overwrite)");
                Ok(StoreOutcome::Overwritten { receipt_id: id })
            }
            Err(e) => {
                if had_old {
                    let _ = tokio::fs::rename(&aside, &final_path).await;
                    let _ = dir_sync(final_path.parent().unwrap()).await;
                } else {
                    self.remove_durably(&final_path).await;
                }
                Err(e.into())
            }
        }
    }

    /// Create the study/series folders (fsync each parent when a folder is new), rename, fsync the folder,
    /// in one trip to the blocking pool (the overwrite path; new instances go through the barrier).
    async fn rename_into_place(&self, temp: &Path, final_path: &Path) -> Result<(), StoreError> {
        let moves = vec![(temp.to_path_buf(), final_path.to_path_buf(), String::new())];
        let moved = tokio::task::spawn_blocking(move || durability::files_into_place(&moves).pop())
            .await
            .map_err(|e| StoreError::Io {
                context: "rename into place",
                source: std::io::Error::other(e),
            })?;
        match moved {
            Some(Ok(_)) => Ok(()),
            Some(Err(source)) => Err(StoreError::Io {
                context: "rename into place",
                source,
            }),
            None => Err(StoreError::Io {
                context: "rename into place",
                source: std::io::Error::other("nothing moved"),
            }),
        }
    }

    async fn remove_durably(&self, path: &Path) {
        if let Err(e) = tokio::fs::remove_file(path).await {
            tracing::error!(path = %path.display(), error = %e, "cannot remove file after failed receipt");
            return;
        }
        if let Some(parent) = path.parent() {
            let _ = dir_sync(parent).await;
        }
    }
}

/// The SOP Instance UIDs being stored right now, each with its lock.
type LockMap = Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>;

/// A held SOP Instance UID lock. Dropping it releases the lock, and the map's entry goes with it when
/// nobody else holds or waits for it, so the map holds only the UIDs being stored right now.
struct InstanceLock {
    locks: Arc<LockMap>,
    sop: String,
    guard: Option<tokio::sync::OwnedMutexGuard<()>>,
}

impl InstanceLock {
    fn entry(locks: &Arc<LockMap>, sop: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut map = locks.lock().unwrap_or_else(|e| e.into_inner());
        map.entry(sop.to_string()).or_default().clone()
    }

    /// The SOP Instance UID's lock if nobody holds it (the writer thread's way: it never waits).
    fn try_acquire(locks: &Arc<LockMap>, sop: &str) -> Option<InstanceLock> {
        let guard = Self::entry(locks, sop).try_lock_owned().ok();
        let held = InstanceLock {
            locks: locks.clone(),
            sop: sop.to_string(),
            guard,
        };
        // Dropped when not taken, which also takes a map entry only we made back out.
        held.guard.is_some().then_some(held)
    }

    /// Wait for, then hold, the SOP Instance UID's lock.
    async fn acquire(locks: &Arc<LockMap>, sop: &str) -> InstanceLock {
        let guard = Self::entry(locks, sop).lock_owned().await;
        InstanceLock {
            locks: locks.clone(),
            sop: sop.to_string(),
            guard: Some(guard),
        }
    }
}

impl Drop for InstanceLock {
    fn drop(&mut self) {
        // The guard holds a reference of its own: release it first, then only the map may hold one.
        self.guard.take();
        let mut locks = self.locks.lock().unwrap_or_else(|e| e.into_inner());
        if locks.get(&self.sop).is_some_and(|l| Arc::strong_count(l) == 1) {
            locks.remove(&self.sop);
        }
    }
}

async fn dir_sync(dir: &Path) -> std::io::Result<()> {
    let dir = dir.to_path_buf();
    tokio::task::spawn_blocking(move || fs::File::open(&dir)?.sync_all())
        .await
        .map_err(std::io::Error::other)?
}

/// Whether two Part-10 files hold the same data set bytes (their file meta may differ, e.g. the sender's AE).
async fn same_dataset(a: &Path, b: &Path) -> std::io::Result<bool> {
    let (a, b) = (a.to_path_buf(), b.to_path_buf());
    tokio::task::spawn_blocking(move || Ok(dataset_digest(&a)? == dataset_digest(&b)?))
        .await
        .map_err(std::io::Error::other)?
}

fn dataset_digest(path: &Path) -> std::io::Result<String> {
    let mut f = fs::File::open(path)?;
    let mut head = [0u8; 144];
    f.read_exact(&mut head)?;
    if &head[128..132] != b"DICM" || head[132..136] != [2, 0, 0, 0] {
        return Err(std::io::Error::other(
            "not a Part-10 file with a meta group length",
        ));
    }
    let group_len = u32::from_le_bytes([head[140], head[141], head[142], head[143]]);
    f.seek(SeekFrom::Start(144 + u64::from(group_len)))?;
    digest::digest_of(&mut f)
}

pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

/// Identity and receipt attributes from the first bytes of a Part-10 file (`head`, of a file of `size`
/// bytes); `None` when the head ends before the pixel data does (then read the file).
pub fn instance_identity_from_head(head: &[u8], size: u64) -> Option<Result<InstanceIdentity, StoreError>> {
    /// Notes whether the parser asked for bytes past the end of the head.
    struct EndWatch<'a> {
        rest: &'a [u8],
        ended: bool,
    }
    impl Read for EndWatch<'_> {
        fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
            let n = self.rest.read(buf)?;
            self.ended |= n == 0 && !buf.is_empty();
            Ok(n)
        }
    }
    let whole = head.len() as u64 == size;
    let mut reader = EndWatch {
        rest: head.get(128..).unwrap_or_default(),
        ended: false,
    };
    let parsed = OpenFileOptions::new()
        .read_until(tags::PIXEL_DATA)
        .from_reader(&mut reader);
    if reader.ended && !whole {
        return None;
    }
    Some(
        parsed
            .map_err(|e| StoreError::Decode(e.to_string()))
            .and_then(|obj| instance_identity(&obj)),
    )
}

/// Parse a stored Part-10 file up to the pixel data and read identity and receipt attributes.
pub fn instance_identity_read(path: &Path) -> Result<InstanceIdentity, StoreError> {
    let obj = OpenFileOptions::new()
        .read_until(tags::PIXEL_DATA)
        .open_file(path)
        .map_err(|e| StoreError::Decode(e.to_string()))?;
    instance_identity(&obj)
}

pub fn instance_identity(obj: &InMemDicomObject) -> Result<InstanceIdentity, StoreError> {
    let uid = |tag, keyword: &'static str| -> Result<String, StoreError> {
        let value = obj
            .get(tag)
            .and_then(|e| e.value().primitive().map(|p| p.to_str().trim().to_string()))
            .filter(|v| !v.is_empty())
            .ok_or(StoreError::MissingAttribute(keyword))?;
        uid_check(&value).map_err(|problem| StoreError::BadUid {
            keyword,
            value: value.clone(),
            problem,
        })?;
        Ok(value)
    };
    let sop_class_uid = uid(tags::SOP_CLASS_UID, "SOPClassUID")?;
    let sop_instance_uid = uid(tags::SOP_INSTANCE_UID, "SOPInstanceUID")?;
    let study_instance_uid = uid(tags::STUDY_INSTANCE_UID, "StudyInstanceUID")?;
    let series_instance_uid = uid(tags::SERIES_INSTANCE_UID, "SeriesInstanceUID")?;
    let mut attrs = BTreeMap::new();
    for (keyword, tag) in attr_tags() {
        if let Some(element) = obj.get(*tag) {
            if let Some(p) = element.value().primitive() {
                // PostgreSQL's jsonb refuses \u0000, and NUL is padding in DICOM anyway.
                attrs.insert(keyword.to_string(), p.to_str().trim_end().replace('\0', ""));
            }
        }
    }
    Ok(InstanceIdentity {
        sop_class_uid,
        sop_instance_uid,
        study_instance_uid,
        series_instance_uid,
        attrs,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn contract(name: &str) -> Value {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../tests/contracts")
            .join(name);
        serde_json::from_str(&fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display())))
            .unwrap()
    }

    #[test]
    fn uid_check_matches_contract() {
        let c = contract("uids.json");
        for v in c["valid"].as_array().unwrap() {
            let v = v.as_str().unwrap();
            assert_eq!(uid_check(v), Ok(()), "{v:?} should be valid");
        }
        for v in c["invalid"].as_array().unwrap() {
            let v = v.as_str().unwrap();
            assert!(uid_check(v).is_err(), "{v:?} should be invalid");
        }
    }

    #[test]
    fn relpath_matches_contract() {
        let c = contract("storage_paths.json");
        for case in c["cases"].as_array().unwrap() {
            let got = instance_relpath(
                case["study"].as_str().unwrap(),
                case["series"].as_str().unwrap(),
                case["sop"].as_str().unwrap(),
            )
            .unwrap();
            assert_eq!(got, case["path"].as_str().unwrap());
        }
        for case in c["rejected"].as_array().unwrap() {
            let got = instance_relpath(
                case["study"].as_str().unwrap(),
                case["series"].as_str().unwrap(),
                case["sop"].as_str().unwrap(),
            );
            assert!(matches!(got, Err(StoreError::BadUid { .. })), "{case}");
        }
    }

    #[test]
    fn attr_keywords_match_contract() {
        let c = contract("receipt.json");
        let expected: Vec<&str> = c["attr_keywords"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        assert_eq!(ATTR_KEYWORDS, expected.as_slice());
        // Each keyword has one tag, so none is dropped from the by-tag lookup.
        let looked_up: Vec<&str> = attr_tags().iter().map(|(k, _)| *k).collect();
        assert_eq!(looked_up.as_slice(), ATTR_KEYWORDS);
        assert_eq!(c["table"], "pacs_receipt");
        assert!(c["sources"]
            .as_array()
            .unwrap()
            .iter()
            .any(|s| s == receipt::SOURCE_DIMSE));
        // Every keyword is known to the dictionary, so none is silently never extracted.
        use dicom_core::dictionary::DataDictionary;
        for k in ATTR_KEYWORDS {
            assert!(
                dicom_dictionary_std::StandardDataDictionary.by_name(k).is_some(),
                "{k}"
            );
        }
    }

    #[tokio::test]
    async fn open_removes_only_temp_folders_of_stopped_processes() {
        let root = tempfile::tempdir().unwrap();
        let stale = root.path().join(INCOMING_DIR).join("1-1");
        fs::create_dir_all(&stale).unwrap();
        fs::write(stale.join(LOCK_FILE), b"").unwrap();
        fs::write(stale.join("0.part"), b"half a file").unwrap();
        let db = Db::new("postgres://postgres@127.0.0.1:9/none", 1).unwrap();
        let first = Storage::open(root.path(), OnConflict::Keep, db.clone()).unwrap();
        assert!(!stale.exists(), "a dead process's temp folder is removed");
        fs::write(first.incoming.join("0.part"), b"in flight").unwrap();
        let second = Storage::open(root.path(), OnConflict::Keep, db).unwrap();
        assert!(
            first.incoming.join("0.part").exists(),
            "a live replica's temp files stay"
        );
        assert_ne!(first.incoming, second.incoming);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn dropped_stores_leave_no_temp_file() {
        let root = tempfile::tempdir().unwrap();
        let db = Db::new("postgres://postgres@127.0.0.1:9/none", 1).unwrap();
        let storage = Storage::open(root.path(), OnConflict::Keep, db).unwrap();
        let request = StoreRequest {
            sop_class_uid: "1.2.840.10008.5.1.4.1.1.2".into(),
            sop_instance_uid: "1.2.3".into(),
            transfer_syntax_uid: "1.2.840.10008.1.2.1".into(),
            calling_ae: "MOD".into(),
            called_ae: "NOCTIS".into(),
        };
        for i in 0..50 {
            let mut incoming = storage.store_begin(request.clone()).await.unwrap();
            // Some dropped before their writer even started, some in the middle of the data.
            for _ in 0..(i % 3) {
                incoming.write(vec![1u8; 70_000]).await.unwrap();
            }
            drop(incoming);
        }
        // Writers still running finish in the background.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let left: Vec<_> = fs::read_dir(&storage.incoming)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .filter(|n| n != LOCK_FILE)
            .collect();
        assert!(left.is_empty(), "{left:?}");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn instance_locks_serialize_a_uid_and_leave_no_entry_behind() {
        let root = tempfile::tempdir().unwrap();
        let db = Db::new("postgres://postgres@127.0.0.1:9/none", 1).unwrap();
        let storage = Arc::new(Storage::open(root.path(), OnConflict::Keep, db).unwrap());
        // Stores inside the lock, per UID.
        let inside: Arc<[AtomicU64; 4]> = Arc::new(Default::default());
        let tasks: Vec<_> = (0..40)
            .map(|i| {
                let (storage, inside) = (storage.clone(), inside.clone());
                tokio::spawn(async move {
                    let uid = i % 4;
                    let sop = format!("1.2.{uid}");
                    // As a store takes it: the writer thread tries, the task waits when that failed.
                    let tried = {
                        let (locks, sop) = (storage.locks.clone(), sop.clone());
                        tokio::task::spawn_blocking(move || InstanceLock::try_acquire(&locks, &sop))
                            .await
                            .unwrap()
                    };
                    let _held = match tried {
                        Some(held) => held,
                        None => InstanceLock::acquire(&storage.locks, &sop).await,
                    };
                    assert_eq!(
                        inside[uid].fetch_add(1, Ordering::SeqCst),
                        0,
                        "one store per UID at a time"
                    );
                    tokio::time::sleep(Duration::from_millis(1)).await;
                    inside[uid].fetch_sub(1, Ordering::SeqCst);
                })
            })
            .collect();
        for task in tasks {
            task.await.unwrap();
        }
        // Every store is done: the map is empty (it held one entry per UID ever stored before).
        assert!(storage.locks.lock().unwrap().is_empty());
    }

    #[test]
    fn file_meta_is_readable_part10() {
        let meta = file_meta_bytes(
            "1.2.840.10008.5.1.4.1.1.7",
            "1.2.3.4",
            "1.2.840.10008.1.2",
            "MODALITY",
        );
        assert_eq!(&meta[128..132], b"DICM");
        let mut bytes = meta.clone();
        // An empty data set after the meta: the reader must accept the header we write.
        let obj = OpenFileOptions::new().from_reader(&mut &bytes[128..]);
        let obj = obj.expect("meta parses");
        assert_eq!(obj.meta().media_storage_sop_instance_uid(), "1.2.3.4");
        assert_eq!(obj.meta().transfer_syntax(), "1.2.840.10008.1.2");
        assert_eq!(obj.meta().implementation_class_uid(), IMPLEMENTATION_CLASS_UID);
        bytes.clear();
    }
}
