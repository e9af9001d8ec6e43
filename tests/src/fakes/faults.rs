//! Injected faults and per-route hit counts, shared by the fakes whose routes are named
//! `"<METHOD> <pattern>"` (Daytona, Vercel): a test (or `POST /_fake/fail` from another process)
//! queues "answer the next N requests to this route with this status", and reads how many requests
//! reached a route.

use std::collections::HashMap;
use std::sync::Mutex;

use serde::Deserialize;

struct Fault {
    route: String,
    status: u16,
    retry_after: Option<u64>,
    times: usize,
}

/// The pending faults and the hit counts of one fake.
#[derive(Default)]
pub(crate) struct Faults {
    pending: Mutex<Vec<Fault>>,
    hits: Mutex<HashMap<String, usize>>,
}

/// The body of `POST /_fake/fail`.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct InjectBody {
    route: String,
    status: u16,
    retry_after: Option<u64>,
    times: Option<usize>,
}

impl Faults {
    /// Makes the next `times` requests to `route` answer `status` (with `Retry-After` when given).
    pub(crate) fn push(&self, route: &str, status: u16, retry_after: Option<u64>, times: usize) {
        self.pending.lock().unwrap().push(Fault { route: route.to_owned(), status, retry_after, times });
    }

    /// [`Self::push`] from a `POST /_fake/fail` body (`times` defaults to, and is at least, 1).
    pub(crate) fn inject(&self, b: InjectBody) {
        self.push(&b.route, b.status, b.retry_after, b.times.unwrap_or(1).max(1));
    }

    /// Forgets every pending fault.
    pub(crate) fn clear(&self) {
        self.pending.lock().unwrap().clear();
    }

    /// Counts one request to `route`.
    pub(crate) fn count(&self, route: &str) {
        *self.hits.lock().unwrap().entry(route.to_owned()).or_default() += 1;
    }

    /// How many requests reached `route` (faulted ones included).
    pub(crate) fn hits(&self, route: &str) -> usize {
        self.hits.lock().unwrap().get(route).copied().unwrap_or(0)
    }

    /// Uses up one pending fault for `route`: its status and `Retry-After` seconds.
    pub(crate) fn take(&self, route: &str) -> Option<(u16, Option<u64>)> {
        let mut pending = self.pending.lock().unwrap();
        let i = pending.iter().position(|f| f.route == route)?;
        let f = &mut pending[i];
        f.times -= 1;
        let out = (f.status, f.retry_after);
        if f.times == 0 {
            pending.remove(i);
        }
        Some(out)
    }
}
