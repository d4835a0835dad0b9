//! `coupler status`: what the local core runs.

use std::process::ExitCode;

use crate::client::Endpoint;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    endpoint: Endpoint,
}

pub fn run(args: &Args) -> ExitCode {
    let health = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())
        .and_then(|rt| {
            rt.block_on(async {
                crate::client::connect_unsigned(&args.endpoint)?
                    .get_plain("/health")
                    .await
            })
        });
    match health {
        Ok(h) => {
            if args.json {
                println!("{}", serde_json::to_string_pretty(&h).unwrap_or_default());
            } else {
                println!("core: {}", h["status"].as_str().unwrap_or("?"));
                match h["activeGroup"].as_str() {
                    Some(g) => println!(
                        "active group: {g}\n  group version: {}\n  deployment: {}\n  subscriptions: {}\n  messages routed: {}\n  messages dropped: {}",
                        h["activeGroupVersion"].as_str().unwrap_or("?"),
                        h["activeDeployment"].as_str().unwrap_or("?"),
                        h["subscriptions"],
                        h["routed"],
                        h["dropped"],
                    ),
                    None => println!("active group: none"),
                }
                let units = h["units"].as_array().cloned().unwrap_or_default();
                if !units.is_empty() {
                    println!("units:");
                    for u in &units {
                        println!(
                            "  {:<9} {:<40} {:<8} restarts {:<3} queued {}{}",
                            u["kind"].as_str().unwrap_or("?"),
                            u["name"].as_str().unwrap_or("?"),
                            u["state"].as_str().unwrap_or("?"),
                            u["restarts"],
                            u["queued"],
                            if u["contained"] == true {
                                "  (contained)"
                            } else {
                                ""
                            },
                        );
                    }
                }
                print_cloud(&h["cloud"]);
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: cannot reach the core: {e}");
            ExitCode::from(2)
        }
    }
}

/// The cloud bridge's lines: its state, the last failure, and the spool.
fn print_cloud(c: &serde_json::Value) {
    if c.is_null() {
        return;
    }
    let state = c["state"].as_str().unwrap_or("?");
    match c["url"].as_str() {
        Some(url) => println!("cloud: {state} ({url})"),
        None => println!("cloud: {state}"),
    }
    if let Some(e) = c["last_error"].as_str() {
        println!("  last error: {e}");
    }
    println!(
        "  published {}  acked {}  received {}  too large {}  refused {}",
        c["published"], c["acked"], c["received"], c["too_large"], c["refused"]
    );
    let s = &c["spool"];
    if !s.is_null() {
        println!(
            "  spool ({}): {} message(s), {} of {} bytes, {} in flight, {} dropped (oldest first)",
            s["storage"].as_str().unwrap_or("?"),
            s["messages"],
            s["bytes"],
            s["max_bytes"],
            s["in_flight"],
            s["dropped"],
        );
    }
}
