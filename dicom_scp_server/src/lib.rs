//! NoctisPro's DICOM SCP: accepts C-ECHO and C-STORE from modalities, stores each instance durably as a
//! Part-10 file under STORAGE_ROOT, records a receipt row in PostgreSQL (the outbox Django indexes), answers
//! success only after both are durable, and notifies Django through a signed webhook.
//!
//! The data path reads top to bottom: server (accept, limits, shutdown) → association (negotiation,
//! PDUs) → dimse (command sets) → store (temp file, validation, fsync) → durability (rename, folder fsync and receipt INSERT, grouped
//! across concurrent stores) → receipt (SQL) → notify
//! (webhook). status maps failures to DICOM statuses; health serves /health and /metrics.

pub mod association;
pub mod config;
pub mod dimse;
pub mod durability;
pub mod error;
pub mod health;
pub mod notify;
pub mod receipt;
pub mod server;
pub mod status;
pub mod store;
