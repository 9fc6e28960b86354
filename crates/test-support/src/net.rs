//! Loopback sockets: free ports, and raw HTTP/1.1 for requests that break off or that `curl`
//! would not send.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::Duration;

/// A port that was free a moment ago (someone may take it before the caller binds it, so
/// launchers retry with another port).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .expect("bind 127.0.0.1:0")
        .local_addr()
        .unwrap()
        .port()
}

/// Whether `GET /v2/` on the port answers 200.
pub fn answers_v2(port: u16) -> bool {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    if s.write_all(b"GET /v2/ HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    buf.starts_with(b"HTTP/1.1 200")
}

/// A connection on which a request head and part of its body were sent.
pub struct RawConn {
    /// The socket, for the test to write more or read the answer.
    pub stream: TcpStream,
}

impl RawConn {
    /// Sends `method path` with the given headers (Host and Content-Length are the caller's to
    /// give) and `body_part`, without finishing the body.
    pub fn send_partial(
        port: u16,
        method: &str,
        path: &str,
        headers: &[(&str, String)],
        body_part: &[u8],
    ) -> RawConn {
        let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        let mut head = format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n");
        for (k, v) in headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str("\r\n");
        s.write_all(head.as_bytes()).expect("send head");
        s.write_all(body_part).expect("send body part");
        s.flush().unwrap();
        RawConn { stream: s }
    }

    /// Half-closes the connection and reads whatever the server answers (it may answer
    /// nothing); returns the status if one came.
    pub fn close_and_read_status(mut self) -> Option<u16> {
        let _ = self.stream.shutdown(std::net::Shutdown::Write);
        let _ = self.stream.set_read_timeout(Some(Duration::from_secs(30)));
        let mut buf = Vec::new();
        let _ = self.stream.read_to_end(&mut buf);
        let s = String::from_utf8_lossy(&buf);
        s.strip_prefix("HTTP/1.1 ")?.get(..3)?.parse().ok()
    }
}

/// Sends a whole raw request on a new connection (the request should say `Connection: close`)
/// and returns the raw response ("" if the connection broke).
pub fn raw_request(port: u16, request: &[u8]) -> String {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return String::new();
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(120)));
    let _ = s.write_all(request);
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    String::from_utf8_lossy(&buf).into_owned()
}

/// Connects to the port with a small receive buffer (so that a response the test never reads
/// fills the server's side quickly instead of the kernel's buffers), sends `head` if any, and
/// returns the socket unread.
pub fn connect_small(port: u16, head: &[u8]) -> TcpStream {
    let mut s = try_connect_small(port).expect("connect");
    if !head.is_empty() {
        s.write_all(head).expect("send");
    }
    s
}

/// [`connect_small`] with nothing sent; `None` when connecting fails within 5 s.
pub fn try_connect_small(port: u16) -> Option<TcpStream> {
    let sock = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).ok()?;
    sock.set_recv_buffer_size(4096).ok()?;
    let addr: std::net::SocketAddr = ([127, 0, 0, 1], port).into();
    sock.connect_timeout(&addr.into(), Duration::from_secs(5))
        .ok()?;
    Some(sock.into())
}

/// Whether the server closed (or reset) the connection within `limit`: reads and discards
/// whatever arrives until the end of the stream.
pub fn closed_within(s: &mut TcpStream, limit: Duration) -> bool {
    let start = std::time::Instant::now();
    let mut buf = [0u8; 65536];
    while start.elapsed() < limit {
        let _ = s.set_read_timeout(Some(Duration::from_millis(200)));
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(_) => return true,
        }
    }
    false
}
