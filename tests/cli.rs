//! End-to-end tests of the `tidegate` command line: the real binary, real files.

use std::path::Path;
use std::process::{Command, Output};

fn tidegate(args: &[&str], cwd: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tidegate"))
        .args(args)
        .current_dir(cwd)
        .output()
        .expect("the tidegate binary runs")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn repo_root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .and_then(Path::parent)
        .expect("crates/tidegate sits two levels below the repo root")
}

#[test]
fn version_names_the_kong_api_it_implements() {
    let dir = tempfile::tempdir().unwrap();
    let out = tidegate(&["version"], dir.path());
    assert!(out.status.success());
    let text = stdout(&out);
    assert!(text.starts_with("tidegate "), "{text}");
    assert!(text.contains("Kong Admin API 3."), "{text}");
}

/// The README's first command, verbatim apart from the cargo wrapper.
#[test]
fn parses_the_example_file_the_readme_points_at() {
    let out = tidegate(
        &["config", "parse", "ops/examples/tidegate.yml"],
        repo_root(),
    );
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    assert!(text.starts_with("parse successful\n"), "{text}");
    for line in [
        "  services: 1",
        "  routes: 1",
        "  consumers: 1",
        "  upstreams: 1",
        "  targets: 2",
        "  plugins: 1",
        "  keyauth_credentials: 1",
        "  acls: 1",
    ] {
        assert!(
            text.contains(&format!("{line}\n")),
            "missing {line:?} in {text}"
        );
    }
    let hash = text
        .lines()
        .find_map(|l| l.strip_prefix("config hash: "))
        .expect("a hash line");
    assert_eq!(hash.len(), 32);
    assert!(hash
        .bytes()
        .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
}

#[test]
fn init_writes_a_file_that_parses_and_refuses_to_overwrite() {
    let dir = tempfile::tempdir().unwrap();
    let out = tidegate(&["config", "init"], dir.path());
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(dir.path().join("tidegate.yml").exists());

    let again = tidegate(&["config", "init"], dir.path());
    assert_eq!(again.status.code(), Some(1));
    assert!(
        stderr(&again).contains("already exists; pass --force"),
        "{}",
        stderr(&again)
    );

    let forced = tidegate(&["config", "init", "--force"], dir.path());
    assert!(forced.status.success());

    let parsed = tidegate(&["config", "parse", "tidegate.yml"], dir.path());
    assert!(parsed.status.success(), "{}", stderr(&parsed));
}

#[test]
fn the_same_exported_file_always_has_the_same_hash() {
    let dir = tempfile::tempdir().unwrap();
    // Ids and timestamps are in the file, so nothing depends on the time of parsing.
    let file = r#"{
      "_format_version": "3.0",
      "services": [{"id": "0855b320-0dd2-547d-891d-601e9b38647f", "name": "my-service",
                    "host": "example.com", "created_at": 1700000000, "updated_at": 1700000000}]
    }"#;
    std::fs::write(dir.path().join("kong.json"), file).unwrap();
    let a = tidegate(&["config", "parse", "kong.json"], dir.path());
    let b = tidegate(&["config", "parse", "kong.json"], dir.path());
    assert!(a.status.success(), "{}", stderr(&a));
    assert_eq!(stdout(&a), stdout(&b));
    assert!(stdout(&a).contains("  services: 1\n"));
}

#[test]
fn invalid_files_print_kongs_errors_at_their_lines_and_exit_1() {
    let dir = tempfile::tempdir().unwrap();
    let file = "_format_version: \"3.0\"\nservices:\n  - name: svc\n    host: 42\n    port: 70000\n    routes: 5\n";
    std::fs::write(dir.path().join("bad.yml"), file).unwrap();
    let out = tidegate(&["config", "parse", "bad.yml"], dir.path());
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stderr(&out),
        "Error: Failed parsing:\n\
         bad.yml:4:5: services[0].host: expected a string\n\
         bad.yml:5:5: services[0].port: value should be between 0 and 65535\n\
         bad.yml:6:5: services[0].routes: expected an array\n"
    );
    assert!(stdout(&out).is_empty());
}

#[test]
fn syntax_errors_and_nested_errors_point_at_file_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            "indent.yaml",
            "_format_version: \"3.0\"\nservices:\n  - name: a\n    url: http://a.test\n   bad: indent\n",
            "indent.yaml:5:4: did not find expected '-' indicator, while parsing a block collection at line 3 column 3",
        ),
        (
            "kong.json",
            "{\n  \"_format_version\": \"3.0\",\n  \"services\": [\n    {\"name\": \"a\" \"url\": \"http://a.test\"}\n  ]\n}\n",
            "kong.json:4:18: expected `,` or `}`",
        ),
        (
            "route.yaml",
            "_format_version: \"3.0\"\nservices:\n  - name: a\n    url: http://a.test\n    routes:\n      - name: r\n        paths:\n          - /ok\n          - bad\n",
            "route.yaml:9:13: services[0].routes[0].paths[1]: should start with: / (fixed path) or ~/ (regex path)",
        ),
    ];
    for (name, text, want) in cases {
        std::fs::write(dir.path().join(name), text).unwrap();
        let out = tidegate(&["config", "parse", name], dir.path());
        assert_eq!(out.status.code(), Some(1), "{name}");
        assert_eq!(stderr(&out), format!("Error: Failed parsing:\n{want}\n"));
    }
}

#[test]
fn a_missing_file_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let out = tidegate(&["config", "parse", "nope.yml"], dir.path());
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("cannot read nope.yml"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn hybrid_roles_need_the_cluster_certificate() {
    let dir = tempfile::tempdir().unwrap();
    for role in ["data_plane", "control_plane"] {
        let out = Command::new(env!("CARGO_BIN_EXE_tidegate"))
            .args(["start", "-p", "data"])
            .env("TIDEGATE_ROLE", role)
            .current_dir(dir.path())
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1));
        assert!(
            stderr(&out)
                .contains("cluster certificate and key must be provided to use Hybrid mode"),
            "{}",
            stderr(&out)
        );
    }
}

#[test]
fn gen_cert_writes_a_pair_and_keeps_existing_files() {
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_tidegate"))
            .args(["hybrid", "gen_cert"])
            .args(args)
            .current_dir(dir.path())
            .output()
            .unwrap()
    };
    let out = run(&[]);
    assert!(out.status.success(), "{}", stderr(&out));
    let cert = std::fs::read_to_string(dir.path().join("cluster.crt")).unwrap();
    assert!(cert.starts_with("-----BEGIN CERTIFICATE-----"));
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(dir.path().join("cluster.key"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let out = run(&[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out).contains("already exists; use --force"),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        std::fs::read_to_string(dir.path().join("cluster.crt")).unwrap(),
        cert
    );
    let out = run(&["--force"]);
    assert!(out.status.success());
    assert_ne!(
        std::fs::read_to_string(dir.path().join("cluster.crt")).unwrap(),
        cert
    );
}

#[test]
fn bad_settings_stop_start_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("tidegate.conf"), "role = leader\n").unwrap();
    let out = tidegate(&["start", "-c", "tidegate.conf"], dir.path());
    assert_eq!(out.status.code(), Some(1));
    assert!(
        stderr(&out)
            .contains("role = 'leader' must be one of traditional, control_plane, data_plane"),
        "{}",
        stderr(&out)
    );
}
