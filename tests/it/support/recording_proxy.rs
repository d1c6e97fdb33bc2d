//! A loopback HTTP/1.1 reverse proxy that records every request it forwards and can
//! hold back the response to chosen ones: the upstream server has already acted on the
//! request, the client has not heard back. That is the moment a `kill -9` is most
//! dangerous for a step that changes something (a DNS change Route53 accepted but the
//! step never saw accepted), and tests use it to put the kill exactly there.
//!
//! One request per connection: every request goes upstream with `Connection: close`
//! and every response comes back with `Connection: close`, so neither side ever reuses
//! a connection the proxy has finished with.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddrV4, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use super::process::LOOPBACK;

/// How long a connection may stay silent, and how long a held response waits at most.
const PATIENCE: Duration = Duration::from_secs(60);

/// One forwarded request.
#[derive(Clone, Debug)]
pub struct ForwardedRequest {
    /// `GET`, `POST`, …
    pub method: String,
    /// The path with its query.
    pub path: String,
    /// The upstream's status code.
    #[expect(dead_code, reason = "read through Debug, in assertion messages")]
    pub status: u16,
}

/// Which responses to hold back: requests whose method is `method` and whose path ends
/// with `path_suffix`.
#[derive(Clone, Debug)]
struct Hold {
    method: String,
    path_suffix: String,
}

impl Hold {
    fn applies_to(&self, request: &Request) -> bool {
        self.method == request.method && request.path.ends_with(&self.path_suffix)
    }
}

#[derive(Debug, Default)]
struct State {
    forwarded: Vec<ForwardedRequest>,
    hold: Option<Hold>,
    /// Requests forwarded whose response is being held back.
    holding: usize,
}

/// The proxy; stopped on drop (held responses are then dropped unsent).
pub struct RecordingProxy {
    port: u16,
    state: Arc<Mutex<State>>,
    stopping: Arc<AtomicBool>,
    acceptor: Option<JoinHandle<()>>,
}

impl RecordingProxy {
    /// Starts a proxy in front of `127.0.0.1:upstream_port`.
    pub fn start(upstream_port: u16) -> Self {
        let listener = TcpListener::bind(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0))
            .unwrap_or_else(|error| panic!("cannot bind a port on {LOOPBACK}: {error}"));
        listener.set_nonblocking(true).expect("a non-blocking listener");
        let port = listener.local_addr().expect("the bound address").port();
        let state = Arc::new(Mutex::new(State::default()));
        let stopping = Arc::new(AtomicBool::new(false));
        let acceptor = {
            let (state, stopping) = (Arc::clone(&state), Arc::clone(&stopping));
            thread::spawn(move || {
                while !stopping.load(Ordering::Relaxed) {
                    match listener.accept() {
                        Ok((client, _)) => {
                            let (state, stopping) = (Arc::clone(&state), Arc::clone(&stopping));
                            thread::spawn(move || serve(client, upstream_port, &state, &stopping));
                        }
                        Err(_) => thread::sleep(Duration::from_millis(10)),
                    }
                }
            })
        };
        Self { port, state, stopping, acceptor: Some(acceptor) }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{LOOPBACK}:{}", self.port)
    }

    /// Every request forwarded so far (recorded once the upstream answered).
    pub fn forwarded(&self) -> Vec<ForwardedRequest> {
        self.lock().forwarded.clone()
    }

    /// How many forwarded requests were `method` on a path ending with `path_suffix`.
    pub fn count(&self, method: &str, path_suffix: &str) -> usize {
        self.lock()
            .forwarded
            .iter()
            .filter(|request| request.method == method && request.path.ends_with(path_suffix))
            .count()
    }

    /// From now on, forwards `method` requests on paths ending with `path_suffix` but
    /// keeps their responses until [`RecordingProxy::release`].
    pub fn hold_responses_to(&self, method: &str, path_suffix: &str) {
        self.lock().hold = Some(Hold { method: method.to_owned(), path_suffix: path_suffix.to_owned() });
    }

    /// How many responses are being held back right now.
    pub fn holding(&self) -> usize {
        self.lock().holding
    }

    /// Stops holding responses: the held ones are sent (to whoever still listens).
    pub fn release(&self) {
        self.lock().hold = None;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Drop for RecordingProxy {
    fn drop(&mut self) {
        self.stopping.store(true, Ordering::Relaxed);
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
    }
}

/// A request as read from the client.
struct Request {
    method: String,
    path: String,
    /// The head to send upstream, ending with the blank line.
    head: Vec<u8>,
    body: Vec<u8>,
}

/// Forwards one request of `client` and sends back the answer (maybe after holding it).
fn serve(client: TcpStream, upstream_port: u16, state: &Mutex<State>, stopping: &AtomicBool) {
    let _ = client.set_read_timeout(Some(PATIENCE));
    let mut reader = BufReader::new(match client.try_clone() {
        Ok(stream) => stream,
        Err(_) => return,
    });
    let Some(request) = read_request(&mut reader) else { return };
    let Some(response) = forward(&request, upstream_port) else {
        let _ = (&client)
            .write_all(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        return;
    };
    let held = {
        let mut state = state.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        state.forwarded.push(ForwardedRequest {
            method: request.method.clone(),
            path: request.path.clone(),
            status: status_of(&response),
        });
        let held = state.hold.as_ref().is_some_and(|hold| hold.applies_to(&request));
        state.holding += usize::from(held);
        held
    };
    if held {
        let started = Instant::now();
        let still_held = || {
            let state = state.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            state.hold.as_ref().is_some_and(|hold| hold.applies_to(&request))
        };
        while still_held() && !stopping.load(Ordering::Relaxed) && started.elapsed() < PATIENCE {
            thread::sleep(Duration::from_millis(10));
        }
        state.lock().unwrap_or_else(std::sync::PoisonError::into_inner).holding -= 1;
        if stopping.load(Ordering::Relaxed) {
            return;
        }
    }
    let _ = (&client).write_all(&response);
    let _ = client.shutdown(Shutdown::Both);
}

/// Reads a request head and its `Content-Length` body; `None` when the client went away.
fn read_request(reader: &mut BufReader<TcpStream>) -> Option<Request> {
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).ok()? == 0 {
        return None;
    }
    let mut parts = request_line.split_whitespace();
    let (method, path) = (parts.next()?.to_owned(), parts.next()?.to_owned());
    let mut head = request_line.clone().into_bytes();
    let mut content_length = 0;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).ok()? == 0 {
            return None;
        }
        if line == "\r\n" || line == "\n" {
            break;
        }
        let (name, value) = line.split_once(':').unwrap_or((&line, ""));
        let name = name.trim().to_ascii_lowercase();
        if name == "content-length" {
            content_length = value.trim().parse().ok()?;
        }
        // Chunked request bodies are not expected from the AWS SDK's XML requests: such
        // a request is dropped (the client sees the connection close) rather than
        // forwarded half-read.
        if name == "transfer-encoding" {
            return None;
        }
        if name != "connection" {
            head.extend_from_slice(line.as_bytes());
        }
    }
    head.extend_from_slice(b"Connection: close\r\n\r\n");
    let mut body = vec![0; content_length];
    reader.read_exact(&mut body).ok()?;
    Some(Request { method, path, head, body })
}

/// Sends `request` upstream and returns its whole response, its `Connection` header
/// replaced by `Connection: close`.
fn forward(request: &Request, upstream_port: u16) -> Option<Vec<u8>> {
    let mut upstream = TcpStream::connect((LOOPBACK, upstream_port)).ok()?;
    upstream.set_read_timeout(Some(PATIENCE)).ok()?;
    upstream.write_all(&request.head).ok()?;
    upstream.write_all(&request.body).ok()?;
    let mut response = Vec::new();
    upstream.read_to_end(&mut response).ok()?;
    let head_end = response.windows(4).position(|window| window == b"\r\n\r\n")?;
    let head = String::from_utf8_lossy(&response[..head_end]).into_owned();
    let mut rewritten: Vec<u8> = Vec::with_capacity(response.len() + 20);
    for line in head.split("\r\n") {
        if !line.to_ascii_lowercase().starts_with("connection:") {
            rewritten.extend_from_slice(line.as_bytes());
            rewritten.extend_from_slice(b"\r\n");
        }
    }
    rewritten.extend_from_slice(b"Connection: close\r\n\r\n");
    rewritten.extend_from_slice(&response[head_end + 4..]);
    Some(rewritten)
}

fn status_of(response: &[u8]) -> u16 {
    let line = response.split(|byte| *byte == b'\n').next().unwrap_or_default();
    String::from_utf8_lossy(line).split_whitespace().nth(1).and_then(|code| code.parse().ok()).unwrap_or(0)
}
