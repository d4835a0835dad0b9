//! `coupler logs [NAME] [-f]`: the core's Greengrass-style log files.

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Which log: `runtime` (the core's own, the default) or a component's name.
    #[arg(default_value = "runtime")]
    name: String,
    /// Keep printing as the log grows (Ctrl-C stops).
    #[arg(short, long)]
    follow: bool,
    /// The data dir of `coupler up`.
    #[arg(long, default_value = "coupler-data", env = "COUPLER_DATA_DIR")]
    data_dir: PathBuf,
}

/// `<data>/ggc/var/log/system/NAME.log`, else `<data>/ggc/var/log/user/*/*/NAME.log`.
fn find(data_dir: &Path, name: &str) -> Option<PathBuf> {
    let logs = data_dir.join("ggc/var/log");
    let system = logs.join("system").join(format!("{name}.log"));
    if system.exists() {
        return Some(system);
    }
    let user = logs.join("user");
    for region in std::fs::read_dir(&user).ok()?.flatten() {
        for owner in std::fs::read_dir(region.path()).ok()?.flatten() {
            let p = owner.path().join(format!("{name}.log"));
            if p.exists() {
                return Some(p);
            }
        }
    }
    None
}

pub fn run(args: &Args) -> ExitCode {
    let Some(path) = find(&args.data_dir, &args.name) else {
        eprintln!(
            "error: no log named {:?} under {}",
            args.name,
            args.data_dir.join("ggc/var/log").display()
        );
        return ExitCode::from(2);
    };
    let mut out = std::io::stdout().lock();
    // The rotated part first, then the current file.
    if let Ok(old) = std::fs::read(path.with_extension("log.1")) {
        let _ = out.write_all(&old);
    }
    let mut offset = 0;
    loop {
        match std::fs::File::open(&path) {
            Ok(mut f) => {
                let len = f.metadata().map(|m| m.len()).unwrap_or(0);
                // A shorter file was rotated: start over at its beginning.
                if len < offset {
                    offset = 0;
                }
                let mut buf = Vec::new();
                if f.seek(SeekFrom::Start(offset)).is_ok() && f.read_to_end(&mut buf).is_ok() {
                    offset += buf.len() as u64;
                    let _ = out.write_all(&buf);
                    let _ = out.flush();
                }
            }
            Err(e) if !args.follow => {
                eprintln!("error: {}: {e}", path.display());
                return ExitCode::from(2);
            }
            Err(_) => {}
        }
        if !args.follow {
            return ExitCode::SUCCESS;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}
