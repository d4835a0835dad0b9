//! `--config FILE` for `coupler up` and `coupler core`: the same settings as the flags, kept in
//! a YAML file (`cloud: mqtts://…`, `cloud-ca: /etc/coupler/AmazonRootCA1.pem`, …).

use std::ffi::OsString;
use std::path::Path;

/// The subcommands that take `--config`.
const WITH_CONFIG: [&str; 2] = ["up", "core"];

/// `args` with the settings of the config file (`--config FILE`, `--config=FILE` or
/// `COUPLER_CONFIG`) inserted as flags right after the subcommand, so that the command line,
/// which comes later, wins over them.
pub fn expand(args: Vec<OsString>) -> Result<Vec<OsString>, String> {
    let Some(sub) = args.get(1).and_then(|a| a.to_str()) else {
        return Ok(args);
    };
    if !WITH_CONFIG.contains(&sub) {
        return Ok(args);
    }
    let mut path = None;
    let mut it = args.iter().skip(2);
    while let Some(a) = it.next() {
        let Some(a) = a.to_str() else { continue };
        if a == "--" {
            break;
        }
        if a == "--config" {
            path = it.next().cloned();
        } else if let Some(p) = a.strip_prefix("--config=") {
            path = Some(p.into());
        }
    }
    let Some(path) = path.or_else(|| std::env::var_os("COUPLER_CONFIG")) else {
        return Ok(args);
    };
    let flags = read(Path::new(&path))?;
    let mut out = args;
    out.splice(2..2, flags);
    Ok(out)
}

/// The file's settings as `--name=value` (and `--name` for `true`).
fn read(path: &Path) -> Result<Vec<OsString>, String> {
    let what = |e: &dyn std::fmt::Display| format!("--config {}: {e}", path.display());
    let text = std::fs::read_to_string(path).map_err(|e| what(&e))?;
    if text.trim().is_empty() {
        return Ok(Vec::new());
    }
    let map: std::collections::BTreeMap<String, serde_norway::Value> =
        serde_norway::from_str(&text).map_err(|e| what(&e))?;
    let mut flags = Vec::new();
    for (name, value) in map {
        let valid = !name.is_empty()
            && name != "config"
            && name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
        if !valid {
            return Err(what(&format!(
                "{name:?} is not a flag name (the long flags of `coupler up --help`, without the dashes)"
            )));
        }
        let text = match value {
            serde_norway::Value::Bool(true) => {
                flags.push(format!("--{name}").into());
                continue;
            }
            serde_norway::Value::Bool(false) | serde_norway::Value::Null => continue,
            serde_norway::Value::String(s) => s,
            serde_norway::Value::Number(n) => n.to_string(),
            _ => {
                return Err(what(&format!(
                    "{name}: give a string, a number or true/false"
                )));
            }
        };
        flags.push(format!("--{name}={text}").into());
    }
    Ok(flags)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<OsString> {
        a.iter().map(OsString::from).collect()
    }

    #[test]
    fn settings_come_before_the_command_line() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("c.yaml");
        std::fs::write(
            &f,
            "cloud: mqtt://h:1\ncloud-window: 50\nallow-uncontained: true\nno-core: false\n",
        )
        .unwrap();
        let got = expand(args(&[
            "coupler",
            "up",
            "--config",
            f.to_str().unwrap(),
            "--cloud-window",
            "7",
        ]))
        .unwrap();
        assert_eq!(
            got,
            args(&[
                "coupler",
                "up",
                "--allow-uncontained",
                "--cloud=mqtt://h:1",
                "--cloud-window=50",
                "--config",
                f.to_str().unwrap(),
                "--cloud-window",
                "7"
            ])
        );
        // Other commands are left alone.
        let other = args(&["coupler", "status", "--config", "x"]);
        assert_eq!(expand(other.clone()).unwrap(), other);
    }

    #[test]
    fn bad_files_name_the_problem() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("c.yaml");
        std::fs::write(&f, "Cloud_URL: x\n").unwrap();
        let e = expand(args(&["coupler", "core", "--config", f.to_str().unwrap()])).unwrap_err();
        assert!(
            e.contains("Cloud_URL") && e.contains("not a flag name"),
            "{e}"
        );
        std::fs::write(&f, "cloud: [1, 2]\n").unwrap();
        let e = expand(args(&[
            "coupler",
            "up",
            &format!("--config={}", f.display()),
        ]))
        .unwrap_err();
        assert!(e.contains("cloud:"), "{e}");
        let e = expand(args(&["coupler", "up", "--config", "/nonexistent/c.yaml"])).unwrap_err();
        assert!(e.contains("/nonexistent/c.yaml"), "{e}");
    }
}
