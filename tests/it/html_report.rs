//! `dr-plan report --format html` and the Mermaid gantt blocks, as an incident commander
//! meets them: a tiny drill (sleeps, a step that fails once, an approval granted with
//! `--approve`) is run with the real binary, then its reports are read — the HTML page
//! as a snapshot (times and ids filtered), its escaping, the markdown report's and the
//! dry-run's gantt blocks, and the page opened in a real headless chromium: the DOM must
//! hold an SVG naming every step and a screenshot must not be blank.
//!
//! Chromium is not optional: without it the test fails and says how to install it.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

const BINARY: &str = env!("CARGO_BIN_EXE_dr-plan");
const STEPS: [&str; 5] = ["fetch", "flaky", "go-ahead", "restore", "verify"];

/// A drill of `tests/fixtures/html_report/drill.yaml` that succeeded, in its own directory.
struct Drill {
    root: tempfile::TempDir,
    run_id: String,
}

fn dr_plan(arguments: &[&str], directory: &Path) -> String {
    let output = Command::new(BINARY)
        .args(arguments)
        .current_dir(directory)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("dr-plan runs");
    assert!(
        output.status.success(),
        "dr-plan {arguments:?}: {}\n--- stdout\n{}--- stderr\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("UTF-8 output")
}

impl Drill {
    fn run() -> Drill {
        let root = tempfile::tempdir().expect("a temporary directory");
        let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/html_report/drill.yaml");
        std::fs::copy(&source, root.path().join("drill.yaml")).expect("the fixture is copied");
        let counter = format!("counter={}", root.path().join("counter").display());
        let state_dir = root.path().join("state");
        let state = state_dir.to_str().expect("a UTF-8 path");
        dr_plan(
            &[
                "drill",
                "drill.yaml",
                "--yes",
                "--approve",
                "go-ahead",
                "--state-dir",
                state,
                "--var",
                &counter,
            ],
            root.path(),
        );
        let runs: Vec<String> = std::fs::read_dir(state_dir.join("runs"))
            .expect("the runs directory")
            .map(|entry| entry.expect("an entry").file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(runs.len(), 1, "{runs:?}");
        Drill { run_id: runs[0].clone(), root }
    }

    fn state_dir(&self) -> String {
        self.root.path().join("state").to_str().expect("a UTF-8 path").to_owned()
    }

    fn report(&self, format: &str) -> String {
        dr_plan(
            &["report", &self.run_id, "--format", format, "--state-dir", &self.state_dir()],
            self.root.path(),
        )
    }

    /// The HTML report written with `--out`, and its path.
    fn html_file(&self) -> (PathBuf, String) {
        let path = self.root.path().join("report.html");
        let out = path.to_str().expect("a UTF-8 path");
        let stdout = dr_plan(
            &["report", &self.run_id, "--format", "html", "--out", out, "--state-dir", &self.state_dir()],
            self.root.path(),
        );
        assert_eq!(stdout, "", "with --out nothing goes to standard output");
        let html = std::fs::read_to_string(&path).expect("the report file");
        (path, html)
    }

    /// Who approved (`user@host` of this machine), as the JSON report says.
    fn approver(&self) -> String {
        let json: serde_json::Value = serde_json::from_str(&self.report("json")).expect("a JSON report");
        json["approvals"][0]["by"].as_str().expect("an approval").to_owned()
    }
}

fn regex_escape(text: &str) -> String {
    text.chars()
        .map(
            |character| {
                if character.is_ascii_alphanumeric() {
                    character.to_string()
                } else {
                    format!("\\{character}")
                }
            },
        )
        .collect()
}

#[test]
fn the_html_report_of_a_drill() {
    let drill = Drill::run();
    let (_, html) = drill.html_file();
    assert_eq!(html, drill.report("html"), "--out writes what standard output shows");

    // Self-contained: no script, nothing fetched.
    let lower = html.to_lowercase();
    for forbidden in ["<script", "http://", "https://", "src=", "href=", "@import", "<link"] {
        assert!(!lower.contains(forbidden), "the page holds {forbidden:?}");
    }
    // Plan and journal text is escaped, quotes included.
    assert!(
        html.contains(
            "Fetch the &lt;script&gt;alert(&quot;fetch&quot;)&lt;/script&gt; backup &amp; 'check' it"
        )
    );
    assert!(html.contains("Restore over &quot;prod&quot;? &lt;script&gt;alert('approve')&lt;/script&gt;"));
    // What the markdown and JSON reports say, the page says.
    assert!(html.contains("met (objective 1m)"), "{html}");
    assert!(html.contains("fetch</code> (") && html.contains("→ <code>verify</code>"), "the critical path");

    let mut settings = insta::Settings::clone_current();
    settings.set_snapshot_path("snapshots");
    settings.set_prepend_module_to_snapshot(true);
    let approver = regex_escape(&drill.approver());
    settings.add_filter(&approver, "[operator]");
    settings.add_filter(r"\b[0-9a-f]{64}\b", "[sha256]");
    settings.add_filter(r"html-drill-\d{8}-\d{6}-[0-9a-f]{4}", "[run-id]");
    settings.add_filter(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z", "[time]");
    settings.add_filter(r"\d{4}-\d{2}-\d{2}", "[date]");
    // Measured durations and the coordinates drawn from them.
    settings.add_filter(r"\b\d+\.\d+s\b", "[seconds]");
    settings.add_filter(r#"(x|x1|x2|y|y1|y2|cx|cy|width|r)="[0-9.]+""#, r#"$1="N""#);
    settings.add_filter(r#"points="[0-9., ]*""#, r#"points="…""#);
    settings.bind(|| insta::assert_snapshot!("html", html.replace("><", ">\n<")));
}

#[test]
fn markdown_report_and_dry_run_carry_gantt_blocks() {
    let drill = Drill::run();
    let markdown = drill.report("markdown");
    let gantt = markdown.split("```mermaid\n").nth(1).expect("a mermaid block").split("```").next().unwrap();
    assert!(gantt.starts_with("gantt\n"), "{gantt}");
    assert!(gantt.contains("    dateFormat HH:mm:ss.SSS\n"), "{gantt}");
    for step in STEPS {
        assert!(gantt.contains(&format!("    section {step}\n")), "{step} in {gantt}");
    }
    assert!(gantt.contains("    attempt 1 failed :crit, 00:00:0"), "{gantt}");
    assert!(gantt.contains("    attempt 2 succeeded :done, 00:00:0"), "{gantt}");
    assert!(gantt.contains("    attempt 1 waited, approved :active, 00:00:0"), "{gantt}");

    // A dry-run without drill history predicts from the estimates: fetch (1s), flaky
    // (2s) and restore (1s) on the critical path (verify, without an estimate, adds
    // nothing to it); the approval and verify have no estimate.
    let empty_state = drill.root.path().join("no-history");
    let dry_run = dr_plan(
        &["dry-run", "drill.yaml", "--format", "markdown", "--state-dir", empty_state.to_str().unwrap()],
        drill.root.path(),
    );
    let predicted =
        dry_run.split("<summary>Predicted timeline</summary>").nth(1).expect("the predicted timeline");
    let predicted = predicted.split("</details>").next().unwrap();
    let expected = "```mermaid
gantt
    title Predicted timeline of html-drill
    dateFormat HH:mm:ss.SSS
    axisFormat %M:%S.%L
    section stage 1
    fetch ~1s :crit, 00:00:00.000, 00:00:01.000
    section stage 2
    flaky ~2s :crit, 00:00:01.000, 00:00:03.000
    go-ahead (no estimate) :00:00:01.000, 00:00:01.000
    section stage 3
    restore ~1s :crit, 00:00:03.000, 00:00:04.000
    section stage 4
    verify (no estimate) :00:00:04.000, 00:00:04.000
```
";
    assert_eq!(predicted.trim(), expected.trim(), "{dry_run}");
}

/// The chromium binary, or a failure that says how to get it.
fn chromium() -> &'static str {
    let found =
        Command::new("chromium").arg("--version").output().is_ok_and(|output| output.status.success());
    assert!(
        found,
        "chromium is not installed: run scripts/install-test-deps.sh (it installs Debian's chromium)"
    );
    "chromium"
}

fn headless(arguments: &[&str], profile: &Path) -> std::process::Output {
    let output = Command::new(chromium())
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run"])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(arguments)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("chromium runs");
    assert!(output.status.success(), "chromium {arguments:?}: {}", String::from_utf8_lossy(&output.stderr));
    output
}

#[test]
fn chromium_draws_the_html_report() {
    let drill = Drill::run();
    let (path, _) = drill.html_file();
    let url = format!("file://{}", path.display());
    let profile = drill.root.path().join("chromium-profile");

    let dom = String::from_utf8(headless(&["--dump-dom", &url], &profile).stdout).expect("UTF-8 DOM");
    let start =
        dom.find("<svg class=\"timeline\"").unwrap_or_else(|| panic!("no time line SVG in the DOM:\n{dom}"));
    let timeline = &dom[start..start + dom[start..].find("</svg>").expect("the SVG ends")];
    for step in STEPS {
        assert!(
            timeline.contains(&format!("{step}</text>")),
            "step {step} is not named in the SVG:\n{timeline}"
        );
    }
    assert!(timeline.contains("<rect class=\"failed\""), "the failed attempt is drawn");
    assert!(timeline.contains("<rect class=\"ghost\""), "estimates are drawn as ghost bars");
    assert!(!dom.to_lowercase().contains("<script"), "the escaped <script> texts stayed text");
    assert!(dom.contains("Restore over \"prod\"? &lt;script&gt;"), "the question is text in the DOM");
    assert!(dom.contains("<svg class=\"trend-chart\""), "a drill has its RTO trend");

    let screenshot = drill.root.path().join("report.png");
    headless(&[&format!("--screenshot={}", screenshot.display()), "--window-size=1200,900", &url], &profile);
    let bytes = std::fs::read(&screenshot).expect("the screenshot");
    assert!(bytes.len() > 10_000, "a screenshot of {} bytes is blank", bytes.len());
    let image = Png::decode(&bytes);
    assert_eq!((image.width, image.height), (1200, 900));
    let mut colours: Vec<[u8; 3]> = image.pixels.clone();
    colours.sort_unstable();
    colours.dedup();
    assert!(colours.len() > 20, "only {} colours: the page is blank", colours.len());
    // The bars of the succeeded attempts are drawn in their green (#2da44e).
    let green = image.pixels.iter().filter(|pixel| near(**pixel, [0x2d, 0xa4, 0x4e])).count();
    assert!(green > 200, "{green} green pixels: no succeeded bar on the screenshot");
}

fn near(pixel: [u8; 3], colour: [u8; 3]) -> bool {
    pixel.iter().zip(colour).all(|(value, wanted)| value.abs_diff(wanted) <= 8)
}

/// An 8-bit RGB or RGBA PNG, decoded to RGB pixels (all chromium writes).
struct Png {
    width: usize,
    height: usize,
    pixels: Vec<[u8; 3]>,
}

impl Png {
    fn decode(bytes: &[u8]) -> Png {
        assert_eq!(&bytes[..8], b"\x89PNG\r\n\x1a\n", "a PNG signature");
        let (mut width, mut height, mut channels) = (0, 0, 0);
        let mut compressed = Vec::new();
        let mut at = 8;
        while at + 8 <= bytes.len() {
            let length = u32::from_be_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
            let kind = &bytes[at + 4..at + 8];
            let data = &bytes[at + 8..at + 8 + length];
            match kind {
                b"IHDR" => {
                    width = u32::from_be_bytes(data[0..4].try_into().unwrap()) as usize;
                    height = u32::from_be_bytes(data[4..8].try_into().unwrap()) as usize;
                    assert_eq!(data[8], 8, "8 bits per sample");
                    assert_eq!(data[12], 0, "not interlaced");
                    channels = match data[9] {
                        2 => 3,
                        6 => 4,
                        other => panic!("PNG colour type {other}"),
                    };
                }
                b"IDAT" => compressed.extend_from_slice(data),
                _ => {}
            }
            at += 12 + length;
        }
        let mut raw = Vec::new();
        flate2::read::ZlibDecoder::new(compressed.as_slice()).read_to_end(&mut raw).expect("zlib data");
        let stride = width * channels;
        assert_eq!(raw.len(), height * (stride + 1), "scan lines");
        let mut previous = vec![0u8; stride];
        let mut pixels = Vec::with_capacity(width * height);
        for line in raw.chunks(stride + 1) {
            let mut current = line[1..].to_vec();
            for index in 0..stride {
                let left = if index >= channels { current[index - channels] } else { 0 };
                let up = previous[index];
                let up_left = if index >= channels { previous[index - channels] } else { 0 };
                let predictor = match line[0] {
                    0 => 0,
                    1 => left,
                    2 => up,
                    3 => ((u16::from(left) + u16::from(up)) / 2) as u8,
                    4 => paeth(left, up, up_left),
                    other => panic!("PNG filter {other}"),
                };
                current[index] = current[index].wrapping_add(predictor);
            }
            pixels.extend(current.chunks(channels).map(|pixel| [pixel[0], pixel[1], pixel[2]]));
            previous = current;
        }
        Png { width, height, pixels }
    }
}

fn paeth(left: u8, up: u8, up_left: u8) -> u8 {
    let estimate = i16::from(left) + i16::from(up) - i16::from(up_left);
    let (to_left, to_up, to_up_left) = (
        (estimate - i16::from(left)).abs(),
        (estimate - i16::from(up)).abs(),
        (estimate - i16::from(up_left)).abs(),
    );
    if to_left <= to_up && to_left <= to_up_left {
        left
    } else if to_up <= to_up_left {
        up
    } else {
        up_left
    }
}

#[test]
fn a_run_that_failed_is_not_recovered_in_html() {
    let root = tempfile::tempdir().expect("a temporary directory");
    std::fs::write(
        root.path().join("fails.yaml"),
        "version: 1\nname: fails\nobjectives: { rto: 1m }\nsteps:\n  - id: broken\n    kind: exec\n    with: { command: [\"false\"] }\n",
    )
    .expect("the plan is written");
    let state_dir = root.path().join("state");
    let state = state_dir.to_str().expect("a UTF-8 path");
    let run = Command::new(BINARY)
        .args(["run", "fails.yaml", "--yes", "--state-dir", state])
        .current_dir(root.path())
        .stdin(std::process::Stdio::null())
        .output()
        .expect("dr-plan runs");
    assert_eq!(run.status.code(), Some(1), "{}", String::from_utf8_lossy(&run.stderr));
    let run_id = std::fs::read_dir(state_dir.join("runs")).unwrap().next().unwrap().unwrap().file_name();
    let run_id = run_id.to_str().unwrap();
    let html = dr_plan(&["report", run_id, "--format", "html", "--state-dir", state], root.path());
    assert!(html.contains("<span class=\"badge bad\">failed</span>"), "{html}");
    assert!(html.contains("not recovered"), "{html}");
    assert!(html.contains("<rect class=\"failed\""), "{html}");
    assert!(!html.contains("Drill history"), "not a drill");
}
