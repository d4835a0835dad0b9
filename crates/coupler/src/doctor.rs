//! `coupler doctor`: what this host lets the core do.

use std::process::ExitCode;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The Python 3 interpreter functions would run with.
    #[arg(long, default_value = "python3", env = "COUPLER_PYTHON")]
    python: std::path::PathBuf,
}

/// Print one line per capability; exit 0 when everything works, 1 otherwise.
pub fn run(args: &Args) -> ExitCode {
    let mut ok = true;
    let mut line = |what: &str, r: Result<String, String>| match r {
        Ok(detail) => println!("ok    {what}: {detail}"),
        Err(why) => {
            ok = false;
            println!("no    {what}: {why}");
        }
    };
    line(
        "NoContainer units",
        Ok("always (plain processes for functions, tasks in the core for connectors)".into()),
    );
    line(
        "GreengrassContainer functions and connectors",
        coupler_runtime::isolation::probe()
            .map(|()| "mount, PID, IPC and UTS namespaces; memory and pids cgroups".into())
            .map_err(|why| format!("{why}; deploy them with IsolationMode NoContainer, or start the core with --allow-uncontained")),
    );
    line(
        "Python functions",
        std::process::Command::new(&args.python)
            .args([
                "-c",
                "import sys, greengrasssdk; print(sys.version.split()[0])",
            ])
            .output()
            .map_err(|e| format!("{}: {e}", args.python.display()))
            .and_then(|o| {
                if o.status.success() {
                    Ok(format!(
                        "Python {} with greengrasssdk ({})",
                        String::from_utf8_lossy(&o.stdout).trim(),
                        args.python.display()
                    ))
                } else {
                    Err(format!(
                        "{} cannot import greengrasssdk: pip install greengrasssdk==1.6.1",
                        args.python.display()
                    ))
                }
            }),
    );
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}
