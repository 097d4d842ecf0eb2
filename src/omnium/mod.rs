//! The Omnium HTTP client: token, endpoints, Omnium's JSON, and the classification of every
//! answer into success or one kind of [`Failure`]. Knows nothing about SQLite.

pub mod back_office;
pub mod catalog;
pub mod orders;
pub mod transport;

use crate::config::{OmniumConfig, Secret};
use crate::redact::{redact, register_secret};
use serde_json::Value;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use transport::{Body, HttpRequest, HttpResponse, NetError, Transport, UreqTransport};

/// Why a request did not succeed, in the terms the worker acts on.
#[derive(Clone, Debug, PartialEq)]
pub enum Failure {
    /// Nothing was sent: Omnium (or the network) is unreachable. Also a 3xx answer to a
    /// read: no redirect is followed (a captive portal or a proxy answered, not Omnium).
    Unreachable(String),
    /// A 3xx answer to a write: treated as Omnium unreachable (nothing counted, never
    /// success, never a rejection), but the request may have reached Omnium through
    /// whatever redirected it, so the job is checked before it is sent again.
    Redirected(String),
    /// Sent, but the outcome is unknown (timeout, reset, 5xx, 408): check before resending.
    Uncertain(String),
    /// 429: every request waits this long.
    Throttled { retry_after_ms: u64 },
    /// 409 while Omnium is still processing the order (Queued); nothing was applied.
    Busy(String),
    /// 401 even with a fresh token: the API user is wrong or deactivated.
    Unauthorized(String),
    /// A permanent rejection (any other 4xx).
    Rejected { status: u16, message: String },
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Unreachable(m) => write!(f, "Omnium unreachable: {m}"),
            Failure::Redirected(m) => write!(f, "Omnium unreachable: {m}"),
            Failure::Uncertain(m) => write!(f, "outcome unknown: {m}"),
            Failure::Throttled { retry_after_ms } => {
                write!(f, "HTTP 429: rate limited, retry after {retry_after_ms} ms")
            }
            Failure::Busy(m) => write!(f, "HTTP 409: {m}"),
            Failure::Unauthorized(m) => write!(f, "HTTP 401: {m}"),
            // Status 0: the library itself refused (Omnium's answer showed it cannot work).
            Failure::Rejected { status: 0, message } => f.write_str(message),
            Failure::Rejected { status, message } => write!(f, "HTTP {status}: {message}"),
        }
    }
}

/// Without a Retry-After header a 429 still pauses this long.
const DEFAULT_RETRY_AFTER_MS: u64 = 5_000;
/// The contract's cap on a Retry-After pause.
pub const MAX_RETRY_AFTER_MS: u64 = 2 * 3_600_000;

struct Token {
    value: String,
    renew_at_ms: i64,
}

/// Result of a create call.
#[derive(Debug, PartialEq)]
pub enum Created {
    /// Created; Omnium's answer (`Value::Null` when it sent no JSON).
    New(Value),
    /// Omnium says the id exists: the caller reads it back to verify.
    AlreadyExists(String),
}

pub struct OmniumApi {
    transport: Arc<dyn Transport>,
    base_url: String,
    client_id: String,
    client_secret: Secret,
    token: Mutex<Option<Token>>,
    /// Last time Omnium gave an answer that was not 5xx/429 (unix ms); 0 = never.
    last_healthy_at: AtomicI64,
    /// After a 429 no request leaves before this (unix ms), from any thread.
    paused_until: AtomicI64,
}

impl OmniumApi {
    pub fn new(cfg: &OmniumConfig) -> OmniumApi {
        let transport = UreqTransport::new(
            std::time::Duration::from_millis(cfg.timeout_ms),
            cfg.max_concurrency,
            None,
        );
        OmniumApi::with_transport(cfg, Arc::new(transport))
    }

    pub fn with_transport(cfg: &OmniumConfig, transport: Arc<dyn Transport>) -> OmniumApi {
        crate::redact::register_client_secret(cfg.client_secret.expose());
        OmniumApi {
            transport,
            base_url: cfg.base_url.clone(),
            client_id: cfg.client_id.clone(),
            client_secret: cfg.client_secret.clone(),
            token: Mutex::new(None),
            last_healthy_at: AtomicI64::new(0),
            paused_until: AtomicI64::new(0),
        }
    }

    pub fn last_healthy_at(&self) -> i64 {
        self.last_healthy_at.load(Ordering::Relaxed)
    }

    fn now_ms() -> i64 {
        chrono::Utc::now().timestamp_millis()
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }

    /// A cached token, or a new one when there is none or it is due for renewal.
    fn token(&self, force_new: bool) -> Result<String, Failure> {
        let mut slot = self.token.lock().unwrap_or_else(|p| p.into_inner());
        let now = Self::now_ms();
        if let Some(t) = slot.as_ref() {
            if !force_new && now < t.renew_at_ms {
                return Ok(t.value.clone());
            }
        }
        let url = self.url(&format!(
            "/api/token?clientId={}&clientSecret={}&returnAsJson=true",
            encode_component(&self.client_id),
            encode_component(self.client_secret.expose())
        ));
        let req = HttpRequest {
            method: "POST",
            url: &url,
            bearer: None,
            body: None,
        };
        // Token answers do not count as Omnium being healthy: the token endpoint is
        // separate from (and not rate-limited like) the API the jobs need.
        let resp = self.transport.send(&req).map_err(net_failure)?;
        match resp.status {
            200..=299 => {}
            300..=399 => return Err(redirected("POST /api/token", resp.status, false)),
            400 | 401 | 403 => {
                return Err(Failure::Unauthorized(format!(
                    "Omnium refused the API user {:?} (HTTP {} from /api/token); check client_id and client_secret",
                    self.client_id, resp.status
                )))
            }
            _ => return Err(classify(&resp, "POST /api/token").unwrap_err()),
        }
        let body: Value = serde_json::from_slice(&resp.body)
            .map_err(|e| Failure::Uncertain(format!("token response is not JSON: {e}")))?;
        let value = body["accessToken"]
            .as_str()
            .filter(|s| !s.is_empty())
            .ok_or_else(|| Failure::Uncertain("token response has no accessToken".into()))?
            .to_string();
        register_secret(&value);
        let lifetime_ms = body["expiresIn"].as_i64().unwrap_or(864_000).max(60) * 1000;
        // Renew well before expiry: after 80 % of the lifetime, never closer than an hour
        // to the end when the lifetime allows it.
        let renew_after =
            (lifetime_ms * 8 / 10).min((lifetime_ms - 3_600_000).max(lifetime_ms / 2));
        *slot = Some(Token {
            value: value.clone(),
            renew_at_ms: now + renew_after,
        });
        log::debug!("new Omnium token, renewed in {} s", renew_after / 1000);
        Ok(value)
    }

    /// Checks that Omnium answers and accepts the API user, by renewing the token.
    pub fn probe(&self) -> Result<(), Failure> {
        self.token(true).map(|_| ())
    }

    /// A redirect is not Omnium answering (a captive portal or a proxy did), so it does not
    /// count as healthy.
    fn note_answer(&self, status: u16) {
        if status < 500 && status != 429 && !(300..400).contains(&status) {
            self.last_healthy_at
                .fetch_max(Self::now_ms(), Ordering::Relaxed);
        }
    }

    /// Sends with the bearer token; on 401 renews the token once and sends again.
    fn send(
        &self,
        method: &'static str,
        path: &str,
        body: Option<(&'static str, &[u8])>,
    ) -> Result<HttpResponse, Failure> {
        self.send_body(method, path, body.map(|(t, b)| (t, Body::Bytes(b))))
    }

    /// Sends with the bearer token; on 401 renews the token once and sends again (a
    /// streamed body, already consumed, is reported as uncertain for the job to retry).
    fn send_body(
        &self,
        method: &'static str,
        path: &str,
        body: Option<(&'static str, Body<'_>)>,
    ) -> Result<HttpResponse, Failure> {
        // A 429 answered to another thread (or to an earlier step of this job) holds
        // every request, so none arrives inside the Retry-After window.
        let wait = self.paused_until.load(Ordering::Relaxed) - Self::now_ms();
        if wait > 0 {
            return Err(Failure::Throttled {
                retry_after_ms: wait as u64,
            });
        }
        let url = self.url(path);
        let mut token = self.token(false)?;
        let streamed = matches!(body, Some((_, Body::Stream(_))));
        let mut body = body;
        for renewed in [false, true] {
            let this_body = match &body {
                Some((t, Body::Bytes(b))) => Some((*t, Body::Bytes(b))),
                _ => body.take(),
            };
            let req = HttpRequest {
                method,
                url: &url,
                bearer: Some(&token),
                body: this_body,
            };
            let resp = self.transport.send(&req).map_err(net_failure)?;
            self.note_answer(resp.status);
            if (300..400).contains(&resp.status) {
                let what = format!("{method} {path}");
                return Err(redirected(&what, resp.status, method != "GET"));
            }
            if resp.status == 429 {
                let pause = parse_retry_after(resp.retry_after.as_deref()) as i64;
                self.paused_until
                    .fetch_max(Self::now_ms() + pause, Ordering::Relaxed);
            }
            if resp.status != 401 {
                return Ok(resp);
            }
            if renewed {
                break;
            }
            log::info!("Omnium answered 401 to {method} {path}; renewing the token once");
            token = self.token(true)?;
            if streamed {
                return Err(Failure::Uncertain(format!(
                    "{method} {path}: the token expired during an upload; sending again with a new one"
                )));
            }
        }
        Err(Failure::Unauthorized(format!(
            "{method} {path} is refused even with a new token; the API user lacks access or was deactivated"
        )))
    }

    pub(crate) fn send_stream(
        &self,
        method: &'static str,
        path: &str,
        content_type: &'static str,
        reader: &mut dyn std::io::Read,
    ) -> Result<HttpResponse, Failure> {
        let body = Body::Stream(std::cell::RefCell::new(reader));
        self.send_body(method, path, Some((content_type, body)))
    }

    pub(crate) fn send_json(
        &self,
        method: &'static str,
        path: &str,
        json: &[u8],
    ) -> Result<HttpResponse, Failure> {
        self.send(method, path, Some(("application/json", json)))
    }

    /// `PUT /api/Orders/PosOrders`.
    pub fn create_pos_order(&self, order_id: &str, order_json: &[u8]) -> Result<Created, Failure> {
        let what = "PUT /api/Orders/PosOrders";
        let resp = self.send_json("PUT", "/api/Orders/PosOrders", order_json)?;
        match classify(&resp, what) {
            Ok(()) => Ok(Created::New(
                serde_json::from_slice(&resp.body).unwrap_or(Value::Null),
            )),
            Err(Failure::Rejected {
                status: 400 | 409,
                message,
            }) if says_already_exists(&message) => {
                log::info!("Omnium says order {order_id:?} already exists: {message}");
                Ok(Created::AlreadyExists(message))
            }
            Err(f) => Err(f),
        }
    }

    /// `GET /api/Orders/{id}`; `None` on 404.
    pub fn get_order(&self, order_id: &str) -> Result<Option<Value>, Failure> {
        let path = format!("/api/Orders/{}", encode_component(order_id));
        let resp = self.send("GET", &path, None)?;
        if resp.status == 404 {
            return Ok(None);
        }
        classify(&resp, &format!("GET {path}"))?;
        serde_json::from_slice(&resp.body)
            .map(Some)
            .map_err(|e| Failure::Uncertain(format!("GET {path}: response is not JSON: {e}")))
    }

    /// `POST /api/Returns/{orderId}/Return`.
    pub fn create_return(&self, order_id: &str, body: &[u8]) -> Result<Created, Failure> {
        let path = format!("/api/Returns/{}/Return", encode_component(order_id));
        let resp = self.send_json("POST", &path, body)?;
        match classify(&resp, &format!("POST {path}")) {
            Ok(()) => Ok(Created::New(
                serde_json::from_slice(&resp.body).unwrap_or(Value::Null),
            )),
            Err(Failure::Rejected {
                status: 400 | 409,
                message,
            }) if says_already_exists(&message) => Ok(Created::AlreadyExists(message)),
            Err(f) => Err(f),
        }
    }

    /// A JSON answer to `GET path`; `None` on 404.
    pub fn get_json(&self, path: &str) -> Result<Option<Value>, Failure> {
        let resp = self.send("GET", path, None)?;
        if resp.status == 404 {
            return Ok(None);
        }
        classify(&resp, &format!("GET {path}"))?;
        parse_body(&resp, path).map(Some)
    }

    /// A JSON answer to `POST path` with a JSON body; `None` on 404.
    pub fn post_json(&self, path: &str, body: &Value) -> Result<Option<Value>, Failure> {
        let bytes = serde_json::to_vec(body).map_err(|e| Failure::Rejected {
            status: 0,
            message: e.to_string(),
        })?;
        let resp = self.send_json("POST", path, &bytes)?;
        if resp.status == 404 {
            return Ok(None);
        }
        classify(&resp, &format!("POST {path}"))?;
        parse_body(&resp, path).map(Some)
    }

    /// `POST /api/Orders/{id}/UpdateStatus`.
    pub fn update_order_status(&self, order_id: &str, status: &str) -> Result<(), Failure> {
        let path = format!("/api/Orders/{}/UpdateStatus", encode_component(order_id));
        let body = serde_json::to_vec(&serde_json::json!({ "status": status })).map_err(|e| {
            Failure::Rejected {
                status: 0,
                message: e.to_string(),
            }
        })?;
        let resp = self.send_json("POST", &path, &body)?;
        classify(&resp, &format!("POST {path}"))?;
        check_workflow_result(&resp, &path)
    }

    /// `POST /api/Orders/{id}/OrderLines/{lineItemId}/Cancel`.
    pub fn cancel_order_line(&self, order_id: &str, line_item_id: &str) -> Result<(), Failure> {
        let path = format!(
            "/api/Orders/{}/OrderLines/{}/Cancel",
            encode_component(order_id),
            encode_component(line_item_id)
        );
        let resp = self.send("POST", &path, None)?;
        classify(&resp, &format!("POST {path}"))
    }
}

fn parse_body(resp: &HttpResponse, path: &str) -> Result<Value, Failure> {
    if resp.body.is_empty() {
        return Ok(Value::Null);
    }
    serde_json::from_slice(&resp.body)
        .map_err(|e| Failure::Uncertain(format!("{path}: response is not JSON: {e}")))
}

/// A workflow that Omnium aborted answers 200 with `isAborted`; that is a rejection.
fn check_workflow_result(resp: &HttpResponse, path: &str) -> Result<(), Failure> {
    let Ok(body) = serde_json::from_slice::<Value>(&resp.body) else {
        return Ok(());
    };
    if body["isAborted"].as_bool() == Some(true) {
        let reasons: Vec<String> = body["orderActionExecutionResults"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|r| r["actionStatus"] == "Error")
            .filter_map(|r| r["errorReason"].as_str().map(str::to_string))
            .collect();
        return Err(Failure::Rejected {
            status: resp.status,
            message: format!(
                "POST {path}: Omnium aborted the workflow: {}",
                reasons.join("; ")
            ),
        });
    }
    Ok(())
}

fn says_already_exists(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    m.contains("already exist") || m.contains("duplicate")
}

/// CONTRACT §9 rule 11: no redirect is followed, and a 3xx is neither success nor a
/// rejection. Whoever answered it (a captive portal on store Wi-Fi, a misconfigured proxy) is
/// not Omnium, so Omnium counts as unreachable. A read cannot have changed anything; a write
/// may have been passed on before the redirect came back, so its job is checked first.
fn redirected(what: &str, status: u16, may_have_landed: bool) -> Failure {
    let message = format!(
        "{what} was answered with HTTP {status}, a redirect, which is not followed \
         (a captive portal or a proxy is in the way?)"
    );
    if may_have_landed {
        Failure::Redirected(message)
    } else {
        Failure::Unreachable(message)
    }
}

fn net_failure(e: NetError) -> Failure {
    match e {
        NetError::NotSent(m) => Failure::Unreachable(redact(&m)),
        NetError::Unknown(m) => Failure::Uncertain(redact(&m)),
    }
}

/// Success for 2xx; every other status mapped to the failure the worker acts on.
pub fn classify(resp: &HttpResponse, what: &str) -> Result<(), Failure> {
    let status = resp.status;
    let message = || {
        let mut text = redact(resp.text().trim());
        if text.len() > 500 {
            let mut cut = 500;
            while !text.is_char_boundary(cut) {
                cut -= 1;
            }
            text.truncate(cut);
            text.push('…');
        }
        format!("{what}: {text}")
    };
    match status {
        200..=299 => Ok(()),
        300..=399 => Err(redirected(what, status, !what.starts_with("GET "))),
        429 => Err(Failure::Throttled {
            retry_after_ms: parse_retry_after(resp.retry_after.as_deref()),
        }),
        408 => Err(Failure::Uncertain(format!("HTTP 408 {}", message()))),
        409 if !says_already_exists(&resp.text()) => Err(Failure::Busy(message())),
        401 => Err(Failure::Unauthorized(message())),
        400..=499 => Err(Failure::Rejected {
            status,
            message: message(),
        }),
        _ => Err(Failure::Uncertain(format!("HTTP {status} {}", message()))),
    }
}

/// Retry-After in seconds (or an HTTP date), capped at two hours.
pub fn parse_retry_after(header: Option<&str>) -> u64 {
    let Some(h) = header.map(str::trim) else {
        return DEFAULT_RETRY_AFTER_MS;
    };
    let ms = if let Ok(secs) = h.parse::<f64>() {
        if secs.is_finite() && secs >= 0.0 {
            (secs * 1000.0) as u64
        } else {
            DEFAULT_RETRY_AFTER_MS
        }
    } else if let Ok(at) = chrono::DateTime::parse_from_rfc2822(h) {
        (at.timestamp_millis() - chrono::Utc::now().timestamp_millis()).max(0) as u64
    } else {
        DEFAULT_RETRY_AFTER_MS
    };
    ms.min(MAX_RETRY_AFTER_MS)
}

/// Percent-encodes everything but RFC 3986 unreserved characters.
pub fn encode_component(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resp(status: u16, body: &str, retry_after: Option<&str>) -> HttpResponse {
        HttpResponse {
            status,
            retry_after: retry_after.map(str::to_string),
            body: body.as_bytes().to_vec(),
        }
    }

    #[test]
    fn statuses_are_classified_as_the_contract_says() {
        assert_eq!(classify(&resp(201, "", None), "x"), Ok(()));
        assert!(matches!(
            classify(&resp(500, "", None), "x"),
            Err(Failure::Uncertain(_))
        ));
        assert!(matches!(
            classify(&resp(503, "", None), "x"),
            Err(Failure::Uncertain(_))
        ));
        assert!(matches!(
            classify(&resp(408, "", None), "x"),
            Err(Failure::Uncertain(_))
        ));
        assert!(matches!(
            classify(&resp(409, "Order is Queued", None), "x"),
            Err(Failure::Busy(_))
        ));
        assert!(matches!(
            classify(&resp(401, "", None), "x"),
            Err(Failure::Unauthorized(_))
        ));
        assert_eq!(
            classify(&resp(429, "", Some("7")), "x"),
            Err(Failure::Throttled {
                retry_after_ms: 7000
            })
        );
        assert!(matches!(
            classify(&resp(403, "no role", None), "x"),
            Err(Failure::Rejected { status: 403, .. })
        ));
        assert!(matches!(
            classify(&resp(400, "bad marketId", None), "x"),
            Err(Failure::Rejected { status: 400, .. })
        ));
    }

    #[test]
    fn a_redirect_is_unreachable_never_success_nor_rejection() {
        for status in [301, 302, 303, 307, 308] {
            assert!(matches!(
                classify(&resp(status, "", None), "PUT /api/Orders/PosOrders"),
                Err(Failure::Redirected(_))
            ));
            assert!(matches!(
                classify(&resp(status, "", None), "GET /api/Orders/S-1"),
                Err(Failure::Unreachable(_))
            ));
        }
    }

    #[test]
    fn retry_after_is_capped_at_two_hours() {
        assert_eq!(parse_retry_after(Some("99999")), MAX_RETRY_AFTER_MS);
        assert_eq!(parse_retry_after(Some("2")), 2000);
        assert_eq!(parse_retry_after(None), DEFAULT_RETRY_AFTER_MS);
        assert_eq!(parse_retry_after(Some("soon")), DEFAULT_RETRY_AFTER_MS);
    }

    #[test]
    fn path_segments_are_encoded() {
        assert_eq!(encode_component("S-1/2 ?x"), "S-1%2F2%20%3Fx");
    }
}
