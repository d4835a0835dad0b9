//! Data-driven routing cases: every `tests/routing/*.yaml` file holds subscriptions and
//! named cases; each case becomes one named test (`FILE::CASE`).
//!
//! A case publishes one message and lists the targets that must receive it exactly once
//! (`deliver`) and those that must receive nothing (`not_deliver`). Every case is also
//! checked against the naive matcher.

use std::collections::BTreeMap;
use std::path::Path;

use coupler_model::validate::Route;
use coupler_model::{Entity, TopicFilter, TopicName};
use coupler_router::{Message, NaiveTable, Router, RouterConfig, RoutingTable};
use libtest_mimic::{Arguments, Failed, Trial};
use serde::Deserialize;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    #[allow(dead_code)]
    description: String,
    /// `[source, subject, target]`
    subscriptions: Vec<[String; 3]>,
    cases: Vec<Case>,
}

#[derive(Deserialize, Clone)]
#[serde(deny_unknown_fields)]
struct Case {
    name: String,
    source: String,
    topic: String,
    #[serde(default)]
    deliver: Vec<String>,
    #[serde(default)]
    not_deliver: Vec<String>,
}

/// `cloud`, `GGShadowService`, `device:NAME`, `function:ARN`, `connector:ARN`.
fn entity(s: &str) -> Result<Entity, Failed> {
    Ok(match s.split_once(':') {
        _ if s == "cloud" => Entity::Cloud,
        _ if s == "GGShadowService" => Entity::ShadowService,
        Some(("device", n)) => Entity::device(n),
        Some(("function", a)) => Entity::function(a),
        Some(("connector", a)) => Entity::connector(a),
        _ => return Err(format!("unknown entity {s:?}").into()),
    })
}

fn run_case(routes: &[Route], case: &Case) -> Result<(), Failed> {
    let router = Router::new(RouterConfig::default());
    router.install(RoutingTable::compile(routes));
    let source = entity(&case.source)?;
    let topic = TopicName::parse(&case.topic).map_err(|e| format!("topic: {e}"))?;
    let msg = Message::new(source.clone(), topic.clone(), &b"payload"[..]);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()?;
    let report = rt.block_on(router.route(msg.clone()));

    let mut got: BTreeMap<Entity, usize> = BTreeMap::new();
    let mut all: Vec<Entity> = routes.iter().map(|r| r.target.clone()).collect();
    all.sort();
    all.dedup();
    for e in &all {
        let n = router
            .inbox(e)
            .drain()
            .into_iter()
            .filter(|m| *m == msg)
            .count();
        if n > 0 {
            got.insert(e.clone(), n);
        }
    }
    let mut expected = Vec::new();
    for d in &case.deliver {
        let e = entity(d)?;
        match got.get(&e) {
            Some(1) => {}
            Some(n) => return Err(format!("{d} received the message {n} times").into()),
            None => return Err(format!("{d} did not receive the message").into()),
        }
        expected.push(e);
    }
    for d in &case.not_deliver {
        if got.contains_key(&entity(d)?) {
            return Err(format!("{d} received the message but must not").into());
        }
    }
    if got.len() != expected.len() {
        return Err(format!(
            "delivered to {:?}, expected only {:?}",
            got.keys(),
            case.deliver
        )
        .into());
    }
    if report.delivered != expected.len() {
        return Err(format!("report says {} deliveries", report.delivered).into());
    }
    expected.sort();
    let naive = NaiveTable::compile(routes).lookup(&source, &topic);
    if naive != expected {
        return Err(format!("naive matcher disagrees: {naive:?}").into());
    }
    if expected.is_empty() && router.stats().dropped.is_empty() {
        return Err("an unrouted message was not counted as a drop".into());
    }
    Ok(())
}

fn load(path: &Path) -> Result<(Vec<Route>, Vec<Case>), String> {
    let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
    let file: File = serde_norway::from_str(&text).map_err(|e| e.to_string())?;
    let mut routes = Vec::new();
    for (i, [s, f, t]) in file.subscriptions.iter().enumerate() {
        routes.push(Route {
            id: format!("s{i}"),
            source: entity(s).map_err(|e| format!("{e:?}"))?,
            subject: TopicFilter::parse(f).map_err(|e| format!("{f}: {e}"))?,
            target: entity(t).map_err(|e| format!("{e:?}"))?,
        });
    }
    Ok((routes, file.cases))
}

fn main() {
    let args = Arguments::from_args();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/routing");
    let mut paths: Vec<_> = std::fs::read_dir(&dir)
        .expect("tests/routing exists")
        .map(|e| e.expect("readable entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
        .collect();
    paths.sort();
    let mut trials = Vec::new();
    for path in paths {
        let stem = path.file_stem().unwrap().to_string_lossy().into_owned();
        match load(&path) {
            Ok((routes, cases)) => {
                for case in cases {
                    let routes = routes.clone();
                    let name = format!("{stem}::{}", case.name);
                    trials.push(Trial::test(name, move || run_case(&routes, &case)));
                }
            }
            Err(e) => trials.push(Trial::test(format!("{stem}::load"), move || Err(e.into()))),
        }
    }
    libtest_mimic::run(&args, trials).exit();
}
