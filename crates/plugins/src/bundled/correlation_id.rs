//! correlation-id: makes sure every request carries an id in `header_name` (keeping one
//! the client sent), and echoes it on the response when asked.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use http::{HeaderName, HeaderValue};
use tidegate_model::plugins::correlation_id::CorrelationIdConfig;
use uuid::Uuid;

use crate::context::{Ctx, Req};
use crate::phase::{Access, Plugin};
use crate::runtime::Runtime;

#[derive(Clone, Copy)]
enum Generator {
    Uuid,
    UuidCounter,
    Tracker,
}

pub struct CorrelationId {
    header: HeaderName,
    generator: Generator,
    echo: bool,
    ids: Arc<Ids>,
}

/// Shared by every instance and config version, like Kong's per-worker uuid and counter.
pub struct Ids {
    node: Uuid,
    counter: AtomicU64,
}

impl Default for Ids {
    fn default() -> Self {
        Ids {
            node: Uuid::new_v4(),
            counter: AtomicU64::new(0),
        }
    }
}

/// The id this request carries, for the response phase.
#[derive(Clone)]
struct Assigned(HeaderValue);

pub fn build(c: &CorrelationIdConfig, rt: &Runtime) -> Result<Arc<dyn Plugin>, String> {
    let header = HeaderName::from_bytes(c.header_name.as_bytes())
        .map_err(|_| format!("header_name '{}' is not a valid header name", c.header_name))?;
    let generator = match c.generator.as_str() {
        "uuid" => Generator::Uuid,
        "uuid#counter" => Generator::UuidCounter,
        "tracker" => Generator::Tracker,
        other => return Err(format!("unknown generator '{other}'")),
    };
    Ok(Arc::new(CorrelationId {
        header,
        generator,
        echo: c.echo_downstream,
        ids: rt.shared::<Ids>(),
    }))
}

impl CorrelationId {
    fn generate(&self, cx: &Ctx<'_>) -> String {
        match self.generator {
            Generator::Uuid => Uuid::new_v4().to_string(),
            Generator::UuidCounter => {
                let n = self.ids.counter.fetch_add(1, Ordering::Relaxed) + 1;
                format!("{}#{n}", self.ids.node)
            }
            // Kong's tracker joins server address, port, pid, connection and request
            // counters and a timestamp; ours keeps the parts a proxy in Rust has.
            Generator::Tracker => {
                let n = self.ids.counter.fetch_add(1, Ordering::Relaxed) + 1;
                format!("{}-{}-{n}-{:.3}", cx.client_ip, std::process::id(), cx.now)
            }
        }
    }
}

impl Plugin for CorrelationId {
    fn access<'a>(&'a self, cx: &'a mut Ctx<'_>, req: &'a mut Req) -> Access<'a> {
        let value = match req.headers.get(&self.header) {
            Some(v) if !v.is_empty() => v.clone(),
            _ => {
                let id = self.generate(cx);
                let Ok(v) = HeaderValue::from_str(&id) else {
                    return Access::CONTINUE;
                };
                req.headers.insert(self.header.clone(), v.clone());
                v
            }
        };
        if self.echo {
            cx.extensions.insert(Assigned(value));
        }
        Access::CONTINUE
    }

    fn response_headers(&self, cx: &mut Ctx<'_>, resp: &mut http::response::Parts) {
        if let Some(Assigned(v)) = cx.extensions.get::<Assigned>() {
            resp.headers.insert(self.header.clone(), v.clone());
        }
    }
}
