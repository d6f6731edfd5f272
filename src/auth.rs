//! Bearer tokens for the admin and stats APIs: hashed in configuration, compared in constant time,
//! with failed attempts rate-limited per client and an unauthorised-access alert.

use std::collections::VecDeque;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use governor::{DefaultKeyedRateLimiter, Quota};
use quick_cache::sync::Cache;
use rand::RngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::config::AdminConfig;

/// What a token may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Read statistics (dashboards, `/api/stats`).
    Stats,
    /// Act on data-subject requests (`/api/admin/subjects`).
    Subjects,
    /// Everything, including retention runs and reading the audit log.
    Admin,
}

impl Scope {
    pub fn parse(s: &str) -> Option<Scope> {
        match s {
            "stats" => Some(Scope::Stats),
            "subjects" => Some(Scope::Subjects),
            "admin" => Some(Scope::Admin),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Scope::Stats => "stats",
            Scope::Subjects => "subjects",
            Scope::Admin => "admin",
        }
    }
}

/// Who made a request: the token's name, recorded in the audit log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub name: String,
    scopes: Vec<Scope>,
}

impl Principal {
    pub fn new(name: impl Into<String>, scopes: Vec<Scope>) -> Self {
        Self {
            name: name.into(),
            scopes,
        }
    }

    pub fn may(&self, scope: Scope) -> bool {
        self.scopes.contains(&scope) || self.scopes.contains(&Scope::Admin)
    }
}

/// Why a request was not authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthFailure {
    /// No `Authorization: Bearer` header.
    Missing,
    /// A token that matches none configured.
    Invalid,
    /// A valid token without the scope the route needs.
    Forbidden,
}

impl AuthFailure {
    pub fn as_str(self) -> &'static str {
        match self {
            AuthFailure::Missing => "missing",
            AuthFailure::Invalid => "invalid",
            AuthFailure::Forbidden => "forbidden",
        }
    }
}

struct Entry {
    name: String,
    hash: [u8; 32],
    scopes: Vec<Scope>,
}

/// The configured tokens.
pub struct Tokens {
    entries: Vec<Entry>,
}

/// Hex SHA-256 of a token, as stored in the configuration.
pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// A new random token (256 bits, hex).
pub fn new_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    format!("ff_{}", hex::encode(bytes))
}

impl Tokens {
    pub fn from_config(c: &AdminConfig) -> Result<Self, String> {
        let mut entries = Vec::new();
        for t in &c.tokens {
            let mut hash = [0u8; 32];
            hex::decode_to_slice(t.sha256.trim(), &mut hash).map_err(|_| {
                format!(
                    "admin token {:?}: sha256 must be 64 hex digits (footfall token new)",
                    t.name
                )
            })?;
            let scopes = t
                .scopes
                .iter()
                .map(|s| {
                    Scope::parse(s).ok_or_else(|| {
                        format!(
                            "admin token {:?}: unknown scope {s:?} (stats, subjects, admin)",
                            t.name
                        )
                    })
                })
                .collect::<Result<Vec<_>, _>>()?;
            if t.name.trim().is_empty() || scopes.is_empty() {
                return Err("every admin token needs a name and at least one scope".into());
            }
            entries.push(Entry {
                name: t.name.clone(),
                hash,
                scopes,
            });
        }
        if let Some(token) = &c.bootstrap_token {
            entries.push(Entry {
                name: "bootstrap".into(),
                hash: Sha256::digest(token.as_bytes()).into(),
                scopes: vec![Scope::Admin],
            });
        }
        Ok(Self { entries })
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The principal for an `Authorization` header value. Every configured hash is compared,
    /// in constant time, whatever matches first.
    pub fn authenticate(&self, header: Option<&str>) -> Result<Principal, AuthFailure> {
        let token = header
            .and_then(|h| {
                let (scheme, rest) = h.trim().split_once(' ')?;
                scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
            })
            .filter(|t| !t.is_empty())
            .ok_or(AuthFailure::Missing)?;
        let presented: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let mut found: Option<&Entry> = None;
        for e in &self.entries {
            if bool::from(e.hash.ct_eq(&presented)) && found.is_none() {
                found = Some(e);
            }
        }
        found
            .map(|e| Principal::new(e.name.clone(), e.scopes.clone()))
            .ok_or(AuthFailure::Invalid)
    }
}

/// Failed-attempt bookkeeping: a per-client limiter, clients locked out for a minute, and the
/// recent failures behind the alert.
pub struct FailureGuard {
    limiter: DefaultKeyedRateLimiter<IpAddr>,
    locked: Cache<IpAddr, Instant>,
    recent: Mutex<VecDeque<Instant>>,
    alert_threshold: usize,
}

/// The window the alert looks at.
pub const ALERT_WINDOW: Duration = Duration::from_secs(300);
/// How long a client that failed too often is refused.
pub const LOCKOUT: Duration = Duration::from_secs(60);

impl FailureGuard {
    pub fn new(per_minute: u32, alert_threshold: u32) -> Self {
        let per_minute = NonZeroU32::new(per_minute.max(1)).unwrap_or(NonZeroU32::MIN);
        Self {
            limiter: governor::RateLimiter::keyed(Quota::per_minute(per_minute)),
            locked: Cache::new(10_000),
            recent: Mutex::new(VecDeque::new()),
            alert_threshold: alert_threshold.max(1) as usize,
        }
    }

    /// Seconds until `client` may try again, if it is locked out.
    pub fn locked_for(&self, client: IpAddr) -> Option<u64> {
        let until = self.locked.get(&client)?;
        let now = Instant::now();
        (until > now).then(|| (until - now).as_secs().max(1))
    }

    /// Records a failure; returns whether `client` is now locked out.
    pub fn failed(&self, client: IpAddr) -> bool {
        let now = Instant::now();
        {
            let mut recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
            recent.push_back(now);
            while recent.len() > self.alert_threshold {
                recent.pop_front();
            }
        }
        if self.limiter.check_key(&client).is_err() {
            self.locked.insert(client, now + LOCKOUT);
            self.limiter.retain_recent();
            return true;
        }
        false
    }

    /// Whether at least `alert_threshold` failures happened within the last five minutes.
    pub fn alerting(&self) -> bool {
        let recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
        recent.len() >= self.alert_threshold
            && recent.front().is_some_and(|t| t.elapsed() <= ALERT_WINDOW)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::TokenConfig;

    fn tokens() -> Tokens {
        Tokens::from_config(&AdminConfig {
            tokens: vec![TokenConfig {
                name: "analyst".into(),
                sha256: token_hash("read-only"),
                scopes: vec!["stats".into()],
            }],
            bootstrap_token: Some("root-token".into()),
            ..AdminConfig::default()
        })
        .unwrap()
    }

    #[test]
    fn bearer_tokens_map_to_named_scoped_principals() {
        let t = tokens();
        let p = t.authenticate(Some("Bearer read-only")).unwrap();
        assert_eq!(p.name, "analyst");
        assert!(p.may(Scope::Stats) && !p.may(Scope::Subjects) && !p.may(Scope::Admin));
        let root = t.authenticate(Some("bearer  root-token ")).unwrap();
        assert_eq!(root.name, "bootstrap");
        assert!(root.may(Scope::Subjects) && root.may(Scope::Stats));
        assert_eq!(t.authenticate(None), Err(AuthFailure::Missing));
        assert_eq!(t.authenticate(Some("Basic abc")), Err(AuthFailure::Missing));
        assert_eq!(t.authenticate(Some("Bearer ")), Err(AuthFailure::Missing));
        assert_eq!(
            t.authenticate(Some("Bearer read-onlY")),
            Err(AuthFailure::Invalid)
        );
    }

    #[test]
    fn bad_token_configuration_is_refused() {
        let bad = |sha256: &str, scope: &str| {
            Tokens::from_config(&AdminConfig {
                tokens: vec![TokenConfig {
                    name: "x".into(),
                    sha256: sha256.into(),
                    scopes: vec![scope.into()],
                }],
                ..AdminConfig::default()
            })
            .err()
        };
        assert!(bad("abc", "stats").unwrap().contains("64 hex digits"));
        assert!(bad(&token_hash("t"), "root")
            .unwrap()
            .contains("unknown scope"));
        assert!(bad(&token_hash("t"), "stats").is_none());
    }

    #[test]
    fn new_tokens_are_long_and_distinct() {
        let (a, b) = (new_token(), new_token());
        assert_ne!(a, b);
        assert_eq!(a.len(), 67);
    }

    #[test]
    fn repeated_failures_lock_the_client_out_and_raise_the_alert() {
        let g = FailureGuard::new(3, 5);
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let other: IpAddr = "192.0.2.2".parse().unwrap();
        assert!(!g.failed(ip) && !g.failed(ip) && !g.failed(ip));
        assert!(g.locked_for(ip).is_none());
        assert!(g.failed(ip), "the fourth failure in a minute locks out");
        assert!(g.locked_for(ip).is_some_and(|s| s <= 60));
        assert!(g.locked_for(other).is_none());
        assert!(!g.alerting());
        g.failed(other);
        assert!(g.alerting(), "five failures in five minutes");
    }
}
