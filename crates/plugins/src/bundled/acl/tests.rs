use uuid::Uuid;

use super::*;
use crate::bundled::key_auth::tests::{consumers, header, new_cx, plugin, req, run, CREATED};
use crate::context::Credential;

const DOC: &str = r#"
_format_version: "3.0"
consumers:
  - username: admin
    acls: [{group: admins}, {group: staff}]
  - username: guest
    acls: [{group: guests}]
  - username: loner
"#;

fn cred() -> Option<Credential> {
    Some(Credential {
        id: Uuid::from_u128(7),
        identifier: "k".into(),
    })
}

/// (config, consumer) → Ok(X-Consumer-Groups) or Err((status, message)).
#[tokio::test]
async fn allow_and_deny_lists_against_a_consumers_groups() {
    let c = consumers(DOC);
    let allow = serde_json::json!({"allow": ["admins", "ops"]});
    let deny = serde_json::json!({"deny": ["guests"]});
    let hidden = serde_json::json!({"allow": ["staff"], "hide_groups_header": true});
    let forbidden = Err((403, "You cannot consume this service".to_string()));
    let cases = [
        (&allow, "admin", Ok(Some("admins, staff"))),
        (&allow, "guest", forbidden.clone()),
        (&allow, "loner", forbidden.clone()),
        (&deny, "admin", Ok(Some("admins, staff"))),
        (&deny, "guest", forbidden.clone()),
        (&deny, "loner", Ok(Some(""))),
        // Kong leaves a header the client sent alone when it does not set its own.
        (&hidden, "admin", Ok(Some("forged"))),
        (&hidden, "guest", forbidden.clone()),
    ];
    for (config, who, want) in cases {
        let p = plugin("acl", config.clone());
        let mut cx = new_cx(&c, CREATED as f64);
        cx.authenticate(c.find(who).unwrap().clone(), cred());
        let mut r = req("GET", "/", &[("x-consumer-groups", "forged")], "");
        let got = run(&*p, &mut cx, &mut r)
            .await
            .map(|()| header(&r, "x-consumer-groups").map(str::to_string))
            .map_err(|(s, m, _)| (s, m));
        let want = want.map(|h| h.map(str::to_string));
        assert_eq!(got, want, "{config} {who}");
    }
}

#[tokio::test]
async fn without_a_consumer_it_is_401_unless_groups_were_authenticated() {
    let c = consumers(DOC);
    let p = plugin("acl", serde_json::json!({"allow": ["ldap-admins"]}));
    let mut cx = new_cx(&c, CREATED as f64);
    let mut r = req("GET", "/", &[], "");
    let (s, m, _) = run(&*p, &mut cx, &mut r).await.unwrap_err();
    assert_eq!((s, m.as_str()), (401, "Unauthorized"));

    let mut cx = new_cx(&c, CREATED as f64);
    cx.authenticated_groups = Some(Arc::from(vec!["x".to_string(), "ldap-admins".into()]));
    let mut r = req("GET", "/", &[], "");
    run(&*p, &mut cx, &mut r).await.unwrap();
    assert_eq!(header(&r, "x-authenticated-groups"), Some("x, ldap-admins"));
    assert_eq!(header(&r, "x-consumer-groups"), None);
}

#[tokio::test]
async fn authenticated_groups_win_for_anonymous_or_when_always_used() {
    let c = consumers(DOC);
    let groups: Arc<[String]> = Arc::from(vec!["ldap-admins".to_string()]);
    // (always_use_authenticated_groups, has credential) → allowed by the ldap group?
    for (always, credential, allowed) in [
        (false, false, true),
        (false, true, false),
        (true, true, true),
    ] {
        let p = plugin(
            "acl",
            serde_json::json!({"allow": ["ldap-admins"], "always_use_authenticated_groups": always}),
        );
        let mut cx = new_cx(&c, CREATED as f64);
        cx.authenticate(
            c.find("guest").unwrap().clone(),
            if credential { cred() } else { None },
        );
        cx.authenticated_groups = Some(groups.clone());
        let mut r = req("GET", "/", &[], "");
        assert_eq!(
            run(&*p, &mut cx, &mut r).await.is_ok(),
            allowed,
            "always {always}, credential {credential}"
        );
    }
}
