//! The small HTTP side port: GET /health (database and storage answer?) and GET /metrics (Prometheus
//! text). Hand-written HTTP/1.1: two fixed routes need no framework.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::receipt;
use crate::store::Storage;

#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    pub fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

#[derive(Debug, Default)]
pub struct Gauge(AtomicI64);

impl Gauge {
    pub fn set(&self, v: i64) {
        self.0.store(v, Ordering::Relaxed);
    }
    pub fn add(&self, v: i64) {
        self.0.fetch_add(v, Ordering::Relaxed);
    }
    pub fn get(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Counters shown on /metrics.
#[derive(Debug, Default)]
pub struct Metrics {
    pub associations_accepted: Counter,
    pub associations_rejected: Counter,
    pub associations_active: Gauge,
    pub echoes: Counter,
    pub stores_ok: Counter,
    pub stores_failed: Counter,
    pub bytes_received: Counter,
    pub webhook_deliveries: Counter,
    pub webhook_failures: Counter,
    pub notifications_pending: Gauge,
}

impl Metrics {
    pub fn prometheus_text(&self) -> String {
        let mut out = String::new();
        let mut line = |name: &str, kind: &str, help: &str, value: String| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}");
        };
        line(
            "noctis_scp_associations_accepted_total",
            "counter",
            "Associations accepted.",
            self.associations_accepted.get().to_string(),
        );
        line(
            "noctis_scp_associations_rejected_total",
            "counter",
            "Associations rejected (AE title, limit, policy).",
            self.associations_rejected.get().to_string(),
        );
        line(
            "noctis_scp_associations_active",
            "gauge",
            "Associations open now.",
            self.associations_active.get().to_string(),
        );
        line(
            "noctis_scp_echoes_total",
            "counter",
            "C-ECHO requests answered.",
            self.echoes.get().to_string(),
        );
        line(
            "noctis_scp_stores_ok_total",
            "counter",
            "C-STORE requests answered with success.",
            self.stores_ok.get().to_string(),
        );
        line(
            "noctis_scp_stores_failed_total",
            "counter",
            "C-STORE requests answered with a failure status.",
            self.stores_failed.get().to_string(),
        );
        line(
            "noctis_scp_bytes_received_total",
            "counter",
            "Bytes of Part-10 files received by successful C-STOREs.",
            self.bytes_received.get().to_string(),
        );
        line(
            "noctis_scp_webhook_deliveries_total",
            "counter",
            "Webhook batches delivered (2xx).",
            self.webhook_deliveries.get().to_string(),
        );
        line(
            "noctis_scp_webhook_failures_total",
            "counter",
            "Webhook attempts that failed.",
            self.webhook_failures.get().to_string(),
        );
        line(
            "noctis_scp_notifications_pending",
            "gauge",
            "Receipt ids waiting for webhook delivery.",
            self.notifications_pending.get().to_string(),
        );
        out
    }
}

/// The durability barrier's counters: stores / passes is the group commit's mean batch size.
fn barrier_text(out: &mut String, stats: &crate::durability::BarrierStats) {
    use std::sync::atomic::Ordering;
    for (name, help, value) in [
        (
            "noctis_scp_barrier_passes_total",
            "Durability barrier passes (one receipt COMMIT each).",
            stats.passes.load(Ordering::Relaxed),
        ),
        (
            "noctis_scp_barrier_stores_total",
            "New instances recorded by the durability barrier.",
            stats.stores.load(Ordering::Relaxed),
        ),
    ] {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter\n{name} {value}");
    }
}

/// Serve /health and /metrics until `shutdown` turns true.
pub async fn health_serve(
    listener: TcpListener,
    storage: Arc<Storage>,
    metrics: Arc<Metrics>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            _ = shutdown.changed() => return,
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let (storage, metrics) = (storage.clone(), metrics.clone());
                tokio::spawn(async move {
                    let _ = tokio::time::timeout(Duration::from_secs(10), request_handle(stream, &storage, &metrics)).await;
                });
            }
        }
    }
}

async fn request_handle(mut stream: TcpStream, storage: &Storage, metrics: &Metrics) -> std::io::Result<()> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() < 8192 {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
    let head = String::from_utf8_lossy(&buf);
    let mut parts = head.lines().next().unwrap_or("").split_whitespace();
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let path = target.split('?').next().unwrap_or("");
    let (code, content_type, body) = match (method, path) {
        ("GET", "/health") => {
            let (code, body) = health_report(storage).await;
            (code, "application/json", body)
        }
        ("GET", "/metrics") => {
            let mut text = metrics.prometheus_text();
            barrier_text(&mut text, storage.barrier_stats());
            (200, "text/plain; version=0.0.4", text)
        }
        ("GET", _) => (404, "application/json", r#"{"error":"not found"}"#.to_string()),
        _ => (
            405,
            "application/json",
            r#"{"error":"method not allowed"}"#.to_string(),
        ),
    };
    let reason = match code {
        200 => "OK",
        404 => "Not Found",
        405 => "Method Not Allowed",
        _ => "Service Unavailable",
    };
    let response = format!(
        "HTTP/1.1 {code} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(response.as_bytes()).await?;
    stream.shutdown().await
}

/// GET /health (blocking; for the container HEALTHCHECK). Ok for a 200.
pub fn health_probe(addr: std::net::SocketAddr) -> Result<(), String> {
    use std::io::{Read, Write};
    let mut s =
        std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(3)).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(|e| e.to_string())?;
    s.write_all(b"GET /health HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .map_err(|e| e.to_string())?;
    let mut response = String::new();
    s.read_to_string(&mut response).map_err(|e| e.to_string())?;
    if response.starts_with("HTTP/1.1 200") {
        Ok(())
    } else {
        Err(response.split("\r\n\r\n").nth(1).unwrap_or(&response).to_string())
    }
}

/// 200 {"status":"ok","database":"ok","storage":"ok"}, or 503 naming what failed.
pub async fn health_report(storage: &Storage) -> (u16, String) {
    let database =
        match tokio::time::timeout(Duration::from_secs(3), receipt::database_ping(storage.db())).await {
            Ok(Ok(())) => "ok".to_string(),
            Ok(Err(e)) => format!("error: {e}"),
            Err(_) => "error: timed out".to_string(),
        };
    let storage_state = match storage.storage_check().await {
        Ok(()) => "ok".to_string(),
        Err(e) => format!("error: {e}"),
    };
    let ok = database == "ok" && storage_state == "ok";
    let body = serde_json::json!({
        "status": if ok { "ok" } else { "error" },
        "database": database,
        "storage": storage_state,
    });
    (if ok { 200 } else { 503 }, body.to_string())
}
