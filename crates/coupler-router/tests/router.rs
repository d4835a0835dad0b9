//! Router behaviour: the table against the naive matcher, inbox policies, drop counters, and
//! table swaps under load.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use coupler_model::validate::Route;
use coupler_model::{Entity, EntityKind, TopicFilter, TopicName};
use coupler_router::{
    DropReason, InboxConfig, Message, NaiveTable, Router, RouterConfig, RoutingTable, WhenFull,
};
use proptest::prelude::*;

fn route(source: Entity, subject: &str, target: Entity) -> Route {
    Route {
        id: format!("{source}->{subject}->{target}"),
        source,
        subject: TopicFilter::parse(subject).unwrap(),
        target,
    }
}

fn msg(source: &Entity, topic: &str, payload: &str) -> Message {
    Message::new(
        source.clone(),
        TopicName::parse(topic).unwrap(),
        payload.as_bytes().to_vec(),
    )
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .unwrap()
}

fn level() -> impl Strategy<Value = &'static str> {
    prop_oneof![
        Just("a"),
        Just("b"),
        Just(""),
        Just("$s"),
        Just("+"),
        Just("#")
    ]
}

fn filter() -> impl Strategy<Value = String> {
    proptest::collection::vec(level(), 1..5).prop_map(|l| l.join("/"))
}

fn topic() -> impl Strategy<Value = String> {
    proptest::collection::vec(
        prop_oneof![Just("a"), Just("b"), Just(""), Just("$s")],
        1..5,
    )
    .prop_map(|l| l.join("/"))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(500))]

    /// The compiled table and the naive matcher agree on random subscriptions and topics.
    #[test]
    fn table_agrees_with_naive(
        subs in proptest::collection::vec((0..3u8, filter(), 0..4u8), 0..40),
        topics in proptest::collection::vec((0..3u8, topic()), 1..20),
    ) {
        let routes: Vec<Route> = subs
            .iter()
            .filter(|(_, f, _)| TopicFilter::parse(f).is_ok())
            .map(|(s, f, t)| route(Entity::device(&format!("d{s}")), f, Entity::function(&format!("f{t}"))))
            .collect();
        let table = RoutingTable::compile(&routes);
        let naive = NaiveTable::compile(&routes);
        let mut ids = Vec::new();
        for (s, t) in &topics {
            let source = Entity::device(&format!("d{s}"));
            let Ok(topic) = TopicName::parse(t) else { continue };
            table.lookup(&source, &topic, &mut ids);
            let mut got: Vec<Entity> = ids.iter().map(|i| table.targets()[*i as usize].clone()).collect();
            got.sort();
            prop_assert_eq!(got, naive.lookup(&source, &topic), "topic {}", t);
        }
    }
}

fn one_route_router(config: InboxConfig) -> (Router, Entity, Entity) {
    let src = Entity::device("d");
    let dst = Entity::function("f");
    let mut cfg = RouterConfig::default();
    cfg.per_kind.insert(EntityKind::Function, config);
    let router = Router::new(cfg);
    router.install(RoutingTable::compile(&[route(
        src.clone(),
        "t/#",
        dst.clone(),
    )]));
    (router, src, dst)
}

#[test]
fn drop_oldest_keeps_the_newest_and_counts() {
    let (router, src, dst) = one_route_router(InboxConfig {
        capacity: 3,
        when_full: WhenFull::DropOldest,
    });
    let rt = rt();
    for i in 0..5 {
        rt.block_on(router.route(msg(&src, "t/x", &i.to_string())));
    }
    let got: Vec<_> = router
        .inbox(&dst)
        .drain()
        .into_iter()
        .map(|m| m.payload)
        .collect();
    assert_eq!(got, vec!["2", "3", "4"]);
    let stats = router.stats();
    assert_eq!(stats.dropped_total(DropReason::QueueFullDroppedOldest), 2);
    assert_eq!(stats.routed, 5);
    let inbox = stats.inboxes.iter().find(|i| i.entity == dst).unwrap();
    assert_eq!((inbox.delivered, inbox.depth, inbox.capacity), (5, 0, 3));
}

#[test]
fn drop_newest_keeps_the_oldest_and_counts() {
    let (router, src, dst) = one_route_router(InboxConfig {
        capacity: 2,
        when_full: WhenFull::DropNewest,
    });
    let rt = rt();
    let reports: Vec<_> = (0..4)
        .map(|i| rt.block_on(router.route(msg(&src, "t/x", &i.to_string()))))
        .collect();
    assert_eq!(reports[1].delivered, 1);
    assert_eq!((reports[3].delivered, reports[3].dropped), (0, 1));
    let got: Vec<_> = router
        .inbox(&dst)
        .drain()
        .into_iter()
        .map(|m| m.payload)
        .collect();
    assert_eq!(got, vec!["0", "1"]);
    let dropped = &router.stats().dropped;
    assert_eq!(dropped.len(), 1);
    assert_eq!(dropped[0].source, src);
    assert_eq!(dropped[0].target, Some(dst));
    assert_eq!(dropped[0].reason, DropReason::QueueFullDroppedNewest);
    assert_eq!(dropped[0].count, 2);
}

#[test]
fn block_waits_for_room_then_gives_up_at_the_deadline() {
    let (router, src, dst) = one_route_router(InboxConfig {
        capacity: 1,
        when_full: WhenFull::Block {
            deadline: Duration::from_millis(200),
        },
    });
    let router = Arc::new(router);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_time()
        .build()
        .unwrap();
    rt.block_on(async {
        assert_eq!(router.route(msg(&src, "t/x", "first")).await.delivered, 1);
        // Full: this one waits until the consumer makes room.
        let r2 = router.clone();
        let s2 = src.clone();
        let waiter = tokio::spawn(async move { r2.route(msg(&s2, "t/x", "second")).await });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!waiter.is_finished());
        let inbox = router.inbox(&dst);
        assert_eq!(inbox.recv().await.payload, "first");
        assert_eq!(waiter.await.unwrap().delivered, 1);
        assert_eq!(inbox.recv().await.payload, "second");
        // Full again, and nobody consumes: dropped after the deadline.
        router.route(msg(&src, "t/x", "third")).await;
        let started = tokio::time::Instant::now();
        let report = router.route(msg(&src, "t/x", "fourth")).await;
        assert!(started.elapsed() >= Duration::from_millis(190));
        assert_eq!((report.delivered, report.dropped), (0, 1));
    });
    assert_eq!(router.stats().dropped_total(DropReason::BlockDeadline), 1);
}

#[test]
fn unrouted_messages_are_counted_per_source() {
    let (router, src, _) = one_route_router(InboxConfig::default());
    let rt = rt();
    let other = Entity::device("intruder");
    assert_eq!(
        rt.block_on(router.route(msg(&other, "t/x", "no"))).matched,
        0
    );
    assert_eq!(
        rt.block_on(router.route(msg(&src, "elsewhere", "no")))
            .matched,
        0
    );
    assert_eq!(
        rt.block_on(router.route(msg(&src, "elsewhere", "no")))
            .matched,
        0
    );
    let stats = router.stats();
    assert_eq!(stats.dropped_total(DropReason::NoRoute), 3);
    let by_source: HashMap<_, _> = stats
        .dropped
        .iter()
        .map(|d| (d.source.clone(), d.count))
        .collect();
    assert_eq!(by_source[&other], 1);
    assert_eq!(by_source[&src], 2);
    assert!(router.has_source(&src));
    assert!(!router.has_source(&other));
}

#[test]
fn queued_messages_survive_a_table_swap() {
    let (router, src, dst) = one_route_router(InboxConfig::default());
    let rt = rt();
    rt.block_on(router.route(msg(&src, "t/1", "before")));
    // The new table still targets `dst`, from another subject.
    router.install(RoutingTable::compile(&[route(
        src.clone(),
        "u/#",
        dst.clone(),
    )]));
    rt.block_on(router.route(msg(&src, "u/1", "after")));
    assert_eq!(
        rt.block_on(router.route(msg(&src, "t/1", "gone"))).matched,
        0
    );
    let got: Vec<_> = router
        .inbox(&dst)
        .drain()
        .into_iter()
        .map(|m| m.payload)
        .collect();
    assert_eq!(got, vec!["before", "after"]);
    assert_eq!(router.stats().table_version, 2);
}

/// Producers route continuously while tables are swapped back and forth; every message must
/// arrive exactly once (both tables route `load/#` to the same sink).
#[test]
fn swapping_tables_under_load_loses_and_duplicates_nothing() {
    const PRODUCERS: usize = 2;
    const PER_PRODUCER: usize = 20_000;
    let sink = Entity::function("sink");
    let other = Entity::function("other");
    let router = Arc::new(Router::new(RouterConfig {
        default_inbox: InboxConfig {
            capacity: PRODUCERS * PER_PRODUCER,
            when_full: WhenFull::DropNewest,
        },
        ..RouterConfig::default()
    }));
    let tables = {
        let (sink, other) = (sink.clone(), other.clone());
        move |i: usize| {
            let mut routes = vec![route(Entity::device("p"), "load/#", sink.clone())];
            // Alternate the rest of the table so each swap really changes it.
            for j in 0..(100 + i % 2 * 50) {
                routes.push(route(
                    Entity::device("p"),
                    &format!("noise/{j}/+"),
                    other.clone(),
                ));
            }
            RoutingTable::compile(&routes)
        }
    };
    router.install(tables(0));
    let done = Arc::new(AtomicBool::new(false));
    let swapper = {
        let (router, done) = (router.clone(), done.clone());
        std::thread::spawn(move || {
            let mut swaps = 0;
            while !done.load(Ordering::Relaxed) {
                router.install(tables(swaps));
                swaps += 1;
            }
            swaps
        })
    };
    let producers: Vec<_> = (0..PRODUCERS)
        .map(|p| {
            let router = router.clone();
            std::thread::spawn(move || {
                let rt = rt();
                let src = Entity::device("p");
                for i in 0..PER_PRODUCER {
                    let r =
                        rt.block_on(router.route(msg(&src, &format!("load/{p}"), &i.to_string())));
                    assert_eq!(r.delivered, 1);
                }
            })
        })
        .collect();
    for p in producers {
        p.join().unwrap();
    }
    done.store(true, Ordering::Relaxed);
    let swaps = swapper.join().unwrap();
    assert!(swaps > 10, "only {swaps} swaps happened during the load");
    let mut seen = vec![vec![false; PER_PRODUCER]; PRODUCERS];
    let mut count = 0;
    for m in router.inbox(&sink).drain() {
        let p: usize = m.topic.as_str()["load/".len()..].parse().unwrap();
        let i: usize = std::str::from_utf8(&m.payload).unwrap().parse().unwrap();
        assert!(!seen[p][i], "duplicate {p}/{i}");
        seen[p][i] = true;
        count += 1;
    }
    assert_eq!(count, PRODUCERS * PER_PRODUCER);
    assert!(router.stats().dropped.is_empty());
}
