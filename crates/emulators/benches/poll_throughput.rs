//! Emulator capacity: 10,000 in-flight fal video jobs submitted then polled to completion over real HTTP.
//!
//! `cargo bench -p genroute-emulators --bench poll_throughput` (env: `JOBS`, `CONCURRENCY`, `POLLS`).
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::print_stdout,
    clippy::print_stderr
)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use genroute_emulators::{Emulator, Endpoint, Kind, Progression};
use serde_json::{Value, json};
use tokio::sync::Semaphore;

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("VmHWM:")).map(str::to_owned))
        .and_then(|l| l.split_whitespace().nth(1).and_then(|k| k.parse::<f64>().ok()))
        .map_or(0.0, |kib| kib / 1024.0)
}

fn main() {
    let jobs = env("JOBS", 10_000);
    let conc = env("CONCURRENCY", 256);
    let polls = env("POLLS", 4) as u32;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let fal = Emulator::builder(Kind::Fal)
            .progression(Progression::polls(polls / 2, polls - polls / 2))
            .record_requests(false)
            .start()
            .await
            .unwrap();
        let client = reqwest::Client::builder()
            .no_proxy()
            .pool_max_idle_per_host(conc)
            .build()
            .unwrap();
        let auth = format!("Key {}", fal.api_key());
        let sem = Arc::new(Semaphore::new(conc));

        // Phase 1: submit every job (all stay in flight on the emulator).
        let t0 = Instant::now();
        let mut handles = Vec::with_capacity(jobs);
        for _ in 0..jobs {
            let (c, a, s, url) = (
                client.clone(),
                auth.clone(),
                sem.clone(),
                format!(
                    "{}/fal-ai/kling-video/v1.6/standard/text-to-video",
                    fal.base_url()
                ),
            );
            handles.push(tokio::spawn(async move {
                let _p = s.acquire().await.unwrap();
                let t = Instant::now();
                let v: Value = c
                    .post(url)
                    .header("authorization", a)
                    .json(&json!({"prompt": "waves", "duration": "5"}))
                    .send()
                    .await
                    .unwrap()
                    .json()
                    .await
                    .unwrap();
                (v["status_url"].as_str().unwrap().to_owned(), t.elapsed())
            }));
        }
        let mut urls = Vec::with_capacity(jobs);
        let mut lat = Vec::with_capacity(jobs);
        for h in handles {
            let (u, d) = h.await.unwrap();
            urls.push(u);
            lat.push(d);
        }
        let submit_time = t0.elapsed();
        lat.sort();
        println!(
            "submit: {jobs} jobs in {:.2?} = {:.0} req/s, p50 {:.2?}, p99 {:.2?} (concurrency {conc})",
            submit_time,
            jobs as f64 / submit_time.as_secs_f64(),
            percentile(&lat, 0.5),
            percentile(&lat, 0.99)
        );

        // Phase 2: every job polled until COMPLETED, all jobs in flight at once.
        let t1 = Instant::now();
        let mut handles = Vec::with_capacity(jobs);
        for u in urls {
            let (c, a, s) = (client.clone(), auth.clone(), sem.clone());
            handles.push(tokio::spawn(async move {
                let mut lats = Vec::new();
                loop {
                    let _p = s.acquire().await.unwrap();
                    let t = Instant::now();
                    let v: Value = c
                        .get(&u)
                        .header("authorization", &a)
                        .send()
                        .await
                        .unwrap()
                        .json()
                        .await
                        .unwrap();
                    lats.push(t.elapsed());
                    if v["status"] == "COMPLETED" {
                        return lats;
                    }
                }
            }));
        }
        let mut lat = Vec::new();
        for h in handles {
            lat.extend(h.await.unwrap());
        }
        let poll_time = t1.elapsed();
        lat.sort();
        println!(
            "poll: {} status requests for {jobs} jobs in {:.2?} = {:.0} req/s, p50 {:.2?}, p99 {:.2?}",
            lat.len(),
            poll_time,
            lat.len() as f64 / poll_time.as_secs_f64(),
            percentile(&lat, 0.5),
            percentile(&lat, 0.99)
        );
        assert_eq!(fal.count(Endpoint::Status) as usize, lat.len());
        assert_eq!(fal.jobs().len(), jobs);
        println!(
            "peak RSS (client + server in one process): {:.0} MiB",
            peak_rss_mib()
        );
    });
}
