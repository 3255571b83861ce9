use super::*;

use serde_json::json;

#[test]
fn one_violation_reads_schema_violation() {
    let mut e = Errors::default();
    e.field("host", "required field missing");
    let k = KongError::schema_violation(&e);
    assert_eq!(
        k.to_json(),
        json!({"code": 2, "name": "schema violation",
               "message": "schema violation (host: required field missing)",
               "fields": {"host": "required field missing"}})
    );
    assert_eq!(k.status(), 400);
}

/// The example of KONG-COMPAT.md, to the byte.
#[test]
fn several_violations_are_counted_and_sorted() {
    let mut e = Errors::default();
    e.field("path", "should start with: /");
    e.field("host", "required field missing");
    assert_eq!(
        KongError::schema_violation(&e).to_json(),
        json!({"code": 2, "name": "schema violation",
               "message": "2 schema violations (host: required field missing; path: should start with: /)",
               "fields": {"host": "required field missing", "path": "should start with: /"}})
    );
}

#[test]
fn entity_errors_come_first_and_nested_fields_use_dots() {
    let mut config = Errors::default();
    config.field("minute", "expected a number");
    let mut e = Errors::default();
    e.entity("at least one of these fields must be non-empty: 'custom_id', 'username'");
    e.nested("config", FieldError::Record(config));
    let mut items = BTreeMap::new();
    items.insert(2, FieldError::msg("invalid value: get"));
    e.nested("methods", FieldError::Items(items));
    let k = KongError::schema_violation(&e);
    assert_eq!(
        k.message,
        "3 schema violations (at least one of these fields must be non-empty: 'custom_id', 'username'; \
         config.minute: expected a number; methods.2: invalid value: get)"
    );
    assert_eq!(
        k.fields_json().unwrap(),
        json!({"@entity": ["at least one of these fields must be non-empty: 'custom_id', 'username'"],
               "config": {"minute": "expected a number"},
               "methods": [null, "invalid value: get"]})
    );
}

#[test]
fn deeper_nesting_is_printed_as_a_lua_table() {
    let mut unhealthy = Errors::default();
    unhealthy.field("timeouts", "value should be between 0 and 255");
    let mut active = Errors::default();
    active.nested("unhealthy", FieldError::Record(unhealthy));
    let mut hc = Errors::default();
    hc.nested("active", FieldError::Record(active));
    let mut e = Errors::default();
    e.nested("healthchecks", FieldError::Record(hc));
    assert_eq!(
        KongError::schema_violation(&e).message,
        "schema violation (healthchecks.active: {\n  unhealthy = {\n    timeouts = \"value should be between 0 and 255\"\n  }\n})"
    );
}

#[test]
fn the_first_error_of_a_field_wins() {
    let mut e = Errors::default();
    e.field("port", "expected an integer");
    e.field("port", "value should be between 0 and 65535");
    assert_eq!(e.to_json(), json!({"port": "expected an integer"}));
}

#[test]
fn unique_and_foreign_key_bodies() {
    assert_eq!(
        KongError::unique_violation(&[("name", LuaValue::Str("x".into()))]).to_json(),
        json!({"code": 5, "name": "unique constraint violation",
               "message": "UNIQUE violation detected on '{name=\"x\"}'", "fields": {"name": "x"}})
    );
    let composite = KongError::unique_violation(&[
        ("name", LuaValue::Str("key-auth".into())),
        (
            "route",
            LuaValue::Table(vec![("id".into(), LuaValue::Str("r1".into()))]),
        ),
        ("service", LuaValue::Null),
        ("consumer", LuaValue::Null),
    ]);
    assert_eq!(
        composite.message,
        "UNIQUE violation detected on '{consumer=null,name=\"key-auth\",route={id=\"r1\"},service=null}'"
    );
    assert_eq!(composite.status(), 409);

    let fk = KongError::foreign_key_violation(
        "service",
        "6f6c6b8e-1111-2222-3333-444455556666",
        "services",
    );
    assert_eq!(
        fk.to_json(),
        json!({"code": 4, "name": "foreign key violation",
               "message": "the foreign key '{id=\"6f6c6b8e-1111-2222-3333-444455556666\"}' does not reference an existing 'services' entity.",
               "fields": {"service": {"id": "6f6c6b8e-1111-2222-3333-444455556666"}}})
    );
    let unresolved = KongError::foreign_key_unresolved("service", "name", "nope", "services");
    assert_eq!(unresolved.code.number(), 13);
    assert_eq!(
        unresolved.message,
        "foreign key unresolved (service.name: the foreign key cannot be resolved with '{name=\"nope\"}' for an existing 'services' entity)"
    );
    assert_eq!(
        KongError::foreign_key_restricted("services", "routes").to_json(),
        json!({"code": 4, "name": "foreign key violation",
               "message": "an existing 'routes' entity references this 'services' entity",
               "fields": {"@referenced_by": "routes"}})
    );
}

#[test]
fn every_code_has_kongs_number_name_and_status() {
    let table = [
        (ErrorCode::InvalidPrimaryKey, 1, "invalid primary key", 400),
        (ErrorCode::SchemaViolation, 2, "schema violation", 400),
        (
            ErrorCode::PrimaryKeyViolation,
            3,
            "primary key violation",
            400,
        ),
        (
            ErrorCode::ForeignKeyViolation,
            4,
            "foreign key violation",
            400,
        ),
        (
            ErrorCode::UniqueViolation,
            5,
            "unique constraint violation",
            409,
        ),
        (ErrorCode::NotFound, 6, "not found", 404),
        (ErrorCode::InvalidOffset, 7, "invalid offset", 400),
        (ErrorCode::DatabaseError, 8, "database error", 500),
        (ErrorCode::InvalidSize, 9, "invalid size", 400),
        (ErrorCode::InvalidUnique, 10, "invalid unique", 400),
        (ErrorCode::InvalidOptions, 11, "invalid options", 400),
        (
            ErrorCode::OperationUnsupported,
            12,
            "operation unsupported",
            405,
        ),
        (
            ErrorCode::ForeignKeysUnresolved,
            13,
            "foreign keys unresolved",
            400,
        ),
        (
            ErrorCode::DeclarativeConfig,
            14,
            "invalid declarative configuration",
            400,
        ),
    ];
    for (code, n, name, status) in table {
        assert_eq!(
            (code.number(), code.name(), code.http_status()),
            (n, name, status)
        );
    }
    assert_eq!(
        KongError::invalid_offset("abc", "bad base64").to_json(),
        json!({"code": 7, "name": "invalid offset", "message": "'abc' is not a valid offset: bad base64"})
    );
    assert_eq!(
        KongError::invalid_size("invalid size").to_json()["code"],
        json!(9)
    );
    let mut opts = BTreeMap::new();
    opts.insert("tags".to_string(), "cannot be more than 5".to_string());
    assert_eq!(
        KongError::invalid_options(&opts).to_json(),
        json!({"code": 11, "name": "invalid options",
               "message": "invalid option (tags: cannot be more than 5)",
               "options": {"tags": "cannot be more than 5"}})
    );
}

#[test]
fn declarative_messages_print_the_tree_as_lua() {
    let fields = json!({"services": [{"host": "required field missing", "port": "value should be between 0 and 65535"}]});
    assert_eq!(
        KongError::declarative(&fields).message,
        "declarative config is invalid: {services={{host=\"required field missing\",port=\"value should be between 0 and 65535\"}}}"
    );
    let sparse = json!({"services": [null, "uniqueness violation"]});
    assert_eq!(
        KongError::declarative(&sparse).message,
        "declarative config is invalid: {services={[2]=\"uniqueness violation\"}}"
    );
}
