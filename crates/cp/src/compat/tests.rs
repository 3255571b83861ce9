use super::*;

use serde_json::json;
use tidegate_model::Fixed;
use tidegate_state::{Command, Machine, Op};
use uuid::Uuid;

fn v(s: &str) -> Version {
    Version::parse(s).unwrap()
}

fn plugins(list: &[(&str, &str)]) -> BTreeMap<String, Version> {
    list.iter().map(|(n, s)| (n.to_string(), v(s))).collect()
}

/// The seed cases for a CP at x.4.2, for several majors x.
#[test]
fn version_seed_cases() {
    for major in [1, 2, 3, 7] {
        let cp = v(&format!("{major}.4.2"));
        for dp in ["4.0", "4.1", "4.2", "3.8", "2.1", "2.0"] {
            let dp = v(&format!("{major}.{dp}"));
            assert_eq!(
                check_version(&cp, &dp),
                Ok(()),
                "CP {cp} must accept DP {dp}"
            );
        }
        for (dp, problem) in [
            (format!("{major}.4.3"), VersionProblem::NewerThanCp),
            (format!("{major}.1.9"), VersionProblem::TooOld),
            (format!("{}.4.2", major + 1), VersionProblem::OtherMajor),
            (format!("{}.4.2", major - 1), VersionProblem::OtherMajor),
            (format!("{major}.5.0"), VersionProblem::NewerThanCp),
        ] {
            let dp = v(&dp);
            let err = check_version(&cp, &dp).expect_err(&format!("CP {cp} must refuse DP {dp}"));
            assert_eq!(
                err,
                Incompatible::Version {
                    cp: cp.clone(),
                    dp: dp.clone(),
                    problem
                }
            );
            assert_eq!(err.sync_status(), SyncStatus::KongVersionIncompatible);
            assert_eq!(err.sync_status().as_str(), "kong_version_incompatible");
        }
    }
}

#[test]
fn version_pre_releases_compare_by_precedence_and_build_metadata_is_ignored() {
    let cp = v("2.4.2");
    assert!(check_version(&cp, &v("2.4.2-rc.1")).is_ok());
    assert!(check_version(&cp, &v("2.4.2+build.7")).is_ok());
    assert!(check_version(&v("2.4.2-rc.1"), &v("2.4.2")).is_err());
    assert!(check_version(&v("2.4.2-rc.1"), &v("2.3.9")).is_ok());
}

#[test]
fn plugin_seed_cases() {
    let cp = plugins(&[("plugin1", "1.1.1"), ("plugin2", "2.0.0")]);
    let used = |names: &[&str]| -> BTreeMap<String, Version> {
        let names: BTreeSet<String> = names.iter().map(|s| s.to_string()).collect();
        cp_plugin_versions(&names, &cp)
    };

    // Patch differs: accepted.
    let dp = plugins(&[("plugin1", "1.1.2"), ("plugin2", "2.0.0")]);
    assert_eq!(check_plugins(&used(&["plugin1"]), &dp), Ok(()));

    // An extra plugin on the DP: accepted.
    let dp = plugins(&[
        ("plugin1", "1.1.1"),
        ("plugin2", "2.0.0"),
        ("plugin3", "1.0.0"),
    ]);
    assert_eq!(check_plugins(&used(&["plugin1", "plugin2"]), &dp), Ok(()));

    // Another minor: refused only when the config uses plugin1.
    let dp = plugins(&[("plugin1", "1.2.0"), ("plugin2", "2.0.0")]);
    assert_eq!(check_plugins(&used(&["plugin2"]), &dp), Ok(()));
    assert_eq!(check_plugins(&used(&[]), &dp), Ok(()));
    let err = check_plugins(&used(&["plugin1", "plugin2"]), &dp).unwrap_err();
    assert_eq!(
        err,
        Incompatible::PluginVersion {
            name: "plugin1".into(),
            cp: v("1.1.1"),
            dp: v("1.2.0")
        }
    );
    assert_eq!(err.sync_status().as_str(), "plugin_version_incompatible");

    // Another major: refused too.
    let dp = plugins(&[("plugin1", "2.1.1")]);
    assert_eq!(
        check_plugins(&used(&["plugin1"]), &dp)
            .unwrap_err()
            .sync_status(),
        SyncStatus::PluginVersionIncompatible
    );

    // A used plugin missing on the DP: refused; an unused one missing: fine.
    let dp = plugins(&[("plugin1", "1.1.1")]);
    assert_eq!(check_plugins(&used(&["plugin1"]), &dp), Ok(()));
    let err = check_plugins(&used(&["plugin1", "plugin2"]), &dp).unwrap_err();
    assert_eq!(
        err,
        Incompatible::PluginMissing {
            name: "plugin2".into(),
            cp: v("2.0.0")
        }
    );
    assert_eq!(err.sync_status().as_str(), "plugin_set_incompatible");
}

#[test]
fn log_lines_are_the_designs_verbatim() {
    let ip: IpAddr = "10.0.0.7".parse().unwrap();
    // The design's example pair, built by hand: check_version itself accepts 2.1 under 2.2.
    let line = Incompatible::Version {
        cp: v("2.2.3"),
        dp: v("2.1.0"),
        problem: VersionProblem::TooOld,
    }
    .log_line("dp-1", ip);
    assert_eq!(
        line,
        "unable to send updated configuration to DP node with hostname: dp-1 ip: 10.0.0.7 reason: version mismatches, CP version: 2.2 DP version: 2.1"
    );
    let missing = Incompatible::PluginMissing {
        name: "cors".into(),
        cp: v("3.9.0"),
    };
    let other = Incompatible::PluginVersion {
        name: "cors".into(),
        cp: v("3.9.0"),
        dp: v("3.8.0"),
    };
    for e in [missing, other] {
        assert_eq!(
            e.log_line("dp-1", ip),
            "unable to send updated configuration to DP node with hostname: dp-1 ip: 10.0.0.7 reason: CP and DP does not have same set of plugins installed or their versions might differ"
        );
    }
    // Same major.minor: the full versions say what differs.
    let newer = check_version(&v("2.4.2"), &v("2.4.3")).unwrap_err();
    assert!(newer
        .log_line("dp-1", ip)
        .ends_with("reason: version mismatches, CP version: 2.4.2 DP version: 2.4.3"));
    let ipv6: IpAddr = "fd00::7".parse().unwrap();
    assert!(newer
        .log_line("dp-2", ipv6)
        .contains("hostname: dp-2 ip: fd00::7 reason"));
}

#[test]
fn reasons_follow_kongs_wording() {
    let cases = [
        (
            check_version(&v("3.4.2"), &v("4.4.2")).unwrap_err(),
            "data plane version 4.4.2 is incompatible with control plane version 3.4.2 (3.x.y are accepted)",
        ),
        (
            check_version(&v("3.4.2"), &v("3.4.3")).unwrap_err(),
            "data plane version 3.4.3 is incompatible with older control plane version 3.4.2",
        ),
        (
            check_version(&v("3.4.2"), &v("3.1.9")).unwrap_err(),
            "data plane version 3.1.9 is incompatible with control plane version 3.4.2 (at most 2 minor versions older are accepted)",
        ),
        (
            Incompatible::PluginMissing {
                name: "cors".into(),
                cp: v("3.9.0"),
            },
            "configured cors plugin 3.9.0 is missing from data plane",
        ),
        (
            Incompatible::PluginVersion {
                name: "cors".into(),
                cp: v("3.9.0"),
                dp: v("3.8.1"),
            },
            "configured data plane cors plugin version 3.8.1 is different to control plane plugin version 3.9.0",
        ),
    ];
    for (err, reason) in cases {
        assert_eq!(err.reason(), reason);
    }
}

#[test]
fn sync_status_names_are_kongs() {
    let all = [
        (SyncStatus::Unknown, "unknown"),
        (SyncStatus::Normal, "normal"),
        (
            SyncStatus::KongVersionIncompatible,
            "kong_version_incompatible",
        ),
        (SyncStatus::PluginSetIncompatible, "plugin_set_incompatible"),
        (
            SyncStatus::PluginVersionIncompatible,
            "plugin_version_incompatible",
        ),
    ];
    for (s, name) in all {
        assert_eq!(s.as_str(), name);
        assert_eq!(s.to_string(), name);
        assert_eq!(serde_json::to_value(s).unwrap(), json!(name));
    }
}

#[test]
fn every_bundled_plugin_version_is_semver() {
    let bundled = tidegate_model::plugins::bundled();
    let versions = plugin_versions(&bundled);
    assert_eq!(versions.len(), bundled.len());
    for p in &bundled {
        assert_eq!(versions[p.name].to_string(), p.version);
    }
}

fn create(m: &mut Machine, n: u128, kind: EntityKind, body: serde_json::Value) {
    let c = Command {
        request_id: Uuid::from_u128(n),
        fixed: Fixed {
            id: Uuid::from_u128(0x1000 + n),
            now: 1_700_000_000,
            entropy: n,
        },
        op: Op::Create {
            kind,
            body: body.to_string(),
        },
    };
    m.execute(&c).0.expect("valid command");
}

#[test]
fn plugins_used_counts_disabled_instances_and_each_name_once() {
    let mut m = Machine::new();
    assert!(plugins_used(&m.config).is_empty());
    create(
        &mut m,
        1,
        EntityKind::Service,
        json!({"name": "s", "url": "http://upstream:80"}),
    );
    create(
        &mut m,
        2,
        EntityKind::Plugin,
        json!({"name": "correlation-id"}),
    );
    create(
        &mut m,
        3,
        EntityKind::Plugin,
        json!({"name": "cors", "enabled": false}),
    );
    create(
        &mut m,
        4,
        EntityKind::Plugin,
        json!({"name": "correlation-id", "service": {"name": "s"}}),
    );
    let used = plugins_used(&m.config);
    assert_eq!(
        used.iter().map(String::as_str).collect::<Vec<_>>(),
        ["correlation-id", "cors"]
    );

    let cp = plugin_versions(&tidegate_model::plugins::bundled());
    let wanted = cp_plugin_versions(&used, &cp);
    assert_eq!(
        wanted.keys().collect::<Vec<_>>(),
        ["correlation-id", "cors"]
    );

    // A DP without cors is refused although the cors instance is disabled.
    let mut dp = cp.clone();
    dp.remove("cors");
    assert_eq!(
        check_plugins(&wanted, &dp).unwrap_err().sync_status(),
        SyncStatus::PluginSetIncompatible
    );
    // Without key-auth it is fine: the config does not use it.
    let mut dp = cp.clone();
    dp.remove("key-auth");
    assert_eq!(check_plugins(&wanted, &dp), Ok(()));
}

#[test]
fn unknown_plugins_are_left_out_of_the_cp_versions() {
    let cp = plugins(&[("a", "1.0.0")]);
    let used: BTreeSet<String> = ["a".to_string(), "zz".to_string()].into();
    assert_eq!(cp_plugin_versions(&used, &cp), cp);
}
