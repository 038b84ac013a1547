//! NoctisPro's DICOM SCP: accepts C-ECHO and C-STORE from modalities, stores each instance durably as a
//! Part-10 file under STORAGE_ROOT, records a receipt row in PostgreSQL (the outbox Django indexes), answers
//! success only after both are durable, and notifies Django through a signed webhook.
//!
//! The data path reads top to bottom: server (accept, limits, shutdown) → association (negotiation,
//! PDUs) → dimse (command sets) → store (temp file, validation, fsync) → durability (rename, folder fsync and receipt INSERT, grouped
//! across concurrent stores) → receipt (SQL) → notify
//! (webhook). status maps failures to DICOM statuses; health serves /health and /metrics.
//!
//! Query/retrieve on the same associations: query_retrieve (Q/R SOP classes, role selection, the running
//! operation and C-CANCEL) → query (C-FIND identifiers → SQL over Django's index) and retrieve (C-MOVE /
//! C-GET sub-operations from the stored files) → scu (DIMSE framing, the association to a move destination).

pub mod association;
pub mod config;
pub mod digest;
pub mod dimse;
pub mod durability;
pub mod error;
pub mod health;
pub mod notify;
pub mod query;
pub mod query_retrieve;
pub mod receipt;
pub mod retrieve;
pub mod scu;
pub mod server;
pub mod status;
pub mod store;
pub mod temp_file;
