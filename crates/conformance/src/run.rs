//! Running one scenario against one fixture.

use std::fmt;
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use genroute_core::{
    AssetContent, Billed, CallContext, Caller, ErrorKind, Generation, JobId, Modality, ProgressEvent,
    Provider, ProviderError, ProviderRequest, Stage, TeamId,
};
use genroute_emulators::{Emulator, EmulatorHandle, Endpoint, Fault, JobState, Progression};

use crate::scenario::{
    CostCheck, DryRun, Fixture, MAX_CONSECUTIVE_UNKNOWN, Metered, Rejection, Scenario, ScenarioId, Transport,
};

/// How a scenario ended, when it did not fail.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Outcome {
    /// Every check passed.
    Passed,
    /// The fixture opted out, for this reason.
    OptedOut(&'static str),
}

/// A scenario failed: which adapter, which scenario, what was wrong.
#[derive(Clone, PartialEq, Eq, thiserror::Error)]
#[error("{adapter} / {scenario}: {message}")]
pub struct Failure {
    /// The provider id of the adapter.
    pub adapter: &'static str,
    /// The scenario.
    pub scenario: ScenarioId,
    /// What went wrong.
    pub message: String,
}

impl fmt::Debug for Failure {
    /// The `Display` form, so a test returning `Result<(), Failure>` prints a readable failure.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// A short deadline for scenarios that must end by it: long enough that the create itself is answered
/// before it on a loaded 2-core machine (CI runs many test processes at once), short enough to keep the
/// suite fast (these scenarios run in parallel).
const SHORT_DEADLINE: Duration = Duration::from_millis(800);
/// The deadline of calls expected to succeed or fail on their own.
const CALL_DEADLINE: Duration = Duration::from_secs(10);
/// Slack allowed past a deadline on a loaded machine.
const SLACK: Duration = Duration::from_secs(2);
/// How long to wait for something the emulator should observe (a poll, a cancel).
const OBSERVE: Duration = Duration::from_secs(5);

struct Runner<'a> {
    fixture: &'a dyn Fixture,
    id: ScenarioId,
}

type Checked<T> = Result<T, Failure>;

impl Runner<'_> {
    fn fail(&self, message: impl Into<String>) -> Failure {
        Failure {
            adapter: self.fixture.kind().provider_id(),
            scenario: self.id,
            message: message.into(),
        }
    }

    fn check(&self, ok: bool, message: impl FnOnce() -> String) -> Checked<()> {
        if ok { Ok(()) } else { Err(self.fail(message())) }
    }

    async fn emulator(&self, progression: Progression) -> Checked<EmulatorHandle> {
        Emulator::builder(self.fixture.kind())
            .progression(progression)
            .start()
            .await
            .map_err(|e| self.fail(format!("cannot start the emulator: {e}")))
    }

    fn provider(&self, emu: &EmulatorHandle, transport: &Transport) -> Checked<Arc<dyn Provider>> {
        self.fixture
            .provider(emu, transport)
            .map_err(|e| self.fail(format!("cannot build the adapter: {e}")))
    }

    /// A fresh emulator and an adapter on it, with the suite's default transport.
    async fn setup(&self, progression: Progression) -> Checked<(EmulatorHandle, Arc<dyn Provider>)> {
        let emu = self.emulator(progression).await?;
        let p = self.provider(&emu, &Transport::suite_default())?;
        Ok((emu, p))
    }

    fn creates(&self, emu: &EmulatorHandle, want: u64) -> Checked<()> {
        let got = emu.count(Endpoint::Create);
        self.check(got == want, || {
            format!("the emulator counted {got} creates, expected {want} (adapters never retry)")
        })
    }

    fn expect_err(&self, what: &str, r: Result<Generation, ProviderError>) -> Checked<ProviderError> {
        match r {
            Ok(g) => Err(self.fail(format!(
                "{what}: expected an error, got a generation with {} outputs",
                g.outputs.len()
            ))),
            Err(e) => Ok(e),
        }
    }

    fn expect_ok(&self, what: &str, r: Result<Generation, ProviderError>) -> Checked<Generation> {
        r.map_err(|e| self.fail(format!("{what}: expected success, got: {e}")))
    }

    /// Kind, temporary flag and billing of an error.
    fn classified(
        &self,
        what: &str,
        e: &ProviderError,
        kind: ErrorKind,
        temporary: bool,
        billed: &Billed,
    ) -> Checked<()> {
        self.check(
            e.kind() == kind && e.is_temporary() == temporary && e.billing() == billed,
            || {
                format!(
                    "{what}: expected {kind} (temporary {temporary}, billed {billed:?}), got {} (temporary {}, billed {:?}): {e}",
                    e.kind(),
                    e.is_temporary(),
                    e.billing()
                )
            },
        )
    }

    /// The id of the only job the emulator created.
    fn only_job(&self, emu: &EmulatorHandle) -> Checked<String> {
        let jobs = emu.jobs();
        match jobs.as_slice() {
            [one] => Ok(one.id.clone()),
            _ => Err(self.fail(format!("expected one job in the emulator, found {}", jobs.len()))),
        }
    }

    /// Waits until `cond` holds, checking every few milliseconds, for at most [`OBSERVE`].
    async fn eventually(&self, what: &str, mut cond: impl FnMut() -> bool) -> Checked<()> {
        let start = Instant::now();
        while !cond() {
            if start.elapsed() > OBSERVE {
                return Err(self.fail(format!("gave up after {OBSERVE:?} waiting for {what}")));
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        Ok(())
    }

    /// A call context with this timeout (fixed, valid ids).
    fn ctx(&self, timeout: Duration) -> Checked<CallContext> {
        let job = JobId::new(format!("conformance-{}", self.id.name()))
            .map_err(|e| self.fail(format!("job id: {e}")))?;
        let team = TeamId::new("conformance").map_err(|e| self.fail(format!("team id: {e}")))?;
        Ok(CallContext::new(job, Caller::team(team)).with_timeout(timeout))
    }

    async fn timed<F: Future>(&self, f: F) -> (F::Output, Duration) {
        let start = Instant::now();
        let out = f.await;
        (out, start.elapsed())
    }
}

/// Runs one scenario of one fixture against a fresh emulator. `Ok(OptedOut)` when the fixture opts out.
pub async fn run(fixture: &dyn Fixture, id: ScenarioId) -> Result<Outcome, Failure> {
    let r = Runner { fixture, id };
    macro_rules! setup {
        ($method:ident) => {
            match fixture.$method() {
                Scenario::Run(setup) => setup,
                Scenario::OptOut(reason) => return Ok(Outcome::OptedOut(reason)),
            }
        };
    }
    match id {
        ScenarioId::Success => success(&r, setup!(success)).await?,
        ScenarioId::AsyncPoll => async_poll(&r, setup!(async_poll)).await?,
        ScenarioId::CancelOnDrop => cancel_on_drop(&r, setup!(cancel_on_drop)).await?,
        ScenarioId::CancelOnDeadline => cancel_on_deadline(&r, setup!(cancel_on_deadline)).await?,
        ScenarioId::CancelExplicit => cancel_explicit(&r, setup!(cancel_explicit)).await?,
        ScenarioId::Resume => resume(&r, setup!(resume)).await?,
        ScenarioId::ServerError => server_error(&r, setup!(server_error)).await?,
        ScenarioId::RateLimited => rate_limited(&r, setup!(rate_limited)).await?,
        ScenarioId::Slow => slow(&r, setup!(slow)).await?,
        ScenarioId::MalformedJson => malformed_json(&r, setup!(malformed_json)).await?,
        ScenarioId::Oversized => oversized(&r, setup!(oversized)).await?,
        ScenarioId::Stuck => stuck(&r, setup!(stuck)).await?,
        ScenarioId::UnknownStatus => unknown_status(&r, setup!(unknown_status)).await?,
        ScenarioId::CreditExhausted => credit_exhausted(&r, setup!(credit_exhausted)).await?,
        ScenarioId::ContentRejected => content_rejected(&r, setup!(content_rejected)).await?,
        ScenarioId::Cost => cost(&r, setup!(cost)).await?,
        ScenarioId::DryRun => dry_run(&r, setup!(dry_run)).await?,
        ScenarioId::InvalidInput => invalid_input(&r, setup!(invalid_input)).await?,
        ScenarioId::OneCreate => one_create(&r, setup!(one_create)).await?,
    }
    Ok(Outcome::Passed)
}

fn media_prefix(m: Modality) -> &'static str {
    match m {
        Modality::Video => "video/",
        Modality::Audio => "audio/",
        _ => "image/",
    }
}

async fn success(r: &Runner<'_>, requests: Vec<ProviderRequest>) -> Checked<()> {
    r.check(!requests.is_empty(), || "no request given".into())?;
    for req in requests {
        let emu = r.emulator(Progression::default()).await?;
        let transport = Transport {
            poll_only: false,
            ..Transport::suite_default()
        };
        let p = r.provider(&emu, &transport)?;
        let what = format!("{} {}", req.model, req.job.operation());
        let g = r.expect_ok(&what, p.generate(&req, &r.ctx(CALL_DEADLINE)?).await)?;
        r.creates(&emu, 1)?;
        let want = req.job.output_count() as usize;
        r.check(g.outputs.len() == want, || {
            format!("{what}: {} outputs, expected {want}", g.outputs.len())
        })?;
        let prefix = media_prefix(req.job.modality());
        let http = genroute_http::reqwest::Client::new();
        for a in &g.outputs {
            let mt = a.media_type.clone().unwrap_or_default();
            r.check(mt.starts_with(prefix), || {
                format!("{what}: output media type {mt:?}, expected {prefix}*")
            })?;
            match &a.content {
                AssetContent::Bytes(b) => r.check(!b.is_empty(), || format!("{what}: empty output bytes"))?,
                AssetContent::Url(u) => {
                    // Output URLs point back at the emulator, which serves the file: fetch it.
                    r.check(u.starts_with(emu.origin()), || {
                        format!("{what}: output URL {u} is not the emulator's")
                    })?;
                    let resp = http
                        .get(u)
                        .send()
                        .await
                        .map_err(|e| r.fail(format!("{what}: cannot fetch {u}: {e}")))?;
                    let ct = resp
                        .headers()
                        .get("content-type")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("")
                        .to_owned();
                    r.check(resp.status().is_success() && ct.starts_with(prefix), || {
                        format!("{what}: fetching {u} gave {} {ct:?}", resp.status())
                    })?;
                }
            }
        }
        if let Some(job) = &g.provider_job_id
            && !emu.jobs().is_empty()
        {
            let state = emu.job(job).map(|j| j.state);
            r.check(state == Some(JobState::Succeeded), || {
                format!("{what}: provider_job_id {job} is not a succeeded emulator job ({state:?})")
            })?;
        }
    }
    Ok(())
}

fn stage_rank(s: Stage) -> u8 {
    match s {
        Stage::Submitted => 0,
        Stage::Queued => 1,
        Stage::Running => 2,
        Stage::Finalizing => 3,
    }
}

async fn async_poll(r: &Runner<'_>, req: ProviderRequest) -> Checked<()> {
    let (emu, p) = r.setup(Progression::polls(2, 2)).await?;
    let seen: Arc<Mutex<Vec<ProgressEvent>>> = Arc::default();
    let sink = Arc::clone(&seen);
    let c = r
        .ctx(CALL_DEADLINE)?
        .with_progress(Arc::new(move |e: ProgressEvent| {
            sink.lock().unwrap_or_else(PoisonError::into_inner).push(e)
        }));
    let g = r.expect_ok("queued job", p.generate(&req, &c).await)?;
    r.creates(&emu, 1)?;
    let polls = emu.count(Endpoint::Status);
    r.check(polls == 5, || {
        format!("{polls} status polls for 2 queued + 2 running + 1 done, expected 5")
    })?;
    let job = g
        .provider_job_id
        .clone()
        .ok_or_else(|| r.fail("the generation has no provider_job_id"))?;
    r.check(emu.job(&job).is_some(), || {
        format!("{job} is not an emulator job")
    })?;
    let events = seen.lock().unwrap_or_else(PoisonError::into_inner).clone();
    for stage in [Stage::Queued, Stage::Running] {
        r.check(
            events
                .iter()
                .any(|e| e.stage == stage && e.provider_job_id.as_deref() == Some(job.as_str())),
            || format!("no {stage:?} progress event for {job}: {events:?}"),
        )?;
    }
    r.check(
        events
            .windows(2)
            .all(|w| stage_rank(w[0].stage) <= stage_rank(w[1].stage)),
        || format!("progress went backwards: {events:?}"),
    )?;
    r.check(
        events
            .iter()
            .all(|e| e.fraction.is_none_or(|f| (0.0..=1.0).contains(&f))),
        || format!("a progress fraction outside 0–1: {events:?}"),
    )?;
    Ok(())
}

async fn cancel_on_drop(r: &Runner<'_>, req: ProviderRequest) -> Checked<()> {
    let (emu, p) = r.setup(Progression::immediate()).await?;
    emu.faults().push(Fault::stuck());
    let c = r.ctx(CALL_DEADLINE)?;
    let task = tokio::spawn(async move { p.generate(&req, &c).await });
    r.eventually("a first status poll", || emu.count(Endpoint::Status) >= 1)
        .await?;
    task.abort();
    let _ = task.await;
    let job = r.only_job(&emu)?;
    r.eventually("the upstream cancel after the drop", || {
        emu.cancels().contains(&job)
    })
    .await?;
    r.creates(&emu, 1)
}

async fn cancel_on_deadline(r: &Runner<'_>, req: ProviderRequest) -> Checked<()> {
    let (emu, p) = r.setup(Progression::immediate()).await?;
    emu.faults().push(Fault::stuck());
    let c = r.ctx(SHORT_DEADLINE)?;
    let (res, took) = r.timed(p.generate(&req, &c)).await;
    let e = r.expect_err("stuck job", res)?;
    r.classified("deadline", &e, ErrorKind::Timeout, true, &Billed::Unknown)?;
    r.check(took < SHORT_DEADLINE + SLACK, || {
        format!("returned after {took:?}, past the {SHORT_DEADLINE:?} deadline")
    })?;
    let job = r.only_job(&emu)?;
    r.check(e.provider_job_id() == Some(job.as_str()), || {
        format!(
            "the timeout carries job id {:?}, expected {job}",
            e.provider_job_id()
        )
    })?;
    r.eventually("the upstream cancel after the deadline", || {
        emu.cancels().contains(&job)
    })
    .await?;
    r.creates(&emu, 1)
}

async fn cancel_explicit(r: &Runner<'_>, req: ProviderRequest) -> Checked<()> {
    let (emu, p) = r.setup(Progression::immediate()).await?;
    emu.faults().push(Fault::stuck_in_queue());
    let (p2, c) = (Arc::clone(&p), r.ctx(CALL_DEADLINE)?);
    let task = tokio::spawn(async move { p2.generate(&req, &c).await });
    r.eventually("a first status poll", || emu.count(Endpoint::Status) >= 1)
        .await?;
    let job = r.only_job(&emu)?;
    p.cancel(&job)
        .await
        .map_err(|e| r.fail(format!("cancel({job}) failed: {e}")))?;
    r.check(emu.cancels() == vec![job.clone()], || {
        format!(
            "the emulator received cancels {:?}, expected [{job}]",
            emu.cancels()
        )
    })?;
    let res = tokio::time::timeout(OBSERVE, task)
        .await
        .map_err(|_| r.fail("generate did not end after the job was cancelled"))?
        .map_err(|e| r.fail(format!("the generate task failed: {e}")))?;
    let e = r.expect_err("cancelled job", res)?;
    r.check(
        e.kind() == ErrorKind::Cancelled && !e.is_temporary() && e.provider_job_id() == Some(job.as_str()),
        || format!("expected a non-temporary Cancelled error for {job}, got: {e:?}"),
    )?;
    r.creates(&emu, 1)
}

async fn resume(r: &Runner<'_>, req: ProviderRequest) -> Checked<()> {
    let (emu, p) = r.setup(Progression::default()).await?;
    // The first status poll hangs, and the cancel sent when the future is dropped fails: the job is left
    // unfinished upstream, as after a crash.
    emu.faults()
        .push(Fault::slow(Duration::from_secs(30)).on(Endpoint::Status));
    emu.faults().push(Fault::server_error(503).on(Endpoint::Cancel));
    let (p2, req2, c) = (Arc::clone(&p), req.clone(), r.ctx(Duration::from_secs(30))?);
    let task = tokio::spawn(async move { p2.generate(&req2, &c).await });
    r.eventually("a first status poll", || emu.count(Endpoint::Status) >= 1)
        .await?;
    task.abort();
    let _ = task.await;
    r.eventually("the failed cancel", || emu.count(Endpoint::Cancel) >= 1)
        .await?;
    let job = r.only_job(&emu)?;
    let state = emu.job(&job).map(|j| j.state);
    r.check(state.as_ref().is_some_and(|s| !s.is_terminal()), || {
        format!("setup: job {job} should still be unfinished, is {state:?}")
    })?;
    let g = r.expect_ok("resume", p.resume(&job, &req, &r.ctx(CALL_DEADLINE)?).await)?;
    r.check(g.provider_job_id.as_deref() == Some(job.as_str()), || {
        format!(
            "resumed generation has job id {:?}, expected {job}",
            g.provider_job_id
        )
    })?;
    r.check(g.outputs.len() == req.job.output_count() as usize, || {
        format!("resumed generation has {} outputs", g.outputs.len())
    })?;
    r.creates(&emu, 1)
}

async fn server_error(r: &Runner<'_>, req: ProviderRequest) -> Checked<()> {
    for status in [500u16, 502, 503] {
        let (emu, p) = r.setup(Progression::default()).await?;
        emu.faults()
            .push(Fault::server_error(status).on(Endpoint::Create));
        let what = format!("HTTP {status} on create");
        let e = r.expect_err(&what, p.generate(&req, &r.ctx(CALL_DEADLINE)?).await)?;
        r.classified(&what, &e, ErrorKind::Unavailable, true, &Billed::No)?;
        r.check(e.http_status() == Some(status), || {
            format!("{what}: the error carries status {:?}", e.http_status())
        })?;
        r.creates(&emu, 1)?;
    }
    Ok(())
}

async fn rate_limited(r: &Runner<'_>, req: ProviderRequest) -> Checked<()> {
    let (emu, p) = r.setup(Progression::default()).await?;
    let wait = Duration::from_secs(2);
    emu.faults().push(Fault::rate_limited(wait).on(Endpoint::Create));
    let e = r.expect_err("429", p.generate(&req, &r.ctx(CALL_DEADLINE)?).await)?;
    r.classified("429", &e, ErrorKind::RateLimited, true, &Billed::No)?;
    r.check(e.retry_after_hint() == Some(wait), || {
        format!("Retry-After of {wait:?} read as {:?}", e.retry_after_hint())
    })?;
    r.creates(&emu, 1)
}

async fn slow(r: &Runner<'_>, req: ProviderRequest) -> Checked<()> {
    let (emu, p) = r.setup(Progression::default()).await?;
    emu.faults()
        .push(Fault::slow(Duration::from_secs(10)).on(Endpoint::Create));
    let c = r.ctx(SHORT_DEADLINE)?;
    let (res, took) = r.timed(p.generate(&req, &c)).await;
    let e = r.expect_err("slow create", res)?;
    r.classified("slow create", &e, ErrorKind::Timeout, true, &Billed::Unknown)?;
    r.check(took < SHORT_DEADLINE + SLACK, || {
        format!("returned after {took:?}, past the {SHORT_DEADLINE:?} deadline")
    })?;
    // On a badly overloaded machine the create may not even reach the emulator before the deadline;
    // what matters is that it is never sent twice.
    let got = emu.count(Endpoint::Create);
    r.check(got <= 1, || {
        format!("the emulator counted {got} creates, expected at most 1")
    })
}

async fn malformed_json(r: &Runner<'_>, req: ProviderRequest) -> Checked<()> {
    let (emu, p) = r.setup(Progression::default()).await?;
    emu.faults().push(Fault::malformed_json().on(Endpoint::Create));
    let e = r.expect_err(
        "truncated create answer",
        p.generate(&req, &r.ctx(CALL_DEADLINE)?).await,
    )?;
    r.classified(
        "truncated create answer",
        &e,
        ErrorKind::MalformedResponse,
        false,
        &Billed::Unknown,
    )?;
    r.creates(&emu, 1)?;
    let queued = p.model(&req.model).is_some_and(|m| m.capabilities.async_jobs);
    if queued {
        let (emu, p) = r.setup(Progression::default()).await?;
        emu.faults().push(Fault::malformed_json().on(Endpoint::Status));
        let what = "truncated status answer";
        let e = r.expect_err(what, p.generate(&req, &r.ctx(CALL_DEADLINE)?).await)?;
        r.classified(what, &e, ErrorKind::MalformedResponse, false, &Billed::Unknown)?;
        let job = r.only_job(&emu)?;
        r.check(e.provider_job_id() == Some(job.as_str()), || {
            format!(
                "{what}: the error carries job id {:?}, expected {job}",
                e.provider_job_id()
            )
        })?;
        r.creates(&emu, 1)?;
    }
    Ok(())
}

async fn oversized(r: &Runner<'_>, req: ProviderRequest) -> Checked<()> {
    let emu = r.emulator(Progression::default()).await?;
    let mut transport = Transport::suite_default();
    transport.http.max_body_bytes = 64 * 1024;
    let p = r.provider(&emu, &transport)?;
    emu.faults()
        .push(Fault::oversized(256 * 1024).on(Endpoint::Create));
    let e = r.expect_err("oversized body", p.generate(&req, &r.ctx(CALL_DEADLINE)?).await)?;
    r.classified(
        "oversized body",
        &e,
        ErrorKind::MalformedResponse,
        false,
        &Billed::Unknown,
    )?;
    r.check(e.message().contains("limit"), || {
        format!("the error does not name the body limit: {e}")
    })?;
    r.creates(&emu, 1)
}

async fn stuck(r: &Runner<'_>, req: ProviderRequest) -> Checked<()> {
    let (emu, p) = r.setup(Progression::immediate()).await?;
    emu.faults().push(Fault::stuck());
    let c = r.ctx(SHORT_DEADLINE)?;
    let (res, took) = r.timed(p.generate(&req, &c)).await;
    let e = r.expect_err("stuck job", res)?;
    r.classified("stuck job", &e, ErrorKind::Timeout, true, &Billed::Unknown)?;
    r.check(
        took + Duration::from_millis(50) >= SHORT_DEADLINE && took < SHORT_DEADLINE + SLACK,
        || format!("returned after {took:?}, expected about the {SHORT_DEADLINE:?} deadline"),
    )?;
    if let Some(job) = emu.jobs().first() {
        r.check(e.provider_job_id() == Some(job.id.as_str()), || {
            format!(
                "the timeout carries job id {:?}, expected {}",
                e.provider_job_id(),
                job.id
            )
        })?;
    }
    r.creates(&emu, 1)
}

async fn unknown_status(r: &Runner<'_>, req: ProviderRequest) -> Checked<()> {
    let (emu, p) = r.setup(Progression::immediate()).await?;
    emu.faults().push(Fault::unknown_status("REVIEWING_BY_HAND"));
    let e = r.expect_err("unknown status", p.generate(&req, &r.ctx(CALL_DEADLINE)?).await)?;
    r.classified(
        "unknown status",
        &e,
        ErrorKind::MalformedResponse,
        false,
        &Billed::Unknown,
    )?;
    let polls = emu.count(Endpoint::Status);
    let cap = u64::from(MAX_CONSECUTIVE_UNKNOWN) + 1;
    r.check(polls == cap, || {
        format!("{polls} status polls, expected the cap of {cap} (max_consecutive_unknown + 1)")
    })?;
    let job = r.only_job(&emu)?;
    r.check(e.provider_job_id() == Some(job.as_str()), || {
        format!(
            "the error carries job id {:?}, expected {job}",
            e.provider_job_id()
        )
    })?;
    r.creates(&emu, 1)
}

async fn credit_exhausted(r: &Runner<'_>, req: ProviderRequest) -> Checked<()> {
    let (emu, p) = r.setup(Progression::default()).await?;
    emu.faults().push(Fault::credit_exhausted());
    let e = r.expect_err("no credit", p.generate(&req, &r.ctx(CALL_DEADLINE)?).await)?;
    r.classified(
        "no credit",
        &e,
        ErrorKind::InsufficientCredits,
        false,
        &Billed::No,
    )?;
    r.check(e.retry_after_hint().is_none(), || {
        format!("a credit refusal carries a retry hint: {e}")
    })?;
    r.creates(&emu, 1)
}

async fn content_rejected(r: &Runner<'_>, setup: Rejection) -> Checked<()> {
    let (emu, p) = r.setup(Progression::default()).await?;
    emu.faults().push(Fault::content_rejected());
    let e = r.expect_err(
        "moderated",
        p.generate(&setup.request, &r.ctx(CALL_DEADLINE)?).await,
    )?;
    r.classified("moderated", &e, ErrorKind::ContentRejected, false, &setup.billed)?;
    r.creates(&emu, 1)
}

async fn cost(r: &Runner<'_>, setup: CostCheck) -> Checked<()> {
    r.check(!setup.expect.is_empty(), || "nothing to check".into())?;
    let (emu, p) = r.setup(Progression::default()).await?;
    emu.update_settings(setup.emulator);
    let g = r.expect_ok(
        "metered job",
        p.generate(&setup.request, &r.ctx(CALL_DEADLINE)?).await,
    )?;
    for m in &setup.expect {
        let u = &g.usage;
        let ok = match m {
            Metered::BillableUnits(d) => u.billable_units == Some(*d),
            Metered::ComputeSeconds(d) => u.compute_seconds == Some(*d),
            Metered::InputTokens(n) => u.input_tokens == Some(*n),
            Metered::OutputTokens(n) => u.output_tokens == Some(*n),
            Metered::Characters(n) => u.characters == Some(*n),
            Metered::OutputSeconds(d) => u.output_seconds == Some(*d),
            Metered::Charged(money) => g.charged.as_ref().map(|c| &c.amount) == Some(money),
        };
        r.check(ok, || {
            format!("expected {m:?}; usage {:?}, charged {:?}", g.usage, g.charged)
        })?;
    }
    r.creates(&emu, 1)
}

async fn dry_run(r: &Runner<'_>, setup: DryRun) -> Checked<()> {
    let (emu, p) = r.setup(Progression::default()).await?;
    let quote = p
        .dry_run(&setup.request)
        .await
        .map_err(|e| r.fail(format!("dry run failed: {e}")))?;
    r.check(quote == setup.expect, || {
        format!("dry run quoted {quote:?}, expected {:?}", setup.expect)
    })?;
    let jobs = emu.jobs().len();
    r.check(jobs == 0, || format!("a dry run created {jobs} jobs"))?;
    if setup.expect.is_none() {
        let sent = emu.total_requests();
        r.check(sent == 0, || {
            format!("{sent} requests sent by an adapter without a dry run")
        })?;
    }
    Ok(())
}

async fn invalid_input(r: &Runner<'_>, requests: Vec<ProviderRequest>) -> Checked<()> {
    r.check(!requests.is_empty(), || "no request given".into())?;
    let (emu, p) = r.setup(Progression::default()).await?;
    for req in &requests {
        let what = format!("{} {}", req.model, req.job.operation());
        let e = r.expect_err(&what, p.generate(req, &r.ctx(CALL_DEADLINE)?).await)?;
        r.check(
            matches!(e.kind(), ErrorKind::Unsupported | ErrorKind::InvalidRequest)
                && !e.is_temporary()
                && e.billing() == &Billed::No,
            || format!("{what}: expected a local Unsupported/InvalidRequest, got {e:?}"),
        )?;
        let sent = emu.total_requests();
        r.check(sent == 0, || {
            format!("{what}: {sent} requests reached the emulator, expected none")
        })?;
    }
    Ok(())
}

async fn one_create(r: &Runner<'_>, req: ProviderRequest) -> Checked<()> {
    // Repeated create failures: one attempt sees the first and stops.
    let (emu, p) = r.setup(Progression::default()).await?;
    emu.faults()
        .push(Fault::server_error(503).times(3).on(Endpoint::Create));
    r.expect_err("503 on create", p.generate(&req, &r.ctx(CALL_DEADLINE)?).await)?;
    r.creates(&emu, 1)?;
    // A job that fails after running: no second create either.
    let (emu, p) = r.setup(Progression::polls(0, 1)).await?;
    emu.faults().push(Fault::fail_after_running());
    let e = r.expect_err("failed job", p.generate(&req, &r.ctx(CALL_DEADLINE)?).await)?;
    r.creates(&emu, 1)?;
    if let [job] = emu.jobs().as_slice() {
        r.check(e.provider_job_id() == Some(job.id.as_str()), || {
            format!(
                "the failure carries job id {:?}, expected {}",
                e.provider_job_id(),
                job.id
            )
        })?;
    }
    Ok(())
}
