//! `--idle-timeout`: the runtime ends itself (as on SIGTERM: its processes end with it) once it has
//! been idle that long: no request in flight or arriving (a streaming response counts until its body
//! ends), and no managed process or terminal running. For hosts where nothing else would ever stop
//! it (the ssh provider's machines); off by default.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;

/// When the last request came or went, and how many are in flight.
#[derive(Debug)]
pub(crate) struct Activity {
    start: Instant,
    last_ms: AtomicU64,
    in_flight: AtomicUsize,
}

impl Activity {
    pub(crate) fn new() -> Arc<Self> {
        Arc::new(Self { start: Instant::now(), last_ms: AtomicU64::new(0), in_flight: AtomicUsize::new(0) })
    }

    fn touch(&self) {
        self.last_ms.store(self.start.elapsed().as_millis() as u64, Ordering::Relaxed);
    }

    /// How long nothing has happened (zero while a request is in flight).
    pub(crate) fn idle_for(&self) -> Duration {
        if self.in_flight.load(Ordering::SeqCst) > 0 {
            return Duration::ZERO;
        }
        let now = self.start.elapsed().as_millis() as u64;
        Duration::from_millis(now.saturating_sub(self.last_ms.load(Ordering::Relaxed)))
    }
}

/// Counts a request as in flight until its response body is done (or dropped).
struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.touch();
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The middleware that feeds [`Activity`].
pub(crate) async fn track(State(activity): State<Arc<Activity>>, req: Request, next: Next) -> Response {
    activity.in_flight.fetch_add(1, Ordering::SeqCst);
    activity.touch();
    let guard = InFlight(activity);
    let resp = next.run(req).await;
    let (parts, body) = resp.into_parts();
    let stream = futures::StreamExt::map(body.into_data_stream(), move |chunk| {
        let _keep = &guard;
        chunk
    });
    Response::from_parts(parts, Body::from_stream(stream))
}

/// Resolves once the runtime has been idle for `limit` (checked a few times per `limit`, at least
/// every 30 s).
pub(crate) async fn idle(activity: Arc<Activity>, state: super::AppState, limit: Duration) {
    let every = (limit / 4).clamp(Duration::from_millis(100), Duration::from_secs(30));
    loop {
        tokio::time::sleep(every).await;
        if activity.idle_for() >= limit && !state.processes().busy() {
            tracing::info!(after_secs = limit.as_secs(), "idle: no request and no process; ending");
            return;
        }
    }
}
