use super::*;

use serde_json::json;

use crate::declarative::{parse, ParseOptions};

const OPTS: ParseOptions = ParseOptions {
    now: 1_700_000_000,
    entropy: 42,
};

/// The file's errors as the CLI prints them, for a file named `kong.yaml`.
fn lines(text: &str) -> Vec<String> {
    let err = parse(text, OPTS).expect_err("the file has errors");
    locate(text, &err)
        .iter()
        .map(|l| l.render("kong.yaml"))
        .collect()
}

#[test]
fn a_yaml_syntax_error_is_at_the_parsers_position() {
    let text = "_format_version: \"3.0\"\nservices:\n  - name: a\n    url: http://a.test\n   bad: indent\n";
    let got = lines(text);
    assert_eq!(got.len(), 1, "{got:?}");
    let want_prefix = "kong.yaml:5:";
    assert!(got[0].starts_with(want_prefix), "{got:?}");
    // The position is in front; the message does not repeat it, and keeps its context.
    assert!(!got[0].contains("at line 5 column"), "{got:?}");
    let unclosed = lines("_format_version: '3.0'\nservices: [ {name: x\n");
    assert!(unclosed[0].starts_with("kong.yaml:3:1: "), "{unclosed:?}");
}

#[test]
fn a_json_syntax_error_is_at_serde_jsons_position() {
    let text = "{\n  \"_format_version\": \"3.0\",\n  \"services\": [\n    {\"name\": \"a\" \"url\": \"http://a.test\"}\n  ]\n}\n";
    let got = lines(text);
    assert_eq!(
        got,
        vec!["kong.yaml:4:18: expected `,` or `}`".to_string()],
        "{got:?}"
    );
}

#[test]
fn a_wrong_field_in_a_nested_route_is_at_its_line() {
    let text = "\
_format_version: \"3.0\"
services:
  - name: first
    url: http://first.test
  - name: second
    url: http://second.test
    routes:
      - name: r1
        paths:
          - /ok
          - bad
        hosts: [a.test]
";
    assert_eq!(
        lines(text),
        vec![
            "kong.yaml:11:13: services[1].routes[0].paths[1]: should start with: / (fixed path) or ~/ (regex path)"
                .to_string()
        ]
    );
}

#[test]
fn several_errors_come_in_file_order_with_missing_fields_at_their_entity() {
    let text = "\
_format_version: \"3.0\"
unknown_top: 1
services:
  - name: s
    host: 42
    port: 70000
    routes: 5
  - url: http://b.test
    plugins:
      - config: {}
";
    assert_eq!(
        lines(text),
        vec![
            "kong.yaml:2:1: unknown_top: unknown field",
            "kong.yaml:5:5: services[0].host: expected a string",
            "kong.yaml:6:5: services[0].port: value should be between 0 and 65535",
            "kong.yaml:7:5: services[0].routes: expected an array",
            // Not in the file: at the plugin that lacks it.
            "kong.yaml:10:9: services[1].plugins[0].name: required field missing",
        ]
    );
}

#[test]
fn a_json_file_maps_its_errors_to_lines_even_when_indented_with_tabs() {
    let text = "{\n\t\"_format_version\": \"3.0\",\n\t\"services\": [\n\t\t{\"name\": \"é\", \"url\": \"http://a.test\",\n\t\t \"routes\": [{\"paths\": [\"/\", \"nope\"]}]}\n\t]\n}\n";
    assert_eq!(
        lines(text),
        vec![
            "kong.yaml:5:31: services[0].routes[0].paths[1]: should start with: / (fixed path) or ~/ (regex path)"
                .to_string()
        ]
    );
}

#[test]
fn references_and_duplicates_named_by_key_find_their_entity() {
    let text = "\
_format_version: \"3.0\"
services:
  - name: foo
    url: http://a.test
  - name: foo
    url: http://b.test
routes:
  - name: r
    service: nope
    paths: [/]
";
    assert_eq!(
        lines(text),
        vec![
            "kong.yaml:5:5: services[1]: uniqueness violation: 'services' entity with name set to 'foo' already declared",
            "kong.yaml:8:5: routes[0]: invalid reference 'service: nope' (no such entry in 'services')",
        ]
    );
    // A nested route is named as if it were top-level.
    let nested = "\
_format_version: \"3.0\"
services:
  - name: s
    url: http://a.test
    routes:
      - name: r
        paths: [/]
  - name: t
    url: http://b.test
    routes:
      - name: r
        paths: [/x]
";
    assert_eq!(
        lines(nested),
        vec![
            "kong.yaml:11:9: services[1].routes[0]: uniqueness violation: 'routes' entity with name set to 'r' already declared"
                .to_string()
        ]
    );
}

#[test]
fn paths_the_file_does_not_have_keep_kongs_path_and_the_nearest_line() {
    let fields = json!({"services": {"ghost": "uniqueness violation: 'services' entity with custom_id set to 'x' already declared"}});
    let text = "_format_version: '3.0'\nservices:\n- name: a\n  url: http://a.test\n";
    assert_eq!(
        locate_fields(text, &fields),
        vec![Located {
            position: Some(Position { line: 2, column: 1 }),
            path: "services.ghost".into(),
            message:
                "uniqueness violation: 'services' entity with custom_id set to 'x' already declared"
                    .into(),
        }]
    );
    // Text that cannot be walked: Kong's path, no position.
    let got = locate_fields("{\"a\": ", &json!({"services": [{"port": "bad"}]}));
    assert_eq!(got[0].render("f.json"), "f.json: services[0].port: bad");
}

#[test]
fn errors_about_the_whole_document_have_no_path() {
    let got = lines("- a\n- b\n");
    assert_eq!(got, vec!["kong.yaml: expected an object".to_string()]);
}
