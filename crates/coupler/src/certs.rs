//! `coupler certs issue`: a device key and certificate signed by the group CA.

use std::path::PathBuf;
use std::process::ExitCode;

use crate::client::Endpoint;

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Issue a device key and certificate signed by the group CA, for testing and for
    /// small sites.
    ///
    /// Writes THING.cert.pem, THING.private.key (mode 0600) and root.ca.pem (the group CA,
    /// which verifies the core's MQTT server) into --out, and prints the certificate and
    /// thing ARNs to put in the group's device definition. The core accepts the
    /// certificate when the client id is THING and THING is a device of the deployed group.
    Issue(IssueArgs),
}

#[derive(Debug, clap::Args)]
pub struct IssueArgs {
    /// The device's thing name; the certificate's common name.
    #[arg(long)]
    thing: String,
    /// The group whose CA signs; by default the group of the newest deployment.
    #[arg(long)]
    group_id: Option<String>,
    /// Validity in days (1-3650).
    #[arg(long, default_value_t = 365)]
    days: u32,
    /// Directory for the files.
    #[arg(long, default_value = ".")]
    out: PathBuf,
    /// Print the API's answer as JSON (it includes the private key) instead of writing files.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    endpoint: Endpoint,
}

pub fn run(cmd: &Command) -> ExitCode {
    let Command::Issue(args) = cmd;
    match issue(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}

fn issue(args: &IssueArgs) -> Result<(), String> {
    let mut body = serde_json::json!({ "ThingName": args.thing, "ValidityDays": args.days });
    if let Some(g) = &args.group_id {
        body["GroupId"] = g.clone().into();
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let answer = rt.block_on(async {
        crate::client::connect(&args.endpoint)?
            .call(
                axum::http::Method::POST,
                "/coupler/device-certificates",
                Some(&body),
            )
            .await
    })?;
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&answer).unwrap_or_default()
        );
        return Ok(());
    }
    let field = |k: &str| answer[k].as_str().unwrap_or_default().to_owned();
    std::fs::create_dir_all(&args.out).map_err(|e| format!("{}: {e}", args.out.display()))?;
    let cert = args.out.join(format!("{}.cert.pem", args.thing));
    let key = args.out.join(format!("{}.private.key", args.thing));
    let ca = args.out.join("root.ca.pem");
    let err = |p: &PathBuf, e: std::io::Error| format!("{}: {e}", p.display());
    std::fs::write(&cert, field("CertificatePem")).map_err(|e| err(&cert, e))?;
    crate::up::write_private(&key, field("PrivateKeyPem").as_bytes()).map_err(|e| err(&key, e))?;
    std::fs::write(&ca, field("GroupCertificateAuthorityPem")).map_err(|e| err(&ca, e))?;
    println!("group:           {}", field("GroupId"));
    println!("certificate:     {}", cert.display());
    println!("private key:     {}", key.display());
    println!("group CA:        {}", ca.display());
    println!("ThingArn:        {}", field("ThingArn"));
    println!("CertificateArn:  {}", field("CertificateArn"));
    Ok(())
}
