//! A real Kubernetes API server: kube-apiserver 1.20 and etcd on loopback, started by
//! `scripts/kube-apiserver.sh up` (which `scripts/install-test-deps.sh` builds once into
//! `~/.cache/kube-testkit`). No controllers run: tests play them by patching `status`.

use std::net::{Ipv4Addr, SocketAddrV4, TcpListener};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

use super::process::{
    StartFailure, describe_output, log_tail, run_bounded, start_on_free_port, temporary_directory,
};

/// The script that builds and starts the server.
const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/kube-apiserver.sh");

/// etcd listens on the API server's port plus these (client, peer).
const ETCD_PORT_OFFSETS: [u16; 2] = [1000, 1001];

/// A running kube-apiserver with its etcd, reachable through [`KubeApiServer::kubeconfig`].
pub struct KubeApiServer {
    directory: PathBuf,
}

static SHARED: OnceLock<KubeApiServer> = OnceLock::new();

impl KubeApiServer {
    /// The server every test of the test binary shares (started on first use, about
    /// 10 s): tests keep apart by using namespaces of their own. It is stopped, and its
    /// directory deleted, by the script's watcher once the test process has exited.
    pub fn shared() -> &'static KubeApiServer {
        SHARED.get_or_init(|| {
            let temporary = temporary_directory("kube-apiserver-shared");
            // Kept past the end of the process: the script's watcher deletes it.
            let directory = temporary.keep();
            start(&directory);
            Self { directory }
        })
    }

    /// The kubeconfig file (bearer token, `insecure-skip-tls-verify`, context `test`).
    pub fn kubeconfig(&self) -> PathBuf {
        self.directory.join("kubeconfig")
    }

    /// The last lines of the API server's log, for panic messages.
    pub fn log_tail(&self) -> String {
        log_tail(&self.directory.join("apiserver.log"), 30)
    }

    /// A client for this server.
    pub async fn client(&self) -> kube::Client {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let kubeconfig = kube::config::Kubeconfig::read_from(self.kubeconfig())
            .unwrap_or_else(|error| panic!("cannot read {}: {error}", self.kubeconfig().display()));
        let mut config =
            kube::Config::from_custom_kubeconfig(kubeconfig, &kube::config::KubeConfigOptions::default())
                .await
                .unwrap_or_else(|error| panic!("cannot use {}: {error}", self.kubeconfig().display()));
        config.connect_timeout = Some(Duration::from_secs(5));
        config.read_timeout = Some(Duration::from_secs(30));
        kube::Client::try_from(config).unwrap_or_else(|error| panic!("cannot build a kube client: {error}"))
    }
}

/// Whether the binaries `scripts/kube-apiserver.sh build` makes are there.
fn check_binaries() {
    let mut command = Command::new("bash");
    command.arg(SCRIPT).arg("path");
    let output = run_bounded(&mut command, None, Duration::from_secs(10), "kube-apiserver.sh path");
    let directory = PathBuf::from(String::from_utf8_lossy(&output.stdout).trim());
    for binary in ["kube-apiserver", "etcd"] {
        assert!(
            directory.join(binary).is_file(),
            "{} is missing: run scripts/install-test-deps.sh (or scripts/test.sh), which builds \
             kube-apiserver 1.20 from Debian's source package once (5-13 minutes) with \
             scripts/kube-apiserver.sh build",
            directory.join(binary).display()
        );
    }
}

/// Whether the loopback port can be bound now.
fn port_is_free(port: u16) -> bool {
    TcpListener::bind(SocketAddrV4::new(Ipv4Addr::LOCALHOST, port)).is_ok()
}

/// Runs `up` under `directory` on a free port (whose etcd ports are free too); returns
/// the port. The test process is the owner: if it dies, the script cleans up.
fn start(directory: &Path) -> u16 {
    check_binaries();
    start_on_free_port("kube-apiserver", |port| {
        let etcd_ports_free =
            ETCD_PORT_OFFSETS.iter().all(|offset| port.checked_add(*offset).is_some_and(port_is_free));
        if !etcd_ports_free {
            return Err(StartFailure::PortTaken(format!("etcd's ports next to {port} are taken")));
        }
        let mut command = Command::new("bash");
        command
            .arg(SCRIPT)
            .arg("up")
            .arg(directory)
            .arg(port.to_string())
            .arg(std::process::id().to_string());
        let output = run_bounded(&mut command, None, Duration::from_secs(150), "kube-apiserver.sh up");
        if output.status.success() && directory.join("kubeconfig").is_file() {
            Ok(port)
        } else {
            Err(StartFailure::from_log(format!(
                "kube-apiserver.sh up {} {port} failed: {}",
                directory.display(),
                describe_output(&output)
            )))
        }
    })
}
