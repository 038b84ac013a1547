//! Wiring only: read the configuration, start logging, bind, print the ready line, serve until SIGTERM
//! or SIGINT.

use std::io::{IsTerminal, Write};
use std::process::ExitCode;

use anyhow::Context;
use dicom_scp_server::config::Config;
use dicom_scp_server::server;

fn main() -> ExitCode {
    let healthcheck = std::env::args().nth(1).as_deref() == Some("healthcheck");
    let config = match Config::from_env() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(2);
        }
    };
    if healthcheck {
        // `dicom_scp_server healthcheck`: the container's HEALTHCHECK, no curl needed.
        let ip = if config.http_bind.is_unspecified() {
            [127, 0, 0, 1].into()
        } else {
            config.http_bind
        };
        return match dicom_scp_server::health::health_probe(std::net::SocketAddr::new(ip, config.http_port)) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("unhealthy: {e}");
                ExitCode::from(1)
            }
        };
    }
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    match run(config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // One plain line naming what failed, e.g. "DICOM port 11112 is already in use".
            eprintln!("{e:#}");
            ExitCode::from(1)
        }
    }
}

fn run(config: Config) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Runtime::new().context("cannot start the async runtime")?;
    runtime.block_on(async {
        let bound = server::server_bind(config).await?;
        tracing::info!(dicom = %bound.dicom_addr, http = %bound.http_addr, "NoctisPro DICOM SCP ready");
        let mut stdout = std::io::stdout();
        writeln!(stdout, "{}", bound.ready_line())?;
        stdout.flush()?;
        bound.run(shutdown_signal()).await;
        Ok(())
    })
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received"),
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received"),
    }
}
