//! The receipt (outbox) table pacs_receipt, owned by Django (noctis_pro/pacs/models.py, class Receipt;
//! columns pinned by tests/contracts/receipt.json). This module holds the crate's ONLY SQL, and a small
//! connection pool.
//!
//! `digest` is the whole stored Part-10 file's digest, "blake3:<hex>" (digest.rs).

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_postgres::{Client, NoTls, Statement};

use crate::error::ReceiptError;

pub const SOURCE_DIMSE: &str = "dimse";

const FIND_BY_SOP: &str = "SELECT id, path, digest FROM pacs_receipt WHERE sop_instance_uid = $1";

/// Group commit (durability.rs): many receipts in one statement (and one WAL flush). Arrays keep the SQL
/// text fixed.
const INSERT_MANY: &str = "INSERT INTO pacs_receipt (sop_instance_uid, sop_class_uid, study_instance_uid, \
     series_instance_uid, transfer_syntax_uid, path, size_bytes, digest, calling_ae, called_ae, source, attrs) \
     SELECT t.sop, t.class, t.study, t.series, t.ts, t.path, t.size, t.digest, t.calling, t.called, $12, \
     t.attrs::jsonb FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], \
     $7::bigint[], $8::text[], $9::text[], $10::text[], $11::text[]) \
     AS t(sop, class, study, series, ts, path, size, digest, calling, called, attrs) \
     ON CONFLICT (sop_instance_uid) DO NOTHING RETURNING id, sop_instance_uid";

const UPSERT: &str = "INSERT INTO pacs_receipt (sop_instance_uid, sop_class_uid, study_instance_uid, \
     series_instance_uid, transfer_syntax_uid, path, size_bytes, digest, calling_ae, called_ae, source, attrs) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, ($12::text)::jsonb) \
     ON CONFLICT (sop_instance_uid) DO UPDATE SET sop_class_uid = EXCLUDED.sop_class_uid, \
     study_instance_uid = EXCLUDED.study_instance_uid, series_instance_uid = EXCLUDED.series_instance_uid, \
     transfer_syntax_uid = EXCLUDED.transfer_syntax_uid, path = EXCLUDED.path, \
     size_bytes = EXCLUDED.size_bytes, digest = EXCLUDED.digest, calling_ae = EXCLUDED.calling_ae, \
     called_ae = EXCLUDED.called_ae, attrs = EXCLUDED.attrs, received_at = now(), indexed_at = NULL, \
     index_attempts = 0, index_error = '' RETURNING id";

/// A pass's rows taken back before its COMMIT (their file could not be moved into place).
const WITHDRAW: &str = "DELETE FROM pacs_receipt WHERE id = ANY($1)";

const PENDING_IDS: &str = "SELECT id FROM pacs_receipt WHERE indexed_at IS NULL AND source = $1 ORDER BY id";

const PING: &str = "SELECT 1";

/// A receipt about to be written.
#[derive(Debug, Clone)]
pub struct NewReceipt {
    pub sop_instance_uid: String,
    pub sop_class_uid: String,
    pub study_instance_uid: String,
    pub series_instance_uid: String,
    pub transfer_syntax_uid: String,
    /// Relative to STORAGE_ROOT.
    pub path: String,
    pub size_bytes: i64,
    /// "<algorithm>:<hex>" of the whole file (digest.rs).
    pub digest: String,
    pub calling_ae: String,
    pub called_ae: String,
    /// JSON object keyword -> string.
    pub attrs: String,
}

/// The receipt already recorded for a SOP Instance UID.
#[derive(Debug, Clone)]
pub struct ExistingReceipt {
    pub id: i64,
    pub path: String,
    /// "<algorithm>:<hex>" of the whole file (digest.rs).
    pub digest: String,
}

/// A small pool of PostgreSQL connections, opened on demand (so the SCP starts, and reports, while the
/// database is down) and dropped when broken.
#[derive(Clone)]
pub struct Db {
    config: Arc<tokio_postgres::Config>,
    idle: Arc<Mutex<Vec<Conn>>>,
    permits: Arc<Semaphore>,
    timeout: Duration,
}

/// A connection and the statements prepared on it: each statement is parsed once per connection, then
/// every use is one round trip (Bind/Execute) instead of two (Parse/Describe, then Bind/Execute).
struct Conn {
    client: Client,
    statements: HashMap<&'static str, Statement>,
}

pub struct PooledClient {
    conn: Option<Conn>,
    idle: Arc<Mutex<Vec<Conn>>>,
    _permit: OwnedSemaphorePermit,
}

impl std::ops::Deref for PooledClient {
    type Target = Client;
    fn deref(&self) -> &Client {
        &self.conn.as_ref().expect("connection present until drop").client
    }
}

impl PooledClient {
    /// `sql` prepared on this connection (once).
    async fn statement(&mut self, sql: &'static str) -> Result<Statement, ReceiptError> {
        let conn = self.conn.as_mut().expect("connection present until drop");
        if let Some(s) = conn.statements.get(sql) {
            return Ok(s.clone());
        }
        let s = conn.client.prepare(sql).await?;
        conn.statements.insert(sql, s.clone());
        Ok(s)
    }

    /// Forget prepared statements after an error (say the table changed under them): the next use
    /// prepares again.
    fn statements_forget(&mut self) {
        if let Some(conn) = self.conn.as_mut() {
            conn.statements.clear();
        }
    }

    /// Run a prepared statement; an error forgets this connection's statements.
    async fn query_prepared(
        &mut self,
        sql: &'static str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<Vec<tokio_postgres::Row>, ReceiptError> {
        let statement = self.statement(sql).await?;
        let result = self.query(&statement, params).await;
        if result.is_err() {
            self.statements_forget();
        }
        Ok(result?)
    }
}

impl PooledClient {
    /// Close this connection instead of returning it to the pool (say a transaction is still open on it:
    /// closing it makes PostgreSQL roll that back).
    pub(crate) fn discard(&mut self) {
        self.conn = None;
    }
}

impl Drop for PooledClient {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take() {
            if !conn.client.is_closed() {
                if let Ok(mut idle) = self.idle.lock() {
                    idle.push(conn);
                }
            }
        }
    }
}

impl Db {
    /// `url` was checked by config.rs.
    pub fn new(url: &str, size: usize) -> Result<Db, ReceiptError> {
        let mut config =
            tokio_postgres::Config::from_str(url).map_err(|e| ReceiptError::Unavailable(e.to_string()))?;
        config.connect_timeout(Duration::from_secs(5));
        config.application_name("noctis_dicom_scp");
        Ok(Db {
            config: Arc::new(config),
            idle: Arc::new(Mutex::new(Vec::new())),
            permits: Arc::new(Semaphore::new(size.max(1))),
            timeout: Duration::from_secs(10),
        })
    }

    pub async fn get(&self) -> Result<PooledClient, ReceiptError> {
        let permit = tokio::time::timeout(self.timeout, self.permits.clone().acquire_owned())
            .await
            .map_err(|_| ReceiptError::Timeout)?
            .map_err(|e| ReceiptError::Unavailable(e.to_string()))?;
        let reused = {
            let mut idle = self
                .idle
                .lock()
                .map_err(|e| ReceiptError::Unavailable(e.to_string()))?;
            let mut found = None;
            while let Some(c) = idle.pop() {
                if !c.client.is_closed() {
                    found = Some(c);
                    break;
                }
            }
            found
        };
        let conn = match reused {
            Some(c) => c,
            None => {
                let (client, connection) = self
                    .config
                    .connect(NoTls)
                    .await
                    .map_err(|e| ReceiptError::Unavailable(e.to_string()))?;
                tokio::spawn(async move {
                    if let Err(e) = connection.await {
                        tracing::debug!(error = %e, "database connection ended");
                    }
                });
                Conn {
                    client,
                    statements: HashMap::new(),
                }
            }
        };
        Ok(PooledClient {
            conn: Some(conn),
            idle: self.idle.clone(),
            _permit: permit,
        })
    }

    async fn timed<T, F>(&self, f: F) -> Result<T, ReceiptError>
    where
        F: std::future::Future<Output = Result<T, ReceiptError>>,
    {
        tokio::time::timeout(self.timeout, f)
            .await
            .map_err(|_| ReceiptError::Timeout)?
    }
}

pub async fn receipt_find(db: &Db, sop_instance_uid: &str) -> Result<Option<ExistingReceipt>, ReceiptError> {
    db.timed(async {
        let mut client = db.get().await?;
        let rows = client.query_prepared(FIND_BY_SOP, &[&sop_instance_uid]).await?;
        Ok(rows.into_iter().next().map(|r| ExistingReceipt {
            id: r.get(0),
            path: r.get(1),
            digest: r.get(2),
        }))
    })
    .await
}

/// Insert many receipts at once, committed by the same round trip (the statement is its own
/// transaction); returns the ids of those inserted, by SOP Instance UID (a UID already recorded is absent
/// from the map).
pub async fn receipts_insert(db: &Db, rows: &[NewReceipt]) -> Result<HashMap<String, i64>, ReceiptError> {
    let mut batch = receipts_insert_committed(db, rows).await?;
    Ok(std::mem::take(&mut batch.ids))
}

/// Receipts inserted in a transaction that is still open (the durability barrier moves their files into
/// place before it commits; dropped without `commit`, its connection is closed and PostgreSQL rolls the
/// rows back), or already committed (`receipts_insert_committed`).
pub struct ReceiptBatch {
    client: Option<PooledClient>,
    db: Db,
    /// Ids of the rows inserted, by SOP Instance UID (a UID that already had a receipt is absent).
    pub ids: HashMap<String, i64>,
    /// Inserted as a transaction of its own: committed already.
    committed: bool,
}

/// BEGIN and one INSERT of all `rows` (ON CONFLICT DO NOTHING), sent together: one round trip.
pub async fn receipts_insert_open(db: &Db, rows: &[NewReceipt]) -> Result<ReceiptBatch, ReceiptError> {
    receipts_insert_with(db, rows, true).await
}

/// The INSERT of all `rows` as a transaction of its own: once it returns, the rows are committed
/// (PostgreSQL answers an implicit transaction only after its commit record is flushed). For a pass
/// whose files are all durable in place already: one round trip instead of two.
pub async fn receipts_insert_committed(db: &Db, rows: &[NewReceipt]) -> Result<ReceiptBatch, ReceiptError> {
    receipts_insert_with(db, rows, false).await
}

async fn receipts_insert_with(
    db: &Db,
    rows: &[NewReceipt],
    open: bool,
) -> Result<ReceiptBatch, ReceiptError> {
    fn col<T: Clone>(rows: &[NewReceipt], f: impl Fn(&NewReceipt) -> &T) -> Vec<T> {
        rows.iter().map(|r| f(r).clone()).collect()
    }
    let sop = col(rows, |r| &r.sop_instance_uid);
    let class = col(rows, |r| &r.sop_class_uid);
    let study = col(rows, |r| &r.study_instance_uid);
    let series = col(rows, |r| &r.series_instance_uid);
    let ts = col(rows, |r| &r.transfer_syntax_uid);
    let path = col(rows, |r| &r.path);
    let size = col(rows, |r| &r.size_bytes);
    let digest = col(rows, |r| &r.digest);
    let calling = col(rows, |r| &r.calling_ae);
    let called = col(rows, |r| &r.called_ae);
    let attrs = col(rows, |r| &r.attrs);
    db.timed(async {
        let mut client = db.get().await?;
        let statement = match client.statement(INSERT_MANY).await {
            Ok(s) => s,
            Err(e) => {
                client.discard();
                return Err(e);
            }
        };
        let params: [&(dyn tokio_postgres::types::ToSql + Sync); 12] = [
            &sop,
            &class,
            &study,
            &series,
            &ts,
            &path,
            &size,
            &digest,
            &calling,
            &called,
            &attrs,
            &SOURCE_DIMSE,
        ];
        let result = if open {
            // Polled together, the two requests leave in one write (tokio-postgres pipelines them).
            let (begun, inserted) =
                tokio::join!(client.batch_execute("BEGIN"), client.query(&statement, &params));
            begun.and(inserted)
        } else {
            client.query(&statement, &params).await
        };
        match result {
            Ok(inserted) => Ok(ReceiptBatch {
                ids: inserted.iter().map(|r| (r.get(1), r.get(0))).collect(),
                // Committed: the connection goes back to the pool at once.
                client: open.then_some(client),
                db: db.clone(),
                committed: !open,
            }),
            Err(e) => {
                client.statements_forget();
                client.discard();
                Err(e.into())
            }
        }
    })
    .await
}

impl ReceiptBatch {
    /// Take back rows of this batch (still uncommitted).
    pub async fn withdraw(&mut self, ids: &[i64]) -> Result<(), ReceiptError> {
        let db = self.db.clone();
        let Some(client) = self.client.as_mut() else {
            return Err(ReceiptError::Unavailable("receipt batch closed".into()));
        };
        let list = ids.to_vec();
        let result = db
            .timed(async {
                let statement = client.statement(WITHDRAW).await?;
                client.execute(&statement, &[&list]).await?;
                Ok(())
            })
            .await;
        match result {
            Ok(()) => self.ids.retain(|_, id| !ids.contains(id)),
            Err(_) => self.close(),
        }
        result
    }

    /// COMMIT: only after this are the rows durable. An error (a deferred constraint, the database gone,
    /// a timeout) means they are not, as far as anyone may assume.
    pub async fn commit(&mut self) -> Result<(), ReceiptError> {
        if self.committed {
            return Ok(());
        }
        let db = self.db.clone();
        let Some(client) = self.client.as_ref() else {
            return Err(ReceiptError::Unavailable("receipt batch closed".into()));
        };
        let result = db
            .timed(async {
                client.batch_execute("COMMIT").await?;
                Ok(())
            })
            .await;
        match result {
            // Committed: the connection goes back to the pool.
            Ok(()) => {
                self.client = None;
                self.committed = true;
            }
            Err(_) => self.close(),
        }
        result
    }

    fn close(&mut self) {
        if let Some(mut client) = self.client.take() {
            client.statements_forget();
            client.discard();
        }
    }
}

impl Drop for ReceiptBatch {
    fn drop(&mut self) {
        // Never committed: the open transaction must not go back to the pool.
        self.close();
    }
}

/// Insert or replace the receipt of a SOP Instance UID (SCP_ON_CONFLICT=overwrite): indexing starts over.
pub async fn receipt_upsert(db: &Db, r: &NewReceipt) -> Result<i64, ReceiptError> {
    db.timed(async {
        let mut client = db.get().await?;
        let rows = client.query_prepared(UPSERT, &params(r)).await?;
        let row = rows
            .first()
            .ok_or_else(|| ReceiptError::Unavailable("upsert returned no row".into()))?;
        Ok(row.get(0))
    })
    .await
}

/// Receipts written by DIMSE and not yet indexed: what the notifier re-sends after a restart.
pub async fn receipts_pending(db: &Db) -> Result<Vec<i64>, ReceiptError> {
    db.timed(async {
        let client = db.get().await?;
        let rows = client.query(PENDING_IDS, &[&SOURCE_DIMSE]).await?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    })
    .await
}

pub async fn database_ping(db: &Db) -> Result<(), ReceiptError> {
    db.timed(async {
        let client = db.get().await?;
        client.query_one(PING, &[]).await?;
        Ok(())
    })
    .await
}

fn params(r: &NewReceipt) -> [&(dyn tokio_postgres::types::ToSql + Sync); 12] {
    [
        &r.sop_instance_uid,
        &r.sop_class_uid,
        &r.study_instance_uid,
        &r.series_instance_uid,
        &r.transfer_syntax_uid,
        &r.path,
        &r.size_bytes,
        &r.digest,
        &r.calling_ae,
        &r.called_ae,
        &SOURCE_DIMSE,
        &r.attrs,
    ]
}
