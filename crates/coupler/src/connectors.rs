//! `coupler connectors list` and `coupler connectors describe`.

use std::process::ExitCode;

use coupler_model::catalog::{Catalog, ConnectorEntry, ConnectorVersion};
use serde::Serialize;

/// Whether this build runs a connector (the registry of `coupler-connectors`); every other
/// catalog entry is valid in a group but is reported as not runnable, never pretended.
pub fn is_runnable(name: &str, version: u32) -> bool {
    let canonical = Catalog::builtin()
        .entry(name)
        .map_or(name, |e| e.name.as_str());
    coupler_connectors::registry::is_runnable(canonical, version)
}

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// List every Greengrass connector, its versions and whether this core runs it.
    List {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Show one connector: parameters, topics and isolation modes.
    Describe {
        /// The connector's ARN name, e.g. TwilioNotifications.
        name: String,
        /// Which version (default: the latest).
        #[arg(long)]
        version: Option<u32>,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

pub fn run(cmd: &Command) -> ExitCode {
    let catalog = Catalog::builtin();
    match cmd {
        Command::List { json } => list(catalog, *json),
        Command::Describe {
            name,
            version,
            json,
        } => describe(catalog, name, *version, *json),
    }
}

#[derive(Serialize)]
struct ListRow<'a> {
    name: &'a str,
    title: &'a str,
    versions: Vec<u32>,
    latest: u32,
    isolation: Vec<&'static str>,
    runnable_versions: Vec<u32>,
}

fn latest(e: &ConnectorEntry) -> u32 {
    e.versions.iter().map(|v| v.version).max().unwrap_or(0)
}

fn list(catalog: &Catalog, json: bool) -> ExitCode {
    let rows: Vec<ListRow<'_>> = catalog
        .file
        .connectors
        .iter()
        .map(|e| {
            let latest = latest(e);
            let isolation = e
                .versions
                .iter()
                .find(|v| v.version == latest)
                .map(|v| v.isolation.iter().map(|m| m.as_str()).collect())
                .unwrap_or_default();
            ListRow {
                name: &e.name,
                title: &e.title,
                versions: e.versions.iter().map(|v| v.version).collect(),
                latest,
                isolation,
                runnable_versions: e
                    .versions
                    .iter()
                    .map(|v| v.version)
                    .filter(|v| is_runnable(&e.name, *v))
                    .collect(),
            }
        })
        .collect();
    if json {
        return print_json(&rows);
    }
    let width = rows.iter().map(|r| r.name.len()).max().unwrap_or(4).max(4);
    println!(
        "{:<width$}  {:<8}  {:<35}  STATUS",
        "NAME", "VERSIONS", "ISOLATION (latest)"
    );
    for r in &rows {
        let status = if r.runnable_versions.is_empty() {
            "catalog only: this core cannot run it yet".to_owned()
        } else {
            format!(
                "runs (versions {})",
                r.runnable_versions
                    .iter()
                    .map(u32::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        };
        println!(
            "{:<width$}  {:<8}  {:<35}  {status}",
            r.name,
            format!("1-{}", r.latest),
            r.isolation.join(", ")
        );
    }
    ExitCode::SUCCESS
}

#[derive(Serialize)]
struct Describe<'a> {
    name: &'a str,
    title: &'a str,
    summary: &'a str,
    version: u32,
    versions: Vec<u32>,
    runnable: bool,
    runtime: &'a str,
    min_core: &'a str,
    isolation: Vec<&'static str>,
    long_lived: bool,
    changes: &'a str,
    arn: String,
    parameters: Vec<&'a coupler_model::catalog::ParameterSpec>,
    inputs: Vec<&'a str>,
    outputs: Vec<&'a str>,
}

fn describe(catalog: &Catalog, name: &str, version: Option<u32>, json: bool) -> ExitCode {
    let Some(entry) = catalog.entry(name) else {
        eprintln!("error: no connector named {name:?}; see `coupler connectors list`");
        return ExitCode::from(2);
    };
    let version = version.unwrap_or_else(|| latest(entry));
    let Some(cv): Option<&ConnectorVersion> = catalog.get(&entry.name, version) else {
        eprintln!(
            "error: {} has no version {version}; versions: {}",
            entry.name,
            entry
                .versions
                .iter()
                .map(|v| v.version.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
        return ExitCode::from(2);
    };
    let d = Describe {
        name: &entry.name,
        title: &entry.title,
        summary: &entry.summary,
        version,
        versions: entry.versions.iter().map(|v| v.version).collect(),
        runnable: is_runnable(&entry.name, version),
        runtime: &cv.info.runtime,
        min_core: &cv.info.min_core,
        isolation: cv.info.isolation.iter().map(|m| m.as_str()).collect(),
        long_lived: cv.info.long_lived,
        changes: &cv.info.changes,
        arn: format!(
            "arn:aws:greengrass:REGION::/connectors/{}/versions/{version}",
            entry.name
        ),
        parameters: cv.parameters.iter().map(|p| &p.spec).collect(),
        inputs: cv.inputs.iter().map(|t| t.as_str()).collect(),
        outputs: cv.outputs.iter().map(|t| t.as_str()).collect(),
    };
    if json {
        return print_json(&d);
    }
    println!("{} ({}) version {version}", d.title, d.name);
    println!("  {}", d.summary);
    println!("  ARN:        {}", d.arn);
    println!(
        "  status:     {}",
        if d.runnable {
            "runs on this core"
        } else {
            "catalog only: this core cannot run it yet"
        }
    );
    println!(
        "  isolation:  {} (first is the default)",
        d.isolation.join(", ")
    );
    println!(
        "  runtime:    {} on Greengrass >= {}",
        d.runtime, d.min_core
    );
    println!("  long-lived: {}", d.long_lived);
    println!("  changes:    {}", d.changes);
    println!("  inputs:     {}", or_none(&d.inputs));
    println!("  outputs:    {}", or_none(&d.outputs));
    println!("  parameters:");
    for p in &d.parameters {
        let mut facts = vec![
            if p.required { "required" } else { "optional" }.to_owned(),
            format!("{:?}", p.kind).to_lowercase(),
        ];
        if let Some(pat) = &p.pattern {
            facts.push(format!("pattern {pat}"));
        }
        if !p.values.is_empty() {
            facts.push(format!("one of {}", p.values.join("|")));
        }
        if let Some(d) = &p.default {
            facts.push(format!("default {d:?}"));
        }
        if let Some(r) = &p.resource {
            facts.push(format!("names {}", r.kind.describe()));
        }
        println!("    {} ({})", p.name, facts.join("; "));
        println!("        {}", p.description);
    }
    ExitCode::SUCCESS
}

fn or_none(list: &[&str]) -> String {
    if list.is_empty() {
        "(none)".into()
    } else {
        list.join(", ")
    }
}

fn print_json(v: &impl Serialize) -> ExitCode {
    match serde_json::to_string_pretty(v) {
        Ok(s) => {
            println!("{s}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
