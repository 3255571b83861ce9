//! What the `Lossy` fault does to a TCP connection in turmoil 0.7, which the simulator's
//! docs rely on: a lost segment is never retransmitted, so the bytes after it on that
//! connection are held back for good (the connection is black-holed, not reset), while a
//! new connection over the same link works. If turmoil ever retransmits, this fails and
//! the fault's description must change.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use turmoil::net::{TcpListener, TcpStream};

const PORT: u16 = 9000;

async fn read_byte(s: &mut TcpStream) -> Option<u8> {
    let mut b = [0u8; 1];
    match tokio::time::timeout(Duration::from_secs(30), s.read_exact(&mut b)).await {
        Ok(Ok(_)) => Some(b[0]),
        _ => None,
    }
}

#[test]
fn a_lost_segment_black_holes_its_connection_and_a_new_one_works() {
    let mut sim = turmoil::Builder::new()
        .simulation_duration(Duration::from_secs(120))
        .build();
    sim.host("server", || async {
        let listener = TcpListener::bind(("0.0.0.0", PORT)).await?;
        // First connection: gets `a`, then nothing (`b` was lost, `c` waits behind it).
        let (mut first, _) = listener.accept().await?;
        assert_eq!(read_byte(&mut first).await, Some(b'a'));
        assert_eq!(
            read_byte(&mut first).await,
            None,
            "a segment after a loss arrived"
        );
        // Second connection, made after the loss: works.
        let (mut second, _) = listener.accept().await?;
        assert_eq!(read_byte(&mut second).await, Some(b'd'));
        second.write_all(b"k").await?;
        Ok(())
    });
    sim.client("client", async {
        let mut first = TcpStream::connect(("server", PORT)).await?;
        // Simulated instants: the link loses everything from 0.5 s to 1.5 s (below), so
        // `a` (at 0 s) and `c` (at 2 s) cross it and `b` (at 1 s) is lost.
        first.write_all(b"a").await?;
        tokio::time::sleep(Duration::from_secs(1)).await;
        first.write_all(b"b").await?;
        tokio::time::sleep(Duration::from_secs(1)).await;
        first.write_all(b"c").await?;
        // Accepted once the server gave up waiting on the first.
        let mut second = TcpStream::connect(("server", PORT)).await?;
        second.write_all(b"d").await?;
        let mut k = [0u8; 1];
        second.read_exact(&mut k).await?;
        assert_eq!(&k, b"k");
        Ok(())
    });
    // `a` crosses a healthy link; every message sent while the rate is 1 is lost.
    while sim.elapsed() < Duration::from_millis(500) {
        sim.step().unwrap();
    }
    sim.set_link_fail_rate("client", "server", 1.0);
    while sim.elapsed() < Duration::from_millis(1500) {
        sim.step().unwrap();
    }
    sim.set_link_fail_rate("client", "server", 0.0);
    sim.run().unwrap();
}
