//! Shadow deploys across the cluster: starting a candidate chain beside a tenant's
//! live one, promoting it, stopping it. Each is a control entry in the tenant's log, so
//! every instance starts the candidate from the same state at the same position, and a
//! promotion is a chain change at one position like any swap (recorded in the chain
//! history, so instances that start later run the promoted chain).

use serde::Serialize;

use streamgate_runtime::{ChainSpec, StageSpec};

use super::{Applied, ChainControl, ControlError};
use crate::bus::{Control, EntryBody, LogPosition};
use crate::tenant::shadow::{ShadowState, ShadowStatus};
use crate::tenant::{TenantHandle, chain_options};

/// The answer to starting or stopping a shadow.
#[derive(Clone, Debug, Serialize)]
pub struct ShadowApplied {
    pub tenant: String,
    /// Log position of the control entry: every instance acts there.
    pub position: String,
    /// Whether this instance had acted within `admin.apply_timeout_ms`.
    pub applied: bool,
    pub shadow: ShadowStatus,
}

impl ChainControl {
    /// Starts `policies` as `tenant`'s shadow on every instance, from the live chain's
    /// state at the control entry's position; checked like a chain change first.
    pub async fn start_shadow(
        &self,
        tenant: &str,
        policies: Vec<StageSpec>,
    ) -> Result<ShadowApplied, ControlError> {
        let handle = self.tenant(tenant)?;
        let limits = chain_options(&self.catalog, &handle.config).limits;
        let chain = ChainSpec { version: 0, policies };
        self.catalog.prepare(&chain, limits, true, true).await?;
        let reason = "started through the admin API".to_string();
        let position =
            self.bus.publish(tenant, &EntryBody::control(&Control::StartShadow { chain, reason })).await?;
        tracing::info!(tenant, %position, "shadow start published");
        Ok(self.wait_passed(handle, position).await)
    }

    /// Makes the running shadow the live chain everywhere, at the position of the
    /// entry this publishes (a new chain version).
    pub async fn promote_shadow(&self, tenant: &str) -> Result<Applied, ControlError> {
        let handle = self.tenant(tenant)?;
        let status = handle.shadow.status();
        if status.state != ShadowState::Running {
            return Err(ControlError::NoShadow {
                tenant: tenant.to_string(),
                why: status.reason.unwrap_or_else(|| "none was started".into()),
            });
        }
        let reason = format!("promoted from the shadow started at {}", status.started_at.unwrap_or_default());
        self.publish_chain(tenant, status.candidate, &reason, true, true).await
    }

    /// Stops the shadow everywhere.
    pub async fn stop_shadow(&self, tenant: &str) -> Result<ShadowApplied, ControlError> {
        let handle = self.tenant(tenant)?;
        let reason = "stopped through the admin API".to_string();
        let position = self
            .bus
            .publish(tenant, &EntryBody::control(&Control::StopShadow { reason, started_at: None }))
            .await?;
        Ok(self.wait_passed(handle, position).await)
    }

    /// The shadow on this instance and its diff.
    pub fn shadow(&self, tenant: &str) -> Result<ShadowStatus, ControlError> {
        Ok(self.tenant(tenant)?.shadow.status())
    }

    /// Waits (bounded) until this instance's worker has passed `position`.
    async fn wait_passed(&self, handle: &TenantHandle, position: LogPosition) -> ShadowApplied {
        let mut status = handle.chain.clone();
        let reached = tokio::time::timeout(self.apply_timeout, status.wait_for(|s| s.position >= position))
            .await
            .is_ok_and(|r| r.is_ok());
        ShadowApplied {
            tenant: handle.config.name.clone(),
            position: position.to_string(),
            applied: reached,
            shadow: handle.shadow.status(),
        }
    }
}
