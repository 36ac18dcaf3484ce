//! The metrics listener: a TCP socket on localhost that the service manager creates and passes in (so the daemon,
//! whose sandbox allows Unix sockets only, never creates an Internet socket), answering `GET /metrics` with the
//! metrics in the Prometheus text format. It speaks just enough HTTP/1.1 for a scraper: one request per
//! connection, then close. Bounded like the main socket: a few scrapes at once, a small request head, a deadline.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

use super::{Service, metrics};
use crate::metrics::encode::CONTENT_TYPE;

/// Scrapes served at once; more are closed unanswered (a scraper retries at its next interval).
const MAX_SCRAPES: usize = 4;
/// The largest request head read; scrapers send a few hundred bytes.
const MAX_HEAD_BYTES: usize = 8 * 1024;
/// From connecting to the answer written.
const DEADLINE: Duration = Duration::from_secs(10);

/// Answers scrapes on `listener` until the task is aborted.
pub async fn serve(listener: TcpListener, service: Arc<Service>) {
    let scrapes = Arc::new(Semaphore::new(MAX_SCRAPES));
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(error) => {
                tracing::warn!(%error, "metrics listener: accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let Ok(permit) = Arc::clone(&scrapes).try_acquire_owned() else {
            continue;
        };
        let service = Arc::clone(&service);
        tokio::spawn(async move {
            let _ = tokio::time::timeout(DEADLINE, scrape(stream, &service)).await;
            drop(permit);
        });
    }
}

async fn scrape(mut stream: TcpStream, service: &Arc<Service>) {
    let mut head = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    while !head.windows(4).any(|window| window == b"\r\n\r\n") {
        match stream.read(&mut chunk).await {
            Ok(0) | Err(_) => return,
            Ok(read) => head.extend_from_slice(&chunk[..read]),
        }
        if head.len() > MAX_HEAD_BYTES {
            return respond(
                &mut stream,
                "431 Request Header Fields Too Large",
                "text/plain",
                "request head too large\n",
                true,
            )
            .await;
        }
    }
    let line = head.split(|&byte| byte == b'\r').next().unwrap_or_default();
    let mut words = line.split(|&byte| byte == b' ');
    let (method, target) = (words.next().unwrap_or_default(), words.next().unwrap_or_default());
    let path = target.split(|&byte| byte == b'?').next().unwrap_or_default();
    match (method, path) {
        (b"GET" | b"HEAD", b"/metrics") => {
            let body = metrics::text(service);
            respond(&mut stream, "200 OK", CONTENT_TYPE, &body, method == b"GET").await;
        }
        (b"GET" | b"HEAD", _) => respond(&mut stream, "404 Not Found", "text/plain", "see /metrics\n", true).await,
        _ => {
            respond(
                &mut stream,
                "405 Method Not Allowed",
                "text/plain",
                "GET /metrics\n",
                true,
            )
            .await
        }
    }
}

async fn respond(stream: &mut TcpStream, status: &str, content_type: &str, body: &str, with_body: bool) {
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let mut answer = head.into_bytes();
    if with_body {
        answer.extend_from_slice(body.as_bytes());
    }
    if stream.write_all(&answer).await.is_ok() {
        let _ = stream.shutdown().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::{PolicyConfig, PolicySet, PolicySource};
    use crate::server::Limits;

    async fn ask(request: &[u8]) -> String {
        let policies = PolicySet::load(&PolicyConfig {
            source: PolicySource::BuiltIn,
            default_pack: None,
            registry: None,
        })
        .unwrap();
        let service = Arc::new(Service::new(policies, Limits::default()));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let server = tokio::spawn(serve(listener, service));
        let mut client = TcpStream::connect(address).await.unwrap();
        client.write_all(request).await.unwrap();
        let mut answer = String::new();
        client.read_to_string(&mut answer).await.unwrap();
        server.abort();
        answer
    }

    #[tokio::test]
    async fn a_scrape_gets_the_metrics_in_the_prometheus_text_format() {
        let answer = ask(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nAccept: */*\r\n\r\n").await;
        let (head, body) = answer.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
        assert!(
            head.contains("Content-Type: text/plain; version=0.0.4; charset=utf-8\r\n"),
            "{head}"
        );
        assert!(head.contains(&format!("Content-Length: {}\r\n", body.len())), "{head}");
        assert!(body.contains("# TYPE cavra_decisions_total counter\n"), "{body}");
    }

    #[tokio::test]
    async fn other_paths_and_methods_are_refused() {
        assert!(
            ask(b"GET / HTTP/1.1\r\n\r\n")
                .await
                .starts_with("HTTP/1.1 404 Not Found\r\n")
        );
        assert!(
            ask(b"POST /metrics HTTP/1.1\r\n\r\n")
                .await
                .starts_with("HTTP/1.1 405 Method Not Allowed\r\n")
        );
        let huge = format!("GET /metrics HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(MAX_HEAD_BYTES));
        assert!(ask(huge.as_bytes()).await.starts_with("HTTP/1.1 431 "));
    }
}
