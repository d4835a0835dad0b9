//! The Device Defender connector (versions 1–3): every `SampleIntervalSeconds` it reads the
//! host's `/proc` through its volume resource and publishes the Device Defender metrics
//! document for the core thing on `$aws/things/<core thing>/defender/metrics/json`.
//! See `docs/connectors/device-defender.md`.

use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tracing::Level;

use crate::context::LocalResource;
use crate::defender_metrics::collect;
use crate::{BoxFuture, Connector, ConnectorError, Context, Kind};

pub static KIND: Kind = Kind {
    name: "DeviceDefender",
    versions: 1..=3,
    build,
};

/// A shorter interval for tests only, in milliseconds; the shipped connector obeys the
/// documented minimum of 300 s, which validation enforces on the parameter.
pub const TEST_INTERVAL_ENV: &str = "COUPLER_TEST_DEFENDER_INTERVAL_MS";

#[derive(Debug, Clone)]
struct DeviceDefender {
    proc_root: PathBuf,
    interval: Duration,
    topic: String,
}

fn build(ctx: &Context) -> Result<Box<dyn Connector>, String> {
    let seconds: u64 = ctx
        .param("SampleIntervalSeconds")
        .and_then(|v| v.parse().ok())
        .filter(|s| *s >= 300)
        .ok_or("SampleIntervalSeconds must be a number of seconds, at least 300")?;
    let interval = std::env::var(TEST_INTERVAL_ENV)
        .ok()
        .and_then(|ms| ms.parse().ok())
        .map_or(Duration::from_secs(seconds), Duration::from_millis);
    let destination = ctx
        .param("ProcDestinationPath")
        .ok_or("ProcDestinationPath is required")?;
    // Inside its container the volume is at its destination; without one (and in the core,
    // which checks a contained connector before starting it) at its source.
    let proc_root = match ctx.resource("ProcDestinationPath-ResourceId") {
        Some(LocalResource::Volume {
            source_path,
            destination_path,
        }) if destination_path.as_os_str() == destination => {
            if ctx.inside_container() {
                destination_path.clone()
            } else {
                source_path.clone()
            }
        }
        _ => {
            return Err(format!(
                "ProcDestinationPath-ResourceId must name the local volume resource whose destination path is {destination}"
            ));
        }
    };
    collect(&proc_root)
        .map_err(|e| format!("cannot read the metrics under {}: {e}", proc_root.display()))?;
    Ok(Box::new(DeviceDefender {
        proc_root,
        interval,
        topic: format!("$aws/things/{}/defender/metrics/json", ctx.core_thing()),
    }))
}

impl Connector for DeviceDefender {
    fn run(self: Box<Self>, ctx: Context) -> BoxFuture<Result<(), ConnectorError>> {
        Box::pin(async move {
            let mut tick = tokio::time::interval(self.interval);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut last_id = 0u64;
            loop {
                tokio::select! {
                    () = ctx.cancel().cancelled() => return Ok(()),
                    _ = tick.tick() => {}
                }
                // Report ids increase strictly, as Device Defender requires: the Unix time in
                // seconds, or one more than the last when reports come faster.
                let now = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map_or(0, |d| d.as_secs());
                let id = now.max(last_id + 1);
                match collect(&self.proc_root) {
                    Ok(m) => {
                        last_id = id;
                        let body = m.report(id).to_string();
                        if let Err(e) = ctx.publish(&self.topic, body).await {
                            ctx.log(
                                Level::ERROR,
                                &format!("cannot publish on {}: {e}", self.topic),
                            );
                        }
                    }
                    Err(e) => ctx.log(Level::ERROR, &format!("metrics not gathered: {e}")),
                }
            }
        })
    }
}
