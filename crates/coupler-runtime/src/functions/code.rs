//! Function code on the core's disk: each deployed zip unpacked once into a directory named
//! by its hash, and the Python runtime (the modules the Greengrass SDK imports from the core,
//! and the handler loop) written out from the binary.

use std::io::Read as _;
use std::path::{Path, PathBuf};

pub use coupler_model::function::FunctionCode;

/// Where a core gets function code at deployment: its own control plane in `coupler up`.
pub trait CodeSource: Send + Sync {
    /// The code of the function version or alias `arn`; the error says why there is none.
    fn code(&self, arn: &str) -> Result<FunctionCode, String>;
}

/// Lambda's limit on unzipped code: a zip that inflates beyond it is refused.
pub const MAX_UNZIPPED_BYTES: u64 = 250 * 1024 * 1024;

/// The runtimes this core runs, with the interpreter for each: the host's `python3` serves
/// every Python 3 runtime Greengrass offered.
pub fn interpreter(runtime: &str) -> Option<&'static str> {
    match runtime {
        "python3.7" | "python3.8" | "python3.9" | "python3.10" | "python3.11" | "python3.12"
        | "python3.13" => Some("python3"),
        _ => None,
    }
}

/// Unpack `code` under `root` (once per code hash) and return its directory.
pub fn unpack(root: &Path, name: &str, code: &FunctionCode) -> Result<PathBuf, String> {
    let hash: String = code
        .code_sha256
        .chars()
        .filter_map(|c| match c {
            '/' => Some('_'),
            '+' => Some('-'),
            '=' => None,
            c => Some(c),
        })
        .collect();
    let dir = root.join(name).join(&hash);
    if dir.is_dir() {
        return Ok(dir);
    }
    let tmp = root.join(name).join(format!(".{hash}.tmp"));
    let _ = std::fs::remove_dir_all(&tmp);
    extract(&code.zip, &tmp).map_err(|e| {
        let _ = std::fs::remove_dir_all(&tmp);
        format!("cannot unpack the code of {}: {e}", code.version_arn)
    })?;
    std::fs::rename(&tmp, &dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    Ok(dir)
}

fn extract(zip: &[u8], to: &Path) -> Result<(), String> {
    let mut archive =
        zip::ZipArchive::new(std::io::Cursor::new(zip)).map_err(|e| format!("not a zip: {e}"))?;
    let mut total = 0u64;
    for i in 0..archive.len() {
        let mut entry = archive.by_index(i).map_err(|e| e.to_string())?;
        // A name that climbs out of the directory (`../x`, `/etc/x`) is refused outright.
        let Some(rel) = entry.enclosed_name() else {
            return Err(format!(
                "entry {:?} leaves the code directory",
                entry.name()
            ));
        };
        let path = to.join(&rel);
        if entry.is_dir() {
            std::fs::create_dir_all(&path).map_err(|e| format!("{}: {e}", path.display()))?;
            continue;
        }
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
        }
        let mut data = Vec::new();
        (&mut entry)
            .take(MAX_UNZIPPED_BYTES - total + 1)
            .read_to_end(&mut data)
            .map_err(|e| format!("{}: {e}", rel.display()))?;
        total += data.len() as u64;
        if total > MAX_UNZIPPED_BYTES {
            return Err(format!(
                "the code unzips to more than {} MB",
                MAX_UNZIPPED_BYTES >> 20
            ));
        }
        std::fs::write(&path, &data).map_err(|e| format!("{}: {e}", path.display()))?;
        // Readable by every user: the function may run as its RunAs user (zips made by
        // Python's zipfile say 0600); executable bits are kept, write bits are the core's.
        let mode = entry.unix_mode().unwrap_or(0o644);
        {
            use std::os::unix::fs::PermissionsExt as _;
            let _ = std::fs::set_permissions(
                &path,
                std::fs::Permissions::from_mode(mode & 0o755 | 0o444),
            );
        }
    }
    Ok(())
}

/// The Python runtime's files, embedded in the binary so that a core needs only Python.
const PYTHON_RUNTIME: [(&str, &str); 6] = [
    (
        "coupler_lambda_runtime.py",
        include_str!("../../../../python/coupler_lambda_runtime.py"),
    ),
    (
        "greengrass_common/__init__.py",
        include_str!("../../../../python/greengrass_common/__init__.py"),
    ),
    (
        "greengrass_common/env_vars.py",
        include_str!("../../../../python/greengrass_common/env_vars.py"),
    ),
    (
        "greengrass_common/function_arn_fields.py",
        include_str!("../../../../python/greengrass_common/function_arn_fields.py"),
    ),
    (
        "greengrass_ipc_python_sdk/__init__.py",
        include_str!("../../../../python/greengrass_ipc_python_sdk/__init__.py"),
    ),
    (
        "greengrass_ipc_python_sdk/ipc_client.py",
        include_str!("../../../../python/greengrass_ipc_python_sdk/ipc_client.py"),
    ),
];

/// The handler loop's file name inside the runtime directory.
pub const RUNTIME_MAIN: &str = "coupler_lambda_runtime.py";

/// Write the Python runtime into `dir` (replacing an older copy).
pub fn write_python_runtime(dir: &Path) -> Result<(), String> {
    for (rel, text) in PYTHON_RUNTIME {
        let path = dir.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| format!("{}: {e}", parent.display()))?;
        }
        if std::fs::read_to_string(&path).is_ok_and(|old| old == text) {
            continue;
        }
        std::fs::write(&path, text).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    Ok(())
}
