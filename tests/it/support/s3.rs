//! An S3 endpoint: `s3s-fs` serving a temporary directory, checking SigV4 signatures.
//!
//! s3s-fs keeps each object as a plain file at `ROOT/bucket/key` and reads the
//! directory on every request, so tests seed and inspect objects through the
//! filesystem: a bucket is a directory, `LastModified` is the file's mtime, and the
//! ETag is the MD5 of the file unless an upload recorded another one. Optional
//! metadata (content type, `x-amz-meta-*`) and upload bookkeeping live in hidden files
//! at the top of ROOT (`.bucket-….object-….metadata.json`, `.internal.json`), which
//! never show up as buckets or objects.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime};

use super::process::{
    LOOPBACK, ServerProcess, find_tool, port_answers, start_on_free_port, temporary_directory,
};

const ACCESS_KEY: &str = "DRPLANTESTACCESSKEY";
const SECRET_KEY: &str = "dr-plan-test-secret-key";
const REGION: &str = "us-east-1";

/// A running s3s-fs on 127.0.0.1 with one key pair, stopped and deleted on drop.
pub struct S3 {
    port: u16,
    root: PathBuf,
    _process: ServerProcess,
    _directory: tempfile::TempDir,
}

impl S3 {
    /// Starts s3s-fs with `buckets` already created (empty).
    pub fn start(buckets: &[&str]) -> Self {
        let binary = find_tool("s3s-fs", "cargo install s3s-fs@0.14.1 --features binary --locked");
        let directory = temporary_directory("s3");
        let root = directory.path().join("root");
        std::fs::create_dir(&root)
            .unwrap_or_else(|error| panic!("cannot create {}: {error}", root.display()));
        let (port, process) = start_on_free_port("s3s-fs", |port| {
            let log = directory.path().join(format!("s3s-fs-{port}.log"));
            let mut command = Command::new(&binary);
            command
                .args(["--host", LOOPBACK, "--port", &port.to_string()])
                .args(["--access-key", ACCESS_KEY, "--secret-key", SECRET_KEY])
                .arg(&root)
                // Its "server is running" line tells that it bound the port; errors
                // (such as refused signatures) are logged too.
                .env("RUST_LOG", "error,s3s_fs=info");
            let mut process = ServerProcess::spawn("s3s-fs", &mut command, &log);
            process.wait_ready(Duration::from_secs(30), "server is running at", || port_answers(port))?;
            Ok((port, process))
        });
        let server = Self { port, root, _process: process, _directory: directory };
        for bucket in buckets {
            server.create_bucket(bucket);
        }
        server
    }

    /// The endpoint URL, `http://127.0.0.1:PORT`; clients must use path-style requests.
    pub fn endpoint(&self) -> String {
        format!("http://{LOOPBACK}:{}", self.port)
    }

    /// The TCP port s3s-fs listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The only access key the server accepts.
    pub fn access_key(&self) -> &'static str {
        ACCESS_KEY
    }

    /// The secret key requests must be signed with.
    pub fn secret_key(&self) -> &'static str {
        SECRET_KEY
    }

    /// The region to sign for; s3s-fs accepts any, AWS clients need one.
    pub fn region(&self) -> &'static str {
        REGION
    }

    /// The AWS variables that point a child process (or `aws_config`) at this server.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ACCESS_KEY_ID", ACCESS_KEY.to_owned()),
            ("AWS_SECRET_ACCESS_KEY", SECRET_KEY.to_owned()),
            ("AWS_REGION", REGION.to_owned()),
            ("AWS_ENDPOINT_URL_S3", self.endpoint()),
        ]
    }

    /// The directory s3s-fs serves: `ROOT/bucket/key` is an object.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Creates an empty bucket (a directory); nothing happens if it exists.
    pub fn create_bucket(&self, bucket: &str) {
        let path = self.bucket_path(bucket);
        std::fs::create_dir_all(&path)
            .unwrap_or_else(|error| panic!("cannot create bucket {}: {error}", path.display()));
    }

    /// Stores an object by writing its file; the server sees it at once. The bucket is
    /// created when missing. Written under a temporary name and renamed into place, so
    /// a concurrent request never reads half an object.
    pub fn put_file(&self, bucket: &str, key: &str, bytes: impl AsRef<[u8]>) {
        let path = self.object_path(bucket, key);
        let parent = path.parent().unwrap_or(&self.root);
        std::fs::create_dir_all(parent)
            .unwrap_or_else(|error| panic!("cannot create {}: {error}", parent.display()));
        // A hidden file at the top of ROOT is neither a bucket nor an object.
        let staging = tempfile::Builder::new()
            .prefix(".seed-")
            .tempfile_in(&self.root)
            .unwrap_or_else(|error| panic!("cannot stage object {bucket}/{key}: {error}"));
        std::fs::write(staging.path(), bytes)
            .unwrap_or_else(|error| panic!("cannot write object {bucket}/{key}: {error}"));
        staging
            .persist(&path)
            .unwrap_or_else(|error| panic!("cannot store object {}: {error}", path.display()));
    }

    /// An object's bytes, or `None` when there is no such object.
    pub fn get_file(&self, bucket: &str, key: &str) -> Option<Vec<u8>> {
        let path = self.object_path(bucket, key);
        match std::fs::read(&path) {
            Ok(bytes) => Some(bytes),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => None,
            Err(error) => panic!("cannot read object {}: {error}", path.display()),
        }
    }

    /// Every key in `bucket`, sorted as S3 lists them (byte order).
    pub fn list(&self, bucket: &str) -> Vec<String> {
        let bucket_path = self.bucket_path(bucket);
        let mut keys = Vec::new();
        let mut pending = vec![bucket_path.clone()];
        while let Some(directory) = pending.pop() {
            let entries = std::fs::read_dir(&directory)
                .unwrap_or_else(|error| panic!("cannot list bucket {}: {error}", directory.display()));
            for entry in entries.flatten() {
                let path = entry.path();
                if path.is_dir() {
                    pending.push(path);
                } else if let Ok(relative) = path.strip_prefix(&bucket_path) {
                    let parts: Vec<String> = relative
                        .components()
                        .map(|part| part.as_os_str().to_string_lossy().into_owned())
                        .collect();
                    keys.push(parts.join("/"));
                }
            }
        }
        keys.sort();
        keys
    }

    /// Sets an object's `LastModified` (its file's mtime), e.g. to order backups.
    pub fn set_last_modified(&self, bucket: &str, key: &str, time: SystemTime) {
        let path = self.object_path(bucket, key);
        let file = std::fs::File::options()
            .write(true)
            .open(&path)
            .unwrap_or_else(|error| panic!("cannot open object {}: {error}", path.display()));
        file.set_modified(time)
            .unwrap_or_else(|error| panic!("cannot set mtime of {}: {error}", path.display()));
    }

    fn bucket_path(&self, bucket: &str) -> PathBuf {
        assert!(
            !bucket.is_empty() && !bucket.contains('/') && !bucket.starts_with('.'),
            "bucket name {bucket:?} cannot be a directory name under the S3 root"
        );
        self.root.join(bucket)
    }

    fn object_path(&self, bucket: &str, key: &str) -> PathBuf {
        assert!(
            key.split('/').all(|segment| !segment.is_empty() && segment != "." && segment != ".."),
            "object key {key:?} cannot be stored as a file: it must be a relative path \
             without `.`, `..`, empty segments or a trailing slash"
        );
        self.bucket_path(bucket).join(key)
    }
}
