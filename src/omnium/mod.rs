//! The Omnium HTTP client: token, endpoints, Omnium's JSON, and the classification of every
//! answer into success or one kind of [`Failure`]. Knows nothing about SQLite.

pub mod back_office;
pub mod catalog;
pub mod orders;
pub mod page;
pub mod transport;
pub mod user_gate;

use crate::clock::{Clock, SystemClock};
use crate::config::{OmniumConfig, Secret};
use crate::redact::redact;
use serde_json::Value;
use std::sync::atomic::AtomicBool;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use transport::{Body, HttpRequest, HttpResponse, NetError, Transport, UreqTransport};
use zeroize::Zeroizing;

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
    /// 429: every request waits this long. `held`: Omnium did not answer 429 to this
    /// request; this process held it back (a pause another till or thread of the same API
    /// user received, or every place of the user's window taken).
    Throttled { retry_after_ms: u64, held: bool },
    /// 409 while Omnium is still processing the order (Queued); nothing was applied.
    Busy(String),
    /// Omnium said the event exists ("already exists"), but the read-back cannot see it
    /// yet (its index lags): check again later; never a reason to give up on the job.
    Unconfirmed(String),
    /// 401 even with a fresh token: the API user is wrong or deactivated.
    Unauthorized(String),
    /// Nothing was sent: the job waits for another job's outcome first (the library's own
    /// ordering, not Omnium's answer); looked at again soon, never counted.
    Waiting(String),
    /// A permanent rejection (any other 4xx).
    Rejected { status: u16, message: String },
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Unreachable(m) => write!(f, "Omnium unreachable: {m}"),
            Failure::Redirected(m) => write!(f, "Omnium unreachable: {m}"),
            Failure::Uncertain(m) => write!(f, "outcome unknown: {m}"),
            Failure::Throttled {
                retry_after_ms,
                held: false,
            } => {
                write!(f, "HTTP 429: rate limited, retry after {retry_after_ms} ms")
            }
            Failure::Throttled {
                retry_after_ms,
                held: true,
            } => write!(
                f,
                "held back for {retry_after_ms} ms: Omnium is rate limiting this API user"
            ),
            Failure::Busy(m) => write!(f, "HTTP 409: {m}"),
            Failure::Unconfirmed(m) => write!(f, "not confirmed yet: {m}"),
            Failure::Waiting(m) => write!(f, "waiting: {m}"),
            Failure::Unauthorized(m) => write!(f, "HTTP 401: {m}"),
            // Status 0: the library itself refused (Omnium's answer showed it cannot work).
            Failure::Rejected { status: 0, message } => f.write_str(message),
            Failure::Rejected { status, message } => write!(f, "HTTP {status}: {message}"),
        }
    }
}

/// Longest a request waits for a place in the API user's window before it is held back.
const WINDOW_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// Without a Retry-After header a 429 still pauses this long.
const DEFAULT_RETRY_AFTER_MS: u64 = 5_000;
/// The contract's cap on a Retry-After pause.
pub const MAX_RETRY_AFTER_MS: u64 = 2 * 3_600_000;

/// Omnium's tokens live 10 days; a lifetime outside these bounds is clamped (a huge
/// `expiresIn` must not overflow into "expired", a tiny one must not mean a request each).
/// A health stamp that was never set (`OmniumApi::last_healthy_at`): before any monotonic
/// time.
pub const NEVER: i64 = i64::MIN;

const MIN_TOKEN_LIFETIME_MS: i64 = 60_000;
const MAX_TOKEN_LIFETIME_MS: i64 = 10 * 24 * 3_600_000;
/// Without `expiresIn` a token is taken to live this long (Omnium's documented lifetime).
const DEFAULT_TOKEN_LIFETIME_MS: i64 = MAX_TOKEN_LIFETIME_MS;

/// A bearer token, as Omnium's token endpoint answers it (`returnAsJson=true`).
#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct TokenAnswer {
    access_token: Secret,
    /// Seconds; any JSON number (Omnium sends an integer), clamped when used.
    #[serde(default)]
    expires_in: Option<serde_json::Number>,
}

/// A token in use: wiped when the last request holding it drops it.
struct Token {
    value: Secret,
    /// Counts renewals; a thread refused with generation `g` renews only if the current token
    /// is still `g` (otherwise another thread already did).
    generation: u64,
    /// Monotonic ms: renew once this has passed.
    renew_at: i64,
}

/// Lifetime in ms from `expiresIn` seconds, clamped to [1 minute, 10 days] without overflow.
fn token_lifetime_ms(expires_in: Option<&serde_json::Number>) -> i64 {
    let Some(n) = expires_in else {
        return DEFAULT_TOKEN_LIFETIME_MS;
    };
    let secs = match (n.as_i64(), n.as_f64()) {
        (Some(i), _) => i,
        (None, Some(f)) if f.is_finite() && f > 0.0 => f.min(i64::MAX as f64) as i64,
        (None, Some(f)) if f.is_finite() => 0,
        _ => i64::MAX, // a u64 beyond i64: very long
    };
    secs.saturating_mul(1000)
        .clamp(MIN_TOKEN_LIFETIME_MS, MAX_TOKEN_LIFETIME_MS)
}

/// When to renew a token of `lifetime` ms: after 80 % of it, and never closer than an hour
/// to its end when the lifetime allows it (at least half of it is always used).
fn renew_after_ms(lifetime: i64) -> i64 {
    (lifetime / 10 * 8).min((lifetime - 3_600_000).max(lifetime / 2))
}

/// Result of a create call.
#[derive(Debug, PartialEq)]
pub enum Created {
    /// Created. Omnium's answer body is not parsed: nothing uses it, and parsing a whole
    /// order per sale was a tenth of the worker's CPU while draining.
    New,
    /// Omnium says the id exists: the caller reads it back to verify.
    AlreadyExists(String),
}

/// What the thread holding the token renewal knows of the token requests made.
#[derive(Default)]
struct TokenAttempts {
    made: u64,
    last_failure: Option<Failure>,
}

pub struct OmniumApi {
    transport: Arc<dyn Transport>,
    base_url: String,
    client_id: String,
    client_secret: Secret,
    /// The token in use; read under a short lock, never held across a request.
    token: Mutex<Option<Arc<Token>>>,
    /// Held across the token request: one renewal at a time for every thread (single
    /// flight). Holds the number of token requests made and the failure of the last one, if
    /// it failed: a thread that waited while another's request failed takes that failure
    /// instead of asking again (each request sends the secret).
    renewal: Mutex<TokenAttempts>,
    /// The client's secrets (client secret, tokens), masked in every message while it lives.
    secrets: crate::redact::Scope,
    clock: Arc<dyn Clock>,
    /// Last time Omnium gave an answer that was not 5xx/429 (unix ms); 0 = never.
    last_healthy_at: AtomicI64,
    /// The same, for answers to requests that change something (not reads): only these
    /// say that a write's failure is the job's own (a write-only outage burns no attempts).
    last_healthy_write_at: AtomicI64,
    /// The pause after a 429 and the window of requests in flight, shared by every client
    /// of this process using the same API user ([`user_gate`]).
    gate: Arc<user_gate::UserGate>,
    /// Set at close: no token is asked for again.
    forgotten: AtomicBool,
    /// Token requests made so far (also in `renewal`; read without its lock).
    token_requests: std::sync::atomic::AtomicU64,
    /// Pages served so far by the scroll of each resource (Products, Inventory).
    scrolls: Mutex<std::collections::HashMap<String, catalog::ScrollTrail>>,
    /// Omnium's clock (its `Date` header) on the last answer that had one; 0 = never.
    answer_date_ms: AtomicI64,
    /// The monotonic time at which that answer came.
    answer_date_mono: AtomicI64,
}

impl OmniumApi {
    pub fn new(cfg: &OmniumConfig) -> OmniumApi {
        // Only the configured proxy, never one from the environment (ALL_PROXY, HTTPS_PROXY,
        // …): a proxy sees where the till talks to, so using one is the integrator's choice.
        let proxy = cfg.proxy.as_ref().and_then(|p| {
            log::info!(
                "requests to Omnium go through the proxy {} (config omnium.proxy)",
                crate::config::proxy_host(p)
            );
            ureq::Proxy::new(p.expose()).ok()
        });
        let transport = UreqTransport::new(
            std::time::Duration::from_millis(cfg.timeout_ms),
            cfg.max_concurrency,
            proxy,
        );
        let api = OmniumApi::with_transport(cfg, Arc::new(transport));
        if let Some(password) = cfg.proxy.as_ref().and_then(crate::config::proxy_password) {
            api.secrets.add(&password, None, 0);
        }
        api
    }

    pub fn with_transport(cfg: &OmniumConfig, transport: Arc<dyn Transport>) -> OmniumApi {
        let secrets = crate::redact::Scope::new();
        secrets.add(&cfg.client_secret, None, 0);
        OmniumApi {
            transport,
            base_url: cfg.base_url.clone(),
            client_id: cfg.client_id.clone(),
            client_secret: cfg.client_secret.clone(),
            token: Mutex::new(None),
            renewal: Mutex::new(TokenAttempts::default()),
            secrets,
            clock: Arc::new(SystemClock),
            last_healthy_at: AtomicI64::new(NEVER),
            last_healthy_write_at: AtomicI64::new(NEVER),
            gate: user_gate::UserGate::private(),
            forgotten: AtomicBool::new(false),
            token_requests: Default::default(),
            scrolls: Mutex::default(),
            answer_date_ms: AtomicI64::new(0),
            answer_date_mono: AtomicI64::new(0),
        }
    }

    /// Token renewal runs on this clock's monotonic time (tests pass a manual one).
    pub fn with_clock(mut self, clock: Arc<dyn Clock>) -> OmniumApi {
        self.clock = clock;
        self
    }

    /// Throttled together with every other client of this process using the same API user
    /// (base URL and client id): one pause after a 429, one window of requests in flight,
    /// one end of an outage ([`user_gate`]). Only for clients on the process's own clock
    /// ([`SystemClock`]): the shared pause is a time on it.
    pub fn shared_by_user(mut self) -> OmniumApi {
        self.gate = user_gate::UserGate::shared(&self.base_url, &self.client_id);
        self
    }

    /// The client is closing: its secret and tokens are wiped and no longer masked (they
    /// will not be printed again). Requests after this fail as refused credentials.
    pub fn forget_secrets(&self) {
        let _flight = self.renewal.lock().unwrap_or_else(|p| p.into_inner());
        self.token.lock().unwrap_or_else(|p| p.into_inner()).take();
        self.secrets.forget();
        self.forgotten.store(true, Ordering::SeqCst);
    }

    /// When Omnium last gave an answer that was neither 5xx, 429 nor a redirect, on the
    /// monotonic clock (`Clock::mono_ms`, so a wall clock stepped back cannot leave it in the
    /// future); [`NEVER`] = not since this client was made.
    pub fn last_healthy_at(&self) -> i64 {
        self.last_healthy_at.load(Ordering::Relaxed)
    }

    /// Omnium's own clock when it sent its last answer (its `Date` header, whole seconds,
    /// rounded down), or `None` when no answer carried one. The pull engine judges how far
    /// back a delta must re-read on this clock, never the till's.
    pub fn answer_date_ms(&self) -> Option<i64> {
        Some(self.answer_date_ms.load(Ordering::Relaxed)).filter(|&d| d > 0)
    }

    /// Omnium's clock now, as far as this client can tell: its last `Date` plus the
    /// monotonic time since that answer (whole seconds, rounded down; a racing answer can
    /// pair one answer's date with another's instant, a second or so off). `None` before
    /// any answer carried a `Date`.
    pub fn omnium_now_ms(&self) -> Option<i64> {
        let date = self.answer_date_ms()?;
        let since = self.clock.mono_ms() - self.answer_date_mono.load(Ordering::Relaxed);
        Some(date.saturating_add(since.max(0)))
    }

    /// When Omnium last answered a request that changes something with neither 5xx nor
    /// 429, on the monotonic clock (`Clock::mono_ms`); [`NEVER`] = not since this client was
    /// made. Compare it only with monotonic times of this process.
    pub fn last_healthy_write_at(&self) -> i64 {
        self.last_healthy_write_at.load(Ordering::Relaxed)
    }

    /// How many requests that may change something in Omnium this thread has let leave
    /// (any answer, or a failure after sending): a job that sent one is read back before it
    /// sends again, whatever happened next (CONTRACT §9 rule 8).
    pub fn writes_sent() -> u64 {
        WRITES_SENT.with(std::cell::Cell::get)
    }

    /// How many of [`OmniumApi::writes_sent`] Omnium answered with a 4xx other than 408 (this
    /// thread): a refusal, so that request changed nothing.
    pub fn writes_refused() -> u64 {
        WRITES_REFUSED.with(std::cell::Cell::get)
    }

    /// How many of [`OmniumApi::writes_sent`] Omnium answered 429 (this thread): turned away
    /// by its rate limiter before being handled.
    pub fn writes_throttled() -> u64 {
        WRITES_THROTTLED.with(std::cell::Cell::get)
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }

    /// The token to send: the cached one while it is not due for renewal, else a new one.
    /// `refused` is the generation of a token Omnium just answered 401 to: it is replaced,
    /// unless another thread already replaced it (then that newer token is used). Only one
    /// thread at a time asks for a token; the others wait and take the one it got.
    fn token(&self, refused: Option<u64>) -> Result<Arc<Token>, Failure> {
        let usable = |t: &Token| {
            self.clock.mono_ms() < t.renew_at && refused.is_none_or(|g| t.generation > g)
        };
        let current = || self.token.lock().unwrap_or_else(|p| p.into_inner()).clone();
        if let Some(t) = current().filter(|t| usable(t)) {
            return Ok(t);
        }
        let made_before = self.token_requests.load(Ordering::SeqCst);
        let mut flight = self.renewal.lock().unwrap_or_else(|p| p.into_inner());
        // A newer token may have arrived while this thread waited for the renewal.
        let previous = current();
        if let Some(t) = previous.clone().filter(|t| usable(t)) {
            return Ok(t);
        }
        if self.forgotten.load(Ordering::SeqCst) {
            return Err(Failure::Unauthorized("the client is closed".into()));
        }
        // Another thread's request failed while this one waited: its answer is this one's
        // too (single flight for failures: the secret is not sent again at once).
        if flight.made != made_before {
            if let Some(f) = &flight.last_failure {
                return Err(f.clone());
            }
        }
        let asked = self.request_token();
        flight.made += 1;
        self.token_requests.store(flight.made, Ordering::SeqCst);
        flight.last_failure = asked.as_ref().err().cloned();
        let token = asked?;
        let now = self.clock.mono_ms();
        let lifetime = token_lifetime_ms(token.expires_in.as_ref());
        let value = token.access_token;
        self.secrets
            .add(&value, Some(now.saturating_add(lifetime)), now);
        let renew_after = renew_after_ms(lifetime);
        let token = Arc::new(Token {
            value,
            generation: previous.map_or(1, |t| t.generation + 1),
            renew_at: now.saturating_add(renew_after),
        });
        *self.token.lock().unwrap_or_else(|p| p.into_inner()) = Some(token.clone());
        // Logged outside the renewal lock: the log callback is foreign code.
        drop(flight);
        log::debug!("new Omnium token, renewed in {} s", renew_after / 1000);
        Ok(token)
    }

    /// `POST /api/token`; the secret travels in the query, as Omnium's API requires.
    fn request_token(&self) -> Result<TokenAnswer, Failure> {
        let url = Zeroizing::new(self.url(&format!(
            "/api/token?clientId={}&clientSecret={}&returnAsJson=true",
            encode_component(&self.client_id),
            Zeroizing::new(encode_component(self.client_secret.expose())).as_str()
        )));
        let req = HttpRequest {
            method: "POST",
            url: &url,
            bearer: None,
            body: None,
            max_response_bytes: page::cap::TOKEN,
        };
        // An error about this request may print its URL: mask the secret whatever its length.
        let mask = |m: String| crate::redact::redact_with(&m, &[&self.client_secret]);
        // Token answers do not count as Omnium being healthy: the token endpoint is
        // separate from (and not rate-limited like) the API the jobs need.
        let mut resp = self.transport.send(&req).map_err(|e| match e {
            NetError::NotSent(m) => {
                self.gate.note_down();
                Failure::Unreachable(mask(m))
            }
            NetError::Unknown(m) => Failure::Uncertain(mask(m)),
        })?;
        if resp.status == 429 {
            self.settle_retry_after(&mut resp);
        }
        match resp.status {
            200..=299 => {}
            300..=399 => return Err(redirected("POST /api/token", resp.status, false)),
            400 | 401 | 403 => {
                return Err(Failure::Unauthorized(format!(
                    "Omnium refused the API user {:?} (HTTP {} from /api/token); check client_id and client_secret",
                    self.client_id, resp.status
                )))
            }
            _ => {
                return Err(match classify(&resp, "POST /api/token").unwrap_err() {
                    Failure::Uncertain(m) => Failure::Uncertain(mask(m)),
                    other => other,
                })
            }
        }
        let answer: TokenAnswer = serde_json::from_slice(&resp.body).map_err(|e| {
            Failure::Uncertain(format!(
                // Not `e` itself: serde's message can quote the value (the token).
                "token response is not the expected JSON ({:?} error at line {} column {})",
                e.classify(),
                e.line(),
                e.column()
            ))
        })?;
        if answer.access_token.is_empty() {
            return Err(Failure::Uncertain(
                "token response has an empty accessToken".into(),
            ));
        }
        Ok(answer)
    }

    /// Checks that Omnium answers and accepts the API user, by renewing the token (the token
    /// endpoint is not rate-limited). Used at start and after an outage or refused
    /// credentials, never after a 429 pause (the next real request checks then).
    pub fn probe(&self) -> Result<(), Failure> {
        let current = self
            .token
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_ref()
            .map(|t| t.generation);
        self.token(Some(current.unwrap_or(0))).map(|_| ())
    }

    /// Reads a 429's Retry-After once, as it arrives: an HTTP date against the answer's
    /// `Date`, or without one against this client's clock (never the system's, which a test
    /// or simulation does not control); the header is replaced by the pause in seconds, so
    /// whatever classifies the answer later pauses the same. Returns the pause (ms).
    fn settle_retry_after(&self, resp: &mut HttpResponse) -> u64 {
        let ms = parse_retry_after(
            resp.retry_after.as_deref(),
            resp.date.as_deref(),
            Some(self.clock.wall_ms()),
        );
        resp.retry_after = Some(format!("{}.{:03}", ms / 1000, ms % 1000));
        ms
    }

    /// A redirect is not Omnium answering (a captive portal or a proxy did), so it does not
    /// count as healthy.
    fn note_answer(&self, status: u16, write: bool) {
        if status < 500 && status != 429 && !(300..400).contains(&status) {
            // Monotonic: compared with the worker's own try times, which a wall clock that
            // ran fast and was stepped back would otherwise trail for as long as it ran ahead.
            let now = self.clock.mono_ms();
            self.last_healthy_at.fetch_max(now, Ordering::Relaxed);
            self.gate.note_healthy(now);
            if write {
                self.last_healthy_write_at.fetch_max(now, Ordering::Relaxed);
            }
        }
    }

    /// `Throttled { held: true }` while a pause of this API user runs.
    fn check_pause(&self) -> Result<(), Failure> {
        let wait = self.gate.pause_left(self.clock.mono_ms());
        if wait > 0 {
            return Err(Failure::Throttled {
                retry_after_ms: wait as u64,
                held: true,
            });
        }
        Ok(())
    }

    /// When any client of this API user in this process last had an answer that was not
    /// 5xx, 429 or a redirect (monotonic ms; [`NEVER`]: not yet).
    pub fn user_healthy_at(&self) -> i64 {
        self.gate.healthy_at()
    }

    /// Calls `waker` when Omnium answers a client of this API user again after an outage.
    pub fn on_recovery(&self, waker: &Arc<user_gate::Waker>) {
        self.gate.on_recovery(waker);
    }

    /// Sends with the bearer token; on 401 renews the token once and sends again.
    fn send(
        &self,
        method: &'static str,
        path: &str,
        body: Option<(&'static str, &[u8])>,
    ) -> Result<HttpResponse, Failure> {
        self.send_body(
            method,
            path,
            body.map(|(t, b)| (t, Body::Bytes(b))),
            page::cap::DEFAULT,
        )
    }

    /// The body of a 2xx answer to `method path` (a JSON body for POST), at most `cap`
    /// bytes (the data set's cap, [`page::cap`]); `None` on 404.
    pub(crate) fn fetch(
        &self,
        method: &'static str,
        path: &str,
        json: Option<&[u8]>,
        cap: u64,
    ) -> Result<Option<HttpResponse>, Failure> {
        let body = json.map(|b| ("application/json", Body::Bytes(b)));
        let resp = self.send_body(method, path, body, cap)?;
        if resp.status == 404 {
            return Ok(None);
        }
        classify(&resp, &format!("{method} {path}"))?;
        Ok(Some(resp))
    }

    /// A page of `T` from `method path` (`json`: the body of a POST) under the data set's
    /// `cap`; `None` on 404. Parsed as typed items from the body as it arrives, never held
    /// whole ([`page::Page::read`]).
    pub(crate) fn fetch_page<T: serde::de::DeserializeOwned>(
        &self,
        method: &'static str,
        path: &str,
        json: Option<&Value>,
        data_set: &str,
        cap: u64,
    ) -> Result<Option<page::Page<T>>, Failure> {
        let bytes = json.map(to_json).transpose()?;
        let what = format!("{method} {}", path.split('?').next().unwrap_or(path));
        let Some(body) = self.fetch_open(method, path, bytes.as_deref(), &what, data_set, cap)?
        else {
            return Ok(None);
        };
        page::Page::read(body, cap, &what, data_set).map(Some)
    }

    /// One document of `T` from `GET path` (`what`: the request as errors name it) under
    /// `cap`; `None` on 404. Parsed typed from the body as it arrives ([`page::read_one`]).
    pub(crate) fn fetch_one<T: serde::de::DeserializeOwned>(
        &self,
        path: &str,
        what: &str,
        data_set: &str,
        cap: u64,
    ) -> Result<Option<T>, Failure> {
        let Some(body) = self.fetch_open("GET", path, None, what, data_set, cap)? else {
            return Ok(None);
        };
        page::read_one(body, cap, what, data_set).map(Some)
    }

    /// The body of a 2xx answer to `method path`, to read as it arrives; `None` on 404.
    /// Any other answer is classified as [`OmniumApi::fetch`] does.
    fn fetch_open(
        &self,
        method: &'static str,
        path: &str,
        json: Option<&[u8]>,
        what: &str,
        data_set: &str,
        cap: u64,
    ) -> Result<Option<Box<dyn std::io::Read + '_>>, Failure> {
        let body = json.map(|b| ("application/json", Body::Bytes(b)));
        let (resp, reader) = self
            .send_any(method, path, body, cap, true)
            .map_err(|f| match f {
                // Over the cap: the data set fails with its name in the message.
                Failure::Uncertain(m) if m == transport::too_large(cap) => Failure::Rejected {
                    status: 0,
                    message: format!("{data_set}: {what}: {m}"),
                },
                f => f,
            })?;
        if resp.status == 404 {
            return Ok(None);
        }
        classify(&resp, &format!("{method} {path}"))?;
        Ok(Some(reader.unwrap_or_else(|| {
            Box::new(std::io::Cursor::new(resp.body.clone()))
        })))
    }

    /// Sends with the bearer token; on 401 renews the token once and sends again (a
    /// streamed body, already consumed, is reported as uncertain for the job to retry).
    fn send_body(
        &self,
        method: &'static str,
        path: &str,
        body: Option<(&'static str, Body<'_>)>,
        cap: u64,
    ) -> Result<HttpResponse, Failure> {
        self.send_any(method, path, body, cap, false)
            .map(|(resp, _)| resp)
    }

    /// [`OmniumApi::send_body`]; with `open`, a 2xx answer's body is left to read as it
    /// arrives (the reader returned, the response's `body` empty), while any other answer's
    /// is read whole (its reason, under `cap`) as without.
    fn send_any(
        &self,
        method: &'static str,
        path: &str,
        body: Option<(&'static str, Body<'_>)>,
        cap: u64,
        open: bool,
    ) -> Result<(HttpResponse, Option<Box<dyn std::io::Read + '_>>), Failure> {
        // A 429 answered to another thread or till of this API user (or to an earlier step
        // of this job) holds every request, so none arrives inside the Retry-After window.
        self.check_pause()?;
        if has_dot_segment(path) {
            // Ids recorded by the POS cannot be dots only; one from Omnium's own data could.
            return Err(Failure::Rejected {
                status: 0,
                message: format!(
                    "{method} {path} was not sent: an id made only of dots would change the URL's path"
                ),
            });
        }
        let url = self.url(path);
        let mut token = self.token(None)?;
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
                bearer: Some(token.value.expose()),
                body: this_body,
                max_response_bytes: cap,
            };
            let write = changes_state(method, path);
            // A place in the API user's window, then the pause checked again: a 429 may
            // have arrived on another thread while this one waited.
            let permit = self.gate.acquire(WINDOW_WAIT).ok_or(Failure::Throttled {
                retry_after_ms: WINDOW_WAIT.as_millis() as u64,
                held: true,
            })?;
            self.check_pause()?;
            let sent = if open {
                self.transport.open(&req).and_then(|o| opened(o, cap))
            } else {
                self.transport.send(&req).map(|r| (r, None))
            };
            if write && !matches!(sent, Err(NetError::NotSent(_))) {
                WRITES_SENT.with(|w| w.set(w.get() + 1));
            }
            if matches!(sent, Err(NetError::NotSent(_))) {
                self.gate.note_down();
            }
            let (mut resp, reader) = sent.map_err(net_failure)?;
            if resp.body.len() as u64 > cap {
                // A transport that does not stop at the cap itself (a test's, the simulator's).
                return Err(Failure::Uncertain(transport::too_large(cap)));
            }
            if write && (400..500).contains(&resp.status) && resp.status != 408 {
                WRITES_REFUSED.with(|w| w.set(w.get() + 1));
            }
            if write && resp.status == 429 {
                WRITES_THROTTLED.with(|w| w.set(w.get() + 1));
            }
            if resp.status == 429 {
                // Hold every thread and till of this API user at once, before anything else.
                // One millisecond more: the monotonic clock reads whole milliseconds, rounded
                // down, and the pause must not end before Omnium's (the fleet's tills all
                // resume at its end).
                let pause = self.settle_retry_after(&mut resp) as i64;
                self.gate
                    .hold_until(self.clock.mono_ms().saturating_add(pause).saturating_add(1));
                permit.throttled();
            } else if resp.status < 500 {
                permit.answered();
            }
            // A body still to be read keeps its place in the window until it is read (the
            // answer is still arriving); any other answer gives it back now.
            let permit = match reader {
                Some(_) => Some(permit),
                None => {
                    drop(permit);
                    None
                }
            };
            self.note_answer(resp.status, write);
            if let Some(at) = resp
                .date
                .as_deref()
                .and_then(|d| chrono::DateTime::parse_from_rfc2822(d).ok())
            {
                self.answer_date_ms
                    .store(at.timestamp_millis().max(1), Ordering::Relaxed);
                self.answer_date_mono
                    .store(self.clock.mono_ms(), Ordering::Relaxed);
            }
            if (300..400).contains(&resp.status) {
                let what = format!("{method} {path}");
                return Err(redirected(&what, resp.status, method != "GET"));
            }
            if resp.status != 401 {
                let reader = reader.map(|body| {
                    Box::new(Arriving {
                        body,
                        _place: permit,
                    }) as Box<dyn std::io::Read + '_>
                });
                return Ok((resp, reader));
            }
            if renewed {
                break;
            }
            log::info!("Omnium answered 401 to {method} {path}; renewing the token once");
            token = self.token(Some(token.generation))?;
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
        self.send_body(method, path, Some((content_type, body)), page::cap::DEFAULT)
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
            Ok(()) => Ok(Created::New),
            Err(Failure::Rejected {
                status: 400 | 409,
                message,
            }) if says_already_exists(&resp.text()) => {
                log::info!("Omnium says order {order_id:?} already exists: {message}");
                Ok(Created::AlreadyExists(message))
            }
            Err(f) => Err(f),
        }
    }

    /// `GET /api/Orders/{id}`; `None` on 404. Read typed (only what the till reads of an
    /// order); an answer that is not such an order (a field of another type, named, never
    /// quoted) is uncertain: whether a sale, return or cancellation landed cannot be told
    /// from it, so the caller asks again later.
    pub fn get_order(&self, order_id: &str) -> Result<Option<orders::OmniumOrder>, Failure> {
        let path = format!("/api/Orders/{}", encode_component(order_id));
        self.fetch_one(&path, "GET /api/Orders/{id}", "orders", page::cap::DEFAULT)
            .map_err(|f| match f {
                // Not what Omnium said of the request (that keeps its status): what the
                // till could not read of the answer.
                Failure::Rejected { status: 0, message } => Failure::Uncertain(message),
                f => f,
            })
    }

    /// `POST /api/Returns/{orderId}/Return`.
    pub fn create_return(&self, order_id: &str, body: &[u8]) -> Result<Created, Failure> {
        let path = format!("/api/Returns/{}/Return", encode_component(order_id));
        let resp = self.send_json("POST", &path, body)?;
        match classify(&resp, &format!("POST {path}")) {
            Ok(()) => Ok(Created::New),
            Err(Failure::Rejected {
                status: 400 | 409,
                message,
            }) if says_already_exists(&resp.text()) => Ok(Created::AlreadyExists(message)),
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
        let bytes = to_json(body)?;
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

/// An answer's body read as it arrives, holding the request's place in the API user's window
/// until it is dropped.
struct Arriving<'a> {
    body: Box<dyn std::io::Read>,
    _place: Option<user_gate::Permit<'a>>,
}

impl std::io::Read for Arriving<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.body.read(buf)
    }
}

/// An answer opened for reading as it arrives: a 2xx answer's reader, or any other answer
/// read whole under `cap` (its reason is read from it), as `send` would.
fn opened(
    o: transport::OpenResponse,
    cap: u64,
) -> Result<(HttpResponse, Option<Box<dyn std::io::Read>>), NetError> {
    use std::io::Read;
    let mut resp = HttpResponse {
        status: o.status,
        retry_after: o.retry_after,
        date: o.date,
        body: Vec::new(),
    };
    if (200..300).contains(&o.status) {
        return Ok((resp, Some(o.body)));
    }
    o.body
        .take(cap.saturating_add(1))
        .read_to_end(&mut resp.body)
        .map_err(|e| NetError::Unknown(redact(&e.to_string())))?;
    if resp.body.len() as u64 > cap {
        return Err(NetError::Unknown(transport::too_large(cap)));
    }
    Ok((resp, None))
}

thread_local! {
    static WRITES_SENT: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
    static WRITES_REFUSED: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
    static WRITES_THROTTLED: std::cell::Cell<u64> = const { std::cell::Cell::new(0) };
}

/// Whether a request may change something in Omnium. Reads sent as POST (searches, the
/// existence check) do not.
fn changes_state(method: &str, path: &str) -> bool {
    if method == "GET" {
        return false;
    }
    let p = path.split('?').next().unwrap_or(path).to_ascii_lowercase();
    !(p.ends_with("/search")
        || p.ends_with("/searchstores")
        || p.ends_with("/scroll")
        || p.ends_with("/existmany"))
}

fn to_json(body: &Value) -> Result<Vec<u8>, Failure> {
    serde_json::to_vec(body).map_err(|e| Failure::Rejected {
        status: 0,
        message: e.to_string(),
    })
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

/// Whether the path (before any query) has a `.` or `..` segment, plain or percent-encoded.
fn has_dot_segment(path: &str) -> bool {
    let path = path.split('?').next().unwrap_or("");
    // Each segment is scanned in place (every request asks; decoding copies cost two
    // allocations a segment): dots only, each `.` or `%2E`/`%2e`.
    path.split('/').any(|seg| {
        let b = seg.as_bytes();
        let mut i = 0;
        while i < b.len() {
            if b[i] == b'.' {
                i += 1;
            } else if b[i..].starts_with(b"%2E") || b[i..].starts_with(b"%2e") {
                i += 3;
            } else {
                return false;
            }
        }
        !b.is_empty()
    })
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
    let message = || format!("{what}: {}", reason(resp));
    match status {
        200..=299 => Ok(()),
        300..=399 => Err(redirected(what, status, !what.starts_with("GET "))),
        429 => Err(Failure::Throttled {
            held: false,
            // OmniumApi has already turned an HTTP date into seconds by its clock
            // (`settle_retry_after`): no clock is needed here.
            retry_after_ms: parse_retry_after(
                resp.retry_after.as_deref(),
                resp.date.as_deref(),
                None,
            ),
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

/// Omnium's error bodies can be long and can echo what was sent (names, e-mails, phone
/// numbers): what goes into `last_error`, logs and `job.dead` is at most this much of it.
const MAX_REASON_CHARS: usize = 120;

/// A short, redacted reason from an error body: its `message`/`title`/`error` when it is
/// JSON, else its first line; e-mail addresses masked, secrets redacted, cut to
/// [`MAX_REASON_CHARS`] characters.
pub fn reason(resp: &HttpResponse) -> String {
    let text = resp.text();
    let picked = serde_json::from_str::<Value>(&text)
        .ok()
        .and_then(|v| {
            ["message", "title", "error", "errorMessage", "detail"]
                .iter()
                .find_map(|k| v.get(k).and_then(Value::as_str).map(str::to_string))
        })
        .unwrap_or_else(|| text.trim().lines().next().unwrap_or("").to_string());
    let masked: Vec<String> = picked
        .split(' ')
        .map(|w| {
            if w.contains('@') && w.contains('.') {
                "<e-mail>".to_string()
            } else {
                w.to_string()
            }
        })
        .collect();
    let mut out = redact(masked.join(" ").trim());
    if out.chars().count() > MAX_REASON_CHARS {
        out = out.chars().take(MAX_REASON_CHARS).collect();
        out.push('…');
    }
    out
}

/// Retry-After in seconds (or an HTTP date), capped at two hours.
///
/// An HTTP-date `Retry-After` is read against the answer's own `Date` (Omnium's clock), not
/// the till's clock, which may be hours off (CONTRACT §9 rule 9); without a `Date` the
/// till's clock `till_now_ms` (the injected clock's wall time) is the only reference (and
/// the cap bounds the pause). Without either, the default pause.
pub fn parse_retry_after(
    header: Option<&str>,
    date: Option<&str>,
    till_now_ms: Option<i64>,
) -> u64 {
    let Some(h) = header.map(str::trim) else {
        return DEFAULT_RETRY_AFTER_MS;
    };
    let ms = if let Ok(secs) = h.parse::<f64>() {
        if secs.is_finite() && secs >= 0.0 {
            (secs * 1000.0).round() as u64
        } else {
            DEFAULT_RETRY_AFTER_MS
        }
    } else if let Ok(at) = chrono::DateTime::parse_from_rfc2822(h) {
        let now = date
            .and_then(|d| chrono::DateTime::parse_from_rfc2822(d.trim()).ok())
            .map(|d| d.timestamp_millis())
            .or(till_now_ms);
        match now {
            Some(now) => at.timestamp_millis().saturating_sub(now).max(0) as u64,
            None => DEFAULT_RETRY_AFTER_MS,
        }
    } else {
        DEFAULT_RETRY_AFTER_MS
    };
    ms.min(MAX_RETRY_AFTER_MS)
}

/// Percent-encodes everything but RFC 3986 unreserved characters, and `.` too: an id `..`
/// must never become a dot segment that a server or proxy normalising the path would
/// follow to another endpoint (with the bearer token).
pub fn encode_component(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'~') {
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
            date: None,
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
                retry_after_ms: 7000,
                held: false
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
    fn error_bodies_become_a_short_redacted_reason() {
        let long = format!(
            "Customer kari.nordmann@example.no (phone 4790000000) is invalid: {}",
            "x".repeat(600)
        );
        let Err(Failure::Rejected { message, .. }) =
            classify(&resp(400, &long, None), "PUT /api/PrivateCustomers")
        else {
            panic!("a 400 is a rejection");
        };
        assert!(!message.contains("kari.nordmann"), "{message}");
        assert!(message.chars().count() <= 160, "{message}");
        assert!(message.starts_with("PUT /api/PrivateCustomers: Customer <e-mail>"));
        let json =
            r#"{"title": "Order is invalid", "errors": {"email": ["ola@example.no is taken"]}}"#;
        assert_eq!(
            reason(&resp(400, json, None)),
            "Order is invalid",
            "only the title of a JSON problem"
        );
        // "Already exists" is still recognised from the whole body.
        let dup = format!("{} order S-1 already exists", "y".repeat(300));
        assert!(matches!(
            classify(&resp(409, &dup, None), "x"),
            Err(Failure::Rejected { status: 409, .. })
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

    /// A fake Omnium: tokens `t1`, `t2`, … with `expiresIn` from `expires_in`; the API
    /// answers 401 to tokens below `valid_from` and 200 otherwise.
    struct FakeOmnium {
        expires_in: String,
        token_delay: std::time::Duration,
        /// Token requests are answered with this status instead (0: a token).
        token_status: u16,
        tokens: std::sync::atomic::AtomicU64,
        valid_from: std::sync::atomic::AtomicU64,
    }

    impl FakeOmnium {
        fn new(expires_in: &str) -> Arc<FakeOmnium> {
            Arc::new(FakeOmnium {
                expires_in: expires_in.to_string(),
                token_delay: std::time::Duration::ZERO,
                token_status: 0,
                tokens: Default::default(),
                valid_from: Default::default(),
            })
        }
        fn issued(&self) -> u64 {
            self.tokens.load(Ordering::SeqCst)
        }
    }

    impl Transport for FakeOmnium {
        fn send(&self, req: &HttpRequest<'_, '_>) -> Result<HttpResponse, NetError> {
            let ok = |body: String| HttpResponse {
                status: 200,
                retry_after: None,
                date: None,
                body: body.into_bytes(),
            };
            if req.url.contains("/api/token") {
                std::thread::sleep(self.token_delay);
                let n = self.tokens.fetch_add(1, Ordering::SeqCst) + 1;
                if self.token_status != 0 {
                    return Ok(HttpResponse {
                        status: self.token_status,
                        retry_after: None,
                        date: None,
                        body: Vec::new(),
                    });
                }
                return Ok(ok(format!(
                    r#"{{"accessToken": "t{n}", "expiresIn": {}}}"#,
                    self.expires_in
                )));
            }
            let n: u64 = req.bearer.unwrap()[1..].parse().unwrap();
            if n < self.valid_from.load(Ordering::SeqCst) {
                return Ok(HttpResponse {
                    status: 401,
                    retry_after: None,
                    date: None,
                    body: Vec::new(),
                });
            }
            Ok(ok("{}".into()))
        }
    }

    fn api(fake: &Arc<FakeOmnium>, clock: &Arc<crate::clock::ManualClock>) -> OmniumApi {
        api_with_secret(fake, clock, "secret-of-the-test")
    }

    fn api_with_secret(
        fake: &Arc<FakeOmnium>,
        clock: &Arc<crate::clock::ManualClock>,
        secret: &str,
    ) -> OmniumApi {
        let cfg = OmniumConfig {
            base_url: "https://omnium.test".into(),
            client_id: "id".into(),
            client_secret: Secret::new(secret),
            timeout_ms: 1000,
            max_concurrency: 4,
            proxy: None,
        };
        OmniumApi::with_transport(&cfg, fake.clone()).with_clock(clock.clone())
    }

    /// Answers a token, then `status` and `body` to everything else.
    struct Canned {
        status: u16,
        body: &'static str,
    }

    impl Transport for Canned {
        fn send(&self, req: &HttpRequest<'_, '_>) -> Result<HttpResponse, NetError> {
            let (status, body) = if req.url.contains("/api/token") {
                (200, r#"{"accessToken": "t", "expiresIn": 3600}"#)
            } else {
                (self.status, self.body)
            };
            Ok(HttpResponse {
                status,
                retry_after: None,
                date: None,
                body: body.as_bytes().to_vec(),
            })
        }
    }

    fn canned(status: u16, body: &'static str) -> OmniumApi {
        let cfg = OmniumConfig {
            base_url: "https://omnium.test".into(),
            client_id: "id".into(),
            client_secret: Secret::new("secret-of-the-test"),
            timeout_ms: 1000,
            max_concurrency: 4,
            proxy: None,
        };
        OmniumApi::with_transport(&cfg, Arc::new(Canned { status, body }))
    }

    /// An order read back (did a sale, a return, a cancellation land?) that the till cannot
    /// read is uncertain, asked again later, its field named and never quoted; what Omnium
    /// says of the request itself keeps its status.
    #[test]
    fn an_order_read_back_with_a_wrong_type_is_uncertain_and_a_refusal_stays_one() {
        let api = canned(
            200,
            r#"{"id": "S-1", "storeId": "oslo-1", "customerPhone": 4791234567}"#,
        );
        let Err(Failure::Uncertain(m)) = api.get_order("S-1") else {
            panic!("uncertain");
        };
        assert_eq!(
            m,
            "orders: GET /api/Orders/{id}: customerPhone: wrong type, expected a string"
        );
        let order = canned(200, r#"{"id": "S-1", "storeId": "oslo-1", "extra": [1]}"#)
            .get_order("S-1")
            .unwrap()
            .unwrap();
        assert_eq!(order.store_id.as_deref(), Some("oslo-1"));
        assert!(matches!(
            canned(403, r#"{"message": "no access"}"#).get_order("S-1"),
            Err(Failure::Rejected { status: 403, .. })
        ));
        assert!(matches!(canned(404, "").get_order("S-1"), Ok(None)));
    }

    /// A page read as it arrives keeps its request's place in the API user's window until
    /// it is read: another request does not start while the answer is still coming.
    #[test]
    fn a_page_still_arriving_keeps_its_place_in_the_window() {
        let api = canned(200, r#"{"result": []}"#);
        let places = |api: &OmniumApi| {
            // Held until all are counted.
            std::iter::from_fn(|| api.gate.acquire(std::time::Duration::ZERO))
                .take(1000)
                .collect::<Vec<_>>()
                .len()
        };
        let what = "POST /api/Orders/Search";
        let body = api
            .fetch_open(
                "POST",
                "/api/Orders/Search",
                Some(b"{}"),
                what,
                "orders",
                1024,
            )
            .unwrap()
            .unwrap();
        // The window as the answer left it (an answer may widen it).
        let window = api.gate.window();
        assert_eq!(
            places(&api),
            window - 1,
            "the page being read holds a place"
        );
        drop(body);
        assert_eq!(places(&api), window);
    }

    #[test]
    fn token_lifetimes_are_clamped_without_overflow() {
        for (expires_in, lifetime) in [
            ("864000", 864_000_000),
            ("1.2e15", MAX_TOKEN_LIFETIME_MS),
            ("9223372036854775807", MAX_TOKEN_LIFETIME_MS),
            ("18446744073709551615", MAX_TOKEN_LIFETIME_MS),
            ("1e300", MAX_TOKEN_LIFETIME_MS),
            ("0", MIN_TOKEN_LIFETIME_MS),
            ("-5", MIN_TOKEN_LIFETIME_MS),
            ("-1e300", MIN_TOKEN_LIFETIME_MS),
            ("0.5", MIN_TOKEN_LIFETIME_MS),
            ("3600", 3_600_000),
        ] {
            let n: serde_json::Number = serde_json::from_str(expires_in).unwrap();
            assert_eq!(token_lifetime_ms(Some(&n)), lifetime, "{expires_in}");
        }
        assert_eq!(token_lifetime_ms(None), DEFAULT_TOKEN_LIFETIME_MS);
        // A short lifetime is renewed at half of it, a long one at 80 %.
        assert_eq!(renew_after_ms(MIN_TOKEN_LIFETIME_MS), 30_000);
        assert_eq!(renew_after_ms(MAX_TOKEN_LIFETIME_MS), 691_200_000);
    }

    #[test]
    fn a_huge_expires_in_does_not_renew_on_every_call() {
        let clock = Arc::new(crate::clock::ManualClock::new(1_700_000_000_000));
        let fake = FakeOmnium::new("1.2e18");
        let api = api(&fake, &clock);
        for _ in 0..5 {
            api.get_json("/api/Markets").unwrap();
        }
        assert_eq!(fake.issued(), 1);
        // Renewed early, at 80 % of the 10 days the lifetime is clamped to, on the
        // monotonic clock: a wall clock jumping a year ahead changes nothing.
        clock.jump_wall(365 * 86_400_000);
        clock.advance(691_199_000);
        api.get_json("/api/Markets").unwrap();
        assert_eq!(fake.issued(), 1);
        clock.advance(2_000);
        api.get_json("/api/Markets").unwrap();
        assert_eq!(fake.issued(), 2);
    }

    #[test]
    fn a_tiny_expires_in_is_a_minute() {
        let clock = Arc::new(crate::clock::ManualClock::new(0));
        let fake = FakeOmnium::new("0");
        let api = api(&fake, &clock);
        api.get_json("/api/Markets").unwrap();
        clock.advance(29_000);
        api.get_json("/api/Markets").unwrap();
        assert_eq!(fake.issued(), 1);
        clock.advance(2_000);
        api.get_json("/api/Markets").unwrap();
        assert_eq!(fake.issued(), 2);
    }

    #[test]
    fn threads_needing_a_token_at_once_share_one_request() {
        let clock = Arc::new(crate::clock::ManualClock::new(0));
        let mut fake = FakeOmnium::new("864000");
        Arc::get_mut(&mut fake).unwrap().token_delay = std::time::Duration::from_millis(200);
        let api = api(&fake, &clock);
        std::thread::scope(|s| {
            for _ in 0..8 {
                s.spawn(|| api.get_json("/api/Markets").unwrap());
            }
        });
        assert_eq!(fake.issued(), 1, "single flight");
    }

    /// A token request that fails is not repeated by each thread that was waiting for it:
    /// they all take its failure (each request would send the secret again).
    #[test]
    fn threads_waiting_for_a_token_share_its_failure() {
        for status in [401, 503] {
            let clock = Arc::new(crate::clock::ManualClock::new(0));
            let mut fake = FakeOmnium::new("864000");
            let f = Arc::get_mut(&mut fake).unwrap();
            f.token_delay = std::time::Duration::from_millis(300);
            f.token_status = status;
            let api = api(&fake, &clock);
            std::thread::scope(|s| {
                for _ in 0..8 {
                    s.spawn(|| assert!(api.get_json("/api/Markets").is_err()));
                }
            });
            assert_eq!(
                fake.issued(),
                1,
                "HTTP {status}: one request for all threads"
            );
            // A later call asks again: a failure is shared, not cached.
            assert!(api.get_json("/api/Markets").is_err());
            assert_eq!(fake.issued(), 2);
        }
    }

    #[test]
    fn a_401_to_many_threads_renews_the_token_once() {
        let clock = Arc::new(crate::clock::ManualClock::new(0));
        let mut fake = FakeOmnium::new("864000");
        Arc::get_mut(&mut fake).unwrap().token_delay = std::time::Duration::from_millis(100);
        let api = api(&fake, &clock);
        api.get_json("/api/Markets").unwrap();
        // Omnium revokes t1: every thread gets a 401 with it, and all share one new token.
        fake.valid_from.store(2, Ordering::SeqCst);
        let barrier = std::sync::Barrier::new(8);
        std::thread::scope(|s| {
            for _ in 0..8 {
                s.spawn(|| {
                    barrier.wait();
                    api.get_json("/api/Markets").unwrap()
                });
            }
        });
        assert_eq!(fake.issued(), 2, "one renewal for all threads");
    }

    #[test]
    fn the_secret_and_tokens_are_forgotten_at_close() {
        let clock = Arc::new(crate::clock::ManualClock::new(0));
        let fake = FakeOmnium::new("864000");
        let api = api_with_secret(&fake, &clock, "only-this-client-knows");
        api.get_json("/api/Markets").unwrap();
        assert_eq!(api.secrets.len(), 2, "the secret and one token");
        assert!(redact("only-this-client-knows").contains("***"));
        api.forget_secrets();
        assert!(api.secrets.is_empty());
        assert_eq!(redact("only-this-client-knows"), "only-this-client-knows");
        assert!(matches!(
            api.get_json("/api/Markets"),
            Err(Failure::Unauthorized(_))
        ));
        assert_eq!(fake.issued(), 1, "no token asked for after close");
    }

    #[test]
    fn retry_after_is_capped_at_two_hours() {
        assert_eq!(
            parse_retry_after(Some("99999"), None, None),
            MAX_RETRY_AFTER_MS
        );
        assert_eq!(parse_retry_after(Some("2"), None, None), 2000);
        assert_eq!(parse_retry_after(None, None, None), DEFAULT_RETRY_AFTER_MS);
        assert_eq!(
            parse_retry_after(Some("soon"), None, None),
            DEFAULT_RETRY_AFTER_MS
        );
    }

    /// Rule 9.9: an HTTP-date Retry-After is read against Omnium's Date, so a till whose
    /// clock is a day behind (or ahead) pauses for what Omnium asked, not a day.
    #[test]
    fn an_http_date_retry_after_is_read_against_omniums_date() {
        let at = "Tue, 01 Dec 2026 10:00:07 GMT";
        let date = "Tue, 01 Dec 2026 10:00:00 GMT";
        assert_eq!(parse_retry_after(Some(at), Some(date), Some(0)), 7_000);
        assert_eq!(
            parse_retry_after(Some(date), Some(at), Some(0)),
            0,
            "a date in the past means now"
        );
    }

    /// Answers tokens, and 429 with an HTTP-date Retry-After and no Date to the rest.
    struct ThrottlesUntil(String);

    impl Transport for ThrottlesUntil {
        fn send(&self, req: &HttpRequest<'_, '_>) -> Result<HttpResponse, NetError> {
            if req.url.contains("/api/token") {
                return Ok(resp(
                    200,
                    r#"{"accessToken": "t1", "expiresIn": 3600}"#,
                    None,
                ));
            }
            Ok(resp(429, "", Some(&self.0)))
        }
    }

    /// Without a Date, an HTTP-date Retry-After is read against the injected clock (the
    /// till's), not the system's: a till (or a simulation) whose clock is not the machine's
    /// pauses for what Omnium asked.
    #[test]
    fn an_http_date_retry_after_without_a_date_is_read_against_the_clock() {
        let clock = Arc::new(crate::clock::ManualClock::new(1_700_000_000_000));
        let at = chrono::DateTime::from_timestamp_millis(1_700_000_030_000)
            .unwrap()
            .to_rfc2822();
        let cfg = OmniumConfig {
            base_url: "https://omnium.test".into(),
            client_id: "id".into(),
            client_secret: Secret::new("secret-of-the-test"),
            timeout_ms: 1000,
            max_concurrency: 4,
            proxy: None,
        };
        let api =
            OmniumApi::with_transport(&cfg, Arc::new(ThrottlesUntil(at))).with_clock(clock.clone());
        assert_eq!(
            api.get_json("/api/Markets").unwrap_err(),
            Failure::Throttled {
                retry_after_ms: 30_000,
                held: false
            }
        );
    }

    #[test]
    fn path_segments_are_encoded() {
        assert_eq!(encode_component("S-1/2 ?x"), "S-1%2F2%20%3Fx");
        assert_eq!(encode_component(".."), "%2E%2E");
        assert_eq!(encode_component("S-1.5"), "S-1%2E5");
    }

    #[test]
    fn a_path_with_a_dot_segment_is_never_sent() {
        for path in [
            "/api/Orders/../OrderLines",
            "/api/Orders/./x",
            "/api/Orders/%2E%2E/Cancel",
            "/api/Orders/%2e/Cancel",
            "/api/Orders/..",
            "/api/Orders/.%2e/x",
            "/api/Orders/%2E.",
        ] {
            assert!(has_dot_segment(path), "{path}");
        }
        for path in [
            "/api/Orders/S-1%2E5",
            "/api/Orders/a..b",
            "/api/token?x=..",
            "/api/Orders/%2",
            "/api/Orders/%2%2EE",
            "/api/Orders/.%2F",
            "/api/Orders//x",
        ] {
            assert!(!has_dot_segment(path), "{path}");
        }
    }
}
