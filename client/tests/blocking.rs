//! The blocking client against tiny servers on real Unix sockets: the Go daemon's way of closing, answers that
//! arrive before the request is written, one deadline for connect and for the whole exchange, retries only where
//! they cannot decide a request twice, refusals told from decisions, and values from a newer daemon.

mod common;

use std::io::{Read as _, Write as _};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use cavra_runtime_client::{Client, ClientError, Decision, EvaluateRequest, RefusalKind, Retry, Severity};
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

fn client(server: &TestServer) -> Client {
    Client::new(&server.socket).with_timeout(Duration::from_secs(10))
}

/// Reads the request (all of it, to its newline) and answers `line`.
fn answering(line: String) -> impl Fn(usize, UnixStream) + Send + Sync + 'static {
    move |_, mut stream| {
        read_object(&mut stream);
        let _ = stream.write_all(line.as_bytes());
    }
}

#[test]
fn every_answer_gets_through_a_server_that_closes_as_soon_as_it_has_the_object() {
    let server = TestServer::start(go_daemon);
    let client = client(&server).with_retry(Retry::none());
    for index in 0..300 {
        let target = format!("src/{index}.rs");
        let answer = client
            .evaluate(&request(&target))
            .unwrap_or_else(|error| panic!("request {index}: {error}"));
        assert_eq!(answer.reason, target, "request {index}");
        assert_eq!(answer.decision, Decision::Allow);
    }
    assert_eq!(server.connections(), 300);
}

#[test]
fn an_answer_sent_before_the_request_was_read_is_kept() {
    // As a daemon refusing a request that is too large: it reads a little, answers and closes, so the rest of
    // the request cannot be written.
    let server = TestServer::start(|_, mut stream| {
        let mut start = [0u8; 1024];
        stream.read_exact(&mut start).unwrap();
        let _ = stream.write_all(answer("daemon.request.too_large", "block", "high").as_bytes());
    });
    let huge = request(&"x".repeat(8 << 20));
    let error = client(&server).evaluate(&huge).unwrap_err();
    let refusal = error.refusal().unwrap_or_else(|| panic!("{error}"));
    assert_eq!(refusal.kind(), RefusalKind::RequestTooLarge);
    assert_eq!(
        error.to_string(),
        format!(
            "cavra-runtime at {} refused the request (daemon.request.too_large: the request is too large): answered \
             daemon.request.too_large",
            server.socket.display()
        )
    );
    assert_eq!(server.connections(), 1, "a refusal not worth retrying is not retried");
}

#[cfg(target_os = "linux")]
#[test]
fn the_deadline_holds_for_a_connect_that_waits_in_a_full_queue() {
    let full = FullQueue::new();
    let started = Instant::now();
    let error = Client::new(&full.socket)
        .with_timeout(Duration::from_millis(300))
        .evaluate(&request("a"))
        .unwrap_err();
    let took = started.elapsed();
    assert!(matches!(error, ClientError::ConnectTimedOut { .. }), "{error}");
    assert!(
        took >= Duration::from_millis(300) && took < Duration::from_secs(3),
        "{took:?}"
    );
    assert_eq!(
        error.to_string(),
        format!(
            "cannot connect to cavra-runtime at {} within 300ms: not answering: its queue of connections stayed full \
             (it is overloaded, or not accepting); nothing was sent",
            full.socket.display()
        )
    );
}

#[test]
fn the_deadline_holds_for_the_whole_exchange_not_each_read() {
    // A byte every 50 ms, never a newline: each read is quick, the answer never complete.
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
    let error = Client::new(&server.socket)
        .with_timeout(Duration::from_millis(400))
        .evaluate(&request("a"))
        .unwrap_err();
    let took = started.elapsed();
    assert!(matches!(error, ClientError::TimedOut { .. }), "{error}");
    assert!(
        took >= Duration::from_millis(400) && took < Duration::from_secs(3),
        "{took:?}"
    );
    assert!(
        error.to_string().starts_with(&format!(
            "no answer from cavra-runtime at {} within 400ms: it is not answering",
            server.socket.display()
        )),
        "{error}"
    );
    assert_eq!(
        server.connections(),
        1,
        "the request may have been decided: not retried"
    );
}

#[test]
fn overloaded_is_retried_until_a_decision_and_a_decision_is_not_retried() {
    let server = TestServer::start(|index, mut stream| {
        read_object(&mut stream);
        let line = if index < 2 {
            answer("daemon.overloaded", "block", "high")
        } else {
            answer("filesystem.read.block", "block", "high")
        };
        let _ = stream.write_all(line.as_bytes());
    });
    let retrying = client(&server).with_retry(Retry::new(3, Duration::from_millis(10)));
    let decision = retrying.evaluate(&request(".env")).unwrap();
    assert_eq!(decision.rule_id, "filesystem.read.block");
    assert_eq!(decision.decision, Decision::Block);
    assert_eq!(server.connections(), 3, "two refusals, then the decision");
    // A block is the policy's answer: asked once.
    retrying.evaluate(&request(".env")).unwrap();
    assert_eq!(server.connections(), 4);
}

#[test]
fn no_decision_of_the_policy_is_retried_whatever_its_value() {
    for (rule_id, decision) in [
        ("filesystem.read.allow", "allow"),
        ("filesystem.write.require_approval", "require_approval"),
        ("filesystem.read.block", "block"),
        ("future.rule", "defer"),
        // Not a daemon refusal: only `daemon.` rule ids and `runner_auth.invalid` are.
        ("daemonx.overloaded", "block"),
    ] {
        let server = TestServer::start(answering(answer(rule_id, decision, "high")));
        let answer = client(&server)
            .with_retry(Retry::new(5, Duration::from_millis(1)))
            .evaluate(&request("a"))
            .unwrap_or_else(|error| panic!("{rule_id}: {error}"));
        assert_eq!(answer.decision.as_str(), decision);
        assert_eq!(server.connections(), 1, "{rule_id} {decision}: asked once");
    }
}

#[test]
fn a_refusal_that_outlasts_the_retries_is_an_error_and_raw_gives_the_answer() {
    let server = TestServer::start(answering(answer("daemon.overloaded", "block", "high")));
    let client = client(&server).with_retry(Retry::new(4, Duration::from_millis(5)));
    let error = client.evaluate(&request("a")).unwrap_err();
    let refusal = error.refusal().expect("a refusal");
    assert_eq!(refusal.kind(), RefusalKind::Overloaded);
    assert!(refusal.is_retryable());
    assert_eq!(server.connections(), 4, "every attempt was made");
    assert!(
        error
            .to_string()
            .contains("refused the request (daemon.overloaded: the daemon is overloaded)")
    );
    // The reference's view: the refusal is the answer.
    let raw = client.evaluate_raw(&request("a")).unwrap();
    assert_eq!(raw.rule_id, "daemon.overloaded");
    assert_eq!(raw.decision, Decision::Block);
    assert_eq!(server.connections(), 8);
}

#[test]
fn no_wait_is_begun_that_would_end_past_the_deadline() {
    let server = TestServer::start(answering(answer("daemon.rate_limited", "block", "high")));
    let started = Instant::now();
    let error = Client::new(&server.socket)
        .with_timeout(Duration::from_millis(300))
        .with_retry(Retry::new(10, Duration::from_millis(200)).with_jitter(false))
        .evaluate(&request("a"))
        .unwrap_err();
    assert_eq!(
        error.refusal().map(|refusal| refusal.kind()),
        Some(RefusalKind::RateLimited)
    );
    assert_eq!(
        server.connections(),
        2,
        "one wait of 200 ms fits in 300 ms, the next of 400 ms does not"
    );
    assert!(
        started.elapsed() < Duration::from_millis(300),
        "{:?}",
        started.elapsed()
    );
}

#[test]
fn refusals_not_worth_retrying_are_typed_errors_asked_once() {
    for (rule_id, kind) in [
        ("daemon.peer.unauthorized", RefusalKind::PeerUnauthorized),
        ("daemon.evidence.unavailable", RefusalKind::EvidenceUnavailable),
        ("daemon.request.timeout", RefusalKind::RequestTimeout),
        ("daemon.request.invalid", RefusalKind::RequestInvalid),
        ("runner_auth.invalid", RefusalKind::RunnerAuthInvalid),
        ("daemon.brand_new", RefusalKind::Other),
    ] {
        let server = TestServer::start(answering(answer(rule_id, "block", "critical")));
        let error = client(&server).evaluate(&request("a")).unwrap_err();
        let refusal = error.refusal().unwrap_or_else(|| panic!("{rule_id}: {error}"));
        assert_eq!(refusal.kind(), kind);
        assert_eq!(refusal.response().severity, Severity::Critical);
        assert!(
            error.to_string().contains(&format!("refused the request ({rule_id}: ")),
            "{error}"
        );
        assert!(error.to_string().ends_with(&format!("answered {rule_id}")), "{error}");
        assert_eq!(server.connections(), 1, "{rule_id}");
    }
}

#[test]
fn a_socket_that_appears_while_retrying_is_reached() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("cavra.sock");
    let later = socket.clone();
    let binder = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(150));
        let listener = std::os::unix::net::UnixListener::bind(&later).unwrap();
        let (stream, _) = listener.accept().unwrap();
        go_daemon(0, stream);
    });
    let answer = Client::new(&socket)
        .with_retry(Retry::new(20, Duration::from_millis(20)).with_max_delay(Duration::from_millis(50)))
        .evaluate(&request("late"))
        .unwrap();
    assert_eq!(answer.reason, "late");
    binder.join().unwrap();
    // Without retries, the missing socket is the error, naming it.
    let missing = dir.path().join("missing.sock");
    let error = Client::new(&missing)
        .with_retry(Retry::none())
        .evaluate(&request("a"))
        .unwrap_err();
    assert!(matches!(error, ClientError::Connect { .. }), "{error}");
    assert!(
        error
            .to_string()
            .starts_with(&format!("cannot connect to cavra-runtime at {}: ", missing.display())),
        "{error}"
    );
    assert!(
        error.to_string().contains(": no such socket; start the daemon"),
        "{error}"
    );
}

#[test]
fn a_server_that_closes_without_answering_is_an_error_and_is_not_retried() {
    let server = TestServer::start(|_, mut stream| {
        read_object(&mut stream);
    });
    let error = client(&server).evaluate(&request("a")).unwrap_err();
    assert!(matches!(error, ClientError::Closed { .. }), "{error}");
    assert!(
        error.to_string().ends_with("closed the connection without answering"),
        "{error}"
    );
    assert_eq!(server.connections(), 1);
}

#[test]
fn values_a_newer_daemon_added_are_decisions_that_allow_nothing() {
    let server = TestServer::start(answering(answer("future.rule", "defer", "catastrophic")));
    let answer = client(&server).evaluate(&request("a")).unwrap();
    assert_eq!(answer.decision, Decision::Unknown("defer".into()));
    assert_eq!(answer.severity, Severity::Unknown("catastrophic".into()));
    assert!(!answer.decision.is_allow());
    let written = serde_json::to_value(&answer).unwrap();
    assert_eq!(written["decision"], "defer");
    assert_eq!(written["severity"], "catastrophic");
}

#[test]
fn an_answer_that_is_not_json_names_what_arrived() {
    let server = TestServer::start(answering("<html>\n".into()));
    let error = client(&server).evaluate(&request("a")).unwrap_err();
    assert!(matches!(error, ClientError::InvalidAnswer { .. }), "{error}");
    assert!(
        error.to_string().contains("sent an answer that is not valid JSON"),
        "{error}"
    );
    assert!(error.to_string().ends_with(": <html>"), "{error}");
}

#[test]
fn a_health_probe_answered_with_a_decision_says_the_server_has_none() {
    // The Go daemon evaluates `cavra.health` as an action.
    let server = TestServer::start(answering(answer(
        "runtime.default.require_approval",
        "require_approval",
        "medium",
    )));
    let error = client(&server).health().unwrap_err();
    assert!(matches!(error, ClientError::NoHealth { .. }), "{error}");
    assert!(
        error.to_string().contains("answered the health probe with a decision"),
        "{error}"
    );
    // A refusal of the probe is the refusal.
    let busy = TestServer::start(answering(answer("daemon.overloaded", "block", "high")));
    let error = client(&busy).with_retry(Retry::none()).health().unwrap_err();
    assert_eq!(
        error.refusal().map(|refusal| refusal.kind()),
        Some(RefusalKind::Overloaded)
    );
}

#[test]
fn a_stream_answers_in_order_and_tells_refusals_apart() {
    let server = TestServer::start(|_, stream| {
        let mut reader = std::io::BufReader::new(stream.try_clone().unwrap());
        let mut writer = stream;
        let mut line = String::new();
        std::io::BufRead::read_line(&mut reader, &mut line).unwrap();
        writer
            .write_all(b"{\"protocol\":\"cavra.ndjson.v1\",\"server\":\"test 1\"}\n")
            .unwrap();
        loop {
            line.clear();
            if std::io::BufRead::read_line(&mut reader, &mut line).unwrap_or(0) == 0 {
                return;
            }
            let request: serde_json::Value = serde_json::from_str(&line).unwrap();
            let reply = match request["target"].as_str().unwrap() {
                "busy" => answer("daemon.overloaded", "block", "high"),
                target => answer(&format!("rule.{target}"), "allow", "low"),
            };
            writer.write_all(reply.as_bytes()).unwrap();
        }
    });
    let mut stream = client(&server).stream().unwrap();
    assert_eq!(stream.server(), "test 1");
    assert_eq!(stream.evaluate(&request("one")).unwrap().rule_id, "rule.one");
    let requests: Vec<EvaluateRequest> = ["a", "busy", "b"].iter().map(|target| request(target)).collect();
    let answers = stream.evaluate_all(&requests).unwrap();
    assert_eq!(answers[0].as_ref().unwrap().rule_id, "rule.a");
    assert_eq!(answers[1].as_ref().unwrap_err().kind(), RefusalKind::Overloaded);
    assert_eq!(answers[2].as_ref().unwrap().rule_id, "rule.b");
    stream.send(&request("c"));
    stream.send(&request("busy"));
    stream.flush().unwrap();
    assert_eq!(stream.receive().unwrap().rule_id, "rule.c");
    assert!(stream.receive().unwrap_err().refusal().is_some());
}
