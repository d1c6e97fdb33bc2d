//! A scripted HTTP/1.1 server on std threads, for `http.check` and notification tests:
//! it answers from a list of responses and records every request it gets.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddrV4, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use super::process::LOOPBACK;

/// How long a connection may stay silent before the server gives up on it.
const READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Bigger request heads are refused: nothing in dr-plan sends one.
const MAXIMUM_HEAD_BYTES: usize = 64 * 1024;

/// One answer in the script: a status, headers, a body and an optional delay.
#[derive(Clone, Debug)]
pub struct ScriptedResponse {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
    delay: Duration,
}

impl ScriptedResponse {
    /// A response with `status` and `body` (sent as `text/plain`).
    pub fn new(status: u16, body: impl Into<Vec<u8>>) -> Self {
        Self {
            status,
            headers: vec![("Content-Type".to_owned(), "text/plain".to_owned())],
            body: body.into(),
            delay: Duration::ZERO,
        }
    }

    /// A response with `status` and `value` as an `application/json` body.
    pub fn json(status: u16, value: &serde_json::Value) -> Self {
        Self {
            headers: vec![("Content-Type".to_owned(), "application/json".to_owned())],
            ..Self::new(status, value.to_string())
        }
    }

    /// Adds a header, replacing one of the same name (so `Content-Type` can be changed).
    #[must_use]
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.retain(|(existing, _)| !existing.eq_ignore_ascii_case(name));
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    /// Waits this long before answering, to test clients' timeouts.
    #[must_use]
    pub fn delayed(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }
}

impl From<(u16, &str)> for ScriptedResponse {
    fn from((status, body): (u16, &str)) -> Self {
        Self::new(status, body)
    }
}

/// A request as the server received it.
#[derive(Clone, Debug)]
pub struct RecordedRequest {
    /// `GET`, `POST`, …
    pub method: String,
    /// The request target: path and query, e.g. `/health?deep=1`.
    pub path: String,
    /// Headers in the order received, names as sent.
    pub headers: Vec<(String, String)>,
    /// The body, de-chunked.
    pub body: Vec<u8>,
}

impl RecordedRequest {
    /// The first header named `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(existing, _)| existing.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    /// The body as UTF-8 text (lossy).
    pub fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body parsed as JSON; panics when it is not JSON.
    pub fn body_json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|error| {
            panic!(
                "{} {} sent a body that is not JSON ({error}): {}",
                self.method,
                self.path,
                self.body_text()
            )
        })
    }
}

#[derive(Debug)]
struct State {
    script: Vec<ScriptedResponse>,
    answered: usize,
    requests: Vec<RecordedRequest>,
}

/// A loopback HTTP/1.1 server answering from a script; stopped on drop.
///
/// The n-th request gets the n-th scripted response; once the script runs out the last
/// response is repeated. Every connection is closed after one response.
pub struct HttpServer {
    port: u16,
    state: Arc<Mutex<State>>,
    stopping: Arc<AtomicBool>,
    acceptor: Option<JoinHandle<()>>,
}

impl HttpServer {
    /// Starts the server with `responses`, e.g. `[(503, "starting"), (200, "ok")]`.
    pub fn start<Response: Into<ScriptedResponse>>(responses: impl IntoIterator<Item = Response>) -> Self {
        let script: Vec<ScriptedResponse> = responses.into_iter().map(Into::into).collect();
        assert!(!script.is_empty(), "HttpServer::start needs at least one response");
        // Bound here and kept: unlike the other servers there is no window in which
        // another test could take the port.
        let listener = TcpListener::bind(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0))
            .unwrap_or_else(|error| panic!("cannot bind a port on {LOOPBACK}: {error}"));
        let port = listener
            .local_addr()
            .unwrap_or_else(|error| panic!("cannot read the bound port: {error}"))
            .port();
        let state = Arc::new(Mutex::new(State { script, answered: 0, requests: Vec::new() }));
        let stopping = Arc::new(AtomicBool::new(false));
        let acceptor = {
            let state = Arc::clone(&state);
            let stopping = Arc::clone(&stopping);
            thread::spawn(move || accept_connections(&listener, &state, &stopping))
        };
        Self { port, state, stopping, acceptor: Some(acceptor) }
    }

    /// `http://127.0.0.1:PORT`, without a trailing slash.
    pub fn url(&self) -> String {
        format!("http://{LOOPBACK}:{}", self.port)
    }

    /// The TCP port the server listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Every request received so far, in order. A request is recorded before it is
    /// answered, so once a client has its response the request is here.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.lock().requests.clone()
    }

    /// How many requests were received so far.
    pub fn request_count(&self) -> usize {
        self.lock().requests.len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panicking connection thread must not hide what was recorded.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        self.stopping.store(true, Ordering::SeqCst);
        // `accept` blocks: one connection wakes it up to see the flag.
        let _ = TcpStream::connect((LOOPBACK, self.port));
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
    }
}

fn accept_connections(listener: &TcpListener, state: &Arc<Mutex<State>>, stopping: &AtomicBool) {
    for stream in listener.incoming() {
        if stopping.load(Ordering::SeqCst) {
            return;
        }
        let Ok(stream) = stream else { continue };
        let state = Arc::clone(state);
        // One thread per connection so a delayed response does not hold up others.
        thread::spawn(move || serve_connection(stream, &state));
    }
}

fn serve_connection(stream: TcpStream, state: &Mutex<State>) {
    let _ = stream.set_read_timeout(Some(READ_TIMEOUT));
    let Ok(mut writer) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(stream);
    let request = match read_request(&mut reader, &mut writer) {
        Ok(Some(request)) => request,
        // The client connected and left without a request (or the server's own wake-up).
        Ok(None) => return,
        Err(problem) => {
            let _ = write_response(&mut writer, &ScriptedResponse::new(400, problem));
            return;
        }
    };
    let response = {
        let mut state = state.lock().unwrap_or_else(PoisonError::into_inner);
        state.requests.push(request);
        let index = state.answered.min(state.script.len() - 1);
        state.answered += 1;
        state.script[index].clone()
    };
    thread::sleep(response.delay);
    let _ = write_response(&mut writer, &response);
}

fn read_request(
    reader: &mut BufReader<TcpStream>,
    writer: &mut TcpStream,
) -> Result<Option<RecordedRequest>, String> {
    let mut head_bytes = 0;
    let Some(request_line) = read_head_line(reader, &mut head_bytes)? else {
        return Ok(None);
    };
    let mut parts = request_line.split(' ');
    let (Some(method), Some(path), Some(version)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(format!("malformed request line {request_line:?}"));
    };
    if !version.starts_with("HTTP/1.") {
        return Err(format!("unsupported protocol {version:?}"));
    }
    let mut headers = Vec::new();
    loop {
        let line =
            read_head_line(reader, &mut head_bytes)?.ok_or("connection closed inside the request head")?;
        if line.is_empty() {
            break;
        }
        let (name, value) = line.split_once(':').ok_or_else(|| format!("malformed header line {line:?}"))?;
        headers.push((name.trim().to_owned(), value.trim().to_owned()));
    }
    let mut request =
        RecordedRequest { method: method.to_owned(), path: path.to_owned(), headers, body: Vec::new() };
    if request.header("Expect").is_some_and(|value| value.eq_ignore_ascii_case("100-continue")) {
        writer.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").map_err(|error| error.to_string())?;
    }
    request.body = if request
        .header("Transfer-Encoding")
        .is_some_and(|value| value.to_ascii_lowercase().contains("chunked"))
    {
        read_chunked_body(reader)?
    } else {
        let length = match request.header("Content-Length") {
            Some(value) => value.parse::<usize>().map_err(|_| format!("bad Content-Length {value:?}"))?,
            None => 0,
        };
        let mut body = vec![0; length];
        reader.read_exact(&mut body).map_err(|error| format!("body shorter than Content-Length: {error}"))?;
        body
    };
    Ok(Some(request))
}

/// One CRLF-terminated line of the request head, without the line ending; `None` at a
/// clean end of the stream before any byte.
fn read_head_line(
    reader: &mut BufReader<TcpStream>,
    head_bytes: &mut usize,
) -> Result<Option<String>, String> {
    let mut line = Vec::new();
    let read = reader
        .by_ref()
        .take((MAXIMUM_HEAD_BYTES - *head_bytes) as u64)
        .read_until(b'\n', &mut line)
        .map_err(|error| error.to_string())?;
    if read == 0 {
        return Ok(None);
    }
    *head_bytes += read;
    if !line.ends_with(b"\n") {
        return Err(format!("request head longer than {MAXIMUM_HEAD_BYTES} bytes"));
    }
    let text = String::from_utf8(line).map_err(|_| "request head is not UTF-8".to_owned())?;
    Ok(Some(text.trim_end_matches(['\r', '\n']).to_owned()))
}

fn read_chunked_body(reader: &mut BufReader<TcpStream>) -> Result<Vec<u8>, String> {
    let mut body = Vec::new();
    loop {
        let mut size_line = String::new();
        reader.read_line(&mut size_line).map_err(|error| error.to_string())?;
        let size_text = size_line.trim().split(';').next().unwrap_or_default();
        let size =
            usize::from_str_radix(size_text, 16).map_err(|_| format!("bad chunk size {size_line:?}"))?;
        if size == 0 {
            // Trailers, if any, end with an empty line.
            loop {
                let mut trailer = String::new();
                let read = reader.read_line(&mut trailer).map_err(|error| error.to_string())?;
                if read == 0 || trailer.trim().is_empty() {
                    return Ok(body);
                }
            }
        }
        let start = body.len();
        body.resize(start + size, 0);
        reader
            .read_exact(&mut body[start..])
            .map_err(|error| format!("chunk shorter than announced: {error}"))?;
        let mut line_end = [0_u8; 2];
        reader.read_exact(&mut line_end).map_err(|error| error.to_string())?;
    }
}

fn write_response(writer: &mut TcpStream, response: &ScriptedResponse) -> std::io::Result<()> {
    let head = format!(
        "HTTP/1.1 {} {}\r\n{}Content-Length: {}\r\nConnection: close\r\n\r\n",
        response.status,
        reason_phrase(response.status),
        header_lines(&response.headers),
        response.body.len()
    );
    writer.write_all(head.as_bytes())?;
    writer.write_all(&response.body)?;
    writer.flush()
}

/// `Name: value` lines, each ending in CRLF.
fn header_lines<Name: AsRef<str>, Value: AsRef<str>>(headers: &[(Name, Value)]) -> String {
    headers.iter().map(|(name, value)| format!("{}: {}\r\n", name.as_ref(), value.as_ref())).collect()
}

fn reason_phrase(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        301 => "Moved Permanently",
        302 => "Found",
        304 => "Not Modified",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Status",
    }
}

/// A minimal HTTP/1.1 client for the support code itself (e.g. resetting moto):
/// sends one request and returns the status and the raw body (a chunked body keeps its
/// chunk framing). Tests of dr-plan use real clients instead.
pub fn request(port: u16, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> (u16, String) {
    let what = format!("{method} http://{LOOPBACK}:{port}{path}");
    let mut stream = TcpStream::connect((LOOPBACK, port))
        .unwrap_or_else(|error| panic!("{what}: cannot connect: {error}"));
    let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {LOOPBACK}:{port}\r\nContent-Length: {}\r\n\
         Connection: close\r\n{}\r\n",
        body.len(),
        header_lines(headers)
    );
    stream
        .write_all(head.as_bytes())
        .and_then(|()| stream.write_all(body))
        .unwrap_or_else(|error| panic!("{what}: cannot send: {error}"));
    let mut response = Vec::new();
    stream.read_to_end(&mut response).unwrap_or_else(|error| panic!("{what}: no complete response: {error}"));
    let text = String::from_utf8_lossy(&response);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|status| status.parse().ok())
        .unwrap_or_else(|| panic!("{what}: malformed response {head:?}"));
    (status, body.to_owned())
}
