//! tonic over turmoil's simulated TCP: a listener stream for `serve_with_incoming`, and
//! connectors for the Raft link and the DP sync client.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::server::{Connected, TcpConnectInfo};
use tonic::transport::{Channel, Endpoint, Uri};

/// A simulated TCP connection that tonic's server accepts.
pub struct SimStream(pub turmoil::net::TcpStream);

impl Connected for SimStream {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        TcpConnectInfo {
            local_addr: self.0.local_addr().ok(),
            remote_addr: self.0.peer_addr().ok(),
        }
    }
}

impl AsyncRead for SimStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for SimStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

/// Accepts connections on `port` of the current host, as a stream for tonic.
pub async fn incoming(port: u16) -> io::Result<ReceiverStream<io::Result<SimStream>>> {
    let listener = turmoil::net::TcpListener::bind(("0.0.0.0", port)).await?;
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    tokio::spawn(async move {
        loop {
            let accepted = listener.accept().await.map(|(s, _)| SimStream(s));
            if tx.send(accepted).await.is_err() {
                return;
            }
        }
    });
    Ok(ReceiverStream::new(rx))
}

async fn dial(uri: Uri) -> io::Result<TokioIo<turmoil::net::TcpStream>> {
    let host = uri
        .host()
        .ok_or_else(|| io::Error::other("no host in uri"))?
        .to_string();
    let port = uri
        .port_u16()
        .ok_or_else(|| io::Error::other("no port in uri"))?;
    let stream = turmoil::net::TcpStream::connect((host.as_str(), port)).await?;
    Ok(TokioIo::new(stream))
}

/// The Raft link's connector: the real TLS endpoint, dialled over simulated TCP.
pub fn raft_connect() -> tidegate_raft::network::Connect {
    Arc::new(|endpoint: Endpoint| {
        endpoint.connect_with_connector_lazy(tower::service_fn(|uri: Uri| dial(uri)))
    })
}

/// HTTP/2 keepalives on the DP's channel, as production sets them.
pub const DP_KEEPALIVE: Duration = Duration::from_secs(5);

/// The DP sync client's connector (plaintext: TLS is exercised on the Raft link).
pub fn dp_connect() -> tidegate_dp::Connect {
    Arc::new(|address: String| {
        Box::pin(async move {
            let endpoint = Endpoint::from_shared(format!("http://{address}"))
                .map_err(|e| format!("invalid address {address:?}: {e}"))?
                .connect_timeout(Duration::from_secs(2))
                .http2_keep_alive_interval(DP_KEEPALIVE)
                .keep_alive_timeout(DP_KEEPALIVE)
                .keep_alive_while_idle(true);
            let channel: Channel = endpoint
                .connect_with_connector(tower::service_fn(|uri: Uri| dial(uri)))
                .await
                .map_err(|e| format!("{address}: {e}"))?;
            Ok(channel)
        })
    })
}
