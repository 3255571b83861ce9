//! `status_listen` on a data plane: Kong's `/status` (with `configuration_hash`) and
//! `/status/ready`, for load balancers, orchestrators and operators.

use std::convert::Infallible;
use std::sync::Arc;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};
use tidegate_dp::sync::{Current, SyncStatus};
use tokio::sync::watch;
use tracing::debug;

/// Connections served at once; more wait in the backlog.
const MAX_CONNECTIONS: usize = 64;

fn reply(code: StatusCode, body: Value) -> Response<Full<Bytes>> {
    Response::builder()
        .status(code)
        .header("content-type", "application/json; charset=utf-8")
        .body(Full::new(Bytes::from(body.to_string())))
        .expect("a static response builds")
}

fn answer(path: &str, config: &Current, status: &SyncStatus) -> Response<Full<Bytes>> {
    let state = &config.state;
    match path {
        "/status" => reply(
            StatusCode::OK,
            json!({
                "configuration_hash": state.hash().to_string(),
                "config_version": state.version(),
                "entities": state.len(),
                "from_control_plane": config.from_cluster,
                "control_plane": {
                    "connected_to": status.connected_to,
                    "last_error": status.last_error,
                    "rejected": status.rejected.as_ref().map(|(s, r)| json!({"sync_status": s, "reason": r})),
                },
                "server": { "connections_accepted": null },
            }),
        ),
        // Kong: ready once a config is loaded; an empty one from nowhere is not one.
        "/status/ready" if config.from_cluster || !state.is_empty() => {
            reply(StatusCode::OK, json!({"message": "ready"}))
        }
        "/status/ready" => reply(
            StatusCode::SERVICE_UNAVAILABLE,
            json!({"message": "no configuration available (empty configuration present)"}),
        ),
        _ => reply(StatusCode::NOT_FOUND, json!({"message": "Not found"})),
    }
}

pub async fn serve(
    listener: tokio::net::TcpListener,
    config: watch::Receiver<Arc<Current>>,
    status: watch::Receiver<SyncStatus>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) {
    let permits = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            p = permits.clone().acquire_owned() => p.expect("the semaphore is never closed"),
            () = &mut shutdown => return,
        };
        let (tcp, _) = tokio::select! {
            a = listener.accept() => match a {
                Ok(a) => a,
                Err(e) => { debug!(error = %e, "status accept failed"); continue; }
            },
            () = &mut shutdown => return,
        };
        let (config, status) = (config.clone(), status.clone());
        tokio::spawn(async move {
            let _permit = permit;
            let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
                let resp = answer(req.uri().path(), &config.borrow(), &status.borrow());
                async move { Ok::<_, Infallible>(resp) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(tcp), svc)
                .await;
        });
    }
}
