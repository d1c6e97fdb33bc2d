//! moto's server, standing in for AWS APIs other than S3 (Route53 first). It accepts
//! any credentials and does not check signatures.

use std::process::Command;
use std::time::Duration;

use super::process::{
    LOOPBACK, ServerProcess, find_tool, port_answers, start_on_free_port, temporary_directory,
};

const REGION: &str = "us-east-1";

/// A running `moto_server` on 127.0.0.1, killed on drop.
pub struct Moto {
    port: u16,
    _process: ServerProcess,
    _directory: tempfile::TempDir,
}

impl Moto {
    /// Starts moto's server with empty state.
    pub fn start() -> Self {
        let binary = find_tool(
            "moto_server",
            "pip install 'moto[server]>=5,<6' into a venv at ~/.cache/dr-plan-test-tools/venv",
        );
        let directory = temporary_directory("moto");
        let (port, process) = start_on_free_port("moto_server", |port| {
            let log = directory.path().join(format!("moto-{port}.log"));
            let mut command = Command::new(&binary);
            command.args(["-H", LOOPBACK, "-p", &port.to_string()]).current_dir(directory.path());
            let mut process = ServerProcess::spawn("moto_server", &mut command, &log);
            // Werkzeug prints where it runs once it has bound the port.
            process.wait_ready(Duration::from_secs(60), "Running on http://", || port_answers(port))?;
            Ok((port, process))
        });
        Self { port, _process: process, _directory: directory }
    }

    /// The endpoint URL, `http://127.0.0.1:PORT`, for every service moto emulates.
    pub fn endpoint(&self) -> String {
        format!("http://{LOOPBACK}:{}", self.port)
    }

    /// The TCP port moto listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Credentials (any are accepted), region, and the Route53 endpoint for a child
    /// process or `aws_config`.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ACCESS_KEY_ID", "testing".to_owned()),
            ("AWS_SECRET_ACCESS_KEY", "testing".to_owned()),
            ("AWS_REGION", REGION.to_owned()),
            ("AWS_ENDPOINT_URL_ROUTE_53", self.endpoint()),
        ]
    }

    /// Wipes all of moto's state (`POST /moto-api/reset`).
    pub fn reset(&self) {
        let (status, body) = super::http_server::request(self.port, "POST", "/moto-api/reset", &[], b"");
        assert_eq!(status, 200, "moto reset answered {status}: {body}");
    }
}
