//! The durability barrier for new instances: stores wait here, in groups (group commit), to have their
//! receipt recorded. A new instance arrives already durable in place (`PlaceRequest::early`: store.rs
//! fsyncs the temp file, renames it to its final path without replacing anything, under its SOP Instance
//! UID's lock, and fsyncs the series folder), so a pass of such stores is ONE receipt INSERT that is its
//! own transaction: one round trip, and the rows are committed when it returns. A file placed early but
//! never committed is a complete file without a receipt, never acknowledged, like one left by a crash
//! between rename and COMMIT.
//!
//! An instance whose path is taken (a resend, a leftover) comes still as a temp file. A pass with any such
//! store goes the careful way: BEGIN + INSERT (which claims the SOP Instance UIDs), rename into place, fsync
//! of the folder, COMMIT.
//!
//! Each store gets success only after its file was fsynced before the rename, its folder entry fsynced
//! after it, and its receipt row committed after both. Up to PASSES_IN_FLIGHT passes run at once; while
//! they do, newly arriving stores queue and then go together in the next pass, so concurrent stores share
//! the statement and the commit. A lone store waits for nothing.
//!
//! A SOP Instance UID that already has a receipt is left alone (its INSERT conflicts): nothing is moved
//! (a file placed early goes back to its temp name), and the store handles it as a known instance
//! (store.rs: duplicate, keep or overwrite).
//!
//! Failure leaves nothing half-visible: a store whose fsync failed never comes here (store.rs); one whose
//! move failed has its row withdrawn before the COMMIT; when the INSERT or the COMMIT fails every file the
//! pass placed is removed (folders fsynced) and every store of the pass is answered with the error. A crash
//! before the commit leaves files without receipts, which were never acknowledged: a resend replaces them
//! (or keeps them, when identical).

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::{mpsc, oneshot, Semaphore};

use crate::error::{ReceiptError, StoreError};
use crate::receipt::{self, Db, NewReceipt};

/// Most stores in one pass (one INSERT, one COMMIT).
pub const PASS_MAX: usize = 128;
/// Passes under way at once (each holds one database connection until its COMMIT). Two: a store that
/// arrives while one pass waits for its COMMIT starts the next at once instead of waiting a whole pass.
/// Over 4 associations one pass in flight grouped 1.2 stores per pass and two 1.0, at the same rate
/// within the noise of this machine (six paired runs).
pub const PASSES_IN_FLIGHT: usize = 2;

/// A new instance to record and move into place.
pub struct PlaceRequest {
    /// The temp file, fsynced (store.rs: the writer thread fsyncs it before the store comes here).
    pub temp: PathBuf,
    /// Where it goes (`STORAGE_ROOT/<Study>/<Series>/<SOP>.dcm`).
    pub final_path: PathBuf,
    pub receipt: NewReceipt,
    /// Already renamed to `final_path` and its folder fsynced (`file_place_early`). The pass removes it
    /// again if the store fails, and renames it back to `temp` if the SOP Instance UID turns out to have a
    /// receipt.
    pub early: bool,
}

/// How a store left the barrier.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Placed {
    /// The new receipt's id; `None` when the SOP Instance UID already had a receipt (then nothing was
    /// moved: the temp file is still the store's).
    pub receipt_id: Option<i64>,
    /// Whether the temp file was renamed (false: not moved, or the file in place already had this content).
    pub renamed: bool,
}

/// A store waiting at the barrier and where its answer goes.
pub type Job = (PlaceRequest, oneshot::Sender<Result<Placed, StoreError>>);

/// Passes run and stores placed (/metrics: stores per pass is the group commit's batch size).
#[derive(Debug, Default)]
pub struct BarrierStats {
    pub passes: AtomicU64,
    pub stores: AtomicU64,
}

/// Handle to the barrier task.
#[derive(Clone)]
pub struct Barrier {
    tx: mpsc::UnboundedSender<Job>,
    stats: Arc<BarrierStats>,
}

/// A store whose file is in place (or already was), waiting for the COMMIT.
struct Moved {
    request: PlaceRequest,
    answer: oneshot::Sender<Result<Placed, StoreError>>,
    renamed: bool,
}

impl Barrier {
    /// Start the barrier (inside a tokio runtime).
    pub fn start(db: Db) -> Barrier {
        let (tx, mut rx) = mpsc::unbounded_channel::<Job>();
        let stats = Arc::new(BarrierStats::default());
        let counts = stats.clone();
        tokio::spawn(async move {
            let slots = Arc::new(Semaphore::new(PASSES_IN_FLIGHT));
            while let Some(first) = rx.recv().await {
                // While every slot is busy, stores queue up: they become the next pass together.
                let Ok(slot) = slots.clone().acquire_owned().await else {
                    return;
                };
                let mut jobs = vec![first];
                while jobs.len() < PASS_MAX {
                    match rx.try_recv() {
                        Ok(job) => jobs.push(job),
                        Err(_) => break,
                    }
                }
                counts.passes.fetch_add(1, Ordering::Relaxed);
                counts.stores.fetch_add(jobs.len() as u64, Ordering::Relaxed);
                let db = db.clone();
                tokio::spawn(async move {
                    barrier_pass(&db, jobs).await;
                    drop(slot);
                });
            }
        });
        Barrier { tx, stats }
    }

    /// Record one instance and move it into place, together with whatever else is waiting.
    pub async fn instance_place(&self, request: PlaceRequest) -> Result<Placed, StoreError> {
        let stopped = || StoreError::Receipt(ReceiptError::Unavailable("durability barrier stopped".into()));
        let (answer, rx) = oneshot::channel();
        self.tx.send((request, answer)).map_err(|_| stopped())?;
        rx.await.map_err(|_| stopped())?
    }

    pub fn stats(&self) -> &BarrierStats {
        &self.stats
    }
}

fn unavailable(reason: &str) -> StoreError {
    StoreError::Receipt(ReceiptError::Unavailable(reason.to_string()))
}

/// One whole pass for these stores (their files already fsynced): INSERT, move the late ones into place,
/// COMMIT, then the answers. A pass of early stores only (the usual case) has nothing left to do
/// but record the rows: its INSERT is a transaction of its own, one round trip.
pub async fn barrier_pass(db: &Db, pass: Vec<Job>) {
    let t = Instant::now();
    let count = pass.len();
    let rows: Vec<NewReceipt> = pass.iter().map(|(r, _)| r.receipt.clone()).collect();
    let all_early = pass.iter().all(|(r, _)| r.early);
    let opened = if all_early {
        receipt::receipts_insert_committed(db, &rows).await
    } else {
        receipt::receipts_insert_open(db, &rows).await
    };
    let opened_us = t.elapsed().as_micros() as u64;
    let mut batch = match opened {
        Ok(batch) => batch,
        Err(e) => {
            // Late stores' temp files stay theirs (removed when they fail); early ones are taken out.
            let reason = e.to_string();
            let early: Vec<PathBuf> = pass
                .iter()
                .filter(|(r, _)| r.early)
                .map(|(r, _)| r.final_path.clone())
                .collect();
            files_remove_blocking(early).await;
            for (_, answer) in pass {
                let _ = answer.send(Err(unavailable(&reason)));
            }
            return;
        }
    };

    let mut withdraw: Vec<i64> = vec![];
    let mut to_return: Vec<Job> = vec![];
    let mut to_move: Vec<Job> = Vec::with_capacity(count);
    let mut moved = Vec::with_capacity(count);
    for (request, answer) in pass {
        let id = batch.ids.get(&request.receipt.sop_instance_uid).copied();
        match (id, request.early) {
            // Known SOP Instance UID: not ours to place; the store decides (duplicate, keep, overwrite).
            (None, true) => to_return.push((request, answer)),
            (None, false) => {
                let _ = answer.send(Ok(Placed {
                    receipt_id: None,
                    renamed: false,
                }));
            }
            (Some(_), true) => moved.push(Moved {
                request,
                answer,
                renamed: true,
            }),
            (Some(_), false) => to_move.push((request, answer)),
        }
    }
    if !to_return.is_empty() {
        let moves: Vec<(PathBuf, PathBuf)> = to_return
            .iter()
            .map(|(r, _)| (r.final_path.clone(), r.temp.clone()))
            .collect();
        let returned = tokio::task::spawn_blocking(move || {
            moves
                .iter()
                .map(|(final_path, temp)| fs::rename(final_path, temp).map_err(|e| e.to_string()))
                .collect::<Vec<_>>()
        })
        .await
        .unwrap_or_default();
        for (i, (request, answer)) in to_return.into_iter().enumerate() {
            let answer_with = match returned.get(i) {
                Some(Ok(())) => Ok(Placed {
                    receipt_id: None,
                    renamed: false,
                }),
                problem => {
                    let reason = problem.and_then(|r| r.clone().err()).unwrap_or_default();
                    files_remove_blocking(vec![request.final_path]).await;
                    Err(StoreError::Io {
                        context: "move back from place",
                        source: std::io::Error::other(reason),
                    })
                }
            };
            let _ = answer.send(answer_with);
        }
    }

    if !to_move.is_empty() {
        let moves: Vec<(PathBuf, PathBuf, String)> = to_move
            .iter()
            .map(|(r, _)| (r.temp.clone(), r.final_path.clone(), r.receipt.digest.clone()))
            .collect();
        let n = moves.len();
        let results = tokio::task::spawn_blocking(move || files_into_place(&moves))
            .await
            .unwrap_or_else(|e| {
                (0..n)
                    .map(|_| Err(std::io::Error::other(e.to_string())))
                    .collect()
            });
        for ((request, answer), result) in to_move.into_iter().zip(results) {
            match result {
                Ok(renamed) => moved.push(Moved {
                    request,
                    answer,
                    renamed,
                }),
                Err(e) => {
                    withdraw.extend(batch.ids.get(&request.receipt.sop_instance_uid).copied());
                    let _ = answer.send(Err(StoreError::Io {
                        context: "move into place",
                        source: e,
                    }));
                }
            }
        }
    }

    let moved_us = t.elapsed().as_micros() as u64;
    let mut committed = Ok(());
    if !withdraw.is_empty() {
        committed = batch.withdraw(&withdraw).await;
    }
    if committed.is_ok() {
        committed = batch.commit().await;
    }
    match committed {
        Ok(()) => {
            for m in moved {
                let receipt_id = batch.ids.get(&m.request.receipt.sop_instance_uid).copied();
                let _ = m.answer.send(Ok(Placed {
                    receipt_id,
                    renamed: m.renamed,
                }));
            }
        }
        Err(e) => {
            let reason = e.to_string();
            let renamed: Vec<PathBuf> = moved
                .iter()
                .filter(|m| m.renamed)
                .map(|m| m.request.final_path.clone())
                .collect();
            // No receipt, no file: take back every file of the pass before anyone hears of it.
            files_remove_blocking(renamed).await;
            for m in moved {
                let _ = m.answer.send(Err(unavailable(&reason)));
            }
        }
    }
    tracing::debug!(
        stores = count,
        opened_us,
        moved_us,
        us = t.elapsed().as_micros() as u64,
        "barrier pass committed"
    );
}

async fn files_remove_blocking(paths: Vec<PathBuf>) {
    if paths.is_empty() {
        return;
    }
    let _ = tokio::task::spawn_blocking(move || files_remove(&paths)).await;
}

/// Rename a freshly written (and fsynced) temp file to its final path unless something is there already
/// (then `Ok(false)`, and the temp file stays: the barrier places it the careful way), and fsync the
/// series folder. Creates the study and series folders first. Only under the SOP Instance UID's lock
/// (store.rs). A folder that cannot be fsynced takes the file out again: it was never acknowledged.
pub fn file_place_early(temp: &Path, final_path: &Path) -> std::io::Result<bool> {
    folders_create(final_path)?;
    match rename_noreplace(temp, final_path) {
        Ok(()) => {
            let folder = final_path.parent().expect("relpath has folders");
            if let Err(e) = dir_sync(folder) {
                let _ = fs::remove_file(final_path);
                return Err(std::io::Error::new(e.kind(), format!("fsync series folder: {e}")));
            }
            Ok(true)
        }
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
        // A file system without RENAME_NOREPLACE: the careful way for every instance.
        Err(e)
            if matches!(
                e.raw_os_error(),
                Some(libc::EINVAL) | Some(libc::ENOSYS) | Some(libc::EOPNOTSUPP)
            ) =>
        {
            Ok(false)
        }
        Err(e) => Err(e),
    }
}

/// rename(2) that fails with EEXIST instead of replacing (Linux renameat2 RENAME_NOREPLACE).
fn rename_noreplace(from: &Path, to: &Path) -> std::io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        use std::ffi::CString;
        use std::os::unix::ffi::OsStrExt;
        let from = CString::new(from.as_os_str().as_bytes()).map_err(std::io::Error::other)?;
        let to = CString::new(to.as_os_str().as_bytes()).map_err(std::io::Error::other)?;
        // SAFETY: both are NUL-terminated strings that outlive the call.
        let rc = unsafe {
            libc::renameat2(
                libc::AT_FDCWD,
                from.as_ptr(),
                libc::AT_FDCWD,
                to.as_ptr(),
                libc::RENAME_NOREPLACE,
            )
        };
        if rc == 0 {
            Ok(())
        } else {
            Err(std::io::Error::last_os_error())
        }
    }
    #[cfg(not(target_os = "linux"))]
    {
        let _ = (from, to);
        Err(std::io::Error::from_raw_os_error(libc::ENOSYS))
    }
}

/// Rename each `(temp, final, digest)` into place (unless the file there already has this content),
/// then fsync each series folder once. Per move: `Ok(renamed)` or the error; a move whose folder cannot
/// be fsynced is taken back out.
pub fn files_into_place(moves: &[(PathBuf, PathBuf, String)]) -> Vec<std::io::Result<bool>> {
    let mut results: Vec<std::io::Result<bool>> = moves
        .iter()
        .map(|(temp, final_path, digest)| {
            if crate::digest::file_has_digest(final_path, digest) {
                return Ok(false);
            }
            folders_create(final_path)?;
            fs::rename(temp, final_path)?;
            Ok(true)
        })
        .collect();
    let folders: BTreeSet<&Path> = moves
        .iter()
        .zip(&results)
        .filter(|(_, r)| matches!(r, Ok(true)))
        .filter_map(|((_, final_path, _), _)| final_path.parent())
        .collect();
    for folder in folders {
        if let Err(e) = dir_sync(folder) {
            for ((_, final_path, _), result) in moves.iter().zip(results.iter_mut()) {
                if matches!(result, Ok(true)) && final_path.parent() == Some(folder) {
                    // Not durable, so never acknowledged: out again rather than half-visible.
                    let _ = fs::remove_file(final_path);
                    *result = Err(std::io::Error::new(e.kind(), format!("fsync series folder: {e}")));
                }
            }
        }
    }
    results
}

/// Remove files and fsync their folders (each once).
pub fn files_remove(paths: &[PathBuf]) {
    let mut folders = BTreeSet::new();
    for path in paths {
        if let Err(e) = fs::remove_file(path) {
            tracing::error!(path = %path.display(), error = %e, "cannot remove file after failed receipt");
            continue;
        }
        if let Some(parent) = path.parent() {
            folders.insert(parent.to_path_buf());
        }
    }
    for folder in folders {
        let _ = dir_sync(&folder);
    }
}

/// Create the study and series folders of `final_path` if missing, fsyncing the parent of each new one.
pub fn folders_create(final_path: &Path) -> std::io::Result<()> {
    let series_dir = final_path.parent().expect("relpath has folders");
    let study_dir = series_dir.parent().expect("relpath has folders");
    for dir in [study_dir, series_dir] {
        match fs::create_dir(dir) {
            Ok(()) => dir_sync(dir.parent().expect("folders have parents"))?,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

pub fn dir_sync(dir: &Path) -> std::io::Result<()> {
    fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn moves_share_the_folder_fsync_and_identical_files_stay() {
        let root = tempfile::tempdir().unwrap();
        let temp = |name: &str, body: &[u8]| {
            let p = root.path().join(name);
            fs::write(&p, body).unwrap();
            p
        };
        let series = root.path().join("1.2/1.2.3");
        let a = (temp("a.part", b"a"), series.join("1.dcm"), digest(b"a"));
        let b = (temp("b.part", b"b"), series.join("2.dcm"), digest(b"b"));
        let results = files_into_place(&[a.clone(), b.clone()]);
        assert!(results.iter().all(|r| matches!(r, Ok(true))), "{results:?}");
        assert_eq!(fs::read(&a.1).unwrap(), b"a");
        assert!(!a.0.exists());
        // The same content again: not renamed, the temp file is left to its owner.
        let again = (temp("c.part", b"a"), a.1.clone(), digest(b"a"));
        assert!(matches!(
            files_into_place(std::slice::from_ref(&again))[0],
            Ok(false)
        ));
        assert!(again.0.exists());
        files_remove(&[a.1.clone(), b.1.clone()]);
        assert!(!a.1.exists() && !b.1.exists());
    }

    fn digest(body: &[u8]) -> String {
        crate::digest::digest_of(&mut &body[..]).unwrap()
    }
}
