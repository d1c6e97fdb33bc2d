//! `pg.dump`, `pg.restore` and `pg.query` against a real PostgreSQL (a throwaway
//! cluster from `tests/it/support`), and their round trips with the real `pg_dump`,
//! `pg_restore`, `psql`, `openssl enc -d` and `gunzip`.
//!
//! Steps run through `StepKind::execute` with a `connection:` URL (the process
//! environment is shared by parallel tests); the end-to-end test runs the `dr-plan`
//! binary with the `PG*` environment instead.

use crate::support;
use crate::support::kinds::{KindExt as _, kind};

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use dr_plan::kinds::{Outputs, Preflight, PreflightContext, StepContext, StepError};
use dr_plan::lang::secret::{Redactor, SecretValue};
use serde_json::{Value as Json, json};
use support::Postgres;
use support::festivals::sha256_hex;
use support::process::{free_port, wait_bounded, wait_until};

/// The rows the seeded database holds.
const USERS: usize = 1000;

/// Creates `database` with two related tables, an index, a view and a sequence.
fn seed(postgres: &Postgres, database: &str) {
    postgres.create_database(database);
    postgres.psql(
        database,
        &format!(
            "create table users (id serial primary key, email text not null unique, note text);
             create table tickets (id serial primary key, user_id int not null references users(id), price numeric(8,2));
             create index tickets_user on tickets(user_id);
             create view big_spenders as select user_id, sum(price) from tickets group by user_id having sum(price) > 100;
             insert into users (email, note)
               select 'user' || n || '@example.com', case when n % 7 = 0 then E'tab\\there, quote '' and pipe |' end
               from generate_series(1, {USERS}) n;
             insert into tickets (user_id, price) select 1 + n % {USERS}, (n % 97) * 1.25 from generate_series(1, 3000) n;"
        ),
    );
}

/// Row counts and a checksum of every row of both tables, plus the objects that exist.
fn fingerprint(postgres: &Postgres, database: &str) -> String {
    postgres.psql(
        database,
        "select (select count(*) from users), (select count(*) from tickets),
                (select md5(string_agg(t::text, ',' order by id)) from users t),
                (select md5(string_agg(t::text, ',' order by id)) from tickets t),
                (select string_agg(relname, ',' order by relname) from pg_class c
                   join pg_namespace n on n.oid = c.relnamespace where nspname = 'public')",
    )
}

struct Sandbox {
    directory: tempfile::TempDir,
    redactor: Arc<Redactor>,
    run_id: String,
}

impl Sandbox {
    fn new() -> Sandbox {
        Sandbox {
            directory: tempfile::tempdir().expect("a temporary directory"),
            redactor: Arc::default(),
            run_id: "test-run".to_owned(),
        }
    }

    fn with_secrets(secrets: &[&str]) -> Sandbox {
        let values: Vec<SecretValue> = secrets.iter().map(|secret| SecretValue::new(*secret)).collect();
        Sandbox { redactor: Arc::new(Redactor::new(&values)), ..Sandbox::new() }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.directory.path().join(name)
    }

    fn run_dir(&self) -> PathBuf {
        self.path("run")
    }

    fn context(&self, step: &str) -> StepContext {
        StepContext {
            run_id: self.run_id.clone(),
            redactor: Arc::clone(&self.redactor),
            ..support::steps::context("pg-steps", step, &self.run_dir())
        }
    }

    async fn run(&self, kind: &str, step: &str, with: Json) -> Result<Outputs, StepError> {
        let kind = dr_plan::kinds::find(kind).expect("a known kind");
        kind.execute(with, &self.context(step)).await
    }

    async fn succeed(&self, kind: &str, step: &str, with: Json) -> Outputs {
        match self.run(kind, step, with.clone()).await {
            Ok(outputs) => outputs,
            Err(error) => panic!("{kind} `{step}` with {with} failed: {error}"),
        }
    }

    async fn fail(&self, kind: &str, step: &str, with: Json) -> String {
        match self.run(kind, step, with.clone()).await {
            Ok(outputs) => panic!("{kind} `{step}` with {with} succeeded: {outputs:?}"),
            Err(error) => error.to_string(),
        }
    }

    /// The stderr log a step kept.
    fn log(&self, step: &str) -> String {
        std::fs::read_to_string(self.run_dir().join(format!("{step}.stderr.log"))).unwrap_or_default()
    }
}

/// Runs one of the PostgreSQL programs against the test server and insists it succeeds.
fn program(postgres: &Postgres, name: &str, arguments: &[&str]) -> Vec<u8> {
    let output = Command::new(postgres.binaries().join(name))
        .args(arguments)
        .envs(postgres.env())
        .env_remove("PGPASSWORD")
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|error| panic!("cannot run {name}: {error}"));
    assert!(
        output.status.success(),
        "{name} {arguments:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    output.stdout
}

fn output_path(outputs: &Outputs) -> PathBuf {
    PathBuf::from(outputs["path"].as_str().expect("a path output"))
}

#[tokio::test]
async fn dumps_custom_plain_and_compressed_and_says_what_it_wrote() {
    let postgres = Postgres::start();
    seed(&postgres, "tododb");
    let sandbox = Sandbox::new();
    let url = postgres.url("tododb");

    let custom =
        sandbox.succeed("pg.dump", "custom", json!({ "database": "tododb", "connection": url })).await;
    let path = output_path(&custom);
    assert_eq!(path.parent(), Some(sandbox.run_dir().as_path()), "default dest is the run directory");
    let name = custom["name"].as_str().unwrap();
    assert!(name.starts_with("tododb-") && name.ends_with("Z.dump"), "{name}");
    let bytes = std::fs::read(&path).unwrap();
    assert!(bytes.starts_with(b"PGDMP"));
    assert_eq!(custom["bytes"], json!(bytes.len()));
    assert_eq!(custom["sha256"], json!(sha256_hex(&bytes)));

    let plain = sandbox
        .succeed(
            "pg.dump",
            "plain",
            json!({ "database": "tododb", "format": "plain", "dest": sandbox.path("out/plain.sql"), "connection": url }),
        )
        .await;
    let text = std::fs::read_to_string(output_path(&plain)).unwrap();
    assert!(text.contains("CREATE TABLE public.users"), "plain SQL: {}", &text[..text.len().min(400)]);

    let zstd = sandbox
        .succeed(
            "pg.dump",
            "zstd",
            json!({ "database": "tododb", "compress": "zstd", "dest": sandbox.path("out/"), "connection": url }),
        )
        .await;
    let zstd_path = output_path(&zstd);
    assert_eq!(zstd_path.parent(), Some(sandbox.path("out").as_path()));
    assert!(zstd_path.to_string_lossy().ends_with(".dump.zst"));
    let decompressed = Command::new("zstd").args(["-d", "-c"]).arg(&zstd_path).output().unwrap();
    assert!(decompressed.status.success());
    assert!(decompressed.stdout.starts_with(b"PGDMP"), "zstd -d gives the custom dump");

    let directory = sandbox
        .succeed(
            "pg.dump",
            "directory",
            json!({ "database": "tododb", "format": "directory", "dest": sandbox.path("dir-dump"), "connection": url }),
        )
        .await;
    assert!(sandbox.path("dir-dump/toc.dat").is_file());
    assert!(!sandbox.path("dir-dump.partial").exists());
    assert_eq!(directory["sha256"].as_str().unwrap().len(), 64);

    let leftovers: Vec<_> = walk(sandbox.directory.path())
        .into_iter()
        .filter(|path| path.to_string_lossy().contains(".partial"))
        .collect();
    assert!(leftovers.is_empty(), "partial files left: {leftovers:?}");
}

fn walk(directory: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(directory).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            found.extend(walk(&path));
        }
        found.push(path);
    }
    found
}

#[tokio::test]
async fn an_encrypted_gzipped_plain_dump_opens_with_openssl_and_gunzip_and_loads_with_psql() {
    let postgres = Postgres::start();
    seed(&postgres, "tododb");
    let key = "correct horse battery staple";
    let sandbox = Sandbox::with_secrets(&[key]);
    std::fs::write(sandbox.path("backup.key"), format!("{key}\n")).unwrap();
    let outputs = sandbox
        .succeed(
            "pg.dump",
            "backup",
            json!({
                "database": "tododb", "format": "plain", "compress": "gzip",
                "encrypt": { "format": "openssl-pbkdf2", "key": key },
                "connection": postgres.url("tododb"),
            }),
        )
        .await;
    let path = output_path(&outputs);
    assert!(path.to_string_lossy().ends_with(".sql.gz.enc"), "{}", path.display());
    assert!(std::fs::read(&path).unwrap().starts_with(b"Salted__"));
    assert_eq!(outputs["sha256"], json!(sha256_hex(&std::fs::read(&path).expect("the dump"))));

    // The Dharma runbook's restore, verbatim: openssl enc -d | gunzip | psql.
    let script = format!(
        "openssl enc -d -aes-256-cbc -pbkdf2 -pass file:{key_file} -in {dump} | gunzip > {sql}",
        key_file = sandbox.path("backup.key").display(),
        dump = path.display(),
        sql = sandbox.path("restored.sql").display()
    );
    let shell = Command::new("bash").args(["-o", "pipefail", "-c", &script]).output().unwrap();
    assert!(shell.status.success(), "{script}: {}", String::from_utf8_lossy(&shell.stderr));
    postgres.create_database("copy");
    let sql = sandbox.path("restored.sql");
    program(
        &postgres,
        "psql",
        &["-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", "copy", "-f", sql.to_str().unwrap()],
    );
    assert_eq!(fingerprint(&postgres, "copy"), fingerprint(&postgres, "tododb"));
}

#[tokio::test]
async fn a_dr_plan_custom_dump_restores_with_plain_pg_restore() {
    let postgres = Postgres::start();
    seed(&postgres, "tododb");
    let sandbox = Sandbox::new();
    let outputs = sandbox
        .succeed("pg.dump", "backup", json!({ "database": "tododb", "connection": postgres.url("tododb") }))
        .await;
    postgres.create_database("copy");
    let dump = output_path(&outputs);
    program(&postgres, "pg_restore", &["--exit-on-error", "-d", "copy", dump.to_str().unwrap()]);
    assert_eq!(fingerprint(&postgres, "copy"), fingerprint(&postgres, "tododb"));

    // A compressed custom dump is `pg_dump -Fc -Z0 | gzip`: gunzip, then pg_restore.
    let gzipped = sandbox
        .succeed(
            "pg.dump",
            "gzipped",
            json!({ "database": "tododb", "compress": "gzip", "connection": postgres.url("tododb") }),
        )
        .await;
    let plain_dump = sandbox.path("gunzipped.dump");
    let gunzip = Command::new("gunzip").arg("-c").arg(output_path(&gzipped)).output().unwrap();
    assert!(gunzip.status.success());
    std::fs::write(&plain_dump, gunzip.stdout).unwrap();
    postgres.create_database("copy2");
    program(&postgres, "pg_restore", &["--exit-on-error", "-d", "copy2", plain_dump.to_str().unwrap()]);
    assert_eq!(fingerprint(&postgres, "copy2"), fingerprint(&postgres, "tododb"));
}

#[tokio::test]
async fn a_real_pg_dump_restores_with_two_jobs_and_clean_replaces_a_damaged_database() {
    let postgres = Postgres::start();
    seed(&postgres, "tododb");
    let expected = fingerprint(&postgres, "tododb");
    let sandbox = Sandbox::new();
    let dump = sandbox.path("tododb.dump");
    program(&postgres, "pg_dump", &["-Fc", "-d", "tododb", "-f", dump.to_str().unwrap()]);

    postgres.create_database("copy");
    let outputs = sandbox
        .succeed(
            "pg.restore",
            "restore",
            json!({ "dump": dump, "database": "copy", "jobs": 2, "connection": postgres.url("copy") }),
        )
        .await;
    assert_eq!(outputs["format"], "custom");
    assert_eq!(outputs["database"], "copy");
    assert_eq!(fingerprint(&postgres, "copy"), expected);
    assert!(
        sandbox.log("restore").contains("--jobs=2"),
        "the log names the command: {}",
        sandbox.log("restore")
    );

    // Damage the copy, then restore over it with clean.
    postgres.psql(
        "copy",
        "delete from tickets where id > 10; update users set email = 'x' || id; drop view big_spenders;",
    );
    assert_ne!(fingerprint(&postgres, "copy"), expected);
    sandbox
        .succeed(
            "pg.restore",
            "clean",
            json!({ "dump": dump, "database": "copy", "clean": true, "jobs": 2, "connection": postgres.url("copy") }),
        )
        .await;
    assert_eq!(fingerprint(&postgres, "copy"), expected);
}

#[tokio::test]
async fn a_plain_restore_is_one_transaction_and_an_error_leaves_the_target_as_it_was() {
    let postgres = Postgres::start();
    seed(&postgres, "tododb");
    let sandbox = Sandbox::new();
    let dump = sandbox.path("tododb.sql");
    program(&postgres, "pg_dump", &["-d", "tododb", "-f", dump.to_str().unwrap()]);
    postgres.create_database("copy");
    let outputs = sandbox
        .succeed(
            "pg.restore",
            "plain",
            json!({ "dump": dump, "database": "copy", "connection": postgres.url("copy") }),
        )
        .await;
    assert_eq!(outputs["format"], "plain");
    assert_eq!(fingerprint(&postgres, "copy"), fingerprint(&postgres, "tododb"));

    // A file that creates and fills a table, then fails half-way through.
    postgres.create_database("target");
    postgres.psql("target", "create table kept (id int primary key); insert into kept values (1), (2);");
    let before = postgres.psql(
        "target",
        "select string_agg(relname || ':' || n_live_tup, ',' order by relname) from pg_stat_user_tables",
    );
    let broken = sandbox.path("broken.sql");
    std::fs::write(
        &broken,
        "create table added (id int);\ninsert into added values (1);\ndelete from kept;\n\
         insert into missing_table values (1);\ninsert into added values (2);\n",
    )
    .unwrap();
    let error = sandbox
        .fail(
            "pg.restore",
            "broken",
            json!({ "dump": broken, "database": "target", "connection": postgres.url("target") }),
        )
        .await;
    assert!(error.contains("relation \"missing_table\" does not exist"), "{error}");
    assert!(error.contains("line 4"), "names the line: {error}");
    assert!(error.contains("rolled back: database target is as it was before the step"), "{error}");
    assert_eq!(postgres.psql("target", "select count(*) from kept"), "2");
    assert_eq!(postgres.psql("target", "select count(*) from pg_class where relname = 'added'"), "0");
    let after = postgres.psql(
        "target",
        "select string_agg(relname || ':' || n_live_tup, ',' order by relname) from pg_stat_user_tables",
    );
    assert_eq!(before.split(',').next(), after.split(',').next());

    // What a plain dump cannot do is refused before anything changes.
    let error = sandbox
        .fail(
            "pg.restore",
            "plain-clean",
            json!({ "dump": dump, "database": "target", "clean": true, "connection": postgres.url("target") }),
        )
        .await;
    assert!(error.contains("is plain SQL") && error.contains("Remove `clean`"), "{error}");
    assert_eq!(postgres.psql("target", "select count(*) from kept"), "2");
}

#[tokio::test]
async fn create_makes_the_database_and_with_clean_recreates_it() {
    let postgres = Postgres::start();
    seed(&postgres, "tododb");
    let expected = fingerprint(&postgres, "tododb");
    let sandbox = Sandbox::new();
    let backup = sandbox
        .succeed("pg.dump", "backup", json!({ "database": "tododb", "connection": postgres.url("tododb") }))
        .await;
    let dump = output_path(&backup);

    // Into a database of another name than the dump's: `create` makes that one.
    sandbox
        .succeed(
            "pg.restore",
            "create",
            json!({ "dump": dump, "database": "tododb_verify", "create": true, "jobs": 2, "connection": postgres.url("postgres") }),
        )
        .await;
    assert_eq!(fingerprint(&postgres, "tododb_verify"), expected);

    postgres.psql("tododb_verify", "create table stray (id int); delete from tickets;");
    sandbox
        .succeed(
            "pg.restore",
            "recreate",
            json!({ "dump": dump, "database": "tododb_verify", "create": true, "clean": true, "connection": postgres.url("postgres") }),
        )
        .await;
    assert_eq!(
        fingerprint(&postgres, "tododb_verify"),
        expected,
        "the stray table is gone with the old database"
    );

    // A plain dump into a new database.
    let plain = sandbox
        .succeed(
            "pg.dump",
            "plain",
            json!({ "database": "tododb", "format": "plain", "connection": postgres.url("tododb") }),
        )
        .await;
    sandbox
        .succeed(
            "pg.restore",
            "create-plain",
            json!({ "dump": output_path(&plain), "database": "from_plain", "create": true, "connection": postgres.url("postgres") }),
        )
        .await;
    assert_eq!(fingerprint(&postgres, "from_plain"), expected);

    // Without `create`, a missing database is named, with what to do.
    let error = sandbox
        .fail(
            "pg.restore",
            "missing",
            json!({ "dump": dump, "database": "nowhere", "connection": postgres.url("postgres") }),
        )
        .await;
    assert!(error.contains("database nowhere") && error.contains("does not exist"), "{error}");
    assert!(error.contains("`create: true`"), "{error}");
}

#[tokio::test]
async fn tables_restores_only_the_named_tables() {
    let postgres = Postgres::start();
    seed(&postgres, "tododb");
    let sandbox = Sandbox::new();
    let backup = sandbox
        .succeed("pg.dump", "backup", json!({ "database": "tododb", "connection": postgres.url("tododb") }))
        .await;
    postgres.create_database("partial");
    sandbox
        .succeed(
            "pg.restore",
            "users-only",
            json!({ "dump": output_path(&backup), "database": "partial", "tables": ["users"], "connection": postgres.url("partial") }),
        )
        .await;
    assert_eq!(postgres.psql("partial", "select count(*) from users"), USERS.to_string());
    assert_eq!(
        postgres
            .psql("partial", "select count(*) from pg_class where relname in ('tickets', 'big_spenders')"),
        "0"
    );
}

/// Starts `psql` holding a session open on `database`, and waits until the server sees it.
fn hold_session(postgres: &Postgres, database: &str) -> std::process::Child {
    let child = Command::new(postgres.binaries().join("psql"))
        .args(["-X", "-q", "-d", database, "-c", "select pg_sleep(120)"])
        .envs(postgres.env())
        .env("PGAPPNAME", "held-session")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("psql starts");
    let seen = wait_until(Duration::from_secs(20), || {
        postgres
            .psql("postgres", "select count(*) from pg_stat_activity where application_name = 'held-session'")
            == "1"
    });
    assert!(seen, "the held session never showed in pg_stat_activity");
    child
}

#[tokio::test]
async fn other_sessions_are_terminated_before_the_restore() {
    let postgres = Postgres::start();
    seed(&postgres, "tododb");
    let sandbox = Sandbox::new();
    let backup = sandbox
        .succeed("pg.dump", "backup", json!({ "database": "tododb", "connection": postgres.url("tododb") }))
        .await;
    let mut held = hold_session(&postgres, "tododb");
    sandbox
        .succeed(
            "pg.restore",
            "restore",
            json!({ "dump": output_path(&backup), "database": "tododb", "clean": true, "connection": postgres.url("tododb") }),
        )
        .await;
    let status = wait_bounded(&mut held, Duration::from_secs(10))
        .expect("the held session's psql ended once its backend was terminated");
    assert!(!status.success(), "psql reports the terminated connection");
    assert_eq!(
        postgres.psql(
            "postgres",
            "select count(*) from pg_stat_activity where application_name = 'held-session'"
        ),
        "0"
    );
}

#[tokio::test]
async fn a_password_in_the_connection_never_shows_in_errors_or_logs() {
    let postgres = Postgres::start();
    seed(&postgres, "tododb");
    let password = "Pa55-never-in-argv";
    // Not a plan secret: the steps themselves must keep it out of what they write.
    let sandbox = Sandbox::new();
    let url =
        format!("postgresql://postgres:{password}@127.0.0.1:{}/whatever?connect_timeout=5", postgres.port());
    sandbox.succeed("pg.query", "query", json!({ "database": "tododb", "connection": url, "assert": [{ "sql": "select 1", "expect": "1" }] })).await;
    let backup =
        sandbox.succeed("pg.dump", "backup", json!({ "database": "tododb", "connection": url })).await;
    let broken = sandbox.path("broken.sql");
    std::fs::write(&broken, "select * from missing_table;\n").unwrap();
    let errors = [
        sandbox.fail("pg.restore", "broken", json!({ "dump": broken, "database": "tododb", "connection": url })).await,
        sandbox.fail("pg.restore", "missing", json!({ "dump": output_path(&backup), "database": "nowhere", "connection": url })).await,
        sandbox.fail("pg.query", "failing", json!({ "database": "tododb", "connection": url, "assert": [{ "sql": "select 0", "expect": "> 0" }] })).await,
        sandbox.fail("pg.dump", "refused", json!({ "database": "nowhere", "connection": url })).await,
    ];
    for error in &errors {
        assert!(!error.contains(password), "{error}");
    }
    assert!(
        errors[1].contains("postgresql://postgres@127.0.0.1"),
        "the server is named without the password: {}",
        errors[1]
    );
    let logs: Vec<PathBuf> = walk(&sandbox.run_dir()).into_iter().filter(|path| path.is_file()).collect();
    assert!(logs.iter().any(|path| path.to_string_lossy().ends_with("broken.stderr.log")), "{logs:?}");
    for log in logs.iter().filter(|path| path.to_string_lossy().ends_with(".log")) {
        let text = std::fs::read_to_string(log).unwrap();
        assert!(!text.contains(password), "{}: {text}", log.display());
        assert!(text.contains("--dbname=postgresql://postgres@127.0.0.1"), "{}: {text}", log.display());
    }
}

#[tokio::test]
async fn pg_query_runs_statements_then_asserts_and_names_every_failure() {
    let postgres = Postgres::start();
    seed(&postgres, "tododb");
    let sandbox = Sandbox::new();
    let url = postgres.url("tododb");
    let outputs = sandbox
        .succeed(
            "pg.query",
            "check",
            json!({
                "database": "tododb", "connection": url,
                "sql": ["create table audit (note text)", "insert into audit values ('checked') -- no semicolon"],
                "assert": [
                    { "sql": "select count(*) from users", "expect": "> 0" },
                    { "sql": "select count(*) from users", "expect": format!("= {USERS}") },
                    { "sql": "select count(*) from tickets;", "expect": ">= 3000" },
                    { "sql": "select max(price) from tickets", "expect": "< 200.5" },
                    { "sql": "select note from audit", "expect": "checked" },
                    { "sql": "select count(*) from users where email is null", "expect": "!= 1" },
                ],
            }),
        )
        .await;
    assert_eq!(
        outputs["results"],
        json!([USERS.to_string(), USERS.to_string(), "3000", "120.00", "checked", "0"])
    );

    postgres.psql("tododb", "create table empty_table (id int)");
    let error = sandbox
        .fail(
            "pg.query",
            "failing",
            json!({
                "database": "tododb", "connection": url,
                "assert": [
                    { "sql": "select count(*) from empty_table", "expect": "> 0" },
                    { "sql": "select count(*) from users", "expect": "> 0" },
                    { "sql": "select 'draft'", "expect": "published" },
                    { "sql": "select max(id) from empty_table", "expect": ">= 1" },
                    { "sql": "select id from users", "expect": "1" },
                ],
            }),
        )
        .await;
    assert_eq!(
        error,
        "select count(*) from empty_table returned 0, expected > 0 (database tododb); \
         select 'draft' returned draft, expected published (database tododb); \
         select max(id) from empty_table returned NULL, which is not a number, expected >= 1 (database tododb); \
         select id from users returned 1000 rows, expected one value 1 (database tododb); make the query return a \
         single value, e.g. with count(*) or limit 1"
    );

    let error = sandbox
        .fail("pg.query", "bad-sql", json!({ "database": "tododb", "connection": url, "assert": [{ "sql": "select count(*) from nope", "expect": "= 0" }] }))
        .await;
    assert!(
        error.contains("select count(*) from nope` failed in database tododb")
            && error.contains("does not exist"),
        "{error}"
    );

    let error = sandbox
        .fail("pg.query", "bad-expect", json!({ "database": "tododb", "connection": url, "assert": [{ "sql": "select 1", "expect": "> lots" }] }))
        .await;
    assert!(error.contains("not a number"), "{error}");

    let error = sandbox
        .fail("pg.query", "rolled-back", json!({ "database": "tododb", "connection": url, "sql": ["create table half (id int)", "select * from nope"] }))
        .await;
    assert!(error.contains("rolled back"), "{error}");
    assert_eq!(postgres.psql("tododb", "select count(*) from pg_class where relname = 'half'"), "0");
}

/// `dry-run --preflight`'s check of a step.
async fn check(kind: &str, with: Json) -> Preflight {
    dr_plan::kinds::find(kind).expect("a known kind").preflight(with, &PreflightContext::default()).await
}

#[tokio::test]
async fn preflight_checks_the_server_and_the_database() {
    let postgres = Postgres::start();
    seed(&postgres, "tododb");
    let url = postgres.url("tododb");
    match check("pg.query", json!({ "database": "tododb", "connection": url })).await {
        Preflight::Passed(detail) => assert!(detail.contains("answers (PostgreSQL 15"), "{detail}"),
        other => panic!("{other:?}"),
    }
    match check("pg.dump", json!({ "database": "nowhere", "connection": url })).await {
        Preflight::Failed(detail) => assert!(detail.contains("does not exist"), "{detail}"),
        other => panic!("{other:?}"),
    }
    match check(
        "pg.restore",
        json!({ "dump": "x", "database": "nowhere", "create": true, "connection": url }),
    )
    .await
    {
        Preflight::Passed(detail) => assert!(detail.contains("database postgres"), "{detail}"),
        other => panic!("{other:?}"),
    }
    let closed = format!("postgresql://postgres@127.0.0.1:{}/x", free_port());
    match check("pg.query", json!({ "database": "tododb", "connection": closed })).await {
        Preflight::Failed(detail) => {
            assert!(detail.contains("nothing accepts connections there"), "{detail}")
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_timed_out_dump_stops_pg_dump_and_leaves_no_file() {
    let postgres = Postgres::start();
    seed(&postgres, "tododb");
    let sandbox = Sandbox::new();
    // A session holding an exclusive lock makes pg_dump wait for it.
    let mut locker = Command::new(postgres.binaries().join("psql"))
        .args([
            "-X",
            "-q",
            "-d",
            "tododb",
            "-c",
            "begin; lock table users in access exclusive mode; select pg_sleep(120);",
        ])
        .envs(postgres.env())
        .env("PGAPPNAME", "locker")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let locked = wait_until(Duration::from_secs(20), || {
        postgres.psql(
            "tododb",
            "select count(*) from pg_locks where mode = 'AccessExclusiveLock' and relation = 'users'::regclass",
        ) == "1"
    });
    assert!(locked, "the lock was never taken");
    let dest = sandbox.path("blocked.dump");
    let context = sandbox.context("blocked");
    let dump = kind("pg.dump").execute(
        json!({ "database": "tododb", "dest": dest, "connection": postgres.url("tododb") }),
        &context,
    );
    // pg_dump waits for the lock: the server shows its session waiting, while the step
    // has not finished. Then the step is dropped, as a run's deadline drops it.
    let session_waits = async {
        let waiting = "select count(*) from pg_stat_activity \
                       where application_name = 'dr-plan blocked' and wait_event_type = 'Lock'";
        while postgres.psql("postgres", waiting) != "1" {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    tokio::select! {
        result = dump => panic!("pg_dump waits for the lock, but the step ended: {result:?}"),
        waited = tokio::time::timeout(Duration::from_secs(20), session_waits) => {
            assert!(waited.is_ok(), "pg_dump's session never showed waiting for the lock");
        }
    }
    // The server only notices the lost client once the lock is free, so what is checked
    // first is our side: no pg_dump process for this server, no partial file.
    let marker = format!("127.0.0.1:{}/tododb", postgres.port());
    let cleaned_up = wait_until(Duration::from_secs(10), || {
        processes_mentioning("pg_dump", &marker).is_empty() && !sandbox.path("blocked.dump.partial").exists()
    });
    assert!(
        cleaned_up,
        "pg_dump still running ({:?}) or partial file left ({})",
        processes_mentioning("pg_dump", &marker),
        sandbox.path("blocked.dump.partial").exists()
    );
    assert!(!dest.exists(), "no dump appears under its final name");
    postgres.psql(
        "postgres",
        "select pg_terminate_backend(pid) from pg_stat_activity where application_name = 'locker'",
    );
    let _ = locker.kill();
    let _ = locker.wait();
    let session_gone = wait_until(Duration::from_secs(10), || {
        postgres.psql(
            "postgres",
            "select count(*) from pg_stat_activity where application_name = 'dr-plan blocked'",
        ) == "0"
    });
    assert!(session_gone, "the killed pg_dump's session outlived the lock");
}

/// Live processes whose program name is `program` and whose command line mentions `marker`.
fn processes_mentioning(program: &str, marker: &str) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(command_line) = std::fs::read(entry.path().join("cmdline")) else { continue };
        let arguments: Vec<String> = command_line
            .split(|byte| *byte == 0)
            .map(|part| String::from_utf8_lossy(part).into_owned())
            .collect();
        let is_program = arguments
            .first()
            .is_some_and(|first| first.ends_with(&format!("/{program}")) || first == program);
        if is_program && arguments.iter().any(|argument| argument.contains(marker)) {
            found.push(arguments.join(" "));
        }
    }
    found
}

#[tokio::test]
async fn refuses_a_compressed_or_encrypted_dump_before_touching_the_database() {
    let postgres = Postgres::start();
    seed(&postgres, "tododb");
    let before = fingerprint(&postgres, "tododb");
    let sandbox = Sandbox::new();
    let backup = sandbox
        .succeed(
            "pg.dump",
            "backup",
            json!({ "database": "tododb", "compress": "gzip", "connection": postgres.url("tododb") }),
        )
        .await;
    let mut held = hold_session(&postgres, "tododb");
    let error = sandbox
        .fail(
            "pg.restore",
            "restore",
            json!({ "dump": output_path(&backup), "database": "tododb", "clean": true, "connection": postgres.url("tododb") }),
        )
        .await;
    assert!(error.contains("still gzip-compressed") && error.contains("decompress: auto"), "{error}");
    assert_eq!(fingerprint(&postgres, "tododb"), before);
    assert!(held.try_wait().unwrap().is_none(), "no session was terminated");
    let _ = held.kill();
    let _ = held.wait();
}

/// The plan of the end-to-end test: back up, damage, restore over the damage, check.
/// Two steps reach the server through the `PG*` environment, one through a
/// `connection` URL carrying a password from a secret.
const ROUND_TRIP_PLAN: &str = r#"# yaml-language-server: $schema=../schemas/plan.schema.json
version: 1
name: pg-round-trip
description: Dump, damage, restore with clean, and check.
objectives: { rto: 10m }
vars:
  database: placeholder
  port: 5432
secrets:
  pg_password: { env: DR_PLAN_TEST_PG_PASSWORD }
steps:
  - id: safety-backup
    kind: pg.dump
    with: { database: "{{vars.database}}", format: custom }
  - id: damage
    kind: pg.query
    needs: [safety-backup]
    with:
      database: "{{vars.database}}"
      connection: "postgresql://postgres:{{secrets.pg_password}}@127.0.0.1:{{vars.port}}"
      sql: ["delete from tickets", "delete from users where id > 10"]
      assert:
        - { sql: "select count(*) from users", expect: "= 10" }
  - id: restore
    kind: pg.restore
    needs: [damage]
    with: { dump: "{{steps.safety-backup.outputs.path}}", database: "{{vars.database}}", clean: true, jobs: 2 }
  - id: check
    kind: pg.query
    needs: [restore]
    with:
      database: "{{vars.database}}"
      assert:
        - { sql: "select count(*) from users", expect: "= 1000" }
        - { sql: "select count(*) from tickets", expect: ">= 3000" }
"#;

#[test]
fn dr_plan_run_dumps_damages_restores_and_checks_through_the_binary() {
    let postgres = Postgres::start();
    seed(&postgres, "tododb");
    let expected = fingerprint(&postgres, "tododb");
    let sandbox = Sandbox::new();
    std::fs::write(sandbox.path("plan.yaml"), ROUND_TRIP_PLAN).unwrap();
    std::fs::write(sandbox.path("vars.yaml"), format!("database: tododb\nport: {}\n", postgres.port()))
        .unwrap();
    let password = "binary-Secret-9";
    let state = sandbox.path("state");
    let output = assert_cmd::Command::cargo_bin("dr-plan")
        .unwrap()
        .current_dir(sandbox.directory.path())
        .args(["run", "plan.yaml", "--yes", "--state-dir"])
        .arg(&state)
        .arg("--vars-file")
        .arg(sandbox.path("vars.yaml"))
        .envs(postgres.env())
        .env("DR_PLAN_TEST_PG_PASSWORD", password)
        .env("NO_COLOR", "1")
        .timeout(Duration::from_secs(180))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert_eq!(fingerprint(&postgres, "tododb"), expected, "the restore undid the damage");
    assert!(!stdout.contains(password) && !stderr.contains(password));
    let written: Vec<PathBuf> = walk(&state).into_iter().filter(|path| path.is_file()).collect();
    assert!(written.iter().any(|path| path.ends_with("journal.jsonl")), "{written:?}");
    assert!(
        written.iter().any(|path| path.to_string_lossy().ends_with(".dump")),
        "the dump is in the run directory"
    );
    for path in written.iter().filter(|path| !path.to_string_lossy().ends_with(".dump")) {
        let text = String::from_utf8_lossy(&std::fs::read(path).unwrap()).into_owned();
        assert!(!text.contains(password), "{} holds the password", path.display());
    }

    // The preflight of a dry-run reaches the same server; the secret password is not
    // read there, and it says so.
    let preview = assert_cmd::Command::cargo_bin("dr-plan")
        .unwrap()
        .current_dir(sandbox.directory.path())
        .args(["dry-run", "plan.yaml", "--preflight", "--vars-file"])
        .arg(sandbox.path("vars.yaml"))
        .envs(postgres.env())
        .env("NO_COLOR", "1")
        .timeout(Duration::from_secs(120))
        .output()
        .unwrap();
    let text =
        format!("{}{}", String::from_utf8_lossy(&preview.stdout), String::from_utf8_lossy(&preview.stderr));
    assert_eq!(preview.status.code(), Some(0), "{text}");
    assert!(text.contains("database tododb (PGHOST=127.0.0.1"), "{text}");
    assert!(text.contains("a secret, which a dry-run does not read"), "{text}");
}

/// A sandbox whose runs have an id as `dr-plan run` makes them.
fn sandbox_in_run(suffix: &str) -> Sandbox {
    Sandbox { run_id: format!("pg-steps-20261204-141433-{suffix}"), ..Sandbox::new() }
}

/// The databases of the test server whose name starts with `prefix`.
fn databases_like(postgres: &Postgres, prefix: &str) -> String {
    postgres.psql(
        "postgres",
        &format!(
            "select coalesce(string_agg(datname, ',' order by datname), '') from pg_database \
             where starts_with(datname, '{prefix}')"
        ),
    )
}

/// Seeds `tododb`, dumps it, then changes the live `tododb` so that the dump's data and
/// the live data can be told apart. Returns the dump and the dump's fingerprint.
async fn live_and_dump(postgres: &Postgres, sandbox: &Sandbox) -> (PathBuf, String) {
    seed(postgres, "tododb");
    let from_dump = fingerprint(postgres, "tododb");
    let dump = sandbox.path("tododb.dump");
    program(postgres, "pg_dump", &["-Fc", "-d", "tododb", "-f", dump.to_str().unwrap()]);
    postgres
        .psql("tododb", "delete from tickets where id > 10; insert into users (email) values ('live-only')");
    (dump, from_dump)
}

#[tokio::test]
async fn restore_into_side_leaves_the_live_database_alone_and_names_the_side_copy() {
    let postgres = Postgres::start();
    let sandbox = sandbox_in_run("ab12");
    let (dump, from_dump) = live_and_dump(&postgres, &sandbox).await;
    postgres.psql("postgres", "create role app; alter database tododb owner to app");
    let live = fingerprint(&postgres, "tododb");
    let mut held = hold_session(&postgres, "tododb");
    let with = json!({ "dump": dump, "database": "tododb", "into": "side", "clean": true, "jobs": 2,
                       "connection": postgres.url("postgres") });
    let outputs = sandbox.succeed("pg.restore", "restore", with.clone()).await;
    assert_eq!(outputs["database"], "tododb__restore_ab12");
    assert_eq!(fingerprint(&postgres, "tododb__restore_ab12"), from_dump);
    assert_eq!(fingerprint(&postgres, "tododb"), live, "the live database is not touched");
    assert_eq!(held.try_wait().expect("the held psql"), None, "the live database's sessions are left alone");
    let _ = held.kill();
    assert_eq!(
        postgres.psql(
            "postgres",
            "select pg_get_userbyid(datdba) from pg_database where datname = 'tododb__restore_ab12'"
        ),
        "app",
        "the side database has the live one's owner"
    );

    // A second attempt of the same run (resume) starts from a fresh side database.
    postgres.psql("tododb__restore_ab12", "create table leftover (id int)");
    sandbox.succeed("pg.restore", "restore", with).await;
    assert_eq!(fingerprint(&postgres, "tododb__restore_ab12"), from_dump);

    // A failed restore drops the side database and says so.
    let broken = sandbox.path("broken.sql");
    std::fs::write(&broken, "create table a (id int);\nthis is not sql;\n").unwrap();
    let other = sandbox_in_run("cd34");
    let error = other
        .fail(
            "pg.restore",
            "restore",
            json!({ "dump": broken, "database": "tododb", "into": "side", "connection": postgres.url("postgres") }),
        )
        .await;
    assert!(
        error.contains("database tododb__restore_cd34 was dropped; database tododb was not touched"),
        "{error}"
    );
    assert_eq!(databases_like(&postgres, "tododb__restore_cd"), "");
    assert_eq!(fingerprint(&postgres, "tododb"), live);

    // A name PostgreSQL would cut short is refused before anything changes.
    let long = "d".repeat(50);
    let error = sandbox
        .fail(
            "pg.restore",
            "restore",
            json!({ "dump": dump, "database": long, "into": "side", "connection": postgres.url("postgres") }),
        )
        .await;
    assert!(error.contains("longer than PostgreSQL's limit of 63 bytes"), "{error}");
    assert_eq!(databases_like(&postgres, "ddd"), "");
}

#[tokio::test]
async fn swap_puts_the_side_copy_in_place_and_undo_swaps_back() {
    let postgres = Postgres::start();
    let sandbox = sandbox_in_run("ab12");
    let (dump, from_dump) = live_and_dump(&postgres, &sandbox).await;
    let live = fingerprint(&postgres, "tododb");
    let restored = sandbox
        .succeed(
            "pg.restore",
            "restore",
            json!({ "dump": dump, "database": "tododb", "into": "side", "connection": postgres.url("postgres") }),
        )
        .await;
    let mut held = hold_session(&postgres, "tododb");
    let swap = json!({ "database": "tododb", "replacement": restored["database"], "connection": postgres.url("postgres") });
    let outputs = sandbox.succeed("pg.swap", "swap", swap.clone()).await;
    assert_eq!(outputs["previous"], "tododb__before_ab12");
    let unavailable = outputs["unavailable_for"].as_f64().expect("seconds");
    assert!((0.0..10.0).contains(&unavailable), "{outputs:?}");
    assert!(
        wait_bounded(&mut held, Duration::from_secs(10)).is_some(),
        "the live database's sessions were terminated"
    );
    assert_eq!(fingerprint(&postgres, "tododb"), from_dump, "the restored data is under the live name");
    assert_eq!(fingerprint(&postgres, "tododb__before_ab12"), live, "the previous data is kept");
    assert_eq!(databases_like(&postgres, "tododb__restore"), "");
    assert_eq!(
        postgres.psql(
            "postgres",
            "select string_agg(datallowconn::text, ',') from pg_database where starts_with(datname, 'tododb')"
        ),
        "true,true",
        "connections are allowed again"
    );

    let kind = kind("pg.swap");
    kind.undo(swap, &outputs, &sandbox.context("swap")).await.expect("the undo swaps back");
    assert_eq!(fingerprint(&postgres, "tododb"), live, "the old data is back under the live name");
    assert_eq!(
        fingerprint(&postgres, "tododb__restore_ab12"),
        from_dump,
        "the restored copy has its name back"
    );
    assert_eq!(databases_like(&postgres, "tododb__before"), "");

    // Without keep_previous the previous database is dropped, and there is nothing to undo.
    let dropping = json!({ "database": "tododb", "replacement": "tododb__restore_ab12", "keep_previous": false,
                           "connection": postgres.url("postgres") });
    let outputs = sandbox.succeed("pg.swap", "swap", dropping.clone()).await;
    assert_eq!(outputs["previous"], Json::Null);
    assert_eq!(databases_like(&postgres, "tododb"), "tododb");
    assert_eq!(fingerprint(&postgres, "tododb"), from_dump);
    let error = kind.undo(dropping, &outputs, &sandbox.context("swap")).await.unwrap_err().to_string();
    assert!(error.contains("cannot swap back"), "{error}");
}

#[tokio::test]
async fn a_swap_that_cannot_go_through_says_where_both_databases_are() {
    let postgres = Postgres::start();
    let sandbox = sandbox_in_run("ab12");
    seed(&postgres, "tododb");
    let live = fingerprint(&postgres, "tododb");
    let error = sandbox
        .fail(
            "pg.swap",
            "swap",
            json!({ "database": "tododb", "replacement": "tododb__restore_ab12", "connection": postgres.url("postgres") }),
        )
        .await;
    assert!(error.contains("`tododb__restore_ab12` (the replacement) does not exist"), "{error}");
    assert!(error.contains("`tododb` is still the live database (unchanged)"), "{error}");
    assert_eq!(fingerprint(&postgres, "tododb"), live);

    // The name the live database would be kept under is taken.
    postgres.create_database("tododb__restore_ab12");
    postgres.create_database("tododb__before_ab12");
    let error = sandbox
        .fail(
            "pg.swap",
            "swap",
            json!({ "database": "tododb", "replacement": "tododb__restore_ab12", "connection": postgres.url("postgres") }),
        )
        .await;
    assert!(
        error.contains(
            "`tododb__before_ab12`, the name the live database would be kept under, already exists"
        ),
        "{error}"
    );
    assert!(error.contains("`tododb` is still the live database (unchanged)"), "{error}");
    postgres.psql("postgres", "drop database tododb__before_ab12");

    // Midway, after connections were refused and sessions ended: the renames fail (an
    // owner without CREATEDB cannot rename), are rolled back, and connections come back.
    postgres.psql(
        "postgres",
        "create role operator login; grant pg_signal_backend to operator; \
         alter database tododb owner to operator; alter database tododb__restore_ab12 owner to operator",
    );
    let as_operator = format!("postgresql://operator@{}:{}", "127.0.0.1", postgres.port());
    let error = sandbox
        .fail(
            "pg.swap",
            "swap",
            json!({ "database": "tododb", "replacement": "tododb__restore_ab12", "connection": as_operator }),
        )
        .await;
    assert!(error.contains("nothing was renamed: `tododb` is still the live database (unchanged), `tododb__restore_ab12` is still the replacement"), "{error}");
    assert!(
        error.contains("connections to both are allowed again")
            || error.contains("could NOT be allowed again"),
        "{error}"
    );
    assert!(error.contains("renaming failed and was rolled back"), "{error}");
    assert_eq!(fingerprint(&postgres, "tododb"), live);
    assert_eq!(databases_like(&postgres, "tododb"), "tododb,tododb__restore_ab12");
    assert_eq!(
        postgres.psql(
            "postgres",
            "select string_agg(datallowconn::text, ',') from pg_database where starts_with(datname, 'tododb')"
        ),
        "true,true"
    );
}

#[tokio::test]
async fn pg_drop_refuses_a_live_name_drops_a_kept_copy_and_can_run_again() {
    let postgres = Postgres::start();
    let sandbox = Sandbox::new();
    seed(&postgres, "tododb");
    postgres.create_database("tododb__before_ab12");
    let mut held = hold_session(&postgres, "tododb__before_ab12");
    let error = sandbox
        .fail("pg.drop", "drop", json!({ "database": "tododb", "connection": postgres.url("postgres") }))
        .await;
    assert!(error.contains("refusing to drop database `tododb`") && error.contains("force: true"), "{error}");
    assert_eq!(databases_like(&postgres, "tododb"), "tododb,tododb__before_ab12");

    let drop = json!({ "database": "tododb__before_ab12", "connection": postgres.url("postgres") });
    let outputs = sandbox.succeed("pg.drop", "drop", drop.clone()).await;
    assert_eq!(outputs["dropped"], true);
    assert!(wait_bounded(&mut held, Duration::from_secs(10)).is_some(), "its session was terminated");
    assert_eq!(databases_like(&postgres, "tododb"), "tododb");
    let again = sandbox.succeed("pg.drop", "drop", drop).await;
    assert_eq!(again["dropped"], false, "a database already gone is success");

    let forced = sandbox
        .succeed(
            "pg.drop",
            "drop",
            json!({ "database": "tododb", "force": true, "connection": postgres.url("postgres") }),
        )
        .await;
    assert_eq!(forced["dropped"], true);
    assert_eq!(databases_like(&postgres, "tododb"), "");
}
