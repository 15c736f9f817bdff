//! Starting a tenant from a checkpoint: the newest stored one that passes every check
//! (its digest matches its bytes; it decodes in this format version; it is this
//! tenant's; no instance found another state at its position and at least
//! `min_verifications` found the same; the log still holds its position, so the tail
//! after it is complete; this instance runs the same components and each stage takes
//! its snapshot; a checkpoint of the configured chain was taken under the policies the
//! config names now, so an edit of the config's chain takes effect as it does without
//! checkpoints). Each refusal is counted and logged; when none passes, the tenant
//! replays the whole retained log as before.

use std::fmt;

use streamgate_runtime::{Chain, ChainOptions, ChainSpec};

use super::store::{CheckpointStore, Stored};
use super::{Checkpoint, codec};
use crate::bus::RedisStreamBus;
use crate::metrics::{CheckpointOutcome, TenantMetrics};
use crate::policy::Catalog;

/// A chain rebuilt from a checkpoint, and the rest of the checkpoint (hub state,
/// position, log time) for the tenant to start from.
pub struct Resumed {
    pub checkpoint: Checkpoint,
    pub chain: Chain,
}

/// Why a stored checkpoint was not used.
#[derive(Debug)]
enum Refusal {
    Damaged(String),
    Untrusted { ok: u64, bad: u64 },
    Trimmed,
    Unusable(String),
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::Damaged(why) => write!(f, "damaged: {why}"),
            Refusal::Untrusted { ok, bad } => {
                write!(f, "not trusted: {ok} instance(s) found the same state, {bad} another")
            }
            Refusal::Trimmed => write!(f, "the log no longer holds its position"),
            Refusal::Unusable(why) => write!(f, "cannot be run here: {why}"),
        }
    }
}

/// The newest usable checkpoint of `tenant`, or `None` (full replay). `configured` is
/// the chain the tenant's config names now.
pub async fn resume(
    store: &CheckpointStore,
    min_verifications: u64,
    log: &RedisStreamBus,
    catalog: &Catalog,
    options: ChainOptions,
    configured: &ChainSpec,
    metrics: &TenantMetrics,
) -> Option<Resumed> {
    let tenant = &metrics.tenant;
    let stored = match store.newest_first(tenant).await {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(tenant, error = %e, "cannot read checkpoints; replaying the whole log");
            return None;
        }
    };
    for s in stored {
        let position = s.position;
        match try_one(s, min_verifications, log, catalog, options, configured, tenant).await {
            Ok(resumed) => {
                metrics.count_checkpoint(CheckpointOutcome::Restored);
                tracing::info!(tenant, %position, chain = resumed.chain.spec().version, held = resumed.chain.held(),
                    "starting from a checkpoint");
                return Some(resumed);
            }
            Err(refusal) => {
                metrics.count_checkpoint(CheckpointOutcome::Rejected);
                tracing::warn!(tenant, %position, reason = %refusal, "checkpoint not used");
                if matches!(refusal, Refusal::Trimmed) {
                    break; // Older ones are trimmed too.
                }
            }
        }
    }
    tracing::info!(tenant, "no usable checkpoint; replaying the whole retained log");
    None
}

async fn try_one(
    s: Stored,
    min_verifications: u64,
    log: &RedisStreamBus,
    catalog: &Catalog,
    options: ChainOptions,
    configured: &ChainSpec,
    tenant: &str,
) -> Result<Resumed, Refusal> {
    if codec::digest(&s.blob) != s.digest {
        return Err(Refusal::Damaged("its bytes do not match its digest".into()));
    }
    if !s.trusted(min_verifications) {
        return Err(Refusal::Untrusted { ok: s.ok, bad: s.bad });
    }
    let checkpoint = codec::decode(&s.blob).map_err(|e| Refusal::Damaged(e.to_string()))?;
    if checkpoint.tenant != tenant || checkpoint.position != s.position {
        return Err(Refusal::Damaged(format!("it is {}'s at {}", checkpoint.tenant, checkpoint.position)));
    }
    // Version 0 is the config's chain: one taken under other policies is of an old config.
    if checkpoint.chain.spec.version == 0 && checkpoint.chain.spec.policies != configured.policies {
        return Err(Refusal::Unusable(
            "it ran the configured chain as the config named it then; the config's policies changed since"
                .into(),
        ));
    }
    match log.holds(tenant, s.position).await {
        Ok(true) => {}
        Ok(false) => return Err(Refusal::Trimmed),
        Err(e) => return Err(Refusal::Unusable(format!("cannot read the log: {e}"))),
    }
    let unusable = |e: &dyn fmt::Display| Refusal::Unusable(e.to_string());
    let prepared = catalog
        .prepare(&checkpoint.chain.spec, options.limits, false, false)
        .await
        .map_err(|e| unusable(&e))?;
    let previous = match &checkpoint.chain.previous {
        Some(spec) => {
            Some(catalog.prepare(spec, options.limits, false, false).await.map_err(|e| unusable(&e))?)
        }
        None => None,
    };
    let state = checkpoint.chain.clone();
    let chain = Chain::restore(prepared, previous, state, options).map_err(|e| unusable(&e))?;
    Ok(Resumed { checkpoint, chain })
}
