//! The routing table: a group's subscriptions compiled for lookup.
//!
//! Each Source entity has its own trie of subject levels, and all tries share flat arrays:
//! nodes, child edges sorted by the hash of their level, the level strings, and target lists.
//! A lookup hashes the source and each needed topic level once, then walks at most eight
//! levels by binary search on hashes (each hit confirmed against the level's bytes), whatever
//! the number of subscriptions.

use std::collections::HashMap;
use std::ops::Range;

use coupler_model::topic::FilterLevel;
use coupler_model::validate::Route;
use coupler_model::{Entity, TopicFilter, TopicName};
use foldhash::fast::{FixedState, RandomState};

use crate::intern::{Interner, Key, hash_bytes, seeds};

/// A literal child: the hash of its level, the child node, and the level's string id.
#[derive(Debug, Clone, Copy)]
struct Edge {
    hash: u64,
    child: u32,
    level: u32,
}

/// Index of a target in [`RoutingTable::targets`].
pub type TargetId = u32;

type Map<K, V> = HashMap<K, V, RandomState>;

const NONE: u32 = u32::MAX;

#[derive(Debug, Clone)]
struct Node {
    /// Literal children, sorted by level id, in `edges`.
    children: Range<u32>,
    /// The `+` child, or `NONE`.
    plus: u32,
    /// Targets of subjects that end at this node.
    exact: Range<u32>,
    /// Targets of subjects that end with `#` right below this node (they match it too).
    hash: Range<u32>,
}

/// Subscriptions compiled into per-source tries. Immutable once built.
#[derive(Debug, Default)]
pub struct RoutingTable {
    /// Source entities; source `i`'s trie is rooted at node `i`.
    sources: Interner,
    /// `(source, topic)` for every exact subject, with its complete answer precomputed:
    /// most traffic is on topics that some subscription names exactly.
    exact: Interner,
    exact_lists: Vec<Range<u32>>,
    source_list: Vec<Entity>,
    /// Seed of the level hashes; chosen so that no two distinct levels share a hash.
    level_seed: FixedState,
    /// Every literal level of every subject, back to back, with its span.
    level_bytes: Vec<u8>,
    level_spans: Vec<(u32, u32)>,
    nodes: Vec<Node>,
    /// Literal children, sorted by hash within each node's range.
    edges: Vec<Edge>,
    /// Every target list, each sorted and free of duplicates.
    lists: Vec<TargetId>,
    targets: Vec<Entity>,
    /// Per target id: the subjects of the subscriptions that deliver to it.
    inbound: Vec<Vec<TopicFilter>>,
    subscriptions: usize,
}

#[derive(Default)]
struct NodeBuilder {
    children: Vec<(u32, u32)>,
    plus: Option<u32>,
    exact: Vec<TargetId>,
    hash: Vec<TargetId>,
}

#[derive(Default)]
struct Builder {
    levels: Map<Box<str>, u32>,
    nodes: Vec<NodeBuilder>,
}

/// How an entity is keyed in the source interner.
fn entity_key(e: &Entity) -> Key<'_> {
    // Tags tell the kinds apart.
    match e {
        Entity::Cloud => (0, b""),
        Entity::ShadowService => (1, b""),
        Entity::Device(n) => (2, n.as_bytes()),
        Entity::Function(n) => (3, n.as_bytes()),
        Entity::Connector(n) => (4, n.as_bytes()),
    }
}

impl Builder {
    fn new_node(&mut self) -> u32 {
        self.nodes.push(NodeBuilder::default());
        (self.nodes.len() - 1) as u32
    }

    fn level_id(&mut self, level: &str) -> u32 {
        let next = self.levels.len() as u32;
        *self.levels.entry(level.into()).or_insert(next)
    }

    fn add(&mut self, root: u32, filter: &TopicFilter, target: TargetId) {
        let mut node = root as usize;
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
                FilterLevel::Literal(l) => {
                    let id = self.level_id(l);
                    match self.nodes[node].children.iter().find(|(k, _)| *k == id) {
                        Some(&(_, n)) => n,
                        None => {
                            let n = self.new_node();
                            self.nodes[node].children.push((id, n));
                            n
                        }
                    }
                }
            };
            node = child as usize;
        }
        self.nodes[node].exact.push(target);
    }
}

fn store<T: Ord + Copy>(flat: &mut Vec<T>, mut items: Vec<T>) -> Range<u32> {
    items.sort_unstable();
    items.dedup();
    let start = flat.len() as u32;
    flat.extend(items);
    start..flat.len() as u32
}

impl RoutingTable {
    /// Compile validated subscriptions. A target named by several subscriptions that match
    /// the same topic still receives each message once.
    pub fn compile(routes: &[Route]) -> Self {
        let mut target_ids: Map<Entity, TargetId> = Map::default();
        let mut targets = Vec::new();
        let mut inbound: Vec<Vec<TopicFilter>> = Vec::new();
        let mut sources: Map<Entity, u32> = Map::default();
        let mut source_list = Vec::new();
        let mut b = Builder::default();
        // Roots first, so that source `i` is rooted at node `i`.
        for r in routes {
            if !sources.contains_key(&r.source) {
                sources.insert(r.source.clone(), b.new_node());
                source_list.push(r.source.clone());
            }
        }
        for r in routes {
            let target = *target_ids.entry(r.target.clone()).or_insert_with(|| {
                targets.push(r.target.clone());
                inbound.push(Vec::new());
                (targets.len() - 1) as TargetId
            });
            inbound[target as usize].push(r.subject.clone());
            b.add(sources[&r.source], &r.subject, target);
        }
        let mut level_list: Vec<(&str, u32)> = b.levels.iter().map(|(k, v)| (&**k, *v)).collect();
        level_list.sort_unstable_by_key(|(_, id)| *id);
        let mut level_bytes = Vec::new();
        let mut level_spans = Vec::with_capacity(level_list.len());
        for (l, _) in &level_list {
            level_spans.push((level_bytes.len() as u32, l.len() as u32));
            level_bytes.extend_from_slice(l.as_bytes());
        }
        let level_seed = seeds()
            .map(FixedState::with_seed)
            .find(|state| {
                let mut seen = HashMap::with_capacity(level_list.len());
                level_list
                    .iter()
                    .all(|(l, _)| seen.insert(hash_bytes(state, l.as_bytes()), ()).is_none())
            })
            .unwrap_or_else(|| FixedState::with_seed(0));
        let mut edges = Vec::new();
        let mut lists = Vec::new();
        let nodes = b
            .nodes
            .into_iter()
            .map(|n| {
                let mut children: Vec<Edge> = n
                    .children
                    .iter()
                    .map(|&(level, child)| Edge {
                        hash: hash_bytes(&level_seed, level_list[level as usize].0.as_bytes()),
                        child,
                        level,
                    })
                    .collect();
                children.sort_unstable_by_key(|e| e.hash);
                let start = edges.len() as u32;
                edges.extend(children);
                Node {
                    children: start..edges.len() as u32,
                    plus: n.plus.unwrap_or(NONE),
                    exact: store(&mut lists, n.exact),
                    hash: store(&mut lists, n.hash),
                }
            })
            .collect();
        let source_keys: Vec<Key<'_>> = source_list.iter().map(entity_key).collect();
        let mut table = Self {
            sources: Interner::build(&source_keys),
            exact: Interner::default(),
            exact_lists: Vec::new(),
            level_seed,
            level_bytes,
            level_spans,
            source_list,
            nodes,
            edges,
            lists,
            targets,
            inbound,
            subscriptions: routes.len(),
        };
        table.precompute_exact(routes);
        table
    }

    /// Answer every exact subject once, through the trie, and keep the answers.
    fn precompute_exact(&mut self, routes: &[Route]) {
        let mut seen: Map<(u32, &str), ()> = Map::default();
        let mut keys = Vec::new();
        let mut answers = Vec::new();
        let mut ids = Vec::new();
        for r in routes.iter().filter(|r| r.subject.is_exact()) {
            let Some(source) = self.sources.get(entity_key(&r.source)) else {
                continue;
            };
            if seen.insert((source, r.subject.as_str()), ()).is_some() {
                continue;
            }
            let Ok(topic) = TopicName::parse(r.subject.as_str()) else {
                continue;
            };
            self.walk(source, &topic, &mut ids);
            keys.push((source, r.subject.as_str().as_bytes()));
            answers.push(store(&mut self.lists, ids.clone()));
        }
        self.exact = Interner::build(&keys);
        self.exact_lists = answers;
    }

    /// Every entity that some subscription targets, indexed by [`TargetId`].
    pub fn targets(&self) -> &[Entity] {
        &self.targets
    }

    /// The id of a target, if some subscription names it.
    pub fn target_id(&self, entity: &Entity) -> Option<TargetId> {
        self.targets
            .iter()
            .position(|t| t == entity)
            .map(|i| i as TargetId)
    }

    /// The subjects of every subscription that targets `target`.
    pub fn subjects_to(&self, target: TargetId) -> &[TopicFilter] {
        self.inbound.get(target as usize).map_or(&[], Vec::as_slice)
    }

    pub fn subscription_count(&self) -> usize {
        self.subscriptions
    }

    /// Whether any subscription has this entity as its Source.
    pub fn has_source(&self, source: &Entity) -> bool {
        self.sources.get(entity_key(source)).is_some()
    }

    /// Every entity that is the Source of some subscription.
    pub fn sources(&self) -> &[Entity] {
        &self.source_list
    }

    /// The literal child of `node` for a topic level, or `NONE`.
    fn child(&self, node: &Node, hash: u64, level: &[u8]) -> u32 {
        let edges = &self.edges[node.children.start as usize..node.children.end as usize];
        let Ok(i) = edges.binary_search_by_key(&hash, |e| e.hash) else {
            return NONE;
        };
        let e = edges[i];
        let (start, len) = self.level_spans[e.level as usize];
        // Distinct levels have distinct hashes, so one comparison settles it.
        if same_bytes(
            &self.level_bytes[start as usize..(start + len) as usize],
            level,
        ) {
            e.child
        } else {
            NONE
        }
    }

    /// Put the ids of every target whose subscriptions from `source` match `topic` into
    /// `out`, each once, sorted. `out` is cleared first; reusing it avoids allocating.
    pub fn lookup(&self, source: &Entity, topic: &TopicName, out: &mut Vec<TargetId>) {
        out.clear();
        let Some(root) = self.sources.get(entity_key(source)) else {
            return;
        };
        if let Some(i) = self.exact.get((root, topic.as_str().as_bytes())) {
            let r = &self.exact_lists[i as usize];
            out.extend_from_slice(&self.lists[r.start as usize..r.end as usize]);
            return;
        }
        self.walk(root, topic, out);
    }

    /// Walk the trie of the source rooted at `root`.
    fn walk(&self, root: u32, topic: &TopicName, out: &mut Vec<TargetId>) {
        out.clear();
        let n = topic.level_count();
        // Level hashes are computed lazily: only where a node has literal children. A topic
        // has at most 8 levels (7 separators), so fixed arrays suffice.
        let mut hashes: [Option<u64>; 8] = [None; 8];
        let reserved = topic.is_reserved();
        // Each node pushes at most two children, so the stack never exceeds 2 * 8 + 1.
        let mut stack = [(0u32, 0u8); 18];
        stack[0] = (root, 0);
        let mut top = 1;
        let mut lists = 0;
        let mut append = |r: &Range<u32>, out: &mut Vec<TargetId>| {
            if r.start != r.end {
                // Lists are short; a plain loop beats a call to memcpy.
                for &t in &self.lists[r.start as usize..r.end as usize] {
                    out.push(t);
                }
                lists += 1;
            }
        };
        while top > 0 {
            top -= 1;
            let (idx, depth) = stack[top];
            let node = &self.nodes[idx as usize];
            let depth = depth as usize;
            // `$` topics are not matched by a subject that starts with a wildcard.
            let wild_ok = !(reserved && depth == 0);
            if wild_ok {
                append(&node.hash, out);
            }
            if depth == n {
                append(&node.exact, out);
                continue;
            }
            if !node.children.is_empty() {
                let level = topic.level_bytes(depth);
                let hash =
                    *hashes[depth].get_or_insert_with(|| hash_bytes(&self.level_seed, level));
                let child = self.child(node, hash, level);
                if child != NONE {
                    stack[top] = (child, (depth + 1) as u8);
                    top += 1;
                }
            }
            if node.plus != NONE && wild_ok {
                stack[top] = (node.plus, (depth + 1) as u8);
                top += 1;
            }
        }
        if lists > 1 {
            out.sort_unstable();
            out.dedup();
        }
    }
}

/// Byte equality without a call to `memcmp`: levels are a few bytes long.
fn same_bytes(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x == y)
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
