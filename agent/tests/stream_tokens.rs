//! Stream tokens against `sandpod-agent --test-serve`: a stream attaches to a process only with
//! the token of the process's request; the exec id alone takes nothing.
mod support;

use std::time::Duration;

use sandpod_runtime::agent_client::{AgentError, ExitStatus, StreamKind, StreamToken};
use support::{exec_req, token, TestAgent};
use tokio::io::AsyncReadExt;
use ttrpc::Code;

/// Reads a stream to its end (bounded): what it carried.
async fn drain(mut s: tokio::net::UnixStream) -> Vec<u8> {
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(20), s.read_to_end(&mut out))
        .await
        .expect("the stream did not end")
        .expect("reading the stream");
    out
}

#[tokio::test]
async fn a_stream_with_another_token_gets_nothing_of_the_process() {
    let agent = TestAgent::start();
    let client = agent.client().await;
    // The thief comes first (its stream is parked), then the real stream and the request.
    let wrong = StreamToken::generate().unwrap();
    assert_ne!(&wrong, token());
    let thief = client
        .open_stream("victim", StreamKind::Stdout, &wrong)
        .await
        .unwrap();
    let thief = tokio::spawn(drain(thief));
    tokio::time::sleep(Duration::from_millis(200)).await;
    let real = client
        .open_stream("victim", StreamKind::Stdout, token())
        .await
        .unwrap();
    let real = tokio::spawn(drain(real));
    client
        .exec_process(&exec_req(
            "victim",
            &["echo", "secret-output"],
            [false, true, false],
        ))
        .await
        .unwrap();
    assert_eq!(
        client.wait_process("victim").await.unwrap(),
        ExitStatus::Exited(0)
    );
    assert_eq!(real.await.unwrap(), b"secret-output\n");
    assert_eq!(
        thief.await.unwrap(),
        b"",
        "the wrong token's stream got output"
    );
}

#[tokio::test]
async fn a_request_waits_for_the_right_token_only() {
    let agent = TestAgent::start();
    let client = agent.client().await;
    // Only a stream with another token arrives: ExecProcess gives up, nothing runs.
    let thief = client
        .open_stream(
            "lonely",
            StreamKind::Stdout,
            &StreamToken::generate().unwrap(),
        )
        .await
        .unwrap();
    let thief = tokio::spawn(drain(thief));
    let err = client
        .exec_process(&exec_req(
            "lonely",
            &["echo", "never"],
            [false, true, false],
        ))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(Code::DEADLINE_EXCEEDED), "{err}");
    assert!(err.to_string().contains("stdout stream"), "{err}");
    assert_eq!(thief.await.unwrap(), b"");
}

#[tokio::test]
async fn the_agent_refuses_streams_without_a_valid_token() {
    let agent = TestAgent::start();
    let client = agent.client().await;
    // The client refuses such a request before sending it...
    let mut req = exec_req("e1", &["true"], [false, true, false]);
    req.stream_token = String::new();
    assert!(matches!(
        client.exec_process(&req).await,
        Err(AgentError::Token { .. })
    ));
    // ...and the agent too, when one comes anyway (the raw ttrpc client).
    for bad in ["", "not-a-token", "00112233445566778899AABBCCDDEEFF"] {
        req.stream_token = bad.into();
        let err = client
            .raw()
            .exec_process(ttrpc::context::with_duration(Duration::from_secs(5)), &req)
            .await
            .unwrap_err();
        let ttrpc::Error::RpcStatus(status) = err else {
            panic!("{bad:?}: {err:?}");
        };
        assert_eq!(status.code(), Code::INVALID_ARGUMENT, "{bad:?}: {status:?}");
        assert!(status.message().contains("stream_token"), "{status:?}");
    }
    // Without streams no token is needed.
    req.stream_token = String::new();
    req.stdout = false;
    client.exec_process(&req).await.unwrap();
    assert_eq!(
        client.wait_process("e1").await.unwrap(),
        ExitStatus::Exited(0)
    );
}
