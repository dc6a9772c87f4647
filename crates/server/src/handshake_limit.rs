//! Per-IP limit on failed WebSocket handshakes: after `limit` failures within a minute, an IP
//! gets 429 with `Retry-After` until its minute is over, without its credentials being looked
//! at. Memory is bounded: at most [`MAX_TRACKED_IPS`] addresses are tracked; when full, expired
//! entries are swept, then the entry with the oldest window makes room. IPv6 addresses count
//! per /64, the block one host is usually given, so a host cannot dodge the limit by cycling
//! through its own addresses.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv6Addr};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Most addresses tracked at once (≈ 50 bytes each).
pub const MAX_TRACKED_IPS: usize = 10_000;
const WINDOW: Duration = Duration::from_secs(60);

struct Entry {
    window_start: Instant,
    failures: u32,
}

/// The address a failure is counted against: IPv4 as is (also when IPv4-mapped), IPv6 by /64.
pub(crate) fn client_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(Ipv6Addr::from(v6.to_bits() & !u128::from(u64::MAX))),
        },
    }
}

pub struct HandshakeLimiter {
    limit: u32,
    max_ips: usize,
    ips: Mutex<HashMap<IpAddr, Entry>>,
}

impl HandshakeLimiter {
    pub fn new(limit: u32) -> Self {
        Self::with_capacity(limit, MAX_TRACKED_IPS)
    }

    fn with_capacity(limit: u32, max_ips: usize) -> Self {
        Self {
            limit,
            max_ips,
            ips: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, Entry>> {
        // A panic while holding this lock cannot leave the map inconsistent: keep going.
        crate::sync::lock(&self.ips)
    }

    /// `Some(seconds to wait)` when `ip` has used up its failures for this minute.
    pub fn blocked(&self, ip: IpAddr) -> Option<u64> {
        let ip = client_key(ip);
        let ips = self.lock();
        let e = ips.get(&ip)?;
        let elapsed = e.window_start.elapsed();
        if elapsed >= WINDOW || e.failures < self.limit {
            return None;
        }
        Some((WINDOW - elapsed).as_secs().max(1))
    }

    /// Counts one failed handshake from `ip`.
    pub fn record_failure(&self, ip: IpAddr) {
        let ip = client_key(ip);
        let mut ips = self.lock();
        let now = Instant::now();
        if !ips.contains_key(&ip) && ips.len() >= self.max_ips {
            ips.retain(|_, e| now.duration_since(e.window_start) < WINDOW);
            if ips.len() >= self.max_ips
                && let Some(oldest) = ips
                    .iter()
                    .min_by_key(|(_, e)| e.window_start)
                    .map(|(ip, _)| *ip)
            {
                ips.remove(&oldest);
            }
        }
        let e = ips.entry(ip).or_insert(Entry {
            window_start: now,
            failures: 0,
        });
        if now.duration_since(e.window_start) >= WINDOW {
            e.window_start = now;
            e.failures = 0;
        }
        e.failures = e.failures.saturating_add(1);
    }

    pub fn tracked(&self) -> usize {
        self.lock().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(n: u32) -> IpAddr {
        IpAddr::from(n.to_be_bytes())
    }

    #[test]
    fn blocks_after_the_limit_and_only_that_ip() {
        let l = HandshakeLimiter::new(3);
        for _ in 0..2 {
            l.record_failure(ip(1));
        }
        assert_eq!(l.blocked(ip(1)), None);
        l.record_failure(ip(1));
        let wait = l.blocked(ip(1)).expect("blocked after 3 failures");
        assert!((1..=60).contains(&wait));
        assert_eq!(l.blocked(ip(2)), None);
    }

    #[test]
    fn ipv6_counts_per_64_and_mapped_ipv4_as_ipv4() {
        let l = HandshakeLimiter::new(2);
        l.record_failure("2001:db8:1:2::1".parse().unwrap());
        l.record_failure("2001:db8:1:2:ffff::9".parse().unwrap());
        assert!(l.blocked("2001:db8:1:2::77".parse().unwrap()).is_some());
        assert!(l.blocked("2001:db8:1:3::1".parse().unwrap()).is_none());
        l.record_failure("::ffff:10.0.0.1".parse().unwrap());
        l.record_failure("10.0.0.1".parse().unwrap());
        assert!(l.blocked("10.0.0.1".parse().unwrap()).is_some());
    }

    #[test]
    fn tracked_ips_stay_bounded() {
        let l = HandshakeLimiter::with_capacity(1, 100);
        for n in 0..1_000 {
            l.record_failure(ip(n));
        }
        assert_eq!(l.tracked(), 100);
        assert!(l.blocked(ip(999)).is_some(), "the newest IP is tracked");
    }
}
