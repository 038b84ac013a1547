//! The durability barrier for new instances: stores whose temp file is already fsynced wait here to be
//! moved into place and recorded, in groups. One pass of the barrier, for every store waiting:
//! create missing study/series folders (fsync their parents) → rename into place → fsync each distinct
//! series folder once → ONE receipt INSERT (one PostgreSQL commit) → answer each store.
//!
//! Each store still gets success only after its file, its folder entry and its receipt row are durable;
//! concurrent stores (parallel associations, mostly into the same series folder) share the folder fsync
//! and the commit instead of queueing for their own. A lone store waits for nothing: the pass starts as
//! soon as a store arrives and takes whoever else is waiting by then.
//!
//! Failure leaves nothing half-visible: a file whose folder cannot be fsynced is taken back out, and when
//! the INSERT fails every file of the pass is removed (folders fsynced) and every store of the pass is
//! answered with the error.

use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

use tokio::sync::{mpsc, oneshot};

use crate::error::{ReceiptError, StoreError};
use crate::receipt::{self, Db, NewReceipt};

/// Most stores in one pass (one INSERT).
pub const PASS_MAX: usize = 128;

/// A new instance to move into place and record.
pub struct PlaceRequest {
    /// The fsynced temp file.
    pub temp: PathBuf,
    /// Where it goes (`STORAGE_ROOT/<Study>/<Series>/<SOP>.dcm`).
    pub final_path: PathBuf,
    pub receipt: NewReceipt,
}

/// How a store left the barrier.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Placed {
    /// The new receipt's id; `None` when the SOP Instance UID already had a row (written concurrently).
    pub receipt_id: Option<i64>,
    /// Whether the temp file was renamed (false: the file in place already had this exact content).
    pub renamed: bool,
}

/// A store waiting at the barrier and where its answer goes.
pub type Job = (PlaceRequest, oneshot::Sender<Result<Placed, StoreError>>);

/// Handle to the barrier task.
#[derive(Clone)]
pub struct Barrier {
    tx: mpsc::UnboundedSender<Job>,
}

/// A store whose file is in place (or already was), waiting for its receipt.
pub struct Moved {
    request: PlaceRequest,
    answer: oneshot::Sender<Result<Placed, StoreError>>,
    renamed: bool,
}

impl Barrier {
    /// Start the barrier (inside a tokio runtime): one task moves files into place, another records
    /// receipts, so a pass's renames and folder fsyncs overlap the previous pass's INSERT.
    pub fn start(db: Db) -> Barrier {
        let (tx, mut rx) = mpsc::unbounded_channel::<Job>();
        let (moved_tx, mut moved_rx) = mpsc::unbounded_channel::<Vec<Moved>>();
        tokio::spawn(async move {
            while let Some(first) = rx.recv().await {
                let mut jobs = vec![first];
                while jobs.len() < PASS_MAX {
                    match rx.try_recv() {
                        Ok(job) => jobs.push(job),
                        Err(_) => break,
                    }
                }
                let moved = pass_move(jobs).await;
                if !moved.is_empty() {
                    // The receiver lives as long as this task's sender; a send error cannot happen.
                    let _ = moved_tx.send(moved);
                }
            }
        });
        tokio::spawn(async move {
            while let Some(mut moved) = moved_rx.recv().await {
                while moved.len() < PASS_MAX {
                    match moved_rx.try_recv() {
                        Ok(more) => moved.extend(more),
                        Err(_) => break,
                    }
                }
                pass_record(&db, moved).await;
            }
        });
        Barrier { tx }
    }

    /// Move one instance into place and record it, together with whatever else is waiting.
    pub async fn instance_place(&self, request: PlaceRequest) -> Result<Placed, StoreError> {
        let stopped = || StoreError::Receipt(ReceiptError::Unavailable("durability barrier stopped".into()));
        let (answer, rx) = oneshot::channel();
        self.tx.send((request, answer)).map_err(|_| stopped())?;
        rx.await.map_err(|_| stopped())?
    }
}

/// One whole pass for these stores: move into place, then one INSERT, then answers.
pub async fn barrier_pass(db: &Db, jobs: Vec<Job>) {
    let moved = pass_move(jobs).await;
    if !moved.is_empty() {
        pass_record(db, moved).await;
    }
}

/// Renames and folder fsyncs (blocking pool). Stores whose move failed are answered here.
async fn pass_move(jobs: Vec<Job>) -> Vec<Moved> {
    let t = std::time::Instant::now();
    let moves: Vec<(PathBuf, PathBuf, String)> = jobs
        .iter()
        .map(|(r, _)| (r.temp.clone(), r.final_path.clone(), r.receipt.sha256.clone()))
        .collect();
    let count = moves.len();
    let results = tokio::task::spawn_blocking(move || files_into_place(&moves))
        .await
        .unwrap_or_else(|e| {
            (0..count)
                .map(|_| Err(std::io::Error::other(e.to_string())))
                .collect()
        });
    let mut moved = Vec::with_capacity(count);
    for ((request, answer), result) in jobs.into_iter().zip(results) {
        match result {
            Ok(renamed) => moved.push(Moved {
                request,
                answer,
                renamed,
            }),
            Err(e) => {
                let _ = answer.send(Err(StoreError::Io {
                    context: "move into place",
                    source: e,
                }));
            }
        }
    }
    tracing::debug!(
        stores = count,
        us = t.elapsed().as_micros() as u64,
        "barrier: files in place"
    );
    moved
}

/// One INSERT for all `moved`; on failure their files are removed, then every store is answered.
async fn pass_record(db: &Db, moved: Vec<Moved>) {
    let t = std::time::Instant::now();
    let rows: Vec<NewReceipt> = moved.iter().map(|m| m.request.receipt.clone()).collect();
    match receipt::receipts_insert(db, &rows).await {
        Ok(ids) => {
            for m in moved {
                let receipt_id = ids.get(&m.request.receipt.sop_instance_uid).copied();
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
            let _ = tokio::task::spawn_blocking(move || files_remove(&renamed)).await;
            for m in moved {
                let _ = m.answer.send(Err(StoreError::Receipt(ReceiptError::Unavailable(
                    reason.clone(),
                ))));
            }
        }
    }
    tracing::debug!(
        stores = rows.len(),
        us = t.elapsed().as_micros() as u64,
        "barrier: receipts committed"
    );
}

/// Rename each `(temp, final, sha256)` into place (unless the file there already has this content),
/// then fsync each series folder once. Per move: `Ok(renamed)` or the error; a move whose folder cannot
/// be fsynced is taken back out.
pub fn files_into_place(moves: &[(PathBuf, PathBuf, String)]) -> Vec<std::io::Result<bool>> {
    let mut results: Vec<std::io::Result<bool>> = moves
        .iter()
        .map(|(temp, final_path, sha256)| {
            if file_has_sha256(final_path, sha256) {
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

/// Whether the file at `path` exists with this SHA-256 (hex).
pub fn file_has_sha256(path: &Path, sha256: &str) -> bool {
    fs::File::open(path)
        .and_then(|mut f| crate::store::hash_from(&mut f))
        .is_ok_and(|h| h == sha256)
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
        let a = (temp("a.part", b"a"), series.join("1.dcm"), sha(b"a"));
        let b = (temp("b.part", b"b"), series.join("2.dcm"), sha(b"b"));
        let results = files_into_place(&[a.clone(), b.clone()]);
        assert!(results.iter().all(|r| matches!(r, Ok(true))), "{results:?}");
        assert_eq!(fs::read(&a.1).unwrap(), b"a");
        assert!(!a.0.exists());
        // The same content again: not renamed, the temp file is left to its owner.
        let again = (temp("c.part", b"a"), a.1.clone(), sha(b"a"));
        assert!(matches!(
            files_into_place(std::slice::from_ref(&again))[0],
            Ok(false)
        ));
        assert!(again.0.exists());
        files_remove(&[a.1.clone(), b.1.clone()]);
        assert!(!a.1.exists() && !b.1.exists());
    }

    fn sha(body: &[u8]) -> String {
        use sha2::{Digest, Sha256};
        crate::store::hex(&Sha256::digest(body))
    }
}
