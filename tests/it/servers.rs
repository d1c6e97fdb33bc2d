//! Smoke tests of the test servers in `tests/it/support`: each starts, does one real
//! operation, and is gone after it is dropped.

use crate::support;

use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, SystemTime};

use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_s3::primitives::ByteStream;
use aws_smithy_http_client::tls::{Provider, rustls_provider::CryptoMode};
use support::{HttpServer, Moto, Postgres, Redis, S3, ScriptedResponse};

fn assert_port_closed(port: u16, what: &str) {
    assert!(
        TcpStream::connect(("127.0.0.1", port)).is_err(),
        "{what} still answers on port {port} after it was dropped"
    );
}

#[test]
fn postgres_runs_sql_and_accepts_its_url_and_environment() {
    let postgres = Postgres::start();
    postgres.create_database("inventory");
    postgres.psql(
        "inventory",
        "CREATE TABLE items (id integer); INSERT INTO items SELECT generate_series(1, 3);",
    );
    assert_eq!(postgres.psql("inventory", "SELECT count(*) FROM items"), "3");

    let psql = postgres.binaries().join("psql");
    let by_url = Command::new(&psql)
        .args(["--no-psqlrc", "--tuples-only", "--no-align", "--dbname"])
        .arg(postgres.url("inventory"))
        .args(["--command", "SELECT current_database()"])
        .output()
        .expect("psql runs");
    assert!(by_url.status.success(), "{by_url:?}");
    assert_eq!(String::from_utf8_lossy(&by_url.stdout).trim(), "inventory");

    let by_environment = Command::new(&psql)
        .env_clear()
        .envs(postgres.env())
        .args(["--no-psqlrc", "--tuples-only", "--no-align", "--dbname", "inventory"])
        .args(["--command", "SELECT count(*) FROM items"])
        .output()
        .expect("psql runs");
    assert!(by_environment.status.success(), "{by_environment:?}");
    assert_eq!(String::from_utf8_lossy(&by_environment.stdout).trim(), "3");

    let port = postgres.port();
    drop(postgres);
    assert_port_closed(port, "PostgreSQL");
}

#[test]
#[should_panic(expected = "relation \"missing\" does not exist")]
fn postgres_psql_panics_with_the_server_error() {
    let postgres = Postgres::start();
    postgres.psql("postgres", "SELECT * FROM missing");
}

fn s3_client(s3: &S3, secret_key: &str) -> aws_sdk_s3::Client {
    let http_client =
        aws_smithy_http_client::Builder::new().tls_provider(Provider::Rustls(CryptoMode::Ring)).build_https();
    let config = aws_sdk_s3::Config::builder()
        .behavior_version(BehaviorVersion::latest())
        .http_client(http_client)
        .region(Region::new(s3.region()))
        .endpoint_url(s3.endpoint())
        .force_path_style(true)
        .credentials_provider(Credentials::new(s3.access_key(), secret_key, None, None, "dr-plan tests"))
        .build();
    aws_sdk_s3::Client::from_conf(config)
}

#[tokio::test]
async fn s3_serves_seeded_files_and_checks_signatures() {
    let s3 = S3::start(&["backups"]);
    s3.put_file("backups", "nightly/2024-01-02.sql.gz", b"second");
    s3.put_file("backups", "nightly/2024-01-01.sql.gz", b"first");
    let an_hour_ago = SystemTime::now() - Duration::from_secs(3600);
    s3.set_last_modified("backups", "nightly/2024-01-01.sql.gz", an_hour_ago);
    let client = s3_client(&s3, s3.secret_key());

    let listing = client
        .list_objects_v2()
        .bucket("backups")
        .prefix("nightly/")
        .send()
        .await
        .expect("signed ListObjectsV2 succeeds");
    let listed: Vec<(&str, i64)> = listing
        .contents()
        .iter()
        .map(|object| (object.key().unwrap_or_default(), object.size().unwrap_or_default()))
        .collect();
    assert_eq!(listed, [("nightly/2024-01-01.sql.gz", 5), ("nightly/2024-01-02.sql.gz", 6)]);
    let first_modified = listing.contents()[0].last_modified().expect("LastModified");
    let an_hour_ago_seconds =
        an_hour_ago.duration_since(SystemTime::UNIX_EPOCH).expect("after 1970").as_secs();
    assert_eq!(first_modified.secs(), i64::try_from(an_hour_ago_seconds).expect("fits"));

    client
        .put_object()
        .bucket("backups")
        .key("uploaded/report.json")
        .body(ByteStream::from_static(b"{\"ok\":true}"))
        .send()
        .await
        .expect("signed PutObject succeeds");
    assert_eq!(s3.get_file("backups", "uploaded/report.json").as_deref(), Some(&b"{\"ok\":true}"[..]));
    assert_eq!(
        s3.list("backups"),
        ["nightly/2024-01-01.sql.gz", "nightly/2024-01-02.sql.gz", "uploaded/report.json"]
    );
    assert_eq!(s3.get_file("backups", "absent"), None);

    let downloaded = client
        .get_object()
        .bucket("backups")
        .key("nightly/2024-01-02.sql.gz")
        .send()
        .await
        .expect("signed GetObject succeeds");
    let bytes = downloaded.body.collect().await.expect("body").into_bytes();
    assert_eq!(&bytes[..], b"second");

    let forged = s3_client(&s3, "not-the-secret-key");
    let refused = forged
        .list_objects_v2()
        .bucket("backups")
        .send()
        .await
        .expect_err("a request signed with the wrong secret key is refused");
    let service_error = refused.into_service_error();
    let error_code = aws_sdk_s3::error::ProvideErrorMetadata::code(&service_error);
    assert_eq!(error_code, Some("SignatureDoesNotMatch"), "{service_error:?}");

    let port = s3.port();
    drop(s3);
    assert_port_closed(port, "s3s-fs");
}

#[tokio::test]
async fn http_server_answers_from_its_script_and_records_requests() {
    // reqwest is built without a default crypto provider; the binary installs ring too.
    let _ = rustls::crypto::ring::default_provider().install_default();
    let server = HttpServer::start([
        ScriptedResponse::new(503, "starting"),
        ScriptedResponse::json(200, &serde_json::json!({"status": "ok"})).header("X-Try", "2"),
    ]);
    let client = reqwest::Client::new();

    let first = client.get(format!("{}/health?deep=1", server.url())).send().await.expect("first request");
    assert_eq!(first.status().as_u16(), 503);
    assert_eq!(first.text().await.expect("body"), "starting");
    for _ in 0..2 {
        let later = client
            .post(format!("{}/hooks/notify", server.url()))
            .header("Authorization", "Bearer token")
            .json(&serde_json::json!({"text": "restore finished"}))
            .send()
            .await
            .expect("later request");
        assert_eq!(later.status().as_u16(), 200);
        assert_eq!(later.headers()["x-try"], "2");
        assert_eq!(
            later.json::<serde_json::Value>().await.expect("JSON body"),
            serde_json::json!({"status": "ok"})
        );
    }

    let requests = server.requests();
    assert_eq!(requests.len(), 3);
    assert_eq!(requests[0].method, "GET");
    assert_eq!(requests[0].path, "/health?deep=1");
    assert_eq!(requests[2].method, "POST");
    assert_eq!(requests[2].path, "/hooks/notify");
    assert_eq!(requests[2].header("authorization"), Some("Bearer token"));
    assert_eq!(requests[2].body_json(), serde_json::json!({"text": "restore finished"}));

    let port = server.port();
    drop(server);
    assert_port_closed(port, "HttpServer");
}

#[tokio::test]
async fn http_server_delays_answers_for_timeout_tests() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let server = HttpServer::start([ScriptedResponse::new(200, "late").delayed(Duration::from_secs(2))]);
    let client = reqwest::Client::builder().timeout(Duration::from_millis(200)).build().expect("client");
    let error =
        client.get(server.url()).send().await.expect_err("the answer comes after the client's timeout");
    assert!(error.is_timeout(), "{error:?}");
    assert_eq!(server.request_count(), 1);
}

#[test]
fn http_server_reads_chunked_bodies() {
    let server = HttpServer::start([(202, "queued")]);
    // curl sends a body of unknown length in chunks, and asks `Expect: 100-continue`.
    let output = Command::new("curl")
        .args(["--silent", "--show-error", "--max-time", "30"])
        .args(["--header", "Transfer-Encoding: chunked", "--header", "Expect: 100-continue"])
        .args(["--data-binary", "@-"])
        .arg(format!("{}/upload", server.url()))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .and_then(|mut curl| {
            use std::io::Write as _;
            curl.stdin.take().expect("stdin is piped").write_all(&[b'x'; 5000])?;
            curl.wait_with_output()
        })
        .expect("curl runs (scripts/install-test-deps.sh installs it)");
    assert_eq!(String::from_utf8_lossy(&output.stdout), "queued");
    let requests = server.requests();
    assert_eq!(requests[0].method, "POST");
    assert_eq!(requests[0].header("transfer-encoding"), Some("chunked"));
    assert_eq!(requests[0].body, vec![b'x'; 5000]);
}

#[test]
fn redis_answers_commands() {
    let redis = Redis::start();
    assert_eq!(redis.cli(&["PING"]), "PONG");
    assert_eq!(redis.cli(&["SET", "restore:state", "done"]), "OK");
    assert_eq!(redis.cli(&["GET", "restore:state"]), "done");

    let port = redis.port();
    drop(redis);
    assert_port_closed(port, "redis-server");
}

#[test]
fn moto_serves_route53_and_resets() {
    let moto = Moto::start();
    moto.reset();
    // moto routes a request to a service by the credential scope of its signature, so
    // the request is signed (with any key) as a Route53 client would.
    let output = Command::new("curl")
        .args(["--silent", "--show-error", "--fail", "--max-time", "30"])
        .args(["--aws-sigv4", "aws:amz:us-east-1:route53", "--user", "testing:testing"])
        .arg(format!("{}/2013-04-01/hostedzone", moto.endpoint()))
        .output()
        .expect("curl runs (scripts/install-test-deps.sh installs it)");
    let body = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{output:?}");
    assert!(body.contains("ListHostedZonesResponse"), "{body}");

    let port = moto.port();
    drop(moto);
    assert_port_closed(port, "moto_server");
}
