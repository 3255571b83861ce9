use super::*;

use serde_json::json;

fn errors_of(v: Value, f: impl FnOnce(&mut Reader<'_>)) -> Value {
    let mut r = Reader::new(&v).unwrap();
    f(&mut r);
    match r.finish() {
        Ok(()) => Value::Null,
        Err(e) => e.to_json(),
    }
}

#[test]
fn types_are_checked_with_kongs_words() {
    let errs = errors_of(
        json!({"s": 1, "b": "yes", "i": 1.5, "n": "1", "e": "", "u": "nope", "arr": "x"}),
        |r| {
            r.string("s");
            r.boolean("b");
            r.integer("i");
            r.number("n");
            r.string("e");
            r.uuid("u");
            r.strings("arr", false, |_| Ok(()));
        },
    );
    assert_eq!(
        errs,
        json!({"s": "expected a string", "b": "expected a boolean", "i": "expected an integer",
               "n": "expected a number", "e": "length must be at least 1", "u": "expected a valid UUID",
               "arr": "expected an array"})
    );
}

#[test]
fn unknown_fields_are_reported_and_null_means_unset() {
    let errs = errors_of(json!({"a": null, "extra": 1}), |r| {
        assert_eq!(r.string("a"), None);
    });
    assert_eq!(errs, json!({"extra": "unknown field"}));
}

#[test]
fn ranges_sets_and_positions() {
    let errs = errors_of(
        json!({"port": 70000, "m": ["GET", 5, "x"], "ok": [1, 1000]}),
        |r| {
            r.int_between("port", 0, 65535);
            r.strings("m", true, |s| check_one_of(s, &["GET", "POST"]));
            r.integers("ok", 100, 999);
        },
    );
    assert_eq!(
        errs,
        json!({"port": "value should be between 0 and 65535",
               "m": [null, "expected a string", "expected one of: GET, POST"],
               "ok": ["value should be between 100 and 999", "value should be between 100 and 999"]})
    );
}

#[test]
fn sets_drop_duplicates_and_records_nest_errors() {
    let v = json!({"tags": ["a", "b", "a"], "rec": {"x": "1", "y": 2}});
    let mut r = Reader::new(&v).unwrap();
    assert_eq!(
        r.strings("tags", true, |_| Ok(())),
        Some(vec!["a".into(), "b".into()])
    );
    let got = r.record("rec", |rr| rr.integer("x"));
    assert_eq!(got, None);
    assert_eq!(
        r.finish().unwrap_err().to_json(),
        json!({"rec": {"x": "expected an integer", "y": "unknown field"}})
    );
}

#[test]
fn required_fields() {
    let errs = errors_of(json!({}), |r| {
        r.req_string("host");
    });
    assert_eq!(errs, json!({"host": "required field missing"}));
    assert!(Reader::new(&json!([1])).is_err());
}
