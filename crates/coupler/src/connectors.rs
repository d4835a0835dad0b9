//! `coupler connectors list`, `coupler connectors describe` and `coupler connectors upgrades`.

use std::process::ExitCode;

use axum::http::Method;
use coupler_model::arn::{ConnectorArn, DefinitionKind, DefinitionVersionArn};
use coupler_model::catalog::{Catalog, ConnectorEntry, ConnectorVersion};
use serde::Serialize;
use serde_json::Value;

use crate::client::{Client, Endpoint};

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
    /// Which connectors of a group have a newer version, and the subscriptions an upgrade
    /// must re-create.
    ///
    /// Reads the group through the Greengrass API, as the AWS CLI would (get-group,
    /// get-group-version, get-connector-definition-version,
    /// get-subscription-definition-version). Without --group-id it checks the group the core
    /// runs, at the version deployed (from the core's /health); with --group-id, that group's
    /// latest version.
    ///
    /// For each connector whose catalog has a newer version, it prints the latest version,
    /// whether this core runs it, the connector ARN to use, and the Ids of the subscriptions
    /// whose Source or Target is the connector's current versioned ARN: Greengrass
    /// subscriptions name a connector by version, so those must be re-created with the new
    /// ARN. Connectors at the latest version are listed as up to date.
    ///
    /// --json prints {"groupId", "groupVersion", "connectors": [{"id", "name", "arn",
    /// "version", "latest", "upgradable", "latestRunnable", "subscriptions", "newArn"}]};
    /// "subscriptions" and "newArn" are empty and null when there is nothing to upgrade, and
    /// "latest" is null for a connector the catalog does not know.
    ///
    /// Exit status: 0 when the report is printed, whether or not upgrades exist; 2 when it
    /// cannot be made (the API unreachable, no group deployed and no --group-id, the group
    /// not found), with the API's message. Credentials come from
    /// AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, else from DATA_DIR/credentials.
    Upgrades(UpgradesArgs),
}

/// The arguments of `coupler connectors upgrades`.
#[derive(Debug, clap::Args)]
pub struct UpgradesArgs {
    /// The group to check, at its latest version. Default: the group the core runs, at the
    /// version it runs.
    #[arg(long, value_name = "ID")]
    group_id: Option<String>,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    endpoint: Endpoint,
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
        Command::Upgrades(args) => upgrades(catalog, args),
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
        if p.extension {
            facts.push("Coupler extension".into());
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

// ---- upgrades ---------------------------------------------------------------------------

/// What `coupler connectors upgrades` reports.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct UpgradeReport {
    group_id: String,
    group_version: String,
    #[serde(skip)]
    group_name: Option<String>,
    /// The group's latest version, when the report is of another (the deployed) one.
    #[serde(skip)]
    latest_group_version: Option<String>,
    #[serde(skip)]
    deployed: bool,
    connectors: Vec<ConnectorUpgrade>,
}

/// One connector of the group, and its upgrade if there is one.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct ConnectorUpgrade {
    id: String,
    /// The ARN name; the whole ARN when it is not a connector ARN.
    name: String,
    /// The connector ARN in the group.
    arn: String,
    /// Its version; `None` when the ARN is not a connector ARN.
    version: Option<u32>,
    /// The catalog's latest version of it; `None` when the catalog does not know it.
    latest: Option<u32>,
    upgradable: bool,
    /// Whether this core runs the latest version.
    latest_runnable: bool,
    /// The Ids of the subscriptions to re-create with `new_arn` (Source or Target is `arn`).
    subscriptions: Vec<String>,
    new_arn: Option<String>,
}

/// The group's connectors against the catalog, with the subscriptions naming each one that
/// has a newer version. `connectors` and `subscriptions` are the `Definition`s of the
/// connector and subscription definition versions (`Value::Null` when the group has none).
fn plan_upgrades(
    catalog: &Catalog,
    connectors: &Value,
    subscriptions: &Value,
) -> Vec<ConnectorUpgrade> {
    let subs = subscriptions["Subscriptions"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    let naming = |arn: &str| -> Vec<String> {
        subs.iter()
            .filter(|s| s["Source"].as_str() == Some(arn) || s["Target"].as_str() == Some(arn))
            .map(|s| s["Id"].as_str().unwrap_or_default().to_owned())
            .collect()
    };
    connectors["Connectors"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .map(|c| {
            let id = c["Id"].as_str().unwrap_or_default().to_owned();
            let arn = c["ConnectorArn"].as_str().unwrap_or_default().to_owned();
            let Ok(parsed) = ConnectorArn::parse(&arn) else {
                return ConnectorUpgrade {
                    id,
                    name: arn.clone(),
                    arn,
                    version: None,
                    latest: None,
                    upgradable: false,
                    latest_runnable: false,
                    subscriptions: Vec::new(),
                    new_arn: None,
                };
            };
            let name = parsed.connector_name();
            let version = parsed.version();
            let latest = catalog.versions_of(name).into_iter().max();
            let upgradable = latest.is_some_and(|l| l > version);
            let new_arn = latest.filter(|_| upgradable).map(|l| {
                // Only the version changes: the region and the name stay as the group has them.
                let stem = arn
                    .strip_suffix(&version.to_string())
                    .and_then(|s| s.strip_suffix("/versions/"))
                    .unwrap_or(&arn);
                format!("{stem}/versions/{l}")
            });
            ConnectorUpgrade {
                id,
                name: name.to_owned(),
                version: Some(version),
                latest,
                upgradable,
                latest_runnable: latest.is_some_and(|l| is_runnable(name, l)),
                subscriptions: if upgradable { naming(&arn) } else { Vec::new() },
                new_arn,
                arn,
            }
        })
        .collect()
}

fn upgrades(catalog: &Catalog, args: &UpgradesArgs) -> ExitCode {
    let report = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())
        .and_then(|rt| rt.block_on(gather(catalog, args)));
    let report = match report {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    if args.json {
        return match serde_json::to_string_pretty(&report) {
            Ok(s) => {
                println!("{s}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::from(2)
            }
        };
    }
    print!("{}", upgrades_text(&report));
    ExitCode::SUCCESS
}

/// Read the group, its version and the two definition versions, and plan the upgrades.
async fn gather(catalog: &Catalog, args: &UpgradesArgs) -> Result<UpgradeReport, String> {
    // Which group, and (when it is the deployed one) which version.
    let (group_id, deployed_version) = match &args.group_id {
        Some(id) => (id.clone(), None),
        None => {
            let health = crate::client::connect_unsigned(&args.endpoint)?
                .get_plain("/health")
                .await
                .map_err(|e| format!("cannot reach the core: {e}"))?;
            let Some(group) = health["activeGroup"].as_str() else {
                return Err("no group is deployed; pass --group-id".into());
            };
            (
                group.to_owned(),
                health["activeGroupVersion"].as_str().map(str::to_owned),
            )
        }
    };
    if !coupler_model::arn::is_valid_id(&group_id) {
        return Err(format!(
            "{group_id:?} is not a group id (1-128 characters of [a-zA-Z0-9:_-])"
        ));
    }
    let client = crate::client::connect(&args.endpoint)?;
    let group = client
        .call(Method::GET, &format!("/greengrass/groups/{group_id}"), None)
        .await
        .map_err(|e| format!("group {group_id}: {e}"))?;
    let latest = group["LatestVersion"].as_str().map(str::to_owned);
    let deployed = deployed_version.is_some();
    let Some(version) = deployed_version.or_else(|| latest.clone()) else {
        return Err(format!("group {group_id} has no version"));
    };
    let gv = client
        .call(
            Method::GET,
            &format!("/greengrass/groups/{group_id}/versions/{version}"),
            None,
        )
        .await
        .map_err(|e| format!("group {group_id} version {version}: {e}"))?;
    let definition = &gv["Definition"];
    let connectors = match definition["ConnectorDefinitionVersionArn"].as_str() {
        Some(arn) => definition_version(&client, DefinitionKind::Connectors, arn).await?,
        None => Value::Null,
    };
    let subscriptions = match definition["SubscriptionDefinitionVersionArn"].as_str() {
        // Without connectors no subscription matters: spare the request.
        Some(arn) if !connectors.is_null() => {
            definition_version(&client, DefinitionKind::Subscriptions, arn).await?
        }
        _ => Value::Null,
    };
    Ok(UpgradeReport {
        group_name: group["Name"].as_str().map(str::to_owned),
        latest_group_version: latest.filter(|l| *l != version),
        deployed,
        connectors: plan_upgrades(catalog, &connectors, &subscriptions),
        group_id,
        group_version: version,
    })
}

/// The `Definition` of the definition version `arn` names, read as
/// `aws greengrass get-KIND-definition-version` reads it.
async fn definition_version(
    client: &Client,
    kind: DefinitionKind,
    arn: &str,
) -> Result<Value, String> {
    let parsed = DefinitionVersionArn::parse(arn).map_err(|e| e.to_string())?;
    if parsed.kind() != kind {
        return Err(format!(
            "{arn} is not a {} definition version",
            kind.as_str()
        ));
    }
    let path = format!(
        "/greengrass/definition/{}/{}/versions/{}",
        kind.as_str(),
        parsed.definition_id(),
        parsed.version_id()
    );
    let answer = client
        .call(Method::GET, &path, None)
        .await
        .map_err(|e| format!("{arn}: {e}"))?;
    Ok(answer["Definition"].clone())
}

fn upgrades_text(r: &UpgradeReport) -> String {
    use std::fmt::Write as _;
    let mut out = String::new();
    let name = r
        .group_name
        .as_deref()
        .map_or_else(String::new, |n| format!(" ({n})"));
    let which = match (r.deployed, &r.latest_group_version) {
        (true, None) => "deployed, the latest".to_owned(),
        (true, Some(l)) => format!("deployed (the group's latest version is {l})"),
        (false, _) => "the latest".to_owned(),
    };
    let _ = writeln!(
        out,
        "group {}{name} version {}, {which}",
        r.group_id, r.group_version
    );
    if r.connectors.is_empty() {
        out.push_str("the group has no connectors\n");
    }
    for c in &r.connectors {
        let head = format!("{} (Id {})", c.name, c.id);
        let _ = match (c.version, c.latest) {
            (None, _) => writeln!(out, "Id {}: {:?} is not a connector ARN", c.id, c.arn),
            (Some(v), None) => writeln!(out, "{head}: version {v}, not in this core's catalog"),
            (Some(v), Some(l)) if l > v => {
                let runs = if c.latest_runnable { "yes" } else { "no" };
                let new_arn = c.new_arn.as_deref().unwrap_or_default();
                let _ = writeln!(
                    out,
                    "{head}: version {v} -> {l} available (this core runs it: {runs})"
                );
                if c.subscriptions.is_empty() {
                    writeln!(
                        out,
                        "  no subscription names it; change its ConnectorArn to {new_arn}"
                    )
                } else {
                    writeln!(
                        out,
                        "  subscriptions to re-create with {new_arn}: {}",
                        c.subscriptions.join(", ")
                    )
                }
            }
            (Some(v), Some(l)) if l == v => writeln!(out, "{head}: version {v}, the latest"),
            (Some(v), Some(l)) => writeln!(
                out,
                "{head}: version {v}, newer than this core's catalog knows (its latest is {l})"
            ),
        };
    }
    out
}
