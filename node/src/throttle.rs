//! Per-address limits on the RTMP ports: concurrent connections per address, and failed
//! publishes (unknown or revoked keys) per address and minute.
//!
//! A key-guessing client is refused as before, but past `auth_failures_per_minute` failures in
//! its window each further failure is answered only after `auth_failure_delay` (a serial
//! guesser slows to one try per delay, a parallel one is held to its connection cap) and is
//! no longer written to the audit log one by one: [`AddressLedger::drain_summaries`] reports
//! it in aggregate, one row per address and window. A right key is never delayed, from any
//! address. Memory is bounded: at most `MAX_TRACKED` addresses; beyond, new addresses are not
//! tracked (their failures are audited one by one, the audit log's own bound holds).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Addresses tracked at most.
const MAX_TRACKED: usize = 10_000;
/// The failure window.
pub const WINDOW: Duration = Duration::from_secs(60);
/// Failures audited one by one per address and window before the rest are summed up.
const AUDITED_ONE_BY_ONE: u32 = 3;

/// What to do with a failed publish.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Failure {
    /// Write this failure to the audit log on its own (the first few of a window).
    pub audit: bool,
    /// Wait this long before answering (zero until the address is over its limit).
    pub delay: Duration,
}

/// One aggregated audit row: `count` failures from `addr` not audited one by one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    /// The address.
    pub addr: IpAddr,
    /// Failures summed up.
    pub count: u64,
    /// The window they fell in, as seconds so far.
    pub over_s: u64,
}

#[derive(Debug)]
struct Entry {
    window_start: Instant,
    failures: u32,
    /// Failures of this window not audited one by one and not yet summarised.
    unreported: u64,
    connections: usize,
}

/// Per-address state shared by the RTMP and RTMPS listeners.
#[derive(Debug)]
pub struct AddressLedger {
    max_connections: usize,
    failures_per_window: u32,
    failure_delay: Duration,
    entries: Mutex<HashMap<IpAddr, Entry>>,
}

/// A connection counted against its address; released on drop.
#[derive(Debug)]
pub struct ConnectionSlot {
    ledger: Arc<AddressLedger>,
    addr: IpAddr,
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        let mut map = self.ledger.lock();
        if let Some(e) = map.get_mut(&self.addr) {
            e.connections = e.connections.saturating_sub(1);
        }
    }
}

impl AddressLedger {
    /// `max_connections` per address (0: no limit), `failures_per_window` failed publishes per
    /// address and minute before delays (0: never delayed), `failure_delay` then.
    pub fn new(
        max_connections: usize,
        failures_per_window: u32,
        failure_delay: Duration,
    ) -> Arc<Self> {
        Arc::new(Self {
            max_connections,
            failures_per_window,
            failure_delay,
            entries: Mutex::new(HashMap::new()),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, Entry>> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The entry of `addr`, created if there is room (expired entries are swept first).
    fn entry(map: &mut HashMap<IpAddr, Entry>, addr: IpAddr, now: Instant) -> Option<&mut Entry> {
        if !map.contains_key(&addr) {
            if map.len() >= MAX_TRACKED {
                map.retain(|_, e| e.connections > 0 || now.duration_since(e.window_start) < WINDOW);
            }
            if map.len() >= MAX_TRACKED {
                return None;
            }
            map.insert(
                addr,
                Entry {
                    window_start: now,
                    failures: 0,
                    unreported: 0,
                    connections: 0,
                },
            );
        }
        let e = map.get_mut(&addr)?;
        if now.duration_since(e.window_start) >= WINDOW && e.unreported == 0 {
            e.window_start = now;
            e.failures = 0;
        }
        Some(e)
    }

    /// Count a new connection from `addr`; `None` when the address is at its cap.
    pub fn connect(self: &Arc<Self>, addr: IpAddr) -> Option<ConnectionSlot> {
        let mut map = self.lock();
        if let Some(e) = Self::entry(&mut map, addr, Instant::now()) {
            if self.max_connections > 0 && e.connections >= self.max_connections {
                return None;
            }
            e.connections += 1;
        }
        Some(ConnectionSlot {
            ledger: self.clone(),
            addr,
        })
    }

    /// Is `addr` over its failure limit (its connects and disconnects are not audited then)?
    pub fn is_noisy(&self, addr: IpAddr) -> bool {
        let map = self.lock();
        map.get(&addr).is_some_and(|e| {
            self.failures_per_window > 0
                && e.failures >= self.failures_per_window
                && e.window_start.elapsed() < WINDOW
        })
    }

    /// Record a failed publish from `addr`.
    pub fn failed(&self, addr: IpAddr) -> Failure {
        let mut map = self.lock();
        let Some(e) = Self::entry(&mut map, addr, Instant::now()) else {
            return Failure {
                audit: true,
                delay: Duration::ZERO,
            };
        };
        e.failures = e.failures.saturating_add(1);
        let audit = e.failures <= AUDITED_ONE_BY_ONE;
        if !audit {
            e.unreported += 1;
        }
        let over = self.failures_per_window > 0 && e.failures > self.failures_per_window;
        Failure {
            audit,
            delay: if over {
                self.failure_delay
            } else {
                Duration::ZERO
            },
        }
    }

    /// Failures not audited one by one since the last call, one [`Summary`] per address; the
    /// windows of those that ended start over. Also forgets idle addresses.
    pub fn drain_summaries(&self) -> Vec<Summary> {
        let now = Instant::now();
        let mut map = self.lock();
        let mut out = Vec::new();
        for (addr, e) in map.iter_mut() {
            if e.unreported > 0 {
                out.push(Summary {
                    addr: *addr,
                    count: e.unreported,
                    over_s: now.duration_since(e.window_start).as_secs().max(1),
                });
                e.unreported = 0;
            }
        }
        map.retain(|_, e| e.connections > 0 || now.duration_since(e.window_start) < WINDOW);
        out.sort_by_key(|s| s.addr);
        out
    }
}

/// Lets a log line through at most once per period (one clear line per cause under a flood).
#[derive(Debug)]
pub struct LogEvery {
    period: Duration,
    last: Mutex<Option<Instant>>,
}

impl LogEvery {
    /// At most once per `period`.
    pub fn new(period: Duration) -> Self {
        Self {
            period,
            last: Mutex::new(None),
        }
    }

    /// May the line be logged now?
    pub fn allow(&self) -> bool {
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        match *last {
            Some(t) if now.duration_since(t) < self.period => false,
            _ => {
                *last = Some(now);
                true
            }
        }
    }
}

/// Lets a log line through at most once per period and cause, counting what it holds back, so
/// a flood of one kind (2,000 peers that never finish the handshake) gives one line per period
/// that says how many were like it, while a different cause still gets its own line at once.
#[derive(Debug)]
pub struct LogPerCause {
    period: Duration,
    seen: Mutex<HashMap<&'static str, (Instant, u64)>>,
}

impl LogPerCause {
    /// At most once per `period` and cause.
    pub fn new(period: Duration) -> Self {
        Self {
            period,
            seen: Mutex::new(HashMap::new()),
        }
    }

    /// `Some(held_back)` when a line for `cause` may be logged now, with the number of lines
    /// of that cause held back since the previous one; `None` to hold this one back.
    pub fn allow(&self, cause: &'static str) -> Option<u64> {
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        match seen.get_mut(cause) {
            Some((last, held)) if now.duration_since(*last) < self.period => {
                *held += 1;
                None
            }
            Some((last, held)) => {
                let n = *held;
                (*last, *held) = (now, 0);
                Some(n)
            }
            None => {
                seen.insert(cause, (now, 0));
                Some(0)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn connections_are_capped_per_address_and_freed_on_drop() {
        let l = AddressLedger::new(2, 10, Duration::from_secs(1));
        let a = l.connect(ip("10.0.0.1")).unwrap();
        let _b = l.connect(ip("10.0.0.1")).unwrap();
        assert!(l.connect(ip("10.0.0.1")).is_none());
        assert!(
            l.connect(ip("10.0.0.2")).is_some(),
            "other addresses unaffected"
        );
        drop(a);
        assert!(l.connect(ip("10.0.0.1")).is_some());
    }

    #[test]
    fn failures_past_the_limit_are_delayed_and_summed_up() {
        let l = AddressLedger::new(0, 5, Duration::from_millis(700));
        let bad = ip("192.0.2.7");
        let mut audited = 0;
        for i in 1..=1000u32 {
            let f = l.failed(bad);
            audited += u32::from(f.audit);
            let want = if i > 5 {
                Duration::from_millis(700)
            } else {
                Duration::ZERO
            };
            assert_eq!(f.delay, want, "failure {i}");
        }
        assert_eq!(audited, AUDITED_ONE_BY_ONE);
        assert!(l.is_noisy(bad));
        assert!(!l.is_noisy(ip("192.0.2.8")));
        let s = l.drain_summaries();
        assert_eq!(s.len(), 1);
        assert_eq!(
            (s[0].addr, s[0].count),
            (bad, 1000 - u64::from(AUDITED_ONE_BY_ONE))
        );
        assert!(l.drain_summaries().is_empty(), "reported once");
        // Another address starts clean.
        assert_eq!(l.failed(ip("192.0.2.8")).delay, Duration::ZERO);
    }

    #[test]
    fn log_lines_are_rate_limited() {
        let l = LogEvery::new(Duration::from_secs(60));
        assert!(l.allow());
        assert!(!l.allow());
    }

    #[test]
    fn log_lines_are_rate_limited_per_cause_and_count_what_was_held_back() {
        let l = LogPerCause::new(Duration::from_millis(50));
        assert_eq!(l.allow("timeout"), Some(0));
        assert_eq!(l.allow("timeout"), None);
        assert_eq!(l.allow("timeout"), None);
        // Another cause is not held back by the first.
        assert_eq!(l.allow("protocol"), Some(0));
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(l.allow("timeout"), Some(2));
        assert_eq!(l.allow("timeout"), None);
    }

    #[test]
    fn tracking_is_bounded() {
        let l = AddressLedger::new(0, 1, Duration::from_secs(1));
        for i in 0..(MAX_TRACKED as u32 + 50) {
            let addr = IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000 + i));
            l.failed(addr);
        }
        assert!(l.lock().len() <= MAX_TRACKED);
        // Untracked addresses are still audited one by one.
        let f = l.failed(ip("203.0.113.1"));
        assert!(f.audit && f.delay.is_zero());
    }
}
