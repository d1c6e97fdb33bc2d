//! A small Route53 of the tests' own, for what moto cannot show: moto answers `INSYNC`
//! at once and never `PriorRequestNotComplete`. This one serves one hosted zone over
//! Route53's REST XML API (the calls route53.change makes), keeps its record sets,
//! refuses the first change batches with `PriorRequestNotComplete`, answers `PENDING`
//! to a number of `GetChange` polls before `INSYNC`, and counts every request.
//!
//! It does not check signatures, and knows simple and failover records only.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Ipv4Addr, SocketAddrV4, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use super::process::LOOPBACK;

/// The id of the one hosted zone.
pub const ZONE_ID: &str = "Z0STUB0EXAMPLE0";
/// Its name.
pub const ZONE_NAME: &str = "example.com.";
const NAMESPACE: &str = "https://route53.amazonaws.com/doc/2013-04-01/";
const READ_TIMEOUT: Duration = Duration::from_secs(10);

/// A record set held by the stub.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StubRecord {
    /// The name with its trailing dot.
    pub name: String,
    /// The type.
    pub record_type: String,
    /// The TTL.
    pub ttl: Option<i64>,
    /// The values, in the order sent.
    pub values: Vec<String>,
    /// The set identifier.
    pub set_identifier: Option<String>,
    /// `PRIMARY` or `SECONDARY`.
    pub failover: Option<String>,
    /// The health check id.
    pub health_check_id: Option<String>,
}

impl StubRecord {
    /// A simple record set.
    pub fn simple(name: &str, record_type: &str, ttl: i64, values: &[&str]) -> Self {
        Self {
            name: name.to_owned(),
            record_type: record_type.to_owned(),
            ttl: Some(ttl),
            values: values.iter().map(|value| (*value).to_owned()).collect(),
            set_identifier: None,
            failover: None,
            health_check_id: None,
        }
    }

    fn same_key(&self, other: &StubRecord) -> bool {
        self.name.eq_ignore_ascii_case(&other.name)
            && self.record_type == other.record_type
            && self.set_identifier == other.set_identifier
    }
}

#[derive(Debug)]
struct State {
    records: Vec<StubRecord>,
    /// Change batches still to refuse with `PriorRequestNotComplete`.
    refusals_left: usize,
    /// `PENDING` answers each change gets before `INSYNC`.
    pending_polls: usize,
    /// Changes accepted: id and polls so far.
    changes: Vec<(String, usize)>,
    /// `METHOD /path?query` of every request, in order.
    requests: Vec<String>,
}

/// A loopback Route53 stub; stopped on drop.
pub struct Route53Stub {
    port: u16,
    state: Arc<Mutex<State>>,
    stopping: Arc<AtomicBool>,
    acceptor: Option<JoinHandle<()>>,
}

impl Route53Stub {
    /// Starts the stub holding `records` in zone `example.com.`; it refuses the first
    /// `refusals` change batches and answers `PENDING` to `pending_polls` polls of each
    /// change.
    pub fn start(records: Vec<StubRecord>, refusals: usize, pending_polls: usize) -> Self {
        let listener = TcpListener::bind(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0))
            .unwrap_or_else(|error| panic!("cannot bind a port on {LOOPBACK}: {error}"));
        let port = listener.local_addr().unwrap_or_else(|error| panic!("no local address: {error}")).port();
        let state = Arc::new(Mutex::new(State {
            records,
            refusals_left: refusals,
            pending_polls,
            changes: Vec::new(),
            requests: Vec::new(),
        }));
        let stopping = Arc::new(AtomicBool::new(false));
        let acceptor = {
            let state = Arc::clone(&state);
            let stopping = Arc::clone(&stopping);
            thread::spawn(move || {
                for stream in listener.incoming() {
                    if stopping.load(Ordering::SeqCst) {
                        return;
                    }
                    let Ok(stream) = stream else { continue };
                    let state = Arc::clone(&state);
                    thread::spawn(move || serve(stream, &state));
                }
            })
        };
        Self { port, state, stopping, acceptor: Some(acceptor) }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> String {
        format!("http://{LOOPBACK}:{}", self.port)
    }

    /// The id of its hosted zone (`example.com.`).
    pub fn zone_id(&self) -> &'static str {
        ZONE_ID
    }

    /// The record sets the stub holds now.
    pub fn records(&self) -> Vec<StubRecord> {
        self.lock().records.clone()
    }

    /// How many requests had `METHOD /path` starting with `prefix`, e.g.
    /// `"POST /2013-04-01/hostedzone/"` for change batches.
    pub fn count(&self, prefix: &str) -> usize {
        self.lock().requests.iter().filter(|request| request.starts_with(prefix)).count()
    }

    /// Every request so far, as `METHOD /path?query`.
    pub fn requests(&self) -> Vec<String> {
        self.lock().requests.clone()
    }

    /// Changes `PENDING` answers from now on (`usize::MAX` holds every change pending).
    pub fn set_pending_polls(&self, polls: usize) {
        self.lock().pending_polls = polls;
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Drop for Route53Stub {
    fn drop(&mut self) {
        self.stopping.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect((LOOPBACK, self.port));
        if let Some(acceptor) = self.acceptor.take() {
            let _ = acceptor.join();
        }
    }
}

fn serve(stream: TcpStream, state: &Mutex<State>) {
    let _ = stream.set_read_timeout(Some(READ_TIMEOUT));
    let Ok(mut writer) = stream.try_clone() else { return };
    let mut reader = BufReader::new(stream);
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
        return;
    }
    let mut content_length = 0;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 || line.trim().is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':')
            && name.trim().eq_ignore_ascii_case("content-length")
        {
            content_length = value.trim().parse().unwrap_or(0);
        }
    }
    let mut body = vec![0; content_length];
    if reader.read_exact(&mut body).is_err() {
        return;
    }
    let mut parts = request_line.split_whitespace();
    let (method, target) = (parts.next().unwrap_or_default(), parts.next().unwrap_or_default());
    let (status, xml) = {
        let mut state = state.lock().unwrap_or_else(PoisonError::into_inner);
        state.requests.push(format!("{method} {target}"));
        answer(&mut state, method, target, &String::from_utf8_lossy(&body))
    };
    let head = format!(
        "HTTP/1.1 {status} {}\r\nContent-Type: text/xml\r\nx-amz-request-id: stub\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n",
        if status == 200 { "OK" } else { "Bad Request" },
        xml.len()
    );
    let _ = writer.write_all(head.as_bytes()).and_then(|()| writer.write_all(xml.as_bytes()));
    let _ = writer.flush();
}

fn answer(state: &mut State, method: &str, target: &str, body: &str) -> (u16, String) {
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let parameter = |name: &str| {
        query.split('&').find_map(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            (key == name).then(|| percent_decode(value))
        })
    };
    let zone_path = format!("/2013-04-01/hostedzone/{ZONE_ID}");
    match (method, path.trim_end_matches('/')) {
        ("GET", "/2013-04-01/hostedzonesbyname") => {
            let wanted = parameter("dnsname").unwrap_or_default();
            let zones =
                if wanted.is_empty() || wanted.trim_end_matches('.') == ZONE_NAME.trim_end_matches('.') {
                    hosted_zone(state.records.len())
                } else {
                    String::new()
                };
            (
                200,
                document(
                    "ListHostedZonesByNameResponse",
                    &format!(
                        "<HostedZones>{zones}</HostedZones><DNSName>{}</DNSName><IsTruncated>false</IsTruncated>\
                         <MaxItems>100</MaxItems>",
                        escape(&wanted)
                    ),
                ),
            )
        }
        ("GET", path) if path == zone_path => (
            200,
            document(
                "GetHostedZoneResponse",
                &format!(
                    "{}<DelegationSet><NameServers><NameServer>ns-1.stub.invalid</NameServer></NameServers>\
                     </DelegationSet>",
                    hosted_zone(state.records.len())
                ),
            ),
        ),
        ("GET", path) if path.starts_with("/2013-04-01/hostedzone/") && !path.starts_with(&zone_path) => {
            error(404, "NoSuchHostedZone", &format!("No hosted zone found with ID: {path}"))
        }
        ("GET", path) if path == format!("{zone_path}/rrset") => {
            list_records(state, parameter("name"), parameter("type"), parameter("identifier"))
        }
        ("POST", path) if path == format!("{zone_path}/rrset") => change_records(state, body),
        ("GET", path) if path.starts_with("/2013-04-01/change/") => {
            let id = path.trim_start_matches("/2013-04-01/change/").to_owned();
            let pending_polls = state.pending_polls;
            let Some(change) = state.changes.iter_mut().find(|(known, _)| *known == id) else {
                return error(
                    404,
                    "NoSuchChange",
                    &format!("A change with the specified change ID does not exist: {id}"),
                );
            };
            change.1 += 1;
            let status = if change.1 <= pending_polls { "PENDING" } else { "INSYNC" };
            (200, document("GetChangeResponse", &change_info(&id, status)))
        }
        _ => error(400, "InvalidInput", &format!("the stub does not serve {method} {path}")),
    }
}

fn hosted_zone(record_count: usize) -> String {
    format!(
        "<HostedZone><Id>/hostedzone/{ZONE_ID}</Id><Name>{ZONE_NAME}</Name><CallerReference>stub</CallerReference>\
         <Config><PrivateZone>false</PrivateZone></Config><ResourceRecordSetCount>{record_count}\
         </ResourceRecordSetCount></HostedZone>"
    )
}

/// Records sorted as Route53 lists them: by name with its labels reversed, then type.
fn sort_key(record: &StubRecord) -> (String, String, String) {
    let reversed: Vec<&str> = record.name.trim_end_matches('.').split('.').rev().collect();
    (
        reversed.join(".").to_ascii_lowercase(),
        record.record_type.clone(),
        record.set_identifier.clone().unwrap_or_default(),
    )
}

fn list_records(
    state: &State,
    name: Option<String>,
    record_type: Option<String>,
    identifier: Option<String>,
) -> (u16, String) {
    let mut records = state.records.clone();
    records.sort_by_key(sort_key);
    if let Some(name) = name {
        let start = StubRecord {
            name: if name.ends_with('.') { name } else { format!("{name}.") },
            record_type: record_type.unwrap_or_default(),
            ttl: None,
            values: Vec::new(),
            set_identifier: identifier,
            failover: None,
            health_check_id: None,
        };
        let start_key = sort_key(&start);
        records.retain(|record| sort_key(record) >= start_key);
    }
    let listed: String = records.iter().map(record_xml).collect();
    (
        200,
        document(
            "ListResourceRecordSetsResponse",
            &format!(
                "<ResourceRecordSets>{listed}</ResourceRecordSets><IsTruncated>false</IsTruncated>\
                 <MaxItems>300</MaxItems>"
            ),
        ),
    )
}

fn record_xml(record: &StubRecord) -> String {
    let mut xml = format!(
        "<ResourceRecordSet><Name>{}</Name><Type>{}</Type>",
        escape(&record.name),
        escape(&record.record_type)
    );
    if let Some(identifier) = &record.set_identifier {
        xml.push_str(&format!("<SetIdentifier>{}</SetIdentifier>", escape(identifier)));
    }
    if let Some(failover) = &record.failover {
        xml.push_str(&format!("<Failover>{failover}</Failover>"));
    }
    if let Some(ttl) = record.ttl {
        xml.push_str(&format!("<TTL>{ttl}</TTL>"));
    }
    if !record.values.is_empty() {
        xml.push_str("<ResourceRecords>");
        for value in &record.values {
            xml.push_str(&format!("<ResourceRecord><Value>{}</Value></ResourceRecord>", escape(value)));
        }
        xml.push_str("</ResourceRecords>");
    }
    if let Some(health_check) = &record.health_check_id {
        xml.push_str(&format!("<HealthCheckId>{}</HealthCheckId>", escape(health_check)));
    }
    xml.push_str("</ResourceRecordSet>");
    xml
}

/// Applies a batch all or nothing, as Route53 does.
fn change_records(state: &mut State, body: &str) -> (u16, String) {
    if state.refusals_left > 0 {
        state.refusals_left -= 1;
        return error(
            400,
            "PriorRequestNotComplete",
            "The request was rejected because Route 53 was still processing a prior request.",
        );
    }
    let mut records = state.records.clone();
    for change in body.split("<Change>").skip(1) {
        let action = element(change, "Action").unwrap_or_default();
        let record = StubRecord {
            name: {
                let name = element(change, "Name").unwrap_or_default();
                if name.ends_with('.') { name } else { format!("{name}.") }
            },
            record_type: element(change, "Type").unwrap_or_default(),
            ttl: element(change, "TTL").and_then(|ttl| ttl.parse().ok()),
            values: elements(change, "Value"),
            set_identifier: element(change, "SetIdentifier"),
            failover: element(change, "Failover"),
            health_check_id: element(change, "HealthCheckId"),
        };
        let existing = records.iter().position(|candidate| candidate.same_key(&record));
        match (action.as_str(), existing) {
            ("CREATE", Some(_)) => {
                return invalid_batch(&format!(
                    "Tried to create resource record set [name='{}', type='{}'] but it already exists",
                    record.name, record.record_type
                ));
            }
            ("CREATE", None) | ("UPSERT", None) => records.push(record),
            ("UPSERT", Some(index)) => records[index] = record,
            ("DELETE", Some(index)) if records[index] == record => {
                records.remove(index);
            }
            ("DELETE", _) => {
                return invalid_batch(&format!(
                    "Tried to delete resource record set [name='{}', type='{}'] but it was not found",
                    record.name, record.record_type
                ));
            }
            (other, _) => return error(400, "InvalidInput", &format!("unknown action {other}")),
        }
    }
    state.records = records;
    let id = format!("C{:013}", state.changes.len() + 1);
    state.changes.push((id.clone(), 0));
    (200, document("ChangeResourceRecordSetsResponse", &change_info(&format!("/change/{id}"), "PENDING")))
}

fn invalid_batch(message: &str) -> (u16, String) {
    error(400, "InvalidChangeBatch", message)
}

fn change_info(id: &str, status: &str) -> String {
    let id = if id.starts_with("/change/") { id.to_owned() } else { format!("/change/{id}") };
    format!(
        "<ChangeInfo><Id>{id}</Id><Status>{status}</Status><SubmittedAt>2024-01-15T10:00:00.000Z</SubmittedAt></ChangeInfo>"
    )
}

fn document(root: &str, inner: &str) -> String {
    format!("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<{root} xmlns=\"{NAMESPACE}\">{inner}</{root}>")
}

/// Route53's error document (the "wrapped" REST XML error).
fn error(status: u16, code: &str, message: &str) -> (u16, String) {
    (
        status,
        format!(
            "<?xml version=\"1.0\"?>\n<ErrorResponse xmlns=\"{NAMESPACE}\"><Error><Type>Sender</Type>\
             <Code>{code}</Code><Message>{}</Message></Error><RequestId>stub</RequestId></ErrorResponse>",
            escape(message)
        ),
    )
}

fn element(text: &str, name: &str) -> Option<String> {
    let open = format!("<{name}>");
    let close = format!("</{name}>");
    let start = text.find(&open)? + open.len();
    let end = start + text[start..].find(&close)?;
    Some(unescape(&text[start..end]))
}

fn elements(text: &str, name: &str) -> Vec<String> {
    let open = format!("<{name}>");
    let mut found = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find(&open) {
        let Some(value) = element(&rest[start..], name) else { break };
        found.push(value);
        rest = &rest[start + open.len()..];
    }
    found
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

fn unescape(text: &str) -> String {
    text.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&apos;", "'")
        .replace("&amp;", "&")
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut index = 0;
    while index < bytes.len() {
        let byte = bytes[index];
        let hex = (byte == b'%')
            .then(|| bytes.get(index + 1..index + 3))
            .flatten()
            .and_then(|digits| u8::from_str_radix(std::str::from_utf8(digits).ok()?, 16).ok());
        if let Some(value) = hex {
            decoded.push(value);
            index += 3;
        } else {
            decoded.push(if byte == b'+' { b' ' } else { byte });
            index += 1;
        }
    }
    String::from_utf8_lossy(&decoded).into_owned()
}
