//! The server: binds the DICOM and HTTP ports, runs the accept loop with the association cap, and shuts
//! down gracefully (stop accepting, let associations finish within the grace period, flush the notifier).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;

use crate::association::{association_reject_busy, association_serve, Services};
use crate::config::Config;
use crate::error::ServerError;
use crate::health::{health_serve, Metrics};
use crate::notify::{notifier_start, Webhook};
use crate::receipt::Db;
use crate::store::Storage;

/// A server whose ports are bound and whose storage is ready; `run` serves until shutdown.
pub struct Bound {
    dicom: TcpListener,
    http: TcpListener,
    services: Arc<Services>,
    /// The DICOM address as a peer on this host reaches it.
    pub dicom_addr: SocketAddr,
    pub http_addr: SocketAddr,
}

async fn listener_bind(what: &'static str, addr: SocketAddr) -> Result<TcpListener, ServerError> {
    TcpListener::bind(addr).await.map_err(|source| {
        if source.kind() == std::io::ErrorKind::AddrInUse {
            ServerError::PortInUse {
                what,
                port: addr.port(),
            }
        } else {
            ServerError::Bind {
                what,
                addr: addr.to_string(),
                source,
            }
        }
    })
}

fn reachable(addr: SocketAddr) -> SocketAddr {
    if addr.ip().is_unspecified() {
        SocketAddr::from(([127, 0, 0, 1], addr.port()))
    } else {
        addr
    }
}

/// Bind both ports, prepare storage and start the notifier. Must run inside a tokio runtime.
pub async fn server_bind(config: Config) -> Result<Bound, ServerError> {
    let dicom = listener_bind(
        "DICOM port",
        SocketAddr::new(config.dicom_bind, config.dicom_port),
    )
    .await?;
    let http = listener_bind(
        "SCP HTTP port",
        SocketAddr::new(config.http_bind, config.http_port),
    )
    .await?;
    let db = Db::new(&config.database_url, 8).map_err(|e| ServerError::Database(e.to_string()))?;
    let storage = Storage::open(&config.storage_root, config.on_conflict, db.clone())
        .map_err(|source| ServerError::Storage {
            path: config.storage_root.display().to_string(),
            source,
        })?
        .direct_io(config.direct_io);
    let metrics = Arc::new(Metrics::default());
    let notifier = notifier_start(
        Webhook {
            url: config.webhook_url.clone(),
            secret: config.webhook_secret.clone(),
        },
        db,
        metrics.clone(),
    );
    let dicom_addr = reachable(dicom.local_addr().map_err(|source| ServerError::Bind {
        what: "DICOM port",
        addr: String::new(),
        source,
    })?);
    let http_addr = reachable(http.local_addr().map_err(|source| ServerError::Bind {
        what: "SCP HTTP port",
        addr: String::new(),
        source,
    })?);
    let qr = crate::query_retrieve::QueryRetrieve::new(&config)
        .map_err(|e| ServerError::Database(e.to_string()))?;
    Ok(Bound {
        dicom,
        http,
        services: Arc::new(Services {
            config: Arc::new(config),
            storage: Arc::new(storage),
            notifier,
            metrics,
            qr,
        }),
        dicom_addr,
        http_addr,
    })
}

impl Bound {
    /// The line a supervisor reads to learn the bound ports.
    pub fn ready_line(&self) -> String {
        format!(
            "NOCTIS_SCP_READY dicom={} http={}",
            self.dicom_addr, self.http_addr
        )
    }

    /// Serve until `shutdown` resolves, then shut down gracefully.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        let Bound {
            dicom,
            http,
            services,
            ..
        } = self;
        let cfg = services.config.clone();
        let (stop_tx, stop_rx) = watch::channel(false);
        let health = tokio::spawn(health_serve(
            http,
            services.storage.clone(),
            services.metrics.clone(),
            stop_rx,
        ));
        let permits = Arc::new(Semaphore::new(cfg.max_associations));
        // Refusals are polite (read the request, answer A-ASSOCIATE-RJ) but bounded: past this, drop.
        let refusals = Arc::new(Semaphore::new(64));
        let mut associations = JoinSet::new();
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                _ = &mut shutdown => break,
                accepted = dicom.accept() => {
                    let (stream, peer) = match accepted {
                        Ok(a) => a,
                        Err(e) => {
                            tracing::warn!(error = %e, "accept failed");
                            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                            continue;
                        }
                    };
                    let _ = stream.set_nodelay(true);
                    match permits.clone().try_acquire_owned() {
                        Ok(permit) => {
                            let services = services.clone();
                            associations.spawn(async move {
                                services.metrics.associations_active.add(1);
                                association_serve(stream, &services).await;
                                services.metrics.associations_active.add(-1);
                                drop(permit);
                            });
                        }
                        Err(_) => {
                            tracing::warn!(%peer, limit = cfg.max_associations, "association limit reached; rejecting (local limit exceeded)");
                            services.metrics.associations_rejected.inc();
                            if let Ok(permit) = refusals.clone().try_acquire_owned() {
                                let artim = cfg.artim_timeout;
                                tokio::spawn(async move {
                                    association_reject_busy(stream, artim).await;
                                    drop(permit);
                                });
                            }
                        }
                    }
                }
                Some(_) = associations.join_next(), if !associations.is_empty() => {}
            }
        }
        drop(dicom);
        tracing::info!(
            active = associations.len(),
            grace_secs = cfg.shutdown_grace.as_secs(),
            "shutting down: no new associations"
        );
        let drained = tokio::time::timeout(cfg.shutdown_grace, async {
            while associations.join_next().await.is_some() {}
        })
        .await;
        if drained.is_err() {
            tracing::warn!(
                left = associations.len(),
                "grace period over; aborting remaining associations"
            );
            associations.abort_all();
            while associations.join_next().await.is_some() {}
        }
        services.notifier.flush(std::time::Duration::from_secs(5)).await;
        let _ = stop_tx.send(true);
        let _ = health.await;
        tracing::info!("shutdown complete");
    }
}
