//! The Raft network between CPs: tonic over mutual TLS on `raft_listen`, with the Raft
//! credentials (`raft_cert`, `raft_cert_key`, `raft_ca_cert`) and never the DP cluster
//! ones, so a DP's certificate cannot speak Raft.
//!
//! Each RPC is a `Frame` whose payload is the openraft message in postcard. A connection
//! failure is reported as `Unreachable` so that openraft backs off instead of redialling
//! a dead peer in a tight loop; remote Raft errors travel inside the reply payload.
//!
//! Followers also use this link to hand admin Commands to the leader (`Forward`).

use std::sync::Arc;
use std::time::Duration;

use openraft::error::{
    ForwardToLeader, InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError,
    Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::BasicNode;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tidegate_proto::raft::raft_client::RaftClient;
use tidegate_proto::raft::raft_server::{Raft as RaftRpc, RaftServer};
use tidegate_proto::raft::Frame;
use tidegate_state::Command;
use tonic::transport::{
    Certificate, Channel, ClientTlsConfig, Endpoint, Identity, Server, ServerTlsConfig,
};
use tonic::{Request, Status};

use crate::encode;
use crate::proposer::Proposer;
use crate::types::{NodeId, Response, TypeConfig};

/// The largest Raft message accepted: a batch of entries may hold a declarative import
/// of a large config.
pub const MAX_RAFT_MESSAGE: usize = 128 << 20;
/// How long a peer connection may take to establish.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// HTTP/2 keepalives, so a dead peer is noticed during a partition (pitfall 3).
pub const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(5);
pub const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(5);

/// PEM credentials for the Raft link.
#[derive(Clone)]
pub struct RaftTls {
    pub cert: String,
    pub key: String,
    pub ca: String,
}

#[derive(Debug, thiserror::Error)]
pub enum NetError {
    #[error("invalid Raft TLS settings: {0}")]
    Tls(String),
    #[error("invalid peer address '{addr}': {why}")]
    Address { addr: String, why: String },
    #[error("Raft listener failed: {0}")]
    Serve(String),
}

/// The reply to a forwarded Command: the leader's answer and the log index at which it
/// was applied (the follower waits for its own state machine to reach it).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum ForwardReply {
    Applied {
        response: Response,
        log_index: u64,
    },
    /// The node asked is not the leader; try this one.
    NotLeader {
        leader: Option<(NodeId, String)>,
    },
    /// The leader could not commit it (e.g. it lost its quorum meanwhile).
    Failed {
        reason: String,
    },
}

fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, String> {
    postcard::from_bytes(bytes).map_err(|e| format!("undecodable raft frame: {e}"))
}

// === server ===

struct Service {
    /// Also the way to this node's Raft (`proposer.raft()`).
    proposer: Proposer,
}

#[tonic::async_trait]
impl RaftRpc for Service {
    async fn append_entries(&self, req: Request<Frame>) -> Result<tonic::Response<Frame>, Status> {
        let rpc: AppendEntriesRequest<TypeConfig> =
            decode(&req.into_inner().payload).map_err(Status::invalid_argument)?;
        let res = self.proposer.raft().append_entries(rpc).await;
        Ok(tonic::Response::new(Frame {
            payload: encode(&res),
        }))
    }

    async fn vote(&self, req: Request<Frame>) -> Result<tonic::Response<Frame>, Status> {
        let rpc: VoteRequest<NodeId> =
            decode(&req.into_inner().payload).map_err(Status::invalid_argument)?;
        let res = self.proposer.raft().vote(rpc).await;
        Ok(tonic::Response::new(Frame {
            payload: encode(&res),
        }))
    }

    async fn install_snapshot(
        &self,
        req: Request<Frame>,
    ) -> Result<tonic::Response<Frame>, Status> {
        let rpc: InstallSnapshotRequest<TypeConfig> =
            decode(&req.into_inner().payload).map_err(Status::invalid_argument)?;
        let res = self.proposer.raft().install_snapshot(rpc).await;
        Ok(tonic::Response::new(Frame {
            payload: encode(&res),
        }))
    }

    async fn forward(&self, req: Request<Frame>) -> Result<tonic::Response<Frame>, Status> {
        let cmd: Command = decode(&req.into_inner().payload).map_err(Status::invalid_argument)?;
        let reply = match self.proposer.write(cmd).await {
            Ok(w) => ForwardReply::Applied {
                response: w.response,
                log_index: w.log_index,
            },
            Err(RaftError::APIError(openraft::error::ClientWriteError::ForwardToLeader(
                ForwardToLeader {
                    leader_id,
                    leader_node,
                    ..
                },
            ))) => ForwardReply::NotLeader {
                leader: leader_id.zip(leader_node.map(|n| n.addr)),
            },
            Err(e) => ForwardReply::Failed {
                reason: e.to_string(),
            },
        };
        Ok(tonic::Response::new(Frame {
            payload: encode(&reply),
        }))
    }
}

/// Serves Raft RPCs on `listener` until `shutdown` resolves; Commands forwarded by
/// followers join the leader's own writes in `proposer`.
pub async fn serve(
    listener: tokio::net::TcpListener,
    proposer: Proposer,
    tls: RaftTls,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), NetError> {
    use tokio_stream::StreamExt;
    // tonic sets no socket options on connections it is handed: without NODELAY a
    // reply waits for the peer's delayed ACK (~40 ms per forwarded write).
    let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener).map(|accepted| {
        if let Ok(tcp) = &accepted {
            let _ = tcp.set_nodelay(true);
        }
        accepted
    });
    serve_incoming(incoming, proposer, tls, shutdown).await
}

/// Serves Raft RPCs on any stream of connections: the seam through which the simulator
/// hands in its simulated TCP.
pub async fn serve_incoming<S, IO, E>(
    incoming: S,
    proposer: Proposer,
    tls: RaftTls,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), NetError>
where
    S: tokio_stream::Stream<Item = Result<IO, E>> + Send + 'static,
    IO: tokio::io::AsyncRead
        + tokio::io::AsyncWrite
        + tonic::transport::server::Connected
        + Unpin
        + Send
        + 'static,
    E: Into<Box<dyn std::error::Error + Send + Sync>> + Send + 'static,
{
    let tls_config = ServerTlsConfig::new()
        .identity(Identity::from_pem(&tls.cert, &tls.key))
        .client_ca_root(Certificate::from_pem(&tls.ca));
    let svc = RaftServer::new(Service { proposer })
        .max_decoding_message_size(MAX_RAFT_MESSAGE)
        .max_encoding_message_size(MAX_RAFT_MESSAGE);
    Server::builder()
        .tls_config(tls_config)
        .map_err(|e| NetError::Tls(e.to_string()))?
        .http2_keepalive_interval(Some(KEEPALIVE_INTERVAL))
        .http2_keepalive_timeout(Some(KEEPALIVE_TIMEOUT))
        .add_service(svc)
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await
        .map_err(|e| NetError::Serve(e.to_string()))
}

// === client ===

/// Turns a configured endpoint into a channel: real TCP by default, simulated TCP in the
/// simulator. Channels connect lazily, so creating one never fails because a peer is down.
pub type Connect = Arc<dyn Fn(Endpoint) -> Channel + Send + Sync>;

fn tcp_connect() -> Connect {
    Arc::new(|e: Endpoint| e.connect_lazy())
}

/// Builds the TLS endpoint for a peer.
pub fn endpoint(addr: &str, tls: &RaftTls) -> Result<Endpoint, NetError> {
    let host = addr
        .rsplit_once(':')
        .map(|(h, _)| h.trim_start_matches('[').trim_end_matches(']'))
        .ok_or_else(|| NetError::Address {
            addr: addr.to_string(),
            why: "expected host:port".into(),
        })?;
    let tls_config = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(&tls.ca))
        .identity(Identity::from_pem(&tls.cert, &tls.key))
        .domain_name(host.to_string());
    let endpoint = Endpoint::from_shared(format!("https://{addr}"))
        .map_err(|e| NetError::Address {
            addr: addr.to_string(),
            why: e.to_string(),
        })?
        .tls_config(tls_config)
        .map_err(|e| NetError::Tls(e.to_string()))?
        .connect_timeout(CONNECT_TIMEOUT)
        .http2_keep_alive_interval(KEEPALIVE_INTERVAL)
        .keep_alive_timeout(KEEPALIVE_TIMEOUT)
        .keep_alive_while_idle(true);
    Ok(endpoint)
}

fn client(channel: Channel) -> RaftClient<Channel> {
    RaftClient::new(channel)
        .max_decoding_message_size(MAX_RAFT_MESSAGE)
        .max_encoding_message_size(MAX_RAFT_MESSAGE)
}

/// Creates clients to peers. Cheap to clone. Without TLS settings (a single-node group)
/// there are no peers to reach, and every attempt reports the peer unreachable.
#[derive(Clone)]
pub struct Network {
    tls: Option<RaftTls>,
    connect: Connect,
}

const NO_TLS: &str =
    "no Raft TLS credentials are configured (raft_cert, raft_cert_key, raft_ca_cert)";

impl Network {
    pub fn new(tls: Option<RaftTls>) -> Self {
        Network {
            tls,
            connect: tcp_connect(),
        }
    }

    /// The same network over another transport (the simulator's).
    pub fn with_connect(tls: Option<RaftTls>, connect: Connect) -> Self {
        Network { tls, connect }
    }

    fn channel(&self, addr: &str) -> Result<Channel, String> {
        let tls = self.tls.as_ref().ok_or_else(|| NO_TLS.to_string())?;
        let endpoint = endpoint(addr, tls).map_err(|e| e.to_string())?;
        Ok((self.connect)(endpoint))
    }

    /// Hands a Command to the node at `addr` (the leader, as far as we know).
    pub async fn forward(
        &self,
        addr: &str,
        cmd: &Command,
        timeout: Duration,
    ) -> Result<ForwardReply, String> {
        let ch = self.channel(addr)?;
        let mut req = Request::new(Frame {
            payload: encode(cmd),
        });
        req.set_timeout(timeout);
        let reply = client(ch)
            .forward(req)
            .await
            .map_err(|s| format!("forwarding to {addr} failed: {}", s.message()))?;
        decode(&reply.into_inner().payload)
    }
}

pub struct PeerClient {
    target: NodeId,
    client: Result<RaftClient<Channel>, String>,
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = PeerClient;

    async fn new_client(&mut self, target: NodeId, node: &BasicNode) -> PeerClient {
        PeerClient {
            target,
            client: self.channel(&node.addr).map(client),
        }
    }
}

/// Maps a transport failure: connection problems make openraft back off.
fn transport_error<E: std::error::Error>(status: Status) -> RPCError<NodeId, BasicNode, E> {
    let err = std::io::Error::other(format!("{}: {}", status.code(), status.message()));
    match status.code() {
        tonic::Code::Unavailable | tonic::Code::Unknown | tonic::Code::Cancelled => {
            RPCError::Unreachable(Unreachable::new(&err))
        }
        _ => RPCError::Network(NetworkError::new(&err)),
    }
}

/// The reply of one tonic call, boxed so that one `call` serves every RPC.
type RpcFuture<'a> = std::pin::Pin<
    Box<dyn std::future::Future<Output = Result<tonic::Response<Frame>, Status>> + Send + 'a>,
>;

impl PeerClient {
    async fn call<Req, Resp, E>(
        &mut self,
        rpc: &Req,
        option: &RPCOption,
        which: for<'a> fn(&'a mut RaftClient<Channel>, Request<Frame>) -> RpcFuture<'a>,
    ) -> Result<Resp, RPCError<NodeId, BasicNode, RaftError<NodeId, E>>>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let client = match &mut self.client {
            Ok(c) => c,
            Err(e) => {
                let err = std::io::Error::other(e.clone());
                return Err(RPCError::Unreachable(Unreachable::new(&err)));
            }
        };
        let mut req = Request::new(Frame {
            payload: encode(rpc),
        });
        req.set_timeout(option.hard_ttl());
        let reply = which(client, req).await.map_err(transport_error)?;
        let res: Result<Resp, RaftError<NodeId, E>> = decode(&reply.into_inner().payload)
            .map_err(|e| RPCError::Network(NetworkError::new(&std::io::Error::other(e))))?;
        res.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }
}

impl RaftNetwork<TypeConfig> for PeerClient {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        self.call(&rpc, &option, |c, r| Box::pin(c.append_entries(r)))
            .await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<NodeId>,
        RPCError<NodeId, BasicNode, RaftError<NodeId, InstallSnapshotError>>,
    > {
        self.call(&rpc, &option, |c, r| Box::pin(c.install_snapshot(r)))
            .await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, BasicNode, RaftError<NodeId>>> {
        self.call(&rpc, &option, |c, r| Box::pin(c.vote(r))).await
    }
}
