//! `hosts:` in `sbx.yaml`: the SSH hosts a run's `provider: ssh` tasks spread over. Each task takes
//! a lease on the least busy host with a free slot when it starts and gives it back when its sandbox
//! is down; a host's `concurrency` caps how many of the run's tasks it holds at once (default: no cap
//! beyond the run's own concurrency).

use std::sync::Mutex;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// One host: `me@box` (a destination or a `~/.ssh/config` alias), or `{host: me@box, concurrency: 2}`.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(untagged)]
pub enum HostEntry {
    /// A host with no cap of its own.
    Name(String),
    /// A host with a cap.
    Capped(CappedHost),
}

/// A host and how many of the run's tasks it holds at once.
#[derive(Debug, Clone, Deserialize, Serialize, JsonSchema, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct CappedHost {
    /// `[user@]host[:port]` or a `~/.ssh/config` alias.
    pub host: String,
    /// At most this many tasks at once (at least 1).
    pub concurrency: usize,
}

impl HostEntry {
    fn parts(&self) -> (&str, usize) {
        match self {
            Self::Name(h) => (h, usize::MAX),
            Self::Capped(c) => (&c.host, c.concurrency),
        }
    }

    /// What is wrong with it, if anything.
    pub fn problem(&self) -> Option<String> {
        let (host, cap) = self.parts();
        if host.trim().is_empty() {
            return Some("a host is empty".into());
        }
        (cap == 0).then(|| format!("host `{host}` has concurrency 0 (at least 1)"))
    }
}

struct Slot {
    host: String,
    cap: usize,
    running: usize,
}

/// The run's hosts and how many tasks each holds now.
pub struct HostPool {
    slots: Mutex<Vec<Slot>>,
    freed: tokio::sync::Notify,
}

/// A task's hold on a host, given back on drop.
pub struct Lease<'a> {
    pool: &'a HostPool,
    index: usize,
    /// The host.
    pub host: String,
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        self.pool.slots.lock().unwrap_or_else(|e| e.into_inner())[self.index].running -= 1;
        self.pool.freed.notify_waiters();
    }
}

impl HostPool {
    /// A pool of `entries` (`None` when there are none). A host named twice counts once.
    pub fn new(entries: &[HostEntry]) -> Option<Self> {
        let mut slots: Vec<Slot> = Vec::new();
        for e in entries {
            let (host, cap) = e.parts();
            match slots.iter_mut().find(|s| s.host == host) {
                Some(s) => s.cap = s.cap.min(cap),
                None => slots.push(Slot { host: host.to_owned(), cap, running: 0 }),
            }
        }
        (!slots.is_empty()).then(|| Self { slots: Mutex::new(slots), freed: tokio::sync::Notify::new() })
    }

    /// Waits for a free slot and takes it on the least busy host (the first listed on a tie).
    pub async fn acquire(&self) -> Lease<'_> {
        loop {
            let freed = self.freed.notified();
            tokio::pin!(freed);
            // Registered before looking, so a lease given back meanwhile still wakes this task.
            freed.as_mut().enable();
            {
                let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
                let pick = slots.iter().enumerate().filter(|(_, s)| s.running < s.cap).min_by_key(|(i, s)| (s.running, *i)).map(|(i, _)| i);
                if let Some(index) = pick {
                    slots[index].running += 1;
                    return Lease { pool: self, index, host: slots[index].host.clone() };
                }
            }
            freed.await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pool(yaml: &str) -> HostPool {
        HostPool::new(&serde_yaml_ng::from_str::<Vec<HostEntry>>(yaml).unwrap()).unwrap()
    }

    #[tokio::test]
    async fn leases_go_to_the_least_busy_host_and_wait_for_a_free_slot() {
        let p = pool("[a, {host: b, concurrency: 1}]");
        let first = p.acquire().await;
        let second = p.acquire().await;
        let third = p.acquire().await;
        assert_eq!([&first.host, &second.host, &third.host], ["a", "b", "a"]);
        // b is full: the next ones go to a until b is free again.
        let fourth = p.acquire().await;
        assert_eq!(fourth.host, "a");
        drop(second);
        assert_eq!(p.acquire().await.host, "b");

        let capped = pool("[{host: only, concurrency: 1}]");
        let held = capped.acquire().await;
        let waiting = tokio::time::timeout(std::time::Duration::from_millis(50), capped.acquire()).await;
        assert!(waiting.is_err(), "a full pool waits");
        drop(held);
        assert_eq!(tokio::time::timeout(std::time::Duration::from_secs(1), capped.acquire()).await.expect("freed").host, "only");
        assert!(HostPool::new(&[]).is_none());
        assert!(HostEntry::Capped(CappedHost { host: "x".into(), concurrency: 0 }).problem().is_some());
    }
}
