//! Definition versions already parsed, kept by identity.
//!
//! A version never changes once written, so a parsed copy stays right for as long as the
//! version exists. The usual way to build a group is a new definition version and then a
//! group version that uses it: with the recent versions kept here, `CreateGroupVersion`
//! assembles the group without reading them back from the store and parsing them again.
//! The payloads are shared (`Arc`), so taking one out costs no copy.

use std::collections::VecDeque;

use coupler_model::arn::DefinitionKind;
use coupler_model::bundle::GroupBundle;
use parking_lot::Mutex;

/// Versions kept, at most. Several clients building groups at once each keep their own few
/// in use (with 16, four clients each with a core, device, function and subscription
/// definition already missed); a lookup compares names, so this can be generous.
const ENTRIES: usize = 64;

/// JSON bytes of the versions kept, at most: this bounds the memory they hold (a parsed
/// version takes about twice its JSON). A larger version is not kept.
const BYTES: usize = 512 * 1024;

/// The most recently used parsed versions.
#[derive(Debug, Default)]
pub(crate) struct ParsedVersions(Mutex<Recent>);

#[derive(Debug, Default)]
struct Recent {
    /// Least recently used first.
    entries: VecDeque<Entry>,
    bytes: usize,
    /// How many times a definition was forgotten. A version read (or written) before a
    /// forget may belong to the deleted definition, so it is not kept after one.
    forgets: u64,
}

/// When a version was read, for [`ParsedVersions::put`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Epoch(u64);

#[derive(Debug)]
struct Entry {
    kind: DefinitionKind,
    definition: Box<str>,
    version: Box<str>,
    bytes: usize,
    /// A bundle that holds only this version's payload.
    parsed: GroupBundle,
}

impl Entry {
    fn is(&self, kind: DefinitionKind, definition: &str) -> bool {
        self.kind == kind && &*self.definition == definition
    }
}

impl Recent {
    /// Take out the entry of a version, if kept.
    fn take(&mut self, kind: DefinitionKind, definition: &str, version: &str) -> Option<Entry> {
        let i = self
            .entries
            .iter()
            .position(|e| &*e.version == version && e.is(kind, definition))?;
        let entry = self.entries.remove(i)?;
        self.bytes -= entry.bytes;
        Some(entry)
    }

    fn push(&mut self, entry: Entry) {
        self.bytes += entry.bytes;
        self.entries.push_back(entry);
    }
}

impl ParsedVersions {
    /// A kept version, as a bundle holding only its payload; it becomes the most recent.
    pub(crate) fn get(
        &self,
        kind: DefinitionKind,
        definition: &str,
        version: &str,
    ) -> Option<GroupBundle> {
        let mut recent = self.0.lock();
        let entry = recent.take(kind, definition, version)?;
        let parsed = entry.parsed.clone();
        recent.push(entry);
        Some(parsed)
    }

    /// Taken before reading or writing a version that is to be kept.
    pub(crate) fn epoch(&self) -> Epoch {
        Epoch(self.0.lock().forgets)
    }

    /// Keep a version that was in the store at `epoch`, parsed from `bytes` of JSON; not if
    /// a definition has been forgotten since.
    pub(crate) fn put(
        &self,
        epoch: Epoch,
        kind: DefinitionKind,
        definition: &str,
        version: &str,
        bytes: usize,
        parsed: GroupBundle,
    ) {
        if bytes > BYTES {
            return;
        }
        let mut evicted = Vec::new();
        let mut recent = self.0.lock();
        if recent.forgets != epoch.0 {
            return;
        }
        evicted.extend(recent.take(kind, definition, version));
        while recent.entries.len() >= ENTRIES || recent.bytes + bytes > BYTES {
            let Some(old) = recent.entries.pop_front() else {
                break;
            };
            recent.bytes -= old.bytes;
            evicted.push(old);
        }
        recent.push(Entry {
            kind,
            definition: definition.into(),
            version: version.into(),
            bytes,
            parsed,
        });
        // The evicted versions are freed after the lock is released.
        drop(recent);
        drop(evicted);
    }

    /// Forget every version of a deleted definition.
    pub(crate) fn forget(&self, kind: DefinitionKind, definition: &str) {
        let mut recent = self.0.lock();
        recent.forgets += 1;
        let (gone, kept): (Vec<Entry>, Vec<Entry>) = recent
            .entries
            .drain(..)
            .partition(|e| e.is(kind, definition));
        recent.entries = kept.into();
        recent.bytes = recent.entries.iter().map(|e| e.bytes).sum();
        drop(recent);
        drop(gone);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn subs(n: usize) -> GroupBundle {
        let subs: Vec<String> = (0..n)
            .map(|i| {
                format!(r#"{{"Id":"s{i}","Source":"cloud","Subject":"t/{i}","Target":"cloud"}}"#)
            })
            .collect();
        let json = format!(r#"{{"Subscriptions":[{}]}}"#, subs.join(","));
        GroupBundle::with_definition(DefinitionKind::Subscriptions, json.as_bytes()).unwrap()
    }

    /// Keep a one-subscription version of definition `d` as of now.
    fn keep(kept: &ParsedVersions, d: &str, version: &str, bytes: usize) {
        let kind = DefinitionKind::Subscriptions;
        kept.put(kept.epoch(), kind, d, version, bytes, subs(1));
    }

    fn has(kept: &ParsedVersions, d: &str, version: &str) -> bool {
        kept.get(DefinitionKind::Subscriptions, d, version)
            .is_some()
    }

    #[test]
    fn keeps_the_most_recent_within_bounds() {
        let kept = ParsedVersions::default();
        for v in 0..ENTRIES + 2 {
            keep(&kept, "d", &v.to_string(), 10);
            // Using the first keeps it.
            assert!(has(&kept, "d", "0"));
        }
        assert!(!has(&kept, "d", "1"));
        assert!(!has(&kept, "d", "2"));
        let last = (ENTRIES + 1).to_string();
        let got = kept.get(DefinitionKind::Subscriptions, "d", &last).unwrap();
        assert_eq!(got, subs(1));
        // Another kind or definition with the same version id is another version.
        assert!(kept.get(DefinitionKind::Cores, "d", &last).is_none());
        assert!(!has(&kept, "e", &last));
        // Too large to keep, and a bound on the total.
        keep(&kept, "d", "big", BYTES + 1);
        assert!(!has(&kept, "d", "big"));
        keep(&kept, "d", "half", BYTES / 2 + 1);
        keep(&kept, "d", "half2", BYTES / 2);
        assert!(!has(&kept, "d", "half"));
        assert!(kept.0.lock().bytes <= BYTES);
        // Making room evicts only what it must.
        let kept = ParsedVersions::default();
        keep(&kept, "d", "a", BYTES / 2);
        keep(&kept, "d", "b", BYTES / 4);
        keep(&kept, "d", "c", BYTES / 4);
        keep(&kept, "d", "e", 10);
        assert!(!has(&kept, "d", "a"));
        assert!(has(&kept, "d", "b") && has(&kept, "d", "c") && has(&kept, "d", "e"));
        let recent = kept.0.lock();
        assert_eq!(
            recent.bytes,
            recent.entries.iter().map(|e| e.bytes).sum::<usize>()
        );
    }

    #[test]
    fn a_deleted_definition_is_forgotten() {
        let kept = ParsedVersions::default();
        keep(&kept, "d", "1", 10);
        keep(&kept, "e", "1", 10);
        kept.forget(DefinitionKind::Subscriptions, "d");
        assert!(!has(&kept, "d", "1"));
        assert!(has(&kept, "e", "1"));
        assert_eq!(kept.0.lock().bytes, 10);
    }

    #[test]
    fn a_version_read_before_a_forget_is_not_kept() {
        let kept = ParsedVersions::default();
        let before = kept.epoch();
        kept.forget(DefinitionKind::Subscriptions, "d");
        kept.put(before, DefinitionKind::Subscriptions, "d", "1", 10, subs(1));
        assert!(!has(&kept, "d", "1"));
        keep(&kept, "d", "1", 10);
        assert!(has(&kept, "d", "1"));
    }
}
