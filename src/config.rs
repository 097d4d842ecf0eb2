//! The client's configuration (CONTRACT §3): parsed from JSON, unknown keys rejected.

use crate::error::{Error, Result};
use crate::model::fields::{parse_object, Fields};
use std::path::PathBuf;

/// Who owns the store's stock levels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StockMaster {
    Omnium,
    Flow,
}

pub use crate::redact::Secret;

#[derive(Clone, Debug)]
pub struct OmniumConfig {
    /// Without a trailing slash.
    pub base_url: String,
    pub client_id: String,
    pub client_secret: Secret,
    pub timeout_ms: u64,
    pub max_concurrency: usize,
    /// `omnium.proxy`: the only proxy used (never one from the environment). A Secret: its
    /// URL may carry credentials.
    pub proxy: Option<Secret>,
}

#[derive(Clone, Debug)]
pub struct SyncConfig {
    pub autostart: bool,
    pub retry_initial_ms: u64,
    pub retry_max_ms: u64,
    pub pull_interval_ms: u64,
    /// How many failed attempts, counted only while Omnium answered, before a job dies.
    pub max_attempts: u32,
    /// How long delivered jobs are kept before they are purged.
    pub delivered_retention_ms: u64,
    /// How far before its cursor each delta pull re-reads (Omnium's index lags writes).
    pub pull_overlap_ms: u64,
    /// How long a customer record (and a dead job's customer data or PDF) stays on disk.
    pub customer_retention_ms: u64,
    /// How long an inbound order stays on disk once it is finished.
    pub finished_order_retention_ms: u64,
    /// How often a full pull removes what Omnium no longer returns; 0 = never.
    pub full_resync_ms: u64,
}

#[derive(Clone, Debug)]
pub struct Config {
    pub database_path: PathBuf,
    pub store_id: String,
    pub market_id: String,
    pub currency: String,
    pub terminal_id: Option<String>,
    pub stock_master: StockMaster,
    pub warehouse_ids: Vec<String>,
    pub send_receipts: bool,
    /// The store's time zone: price bounds without an offset are its local time.
    pub time_zone: chrono_tz::Tz,
    pub omnium: OmniumConfig,
    pub sync: SyncConfig,
}

const TOP_KEYS: &[&str] = &[
    "database_path",
    "store_id",
    "market_id",
    "currency",
    "terminal_id",
    "stock_master",
    "warehouse_ids",
    "send_receipts",
    "time_zone",
    "omnium",
    "sync",
];
const OMNIUM_KEYS: &[&str] = &[
    "base_url",
    "client_id",
    "client_secret",
    "timeout_ms",
    "max_concurrency",
    "proxy",
];
const SYNC_KEYS: &[&str] = &[
    "autostart",
    "retry_initial_ms",
    "retry_max_ms",
    "pull_interval_ms",
    "max_attempts",
    "delivered_retention_ms",
    "pull_overlap_ms",
    "customer_retention_ms",
    "finished_order_retention_ms",
    "full_resync_ms",
];

/// `sync.customer_retention_ms`: 90 days.
pub const DEFAULT_CUSTOMER_RETENTION_MS: u64 = 90 * 24 * 3_600_000;
/// `sync.finished_order_retention_ms`: 30 days.
pub const DEFAULT_FINISHED_ORDER_RETENTION_MS: u64 = 30 * 24 * 3_600_000;

/// Omnium allows 20 concurrent requests per API user; more would only earn 429s.
const MAX_CONCURRENCY_LIMIT: u64 = 20;

impl Config {
    /// Parses and validates the config JSON (CONTRACT §9 rule 5): text that is not a JSON
    /// object is `Error::InvalidJson`; an object that breaks a rule is `Error::Config`,
    /// naming the key.
    pub fn from_json(text: &str) -> Result<Config> {
        let value = parse_object(text, "config")?;
        Self::parse(&value).map_err(|e| match e {
            Error::InvalidJson(m) | Error::InvalidInput(m) | Error::Config(m) => {
                Error::Config(if m.starts_with("config") {
                    m
                } else {
                    format!("config: {m}")
                })
            }
            other => other,
        })
    }

    fn parse(value: &serde_json::Value) -> Result<Config> {
        let root = Fields::new(value, "config")?;
        root.deny_unknown(TOP_KEYS)?;
        let store_id = root.id("store_id")?.to_string();
        let omnium = root
            .object_opt("omnium")?
            .ok_or_else(|| Error::invalid("config.omnium", "is required"))?;
        omnium.deny_unknown(OMNIUM_KEYS)?;
        let empty = serde_json::Value::Object(Default::default());
        let sync = match root.object_opt("sync")? {
            Some(s) => s,
            None => Fields::new(&empty, "config.sync")?,
        };
        sync.deny_unknown(SYNC_KEYS)?;

        let stock_master = match root.str_opt("stock_master")? {
            None | Some("omnium") => StockMaster::Omnium,
            Some("flow") => StockMaster::Flow,
            Some(other) => {
                return Err(Error::invalid(
                    "config.stock_master",
                    format!("must be \"omnium\" or \"flow\", got {other:?}"),
                ))
            }
        };
        let warehouse_ids = match root.strings_opt("warehouse_ids")? {
            None => vec![store_id.clone()],
            Some(ids) if ids.is_empty() => {
                return Err(Error::invalid(
                    "config.warehouse_ids",
                    "must name at least one warehouse",
                ))
            }
            Some(ids) => ids.into_iter().map(str::to_string).collect(),
        };
        let currency = root.text("currency")?;
        if currency.len() != 3 || !currency.bytes().all(|b| b.is_ascii_uppercase()) {
            return Err(Error::invalid(
                "config.currency",
                format!("must be an ISO 4217 code like \"NOK\", got {currency:?}"),
            ));
        }
        let timeout_ms = omnium.u64_opt("timeout_ms")?.unwrap_or(30_000);
        if !(100..=600_000).contains(&timeout_ms) {
            return Err(Error::invalid(
                "config.omnium.timeout_ms",
                "must be between 100 and 600000",
            ));
        }
        let max_concurrency = omnium.u64_opt("max_concurrency")?.unwrap_or(4);
        if !(1..=MAX_CONCURRENCY_LIMIT).contains(&max_concurrency) {
            return Err(Error::invalid(
                "config.omnium.max_concurrency",
                format!("must be between 1 and {MAX_CONCURRENCY_LIMIT} (Omnium's per-user limit)"),
            ));
        }
        let retry_initial_ms = sync.u64_opt("retry_initial_ms")?.unwrap_or(60_000);
        let retry_max_ms = sync.u64_opt("retry_max_ms")?.unwrap_or(7_200_000);
        if retry_initial_ms == 0 {
            return Err(Error::invalid(
                "config.sync.retry_initial_ms",
                "must be at least 1",
            ));
        }
        if retry_max_ms < retry_initial_ms {
            return Err(Error::invalid(
                "config.sync.retry_max_ms",
                "must be at least config.sync.retry_initial_ms",
            ));
        }
        let pull_interval_ms = sync.u64_opt("pull_interval_ms")?.unwrap_or(300_000);
        if pull_interval_ms == 0 {
            return Err(Error::invalid(
                "config.sync.pull_interval_ms",
                "must be at least 1",
            ));
        }
        let max_attempts = sync.u64_opt("max_attempts")?.unwrap_or(10);
        if !(1..=1000).contains(&max_attempts) {
            return Err(Error::invalid(
                "config.sync.max_attempts",
                "must be between 1 and 1000",
            ));
        }
        let database_path = root.text("database_path")?;
        if database_path.starts_with("file:") {
            // SQLite would read it as a URI and obey options like nolock=1 or immutable=1.
            return Err(Error::invalid(
                "config.database_path",
                "must be a file path, not a \"file:\" URI",
            ));
        }

        Ok(Config {
            database_path: PathBuf::from(database_path),
            store_id,
            market_id: root.id("market_id")?.to_string(),
            currency: currency.to_string(),
            terminal_id: root.id_opt("terminal_id")?.map(str::to_string),
            stock_master,
            warehouse_ids,
            send_receipts: root.bool_opt("send_receipts")?.unwrap_or(true),
            time_zone: match root.str_opt("time_zone")? {
                None => chrono_tz::Europe::Oslo,
                Some(name) => name.parse::<chrono_tz::Tz>().map_err(|_| {
                    Error::invalid(
                        "config.time_zone",
                        format!("{name:?} is not an IANA time zone name (e.g. \"Europe/Oslo\")"),
                    )
                })?,
            },
            omnium: OmniumConfig {
                proxy: validate_proxy(omnium.str_opt("proxy")?, omnium.text("base_url")?)?,
                base_url: validate_base_url(omnium.text("base_url")?)?,
                client_id: omnium.text("client_id")?.to_string(),
                client_secret: Secret::new(omnium.text("client_secret")?),
                timeout_ms,
                max_concurrency: max_concurrency as usize,
            },
            sync: SyncConfig {
                autostart: sync.bool_opt("autostart")?.unwrap_or(true),
                retry_initial_ms,
                retry_max_ms,
                pull_interval_ms,
                max_attempts: max_attempts as u32,
                delivered_retention_ms: sync
                    .u64_opt("delivered_retention_ms")?
                    .unwrap_or(30 * 24 * 3_600_000),
                pull_overlap_ms: sync.u64_opt("pull_overlap_ms")?.unwrap_or(60_000),
                customer_retention_ms: sync
                    .u64_opt("customer_retention_ms")?
                    .unwrap_or(DEFAULT_CUSTOMER_RETENTION_MS),
                finished_order_retention_ms: sync
                    .u64_opt("finished_order_retention_ms")?
                    .unwrap_or(DEFAULT_FINISHED_ORDER_RETENTION_MS),
                full_resync_ms: sync.u64_opt("full_resync_ms")?.unwrap_or(86_400_000),
            },
        })
    }
}

/// `https://host[:port][/path]`, or `http://` to a loopback host for testing.
fn validate_base_url(url: &str) -> Result<String> {
    let field = "config.omnium.base_url";
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| Error::invalid(field, format!("{url:?} is not an absolute URL")))?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    if authority.is_empty() || authority.contains('@') {
        return Err(Error::invalid(field, format!("{url:?} has no valid host")));
    }
    let host = if let Some(v6) = authority.strip_prefix('[') {
        v6.split(']').next().unwrap_or("")
    } else {
        authority.split(':').next().unwrap_or("")
    };
    match scheme.to_ascii_lowercase().as_str() {
        "https" => {}
        "http" if is_loopback(host) => {}
        "http" => {
            return Err(Error::invalid(
                field,
                "must use https (plain http is allowed only for a loopback host)",
            ))
        }
        other => {
            return Err(Error::invalid(
                field,
                format!("unsupported scheme {other:?}"),
            ))
        }
    }
    Ok(url.trim_end_matches('/').to_string())
}

/// `omnium.proxy`: an `http://` or `https://` proxy URL (`user:password@` allowed), used
/// with an `https` base URL only: through a proxy the secret and tokens must travel inside
/// TLS, never in clear text the proxy can read.
fn validate_proxy(proxy: Option<&str>, base_url: &str) -> Result<Option<Secret>> {
    let field = "config.omnium.proxy";
    let Some(proxy) = proxy.map(str::trim).filter(|p| !p.is_empty()) else {
        return Ok(None);
    };
    let scheme = proxy.split_once("://").map(|(s, _)| s.to_ascii_lowercase());
    if !matches!(scheme.as_deref(), Some("http" | "https")) {
        return Err(Error::invalid(
            field,
            "must be an http:// or https:// proxy URL",
        ));
    }
    if !base_url.to_ascii_lowercase().starts_with("https://") {
        return Err(Error::invalid(
            field,
            "needs an https base_url: the client secret must never cross a proxy in clear text",
        ));
    }
    // The message never echoes the URL: it may hold the proxy's password.
    ureq::Proxy::new(proxy).map_err(|_| Error::invalid(field, "is not a valid proxy URL"))?;
    Ok(Some(Secret::new(proxy)))
}

/// `host:port` of a proxy URL, without credentials: what the log may say.
pub fn proxy_host(proxy: &Secret) -> String {
    let rest = proxy
        .expose()
        .split_once("://")
        .map_or(proxy.expose(), |(_, r)| r);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host)
        .to_string()
}

/// The password in a proxy URL's `user:password@`, if any.
pub fn proxy_password(proxy: &Secret) -> Option<Secret> {
    let rest = proxy.expose().split_once("://")?.1;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let (userinfo, _) = authority.rsplit_once('@')?;
    let (_, password) = userinfo.split_once(':')?;
    (!password.is_empty()).then(|| Secret::new(password))
}

fn is_loopback(host: &str) -> bool {
    if host.eq_ignore_ascii_case("localhost") {
        return true;
    }
    match host.parse::<std::net::IpAddr>() {
        Ok(ip) => ip.is_loopback(),
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(extra: &str, base_url: &str) -> Result<Config> {
        Config::from_json(&format!(
            r#"{{"database_path": "/tmp/x.db", "store_id": "oslo-1", "market_id": "NOR",
                "currency": "NOK", {extra}
                "omnium": {{"base_url": "{base_url}", "client_id": "id", "client_secret": "s3cr3t"}}}}"#
        ))
    }

    #[test]
    fn defaults_follow_the_contract() {
        let c = cfg("", "https://api.omnium.no/").unwrap();
        assert_eq!(c.omnium.base_url, "https://api.omnium.no");
        assert_eq!(c.warehouse_ids, vec!["oslo-1".to_string()]);
        assert_eq!(c.stock_master, StockMaster::Omnium);
        assert!(c.send_receipts && c.sync.autostart);
        assert_eq!(
            (c.sync.retry_initial_ms, c.sync.retry_max_ms),
            (60_000, 7_200_000)
        );
        assert_eq!(c.sync.pull_interval_ms, 300_000);
        assert_eq!(c.omnium.max_concurrency, 4);
    }

    #[test]
    fn unknown_keys_are_config_errors_naming_the_key() {
        let err = cfg(r#""sotre_id": "x","#, "https://a.b").unwrap_err();
        assert!(
            matches!(&err, Error::Config(m) if m.starts_with("config.sotre_id: unknown field")),
            "{err}"
        );
        let err = Config::from_json(
            r#"{"database_path":"x","store_id":"s","market_id":"m","currency":"NOK",
               "omnium":{"base_url":"https://a","client_id":"i","client_secret":"s","timout_ms":5}}"#,
        )
        .unwrap_err();
        assert!(err.to_string().contains("config.omnium.timout_ms"), "{err}");
    }

    #[test]
    fn http_is_allowed_only_for_loopback() {
        for ok in [
            "http://127.0.0.1:8080",
            "http://localhost:1",
            "http://[::1]:9/x",
            "http://127.9.9.9",
        ] {
            assert!(cfg("", ok).is_ok(), "{ok}");
        }
        for bad in [
            "http://api.omnium.no",
            "http://10.0.0.1",
            "ftp://x",
            "api.omnium.no",
            "http://user@127.0.0.1",
        ] {
            assert!(matches!(cfg("", bad), Err(Error::Config(_))), "{bad}");
        }
    }

    #[test]
    fn a_proxy_is_taken_only_with_https_and_never_echoed() {
        let c = cfg("", "https://api.omnium.no").unwrap();
        assert!(c.omnium.proxy.is_none());
        let with = |proxy: &str, base: &str| {
            Config::from_json(&format!(
                r#"{{"database_path": "/tmp/x.db", "store_id": "oslo-1", "market_id": "NOR",
                    "currency": "NOK", "omnium": {{"base_url": "{base}", "client_id": "id",
                    "client_secret": "s3cr3t", "proxy": "{proxy}"}}}}"#
            ))
        };
        let c = with("http://bob:pr0xy-pw@10.0.0.8:3128", "https://api.omnium.no").unwrap();
        let proxy = c.omnium.proxy.clone().unwrap();
        assert_eq!(proxy_host(&proxy), "10.0.0.8:3128");
        assert_eq!(proxy_password(&proxy).unwrap().expose(), "pr0xy-pw");
        assert!(!format!("{:?}", c.omnium).contains("pr0xy-pw"));
        // Through a proxy the secret must travel inside TLS.
        let err = with("http://10.0.0.8:3128", "http://127.0.0.1:8080").unwrap_err();
        assert!(
            matches!(&err, Error::Config(m) if m.contains("config.omnium.proxy")),
            "{err}"
        );
        for bad in ["socks5://10.0.0.8:1080", "10.0.0.8:3128", "http://bob:pw@"] {
            let err = with(bad, "https://api.omnium.no").unwrap_err();
            assert!(matches!(&err, Error::Config(_)), "{bad}: {err}");
            assert!(!err.to_string().contains("pw@"), "{err}");
        }
    }

    #[test]
    fn missing_required_keys_are_named() {
        let err = Config::from_json(r#"{"store_id":"s"}"#).unwrap_err();
        assert!(err.to_string().contains("config."), "{err}");
        let err = cfg(r#""stock_master": "pos","#, "https://a").unwrap_err();
        assert!(err.to_string().contains("config.stock_master"), "{err}");
    }

    #[test]
    fn the_secret_is_not_printed_by_debug() {
        let c = cfg("", "https://a").unwrap();
        assert!(!format!("{c:?}").contains("s3cr3t"));
    }
}
