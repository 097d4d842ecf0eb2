//! The network seam: one request in, one response or a classified network error out.
//! `UreqTransport` is the real one; tests may put their own behind the trait.

use std::collections::HashMap;
use std::time::{Duration, Instant};
use ureq::http::Uri;
// ureq's resolver and connector seams are outside its semver promise: Cargo.lock pins the
// version, and a ureq update must keep `CachedResolver` compiling (its unit test below).
use ureq::unversioned::resolver::{DefaultResolver, ResolvedSocketAddrs, Resolver};
use ureq::unversioned::transport::{DefaultConnector, NextTimeout};

pub struct HttpRequest<'a, 'b> {
    pub method: &'static str,
    pub url: &'a str,
    pub bearer: Option<&'a str>,
    /// Body and its content type.
    pub body: Option<(&'static str, Body<'b>)>,
    /// An answer's body longer than this is not read ([`too_large`]): each data set has its
    /// own cap (`omnium::page::cap`).
    pub max_response_bytes: u64,
}

/// A request body: bytes in memory, or a reader streamed as it is sent (a receipt PDF).
pub enum Body<'a> {
    Bytes(&'a [u8]),
    Stream(std::cell::RefCell<&'a mut dyn std::io::Read>),
}

#[derive(Debug)]
pub struct HttpResponse {
    pub status: u16,
    pub retry_after: Option<String>,
    /// The `Date` header: Omnium's clock when it answered (second resolution).
    pub date: Option<String>,
    pub body: Vec<u8>,
}

/// A body may carry a token (the token endpoint's answer): wiped when dropped.
impl Drop for HttpResponse {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.body);
    }
}

impl HttpResponse {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum NetError {
    /// The request never left: refused, unresolvable, connect timeout, TLS handshake.
    NotSent(String),
    /// It may have been received and applied: timeout or reset after sending.
    Unknown(String),
}

/// An answer whose body is still to be read, as it arrives ([`Transport::open`]).
pub struct OpenResponse {
    pub status: u16,
    pub retry_after: Option<String>,
    pub date: Option<String>,
    /// The body, not limited: whoever reads it stops at its cap.
    pub body: Box<dyn std::io::Read>,
}

pub trait Transport: Send + Sync {
    /// The answer with its body read whole, up to `req.max_response_bytes` ([`too_large`]
    /// past it).
    fn send(&self, req: &HttpRequest<'_, '_>) -> Result<HttpResponse, NetError>;

    /// The answer with its body left to read as it arrives (a page parsed from the socket,
    /// never held whole). By default [`Transport::send`], its body then read from memory
    /// (transports of tests, which answer from memory anyway).
    fn open(&self, req: &HttpRequest<'_, '_>) -> Result<OpenResponse, NetError> {
        let mut resp = self.send(req)?;
        Ok(OpenResponse {
            status: resp.status,
            retry_after: resp.retry_after.take(),
            date: resp.date.take(),
            body: Box::new(std::io::Cursor::new(std::mem::take(&mut resp.body))),
        })
    }
}

/// What an answer over its cap fails with.
pub fn too_large(cap: u64) -> String {
    let size = if cap >= 1024 * 1024 {
        format!("{} MiB", cap / (1024 * 1024))
    } else {
        format!("{} KiB", cap / 1024)
    };
    format!("the answer is larger than the {size} allowed for this request; not read")
}

pub struct UreqTransport {
    agent: ureq::Agent,
}

impl UreqTransport {
    /// Connect, response and overall limits: ureq sets none by default, and a hung request
    /// would stall the worker forever. (Fewer per-phase timers also cost less per request;
    /// the overall limit covers the phases left out.)
    ///
    /// No redirect is followed (CONTRACT §9 rule 11: a 3xx comes back as an answer, for the
    /// caller to treat as "unreachable"), and no proxy is taken from the environment: the
    /// only proxy is the one passed here, from the config.
    pub fn new(
        timeout: Duration,
        max_connections: usize,
        proxy: Option<ureq::Proxy>,
    ) -> UreqTransport {
        UreqTransport::with_resolver(
            timeout,
            max_connections,
            proxy,
            CachedResolver::new(DefaultResolver::default(), NAME_TTL),
        )
    }

    fn with_resolver(
        timeout: Duration,
        max_connections: usize,
        proxy: Option<ureq::Proxy>,
        resolver: impl Resolver,
    ) -> UreqTransport {
        let connect = timeout.min(Duration::from_secs(10));
        let config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .max_redirects(0)
            .proxy(proxy)
            .timeout_connect(Some(connect))
            .timeout_recv_response(Some(timeout))
            .timeout_global(Some(timeout + connect))
            .max_idle_connections_per_host(max_connections + 1)
            .user_agent(concat!("flow-omnium/", env!("CARGO_PKG_VERSION")))
            .build();
        let agent = ureq::Agent::with_parts(config, DefaultConnector::new(), resolver);
        UreqTransport { agent }
    }
}

/// How long a resolved address of Omnium's host is used before it is looked up again.
const NAME_TTL: Duration = Duration::from_secs(60);

/// ureq resolves the host before every request, even one that goes out on a kept-alive
/// connection, and with a timeout set (ours always is) its resolver starts a thread for
/// each lookup, an IP literal included: a thread and a `getaddrinfo` per request, which at
/// loopback speed was most of a drained sale's time. This keeps each host's addresses for
/// [`NAME_TTL`] (as a browser does), so a drain resolves once a minute; a failed lookup is
/// not kept. The cache is per agent (per client), a few entries (Omnium's host, a proxy
/// resolving locally). A connection refused at a cached address after Omnium moved is a
/// "not sent" failure like any other, retried; the next lookup is at most a minute away.
#[derive(Debug)]
struct CachedResolver<R> {
    inner: R,
    ttl: Duration,
    /// `scheme://host:port` → the addresses and when they were looked up (monotonic: a
    /// cache lifetime, not a schedule of the worker's).
    names: std::sync::Mutex<HashMap<String, (ResolvedSocketAddrs, Instant)>>,
}

impl<R: Resolver> CachedResolver<R> {
    fn new(inner: R, ttl: Duration) -> CachedResolver<R> {
        CachedResolver {
            inner,
            ttl,
            names: std::sync::Mutex::default(),
        }
    }
}

/// More distinct hosts than this (a misconfiguration): the cache starts over.
const MAX_NAMES: usize = 16;

impl<R: Resolver> Resolver for CachedResolver<R> {
    fn resolve(
        &self,
        uri: &Uri,
        config: &ureq::config::Config,
        timeout: NextTimeout,
    ) -> Result<ResolvedSocketAddrs, ureq::Error> {
        let key = format!(
            "{}://{}",
            uri.scheme_str().unwrap_or(""),
            uri.authority().map_or("", |a| a.as_str())
        );
        let names = || self.names.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((addrs, at)) = names().get(&key) {
            if at.elapsed() < self.ttl {
                return Ok(addrs.clone());
            }
        }
        // Looked up without holding the lock (it may take up to the timeout).
        let addrs = self.inner.resolve(uri, config, timeout)?;
        let mut names = names();
        if names.len() >= MAX_NAMES {
            names.clear();
        }
        names.insert(key, (addrs.clone(), Instant::now()));
        Ok(addrs)
    }
}

impl UreqTransport {
    /// Sends the request; the answer's status line and headers have arrived, its body not.
    fn exchange(
        &self,
        req: &HttpRequest<'_, '_>,
    ) -> Result<ureq::http::Response<ureq::Body>, NetError> {
        let auth = req
            .bearer
            .map(|t| zeroize::Zeroizing::new(format!("Bearer {t}")));
        let result = match (req.method, &req.body) {
            ("GET", _) => {
                let mut b = self.agent.get(req.url).header("Accept", "application/json");
                if let Some(a) = &auth {
                    b = b.header("Authorization", a.as_str());
                }
                b.call()
            }
            (method, body) => {
                let mut b = match method {
                    "PUT" => self.agent.put(req.url),
                    "PATCH" => self.agent.patch(req.url),
                    _ => self.agent.post(req.url),
                }
                .header("Accept", "application/json");
                if let Some(a) = &auth {
                    b = b.header("Authorization", a.as_str());
                }
                match body {
                    Some((content_type, Body::Bytes(bytes))) => {
                        b.header("Content-Type", *content_type).send(*bytes)
                    }
                    Some((content_type, Body::Stream(reader))) => {
                        let mut reader = reader.borrow_mut();
                        b.header("Content-Type", *content_type)
                            .send(ureq::SendBody::from_reader(&mut **reader))
                    }
                    None => b.send_empty(),
                }
            }
        };
        result.map_err(|e| classify_error(e, Phase::Exchange))
    }
}

/// A header's value, if it is text.
fn header(resp: &ureq::http::Response<ureq::Body>, name: &str) -> Option<String> {
    resp.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// A body reader whose errors are classified as [`UreqTransport::send`]'s are: after the
/// status line, so "unknown", redacted.
struct BodyReader(ureq::BodyReader<'static>);

impl std::io::Read for BodyReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.0.read(buf).map_err(|e| {
            std::io::Error::new(
                e.kind(),
                format!(
                    "the answer broke off: {}",
                    crate::redact::redact(&e.to_string())
                ),
            )
        })
    }
}

impl Transport for UreqTransport {
    fn open(&self, req: &HttpRequest<'_, '_>) -> Result<OpenResponse, NetError> {
        let resp = self.exchange(req)?;
        // An answer that says it is over the cap is not read at all (one that does not say
        // is stopped at the cap by its reader).
        let length = header(&resp, "content-length").and_then(|l| l.trim().parse::<u64>().ok());
        if length.is_some_and(|l| l > req.max_response_bytes) {
            return Err(NetError::Unknown(too_large(req.max_response_bytes)));
        }
        let (status, retry_after, date) = (
            resp.status().as_u16(),
            header(&resp, "retry-after"),
            header(&resp, "date"),
        );
        Ok(OpenResponse {
            status,
            retry_after,
            date,
            body: Box::new(BodyReader(resp.into_body().into_reader())),
        })
    }

    fn send(&self, req: &HttpRequest<'_, '_>) -> Result<HttpResponse, NetError> {
        let mut resp = self.exchange(req)?;
        let status = resp.status().as_u16();
        let retry_after = header(&resp, "retry-after");
        let date = header(&resp, "date");
        let body = resp
            .body_mut()
            .with_config()
            .limit(req.max_response_bytes)
            .read_to_vec()
            .map_err(|e| match e {
                ureq::Error::BodyExceedsLimit(_) => {
                    NetError::Unknown(too_large(req.max_response_bytes))
                }
                e => classify_error(e, Phase::Body),
            })?;
        Ok(HttpResponse {
            status,
            retry_after,
            date,
            body,
        })
    }
}

/// Where a ureq error arose: in the exchange (connecting, sending, up to the status line
/// and headers), or while reading the body of an answer that had begun.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Phase {
    Exchange,
    Body,
}

/// "Never sent" only for errors that provably come before any byte of the request is
/// written: the name did not resolve, the connection was refused or never made, the URL or
/// request could not be built. Everything else may have reached Omnium (issue 8 defect 3):
/// an I/O error (unreachable host or network, not found) can come from a write on a pooled
/// connection, a TLS error from a record after the handshake, and any error reading the
/// body comes after the status line arrived.
fn classify_error(e: ureq::Error, phase: Phase) -> NetError {
    use std::io::ErrorKind;
    let text = crate::redact::redact(&e.to_string());
    if phase == Phase::Body {
        return NetError::Unknown(text);
    }
    match &e {
        // Only `connect` reports a refusal (a TCP connection that exists is reset, not
        // refused).
        ureq::Error::Io(io) if io.kind() == ErrorKind::ConnectionRefused => NetError::NotSent(text),
        ureq::Error::Timeout(ureq::Timeout::Resolve | ureq::Timeout::Connect) => {
            NetError::NotSent(text)
        }
        ureq::Error::HostNotFound
        | ureq::Error::ConnectionFailed
        | ureq::Error::BadUri(_)
        | ureq::Error::Http(_)
        | ureq::Error::InvalidProxyUrl => NetError::NotSent(text),
        _ => NetError::Unknown(text),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Error as IoError, ErrorKind};

    fn io(kind: ErrorKind) -> ureq::Error {
        ureq::Error::Io(IoError::new(kind, "x"))
    }

    /// Counts the lookups that reach the real resolver.
    #[derive(Debug, Default)]
    struct Counting {
        inner: DefaultResolver,
        lookups: std::sync::atomic::AtomicUsize,
    }

    impl Resolver for &'static Counting {
        fn resolve(
            &self,
            uri: &Uri,
            config: &ureq::config::Config,
            timeout: NextTimeout,
        ) -> Result<ResolvedSocketAddrs, ureq::Error> {
            self.lookups
                .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            self.inner.resolve(uri, config, timeout)
        }
    }

    /// A keep-alive HTTP server answering every GET with 200 "ok"; returns its port.
    fn keep_alive_server() -> u16 {
        use std::io::{BufRead, BufReader, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("address").port();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                std::thread::spawn(move || {
                    let mut reader = BufReader::new(stream.try_clone().expect("clone"));
                    let mut stream = stream;
                    loop {
                        let mut line = String::new();
                        loop {
                            line.clear();
                            match reader.read_line(&mut line) {
                                Ok(0) | Err(_) => return,
                                Ok(_) if line == "\r\n" => break,
                                Ok(_) => {}
                            }
                        }
                        let answer = "HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
                        if stream.write_all(answer.as_bytes()).is_err() {
                            return;
                        }
                    }
                });
            }
        });
        port
    }

    fn get(t: &UreqTransport, url: &str) {
        let req = HttpRequest {
            method: "GET",
            url,
            bearer: None,
            body: None,
            max_response_bytes: 1024,
        };
        let resp = t.send(&req).expect("answered");
        assert_eq!((resp.status, resp.text().as_str()), (200, "ok"));
    }

    /// Issue 10 target 5: ureq looked the host up before every request, on a thread of its
    /// own, even on a kept-alive connection (a thread start per drained sale). A lookup is
    /// kept for its time to live; another host (or port) is looked up on its own.
    #[test]
    fn a_host_is_looked_up_once_per_time_to_live_not_per_request() {
        let (a, b) = (keep_alive_server(), keep_alive_server());
        let counting: &'static Counting = Box::leak(Box::default());
        let t = UreqTransport::with_resolver(
            Duration::from_secs(10),
            1,
            None,
            CachedResolver::new(counting, NAME_TTL),
        );
        let lookups = || counting.lookups.load(std::sync::atomic::Ordering::SeqCst);
        for _ in 0..5 {
            get(&t, &format!("http://127.0.0.1:{a}/x"));
        }
        assert_eq!(lookups(), 1, "one lookup for five requests to one host");
        get(&t, &format!("http://127.0.0.1:{b}/y"));
        assert_eq!(lookups(), 2, "another port is another lookup");
        // Past its time to live, a name is looked up again.
        let expiring: &'static Counting = Box::leak(Box::default());
        let t = UreqTransport::with_resolver(
            Duration::from_secs(10),
            1,
            None,
            CachedResolver::new(expiring, Duration::ZERO),
        );
        get(&t, &format!("http://127.0.0.1:{a}/x"));
        get(&t, &format!("http://127.0.0.1:{a}/x"));
        assert_eq!(
            expiring.lookups.load(std::sync::atomic::Ordering::SeqCst),
            2
        );
    }

    /// Issue 8 defect 3: only errors before any byte of the request left are "not sent".
    #[test]
    fn only_errors_before_the_request_left_count_as_never_sent() {
        let not_sent = |e, phase| matches!(classify_error(e, phase), NetError::NotSent(_));
        assert!(not_sent(io(ErrorKind::ConnectionRefused), Phase::Exchange));
        assert!(not_sent(ureq::Error::HostNotFound, Phase::Exchange));
        assert!(not_sent(ureq::Error::ConnectionFailed, Phase::Exchange));
        assert!(not_sent(
            ureq::Error::Timeout(ureq::Timeout::Connect),
            Phase::Exchange
        ));
        for kind in [
            ErrorKind::HostUnreachable,
            ErrorKind::NetworkUnreachable,
            ErrorKind::NotFound,
            ErrorKind::AddrNotAvailable,
            ErrorKind::ConnectionReset,
            ErrorKind::BrokenPipe,
        ] {
            assert!(!not_sent(io(kind), Phase::Exchange), "{kind:?}");
        }
        assert!(!not_sent(
            ureq::Error::Tls("bad record mac"),
            Phase::Exchange
        ));
        assert!(!not_sent(
            ureq::Error::Timeout(ureq::Timeout::RecvResponse),
            Phase::Exchange
        ));
        // Reading the body: the status line arrived, so the request surely left.
        assert!(!not_sent(io(ErrorKind::ConnectionRefused), Phase::Body));
        assert!(!not_sent(ureq::Error::HostNotFound, Phase::Body));
    }
}
