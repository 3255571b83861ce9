//! The cluster console in a real browser: three CPs and a DP as real processes, the page
//! rendered by headless Chromium (Debian's `chromium`), its DOM checked and a screenshot
//! saved.
#![allow(clippy::disallowed_methods)]

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::json;
use support::{data_planes, dp_status, wait_for, Cluster};

const LONG: Duration = Duration::from_secs(60);
/// Chromium runs the page's timers this far ahead (it waits for fetches meanwhile), so
/// the page polls the CP a few times and exits.
const VIRTUAL_TIME_MS: u32 = 5_000;
/// A browser that hangs must fail the test, not stall the suite.
const CHROMIUM_DEADLINE: Duration = Duration::from_secs(120);
/// A user-supplied name that would become an element if the page used markup.
const HOSTILE_NAME: &str = "<img src=x onerror=alert(1)>";

fn require_chromium() {
    match Command::new("chromium").arg("--version").output() {
        Ok(out) if out.status.success() => {}
        Ok(out) => panic!(
            "`chromium --version` failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ),
        Err(e) => panic!(
            "this test renders the cluster console in headless Chromium, and `chromium` \
             cannot be run ({e}): install it with `apt-get install chromium` (.ci/run does)"
        ),
    }
}

/// Runs headless Chromium on `url` with `args`; returns its stdout.
fn chromium(url: &str, args: &[String], scratch: &Path) -> String {
    let profile = tempfile::tempdir_in(scratch).unwrap();
    let out_path = scratch.join(format!("chromium-{}.out", std::process::id()));
    let err_path = out_path.with_extension("err");
    let mut cmd = Command::new("chromium");
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--hide-scrollbars",
    ])
    .arg(format!("--user-data-dir={}", profile.path().display()))
    .arg(format!("--virtual-time-budget={VIRTUAL_TIME_MS}"))
    .args(args)
    .arg(url)
    .stdin(Stdio::null())
    // Files, not pipes: a DOM larger than a pipe's buffer would block the browser.
    .stdout(std::fs::File::create(&out_path).unwrap())
    .stderr(std::fs::File::create(&err_path).unwrap());
    // Its own process group, so a hung browser is killed with its renderers.
    std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    let mut child = cmd.spawn().expect("chromium starts");
    let deadline = Instant::now() + CHROMIUM_DEADLINE;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            let _ = Command::new("kill")
                .args(["-KILL", &format!("-{}", child.id())])
                .status();
            child.wait().ok();
            panic!(
                "chromium did not finish within {CHROMIUM_DEADLINE:?} on {url}; stderr:\n{}",
                std::fs::read_to_string(&err_path).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let stdout = std::fs::read_to_string(&out_path).unwrap_or_default();
    assert!(
        status.success(),
        "chromium {args:?} {url} exited with {status}; stderr:\n{}",
        std::fs::read_to_string(&err_path).unwrap_or_default()
    );
    stdout
}

fn dump_dom(url: &str, scratch: &Path) -> String {
    chromium(url, &["--dump-dom".to_string()], scratch)
}

/// The page as rendered, with what a failure needs to show.
fn assert_rendered(dom: &str, what: &str, needles: &[&str]) {
    // Set by the script after it rendered an answer: the static page says "loading".
    assert!(
        dom.contains(r#"data-state="live""#),
        "{what}: the page did not render the CP's answer (did its script run?):\n{dom}"
    );
    for n in needles {
        assert!(dom.contains(n), "{what}: the page lacks {n:?}:\n{dom}");
    }
}

#[test]
fn the_console_shows_a_data_plane_with_its_hash_in_a_real_browser() {
    require_chromium();
    let mut c = Cluster::start(3);
    let leader = c.wait_leader(LONG);
    let follower = (1..=3).find(|id| *id != leader).unwrap();
    let cp = c.node(leader);
    let r = cp
        .post(
            "/services",
            &json!({"name": "console-svc", "url": "http://upstream.test:8080"}),
        )
        .expect("the CP answers");
    assert_eq!(r.status, 201, "{}", r.body);
    let r = cp
        .post("/consumers", &json!({"username": HOSTILE_NAME}))
        .expect("the CP answers");
    assert_eq!(r.status, 201, "{}", r.body);
    let hash = c.cp_hash(leader).expect("the CP reports its hash");

    c.start_dp(1, &[leader], &[]);
    let dp = c.dp(1);
    wait_for(&format!("dp1 to serve {hash}"), LONG, || {
        dp_status(dp).filter(|(h, _)| *h == hash)
    });
    let dp_id = std::fs::read_to_string(dp.prefix.join("node_id"))
        .unwrap()
        .trim()
        .to_string();
    // The console reads the replicated DP table, which the CP records once a second:
    // wait until every CP holds the row with the hash.
    for id in [leader, follower] {
        wait_for(&format!("cp{id} to list dp1 at {hash}"), LONG, || {
            data_planes(c.node(id))?
                .iter()
                .any(|r| r["id"] == dp_id && r["config_hash"] == hash && r["connected"] == true)
                .then_some(())
        });
    }

    let scratch = Path::new(env!("CARGO_TARGET_TMPDIR")).join("console");
    std::fs::create_dir_all(&scratch).unwrap();
    let url = |id: u64| format!("http://{}/", c.node(id).console);

    let dom = dump_dom(&url(leader), &scratch);
    assert_rendered(
        &dom,
        "the leader's console",
        &[
            &dp_id,
            &hash,
            "console-svc",
            "cp1",
            "cp2",
            "cp3",
            "replicating",
            "1 data plane, 1 connected, 1 holding this control plane's config",
        ],
    );
    // Rendered as text: the markup is escaped, and no element came from the name.
    assert!(
        dom.contains("&lt;img src=x onerror=alert(1)&gt;"),
        "the consumer's name is not shown as text:\n{dom}"
    );
    assert!(
        !dom.contains("<img"),
        "a user-supplied name became markup:\n{dom}"
    );

    let dom = dump_dom(&url(follower), &scratch);
    assert_rendered(
        &dom,
        "a follower's console",
        &[&dp_id, &hash, "Only the leader tracks replication"],
    );

    let png: PathBuf = scratch.join("console.png");
    let _ = std::fs::remove_file(&png);
    chromium(
        &url(leader),
        &[
            format!("--screenshot={}", png.display()),
            "--window-size=1280,900".to_string(),
        ],
        &scratch,
    );
    let bytes = std::fs::read(&png)
        .unwrap_or_else(|e| panic!("chromium wrote no screenshot at {}: {e}", png.display()));
    assert!(
        bytes.len() > 8 && bytes.starts_with(b"\x89PNG\r\n\x1a\n"),
        "{} is not a PNG ({} bytes)",
        png.display(),
        bytes.len()
    );
    println!(
        "console of cp{leader} with dp1 {dp_id} at {hash}: screenshot {} ({} bytes)",
        png.display(),
        bytes.len()
    );
}
