//! The festivals database of the seed runbooks (`users`, `festivals`, `tickets`), a
//! fingerprint of its content, and backups of it made the way the runbooks make them.

use std::path::Path;
use std::process::{Command, Stdio};

use super::{Postgres, S3};

/// Creates `database` with the tables the plans count (`users`, `festivals`) and one
/// that refers to them.
pub fn seed(postgres: &Postgres, database: &str) {
    postgres.create_database(database);
    postgres.psql(
        database,
        "create table users (id serial primary key, email text not null unique);
         create table festivals (id serial primary key, name text not null, starts date);
         create table tickets (id serial primary key, user_id int references users(id),
                               festival_id int references festivals(id), price numeric(8,2));
         create index tickets_festival on tickets(festival_id);
         insert into users (email) select 'user' || n || '@example.com' from generate_series(1, 500) n;
         insert into festivals (name, starts) select 'festival ' || n, date '2024-06-01' + n from generate_series(1, 40) n;
         insert into tickets (user_id, festival_id, price)
           select 1 + n % 500, 1 + n % 40, (n % 90) * 1.5 from generate_series(1, 2000) n;",
    );
}

/// Row counts and a checksum of every row of every table.
pub fn fingerprint(postgres: &Postgres, database: &str) -> String {
    postgres.psql(
        database,
        "select (select count(*) from users), (select count(*) from festivals), (select count(*) from tickets),
                (select md5(string_agg(t::text, ',' order by id)) from users t),
                (select md5(string_agg(t::text, ',' order by id)) from festivals t),
                (select md5(string_agg(t::text, ',' order by id)) from tickets t)",
    )
}

/// The runbook's backup (seed 003): `pg_dump -Fc | gzip | openssl enc -aes-256-cbc
/// -salt -pbkdf2 -pass file:KEY_FILE`, made by the real CLIs.
pub fn runbook_backup(postgres: &Postgres, database: &str, key_file: &Path) -> Vec<u8> {
    runbook_backup_as(postgres, database, key_file, "-Fc")
}

/// The runbook's backup with `pg_dump_options` (`-Fp` for the Dharma runbook's plain
/// SQL, `-Fc`, `-Ft`): `pg_dump OPTIONS | gzip -9 | openssl enc -aes-256-cbc -salt -pbkdf2`.
pub fn runbook_backup_as(
    postgres: &Postgres,
    database: &str,
    key_file: &Path,
    pg_dump_options: &str,
) -> Vec<u8> {
    let script = format!(
        "{pg_dump} {pg_dump_options} -d {database} | gzip -9 | openssl enc -aes-256-cbc -salt -pbkdf2 -pass \
         file:{key_file}",
        pg_dump = postgres.binaries().join("pg_dump").display(),
        key_file = key_file.display()
    );
    let output = Command::new("bash")
        .args(["-o", "pipefail", "-c", &script])
        .envs(postgres.env())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(output.status.success(), "{script}: {}", String::from_utf8_lossy(&output.stderr));
    output.stdout
}

/// SHA-256 of `bytes`, as lowercase hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    hex::encode(sha2::Sha256::digest(bytes))
}

/// Puts an object and its `sha256sum`-format sidecar `<key>.sha256`.
pub fn put_with_sidecar(s3: &S3, bucket: &str, key: &str, bytes: &[u8]) {
    s3.put_file(bucket, key, bytes);
    let name = key.rsplit('/').next().unwrap();
    s3.put_file(bucket, &format!("{key}.sha256"), format!("{}  {name}\n", sha256_hex(bytes)));
}
