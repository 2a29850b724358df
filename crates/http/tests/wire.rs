#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
//! The shared client against a real (local) HTTP server.

use std::time::Duration;

use genroute_core::{Billed, ErrorKind};
use genroute_http::reqwest::Method;
use genroute_http::secrecy::SecretString;
use genroute_http::{Auth, BaseUrl, CancelGuard, HttpClient, HttpConfig};
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

fn client(server: &MockServer, config: HttpConfig) -> HttpClient {
    let auth = Auth::bearer(&SecretString::from("sk-test".to_owned())).unwrap();
    HttpClient::new(&config, BaseUrl::parse(&server.uri()).unwrap(), auth).unwrap()
}

/// A client without credentials for a hand-rolled server (or none) at `base`.
fn plain_client(base: &str, config: &HttpConfig) -> HttpClient {
    HttpClient::new(config, BaseUrl::parse(base).unwrap(), Auth::none()).unwrap()
}

#[tokio::test]
async fn sends_auth_reads_bodies_and_returns_error_statuses_unclassified() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path("/v1/ok"))
        .and(header("authorization", "Bearer sk-test"))
        .respond_with(ResponseTemplate::new(200).set_body_json(serde_json::json!({"a": 1})))
        .expect(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path("/v1/fail"))
        .respond_with(ResponseTemplate::new(503).insert_header("x-request-id", "req_7"))
        .mount(&server)
        .await;
    let c = client(&server, HttpConfig::default());
    let url = c.endpoint("v1/ok").unwrap();
    let r = c.send(c.request(Method::GET, url)).await.unwrap();
    assert_eq!(r.status, 200);
    let v: serde_json::Value = r.json().unwrap();
    assert_eq!(v["a"], 1);
    let bad: Result<Vec<u8>, _> = r.json();
    assert_eq!(bad.unwrap_err().kind(), ErrorKind::MalformedResponse);

    let r = c
        .send(c.request(Method::GET, c.endpoint("v1/fail").unwrap()))
        .await
        .unwrap();
    assert_eq!(r.status, 503);
    assert_eq!(r.header("x-request-id"), Some("req_7"));
    let ua = &server.received_requests().await.unwrap()[0].headers;
    assert!(
        ua.get("user-agent")
            .unwrap()
            .to_str()
            .unwrap()
            .starts_with("genroute/")
    );
}

#[tokio::test]
async fn body_limit_is_enforced_with_content_length_and_chunked() {
    let server = MockServer::start().await;
    Mock::given(path("/big"))
        .respond_with(ResponseTemplate::new(200).set_body_bytes(vec![b'x'; 2048]))
        .mount(&server)
        .await;
    Mock::given(path("/small"))
        .respond_with(ResponseTemplate::new(200).set_body_bytes(vec![b'x'; 1024]))
        .mount(&server)
        .await;
    let config = HttpConfig {
        max_body_bytes: 1024,
        ..HttpConfig::default()
    };
    let c = client(&server, config);
    let err = c
        .send(c.request(Method::GET, c.endpoint("big").unwrap()))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::MalformedResponse);
    assert!(err.message().contains("1024 bytes"), "{err}");
    let ok = c
        .send(c.request(Method::GET, c.endpoint("small").unwrap()))
        .await
        .unwrap();
    assert_eq!(ok.body.len(), 1024);

    // Chunked, no Content-Length: the streamed read stops once past the limit.
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut sock, _) = listener.accept().await.unwrap();
        let mut buf = [0u8; 4096];
        let _ = sock.read(&mut buf).await;
        let mut out = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n".to_vec();
        for _ in 0..4 {
            out.extend_from_slice(b"200\r\n");
            out.extend_from_slice(&[b'y'; 0x200]);
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"0\r\n\r\n");
        let _ = sock.write_all(&out).await;
    });
    let c = plain_client(
        &format!("http://{addr}"),
        &HttpConfig {
            max_body_bytes: 1500,
            ..HttpConfig::default()
        },
    );
    let err = c
        .send(c.request(Method::GET, c.endpoint("chunked").unwrap()))
        .await
        .unwrap_err();
    assert!(err.message().contains("1500 bytes"), "{err}");
}

#[tokio::test]
async fn transport_failures_are_classified() {
    // Nothing listens on this port: connect fails, nothing was sent, so nothing was billed.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let c = plain_client(&format!("http://127.0.0.1:{port}"), &HttpConfig::default());
    let err = c
        .send(c.request(Method::POST, c.endpoint("x").unwrap()))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Unavailable);
    assert!(err.is_temporary());
    assert_eq!(err.billing(), &Billed::No);

    // A response slower than the request timeout: it may have been received, so billing is unknown.
    let server = MockServer::start().await;
    Mock::given(path("/slow"))
        .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_secs(5)))
        .mount(&server)
        .await;
    let c = client(
        &server,
        HttpConfig {
            request_timeout: Duration::from_millis(100),
            ..HttpConfig::default()
        },
    );
    let err = c
        .send(c.request(Method::POST, c.endpoint("slow").unwrap()))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Timeout);
    assert_eq!(err.billing(), &Billed::Unknown);
    assert!(!err.message().contains("127.0.0.1"), "{err}");
}

#[tokio::test]
async fn cancel_guard_sends_the_cancel_when_dropped() {
    let server = MockServer::start().await;
    Mock::given(method("PUT"))
        .and(path("/requests/abc/cancel"))
        .respond_with(ResponseTemplate::new(202))
        .expect(1)
        .mount(&server)
        .await;
    let c = client(&server, HttpConfig::default());
    let url = c.endpoint("requests/abc/cancel").unwrap();
    let cc = c.clone();
    let guard = CancelGuard::new(async move {
        let _ = cc.send(cc.request(Method::PUT, url)).await;
    });
    // A job future that is dropped mid-flight takes the guard with it.
    let job = async move {
        let _g = guard;
        tokio::time::sleep(Duration::from_secs(3600)).await;
    };
    let _ = tokio::time::timeout(Duration::from_millis(20), job).await;
    for _ in 0..100 {
        if !server.received_requests().await.unwrap().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    server.verify().await;
}

#[tokio::test]
async fn send_within_stops_at_the_call_deadline() {
    use genroute_core::{CallContext, Caller, JobId, TeamId};
    let server = MockServer::start().await;
    Mock::given(path("/slow"))
        .respond_with(ResponseTemplate::new(200).set_delay(Duration::from_secs(5)))
        .mount(&server)
        .await;
    let c = client(&server, HttpConfig::default());
    let ctx = CallContext::new(JobId::new("j").unwrap(), Caller::team(TeamId::new("t").unwrap()))
        .with_timeout(Duration::from_millis(100));
    let err = c
        .send_within(&ctx, c.request(Method::POST, c.endpoint("slow").unwrap()))
        .await
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Timeout);
    assert_eq!(err.billing(), &Billed::Unknown);
}

#[tokio::test]
async fn bodies_arriving_in_several_chunks_are_assembled_in_order_with_their_headers() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (mut sock, _) = listener.accept().await.unwrap();
        let mut buf = [0u8; 4096];
        let _ = sock.read(&mut buf).await;
        let head = b"HTTP/1.1 200 OK\r\nx-request-id: req_7\r\ntransfer-encoding: chunked\r\n\r\n";
        sock.write_all(head).await.unwrap();
        // Separate writes, flushed apart, so the client sees separate chunks.
        for part in [&b"first-"[..], b"second-", b"third"] {
            let chunk = [format!("{:x}\r\n", part.len()).as_bytes(), part, b"\r\n"].concat();
            sock.write_all(&chunk).await.unwrap();
            sock.flush().await.unwrap();
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        sock.write_all(b"0\r\n\r\n").await.unwrap();
    });
    let c = plain_client(&format!("http://{addr}"), &HttpConfig::default());
    let resp = c
        .send(c.request(Method::GET, c.endpoint("chunks").unwrap()))
        .await
        .unwrap();
    assert_eq!(&resp.body[..], b"first-second-third");
    assert_eq!(resp.header("x-request-id"), Some("req_7"));
}
