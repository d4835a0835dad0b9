//! The routing table: a group's subscriptions compiled for lookup.
//!
//! For each Source entity the table holds a hash map of the exact (wildcard-free) subjects and
//! a trie of the wildcard subjects. A lookup costs one hash of the topic plus a walk of at most
//! eight levels, whatever the number of subscriptions.

use std::collections::HashMap;
use std::ops::Range;

use coupler_model::topic::FilterLevel;
use coupler_model::validate::Route;
use coupler_model::{Entity, TopicFilter, TopicName};
use foldhash::fast::RandomState;

/// Index of a target in [`RoutingTable::targets`].
pub type TargetId = u32;

type Map<K, V> = HashMap<K, V, RandomState>;

#[derive(Debug, Default)]
struct Node {
    literal: Map<Box<str>, u32>,
    plus: Option<u32>,
    /// Targets of filters that end at this node.
    exact: Range<u32>,
    /// Targets of filters that end with `#` below this node (they match this node too).
    hash: Range<u32>,
}

#[derive(Debug, Default)]
struct SourceTable {
    exact: Map<Box<str>, Range<u32>>,
    /// Trie of the wildcard filters; empty when there are none.
    nodes: Vec<Node>,
}

/// Subscriptions compiled into per-source lookup structures. Immutable once built.
#[derive(Debug, Default)]
pub struct RoutingTable {
    sources: Map<Entity, SourceTable>,
    targets: Vec<Entity>,
    /// Flat storage of every target list, referred to by ranges.
    lists: Vec<TargetId>,
    subscriptions: usize,
}

/// Builder state for one source: target lists keyed by where they hang.
#[derive(Default)]
struct SourceBuilder {
    exact: Map<Box<str>, Vec<TargetId>>,
    nodes: Vec<NodeBuilder>,
}

#[derive(Default)]
struct NodeBuilder {
    literal: Map<Box<str>, u32>,
    plus: Option<u32>,
    exact: Vec<TargetId>,
    hash: Vec<TargetId>,
}

impl SourceBuilder {
    fn add(&mut self, filter: &TopicFilter, target: TargetId) {
        if filter.is_exact() {
            self.exact
                .entry(filter.as_str().into())
                .or_default()
                .push(target);
            return;
        }
        if self.nodes.is_empty() {
            self.nodes.push(NodeBuilder::default());
        }
        let mut node = 0usize;
        for level in filter.levels() {
            let child = match level {
                FilterLevel::Hash => {
                    self.nodes[node].hash.push(target);
                    return;
                }
                FilterLevel::Plus => match self.nodes[node].plus {
                    Some(n) => n,
                    None => {
                        let n = self.new_node();
                        self.nodes[node].plus = Some(n);
                        n
                    }
                },
                FilterLevel::Literal(l) => match self.nodes[node].literal.get(l.as_str()) {
                    Some(&n) => n,
                    None => {
                        let n = self.new_node();
                        self.nodes[node].literal.insert(l.as_str().into(), n);
                        n
                    }
                },
            };
            node = child as usize;
        }
        self.nodes[node].exact.push(target);
    }

    fn new_node(&mut self) -> u32 {
        self.nodes.push(NodeBuilder::default());
        (self.nodes.len() - 1) as u32
    }
}

fn store(lists: &mut Vec<TargetId>, mut ids: Vec<TargetId>) -> Range<u32> {
    ids.sort_unstable();
    ids.dedup();
    let start = lists.len() as u32;
    lists.extend(ids);
    start..lists.len() as u32
}

impl RoutingTable {
    /// Compile validated subscriptions. A target named by several subscriptions that match
    /// the same topic still receives each message once.
    pub fn compile(routes: &[Route]) -> Self {
        let mut target_ids: Map<Entity, TargetId> = Map::default();
        let mut targets = Vec::new();
        let mut builders: Map<Entity, SourceBuilder> = Map::default();
        for r in routes {
            let id = *target_ids.entry(r.target.clone()).or_insert_with(|| {
                targets.push(r.target.clone());
                (targets.len() - 1) as TargetId
            });
            builders
                .entry(r.source.clone())
                .or_default()
                .add(&r.subject, id);
        }
        let mut lists = Vec::new();
        let sources = builders
            .into_iter()
            .map(|(source, b)| {
                let exact = b
                    .exact
                    .into_iter()
                    .map(|(k, ids)| (k, store(&mut lists, ids)))
                    .collect();
                let nodes = b
                    .nodes
                    .into_iter()
                    .map(|n| Node {
                        literal: n.literal,
                        plus: n.plus,
                        exact: store(&mut lists, n.exact),
                        hash: store(&mut lists, n.hash),
                    })
                    .collect();
                (source, SourceTable { exact, nodes })
            })
            .collect();
        Self {
            sources,
            targets,
            lists,
            subscriptions: routes.len(),
        }
    }

    /// Every entity that some subscription targets, indexed by [`TargetId`].
    pub fn targets(&self) -> &[Entity] {
        &self.targets
    }

    pub fn subscription_count(&self) -> usize {
        self.subscriptions
    }

    /// Whether any subscription has this entity as its Source.
    pub fn has_source(&self, source: &Entity) -> bool {
        self.sources.contains_key(source)
    }

    /// Append the ids of every target whose subscriptions from `source` match `topic`, each
    /// once, sorted. `out` is cleared first; reusing it avoids allocating per message.
    pub fn lookup(&self, source: &Entity, topic: &TopicName, out: &mut Vec<TargetId>) {
        out.clear();
        let Some(table) = self.sources.get(source) else {
            return;
        };
        let mut parts = 0usize;
        if let Some(r) = table.exact.get(topic.as_str()) {
            out.extend_from_slice(&self.lists[r.start as usize..r.end as usize]);
            parts += 1;
        }
        if !table.nodes.is_empty() {
            parts += self.walk(table, topic, out);
        }
        if parts > 1 {
            out.sort_unstable();
            out.dedup();
        }
    }

    /// Depth-first walk of the wildcard trie. Returns how many target lists were appended.
    fn walk(&self, table: &SourceTable, topic: &TopicName, out: &mut Vec<TargetId>) -> usize {
        // A TopicName has at most 8 levels (7 separators), so fixed arrays suffice.
        let mut levels: [&str; 8] = [""; 8];
        let mut n = 0;
        for l in topic.levels() {
            levels[n] = l;
            n += 1;
        }
        let reserved = topic.is_reserved();
        // Each node pushes at most two children, so the stack never exceeds 2 * 8 + 1.
        let mut stack: [(u32, u8); 18] = [(0, 0); 18];
        let mut top = 1;
        let mut parts = 0;
        let mut push_range = |r: &Range<u32>, out: &mut Vec<TargetId>| {
            if r.start != r.end {
                out.extend_from_slice(&self.lists[r.start as usize..r.end as usize]);
                parts += 1;
            }
        };
        while top > 0 {
            top -= 1;
            let (idx, depth) = stack[top];
            let node = &table.nodes[idx as usize];
            let depth = depth as usize;
            // `$` topics are not matched by a filter that starts with a wildcard.
            let wild_ok = !(reserved && depth == 0);
            if wild_ok {
                push_range(&node.hash, out);
            }
            if depth == n {
                push_range(&node.exact, out);
                continue;
            }
            if let Some(child) = node.literal.get(levels[depth]) {
                stack[top] = (*child, (depth + 1) as u8);
                top += 1;
            }
            if let (Some(child), true) = (node.plus, wild_ok) {
                stack[top] = (child, (depth + 1) as u8);
                top += 1;
            }
        }
        parts
    }
}

/// The obvious matcher: every subscription checked in turn. Kept as the reference the tests
/// and benchmarks compare the table against.
#[derive(Debug, Default)]
pub struct NaiveTable {
    routes: Vec<(Entity, TopicFilter, Entity)>,
}

impl NaiveTable {
    pub fn compile(routes: &[Route]) -> Self {
        Self {
            routes: routes
                .iter()
                .map(|r| (r.source.clone(), r.subject.clone(), r.target.clone()))
                .collect(),
        }
    }

    /// The distinct targets for a message, sorted.
    pub fn lookup(&self, source: &Entity, topic: &TopicName) -> Vec<Entity> {
        let mut out: Vec<Entity> = self
            .routes
            .iter()
            .filter(|(s, f, _)| s == source && f.matches(topic))
            .map(|(_, _, t)| t.clone())
            .collect();
        out.sort();
        out.dedup();
        out
    }
}
