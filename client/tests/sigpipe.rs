//! With SIGPIPE at its default action (terminate), as in a program that does not ignore it, a write to a server that
//! has closed is an error the client handles, not the end of the process. A test binary of its own: the signal's
//! disposition is the whole process's.

mod common;

use std::io::{Read as _, Write as _};

use cavra_runtime_client::{Client, EvaluateRequest, RefusalKind};
use common::{TestServer, answer};

#[test]
fn a_write_to_a_closed_server_raises_no_sigpipe() {
    // SAFETY: setting a signal's disposition to its default; no handler is installed.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_DFL) };
    let server = TestServer::start(|_, mut stream| {
        let mut start = [0u8; 1024];
        stream.read_exact(&mut start).unwrap();
        let _ = stream.write_all(answer("daemon.request.too_large", "block", "high").as_bytes());
    });
    let huge = EvaluateRequest {
        action_type: "read_file".into(),
        target: "x".repeat(8 << 20),
        ..Default::default()
    };
    let error = Client::new(&server.socket).evaluate(&huge).unwrap_err();
    assert_eq!(
        error.refusal().map(|refusal| refusal.kind()),
        Some(RefusalKind::RequestTooLarge),
        "{error}"
    );
    #[cfg(feature = "async")]
    {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let error = runtime
            .block_on(cavra_runtime_client::AsyncClient::new(&server.socket).evaluate(&huge))
            .unwrap_err();
        assert_eq!(
            error.refusal().map(|refusal| refusal.kind()),
            Some(RefusalKind::RequestTooLarge),
            "{error}"
        );
    }
}
