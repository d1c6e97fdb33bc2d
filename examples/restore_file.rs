//! Restores a local backup artifact with the same pipeline `s3.fetch` uses, minus the
//! download: checks the SHA-256, decrypts (openssl `-aes-256-cbc -pbkdf2`), decompresses.
//! `benches/artifact_pipeline.sh` times it against `sha256sum -c; openssl enc -d | gunzip`.
//!
//! ```text
//! cargo run --release --example restore_file -- INPUT OUTPUT --key-file KEY \
//!     [--sha256-file INPUT.sha256] [--iterations 10000] [--decompress auto] [--stream]
//! ```

use std::fs::File;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use clap::{Parser, ValueEnum};
use dr_plan::artifact::{
    Decompression, EncryptionKey, Progress, RestoreOptions, checksum_for_object, restore_stream,
    restore_to_file,
};

/// Restore a local backup artifact.
#[derive(Parser)]
struct Arguments {
    /// The stored artifact (for example `dharma_dharma_20251116_020000.sql.gz.enc`).
    input: PathBuf,
    /// Where the restored data goes.
    output: PathBuf,
    /// openssl key file (`-pass file:KEY`); without it the artifact is not decrypted.
    #[arg(long)]
    key_file: Option<PathBuf>,
    /// PBKDF2 iterations (openssl `-iter`).
    #[arg(long, default_value_t = 10_000)]
    iterations: u32,
    /// A `sha256sum`-format sidecar to check the artifact against.
    #[arg(long)]
    sha256_file: Option<PathBuf>,
    /// How to decompress.
    #[arg(long, value_enum, default_value_t = DecompressArgument::Auto)]
    decompress: DecompressArgument,
    /// Write straight to OUTPUT instead of OUTPUT.partial + fsync + rename.
    #[arg(long)]
    stream: bool,
}

#[derive(Clone, Copy, ValueEnum)]
enum DecompressArgument {
    Auto,
    Gzip,
    Zstd,
    None,
}

fn main() -> ExitCode {
    match run(&Arguments::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("restore_file: {message}");
            ExitCode::FAILURE
        }
    }
}

fn run(arguments: &Arguments) -> Result<(), String> {
    let decrypt = match &arguments.key_file {
        Some(path) => {
            let contents = std::fs::read(path).map_err(|error| format!("{}: {error}", path.display()))?;
            Some(
                EncryptionKey::from_key_file_contents(&contents, arguments.iterations)
                    .map_err(|error| error.to_string())?,
            )
        }
        None => None,
    };
    let expected_sha256 = match &arguments.sha256_file {
        Some(path) => {
            let text =
                std::fs::read_to_string(path).map_err(|error| format!("{}: {error}", path.display()))?;
            let name = arguments
                .input
                .file_name()
                .map(|name| name.to_string_lossy().into_owned())
                .unwrap_or_default();
            Some(checksum_for_object(&text, &name).map_err(|error| error.to_string())?)
        }
        None => None,
    };
    let options = RestoreOptions {
        expected_sha256,
        decrypt,
        decompress: match arguments.decompress {
            DecompressArgument::Auto => Decompression::Auto,
            DecompressArgument::Gzip => Decompression::Gzip,
            DecompressArgument::Zstd => Decompression::Zstd,
            DecompressArgument::None => Decompression::None,
        },
    };
    let input =
        File::open(&arguments.input).map_err(|error| format!("{}: {error}", arguments.input.display()))?;
    let no_progress = |_: Progress| {};
    let started = Instant::now();
    let summary = if arguments.stream {
        let output = File::create(&arguments.output)
            .map_err(|error| format!("{}: {error}", arguments.output.display()))?;
        restore_stream(input, &options, output, &no_progress)
    } else {
        restore_to_file(input, &options, &arguments.output, &no_progress)
    }
    .map_err(|error| error.to_string())?;
    let seconds = started.elapsed().as_secs_f64();
    eprintln!(
        "restore_file: {} stored bytes ({}) -> {} bytes in {seconds:.2} s ({:.0} MiB/s out), sha256 {}",
        summary.stored_bytes,
        summary.compression.name(),
        summary.output_bytes,
        summary.output_bytes as f64 / seconds / f64::from(1 << 20),
        summary.sha256,
    );
    if let Some(peak) = peak_resident_memory() {
        eprintln!("restore_file: peak resident memory {peak}");
    }
    Ok(())
}

/// `VmHWM` from `/proc/self/status` (Linux only), for when `/usr/bin/time` is missing.
fn peak_resident_memory() -> Option<String> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|line| line.starts_with("VmHWM:"))?;
    Some(line.trim_start_matches("VmHWM:").trim().to_owned())
}
