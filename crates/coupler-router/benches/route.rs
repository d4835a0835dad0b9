//! Router benchmarks: `route()` and the bare table lookup at 10, 1 000 and 100 000
//! subscriptions, with the naive matcher alongside, plus routing while tables are swapped.
//! After the timings it prints the heap allocations per routed message, counted by a global
//! allocator.
//!
//! Short mode for CI: `cargo bench -p coupler-router --bench route -- --quick`.

// The counting allocator below is the only unsafe code in the project: it forwards to the
// system allocator and counts calls.
#![allow(unsafe_code, clippy::print_stdout)]

use std::hint::black_box;
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use coupler_router::workload::{messages, subscriptions};
use coupler_router::{
    InboxConfig, Message, NaiveTable, RouteReport, Router, RouterConfig, RoutingTable, WhenFull,
};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group};

#[path = "../tests/support/counting_alloc.rs"]
mod counting_alloc;
use counting_alloc::allocations;

const SIZES: [usize; 3] = [10, 1_000, 100_000];
/// Enough messages to spread over the devices of the larger tables, few enough to stay in cache
/// as a just-received message would.
const MESSAGES: usize = 1024;

/// `route()` never waits on the inboxes used here, so one poll completes it.
fn route_now(router: &Router, msg: Message) -> RouteReport {
    let mut fut = pin!(router.route(msg));
    match fut.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(r) => r,
        Poll::Pending => panic!("route() waited"),
    }
}

fn router_for(n: usize) -> Router {
    let router = Router::new(RouterConfig {
        default_inbox: InboxConfig {
            capacity: 1 << 16,
            when_full: WhenFull::DropOldest,
        },
        ..RouterConfig::default()
    });
    router.install(RoutingTable::compile(&subscriptions(n)));
    router
}

/// Route then consume (for the allocation count, which covers the consumer too).
fn route_and_consume(router: &Router, inboxes: &[Arc<coupler_router::Inbox>], msg: &Message) {
    black_box(route_now(router, msg.clone()));
    for inbox in inboxes {
        while let Some(m) = inbox.try_recv() {
            black_box(m);
        }
    }
}

fn inboxes_of(router: &Router, n: usize) -> Vec<Arc<coupler_router::Inbox>> {
    let table = RoutingTable::compile(&subscriptions(n));
    table.targets().iter().map(|t| router.inbox(t)).collect()
}

/// Time `route()` alone: the consumers' work happens on other cores in a running core, so
/// the inboxes are emptied outside the timed section, every `DRAIN_EVERY` messages.
fn timed_routes(
    router: &Router,
    inboxes: &[Arc<coupler_router::Inbox>],
    msgs: &[Message],
    iters: u64,
) -> Duration {
    const DRAIN_EVERY: u64 = 1024;
    let mut total = Duration::ZERO;
    let mut done = 0;
    while done < iters {
        let batch = DRAIN_EVERY.min(iters - done);
        let start = Instant::now();
        for i in 0..batch {
            let m = &msgs[((done + i) as usize) % msgs.len()];
            black_box(route_now(router, m.clone()));
        }
        total += start.elapsed();
        for inbox in inboxes {
            black_box(inbox.drain());
        }
        done += batch;
    }
    total
}

fn bench_route(c: &mut Criterion) {
    let mut g = c.benchmark_group("route");
    g.throughput(Throughput::Elements(1));
    for n in SIZES {
        let router = router_for(n);
        let inboxes = inboxes_of(&router, n);
        let msgs = messages(n, MESSAGES);
        g.bench_function(BenchmarkId::new("router", n), |b| {
            b.iter_custom(|iters| timed_routes(&router, &inboxes, &msgs, iters))
        });
    }
    g.finish();
}

fn bench_lookup(c: &mut Criterion) {
    let mut g = c.benchmark_group("lookup");
    g.throughput(Throughput::Elements(1));
    for n in SIZES {
        let subs = subscriptions(n);
        let table = RoutingTable::compile(&subs);
        let naive = NaiveTable::compile(&subs);
        let msgs = messages(n, MESSAGES);
        let mut ids = Vec::new();
        let mut i = 0;
        g.bench_function(BenchmarkId::new("trie", n), |b| {
            b.iter(|| {
                i = (i + 1) % msgs.len();
                table.lookup(&msgs[i].source, &msgs[i].topic, &mut ids);
                black_box(ids.len())
            })
        });
        g.bench_function(BenchmarkId::new("naive", n), |b| {
            b.iter(|| {
                i = (i + 1) % msgs.len();
                black_box(naive.lookup(&msgs[i].source, &msgs[i].topic).len())
            })
        });
    }
    g.finish();
}

fn bench_swap(c: &mut Criterion) {
    let mut g = c.benchmark_group("route_during_swaps");
    g.throughput(Throughput::Elements(1));
    let n = 1_000;
    let router = Arc::new(router_for(n));
    let inboxes = inboxes_of(&router, n);
    let msgs = messages(n, MESSAGES);
    let stop = Arc::new(AtomicBool::new(false));
    let swapper = {
        let (router, stop) = (router.clone(), stop.clone());
        let subs = subscriptions(n);
        std::thread::spawn(move || {
            let mut swaps = 0u64;
            while !stop.load(Ordering::Relaxed) {
                router.install(RoutingTable::compile(&subs));
                swaps += 1;
            }
            swaps
        })
    };
    g.bench_function(BenchmarkId::new("router", n), |b| {
        b.iter_custom(|iters| timed_routes(&router, &inboxes, &msgs, iters))
    });
    stop.store(true, Ordering::Relaxed);
    let swaps = swapper.join().unwrap_or(0);
    println!("route_during_swaps: {swaps} tables installed while routing");
    g.finish();

    let mut g = c.benchmark_group("compile");
    g.sample_size(10);
    for n in SIZES {
        let subs = subscriptions(n);
        g.bench_function(BenchmarkId::from_parameter(n), |b| {
            b.iter(|| black_box(RoutingTable::compile(&subs)))
        });
    }
    g.finish();
}

fn report_allocations() {
    for n in SIZES {
        let router = router_for(n);
        let inboxes = inboxes_of(&router, n);
        let msgs = messages(n, MESSAGES);
        // Warm up: thread-local scratch space and inbox buffers.
        for m in &msgs {
            route_and_consume(&router, &inboxes, m);
        }
        let rounds = 25;
        let before = allocations();
        for _ in 0..rounds {
            for m in &msgs {
                route_and_consume(&router, &inboxes, m);
            }
        }
        let allocs = allocations() - before;
        println!(
            "allocations per routed message at {n} subscriptions: {:.4} ({allocs} over {} messages)",
            allocs as f64 / (rounds * msgs.len()) as f64,
            rounds * msgs.len()
        );
    }
}

criterion_group!(benches, bench_route, bench_lookup, bench_swap);

fn main() {
    benches();
    Criterion::default().configure_from_args().final_summary();
    report_allocations();
}
