//! A small HTTP/1.1 server on `std::net`, just enough for the simulator: keep-alive, Content-Length and
//! chunked request bodies, one-write responses, a "down" mode that refuses connections, and TCP resets.

use std::collections::HashMap;
use std::io::{self, ErrorKind, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// How often a blocked connection wakes up to notice shutdown.
const READ_TICK: Duration = Duration::from_millis(200);
/// Largest accepted request head; anything bigger is a broken or hostile client.
const MAX_HEAD: usize = 64 * 1024;
/// Largest accepted request body.
const MAX_BODY: usize = 32 * 1024 * 1024;

/// Locks a mutex, ignoring poison: a panicking handler thread must not wedge the whole simulator.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// One parsed HTTP request.
#[derive(Debug, Clone)]
pub(crate) struct Request {
    pub method: String,
    /// Path without the query string, still percent-encoded.
    pub path: String,
    /// Path segments, percent-decoded, empty segments dropped.
    pub segments: Vec<String>,
    /// Query parameters, percent-decoded, in order.
    pub query: Vec<(String, String)>,
    /// Headers with lower-cased names.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// Identifies the connection the request arrived on (so a handler can spare it when going down).
    pub conn_id: u64,
    /// False for `Connection: close` or HTTP/1.0 without `Connection: keep-alive`.
    pub keep_alive: bool,
    /// When its first byte was read (the limits judge Retry-After by it: a request that
    /// arrived before a 429 was written was sent before the till could know of it).
    pub arrived: std::time::Instant,
}

impl Request {
    /// A request as the parser would make it from `method` and `target` (path and query).
    pub fn from_parts(
        method: &str,
        target: &str,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    ) -> Request {
        let (path, query) = match target.split_once('?') {
            Some((p, q)) => (p.to_string(), parse_query(q)),
            None => (target.to_string(), Vec::new()),
        };
        Request {
            segments: path
                .split('/')
                .filter(|s| !s.is_empty())
                .map(|s| percent_decode(s, false))
                .collect(),
            method: method.to_string(),
            path,
            query,
            headers,
            body,
            conn_id: 0,
            keep_alive: true,
            arrived: std::time::Instant::now(),
        }
    }

    /// First header with this name (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// First query parameter with this name; case-insensitive like ASP.NET model binding.
    pub fn query(&self, name: &str) -> Option<&str> {
        self.query
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// An HTTP response; always sent with Content-Length.
#[derive(Debug, Clone)]
pub(crate) struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// Close the connection after sending.
    pub close: bool,
    /// Called once the response has been written to the socket.
    pub after_write: Option<AfterWrite>,
}

/// A hook run when a response has been written (the limits date a 429's `Retry-After` from
/// the moment the till can have it, not from when it was decided).
#[derive(Clone)]
pub(crate) struct AfterWrite(pub Arc<dyn Fn() + Send + Sync>);

impl std::fmt::Debug for AfterWrite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AfterWrite")
    }
}

impl Response {
    pub fn text(status: u16, body: &str) -> Response {
        Response {
            status,
            headers: vec![("Content-Type".into(), "text/plain; charset=utf-8".into())],
            body: body.as_bytes().to_vec(),
            close: false,
            after_write: None,
        }
    }

    pub fn json(status: u16, value: &serde_json::Value) -> Response {
        Response {
            status,
            headers: vec![(
                "Content-Type".into(),
                "application/json; charset=utf-8".into(),
            )],
            body: value.to_string().into_bytes(),
            close: false,
            after_write: None,
        }
    }

    pub fn with_header(mut self, name: &str, value: &str) -> Response {
        self.headers.push((name.into(), value.into()));
        self
    }
}

/// What the connection does after the handler ran.
#[derive(Debug)]
pub(crate) enum Outcome {
    Respond(Response),
    /// Say nothing for this long, then close.
    Hold(Duration),
    /// Abort the connection with a TCP RST.
    Reset,
}

pub(crate) type Handler = Arc<dyn Fn(&Request, &Arc<ServerCtl>) -> Outcome + Send + Sync>;

#[derive(Debug, Default)]
struct Flags {
    down: bool,
    listening: bool,
    shutdown: bool,
    /// Set when rebinding after "down" gave up, so `set_down(false)` does not wait forever.
    bind_failed: bool,
}

/// Shared control block of a running server; handlers get it to switch "down" mode themselves.
pub(crate) struct ServerCtl {
    port: u16,
    flags: Mutex<Flags>,
    cv: Condvar,
    /// Clones of open connections, so down/shutdown can cut them.
    conns: Mutex<HashMap<u64, TcpStream>>,
    next_conn: AtomicU64,
    shutdown: AtomicBool,
    handler: Handler,
}

impl ServerCtl {
    fn addr(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.port))
    }

    /// Down: close the listener (connection refused) and cut open connections, except `keep` (the
    /// connection that asked, so it can still get its answer). Up: rebind the same port.
    pub fn set_down(&self, down: bool, keep: Option<u64>) {
        let mut f = lock(&self.flags);
        if f.shutdown {
            return;
        }
        let deadline = Instant::now() + Duration::from_secs(2);
        if down {
            f.down = true;
            drop(f);
            self.close_conns(keep);
            let mut f = lock(&self.flags);
            // Poke accept() awake until the accept thread has dropped the listener.
            while f.listening && !f.shutdown && Instant::now() < deadline {
                drop(f);
                self.poke();
                f = lock(&self.flags);
                f = self
                    .cv
                    .wait_timeout(f, Duration::from_millis(50))
                    .unwrap_or_else(|e| e.into_inner())
                    .0;
            }
        } else {
            f.down = false;
            f.bind_failed = false;
            self.cv.notify_all();
            while !f.listening && !f.bind_failed && !f.shutdown && Instant::now() < deadline {
                f = self
                    .cv
                    .wait_timeout(f, Duration::from_millis(50))
                    .unwrap_or_else(|e| e.into_inner())
                    .0;
            }
        }
    }

    /// Connects to ourselves so a blocked accept() returns and rechecks the flags.
    fn poke(&self) {
        let _ = TcpStream::connect_timeout(&self.addr(), Duration::from_millis(200));
    }

    fn close_conns(&self, keep: Option<u64>) {
        let mut conns = lock(&self.conns);
        conns.retain(|id, s| {
            if Some(*id) == keep {
                return true;
            }
            let _ = s.shutdown(Shutdown::Both);
            false
        });
    }

    fn is_shutdown(&self) -> bool {
        self.shutdown.load(Ordering::Relaxed)
    }
}

/// A running server; dropping it shuts it down.
pub(crate) struct Server {
    ctl: Arc<ServerCtl>,
    accept: Option<JoinHandle<()>>,
}

impl Server {
    pub fn start(port: u16, handler: Handler) -> io::Result<Server> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, port))?;
        let port = listener.local_addr()?.port();
        let ctl = Arc::new(ServerCtl {
            port,
            flags: Mutex::new(Flags {
                listening: true,
                ..Flags::default()
            }),
            cv: Condvar::new(),
            conns: Mutex::new(HashMap::new()),
            next_conn: AtomicU64::new(1),
            shutdown: AtomicBool::new(false),
            handler,
        });
        let c = ctl.clone();
        let accept = thread::Builder::new()
            .name(format!("omnium-sim-accept-{port}"))
            .spawn(move || accept_loop(c, listener))?;
        Ok(Server {
            ctl,
            accept: Some(accept),
        })
    }

    pub fn port(&self) -> u16 {
        self.ctl.port
    }

    pub fn set_down(&self, down: bool) {
        self.ctl.set_down(down, None);
    }

    /// Stops accepting, cuts connections and joins the accept thread; idempotent.
    pub fn shutdown(&mut self) {
        let Some(accept) = self.accept.take() else {
            return;
        };
        self.ctl.shutdown.store(true, Ordering::Relaxed);
        let listening = {
            let mut f = lock(&self.ctl.flags);
            f.shutdown = true;
            self.ctl.cv.notify_all();
            f.listening
        };
        self.ctl.close_conns(None);
        if listening {
            self.ctl.poke();
        }
        let _ = accept.join();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.shutdown();
    }
}

fn bind_with_retry(port: u16) -> io::Result<TcpListener> {
    // The port can linger briefly after close; std sets SO_REUSEADDR, so a few retries suffice.
    let mut last = None;
    for _ in 0..20 {
        match TcpListener::bind((Ipv4Addr::LOCALHOST, port)) {
            Ok(l) => return Ok(l),
            Err(e) => last = Some(e),
        }
        thread::sleep(Duration::from_millis(50));
    }
    Err(last.unwrap_or_else(|| io::Error::other("bind failed")))
}

fn accept_loop(ctl: Arc<ServerCtl>, first: TcpListener) {
    let mut current = Some(first);
    loop {
        let listener = match current.take() {
            Some(l) => l,
            None => {
                {
                    let mut f = lock(&ctl.flags);
                    while f.down && !f.shutdown {
                        f = ctl.cv.wait(f).unwrap_or_else(|e| e.into_inner());
                    }
                    if f.shutdown {
                        return;
                    }
                }
                match bind_with_retry(ctl.port) {
                    Ok(l) => {
                        let mut f = lock(&ctl.flags);
                        // Went down (or shut down) again while we were binding: drop it right away.
                        if f.down || f.shutdown {
                            continue;
                        }
                        f.listening = true;
                        ctl.cv.notify_all();
                        l
                    }
                    Err(e) => {
                        log::error!("omnium-sim: cannot rebind port {}: {e}", ctl.port);
                        let mut f = lock(&ctl.flags);
                        f.down = true;
                        f.bind_failed = true;
                        ctl.cv.notify_all();
                        continue;
                    }
                }
            }
        };
        loop {
            let res = listener.accept();
            let f = lock(&ctl.flags);
            if f.shutdown || f.down {
                break;
            }
            match res {
                Ok((stream, _)) => {
                    let id = ctl.next_conn.fetch_add(1, Ordering::Relaxed);
                    // Registered under the flags lock so a concurrent set_down cannot miss it.
                    if let Ok(clone) = stream.try_clone() {
                        lock(&ctl.conns).insert(id, clone);
                    }
                    drop(f);
                    let c = ctl.clone();
                    let spawned =
                        thread::Builder::new()
                            .name("omnium-sim-conn".into())
                            .spawn(move || {
                                let _registered = Registered(&c, id);
                                serve_conn(&c, stream, id);
                            });
                    if spawned.is_err() {
                        lock(&ctl.conns).remove(&id);
                    }
                }
                Err(e) => {
                    drop(f);
                    log::warn!("omnium-sim: accept failed: {e}");
                    // Out of descriptors and the like: back off instead of spinning.
                    thread::sleep(Duration::from_millis(10));
                }
            }
        }
        drop(listener);
        let mut f = lock(&ctl.flags);
        f.listening = false;
        ctl.cv.notify_all();
        if f.shutdown {
            return;
        }
    }
}

/// Removes a connection from the registry when its thread ends, even by panic, so the clone held
/// there does not keep the socket open.
struct Registered<'a>(&'a ServerCtl, u64);

impl Drop for Registered<'_> {
    fn drop(&mut self) {
        lock(&self.0.conns).remove(&self.1);
    }
}

/// Why reading a request stopped.
enum ReadErr {
    /// Peer closed, socket error or shutdown: just drop the connection.
    Closed,
    /// Malformed request: answer 400 and close.
    Bad(&'static str),
}

struct Conn<'a> {
    stream: TcpStream,
    buf: Vec<u8>,
    ctl: &'a ServerCtl,
    /// When the first of the buffered bytes reached the socket (see [`Conn::fill`]).
    buf_since: Option<Instant>,
}

/// Asks the kernel to stamp each packet received on `stream` with its arrival time.
#[cfg(target_os = "linux")]
fn stamp_arrivals(stream: &TcpStream) {
    use std::os::fd::AsRawFd;
    let on: libc::c_int = 1;
    // SAFETY: a valid socket descriptor and an int option of the size given.
    unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_TIMESTAMPNS,
            (&on as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        );
    }
}

#[cfg(not(target_os = "linux"))]
fn stamp_arrivals(_stream: &TcpStream) {}

/// Reads like `read`, also returning when the kernel received the data (`SO_TIMESTAMPNS`,
/// wall clock) converted to an `Instant`; `None` when it gave no stamp.
#[cfg(target_os = "linux")]
fn read_stamped(stream: &TcpStream, chunk: &mut [u8]) -> io::Result<(usize, Option<Instant>)> {
    use std::os::fd::AsRawFd;
    let mut iov = libc::iovec {
        iov_base: chunk.as_mut_ptr().cast(),
        iov_len: chunk.len(),
    };
    // Room for one timespec control message, aligned for cmsghdr.
    let mut control = [0u64; 16];
    // SAFETY: msghdr is plain data; every pointer set below outlives the call.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = std::mem::size_of_val(&control) as _;
    // SAFETY: a valid descriptor; `msg` points at a buffer and control space we own.
    let n = unsafe { libc::recvmsg(stream.as_raw_fd(), &mut msg, 0) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    let mut stamp = None;
    // SAFETY: walking the control messages the kernel wrote into `control`, as CMSG_* allow.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
        while !cmsg.is_null() {
            if (*cmsg).cmsg_level == libc::SOL_SOCKET && (*cmsg).cmsg_type == libc::SCM_TIMESTAMPNS
            {
                let ts: libc::timespec = std::ptr::read_unaligned(libc::CMSG_DATA(cmsg).cast());
                let at = std::time::UNIX_EPOCH
                    + Duration::new(
                        ts.tv_sec.max(0) as u64,
                        ts.tv_nsec.clamp(0, 999_999_999) as u32,
                    );
                // How long ago, by the wall clock; the same span back on the monotonic one.
                let ago = std::time::SystemTime::now()
                    .duration_since(at)
                    .unwrap_or(Duration::ZERO);
                stamp = Instant::now().checked_sub(ago);
            }
            cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
        }
    }
    Ok((n as usize, stamp))
}

#[cfg(not(target_os = "linux"))]
fn read_stamped(mut stream: &TcpStream, chunk: &mut [u8]) -> io::Result<(usize, Option<Instant>)> {
    use std::io::Read;
    stream.read(chunk).map(|n| (n, None))
}

impl Conn<'_> {
    /// Reads more bytes into the buffer, waking every tick to notice shutdown. Notes when
    /// the first byte of an empty buffer arrived: the kernel's stamp of its packet (the
    /// sender's write, on loopback), or else the time the read returned (later, when this
    /// thread waited for a CPU).
    fn fill(&mut self) -> Result<(), ReadErr> {
        let mut chunk = [0u8; 16 * 1024];
        loop {
            if self.ctl.is_shutdown() {
                return Err(ReadErr::Closed);
            }
            match read_stamped(&self.stream, &mut chunk) {
                Ok((0, _)) => return Err(ReadErr::Closed),
                Ok((n, stamp)) => {
                    if self.buf.is_empty() {
                        let now = Instant::now();
                        self.buf_since = Some(stamp.map_or(now, |s| s.min(now)));
                    }
                    self.buf.extend_from_slice(&chunk[..n]);
                    return Ok(());
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        ErrorKind::WouldBlock | ErrorKind::TimedOut | ErrorKind::Interrupted
                    ) => {}
                Err(_) => return Err(ReadErr::Closed),
            }
        }
    }

    /// Makes sure at least `n` bytes are buffered.
    fn need(&mut self, n: usize) -> Result<(), ReadErr> {
        while self.buf.len() < n {
            self.fill()?;
        }
        Ok(())
    }

    /// Finds the next CRLF at or after `from`, reading more as needed; returns the line end index.
    fn line_end(&mut self, from: usize) -> Result<usize, ReadErr> {
        loop {
            if let Some(i) = find(&self.buf[from.min(self.buf.len())..], b"\r\n") {
                return Ok(from + i);
            }
            if self.buf.len() > MAX_HEAD + from {
                return Err(ReadErr::Bad("line too long"));
            }
            self.fill()?;
        }
    }

    fn read_request(&mut self, conn_id: u64) -> Result<Request, ReadErr> {
        // Tolerate stray CRLFs between requests (RFC 9112 §2.2).
        loop {
            while self.buf.starts_with(b"\r\n") {
                self.buf.drain(..2);
            }
            if self.buf.is_empty() {
                self.buf_since = None;
            }
            // A lone "\r" may be half of a CRLF; anything else starts the request.
            if !self.buf.is_empty() && self.buf != b"\r" {
                break;
            }
            self.fill()?;
        }
        // When its first byte reached the socket (`fill`). A request that followed another
        // in the same read has that one's time: it cannot have been sent later than it came.
        let arrived = self.buf_since.unwrap_or_else(Instant::now);
        let head_end = loop {
            if let Some(i) = find(&self.buf, b"\r\n\r\n") {
                break i;
            }
            if self.buf.len() > MAX_HEAD {
                return Err(ReadErr::Bad("request head too large"));
            }
            self.fill()?;
        };
        let head = std::str::from_utf8(&self.buf[..head_end])
            .map_err(|_| ReadErr::Bad("request head is not UTF-8"))?;
        let mut lines = head.split("\r\n");
        let request_line = lines.next().unwrap_or_default();
        let mut parts = request_line.split(' ');
        let (Some(method), Some(target), Some(version), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(ReadErr::Bad("bad request line"));
        };
        if !version.starts_with("HTTP/1.") || method.is_empty() || target.is_empty() {
            return Err(ReadErr::Bad("bad request line"));
        }
        let mut headers = Vec::new();
        for line in lines {
            let Some((name, value)) = line.split_once(':') else {
                return Err(ReadErr::Bad("bad header line"));
            };
            headers.push((name.trim().to_ascii_lowercase(), value.trim().to_string()));
        }
        let method = method.to_string();
        let (path, query) = match target.split_once('?') {
            Some((p, q)) => (p.to_string(), parse_query(q)),
            None => (target.to_string(), Vec::new()),
        };
        let http10 = version == "HTTP/1.0";
        self.buf.drain(..head_end + 4);

        let mut req = Request {
            segments: path
                .split('/')
                .filter(|s| !s.is_empty())
                .map(|s| percent_decode(s, false))
                .collect(),
            method,
            path,
            query,
            headers,
            body: Vec::new(),
            conn_id,
            keep_alive: true,
            arrived,
        };
        req.keep_alive = match req.header("connection") {
            Some(v) if v.eq_ignore_ascii_case("close") => false,
            Some(v) if v.eq_ignore_ascii_case("keep-alive") => true,
            _ => !http10,
        };

        let chunked = req
            .header("transfer-encoding")
            .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"));
        let length = match req.header("content-length") {
            Some(v) if !chunked => Some(
                v.parse::<usize>()
                    .map_err(|_| ReadErr::Bad("bad Content-Length"))?,
            ),
            _ => None,
        };
        if (chunked || length.is_some_and(|n| n > 0))
            && req
                .header("expect")
                .is_some_and(|v| v.eq_ignore_ascii_case("100-continue"))
        {
            let _ = self.stream.write_all(b"HTTP/1.1 100 Continue\r\n\r\n");
        }
        if chunked {
            req.body = self.read_chunked()?;
        } else if let Some(n) = length {
            if n > MAX_BODY {
                return Err(ReadErr::Bad("body too large"));
            }
            self.need(n)?;
            req.body = self.buf.drain(..n).collect();
        }
        Ok(req)
    }

    fn read_chunked(&mut self) -> Result<Vec<u8>, ReadErr> {
        let mut body = Vec::new();
        loop {
            let end = self.line_end(0)?;
            let line = std::str::from_utf8(&self.buf[..end])
                .map_err(|_| ReadErr::Bad("bad chunk size"))?;
            // Chunk extensions (";name=value") are allowed and ignored.
            let size_str = line.split(';').next().unwrap_or_default().trim();
            let size =
                usize::from_str_radix(size_str, 16).map_err(|_| ReadErr::Bad("bad chunk size"))?;
            self.buf.drain(..end + 2);
            if size == 0 {
                // Skip trailer fields up to the empty line.
                loop {
                    let end = self.line_end(0)?;
                    self.buf.drain(..end + 2);
                    if end == 0 {
                        return Ok(body);
                    }
                }
            }
            if body.len() + size > MAX_BODY {
                return Err(ReadErr::Bad("body too large"));
            }
            self.need(size + 2)?;
            if &self.buf[size..size + 2] != b"\r\n" {
                return Err(ReadErr::Bad("bad chunk terminator"));
            }
            body.extend_from_slice(&self.buf[..size]);
            self.buf.drain(..size + 2);
        }
    }
}

fn serve_conn(ctl: &Arc<ServerCtl>, stream: TcpStream, conn_id: u64) {
    // Small request/response pairs: Nagle would add delayed-ACK stalls to every keep-alive round trip.
    let _ = stream.set_nodelay(true);
    let _ = stream.set_read_timeout(Some(READ_TICK));
    let mut conn = Conn {
        stream,
        buf: Vec::with_capacity(16 * 1024),
        ctl,
        buf_since: None,
    };
    stamp_arrivals(&conn.stream);
    loop {
        let req = match conn.read_request(conn_id) {
            Ok(r) => r,
            Err(ReadErr::Closed) => return,
            Err(ReadErr::Bad(msg)) => {
                let mut resp = Response::text(400, msg);
                resp.close = true;
                let _ = write_response(&mut conn.stream, &resp, false);
                return;
            }
        };
        let wants_close = !req.keep_alive;
        let head_only = req.method.eq_ignore_ascii_case("HEAD");
        match (ctl.handler)(&req, ctl) {
            Outcome::Respond(mut resp) => {
                resp.close |= wants_close || ctl.is_shutdown();
                let written = write_response(&mut conn.stream, &resp, head_only);
                if let Some(hook) = &resp.after_write {
                    (hook.0)();
                }
                if written.is_err() || resp.close {
                    return;
                }
            }
            Outcome::Hold(d) => {
                let until = Instant::now() + d;
                while Instant::now() < until && !ctl.is_shutdown() {
                    thread::sleep((until - Instant::now()).min(Duration::from_millis(50)));
                }
                return;
            }
            Outcome::Reset => {
                reset(&conn.stream);
                return;
            }
        }
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        200 => "OK",
        201 => "Created",
        204 => "No Content",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        409 => "Conflict",
        422 => "Unprocessable Entity",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Status",
    }
}

/// Serialises the whole response into one buffer and writes it with a single write.
fn write_response(stream: &mut TcpStream, resp: &Response, head_only: bool) -> io::Result<()> {
    let mut out = Vec::with_capacity(256 + resp.body.len());
    let _ = write!(
        out,
        "HTTP/1.1 {} {}\r\nContent-Length: {}\r\nConnection: {}\r\n",
        resp.status,
        reason(resp.status),
        resp.body.len(),
        if resp.close { "close" } else { "keep-alive" }
    );
    // As every HTTP server does (RFC 9110 §6.6.1); `flow-omnium doctor` reads it for clock skew.
    // Unless the handler set its own (a skewed clock, `SimModes::date_skew_ms`).
    if !resp
        .headers
        .iter()
        .any(|(k, _)| k.eq_ignore_ascii_case("date"))
    {
        let _ = write!(
            out,
            "Date: {}\r\n",
            chrono::Utc::now().format("%a, %d %b %Y %H:%M:%S GMT")
        );
    }
    for (k, v) in &resp.headers {
        let _ = write!(out, "{k}: {v}\r\n");
    }
    // Omnium's clock, as every HTTP server sends it (unless the answer set its own).
    if !resp
        .headers
        .iter()
        .any(|(k, _)| k.eq_ignore_ascii_case("date"))
    {
        let now = chrono::Utc::now().format("%a, %d %b %Y %H:%M:%S GMT");
        let _ = write!(out, "Date: {now}\r\n");
    }
    out.extend_from_slice(b"\r\n");
    if !head_only {
        out.extend_from_slice(&resp.body);
    }
    stream.write_all(&out)?;
    stream.flush()
}

#[cfg(target_os = "linux")]
mod linger {
    use std::ffi::c_void;

    const SOL_SOCKET: i32 = 1;
    const SO_LINGER: i32 = 13;

    #[repr(C)]
    struct Linger {
        l_onoff: i32,
        l_linger: i32,
    }

    extern "C" {
        fn setsockopt(fd: i32, level: i32, name: i32, val: *const c_void, len: u32) -> i32;
    }

    /// SO_LINGER {on, 0}: the next close() discards unsent data and sends RST instead of FIN.
    pub(super) fn set_zero_linger(fd: i32) -> bool {
        let l = Linger {
            l_onoff: 1,
            l_linger: 0,
        };
        // SAFETY: `fd` is an open socket owned by the caller; `l` outlives the call and its size is passed.
        let rc = unsafe {
            setsockopt(
                fd,
                SOL_SOCKET,
                SO_LINGER,
                (&l as *const Linger).cast::<c_void>(),
                std::mem::size_of::<Linger>() as u32,
            )
        };
        rc == 0
    }
}

/// Makes the coming close of this socket a TCP RST (the caller drops the stream; the registry clone
/// is dropped by the connection thread's exit, and the last close sends the reset).
fn reset(stream: &TcpStream) {
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::io::AsRawFd;
        if linger::set_zero_linger(stream.as_raw_fd()) {
            return;
        }
    }
    // No portable RST elsewhere: an abrupt two-way shutdown is the closest we get.
    let _ = stream.shutdown(Shutdown::Both);
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn hex_val(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Percent-decodes; `plus_is_space` for query strings (form encoding). Invalid escapes stay literal.
pub(crate) fn percent_decode(s: &str, plus_is_space: bool) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => match (hex_val(b[i + 1]), hex_val(b[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h * 16 + l);
                    i += 3;
                    continue;
                }
                _ => out.push(b'%'),
            },
            b'+' if plus_is_space => out.push(b' '),
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Parses `a=1&b=x%20y` into decoded pairs; also used for form-encoded bodies.
pub(crate) fn parse_query(q: &str) -> Vec<(String, String)> {
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k, true), percent_decode(v, true))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_percent_and_plus() {
        assert_eq!(percent_decode("a%20b+c", true), "a b c");
        assert_eq!(percent_decode("a%20b+c", false), "a b+c");
        assert_eq!(percent_decode("100%", false), "100%");
        assert_eq!(percent_decode("%zz%4", false), "%zz%4");
        assert_eq!(percent_decode("%C3%A6", false), "æ");
        let q = parse_query("clientId=a%2Bb&x&returnAsJson=true");
        assert_eq!(q[0], ("clientId".into(), "a+b".into()));
        assert_eq!(q[1], ("x".into(), "".into()));
    }
}
