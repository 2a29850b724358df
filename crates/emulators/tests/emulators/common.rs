#![allow(dead_code)]

use genroute_emulators::EmulatorHandle;
use reqwest::{Client, RequestBuilder, Response};
use serde_json::Value;

pub fn client() -> Client {
    Client::builder().no_proxy().build().unwrap()
}

/// Add the emulator's auth headers.
pub fn authed(h: &EmulatorHandle, rb: RequestBuilder) -> RequestBuilder {
    h.auth_headers()
        .into_iter()
        .fold(rb, |rb, (k, v)| rb.header(k, v))
}

pub async fn json(r: Response) -> (u16, Value) {
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    let v = serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"));
    (status, v)
}

pub fn header(r: &Response, name: &str) -> Option<String> {
    r.headers().get(name).map(|v| v.to_str().unwrap().to_owned())
}
