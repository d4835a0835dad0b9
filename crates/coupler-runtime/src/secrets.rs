//! Secret resources as the core's units receive them: fetched once at deployment from a
//! [`SecretSource`] (the control plane's store, or AWS Secrets Manager), with `AWSCURRENT`
//! and any extra staging labels the resource asks for.

use std::collections::BTreeMap;

use coupler_model::SecretValue;

/// Where secret resources get their values at deployment.
pub trait SecretSource: Send + Sync {
    /// The value of the secret `arn` at `stage`; `Ok(None)` when there is no such secret or
    /// stage. An error must not quote the value.
    fn value(&self, arn: &str, stage: &str) -> Result<Option<SecretValue>, String>;
}

impl std::fmt::Debug for dyn SecretSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretSource")
    }
}

/// A secret resource with its values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchedSecret {
    pub arn: String,
    pub current: SecretValue,
    /// Values of the resource's `AdditionalStagingLabelsToDownload`.
    pub staged: BTreeMap<String, SecretValue>,
}

impl FetchedSecret {
    /// The value at `stage` (`AWSCURRENT` when empty), if it was downloaded.
    pub fn at(&self, stage: &str) -> Option<&SecretValue> {
        match stage {
            "" | "AWSCURRENT" => Some(&self.current),
            s => self.staged.get(s),
        }
    }
}

/// Fetch secret resource `id` (`arn` with extra `labels`) now: a unit never starts without
/// the secret it was given. The error names the resource and the stage, never the value.
pub fn fetch(
    source: Option<&dyn SecretSource>,
    id: &str,
    arn: &str,
    labels: &[String],
) -> Result<FetchedSecret, String> {
    let source = source
        .ok_or_else(|| format!("secret resource {id:?} ({arn}): this core has no secret store"))?;
    let fetch = |stage: &str| {
        source
            .value(arn, stage)
            .map_err(|e| format!("secret resource {id:?} ({arn}), stage {stage}: {e}"))?
            .ok_or_else(|| {
                format!("secret resource {id:?}: {arn} has no {stage} value in the secret store")
            })
    };
    let current = fetch("AWSCURRENT")?;
    let staged = labels
        .iter()
        .map(|l| Ok((l.clone(), fetch(l)?)))
        .collect::<Result<_, String>>()?;
    Ok(FetchedSecret {
        arn: arn.to_owned(),
        current,
        staged,
    })
}
