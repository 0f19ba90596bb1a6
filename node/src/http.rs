//! The one small HTTP/1.1 server behind `GET /metrics` and `ants map`'s page: one request
//! per connection, bounded so that no client can make it hold anything for long.
//!
//! At most [`MAX_CONNECTIONS`] connections at once (the next waits in the kernel's backlog);
//! a request is read for at most [`REQUEST_TIMEOUT`] and [`MAX_REQUEST`] bytes (408 when
//! time runs out), the answer written within [`WRITE_TIMEOUT`]; anything but the routes'
//! answers is 400 or 404, decided by the route function.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tracing::{debug, warn};

/// Bytes of a request read at most (the request line and headers; bodies are not read).
pub const MAX_REQUEST: usize = 8 << 10;
/// How long a client has to send its request.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);
/// How long writing the answer may take.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// Connections served at once.
pub const MAX_CONNECTIONS: usize = 8;

/// The first line of a request: method and target (`None` when missing).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// `GET`, …
    pub method: Option<String>,
    /// The path, without a query string.
    pub path: Option<String>,
}

/// An answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// Status line, e.g. `200 OK`.
    pub status: &'static str,
    /// `Content-Type`.
    pub content_type: &'static str,
    /// The body.
    pub body: String,
    /// A `Content-Security-Policy` header, for pages.
    pub csp: Option<&'static str>,
}

impl Response {
    /// `200 OK` with `body`.
    pub fn ok(content_type: &'static str, body: String) -> Response {
        Response {
            status: "200 OK",
            content_type,
            body,
            csp: None,
        }
    }

    /// A plain-text error (`404 Not Found`, …).
    pub fn error(status: &'static str, why: &str) -> Response {
        Response::ok("text/plain", format!("{why}\n")).with_status(status)
    }

    fn with_status(self, status: &'static str) -> Response {
        Response { status, ..self }
    }
}

/// Answer requests on `listener` with `route` until the task is dropped; `what` names the
/// server in logs.
pub async fn serve<F, Fut>(listener: TcpListener, what: &'static str, route: F)
where
    F: Fn(Request) -> Fut + Clone + Send + 'static,
    Fut: Future<Output = Response> + Send,
{
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    loop {
        let Ok(permit) = slots.clone().acquire_owned().await else {
            return;
        };
        let (conn, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                warn!("{what}: accept: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let route = route.clone();
        tokio::spawn(async move {
            if let Err(e) = answer(conn, route).await {
                debug!(%peer, "{what}: {e}");
            }
            drop(permit);
        });
    }
}

/// Read one request (bounded in bytes and time) and answer it.
async fn answer<F, Fut>(mut conn: TcpStream, route: F) -> std::io::Result<()>
where
    F: Fn(Request) -> Fut,
    Fut: Future<Output = Response>,
{
    let mut buf = vec![0u8; MAX_REQUEST];
    let mut len = 0;
    let read = async {
        while len < buf.len() {
            let n = conn.read(&mut buf[len..]).await?;
            if n == 0 {
                break;
            }
            // Look for the end of the head only in what is new (and the 3 bytes before it),
            // so a client sending a byte at a time costs a bounded scan per read.
            let from = len.saturating_sub(3);
            len += n;
            if buf[from..len].windows(4).any(|w| w == b"\r\n\r\n") {
                break;
            }
        }
        std::io::Result::Ok(())
    };
    let timed_out = tokio::time::timeout(REQUEST_TIMEOUT, read).await.is_err();
    let r = if timed_out {
        Response::error("408 Request Timeout", "request timed out")
    } else {
        route(parse_request(&buf[..len])).await
    };
    let csp = r
        .csp
        .map_or_else(String::new, |c| format!("Content-Security-Policy: {c}\r\n"));
    let head = format!(
        "HTTP/1.1 {}\r\nContent-Type: {}\r\nContent-Length: {}\r\nCache-Control: no-store\r\n\
         X-Content-Type-Options: nosniff\r\n{csp}Connection: close\r\n\r\n",
        r.status,
        r.content_type,
        r.body.len()
    );
    let write = async {
        conn.write_all(head.as_bytes()).await?;
        conn.write_all(r.body.as_bytes()).await?;
        conn.shutdown().await
    };
    tokio::time::timeout(WRITE_TIMEOUT, write)
        .await
        .unwrap_or_else(|_| Err(std::io::ErrorKind::TimedOut.into()))
}

/// The method and path of a request's first line.
pub fn parse_request(bytes: &[u8]) -> Request {
    let text = std::str::from_utf8(bytes).unwrap_or("");
    let mut words = text.lines().next().unwrap_or("").split_whitespace();
    let method = words.next().map(str::to_owned);
    let path = words
        .next()
        .map(|t| t.split('?').next().unwrap_or(t).to_owned());
    Request { method, path }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_lines_are_split_and_queries_dropped() {
        let r = parse_request(b"GET /map.svg?x=1 HTTP/1.1\r\nHost: a\r\n\r\n");
        assert_eq!(r.method.as_deref(), Some("GET"));
        assert_eq!(r.path.as_deref(), Some("/map.svg"));
        assert_eq!(
            parse_request(b"\xff\xfe"),
            Request {
                method: None,
                path: None
            }
        );
    }

    #[tokio::test]
    async fn a_silent_client_gets_408_and_a_slot_back() {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let at = l.local_addr().unwrap();
        let server = tokio::spawn(serve(l, "test", |_r: Request| async {
            Response::ok("text/plain", "hi".into())
        }));
        let mut silent = TcpStream::connect(at).await.unwrap();
        let mut got = String::new();
        silent.read_to_string(&mut got).await.unwrap();
        assert!(got.starts_with("HTTP/1.1 408"), "{got}");
        let mut c = TcpStream::connect(at).await.unwrap();
        c.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
        let mut got = String::new();
        c.read_to_string(&mut got).await.unwrap();
        assert!(
            got.starts_with("HTTP/1.1 200 OK") && got.ends_with("hi"),
            "{got}"
        );
        server.abort();
    }
}
