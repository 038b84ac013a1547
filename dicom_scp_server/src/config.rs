//! Configuration: an optional JSON file (CONFIG_PATH) whose keys are the environment variable names,
//! overridden by the environment. Every value is checked here, so a wrong one stops the process at start
//! with one line naming it.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use crate::error::ConfigError;

/// What happens when a SOP Instance UID arrives again with different content.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnConflict {
    /// The first instance stays; success is answered and a warning logged.
    Keep,
    /// The new instance replaces the file and the receipt (indexed_at reset).
    Overwrite,
}

/// Where the webhook goes: only plain http:// (Django sits beside us on the host or the compose network).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookUrl {
    pub host: String,
    pub port: u16,
    pub path: String,
}

impl WebhookUrl {
    pub fn parse(url: &str) -> Result<WebhookUrl, String> {
        let rest = url
            .strip_prefix("http://")
            .ok_or_else(|| format!("{url:?} must start with http://"))?;
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) if !h.ends_with(']') || authority.starts_with('[') => {
                let port = p
                    .parse::<u16>()
                    .map_err(|_| format!("{url:?} has an invalid port"))?;
                (h, port)
            }
            _ => (authority, 80),
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() {
            return Err(format!("{url:?} has no host"));
        }
        if path.contains(['\r', '\n', ' ']) {
            return Err(format!("{url:?} has whitespace in its path"));
        }
        Ok(WebhookUrl {
            host: host.to_string(),
            port,
            path: path.to_string(),
        })
    }
}

#[derive(Debug, Clone)]
pub struct Config {
    pub ae_title: String,
    pub dicom_bind: IpAddr,
    pub dicom_port: u16,
    pub http_bind: IpAddr,
    pub http_port: u16,
    pub storage_root: PathBuf,
    pub database_url: String,
    pub webhook_url: WebhookUrl,
    pub webhook_secret: String,
    pub max_associations: usize,
    pub max_pdu_length: u32,
    pub artim_timeout: Duration,
    pub idle_timeout: Duration,
    pub association_timeout: Duration,
    pub shutdown_grace: Duration,
    pub on_conflict: OnConflict,
    /// DICOM_ALLOWED_CALLING_AE_TITLES (comma-separated); empty accepts any calling AE.
    pub allowed_calling_aes: Vec<String>,
    /// SCP_KNOWN_NODES_ONLY: admit only calling AEs that are enabled pacs_node rows (and `always_admitted`).
    pub known_nodes_only: bool,
    /// SCP_DIRECT_IO: write temp files with O_DIRECT (default; see temp_file.rs).
    pub direct_io: bool,
    /// The system's own calling AEs (DICOM_STOW_AE_TITLE, AI_WRITEBACK_CALLING_AE), never locked out.
    pub always_admitted: Vec<String>,
}

/// Every key the file and the environment understand.
pub const KEYS: &[&str] = &[
    "DICOM_AE_TITLE",
    "DICOM_PORT",
    "DICOM_BIND_ADDRESS",
    "SCP_HTTP_PORT",
    "SCP_HTTP_BIND_ADDRESS",
    "STORAGE_ROOT",
    "DATABASE_URL",
    "DJANGO_WEBHOOK_URL",
    "WEBHOOK_SECRET",
    "SCP_MAX_ASSOCIATIONS",
    "SCP_MAX_PDU_LENGTH",
    "SCP_ARTIM_TIMEOUT_SECS",
    "SCP_IDLE_TIMEOUT_SECS",
    "SCP_ASSOCIATION_TIMEOUT_SECS",
    "SCP_SHUTDOWN_GRACE_SECS",
    "SCP_ON_CONFLICT",
    "DICOM_ALLOWED_CALLING_AE_TITLES",
    "DICOM_STOW_AE_TITLE",
    "SCP_KNOWN_NODES_ONLY",
    "SCP_DIRECT_IO",
    "AI_WRITEBACK_CALLING_AE",
];

pub const DEFAULT_WEBHOOK_URL: &str = "http://127.0.0.1:8000/api/dicom/received/";
/// Smallest and largest P-DATA PDU we agree to receive. 256 KiB by default: large enough that a CT slice
/// takes a couple of PDUs, small enough that 32 associations never hold much memory.
pub const MIN_PDU_LENGTH: u32 = 4096;
pub const MAX_PDU_LENGTH: u32 = 4 * 1024 * 1024;
pub const DEFAULT_PDU_LENGTH: u32 = 262_144;

impl Config {
    /// Read CONFIG_PATH (if set) and the process environment.
    pub fn from_env() -> Result<Config, ConfigError> {
        let env: HashMap<String, String> = std::env::vars().collect();
        let file = match env.get("CONFIG_PATH").filter(|p| !p.is_empty()) {
            Some(path) => Some(std::fs::read_to_string(path).map_err(|e| ConfigError {
                name: "CONFIG_PATH",
                reason: format!("cannot read {path}: {e}"),
            })?),
            None => None,
        };
        Config::from_sources(file.as_deref(), &env)
    }

    /// Build from a config file's text (JSON object of KEY -> string or number) and an environment map.
    /// The environment wins over the file.
    pub fn from_sources(file: Option<&str>, env: &HashMap<String, String>) -> Result<Config, ConfigError> {
        let mut values: HashMap<&'static str, String> = HashMap::new();
        if let Some(text) = file {
            let bad = |reason: String| ConfigError {
                name: "CONFIG_PATH",
                reason,
            };
            let json: serde_json::Value =
                serde_json::from_str(text).map_err(|e| bad(format!("not valid JSON: {e}")))?;
            let obj = json
                .as_object()
                .ok_or_else(|| bad("must hold a JSON object".into()))?;
            for (k, v) in obj {
                let key = KEYS
                    .iter()
                    .find(|known| **known == k)
                    .ok_or_else(|| bad(format!("unknown key {k:?}")))?;
                let value = match v {
                    serde_json::Value::String(s) => s.clone(),
                    serde_json::Value::Number(n) => n.to_string(),
                    _ => return Err(bad(format!("{k} must be a string or a number"))),
                };
                values.insert(key, value);
            }
        }
        for key in KEYS {
            if let Some(v) = env.get(*key) {
                values.insert(key, v.clone());
            }
        }
        let get = |k: &'static str| values.get(k).map(|s| s.trim()).filter(|s| !s.is_empty());

        let ae_title = get("DICOM_AE_TITLE").unwrap_or("NOCTIS").to_string();
        ae_title_check(&ae_title).map_err(|reason| ConfigError {
            name: "DICOM_AE_TITLE",
            reason,
        })?;
        let database_url = get("DATABASE_URL")
            .ok_or_else(|| required("DATABASE_URL"))?
            .to_string();
        tokio_postgres::Config::from_str(&database_url).map_err(|e| ConfigError {
            name: "DATABASE_URL",
            reason: format!("not a PostgreSQL URL: {e}"),
        })?;
        let webhook_secret = get("WEBHOOK_SECRET")
            .ok_or_else(|| required("WEBHOOK_SECRET"))?
            .to_string();
        let webhook_url = WebhookUrl::parse(get("DJANGO_WEBHOOK_URL").unwrap_or(DEFAULT_WEBHOOK_URL))
            .map_err(|reason| ConfigError {
                name: "DJANGO_WEBHOOK_URL",
                reason,
            })?;
        let on_conflict = match get("SCP_ON_CONFLICT").unwrap_or("keep") {
            "keep" => OnConflict::Keep,
            "overwrite" => OnConflict::Overwrite,
            other => {
                return Err(ConfigError {
                    name: "SCP_ON_CONFLICT",
                    reason: format!("{other:?} is not keep or overwrite"),
                })
            }
        };
        let max_pdu_length = number(
            get("SCP_MAX_PDU_LENGTH"),
            "SCP_MAX_PDU_LENGTH",
            DEFAULT_PDU_LENGTH,
        )?;
        if !(MIN_PDU_LENGTH..=MAX_PDU_LENGTH).contains(&max_pdu_length) {
            return Err(ConfigError {
                name: "SCP_MAX_PDU_LENGTH",
                reason: format!("{max_pdu_length} is outside {MIN_PDU_LENGTH}..={MAX_PDU_LENGTH}"),
            });
        }
        let max_associations: usize = number(get("SCP_MAX_ASSOCIATIONS"), "SCP_MAX_ASSOCIATIONS", 32)?;
        if max_associations == 0 {
            return Err(ConfigError {
                name: "SCP_MAX_ASSOCIATIONS",
                reason: "must be at least 1".into(),
            });
        }
        let mut allowed_calling_aes = vec![];
        for ae in get("DICOM_ALLOWED_CALLING_AE_TITLES").unwrap_or("").split(',') {
            let ae = ae.trim();
            if ae.is_empty() {
                continue;
            }
            ae_title_check(ae).map_err(|reason| ConfigError {
                name: "DICOM_ALLOWED_CALLING_AE_TITLES",
                reason,
            })?;
            allowed_calling_aes.push(ae.to_string());
        }
        // FastAPI's STOW-RS stores through us with this calling AE: an allow-list must never lock it out.
        let stow_ae = get("DICOM_STOW_AE_TITLE").unwrap_or("NOCTIS_STOW");
        ae_title_check(stow_ae).map_err(|reason| ConfigError {
            name: "DICOM_STOW_AE_TITLE",
            reason,
        })?;
        if !allowed_calling_aes.is_empty() && !allowed_calling_aes.iter().any(|a| a == stow_ae) {
            allowed_calling_aes.push(stow_ae.to_string());
        }
        // The AI write-back stores its results through us with this calling AE (noctis_pro settings).
        let ai_ae = get("AI_WRITEBACK_CALLING_AE").unwrap_or("NOCTIS_AI");
        ae_title_check(ai_ae).map_err(|reason| ConfigError {
            name: "AI_WRITEBACK_CALLING_AE",
            reason,
        })?;
        let known_nodes_only = flag(get("SCP_KNOWN_NODES_ONLY"), "SCP_KNOWN_NODES_ONLY", false)?;
        let direct_io = flag(get("SCP_DIRECT_IO"), "SCP_DIRECT_IO", true)?;
        Ok(Config {
            known_nodes_only,
            direct_io,
            always_admitted: vec![stow_ae.to_string(), ai_ae.to_string()],
            allowed_calling_aes,
            ae_title,
            dicom_bind: address(get("DICOM_BIND_ADDRESS"), "DICOM_BIND_ADDRESS", "0.0.0.0")?,
            dicom_port: number(get("DICOM_PORT"), "DICOM_PORT", 11112)?,
            http_bind: address(get("SCP_HTTP_BIND_ADDRESS"), "SCP_HTTP_BIND_ADDRESS", "127.0.0.1")?,
            http_port: number(get("SCP_HTTP_PORT"), "SCP_HTTP_PORT", 11180)?,
            storage_root: PathBuf::from(get("STORAGE_ROOT").unwrap_or("./var/storage")),
            database_url,
            webhook_url,
            webhook_secret,
            max_associations,
            max_pdu_length,
            artim_timeout: seconds(get("SCP_ARTIM_TIMEOUT_SECS"), "SCP_ARTIM_TIMEOUT_SECS", 30)?,
            idle_timeout: seconds(get("SCP_IDLE_TIMEOUT_SECS"), "SCP_IDLE_TIMEOUT_SECS", 60)?,
            association_timeout: seconds(
                get("SCP_ASSOCIATION_TIMEOUT_SECS"),
                "SCP_ASSOCIATION_TIMEOUT_SECS",
                3600,
            )?,
            shutdown_grace: seconds(get("SCP_SHUTDOWN_GRACE_SECS"), "SCP_SHUTDOWN_GRACE_SECS", 30)?,
            on_conflict,
        })
    }
}

fn required(name: &'static str) -> ConfigError {
    ConfigError {
        name,
        reason: "is required and not set".into(),
    }
}

fn number<T: FromStr>(value: Option<&str>, name: &'static str, default: T) -> Result<T, ConfigError> {
    match value {
        None => Ok(default),
        Some(v) => v.parse().map_err(|_| ConfigError {
            name,
            reason: format!("{v:?} is not a valid number for {}", std::any::type_name::<T>()),
        }),
    }
}

fn seconds(value: Option<&str>, name: &'static str, default: u64) -> Result<Duration, ConfigError> {
    let secs: u64 = number(value, name, default)?;
    if secs == 0 {
        return Err(ConfigError {
            name,
            reason: "must be at least 1 second".into(),
        });
    }
    Ok(Duration::from_secs(secs))
}

/// A true/false setting (also 1/0, yes/no, on/off), `default` when unset.
fn flag(value: Option<&str>, name: &'static str, default: bool) -> Result<bool, ConfigError> {
    let Some(value) = value else {
        return Ok(default);
    };
    match value.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Ok(true),
        "false" | "0" | "no" | "off" => Ok(false),
        other => Err(ConfigError {
            name,
            reason: format!("{other:?} is not true or false"),
        }),
    }
}

fn address(value: Option<&str>, name: &'static str, default: &str) -> Result<IpAddr, ConfigError> {
    let v = value.unwrap_or(default);
    v.parse().map_err(|_| ConfigError {
        name,
        reason: format!("{v:?} is not an IP address"),
    })
}

/// An AE title: 1 to 16 characters of printable ASCII without backslash, not only spaces.
pub fn ae_title_check(ae: &str) -> Result<(), String> {
    if ae.trim().is_empty() {
        return Err("must not be empty".into());
    }
    if ae.len() > 16 {
        return Err(format!("{ae:?} is longer than 16 characters"));
    }
    if !ae.chars().all(|c| c.is_ascii_graphic() || c == ' ') || ae.contains('\\') {
        return Err(format!("{ae:?} must be printable ASCII without backslash"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        let mut m: HashMap<String, String> = [
            ("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/x"),
            ("WEBHOOK_SECRET", "s3cret"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        for (k, v) in pairs {
            if v.is_empty() {
                m.remove(*k);
            } else {
                m.insert(k.to_string(), v.to_string());
            }
        }
        m
    }

    #[test]
    fn config_defaults() {
        let c = Config::from_sources(None, &env(&[])).unwrap();
        assert_eq!(c.ae_title, "NOCTIS");
        assert_eq!(c.dicom_port, 11112);
        assert_eq!(c.dicom_bind.to_string(), "0.0.0.0");
        assert_eq!(c.http_port, 11180);
        assert_eq!(c.http_bind.to_string(), "127.0.0.1");
        assert_eq!(c.storage_root, PathBuf::from("./var/storage"));
        assert_eq!(c.max_associations, 32);
        assert_eq!(c.max_pdu_length, DEFAULT_PDU_LENGTH);
        assert_eq!(c.artim_timeout, Duration::from_secs(30));
        assert_eq!(c.idle_timeout, Duration::from_secs(60));
        assert_eq!(c.association_timeout, Duration::from_secs(3600));
        assert_eq!(c.on_conflict, OnConflict::Keep);
        assert!(c.allowed_calling_aes.is_empty());
        assert!(!c.known_nodes_only);
        assert!(c.direct_io);
        assert_eq!(c.always_admitted, vec!["NOCTIS_STOW", "NOCTIS_AI"]);
        assert_eq!(
            c.webhook_url,
            WebhookUrl {
                host: "127.0.0.1".into(),
                port: 8000,
                path: "/api/dicom/received/".into()
            }
        );
    }

    #[test]
    fn config_env_overrides_file() {
        let file = r#"{"DICOM_PORT": 4242, "DICOM_AE_TITLE": "FILEAE", "SCP_ON_CONFLICT": "overwrite"}"#;
        let c = Config::from_sources(Some(file), &env(&[("DICOM_PORT", "0")])).unwrap();
        assert_eq!(c.dicom_port, 0);
        assert_eq!(c.ae_title, "FILEAE");
        assert_eq!(c.on_conflict, OnConflict::Overwrite);
    }

    #[test]
    fn config_errors_name_the_variable() {
        let cases: &[(&[(&str, &str)], &str)] = &[
            (&[("WEBHOOK_SECRET", "")], "WEBHOOK_SECRET"),
            (&[("DATABASE_URL", "")], "DATABASE_URL"),
            (&[("DATABASE_URL", "mysql://x")], "DATABASE_URL"),
            (&[("DICOM_PORT", "70000")], "DICOM_PORT"),
            (&[("DICOM_PORT", "abc")], "DICOM_PORT"),
            (&[("DICOM_AE_TITLE", "WAY_TOO_LONG_AE_TITLE")], "DICOM_AE_TITLE"),
            (&[("SCP_ON_CONFLICT", "replace")], "SCP_ON_CONFLICT"),
            (&[("SCP_KNOWN_NODES_ONLY", "maybe")], "SCP_KNOWN_NODES_ONLY"),
            (&[("SCP_DIRECT_IO", "sometimes")], "SCP_DIRECT_IO"),
            (&[("SCP_MAX_PDU_LENGTH", "99999999")], "SCP_MAX_PDU_LENGTH"),
            (&[("SCP_MAX_ASSOCIATIONS", "0")], "SCP_MAX_ASSOCIATIONS"),
            (&[("SCP_IDLE_TIMEOUT_SECS", "0")], "SCP_IDLE_TIMEOUT_SECS"),
            (&[("DJANGO_WEBHOOK_URL", "https://x/y")], "DJANGO_WEBHOOK_URL"),
            (&[("DICOM_BIND_ADDRESS", "localhost:1")], "DICOM_BIND_ADDRESS"),
            (
                &[("DICOM_ALLOWED_CALLING_AE_TITLES", "CT1,SEVENTEEN_CHARS_AE")],
                "DICOM_ALLOWED_CALLING_AE_TITLES",
            ),
        ];
        for (pairs, name) in cases {
            let e = Config::from_sources(None, &env(pairs)).unwrap_err();
            assert_eq!(e.name, *name, "{pairs:?}");
            assert!(e
                .to_string()
                .starts_with(&format!("configuration error: {name}: ")));
        }
        let e = Config::from_sources(Some(r#"{"DICOM_PROT": 1}"#), &env(&[])).unwrap_err();
        assert_eq!(e.name, "CONFIG_PATH");
        assert!(e.reason.contains("DICOM_PROT"));
    }

    #[test]
    fn allowed_calling_aes_are_a_trimmed_list() {
        let c = Config::from_sources(
            None,
            &env(&[("DICOM_ALLOWED_CALLING_AE_TITLES", " CT1, MR_2 ,,")]),
        )
        .unwrap();
        assert_eq!(c.allowed_calling_aes, vec!["CT1", "MR_2", "NOCTIS_STOW"]);
        let c = Config::from_sources(
            None,
            &env(&[
                ("DICOM_ALLOWED_CALLING_AE_TITLES", "CT1"),
                ("DICOM_STOW_AE_TITLE", "WEB"),
            ]),
        )
        .unwrap();
        assert_eq!(c.allowed_calling_aes, vec!["CT1", "WEB"]);
    }

    #[test]
    fn webhook_url_parses_host_port_path() {
        let u = WebhookUrl::parse("http://django:8000/api/dicom/received/").unwrap();
        assert_eq!(
            (u.host.as_str(), u.port, u.path.as_str()),
            ("django", 8000, "/api/dicom/received/")
        );
        let u = WebhookUrl::parse("http://example").unwrap();
        assert_eq!((u.port, u.path.as_str()), (80, "/"));
        assert!(WebhookUrl::parse("http://:80/").is_err());
    }

    #[test]
    fn prod_example_config_parses() {
        let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/config.prod.json")).unwrap();
        let c = Config::from_sources(Some(&text), &env(&[])).unwrap();
        assert_eq!(c.dicom_port, 11112);
    }
}
