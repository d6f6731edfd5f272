//! The cookieless visitor id: SHA-256 over (daily salt, site, client address, user agent), cut to 16 bytes.
//!
//! The salt changes every UTC day, so ids cannot be linked across days, and the address never
//! leaves this function. A visit that is going on at midnight keeps yesterday's id: in the
//! hours after a rotation the id under yesterday's salt is also computed, and used if that id
//! was active within the session timeout.

use std::net::IpAddr;
use std::sync::Arc;

use quick_cache::sync::Cache;
use sha2::{Digest, Sha256};

use crate::clock::SharedClock;
use crate::keys::Salts;

/// Inactivity after which a visit is over (the tracker's session timeout too).
pub const SESSION_TIMEOUT_MS: i64 = 30 * 60 * 1000;
/// How long after midnight yesterday's ids may still continue.
pub const CONTINUATION_WINDOW_MS: i64 = 6 * 60 * 60 * 1000;

pub struct VisitorHasher {
    salts: Arc<Salts>,
    clock: SharedClock,
    /// Ids active around midnight, with when they were last seen.
    recent: Cache<[u8; 16], i64>,
}

impl VisitorHasher {
    pub fn new(salts: Arc<Salts>, clock: SharedClock, recent_capacity: usize) -> Self {
        Self {
            salts,
            clock,
            recent: Cache::new(recent_capacity.max(16)),
        }
    }

    /// The visitor id for this request.
    pub fn visitor_id(&self, site: &str, ip: IpAddr, user_agent: &str) -> [u8; 16] {
        let now = self.clock.now_ms();
        let (today, yesterday) = self.salts.current();
        let since_midnight = now.rem_euclid(86_400_000);
        let id_today = hash(&today.salt, site, ip, user_agent);

        if since_midnight < CONTINUATION_WINDOW_MS {
            if let Some(prev) = yesterday {
                let id_prev = hash(&prev.salt, site, ip, user_agent);
                if let Some(last_seen) = self.recent.get(&id_prev) {
                    if now - last_seen <= SESSION_TIMEOUT_MS {
                        self.recent.insert(id_prev, now);
                        return id_prev;
                    }
                }
            }
            self.recent.insert(id_today, now);
        } else if 86_400_000 - since_midnight <= SESSION_TIMEOUT_MS {
            // Only visits active in the last half hour of the day can continue past midnight.
            self.recent.insert(id_today, now);
        }
        id_today
    }
}

fn hash(salt: &[u8; 32], site: &str, ip: IpAddr, user_agent: &str) -> [u8; 16] {
    let mut h = Sha256::new();
    h.update(salt);
    h.update((site.len() as u32).to_le_bytes());
    h.update(site.as_bytes());
    match ip {
        IpAddr::V4(v4) => h.update(v4.octets()),
        IpAddr::V6(v6) => h.update(v6.octets()),
    }
    h.update(user_agent.as_bytes());
    let full = h.finalize();
    let mut id = [0u8; 16];
    id.copy_from_slice(&full[..16]);
    id
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;

    const DAY: i64 = 86_400_000;
    const MIN: i64 = 60_000;

    fn setup(now: i64) -> (tempfile::TempDir, ManualClock, VisitorHasher) {
        let dir = tempfile::tempdir().unwrap();
        let clock = ManualClock::new(now);
        let shared: SharedClock = Arc::new(clock.clone());
        let salts = Arc::new(Salts::open(dir.path(), shared.clone()).unwrap());
        (dir, clock, VisitorHasher::new(salts, shared, 1024))
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn same_visitor_same_day_same_id() {
        let (_d, clock, v) = setup(100 * DAY + 10 * 60 * MIN);
        let a = v.visitor_id("shop", ip("198.51.100.1"), "UA");
        clock.advance(3 * 60 * MIN);
        assert_eq!(v.visitor_id("shop", ip("198.51.100.1"), "UA"), a);
    }

    #[test]
    fn site_address_and_agent_all_matter() {
        let (_d, _c, v) = setup(100 * DAY + 10 * 60 * MIN);
        let a = v.visitor_id("shop", ip("198.51.100.1"), "UA");
        assert_ne!(v.visitor_id("blog", ip("198.51.100.1"), "UA"), a);
        assert_ne!(v.visitor_id("shop", ip("198.51.100.2"), "UA"), a);
        assert_ne!(v.visitor_id("shop", ip("198.51.100.1"), "UA2"), a);
    }

    #[test]
    fn ids_do_not_link_across_days() {
        let (_d, clock, v) = setup(100 * DAY + 12 * 60 * MIN);
        let a = v.visitor_id("shop", ip("198.51.100.1"), "UA");
        clock.advance(DAY);
        assert_ne!(v.visitor_id("shop", ip("198.51.100.1"), "UA"), a);
    }

    #[test]
    fn a_visit_across_midnight_keeps_its_id() {
        let (_d, clock, v) = setup(101 * DAY - 10 * MIN);
        let before = v.visitor_id("shop", ip("198.51.100.1"), "UA");
        clock.advance(20 * MIN); // 00:10 next day
        let after = v.visitor_id("shop", ip("198.51.100.1"), "UA");
        assert_eq!(after, before);
        clock.advance(25 * MIN); // still active: 00:35
        assert_eq!(v.visitor_id("shop", ip("198.51.100.1"), "UA"), before);
        clock.advance(31 * MIN); // inactive for longer than a session: a new visit, today's id
        let later = v.visitor_id("shop", ip("198.51.100.1"), "UA");
        assert_ne!(later, before);
    }

    #[test]
    fn a_new_visitor_after_midnight_gets_todays_id() {
        let (_d, clock, v) = setup(101 * DAY - 10 * MIN);
        v.visitor_id("shop", ip("198.51.100.1"), "UA");
        clock.advance(20 * MIN);
        let other = v.visitor_id("shop", ip("198.51.100.9"), "UA");
        let (today, _) = v.salts.current();
        assert_eq!(other, hash(&today.salt, "shop", ip("198.51.100.9"), "UA"));
    }
}
