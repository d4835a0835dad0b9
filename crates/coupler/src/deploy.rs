//! `coupler deploy BUNDLE`: create the group from a bundle through the API, deploy it, and
//! follow the deployment to its end.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use axum::http::Method;
use coupler_model::GroupBundle;
use coupler_model::arn::DefinitionKind;
use coupler_model::validate::definition_key;
use serde_json::{Value, json};

use crate::client::Endpoint;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The group bundle to deploy (JSON or YAML; see docs/group-bundle.md).
    bundle: PathBuf,
    /// The group's name; a group of that name gets a new version, else one is created.
    /// Defaults to the bundle's file name.
    #[arg(long)]
    name: Option<String>,
    /// How long to follow the deployment.
    #[arg(long, default_value_t = 60)]
    timeout_secs: u64,
    #[command(flatten)]
    endpoint: Endpoint,
}

/// Where each kind goes in a group version.
fn group_version_field(kind: DefinitionKind) -> &'static str {
    match kind {
        DefinitionKind::Connectors => "ConnectorDefinitionVersionArn",
        DefinitionKind::Cores => "CoreDefinitionVersionArn",
        DefinitionKind::Devices => "DeviceDefinitionVersionArn",
        DefinitionKind::Functions => "FunctionDefinitionVersionArn",
        DefinitionKind::Loggers => "LoggerDefinitionVersionArn",
        DefinitionKind::Resources => "ResourceDefinitionVersionArn",
        DefinitionKind::Subscriptions => "SubscriptionDefinitionVersionArn",
    }
}

pub fn run(args: &Args) -> ExitCode {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    match rt.block_on(deploy(args)) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}

/// Whether the deployment succeeded; `Err` when it could not be made at all.
async fn deploy(args: &Args) -> Result<bool, String> {
    let bytes =
        std::fs::read(&args.bundle).map_err(|e| format!("{}: {e}", args.bundle.display()))?;
    let bundle =
        GroupBundle::from_slice(&bytes).map_err(|e| format!("{}: {e}", args.bundle.display()))?;
    if let Err(problems) = coupler_model::validate(
        &bundle,
        &coupler_model::Options {
            allow_functions_to_run_as_root: true,
        },
    ) {
        for p in &problems {
            println!("{p}");
        }
        return Err(format!(
            "{}: invalid group: {} problem(s)",
            args.bundle.display(),
            problems.len()
        ));
    }
    let name = args.name.clone().unwrap_or_else(|| {
        args.bundle
            .file_stem()
            .map_or_else(|| "group".into(), |s| s.to_string_lossy().into_owned())
    });
    let client = crate::client::connect(&args.endpoint)?;

    let mut version = serde_json::Map::new();
    for kind in DefinitionKind::ALL {
        let Some(payload) = bundle.definition_json(kind) else {
            continue;
        };
        let payload: Value = serde_json::from_str(payload.get()).map_err(|e| e.to_string())?;
        let created = client
            .call(
                Method::POST,
                &format!("/greengrass/definition/{}", kind.as_str()),
                Some(&json!({ "Name": format!("{name}-{}", kind.as_str()), "InitialVersion": payload })),
            )
            .await
            .map_err(|e| format!("{}: {e}", definition_key(kind)))?;
        println!(
            "created {} {}",
            definition_key(kind),
            created["LatestVersion"].as_str().unwrap_or("?")
        );
        version.insert(
            group_version_field(kind).into(),
            created["LatestVersionArn"].clone(),
        );
    }

    let groups = client
        .call(Method::GET, "/greengrass/groups?MaxResults=1000", None)
        .await?;
    let existing = groups["Groups"]
        .as_array()
        .and_then(|gs| gs.iter().find(|g| g["Name"] == name.as_str()))
        .and_then(|g| g["Id"].as_str())
        .map(str::to_owned);
    let (group_id, version_id) = match existing {
        Some(id) => {
            let v = client
                .call(
                    Method::POST,
                    &format!("/greengrass/groups/{id}/versions"),
                    Some(&Value::Object(version)),
                )
                .await?;
            (id, v["Version"].as_str().unwrap_or_default().to_owned())
        }
        None => {
            let g = client
                .call(
                    Method::POST,
                    "/greengrass/groups",
                    Some(&json!({ "Name": name, "InitialVersion": version })),
                )
                .await?;
            (
                g["Id"].as_str().unwrap_or_default().to_owned(),
                g["LatestVersion"].as_str().unwrap_or_default().to_owned(),
            )
        }
    };
    println!("group {name} ({group_id}) version {version_id}");

    let d = client
        .call(
            Method::POST,
            &format!("/greengrass/groups/{group_id}/deployments"),
            Some(&json!({ "DeploymentType": "NewDeployment", "GroupVersionId": version_id })),
        )
        .await?;
    let deployment = d["DeploymentId"].as_str().unwrap_or_default().to_owned();
    println!("deployment {deployment}");

    let started = Instant::now();
    let mut last = String::new();
    loop {
        let s = client
            .call(
                Method::GET,
                &format!("/greengrass/groups/{group_id}/deployments/{deployment}/status"),
                None,
            )
            .await?;
        let status = s["DeploymentStatus"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        if status != last {
            println!("  {status}");
            last.clone_from(&status);
        }
        match status.as_str() {
            "Success" => return Ok(true),
            "Failure" => {
                println!("  {}", s["ErrorMessage"].as_str().unwrap_or_default());
                for d in s["ErrorDetails"].as_array().into_iter().flatten() {
                    println!(
                        "  - {}: {}",
                        d["DetailedErrorCode"].as_str().unwrap_or_default(),
                        d["DetailedErrorMessage"].as_str().unwrap_or_default()
                    );
                }
                return Ok(false);
            }
            _ if started.elapsed() > Duration::from_secs(args.timeout_secs) => {
                return Err(format!(
                    "deployment {deployment} is still {status} after {} s",
                    args.timeout_secs
                ));
            }
            _ => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}
