//! Realistic subscription sets and messages for the benchmarks and the allocation test.
//!
//! Topics have the shape `sensors/<site>/<device>/<metric>`. Every device publishes; each has
//! a mix of exact and wildcard subscriptions to functions, connectors and the cloud.

use coupler_model::validate::Route;
use coupler_model::{Entity, TopicFilter, TopicName};

use crate::Message;

const METRICS: [&str; 4] = ["temp", "humidity", "pressure", "vibration"];

/// About `n` subscriptions over `n / 10` devices in `n / 100 + 1` sites.
pub fn subscriptions(n: usize) -> Vec<Route> {
    let devices = (n / 10).max(1);
    let sites = devices / 10 + 1;
    let targets = [
        Entity::function("arn:aws:lambda:us-east-1:123456789012:function:Ingest:prod"),
        Entity::function("arn:aws:lambda:us-east-1:123456789012:function:Alarm:3"),
        Entity::connector("arn:aws:greengrass:us-east-1::/connectors/CloudWatchMetrics/versions/5"),
        Entity::Cloud,
    ];
    let mut out = Vec::with_capacity(n);
    let mut d = 0;
    while out.len() < n {
        let dev = d % devices;
        let site = dev % sites;
        let source = Entity::device(&format!("dev-{dev}"));
        let subjects = [
            format!("sensors/site-{site}/dev-{dev}/temp"),
            format!("sensors/site-{site}/dev-{dev}/humidity"),
            format!("sensors/site-{site}/dev-{dev}/+"),
            format!("sensors/site-{site}/+/temp"),
            format!("sensors/site-{site}/#"),
            format!("sensors/+/dev-{dev}/vibration"),
            format!("alarms/site-{site}/dev-{dev}"),
            format!("sensors/site-{site}/dev-{dev}/pressure"),
            "config/#".to_owned(),
            format!("$aws/things/dev-{dev}/shadow/update"),
        ];
        for (i, s) in subjects.iter().enumerate() {
            if out.len() == n {
                break;
            }
            let target = if i == 9 {
                Entity::ShadowService
            } else {
                targets[i % targets.len()].clone()
            };
            out.push(Route {
                id: format!("s{}", out.len()),
                source: source.clone(),
                subject: TopicFilter::parse(s).expect("valid filter"),
                target,
            });
        }
        d += 1;
    }
    out
}

/// `count` messages from the devices of [`subscriptions`]`(n)`, cycling through metrics.
pub fn messages(n: usize, count: usize) -> Vec<Message> {
    let devices = (n / 10).max(1);
    let sites = devices / 10 + 1;
    (0..count)
        .map(|i| {
            // A multiplicative step spreads the devices without a random number generator.
            let dev = (i * 7919) % devices;
            let topic = format!(
                "sensors/site-{}/dev-{dev}/{}",
                dev % sites,
                METRICS[i % METRICS.len()]
            );
            Message::new(
                Entity::device(&format!("dev-{dev}")),
                TopicName::parse(&topic).expect("valid topic"),
                &b"{\"value\": 21.5}"[..],
            )
        })
        .collect()
}
