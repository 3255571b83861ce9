//! One stream to one CP: handshake, then messages, applies and heartbeats until it ends.

use std::pin::Pin;
use std::task::Poll;

use tidegate_proto::cluster as pb;
use tidegate_proto::cluster::cluster_client::ClusterClient;
use tidegate_proto::cluster::{cp_message, dp_message};
use tokio::sync::mpsc::{self, error::TrySendError};
use tokio::time::{interval_at, timeout, Instant, MissedTickBehavior};
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::Stream;
use tonic::Streaming;

use super::apply::{Problem, Refusal};
use super::{error_chain, Current, DpSync, HelloInfo};

/// Messages to the CP not yet taken by the transport. Heartbeats are seconds apart and a
/// burst sends one Status, so a full queue means the CP stopped reading.
const OUTBOUND_QUEUE: usize = 16;
/// Messages applied before a commit at most, so that a CP streaming without pause still
/// sees its changes served and reported.
const MAX_BURST: usize = 64;
/// A zero heartbeat period would make `interval` panic.
const MIN_HEARTBEAT: std::time::Duration = std::time::Duration::from_millis(1);

/// How a connection attempt ended.
#[derive(Debug)]
pub(super) enum End {
    Rejected {
        sync_status: String,
        reason: String,
    },
    /// `healthy`: the stream was accepted and lasted, so the backoff starts over.
    Failed {
        error: String,
        healthy: bool,
    },
}

fn failed(error: impl Into<String>) -> End {
    End::Failed {
        error: error.into(),
        healthy: false,
    }
}

/// One open stream.
struct Link {
    tx: mpsc::Sender<pb::DpMessage>,
    inbound: Streaming<pb::CpMessage>,
    /// A SnapshotRequest is outstanding: further unusable messages do not repeat it.
    awaiting_snapshot: bool,
}

// === impl DpSync: the stream ===

impl DpSync {
    /// Connects to `address` and syncs until the stream ends.
    pub(super) async fn attempt(&mut self, address: &str) -> End {
        let limit = self.settings.handshake_timeout;
        let mut link = match timeout(limit, self.open(address)).await {
            Ok(Ok(link)) => link,
            Ok(Err(end)) => return end,
            Err(_) => return failed(format!("no answer within {limit:?}")),
        };
        self.status.send_modify(|s| {
            s.connected_to = Some(address.to_string());
            s.rejected = None;
        });
        let accepted_at = Instant::now();
        match self.serve(&mut link).await {
            End::Failed { error, .. } => End::Failed {
                error,
                healthy: accepted_at.elapsed() >= self.settings.backoff_cap,
            },
            rejected => rejected,
        }
    }

    /// Connects, opens the stream, sends the Hello and waits for the Ack.
    async fn open(&self, address: &str) -> Result<Link, End> {
        let channel = (self.connect)(address.to_string()).await.map_err(failed)?;
        let max = self.settings.max_payload;
        let mut client = ClusterClient::new(channel)
            .max_decoding_message_size(max)
            .max_encoding_message_size(max);
        let (tx, rx) = mpsc::channel(OUTBOUND_QUEUE);
        let hello = hello(&self.settings.hello, self.applier.current());
        send(&tx, dp_message::Msg::Hello(hello))?;
        let inbound = client
            .sync(ReceiverStream::new(rx))
            .await
            .map_err(|status| failed(describe(&status)))?
            .into_inner();
        let mut link = Link {
            tx,
            inbound,
            awaiting_snapshot: false,
        };
        let ack = link.handshake().await?;
        tracing::info!(
            address,
            cp_id = %ack.cp_id,
            cp_version = %ack.cp_version,
            "connected to control plane"
        );
        Ok(link)
    }

    async fn serve(&mut self, link: &mut Link) -> End {
        if self.applier.current().from_cluster {
            if let Err(end) = link.send(dp_message::Msg::Status(self.applier.status())) {
                return end;
            }
        }
        let period = self.settings.heartbeat.max(MIN_HEARTBEAT);
        let mut heartbeat = interval_at(Instant::now() + period, period);
        heartbeat.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            // Heartbeats first: they are rare, and a CP streaming without pause must not
            // starve them.
            let step = tokio::select! {
                biased;
                _ = heartbeat.tick() => self.on_heartbeat(link).await,
                received = link.inbound.message() => self.on_burst(link, received).await,
            };
            match step {
                // A Status just went out: the next heartbeat is a period away.
                Ok(true) => heartbeat.reset(),
                Ok(false) => {}
                Err(end) => return end,
            }
        }
    }

    /// Applies `first` and whatever is already waiting behind it, then commits once, so
    /// a burst is persisted once. Returns whether a Status was sent.
    async fn on_burst(
        &mut self,
        link: &mut Link,
        first: Result<Option<pb::CpMessage>, tonic::Status>,
    ) -> Result<bool, End> {
        let mut received = Some(first);
        let mut outcome = Ok(());
        let mut handled = 0;
        while let Some(r) = received.take() {
            outcome = match r {
                Ok(Some(msg)) => self.on_message(link, msg),
                Ok(None) => Err(failed("the control plane closed the stream")),
                Err(status) => Err(failed(describe(&status))),
            };
            handled += 1;
            if outcome.is_err() || handled == MAX_BURST {
                break;
            }
            received = ready_now(&mut link.inbound).await;
        }
        // What applied before the stream ended is whole and verified: keep it.
        let reported = self.commit(link).await;
        outcome?;
        reported
    }

    fn on_message(&mut self, link: &mut Link, msg: pb::CpMessage) -> Result<(), End> {
        use cp_message::Msg;
        let refused = match msg.msg {
            Some(Msg::Snapshot(snapshot)) => match self.applier.snapshot(snapshot) {
                Ok(()) => {
                    link.awaiting_snapshot = false;
                    None
                }
                Err(Problem::Refused(r)) => Some(r),
                Err(Problem::NotUnderstood(e)) => return Err(failed(e)),
            },
            Some(Msg::Events(events)) => self.applier.events(events).err(),
            Some(Msg::Rejected(r)) => {
                return Err(End::Rejected {
                    sync_status: r.sync_status,
                    reason: r.reason,
                })
            }
            Some(Msg::Ack(_)) => {
                tracing::debug!("ignoring a repeated Ack");
                None
            }
            None => {
                tracing::debug!("ignoring a message this data plane does not understand");
                None
            }
        };
        match refused {
            Some(r) => link.ask_for_snapshot(r),
            None => Ok(()),
        }
    }

    /// Persists and publishes what the burst applied, then reports it.
    async fn commit(&mut self, link: &Link) -> Result<bool, End> {
        let Some((status, stored)) = self.applier.commit().await else {
            return Ok(false);
        };
        if let Err(e) = stored {
            self.cache_failed(e);
        }
        tracing::debug!(
            version = status.version,
            hash = %status.hash,
            "applied configuration from the control plane"
        );
        self.status
            .send_modify(|s| s.applied_version = Some(status.version));
        link.send(dp_message::Msg::Status(status))?;
        Ok(true)
    }

    async fn on_heartbeat(&mut self, link: &mut Link) -> Result<bool, End> {
        if let Some(Err(e)) = self.applier.retry_store().await {
            self.cache_failed(e);
        }
        // Lets a SnapshotRequest the CP did not act on be repeated, once a period.
        link.awaiting_snapshot = false;
        link.send(dp_message::Msg::Status(self.applier.status()))?;
        Ok(false)
    }

    fn cache_failed(&self, error: String) {
        tracing::error!(
            error,
            "cannot store the config cache: serving the new config, but a restart would start from an older one"
        );
        self.status
            .send_modify(|s| s.last_error = Some(format!("config cache: {error}")));
    }
}

// === impl Link ===

impl Link {
    /// The CP's answer to the Hello.
    async fn handshake(&mut self) -> Result<pb::Ack, End> {
        use cp_message::Msg;
        loop {
            let msg = self
                .inbound
                .message()
                .await
                .map_err(|status| failed(describe(&status)))?
                .ok_or_else(|| failed("the control plane closed the stream before answering"))?;
            match msg.msg {
                Some(Msg::Ack(ack)) => return Ok(ack),
                Some(Msg::Rejected(r)) => {
                    return Err(End::Rejected {
                        sync_status: r.sync_status,
                        reason: r.reason,
                    })
                }
                // Not understood: ignore it, as the contract says.
                None => continue,
                Some(other) => {
                    return Err(failed(format!(
                        "protocol error: expected Ack or Rejected first, got {}",
                        kind(&other)
                    )))
                }
            }
        }
    }

    fn send(&self, msg: dp_message::Msg) -> Result<(), End> {
        send(&self.tx, msg)
    }

    fn ask_for_snapshot(&mut self, r: Refusal) -> Result<(), End> {
        if self.awaiting_snapshot {
            tracing::debug!(reason = r.reason.as_str_name(), detail = %r.detail, "still waiting for a snapshot");
            return Ok(());
        }
        tracing::warn!(
            reason = r.reason.as_str_name(),
            detail = %r.detail,
            "cannot apply the configuration from the control plane; keeping the current one and asking for a snapshot"
        );
        self.awaiting_snapshot = true;
        self.send(dp_message::Msg::SnapshotRequest(pb::SnapshotRequest {
            reason: r.reason as i32,
            detail: r.detail,
        }))
    }
}

fn send(tx: &mpsc::Sender<pb::DpMessage>, msg: dp_message::Msg) -> Result<(), End> {
    tx.try_send(pb::DpMessage { msg: Some(msg) })
        .map_err(|e| match e {
            TrySendError::Full(_) => {
                failed("the control plane stopped reading (outbound queue full)")
            }
            TrySendError::Closed(_) => failed("the stream to the control plane closed"),
        })
}

/// The next message if it is already here, without waiting.
async fn ready_now(
    inbound: &mut Streaming<pb::CpMessage>,
) -> Option<Result<Option<pb::CpMessage>, tonic::Status>> {
    std::future::poll_fn(|cx| {
        Poll::Ready(match Pin::new(&mut *inbound).poll_next(cx) {
            Poll::Ready(Some(r)) => Some(r.map(Some)),
            Poll::Ready(None) => Some(Ok(None)),
            Poll::Pending => None,
        })
    })
    .await
}

/// The Hello for a DP serving `current`: it announces its version and hash only when
/// they are the cluster's, so that otherwise the CP sends a snapshot.
fn hello(info: &HelloInfo, current: &Current) -> pb::Hello {
    let (last_version, last_hash) = if current.from_cluster {
        (
            Some(current.state.version()),
            Some(current.state.hash().to_string()),
        )
    } else {
        (None, None)
    };
    pb::Hello {
        node_id: info.node_id.to_string(),
        hostname: info.hostname.clone(),
        version: info.version.clone(),
        plugins: info
            .plugins
            .iter()
            .map(|(name, version)| pb::Plugin {
                name: name.clone(),
                version: version.clone(),
            })
            .collect(),
        labels: info.labels.clone(),
        last_version,
        last_hash,
        entity_schema: tidegate_state::ENTITY_SCHEMA.into(),
        snapshot_format: tidegate_state::SNAPSHOT_FORMAT.into(),
    }
}

fn kind(msg: &cp_message::Msg) -> &'static str {
    match msg {
        cp_message::Msg::Snapshot(_) => "Snapshot",
        cp_message::Msg::Events(_) => "Events",
        cp_message::Msg::Rejected(_) => "Rejected",
        cp_message::Msg::Ack(_) => "Ack",
    }
}

/// The code, message and causes of a Status, without its metadata.
fn describe(status: &tonic::Status) -> String {
    let mut out = format!("{:?}: {}", status.code(), status.message());
    if let Some(source) = std::error::Error::source(status) {
        out.push_str(": ");
        out.push_str(&error_chain(source));
    }
    out
}
