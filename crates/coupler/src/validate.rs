//! `coupler validate FILE`.

use std::path::PathBuf;
use std::process::ExitCode;

use coupler_model::bundle::{MAX_BUNDLE_BYTES, ParseError};
use coupler_model::{GroupBundle, Options, Problem};
use serde::Serialize;

use crate::connectors::is_runnable;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The group bundle: a JSON or YAML document (see docs/group-bundle.md); `-` reads stdin.
    file: PathBuf,
    /// Print the result as JSON.
    #[arg(long)]
    json: bool,
    /// Judge the group for a core that allows functions to run as root
    /// (Greengrass `runtime.allowFunctionsToRunAsRoot`).
    #[arg(long)]
    allow_run_as_root: bool,
}

#[derive(Serialize)]
struct Report<'a> {
    valid: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    summary: Option<String>,
    problems: &'a [Problem],
    warnings: &'a [String],
}

fn read(file: &PathBuf) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let mut buf = Vec::new();
    let limit = MAX_BUNDLE_BYTES as u64 + 1;
    if file.as_os_str() == "-" {
        std::io::stdin().take(limit).read_to_end(&mut buf)?;
    } else {
        std::fs::File::open(file)?
            .take(limit)
            .read_to_end(&mut buf)?;
    }
    Ok(buf)
}

pub fn run(args: &Args) -> ExitCode {
    let bytes = match read(&args.file) {
        Ok(b) => b,
        Err(e) => return unreadable(args, &format!("{}: {e}", args.file.display())),
    };
    let bundle = match GroupBundle::from_slice(&bytes) {
        Ok(b) => b,
        Err(ParseError::Invalid { path, message }) => {
            return invalid(args, &[Problem { path, message }]);
        }
        Err(e) => return unreadable(args, &format!("{}: {e}", args.file.display())),
    };
    let options = Options {
        allow_functions_to_run_as_root: args.allow_run_as_root,
    };
    match coupler_model::validate(&bundle, &options) {
        Ok(group) => {
            let warnings: Vec<String> = group
                .connectors
                .iter()
                .filter(|c| !is_runnable(c.arn.connector_name(), c.arn.version()))
                .map(|c| {
                    format!(
                        "connector {} ({} version {}) is valid, but this core cannot run it yet",
                        c.id,
                        c.arn.connector_name(),
                        c.arn.version()
                    )
                })
                .collect();
            if args.json {
                print_json(&Report {
                    valid: true,
                    summary: Some(group.summary()),
                    problems: &[],
                    warnings: &warnings,
                });
            } else {
                println!("valid: {}", group.summary());
                for w in &warnings {
                    eprintln!("warning: {w}");
                }
            }
            ExitCode::SUCCESS
        }
        Err(problems) => invalid(args, &problems),
    }
}

fn invalid(args: &Args, problems: &[Problem]) -> ExitCode {
    if args.json {
        print_json(&Report {
            valid: false,
            summary: None,
            problems,
            warnings: &[],
        });
    } else {
        for p in problems {
            println!("{p}");
        }
        eprintln!(
            "{}: invalid group: {} problem(s)",
            args.file.display(),
            problems.len()
        );
    }
    ExitCode::from(1)
}

fn unreadable(args: &Args, message: &str) -> ExitCode {
    if args.json {
        print_json(&serde_json::json!({ "valid": false, "error": message }));
    } else {
        eprintln!("error: {message}");
    }
    ExitCode::from(2)
}

fn print_json(v: &impl Serialize) {
    match serde_json::to_string_pretty(v) {
        Ok(s) => println!("{s}"),
        Err(e) => eprintln!("error: cannot print JSON: {e}"),
    }
}
