//! The connection handshake over real loopback TCP: a job's processes get in; a wrong
//! secret, another job, garbage, a truncated frame, another wire version or silence is
//! refused with a clear error, and the listener keeps accepting good peers.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use charmrs_comm::frame::{encode, FrameKind};
use charmrs_comm::handshake::{accept, connect, HandshakeError, Peer, Secret};

const JOB: u64 = 0x5eed_cafe;

/// A rogue peer that reads the acceptor's hello, sends `bytes`, stops writing and waits
/// for the acceptor to close: no unread data at close, so no reset races the bytes.
fn rogue(mut s: TcpStream, bytes: &[u8]) {
    let mut hello = [0u8; 56];
    let _ = s.read_exact(&mut hello);
    let _ = s.write_all(bytes);
    let _ = s.shutdown(std::net::Shutdown::Write);
    let mut rest = Vec::new();
    let _ = s.read_to_end(&mut rest);
}
const T: Duration = Duration::from_secs(5);

/// Runs `client` against one accepted connection; returns the acceptor's outcome.
fn against<F>(secret: &Secret, timeout: Duration, client: F) -> Result<Peer, HandshakeError>
where
    F: FnOnce(TcpStream) + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let c = thread::spawn(move || client(TcpStream::connect(addr).expect("connect")));
    let (mut s, _) = listener.accept().expect("accept");
    let r = accept(&mut s, secret, JOB, timeout);
    drop(s);
    c.join().expect("client thread");
    r
}

#[test]
fn peers_of_the_job_get_in() {
    let secret = Secret::random().expect("secret");
    let theirs = secret.clone();
    let r =
        against(&secret, T, move |mut s| connect(&mut s, &theirs, JOB, 3, T).expect("connector accepted"));
    assert_eq!(r.expect("acceptor accepted"), Peer { rank: 3 });
}

#[test]
fn a_wrong_secret_is_refused_and_never_sent() {
    let secret = Secret::random().expect("secret");
    let r = against(&secret, T, |mut s| {
        let wrong = Secret::random().expect("secret");
        assert!(connect(&mut s, &wrong, JOB, 1, T).is_err());
    });
    let e = r.expect_err("refused");
    assert!(matches!(e, HandshakeError::BadMac), "{e}");
    assert!(e.to_string().contains("authentication failed"));
}

#[test]
fn another_job_is_refused() {
    let secret = Secret::random().expect("secret");
    let theirs = secret.clone();
    let r = against(&secret, T, move |mut s| {
        let e = connect(&mut s, &theirs, JOB + 1, 1, T).expect_err("other job");
        assert!(e.to_string().contains("this is job"), "{e}");
    });
    assert!(r.is_err());
}

#[test]
fn garbage_is_refused() {
    let secret = Secret::random().expect("secret");
    let r = against(&secret, T, |s| rogue(s, b"GET / HTTP/1.1\r\nHost: charmrs\r\n\r\n"));
    let e = r.expect_err("refused");
    assert!(e.to_string().contains("bad magic"), "{e}");
}

#[test]
fn a_truncated_frame_is_refused() {
    let secret = Secret::random().expect("secret");
    let r = against(&secret, T, |s| {
        let mut out = Vec::new();
        encode(FrameKind::HANDSHAKE, 2, 1, &[7; 68], &mut out).expect("encode");
        rogue(s, &out[..40]);
    });
    let e = r.expect_err("refused");
    assert!(e.to_string().contains("truncated frame"), "{e}");
}

#[test]
fn another_wire_version_is_refused() {
    let secret = Secret::random().expect("secret");
    let r = against(&secret, T, |s| {
        let mut out = Vec::new();
        encode(FrameKind::HANDSHAKE, 2, 1, &[7; 68], &mut out).expect("encode");
        out[4] = 2; // version 2
        rogue(s, &out);
    });
    let e = r.expect_err("refused");
    assert!(e.to_string().contains("wire version 2"), "{e}");
}

#[test]
fn a_silent_peer_times_out() {
    let secret = Secret::random().expect("secret");
    let t0 = Instant::now();
    let r = against(&secret, Duration::from_millis(200), |s| {
        thread::sleep(Duration::from_millis(600));
        drop(s);
    });
    assert!(matches!(r, Err(HandshakeError::Timeout(_))), "{r:?}");
    assert!(t0.elapsed() < Duration::from_secs(3));
}

#[test]
fn the_listener_keeps_accepting_after_rogues() {
    let secret = Secret::random().expect("secret");
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let theirs = secret.clone();
    let clients = thread::spawn(move || {
        rogue(TcpStream::connect(addr).expect("connect"), b"\0\0\0\0garbage and more garbage");
        let mut good = TcpStream::connect(addr).expect("connect");
        connect(&mut good, &theirs, JOB, 2, T).expect("good peer accepted");
    });
    let mut outcomes = Vec::new();
    for _ in 0..2 {
        let (mut s, _) = listener.accept().expect("accept");
        outcomes.push(accept(&mut s, &secret, JOB, T).map_err(|e| e.to_string()));
    }
    clients.join().expect("clients");
    assert!(outcomes[0].is_err(), "{outcomes:?}");
    assert_eq!(outcomes[1], Ok(Peer { rank: 2 }));
}

#[test]
fn secrets_round_trip_as_hex() {
    let s = Secret::random().expect("secret");
    let h = s.to_hex();
    assert_eq!(h.len(), 64);
    assert_eq!(Secret::from_hex(&h).expect("parses").to_hex(), h);
    assert!(Secret::from_hex("zz").is_err());
    assert!(Secret::from_hex(&"g".repeat(64)).is_err());
    assert_eq!(format!("{s:?}"), "Secret(..)", "never printed");
}
