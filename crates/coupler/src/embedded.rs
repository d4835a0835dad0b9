//! The core and the control plane in one process: the agent reads pending deployments from
//! the API's service directly and reports back to it.

use std::sync::Arc;

use coupler_api::Service;
use coupler_api::service::StoredErrorDetail;
use coupler_runtime::{Agent, ControlPlane, Pending, PendingKind, Report};

#[derive(Debug)]
pub struct Embedded {
    pub service: Arc<Service>,
    pub agent: Arc<Agent>,
}

impl Embedded {
    /// A forced reset is reported Success by the control plane at once; the core still has
    /// to clean up if the reset group is the one it runs.
    fn forced_reset(&self) -> Result<Option<Pending>, String> {
        let Some(active) = self.agent.active() else {
            return Ok(None);
        };
        let newest = self
            .service
            .newest_deployment()
            .map_err(|e| e.to_string())?;
        Ok(newest
            .filter(|(group_id, d)| {
                d.deployment_type == "ForceResetDeployment" && *group_id == active.group_id
            })
            .map(|(group_id, d)| Pending {
                group_id,
                deployment_id: d.deployment_id,
                deployment_type: d.deployment_type,
                kind: PendingKind::Reset,
            }))
    }
}

impl ControlPlane for Embedded {
    fn next_deployment(&self) -> Result<Option<Pending>, String> {
        let Some(p) = self
            .service
            .pending_deployment()
            .map_err(|e| e.to_string())?
        else {
            return self.forced_reset();
        };
        let kind = match (p.group, &p.record.group_version_id) {
            (Some(group), Some(vid)) => PendingKind::Deploy {
                group_version_id: vid.clone(),
                group,
            },
            _ => PendingKind::Reset,
        };
        Ok(Some(Pending {
            group_id: p.group_id,
            deployment_id: p.record.deployment_id,
            deployment_type: p.record.deployment_type,
            kind,
        }))
    }

    fn report(&self, pending: &Pending, report: &Report) -> Result<(), String> {
        let error = report.error_message.as_ref().map(|m| {
            (
                m.clone(),
                report
                    .error_details
                    .iter()
                    .map(|(code, message)| StoredErrorDetail {
                        detailed_error_code: code.clone(),
                        detailed_error_message: message.clone(),
                    })
                    .collect(),
            )
        });
        self.service
            .update_deployment_status(
                &pending.group_id,
                &pending.deployment_id,
                report.status.as_str(),
                error,
            )
            .map_err(|e| e.to_string())
    }
}
