//! The async client (feature `async`) against the same tiny servers as the blocking one.

#![cfg(feature = "async")]

mod common;

use std::io::Write as _;
use std::time::{Duration, Instant};

use cavra_runtime_client::{AsyncClient, Client, ClientError, Decision, EvaluateRequest, RefusalKind, Retry};
#[cfg(target_os = "linux")]
use common::FullQueue;
use common::{TestServer, answer, go_daemon, read_object};

fn request(target: &str) -> EvaluateRequest {
    EvaluateRequest {
        action_type: "read_file".into(),
        target: target.into(),
        ..Default::default()
    }
}

#[tokio::test]
async fn every_answer_gets_through_a_server_that_closes_as_soon_as_it_has_the_object() {
    let server = TestServer::start(go_daemon);
    let client = AsyncClient::new(&server.socket).with_retry(Retry::none());
    for index in 0..300 {
        let target = format!("src/{index}.rs");
        let answer = client
            .evaluate(&request(&target))
            .await
            .unwrap_or_else(|error| panic!("request {index}: {error}"));
        assert_eq!(answer.reason, target);
    }
    assert_eq!(server.connections(), 300);
}

#[tokio::test]
async fn an_answer_sent_before_the_request_was_read_is_kept() {
    let server = TestServer::start(|_, mut stream| {
        let mut start = [0u8; 1024];
        std::io::Read::read_exact(&mut stream, &mut start).unwrap();
        let _ = stream.write_all(answer("daemon.request.too_large", "block", "high").as_bytes());
    });
    let error = AsyncClient::new(&server.socket)
        .evaluate(&request(&"x".repeat(8 << 20)))
        .await
        .unwrap_err();
    assert_eq!(
        error.refusal().map(|refusal| refusal.kind()),
        Some(RefusalKind::RequestTooLarge),
        "{error}"
    );
}

#[cfg(target_os = "linux")]
#[tokio::test]
async fn the_deadline_holds_for_a_connect_that_waits_in_a_full_queue() {
    let full = FullQueue::new();
    let started = Instant::now();
    let error = AsyncClient::new(&full.socket)
        .with_timeout(Duration::from_millis(300))
        .evaluate(&request("a"))
        .await
        .unwrap_err();
    let took = started.elapsed();
    assert!(matches!(error, ClientError::ConnectTimedOut { .. }), "{error}");
    assert!(
        took >= Duration::from_millis(290) && took < Duration::from_secs(3),
        "{took:?}"
    );
    assert!(
        error
            .to_string()
            .contains("within 300ms: not answering: its queue of connections stayed full"),
        "{error}"
    );
}

#[tokio::test]
async fn the_deadline_holds_for_the_whole_exchange_not_each_read() {
    let server = TestServer::start(|_, mut stream| {
        read_object(&mut stream);
        for _ in 0..200 {
            if stream.write_all(b" ").is_err() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    });
    let started = Instant::now();
    let error = AsyncClient::new(&server.socket)
        .with_timeout(Duration::from_millis(400))
        .evaluate(&request("a"))
        .await
        .unwrap_err();
    let took = started.elapsed();
    assert!(matches!(error, ClientError::TimedOut { .. }), "{error}");
    assert!(
        took >= Duration::from_millis(390) && took < Duration::from_secs(3),
        "{took:?}"
    );
    assert_eq!(server.connections(), 1, "not retried");
}

#[tokio::test]
async fn overloaded_is_retried_until_a_decision_and_a_decision_is_not_retried() {
    let server = TestServer::start(|index, mut stream| {
        read_object(&mut stream);
        let line = if index < 2 {
            answer("daemon.overloaded", "block", "high")
        } else {
            answer("filesystem.read.block", "block", "high")
        };
        let _ = stream.write_all(line.as_bytes());
    });
    // Configured as a blocking client, then made async.
    let client: AsyncClient = Client::new(&server.socket)
        .with_retry(Retry::new(3, Duration::from_millis(10)))
        .into();
    let decision = client.evaluate(&request(".env")).await.unwrap();
    assert_eq!(decision.decision, Decision::Block);
    assert_eq!(server.connections(), 3);
    client.evaluate(&request(".env")).await.unwrap();
    assert_eq!(server.connections(), 4);
    let raw = AsyncClient::new(&server.socket)
        .with_retry(Retry::none())
        .evaluate_raw(&request("a"))
        .await
        .unwrap();
    assert_eq!(raw.rule_id, "filesystem.read.block");
}
