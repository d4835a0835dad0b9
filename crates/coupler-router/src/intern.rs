//! A compact string interner for the routing table's hot lookups.
//!
//! Strings live back to back in one buffer, and the map is keyed by each string's 64-bit
//! hash, so a lookup touches the map and that buffer only, never a scattered heap string.
//! A hit is confirmed by comparing the bytes, so an unknown string whose hash collides with a
//! known one is still reported unknown. Two known strings with one hash would make one of them
//! unreachable, so building retries with another seed until all hashes are distinct.

use std::collections::HashMap;
use std::hash::{BuildHasher, BuildHasherDefault, Hasher};

use foldhash::fast::FixedState;

/// The map's keys are already hashes; hashing them again would waste time.
#[derive(Debug, Default)]
struct PassThrough(u64);

impl Hasher for PassThrough {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        // Only u64 keys are hashed; fold anything else in for completeness.
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

#[derive(Debug)]
pub(crate) struct Interner {
    state: FixedState,
    ids: HashMap<u64, u32, BuildHasherDefault<PassThrough>>,
    /// `(tag, start, len)` of each string in `bytes`.
    spans: Vec<(u32, u32, u32)>,
    bytes: Vec<u8>,
}

/// A string and a tag that tells apart equal strings of different kinds.
pub(crate) type Key<'a> = (u32, &'a [u8]);

fn hash(state: &FixedState, (tag, s): Key<'_>) -> u64 {
    let mut h = state.build_hasher();
    h.write_u32(tag);
    h.write(s);
    h.finish()
}

/// The hash the routing table uses for topic levels.
pub(crate) fn hash_bytes(state: &FixedState, s: &[u8]) -> u64 {
    let mut h = state.build_hasher();
    h.write(s);
    h.finish()
}

/// Seeds to try in turn until the hashes of a set of strings are distinct.
pub(crate) fn seeds() -> impl Iterator<Item = u64> {
    std::iter::successors(Some(0x9e37_79b9_7f4a_7c15_u64), |s| {
        Some(s.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1))
    })
}

impl Default for Interner {
    fn default() -> Self {
        Self::empty()
    }
}

impl Interner {
    /// Intern distinct keys; key `i` gets id `i`.
    pub(crate) fn build(strings: &[Key<'_>]) -> Self {
        seeds()
            .find_map(|seed| Self::try_build(strings, seed))
            .unwrap_or_else(Self::empty)
    }

    fn empty() -> Self {
        Self {
            state: FixedState::with_seed(0),
            ids: HashMap::default(),
            spans: Vec::new(),
            bytes: Vec::new(),
        }
    }

    fn try_build(strings: &[Key<'_>], seed: u64) -> Option<Self> {
        let state = FixedState::with_seed(seed);
        let mut ids =
            HashMap::with_capacity_and_hasher(strings.len(), BuildHasherDefault::default());
        let mut spans = Vec::with_capacity(strings.len());
        let mut bytes = Vec::with_capacity(strings.iter().map(|s| s.1.len()).sum());
        for (i, &(tag, s)) in strings.iter().enumerate() {
            if ids.insert(hash(&state, (tag, s)), i as u32).is_some() {
                return None;
            }
            spans.push((tag, bytes.len() as u32, s.len() as u32));
            bytes.extend_from_slice(s);
        }
        Some(Self {
            state,
            ids,
            spans,
            bytes,
        })
    }

    pub(crate) fn get(&self, (tag, s): Key<'_>) -> Option<u32> {
        let id = *self.ids.get(&hash(&self.state, (tag, s)))?;
        let (t, start, len) = self.spans[id as usize];
        (t == tag && &self.bytes[start as usize..(start + len) as usize] == s).then_some(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_known_and_rejects_unknown() {
        let words: Vec<Key<'_>> = vec![(0, b"sensors"), (0, b"temp"), (0, b""), (1, b"temp")];
        let i = Interner::build(&words);
        for (n, w) in words.iter().enumerate() {
            assert_eq!(i.get(*w), Some(n as u32));
        }
        assert_eq!(i.get((0, b"humidity")), None);
        assert_eq!(i.get((2, b"temp")), None);
        assert_eq!(Interner::default().get((0, b"x")), None);
    }
}
