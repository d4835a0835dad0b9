//! MQTT topic names and topic filters (MQTT 3.1.1 §4.7) with the Greengrass limits.
//!
//! Matching follows MQTT: `a/#` matches `a` as well as `a/b` (the Greengrass guide says
//! otherwise; see `docs/topics.md`), `+` is exactly one level, and a filter that starts with a
//! wildcard does not match a topic that starts with `$`.

use std::fmt;
use std::sync::Arc;

/// Longest topic or filter, in bytes of UTF-8 (Greengrass and AWS IoT limit).
pub const MAX_TOPIC_BYTES: usize = 256;
/// Most `/` separators in a topic or filter (Greengrass and AWS IoT limit).
pub const MAX_TOPIC_SLASHES: usize = 7;

/// Why a string is not a valid topic or filter.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TopicError {
    #[error("topic is empty")]
    Empty,
    #[error("topic is not valid UTF-8")]
    NotUtf8,
    #[error("topic is {0} bytes long; the limit is {MAX_TOPIC_BYTES}")]
    TooLong(usize),
    #[error("topic has {0} '/' separators; the limit is {MAX_TOPIC_SLASHES}")]
    TooDeep(usize),
    #[error("topic contains the NUL character")]
    Nul,
    #[error("a topic to publish on may not contain the wildcard '{0}'")]
    WildcardInName(char),
    #[error("'#' must be the last level of a filter and stand alone in it")]
    MisplacedHash,
    #[error("'+' must stand alone in a filter level")]
    MisplacedPlus,
}

fn check_common(s: &str) -> Result<(), TopicError> {
    if s.is_empty() {
        return Err(TopicError::Empty);
    }
    if s.len() > MAX_TOPIC_BYTES {
        return Err(TopicError::TooLong(s.len()));
    }
    let slashes = s.bytes().filter(|b| *b == b'/').count();
    if slashes > MAX_TOPIC_SLASHES {
        return Err(TopicError::TooDeep(slashes));
    }
    if s.contains('\0') {
        return Err(TopicError::Nul);
    }
    Ok(())
}

/// Equality, hashing and order of a topic or filter by its text alone: the level spans
/// follow from it.
macro_rules! by_text {
    ($type:ty, $text:ident) => {
        impl PartialEq for $type {
            fn eq(&self, other: &Self) -> bool {
                self.$text == other.$text
            }
        }
        impl Eq for $type {}
        impl std::hash::Hash for $type {
            fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
                self.$text.hash(state);
            }
        }
        impl PartialOrd for $type {
            fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
                Some(self.cmp(other))
            }
        }
        impl Ord for $type {
            fn cmp(&self, other: &Self) -> std::cmp::Ordering {
                self.$text.cmp(&other.$text)
            }
        }
    };
}

/// Where the levels of a topic or filter end, found once when it is parsed, so that matching
/// never searches for `/` and a filter needs no string per level.
#[derive(Clone, Copy)]
struct Spans {
    /// End offset of each level; `count` of them are used.
    ends: [u16; MAX_TOPIC_SLASHES + 1],
    count: u8,
}

impl Spans {
    /// The levels of `s`, which [`check_common`] has bounded to 256 bytes and 7 separators.
    fn of(s: &str) -> Self {
        let mut ends = [0u16; MAX_TOPIC_SLASHES + 1];
        let mut count = 0;
        for (i, b) in s.bytes().enumerate() {
            if b == b'/' {
                ends[count] = i as u16;
                count += 1;
            }
        }
        ends[count] = s.len() as u16;
        Self {
            ends,
            count: count as u8 + 1,
        }
    }

    fn count(&self) -> usize {
        usize::from(self.count)
    }

    fn span(&self, i: usize) -> (usize, usize) {
        let start = if i == 0 {
            0
        } else {
            usize::from(self.ends[i - 1]) + 1
        };
        (start, usize::from(self.ends[i]))
    }
}

/// A concrete topic a message is published on: no wildcards, within the limits.
///
/// Cheap to clone (a shared string), because every routed message carries one. The level
/// boundaries are found once, when the topic is parsed, so matching never searches for `/`.
#[derive(Clone)]
pub struct TopicName {
    text: Arc<str>,
    spans: Spans,
}

impl TopicName {
    pub fn parse(s: &str) -> Result<Self, TopicError> {
        check_common(s)?;
        if let Some(c) = s.chars().find(|c| *c == '+' || *c == '#') {
            return Err(TopicError::WildcardInName(c));
        }
        Ok(Self {
            text: Arc::from(s),
            spans: Spans::of(s),
        })
    }

    /// Parse raw bytes, as they arrive from the wire.
    pub fn from_bytes(b: &[u8]) -> Result<Self, TopicError> {
        Self::parse(std::str::from_utf8(b).map_err(|_| TopicError::NotUtf8)?)
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// How many levels (separators + 1).
    pub fn level_count(&self) -> usize {
        self.spans.count()
    }

    /// Level `i` (empty levels included); `i` must be below [`level_count`](Self::level_count).
    pub fn level(&self, i: usize) -> &str {
        let (start, end) = self.spans.span(i);
        &self.text[start..end]
    }

    /// The bytes of level `i`: like [`level`](Self::level), without the UTF-8 boundary
    /// checks of string slicing (the router compares bytes).
    pub fn level_bytes(&self, i: usize) -> &[u8] {
        let (start, end) = self.spans.span(i);
        &self.text.as_bytes()[start..end]
    }

    /// The levels between `/` separators (empty levels included).
    pub fn levels(&self) -> impl Iterator<Item = &str> + '_ {
        (0..self.level_count()).map(|i| self.level(i))
    }

    /// Topics starting with `$` are reserved and are not matched by a leading wildcard.
    pub fn is_reserved(&self) -> bool {
        self.text.starts_with('$')
    }
}

by_text!(TopicName, text);

impl fmt::Display for TopicName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl fmt::Debug for TopicName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TopicName({:?})", &*self.text)
    }
}

impl std::str::FromStr for TopicName {
    type Err = TopicError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

/// One level of a topic filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FilterLevel<'a> {
    /// Matches exactly this level.
    Literal(&'a str),
    /// `+`: any single level.
    Plus,
    /// `#`: this level and everything below, including the parent level itself.
    Hash,
}

/// A subscription subject: a topic that may contain `+` and a trailing `#`.
#[derive(Clone)]
pub struct TopicFilter {
    raw: Box<str>,
    spans: Spans,
}

impl TopicFilter {
    pub fn parse(s: &str) -> Result<Self, TopicError> {
        check_common(s)?;
        let spans = Spans::of(s);
        for i in 0..spans.count() {
            let (start, end) = spans.span(i);
            let part = &s[start..end];
            match part {
                "#" if i + 1 == spans.count() => {}
                "+" => {}
                _ if part.contains('#') => return Err(TopicError::MisplacedHash),
                _ if part.contains('+') => return Err(TopicError::MisplacedPlus),
                _ => {}
            }
        }
        Ok(Self {
            raw: s.into(),
            spans,
        })
    }

    pub fn as_str(&self) -> &str {
        &self.raw
    }

    /// The levels, in order. (Parsing made sure `+` and `#` stand alone, and `#` last.)
    pub fn levels(&self) -> impl ExactSizeIterator<Item = FilterLevel<'_>> + '_ {
        (0..self.spans.count()).map(|i| self.level(i))
    }

    fn level(&self, i: usize) -> FilterLevel<'_> {
        let (start, end) = self.spans.span(i);
        match &self.raw[start..end] {
            "+" => FilterLevel::Plus,
            "#" => FilterLevel::Hash,
            literal => FilterLevel::Literal(literal),
        }
    }

    fn get(&self, i: usize) -> Option<FilterLevel<'_>> {
        (i < self.spans.count()).then(|| self.level(i))
    }

    /// True when the filter has no wildcard, i.e. it names exactly one topic.
    pub fn is_exact(&self) -> bool {
        self.levels().all(|l| matches!(l, FilterLevel::Literal(_)))
    }

    /// Whether a published topic matches this filter.
    pub fn matches(&self, topic: &TopicName) -> bool {
        if topic.is_reserved() && self.starts_with_wildcard() {
            return false;
        }
        let mut topic_levels = topic.levels();
        for level in self.levels() {
            match level {
                FilterLevel::Hash => return true,
                FilterLevel::Plus => {
                    if topic_levels.next().is_none() {
                        return false;
                    }
                }
                FilterLevel::Literal(lit) => {
                    if topic_levels.next() != Some(lit) {
                        return false;
                    }
                }
            }
        }
        topic_levels.next().is_none()
    }

    fn starts_with_wildcard(&self) -> bool {
        !matches!(self.level(0), FilterLevel::Literal(_))
    }

    fn starts_reserved(&self) -> bool {
        matches!(self.level(0), FilterLevel::Literal(l) if l.starts_with('$'))
    }

    /// Whether every topic this filter matches is also matched by `other`.
    pub fn is_subset_of(&self, other: &TopicFilter) -> bool {
        if self.starts_reserved() && other.starts_with_wildcard() {
            return false;
        }
        let (a, b) = (self, other);
        for (i, level) in a.levels().enumerate() {
            match (level, b.get(i)) {
                (_, Some(FilterLevel::Hash)) => return true,
                (_, None) => return false,
                (FilterLevel::Hash, Some(_)) => return false,
                (FilterLevel::Plus, Some(FilterLevel::Plus)) => {}
                (FilterLevel::Plus, Some(FilterLevel::Literal(_))) => return false,
                (FilterLevel::Literal(_), Some(FilterLevel::Plus)) => {}
                (FilterLevel::Literal(x), Some(FilterLevel::Literal(y))) => {
                    if x != y {
                        return false;
                    }
                }
            }
        }
        // `self` is used up: `other` may only go on with a `#`, which also matches its parent.
        let (a_len, b_len) = (a.spans.count(), b.spans.count());
        b_len == a_len || (b_len == a_len + 1 && b.level(a_len) == FilterLevel::Hash)
    }

    /// Whether some topic matches both filters.
    pub fn intersects(&self, other: &TopicFilter) -> bool {
        if (self.starts_reserved() && other.starts_with_wildcard())
            || (other.starts_reserved() && self.starts_with_wildcard())
        {
            return false;
        }
        let (a, b) = (self, other);
        for i in 0..a.spans.count().max(b.spans.count()) {
            match (a.get(i), b.get(i)) {
                (Some(FilterLevel::Hash), _) | (_, Some(FilterLevel::Hash)) => return true,
                (Some(_), None) | (None, Some(_)) | (None, None) => return false,
                (Some(FilterLevel::Literal(x)), Some(FilterLevel::Literal(y))) => {
                    if x != y {
                        return false;
                    }
                }
                (Some(_), Some(_)) => {}
            }
        }
        true
    }
}

by_text!(TopicFilter, raw);

impl fmt::Display for TopicFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.raw)
    }
}

impl fmt::Debug for TopicFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TopicFilter({:?})", self.raw)
    }
}

impl std::str::FromStr for TopicFilter {
    type Err = TopicError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn f(s: &str) -> TopicFilter {
        TopicFilter::parse(s).unwrap()
    }
    fn t(s: &str) -> TopicName {
        TopicName::parse(s).unwrap()
    }

    #[test]
    fn names_reject_wildcards_and_bounds() {
        assert_eq!(
            TopicName::parse("a/+"),
            Err(TopicError::WildcardInName('+'))
        );
        assert_eq!(
            TopicName::parse("a/#"),
            Err(TopicError::WildcardInName('#'))
        );
        assert_eq!(TopicName::parse(""), Err(TopicError::Empty));
        assert_eq!(TopicName::parse("a\0b"), Err(TopicError::Nul));
        assert_eq!(
            TopicName::parse(&"x".repeat(257)),
            Err(TopicError::TooLong(257))
        );
        assert!(TopicName::parse(&"x".repeat(256)).is_ok());
        assert_eq!(
            TopicName::parse("1/2/3/4/5/6/7/8/9"),
            Err(TopicError::TooDeep(8))
        );
        assert!(TopicName::parse("1/2/3/4/5/6/7/8").is_ok());
        assert_eq!(
            TopicName::from_bytes(&[0xff, 0x61]),
            Err(TopicError::NotUtf8)
        );
        // The limit counts bytes, not characters.
        assert_eq!(
            TopicName::parse(&"é".repeat(129)),
            Err(TopicError::TooLong(258))
        );
    }

    #[test]
    fn filters_place_wildcards_correctly() {
        assert_eq!(TopicFilter::parse("a/#/b"), Err(TopicError::MisplacedHash));
        assert_eq!(TopicFilter::parse("a#"), Err(TopicError::MisplacedHash));
        assert_eq!(TopicFilter::parse("a/b+"), Err(TopicError::MisplacedPlus));
        for ok in [
            "#",
            "+",
            "+/+",
            "a/+/c/#",
            "/",
            "a//b",
            "$aws/things/+/shadow/#",
        ] {
            assert!(TopicFilter::parse(ok).is_ok(), "{ok}");
        }
    }

    #[test]
    fn matching_follows_mqtt() {
        assert!(f("sensor/#").matches(&t("sensor")));
        assert!(f("sensor/#").matches(&t("sensor/")));
        assert!(f("sensor/#").matches(&t("sensor/a/b")));
        assert!(!f("sensor/#").matches(&t("sensors")));
        assert!(f("a/+/c").matches(&t("a/b/c")));
        assert!(f("a/+/c").matches(&t("a//c")));
        assert!(!f("a/+/c").matches(&t("a/b/c/d")));
        assert!(!f("a/+").matches(&t("a")));
        assert!(f("+").matches(&t("a")));
        assert!(!f("+").matches(&t("a/b")));
        assert!(!f("#").matches(&t("$aws/things/x")));
        assert!(!f("+/things/x").matches(&t("$aws/things/x")));
        assert!(f("$aws/things/+").matches(&t("$aws/things/x")));
    }

    #[test]
    fn subset_and_intersection() {
        assert!(f("serial/core/read/dev").is_subset_of(&f("serial/+/read/#")));
        assert!(f("serial/+/read/#").is_subset_of(&f("serial/+/read/#")));
        assert!(!f("serial/#").is_subset_of(&f("serial/+/read/#")));
        assert!(f("a").is_subset_of(&f("a/#")));
        assert!(!f("a/#").is_subset_of(&f("a/+/#")));
        assert!(!f("$aws/x").is_subset_of(&f("#")));
        assert!(f("serial/#").intersects(&f("serial/+/status/#")));
        assert!(!f("twilio/txt").intersects(&f("twilio/call")));
        assert!(f("a/+").intersects(&f("+/b")));
        assert!(f("a").intersects(&f("a/#")));
        assert!(!f("a/+").intersects(&f("a")));
        assert!(!f("#").intersects(&f("$aws/x")));
    }

    /// The reference: a direct reading of MQTT 3.1.1 §4.7 over strings.
    fn naive_matches(filter: &str, topic: &str) -> bool {
        if topic.starts_with('$') && (filter.starts_with('+') || filter.starts_with('#')) {
            return false;
        }
        let fl: Vec<&str> = filter.split('/').collect();
        let tl: Vec<&str> = topic.split('/').collect();
        fn go(fl: &[&str], tl: &[&str]) -> bool {
            match (fl.first(), tl.first()) {
                (Some(&"#"), _) => fl.len() == 1,
                (None, None) => true,
                (Some(&"+"), Some(_)) => go(&fl[1..], &tl[1..]),
                (Some(x), Some(y)) => x == y && go(&fl[1..], &tl[1..]),
                _ => false,
            }
        }
        go(&fl, &tl)
    }

    fn level() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("a".to_owned()),
            Just("b".to_owned()),
            Just(String::new()),
            Just("$s".to_owned()),
            Just("+".to_owned()),
            Just("#".to_owned()),
        ]
    }
    fn small_topic(wild: bool) -> impl Strategy<Value = String> {
        proptest::collection::vec(level(), 1..5).prop_map(move |ls| {
            let ls: Vec<String> = if wild {
                ls
            } else {
                ls.into_iter()
                    .map(|l| if l == "+" || l == "#" { "c".into() } else { l })
                    .collect()
            };
            ls.join("/")
        })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn parsing_random_strings_never_panics(s in "\\PC{0,300}") {
            let _ = TopicName::parse(&s);
            let _ = TopicFilter::parse(&s);
        }

        #[test]
        fn matching_agrees_with_naive(filter in small_topic(true), topic in small_topic(false)) {
            if let (Ok(fp), Ok(tp)) = (TopicFilter::parse(&filter), TopicName::parse(&topic)) {
                prop_assert_eq!(fp.matches(&tp), naive_matches(&filter, &topic), "{} vs {}", filter, topic);
            }
        }

        #[test]
        fn subset_and_intersection_are_sound(a in small_topic(true), b in small_topic(true), topic in small_topic(false)) {
            let (Ok(a), Ok(b), Ok(t)) = (TopicFilter::parse(&a), TopicFilter::parse(&b), TopicName::parse(&topic)) else {
                return Ok(());
            };
            if a.is_subset_of(&b) && a.matches(&t) {
                prop_assert!(b.matches(&t));
            }
            if a.matches(&t) && b.matches(&t) {
                prop_assert!(a.intersects(&b));
            }
        }
    }
}
