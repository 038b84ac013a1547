//! Test harness: starts the real binary on 127.0.0.1:0 with a temp STORAGE_ROOT, reads its ready line,
//! generates DICOM files with dicom-object, drives dcmtk's storescu/echoscu, and reads pacs_receipt.

#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use dicom_core::{DataElement, PrimitiveValue, VR};
use dicom_dictionary_std::tags;
use dicom_object::{FileMetaTableBuilder, InMemDicomObject};

pub const CT_IMAGE_STORAGE: &str = "1.2.840.10008.5.1.4.1.1.2";
pub const EXPLICIT_VR_LE: &str = "1.2.840.10008.1.2.1";
pub const IMPLICIT_VR_LE: &str = "1.2.840.10008.1.2";
pub const SECRET: &str = "test-webhook-secret";
/// Nothing listens here (port 9 is discard; unused on test machines): a database or webhook that is down.
pub const CLOSED_DB_URL: &str = "postgres://postgres@127.0.0.1:9/none";
pub const CLOSED_WEBHOOK: &str = "http://127.0.0.1:9/api/dicom/received/";

/// The database migrated by Django. DB tests fail (never skip) without it.
pub fn db_url() -> String {
    std::env::var("NOCTIS_TEST_DATABASE_URL").unwrap_or_else(|_| {
        panic!(
            "NOCTIS_TEST_DATABASE_URL is not set: this test needs a PostgreSQL database migrated by Django \
             (e.g. createdb scp_test && DATABASE_URL=postgres://postgres@127.0.0.1:5432/scp_test \
             python manage.py migrate; `make test` does this)"
        )
    })
}

/// A UID no other test (or run) uses.
pub fn unique_uid() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_nanos();
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("2.25.{}{:05}{:03}", nanos, std::process::id() % 100_000, n % 1000)
}

pub struct Scp {
    child: Child,
    pub dicom: SocketAddr,
    pub http: SocketAddr,
    pub storage: PathBuf,
    pub log: PathBuf,
    _dir: tempfile::TempDir,
}

pub struct ScpOptions {
    pub database_url: String,
    pub webhook_url: String,
    pub env: Vec<(String, String)>,
}

impl ScpOptions {
    pub fn new(database_url: &str) -> ScpOptions {
        ScpOptions {
            database_url: database_url.into(),
            webhook_url: CLOSED_WEBHOOK.into(),
            env: vec![],
        }
    }
    pub fn webhook(mut self, url: &str) -> Self {
        self.webhook_url = url.into();
        self
    }
    pub fn env(mut self, k: &str, v: &str) -> Self {
        self.env.push((k.into(), v.into()));
        self
    }
}

pub fn scp_command(opts: &ScpOptions, storage: &Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_dicom_scp_server"));
    cmd.env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("DICOM_PORT", "0")
        .env("DICOM_BIND_ADDRESS", "127.0.0.1")
        .env("SCP_HTTP_PORT", "0")
        .env("DICOM_AE_TITLE", "NOCTIS")
        .env("STORAGE_ROOT", storage)
        .env("DATABASE_URL", &opts.database_url)
        .env("DJANGO_WEBHOOK_URL", &opts.webhook_url)
        .env("WEBHOOK_SECRET", SECRET)
        .env("SCP_SHUTDOWN_GRACE_SECS", "5")
        .env("RUST_LOG", "info");
    for (k, v) in &opts.env {
        cmd.env(k, v);
    }
    cmd
}

impl Scp {
    pub fn start(opts: ScpOptions) -> Scp {
        let dir = tempfile::tempdir().unwrap();
        let storage = dir.path().join("storage");
        let log = dir.path().join("scp.log");
        let mut child = scp_command(&opts, &storage)
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("start dicom_scp_server");
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let line = rx.recv_timeout(Duration::from_secs(30)).unwrap_or_else(|_| {
            panic!(
                "no ready line; log:\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            )
        });
        let (dicom, http) = parse_ready(&line).unwrap_or_else(|| panic!("bad ready line {line:?}"));
        Scp {
            child,
            dicom,
            http,
            storage,
            log,
            _dir: dir,
        }
    }

    pub fn port(&self) -> String {
        self.dicom.port().to_string()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM, then the exit code.
    pub fn terminate(mut self) -> Option<i32> {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status.code();
            }
            assert!(Instant::now() < deadline, "SCP did not stop after SIGTERM");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Every regular file under STORAGE_ROOT outside `.incoming`.
    pub fn stored_files(&self) -> Vec<PathBuf> {
        files_under(&self.storage)
            .into_iter()
            .filter(|p| !p.starts_with(self.storage.join(".incoming")))
            .collect()
    }

    /// Temp files left in `.incoming` (the per-process lock file aside).
    pub fn incoming_files(&self) -> Vec<PathBuf> {
        files_under(&self.storage.join(".incoming"))
            .into_iter()
            .filter(|p| p.file_name().is_some_and(|n| n != ".lock"))
            .collect()
    }
}

impl Drop for Scp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn parse_ready(line: &str) -> Option<(SocketAddr, SocketAddr)> {
    let rest = line.strip_prefix("NOCTIS_SCP_READY dicom=")?;
    let (dicom, http) = rest.split_once(" http=")?;
    Some((dicom.parse().ok()?, http.parse().ok()?))
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = vec![];
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(files_under(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}

/// What a generated instance carries.
#[derive(Clone, Debug)]
pub struct Instance {
    pub sop_class: String,
    pub sop_instance: Option<String>,
    pub study: String,
    pub series: String,
    pub patient_name: String,
    pub transfer_syntax: String,
    /// Rows = Columns of the 16-bit image.
    pub side: u16,
}

impl Instance {
    pub fn ct() -> Instance {
        Instance {
            sop_class: CT_IMAGE_STORAGE.into(),
            sop_instance: Some(unique_uid()),
            study: unique_uid(),
            series: unique_uid(),
            patient_name: "Doe^Jane".into(),
            transfer_syntax: EXPLICIT_VR_LE.into(),
            side: 4,
        }
    }

    pub fn sop(&self) -> &str {
        self.sop_instance.as_deref().unwrap()
    }

    pub fn relpath(&self) -> String {
        format!("{}/{}/{}.dcm", self.study, self.series, self.sop())
    }

    pub fn dataset(&self) -> InMemDicomObject {
        let mut obj = InMemDicomObject::new_empty();
        let mut put = |tag, vr, v: PrimitiveValue| {
            obj.put(DataElement::new(tag, vr, v));
        };
        put(tags::SOP_CLASS_UID, VR::UI, self.sop_class.as_str().into());
        if let Some(sop) = &self.sop_instance {
            put(tags::SOP_INSTANCE_UID, VR::UI, sop.as_str().into());
        }
        put(tags::STUDY_INSTANCE_UID, VR::UI, self.study.as_str().into());
        put(tags::SERIES_INSTANCE_UID, VR::UI, self.series.as_str().into());
        put(tags::PATIENT_NAME, VR::PN, self.patient_name.as_str().into());
        put(tags::PATIENT_ID, VR::LO, "PID-1".into());
        put(tags::MODALITY, VR::CS, "CT".into());
        put(tags::STUDY_DATE, VR::DA, "20260101".into());
        put(
            tags::IMAGE_TYPE,
            VR::CS,
            PrimitiveValue::Strs(
                ["ORIGINAL", "PRIMARY", "AXIAL"]
                    .map(String::from)
                    .into_iter()
                    .collect(),
            ),
        );
        put(
            tags::PIXEL_SPACING,
            VR::DS,
            PrimitiveValue::Strs(["0.5", "0.5"].map(String::from).into_iter().collect()),
        );
        put(tags::INSTANCE_NUMBER, VR::IS, "7".into());
        put(tags::SAMPLES_PER_PIXEL, VR::US, PrimitiveValue::from(1u16));
        put(tags::PHOTOMETRIC_INTERPRETATION, VR::CS, "MONOCHROME2".into());
        put(tags::ROWS, VR::US, PrimitiveValue::from(self.side));
        put(tags::COLUMNS, VR::US, PrimitiveValue::from(self.side));
        put(tags::BITS_ALLOCATED, VR::US, PrimitiveValue::from(16u16));
        put(tags::BITS_STORED, VR::US, PrimitiveValue::from(16u16));
        put(tags::HIGH_BIT, VR::US, PrimitiveValue::from(15u16));
        put(tags::PIXEL_REPRESENTATION, VR::US, PrimitiveValue::from(0u16));
        put(
            tags::PIXEL_DATA,
            VR::OW,
            PrimitiveValue::U16(
                (0..u32::from(self.side) * u32::from(self.side))
                    .map(|i| i as u16)
                    .collect(),
            ),
        );
        obj
    }

    /// Write as a Part-10 file (meta names a SOP instance even when the data set lacks one).
    pub fn write(&self, dir: &Path) -> PathBuf {
        self.write_dataset(dir, self.dataset())
    }

    /// Write `dataset` (this instance's, changed) as a Part-10 file with this instance's file meta.
    pub fn write_dataset(&self, dir: &Path, dataset: InMemDicomObject) -> PathBuf {
        let meta_sop = self.sop_instance.clone().unwrap_or_else(unique_uid);
        let meta = FileMetaTableBuilder::new()
            .media_storage_sop_class_uid(self.sop_class.as_str())
            .media_storage_sop_instance_uid(meta_sop.as_str())
            .transfer_syntax(self.transfer_syntax.as_str())
            .implementation_class_uid("2.25.1")
            .build()
            .unwrap();
        let path = dir.join(format!("{}.dcm", unique_uid()));
        dataset.with_exact_meta(meta).write_to_file(&path).unwrap();
        path
    }
}

/// The data set part of a Part-10 file (what follows the file meta group).
pub fn dataset_bytes(path: &Path) -> Vec<u8> {
    let bytes = std::fs::read(path).unwrap();
    assert_eq!(&bytes[128..132], b"DICM");
    let group_len = u32::from_le_bytes(bytes[140..144].try_into().unwrap()) as usize;
    bytes[144 + group_len..].to_vec()
}

/// The receipt's digest of a file with these bytes (computed here, not by the crate's own code).
pub fn file_digest(bytes: &[u8]) -> String {
    format!("blake3:{}", blake3::hash(bytes).to_hex())
}

pub fn dcmtk(tool: &str, args: &[&str]) -> Output {
    Command::new(tool)
        .args(args)
        .env("TCP_NODELAY", "1")
        .output()
        .unwrap_or_else(|e| panic!("{tool} (dcmtk) must be installed: {e}"))
}

pub fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// storescu -v: returns (exit code, output, statuses of the store responses as dcmtk printed them).
pub fn storescu(scp: &Scp, files: &[&Path]) -> (i32, String) {
    storescu_with(scp, &[], files)
}

/// storescu with extra options (e.g. `-xi`: propose Implicit VR LE only, so nothing is converted).
pub fn storescu_with(scp: &Scp, options: &[&str], files: &[&Path]) -> (i32, String) {
    let port = scp.port();
    let mut args = vec!["-v", "--no-halt", "-aet", "TESTSCU", "-aec", "NOCTIS"];
    args.extend_from_slice(options);
    args.extend(["127.0.0.1", port.as_str()]);
    let paths: Vec<String> = files.iter().map(|p| p.display().to_string()).collect();
    args.extend(paths.iter().map(|s| s.as_str()));
    let out = dcmtk("storescu", &args);
    (out.status.code().unwrap_or(-1), text(&out))
}

/// The store responses dcmtk reported, in order ("Success", "Error: ...", ...).
pub fn store_responses(output: &str) -> Vec<String> {
    output
        .lines()
        .filter_map(|l| {
            l.split_once("Received Store Response (")
                .map(|(_, r)| r.trim_end_matches(')').to_string())
        })
        .collect()
}

/// One receipt row, as text for easy comparison.
#[derive(Debug, Clone)]
pub struct ReceiptRow {
    pub id: i64,
    pub cols: HashMap<String, Option<String>>,
    pub attrs: serde_json::Value,
}

pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Run SQL as the test database's user.
pub fn db_execute(sql: &str) {
    runtime().block_on(async {
        let (client, conn) = tokio_postgres::connect(&db_url(), tokio_postgres::NoTls)
            .await
            .expect("connect test DB");
        tokio::spawn(conn);
        client.batch_execute(sql).await.unwrap();
    })
}

pub fn receipts_for(sop: &str) -> Vec<ReceiptRow> {
    runtime().block_on(async {
        let (client, conn) = tokio_postgres::connect(&db_url(), tokio_postgres::NoTls)
            .await
            .expect("connect test DB");
        tokio::spawn(conn);
        let rows = client
            .query(
                "SELECT id, sop_instance_uid, sop_class_uid, study_instance_uid, series_instance_uid, \
                 transfer_syntax_uid, path, size_bytes::text, digest, calling_ae, called_ae, source, \
                 attrs::text, received_at::text, indexed_at::text, index_attempts::text, index_error \
                 FROM pacs_receipt WHERE sop_instance_uid = $1",
                &[&sop],
            )
            .await
            .unwrap();
        rows.iter()
            .map(|r| {
                let mut cols = HashMap::new();
                for (i, c) in r.columns().iter().enumerate().skip(1) {
                    cols.insert(c.name().to_string(), r.get::<_, Option<String>>(i));
                }
                let attrs = serde_json::from_str(cols["attrs"].as_deref().unwrap()).unwrap();
                ReceiptRow {
                    id: r.get(0),
                    cols,
                    attrs,
                }
            })
            .collect()
    })
}

pub fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").unwrap();
    let mut resp = String::new();
    s.read_to_string(&mut resp).unwrap();
    let code = resp.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = resp
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (code, body)
}

/// A request the fake Django webhook received.
#[derive(Debug, Clone)]
pub struct Hook {
    pub code: u16,
    pub headers: HashMap<String, String>,
    pub body: String,
}

/// A tiny HTTP server standing in for Django's webhook; answers the scripted codes, then 200.
pub struct FakeDjango {
    pub url: String,
    pub received: Arc<Mutex<Vec<Hook>>>,
}

impl FakeDjango {
    pub fn start(script: Vec<u16>) -> FakeDjango {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/api/dicom/received/", listener.local_addr().unwrap());
        let received = Arc::new(Mutex::new(Vec::new()));
        let rec = received.clone();
        std::thread::spawn(move || {
            let mut script = script.into_iter();
            for stream in listener.incoming() {
                let Ok(mut s) = stream else { continue };
                s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                let mut reader = BufReader::new(s.try_clone().unwrap());
                let mut line = String::new();
                if reader.read_line(&mut line).is_err() {
                    continue;
                }
                let mut headers = HashMap::new();
                loop {
                    let mut h = String::new();
                    reader.read_line(&mut h).unwrap();
                    let h = h.trim_end();
                    if h.is_empty() {
                        break;
                    }
                    let (k, v) = h.split_once(':').unwrap();
                    headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
                }
                let len: usize = headers
                    .get("content-length")
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0);
                let mut body = vec![0u8; len];
                reader.read_exact(&mut body).unwrap();
                let code = script.next().unwrap_or(200);
                rec.lock().unwrap().push(Hook {
                    code,
                    headers,
                    body: String::from_utf8(body).unwrap(),
                });
                let _ = write!(
                    s,
                    "HTTP/1.1 {code} X\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{{}}"
                );
            }
        });
        FakeDjango { url, received }
    }

    /// Wait until every id was delivered in a request answered 2xx; returns all requests so far.
    pub fn wait_for_ids(&self, ids: &[i64], timeout: Duration) -> Vec<Hook> {
        let deadline = Instant::now() + timeout;
        loop {
            let hooks = self.received.lock().unwrap().clone();
            let delivered: Vec<i64> = hooks
                .iter()
                .filter(|h| h.code == 200)
                .flat_map(|h| {
                    let v: serde_json::Value = serde_json::from_str(&h.body).unwrap();
                    v["receipt_ids"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|i| i.as_i64().unwrap())
                        .collect::<Vec<_>>()
                })
                .collect();
            if ids.iter().all(|i| delivered.contains(i)) {
                return hooks;
            }
            assert!(
                Instant::now() < deadline,
                "ids {ids:?} not delivered; got {hooks:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}
