//! The nonces of runner credentials accepted recently, so that each is accepted once.
//!
//! A credential is accepted only within its freshness window, so its nonce needs remembering only until the window
//! has passed: entries expire then and memory stays bounded by the rate of accepted credentials. When the cache is
//! full of entries that have not expired, new credentials are refused rather than old entries forgotten: forgetting
//! one would let its credential be replayed.

use std::collections::{BTreeSet, HashSet};

use sha2::{Digest as _, Sha256};

/// Nonces are kept as the first 16 bytes of their SHA-256: a fixed size whatever the nonce's length, and a collision
/// (which would refuse a genuine credential, never accept a forged one) is out of reach.
type Key = [u8; 16];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The nonce was seen within the window.
    Replayed,
    /// The cache holds `capacity` unexpired nonces.
    Full { capacity: usize },
}

#[derive(Debug)]
pub struct ReplayCache {
    capacity: usize,
    seen: HashSet<Key>,
    /// The same keys ordered by when they may be forgotten (unix seconds).
    expiries: BTreeSet<(i64, Key)>,
}

impl ReplayCache {
    pub fn new(capacity: usize) -> Self {
        ReplayCache {
            capacity,
            seen: HashSet::new(),
            expiries: BTreeSet::new(),
        }
    }

    /// Remembers `nonce` until `expires` (unix seconds) unless it was seen before or the cache is full; `now` is the
    /// current time, before which expired entries are forgotten.
    pub fn admit(&mut self, nonce: &str, expires: i64, now: i64) -> Result<(), Refusal> {
        while let Some(&(at, key)) = self.expiries.first() {
            if at >= now {
                break;
            }
            self.expiries.pop_first();
            self.seen.remove(&key);
        }
        let digest = Sha256::digest(nonce.as_bytes());
        let key: Key = digest[..16].try_into().expect("SHA-256 is 32 bytes");
        if self.seen.contains(&key) {
            return Err(Refusal::Replayed);
        }
        if self.seen.len() >= self.capacity {
            return Err(Refusal::Full {
                capacity: self.capacity,
            });
        }
        self.seen.insert(key);
        self.expiries.insert((expires, key));
        Ok(())
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.seen.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_nonce_is_admitted_once_until_it_expires() {
        let mut cache = ReplayCache::new(10);
        assert_eq!(cache.admit("aa", 100, 50), Ok(()));
        assert_eq!(cache.admit("aa", 100, 60), Err(Refusal::Replayed));
        assert_eq!(
            cache.admit("aa", 100, 100),
            Err(Refusal::Replayed),
            "still remembered at expiry"
        );
        assert_eq!(cache.admit("aa", 200, 101), Ok(()), "forgotten after it");
    }

    #[test]
    fn a_full_cache_refuses_instead_of_forgetting_unexpired_nonces() {
        let mut cache = ReplayCache::new(2);
        cache.admit("a", 100, 0).unwrap();
        cache.admit("b", 100, 0).unwrap();
        assert_eq!(cache.admit("c", 100, 0), Err(Refusal::Full { capacity: 2 }));
        assert_eq!(cache.admit("a", 100, 0), Err(Refusal::Replayed));
        // Once the first two expire, there is room again.
        assert_eq!(cache.admit("c", 300, 101), Ok(()));
        assert_eq!(cache.len(), 1);
    }
}
