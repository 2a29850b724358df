//! Callback sink and fan-out.

use std::fmt;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;

use crate::event::{AttemptEvent, CostSink};

/// A sink that calls a closure with every event: put cost into your own queue, webhook or event bus.
///
/// The closure runs on the router's task, so it must be quick and must not block; hand the event to a
/// channel (`try_send`) rather than doing I/O in it.
pub struct CallbackSink<F> {
    callback: F,
}

impl<F: Fn(&AttemptEvent) + Send + Sync> CallbackSink<F> {
    /// Wraps a closure.
    pub fn new(callback: F) -> Self {
        Self { callback }
    }
}

impl<F> fmt::Debug for CallbackSink<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("CallbackSink")
    }
}

impl<F: Fn(&AttemptEvent) + Send + Sync> CostSink for CallbackSink<F> {
    fn record(&self, event: &AttemptEvent) {
        (self.callback)(event)
    }
}

/// Sends every event to several sinks, in the order they were added.
///
/// A sink that panics does not stop the others, and the panic does not reach the caller: it is caught and
/// reported as a `tracing` error event.
#[derive(Clone, Default)]
pub struct Sinks {
    sinks: Vec<Arc<dyn CostSink>>,
}

/// Another name for [`Sinks`].
pub type Fanout = Sinks;

impl Sinks {
    /// No sinks.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a sink.
    pub fn with(mut self, sink: impl CostSink + 'static) -> Self {
        self.sinks.push(Arc::new(sink));
        self
    }

    /// Adds a shared sink.
    pub fn push(&mut self, sink: Arc<dyn CostSink>) {
        self.sinks.push(sink);
    }

    /// Number of sinks.
    pub fn len(&self) -> usize {
        self.sinks.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.sinks.is_empty()
    }
}

impl fmt::Debug for Sinks {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sinks").field("len", &self.sinks.len()).finish()
    }
}

impl CostSink for Sinks {
    fn record(&self, event: &AttemptEvent) {
        for (index, sink) in self.sinks.iter().enumerate() {
            if catch_unwind(AssertUnwindSafe(|| sink.record(event))).is_err() {
                tracing::error!(
                    target: crate::spans::TARGET,
                    sink = index,
                    job_id = event.job_id.as_str(),
                    attempt = event.attempt,
                    "a cost sink panicked; the other sinks still received the event"
                );
            }
        }
    }
}
