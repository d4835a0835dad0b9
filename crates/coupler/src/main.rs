//! `coupler`: the command line. Wiring only; the work lives in the library crates.

// This is the CLI: printing is its job.
#![allow(clippy::print_stdout, clippy::print_stderr)]

mod certs;
mod client;
mod cloud;
mod config;
mod connectors;
mod core;
mod deploy;
mod doctor;
mod embedded;
mod logs;
mod malloc;
mod mqtt;
mod status;
mod up;
mod validate;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Coupler runs AWS IoT Greengrass Core v1 groups (connectors, Lambda functions, devices,
/// subscriptions) on any Linux device, in one small binary.
#[derive(Debug, Parser)]
// Every flag overrides itself: the command line comes after a --config file's settings.
#[command(name = "coupler", version, about, long_about = None, args_override_self = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Check a group bundle offline against the Greengrass rules.
    ///
    /// Exit status: 0 when the group is valid, 1 when it is not (every problem is printed
    /// with its path), 2 when the file cannot be read as JSON or YAML.
    Validate(validate::Args),
    /// The catalog of Greengrass connectors: what exists and what this core runs.
    #[command(subcommand)]
    Connectors(connectors::Command),
    /// Run Coupler: the Greengrass-compatible control-plane API on an embedded store, and the
    /// core that applies its deployments.
    ///
    /// On first start it creates the data dir, a SQLite store and an access key pair, and
    /// prints how to point the AWS CLI at it. Deployments are applied as they are created and
    /// reported Success or Failure; the active one survives restarts. `/health` and
    /// `/metrics` (Prometheus) answer on the API port without a signature. Stops cleanly on
    /// Ctrl-C or SIGTERM.
    Up(up::Args),
    /// Run a core that takes its deployments from a remote control plane.
    ///
    /// The core applies the deployments of groups whose core definition names
    /// --thing-name, as `coupler up`'s core does for its own API. It fetches function code,
    /// secret values and its MQTT server certificate from the control plane, and reports
    /// each deployment's outcome there. `/health` and `/metrics` answer on --listen. The key
    /// comes from AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or --credentials. Stops cleanly on
    /// Ctrl-C or SIGTERM.
    Core(core::Args),
    /// Deploy a group bundle through the API and follow the deployment to its end.
    ///
    /// Creates one definition per section of the bundle, the group (or a new version of the
    /// group of that name), and a NewDeployment. Exit status: 0 on Success, 1 on Failure (the
    /// reasons are printed), 2 when the deployment could not be made. Credentials come from
    /// AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, else from DATA_DIR/credentials.
    Deploy(deploy::Args),
    /// Show what the core runs: the active group, deployment and routing counters.
    Status(status::Args),
    /// Device certificates signed by the group CA.
    #[command(subcommand)]
    Certs(certs::Command),
    /// Print a log of the core (`runtime`, Greengrass's line format), `-f` to follow it.
    Logs(logs::Args),
    /// Check this host: which isolation modes work, and why not.
    Doctor(doctor::Args),
    /// Internal: run a program contained (the core starts GreengrassContainer units so).
    #[command(hide = true)]
    SandboxExec(SandboxExec),
    /// Internal: be one contained connector, driven by the core over stdin and stdout.
    #[command(hide = true)]
    ConnectorExec,
}

#[derive(Debug, clap::Args)]
struct SandboxExec {
    /// The containment, as JSON (`coupler_runtime::isolation::SandboxSpec`).
    #[arg(long)]
    spec: String,
    /// The program and its arguments.
    #[arg(last = true, required = true)]
    argv: Vec<std::ffi::OsString>,
}

fn main() -> ExitCode {
    malloc::single_arena();
    let args = match config::expand(std::env::args_os().collect()) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let cli = Cli::parse_from(args);
    match cli.command {
        Command::Validate(args) => validate::run(&args),
        Command::Connectors(cmd) => connectors::run(&cmd),
        Command::Up(args) => up::run(&args),
        Command::Core(args) => core::run(&args),
        Command::Deploy(args) => deploy::run(&args),
        Command::Status(args) => status::run(&args),
        Command::Logs(args) => logs::run(&args),
        Command::Certs(cmd) => certs::run(&cmd),
        Command::Doctor(args) => doctor::run(&args),
        Command::ConnectorExec => {
            ExitCode::from(u8::try_from(coupler_connectors::contained::child_main()).unwrap_or(1))
        }
        Command::SandboxExec(a) => {
            match serde_json::from_str::<coupler_runtime::isolation::SandboxSpec>(&a.spec) {
                Ok(spec) => {
                    let code = coupler_runtime::isolation::run(&spec, &a.argv);
                    ExitCode::from(u8::try_from(code).unwrap_or(1))
                }
                Err(e) => {
                    eprintln!("coupler sandbox: --spec: {e}");
                    ExitCode::from(125)
                }
            }
        }
    }
}
