//! Keyed hashes of the identifiers footfall stores or records: user ids, client ids, audit subjects.
//!
//! A site-assigned user id or a first-party client id is never stored as sent: the column holds
//! HMAC-SHA-256(secret, purpose, site, value) cut to 16 bytes, in hex. The same function turns an
//! identifier given by an operator for a subject request into what is stored, so lookups work
//! without the clear value ever being written.

use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// What a hash is for; part of the hashed input so the same value gives unrelated hashes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    UserId,
    ClientId,
    /// An identifier named in an audit record.
    Audit,
}

impl Purpose {
    fn tag(self) -> &'static [u8] {
        match self {
            Purpose::UserId => b"footfall/uid/v1",
            Purpose::ClientId => b"footfall/cid/v1",
            Purpose::Audit => b"footfall/audit/v1",
        }
    }
}

/// The keyed hasher, prepared once from the secret (cloning a prepared HMAC skips the key schedule).
#[derive(Clone)]
pub struct IdHasher {
    keyed: HmacSha256,
}

impl IdHasher {
    pub fn new(secret: &[u8]) -> Self {
        Self {
            // HMAC accepts keys of any length.
            keyed: <HmacSha256 as Mac>::new_from_slice(secret).unwrap_or_else(|_| unreachable!()),
        }
    }

    /// The stored form of `value`: 32 lowercase hex digits, or empty for an empty value.
    pub fn hash(&self, purpose: Purpose, site: &str, value: &str) -> String {
        if value.is_empty() {
            return String::new();
        }
        let mut mac = self.keyed.clone();
        for part in [purpose.tag(), site.as_bytes(), value.as_bytes()] {
            // Length-prefixed, so ("ab","c") and ("a","bc") differ.
            mac.update(&(part.len() as u32).to_le_bytes());
            mac.update(part);
        }
        let out = mac.finalize().into_bytes();
        hex::encode(&out[..16])
    }

    /// An HMAC over `parts` (for record integrity, e.g. audit rows), in hex.
    pub fn mac(&self, parts: &[&str]) -> String {
        let mut mac = self.keyed.clone();
        mac.update(b"footfall/mac/v1");
        for part in parts {
            mac.update(&(part.len() as u32).to_le_bytes());
            mac.update(part.as_bytes());
        }
        hex::encode(mac.finalize().into_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_are_keyed_scoped_and_stable() {
        let h = IdHasher::new(b"secret");
        let a = h.hash(Purpose::UserId, "shop", "alice@example.com");
        assert_eq!(a.len(), 32);
        assert!(a.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_eq!(a, h.hash(Purpose::UserId, "shop", "alice@example.com"));
        assert_ne!(a, h.hash(Purpose::ClientId, "shop", "alice@example.com"));
        assert_ne!(a, h.hash(Purpose::UserId, "demo", "alice@example.com"));
        assert_ne!(
            a,
            IdHasher::new(b"other").hash(Purpose::UserId, "shop", "alice@example.com")
        );
        assert_ne!(
            h.hash(Purpose::UserId, "ab", "c"),
            h.hash(Purpose::UserId, "a", "bc")
        );
        assert_eq!(h.hash(Purpose::UserId, "shop", ""), "");
        assert!(!a.contains("alice"));
    }

    #[test]
    fn macs_change_with_any_part() {
        let h = IdHasher::new(b"secret");
        let m = h.mac(&["a", "b"]);
        assert_eq!(m.len(), 64);
        assert_ne!(m, h.mac(&["a", "c"]));
        assert_ne!(m, h.mac(&["ab", ""]));
    }
}
