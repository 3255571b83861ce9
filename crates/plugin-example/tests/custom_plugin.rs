//! The custom build end to end: the CP validates x-greeting's config with its schema,
//! and the proxy runs it, in one `tidegate-custom` process (traditional mode).

#[path = "../../../tests/support/mod.rs"]
mod support;

use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::json;
use support::*;

struct Gateway(std::process::Child);

impl Drop for Gateway {
    fn drop(&mut self) {
        self.0.kill().ok();
        self.0.wait().ok();
    }
}

#[test]
fn the_custom_build_validates_and_runs_its_plugin() {
    let dir = tempfile::tempdir().unwrap();
    let admin = format!("127.0.0.1:{}", free_port());
    let proxy = format!("127.0.0.1:{}", free_port());
    let log = std::fs::File::create(dir.path().join("node.log")).unwrap();
    let _gw = Gateway(
        Command::new(binary())
            .args(["start", "-p"])
            .arg(dir.path().join("prefix"))
            .env("TIDEGATE_ADMIN_LISTEN", &admin)
            .env("TIDEGATE_PROXY_LISTEN", &proxy)
            .env("TIDEGATE_STATUS_LISTEN", "off")
            .env("TIDEGATE_ADMIN_GUI_LISTEN", "off")
            .env("TIDEGATE_PLUGINS", "bundled,x-greeting")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap(),
    );
    let long = Duration::from_secs(60);
    wait_for("the Admin API", long, || {
        http(&admin, "GET", "/", None, &[])
    });
    let root = http(&admin, "GET", "/", None, &[]).unwrap().body;
    assert_eq!(
        root["plugins"]["available_on_server"]["x-greeting"],
        json!({"version": "1.0.0", "priority": 850})
    );

    let upstream = echo_upstream("origin", 64);
    let svc = json!({"name": "s", "url": format!("http://{upstream}")});
    assert_eq!(
        http(&admin, "POST", "/services", Some(&svc), &[])
            .unwrap()
            .status,
        201
    );
    let route = json!({"name": "r", "paths": ["/hello"]});
    assert_eq!(
        http(&admin, "POST", "/services/s/routes", Some(&route), &[])
            .unwrap()
            .status,
        201
    );

    // The schema refuses a bad config with Kong's error body, field by field.
    let bad = json!({"name": "x-greeting", "config": {"greeting": 7}});
    let r = http(&admin, "POST", "/routes/r/plugins", Some(&bad), &[]).unwrap();
    assert_eq!(r.status, 400, "{}", r.body);
    assert_eq!(r.body["fields"]["config"]["greeting"], "expected a string");

    let good = json!({"name": "x-greeting", "config": {"greeting": "hi there"}});
    let r = http(&admin, "POST", "/routes/r/plugins", Some(&good), &[]).unwrap();
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(
        r.body["config"],
        json!({"greeting": "hi there", "header_name": "X-Greeting"})
    );

    let greeted = wait_for("the proxy to run x-greeting", long, || {
        let (status, headers, _) = proxy_get(&proxy, "/hello", "example.test")?;
        let h = headers.iter().find(|(k, _)| k == "x-greeting")?;
        Some((status, h.1.clone()))
    });
    assert_eq!(greeted, (200, "hi there".to_string()));
}
