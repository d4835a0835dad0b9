//! The active deployment, persisted so that it survives restarts (including `kill -9`).
//!
//! Kept where Greengrass kept it, `<data>/ggc/deployment/group/group.json`. It is replaced
//! atomically: written to a temporary file, synced, renamed over the old one, and the directory
//! synced, so a crash leaves either the old or the new deployment, never a torn file.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use coupler_model::GroupBundle;
use serde::{Deserialize, Serialize};

/// What is deployed on this core.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase", deny_unknown_fields)]
pub struct Active {
    pub group_id: String,
    pub group_version_id: String,
    pub deployment_id: String,
    pub group: GroupBundle,
}

#[derive(Debug, thiserror::Error)]
pub enum ActiveError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: not a deployment record: {source}")]
    Corrupt {
        path: PathBuf,
        source: serde_json::Error,
    },
}

/// Where the active deployment lives.
#[derive(Debug, Clone)]
pub struct ActiveStore {
    path: PathBuf,
}

impl ActiveStore {
    pub fn new(data_dir: &Path) -> Self {
        Self {
            path: data_dir.join("ggc/deployment/group/group.json"),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn io(&self, source: std::io::Error) -> ActiveError {
        ActiveError::Io {
            path: self.path.clone(),
            source,
        }
    }

    /// The deployment last made active, if any.
    pub fn load(&self) -> Result<Option<Active>, ActiveError> {
        let bytes = match fs::read(&self.path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(self.io(e)),
        };
        // `{}` is Greengrass's documented way to clear a core: no active group.
        if bytes
            .iter()
            .filter(|b| !b.is_ascii_whitespace())
            .eq(b"{}".iter())
        {
            return Ok(None);
        }
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|source| ActiveError::Corrupt {
                path: self.path.clone(),
                source,
            })
    }

    /// Make `active` the active deployment, atomically.
    pub fn save(&self, active: &Active) -> Result<(), ActiveError> {
        let json = serde_json::to_vec_pretty(active).map_err(|source| ActiveError::Corrupt {
            path: self.path.clone(),
            source,
        })?;
        self.replace(&json)
    }

    /// No active deployment (after a reset).
    pub fn clear(&self) -> Result<(), ActiveError> {
        self.replace(b"{}\n")
    }

    fn replace(&self, data: &[u8]) -> Result<(), ActiveError> {
        let dir = self.path.parent().unwrap_or(Path::new("."));
        fs::create_dir_all(dir).map_err(|e| self.io(e))?;
        let tmp = dir.join(".group.json.tmp");
        let written = fs::File::create(&tmp).and_then(|mut f| {
            f.write_all(data)?;
            f.sync_all()
        });
        if let Err(e) = written {
            // A full disk leaves the old file as it was; the partial copy must not keep
            // holding the space.
            let _ = fs::remove_file(&tmp);
            return Err(self.io(e));
        }
        fs::rename(&tmp, &self.path).map_err(|e| self.io(e))?;
        // The rename is durable only once the directory is.
        fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| self.io(e))
    }
}
