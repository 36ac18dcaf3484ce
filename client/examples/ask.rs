//! Asks a cavra-runtime daemon whether a command may run, and says why.
//!
//! ```sh
//! cargo run -p cavra-runtime-client --example ask -- [--socket PATH] COMMAND...
//! ```
//!
//! Exit status: 0 allowed, 2 approval required, 3 blocked (or a decision this version does not know), 4 the daemon
//! refused to decide (overloaded after retries, not authorised, ...), 1 no answer at all.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use cavra_runtime_client::{Client, ClientError, Decision, EvaluateRequest, RefusalKind, Retry, find_socket};

fn main() -> ExitCode {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let named = match args.first().map(String::as_str) {
        Some("--socket") if args.len() >= 2 => {
            let socket = PathBuf::from(&args[1]);
            args.drain(..2);
            Some(socket)
        }
        _ => None,
    };
    // As `cavra-runtime --daemon` finds it: the socket named, $CAVRA_RUNTIME_SOCKET, your own daemon, the system's.
    let socket = find_socket(named.as_deref()).path;
    if args.is_empty() {
        eprintln!("usage: ask [--socket PATH] COMMAND...");
        return ExitCode::from(1);
    }
    let request = EvaluateRequest {
        action_type: "execute_command".into(),
        target: args.join(" "),
        agent_id: "ask-example".into(),
        ..Default::default()
    };
    let client = Client::new(&socket)
        .with_timeout(Duration::from_secs(3))
        .with_retry(Retry::new(4, Duration::from_millis(100)));

    match client.evaluate(&request) {
        Ok(answer) => {
            println!(
                "{}: {} ({}, severity {})",
                answer.decision, answer.reason, answer.rule_id, answer.severity
            );
            match answer.decision {
                Decision::Allow => ExitCode::SUCCESS,
                Decision::RequireApproval => {
                    println!("ask {} for approval", answer.approver_group);
                    ExitCode::from(2)
                }
                _ => ExitCode::from(3),
            }
        }
        Err(ClientError::Refused { refusal, .. }) => {
            let hint = match refusal.kind() {
                RefusalKind::Overloaded | RefusalKind::RateLimited => "still busy after retrying; try again later",
                RefusalKind::PeerUnauthorized => "this user may not ask this daemon; see its --allow-uid/--allow-group",
                RefusalKind::EvidenceUnavailable => "the daemon cannot record decisions; tell its operator",
                _ => "the daemon did not evaluate the request",
            };
            eprintln!("refused: {refusal}\n{hint}");
            ExitCode::from(4)
        }
        Err(error) => {
            eprintln!("{error}");
            ExitCode::from(1)
        }
    }
}
