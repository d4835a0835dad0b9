//! `route()` allocates nothing per message once warmed up: messages are shared, inboxes are
//! preallocated, and the lookup reuses per-thread scratch space. Counted, not timed.

// The counting allocator is the only unsafe code: it forwards to the system allocator.
#![allow(unsafe_code)]

use std::pin::pin;
use std::task::{Context, Poll, Waker};

use coupler_router::workload::{messages, subscriptions};
use coupler_router::{InboxConfig, Router, RouterConfig, RoutingTable, WhenFull};

#[path = "support/counting_alloc.rs"]
mod counting_alloc;
use counting_alloc::allocations;

#[test]
fn routing_allocates_nothing_per_message() {
    for (n, when_full) in [(10, WhenFull::DropOldest), (1000, WhenFull::DropNewest)] {
        let router = Router::new(RouterConfig {
            default_inbox: InboxConfig {
                capacity: 64,
                when_full,
            },
            ..RouterConfig::default()
        });
        let table = RoutingTable::compile(&subscriptions(n));
        let inboxes: Vec<_> = table.targets().iter().map(|t| router.inbox(t)).collect();
        router.install(table);
        let msgs = messages(n, 256);
        let run = || {
            for (i, m) in msgs.iter().enumerate() {
                let mut fut = pin!(router.route(m.clone()));
                let Poll::Ready(r) = fut.as_mut().poll(&mut Context::from_waker(Waker::noop()))
                else {
                    panic!("route() waited on a non-blocking inbox");
                };
                assert!(r.matched > 0);
                // Consume some, so that both full and non-full inboxes are exercised.
                if i % 3 == 0 {
                    for inbox in &inboxes {
                        while inbox.try_recv().is_some() {}
                    }
                }
            }
        };
        // Warm up: scratch space, drop counters for the full inboxes, log rate limiter.
        run();
        let before = allocations();
        run();
        let allocs = allocations() - before;
        assert_eq!(
            allocs,
            0,
            "{allocs} allocations routing {} messages at {n} subscriptions",
            msgs.len()
        );
    }
}
