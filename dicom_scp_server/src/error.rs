//! Typed errors, one enum per module (thiserror). `anyhow` is used only in main.rs.

use std::io;

/// Why a configuration value was refused. Display is the one line printed at start.
#[derive(Debug, thiserror::Error)]
#[error("configuration error: {name}: {reason}")]
pub struct ConfigError {
    /// The environment variable (or config-file key) at fault.
    pub name: &'static str,
    pub reason: String,
}

/// Why a UID is not acceptable (PS3.5 9.1; tests/contracts/uids.json).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum UidError {
    #[error("missing")]
    Missing,
    #[error("longer than 64 characters")]
    TooLong,
    #[error("not digits and dots")]
    NotDigitsAndDots,
}

/// Failures of the receipt table (receipt.rs).
#[derive(Debug, thiserror::Error)]
pub enum ReceiptError {
    #[error("database unavailable: {0}")]
    Unavailable(String),
    #[error("database query failed: {}", pg_error_text(.0))]
    Query(#[from] tokio_postgres::Error),
    #[error("database timed out")]
    Timeout,
}

/// tokio-postgres displays server errors as just "db error"; the SQLSTATE and message are what help.
fn pg_error_text(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => format!("{} ({})", db.message(), db.code().code()),
        None => e.to_string(),
    }
}

/// Failures of one C-STORE (store.rs). status.rs maps each to a DICOM status.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{context}: {source}")]
    Io {
        context: &'static str,
        #[source]
        source: io::Error,
    },
    #[error("cannot decode data set: {0}")]
    Decode(String),
    #[error("{0} missing")]
    MissingAttribute(&'static str),
    #[error("{keyword} {value:?} is {problem}")]
    BadUid {
        keyword: &'static str,
        value: String,
        problem: UidError,
    },
    #[error("data set SOP Instance UID {dataset:?} differs from the command's {command:?}")]
    InstanceMismatch { command: String, dataset: String },
    #[error("data set SOP Class UID {dataset:?} differs from the command's {command:?}")]
    ClassMismatch { command: String, dataset: String },
    #[error("SOP class {0} not negotiated on this presentation context")]
    SopClassNotSupported(String),
    #[error("receipt: {0}")]
    Receipt(#[from] ReceiptError),
}

impl StoreError {
    pub fn io(context: &'static str) -> impl FnOnce(io::Error) -> StoreError {
        move |source| StoreError::Io { context, source }
    }
}

/// Failures of the association layer (association.rs, dimse.rs).
#[derive(Debug, thiserror::Error)]
pub enum AssociationError {
    #[error("network: {0}")]
    Io(#[from] io::Error),
    #[error("timed out: {0}")]
    Timeout(&'static str),
    #[error("protocol: {0}")]
    Protocol(String),
    #[error("peer closed the connection")]
    Closed,
    #[error("peer aborted the association")]
    Aborted,
}

/// Failures that stop the server at start (server.rs).
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("{what} {port} is already in use")]
    PortInUse { what: &'static str, port: u16 },
    #[error("cannot bind {what} {addr}: {source}")]
    Bind {
        what: &'static str,
        addr: String,
        #[source]
        source: io::Error,
    },
    #[error("database configuration: {0}")]
    Database(String),
    #[error("storage root {path}: {source}")]
    Storage {
        path: String,
        #[source]
        source: io::Error,
    },
}

/// Failures delivering the webhook (notify.rs). Each one means: retry later.
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    #[error("webhook connection failed: {0}")]
    Connect(#[from] io::Error),
    #[error("webhook timed out")]
    Timeout,
    #[error("webhook answered HTTP {0}")]
    Status(u16),
    #[error("webhook answer unreadable: {0}")]
    BadResponse(String),
}

/// Failures of the outgoing C-STORE association to a C-MOVE destination (scu.rs).
#[derive(Debug, thiserror::Error)]
pub enum ScuError {
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        addr: String,
        #[source]
        source: io::Error,
    },
    #[error("association rejected ({0})")]
    Rejected(String),
    #[error("timed out {0}")]
    Timeout(&'static str),
    #[error("{0}")]
    Association(#[from] AssociationError),
}
