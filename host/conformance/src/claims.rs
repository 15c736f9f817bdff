//! Where the claims the kit checks come from, per world, and the check
//! `capabilities/stable`.
//!
//! A `streamgate:policy@0.1.0` component claims its `describe` list under every config
//! (the kit reads `newest_per_frame` to tell when a config switches coalescing off). A
//! 0.2.0 stage says what it does under its config (`stage.capabilities`), and the kit
//! checks exactly those claims for each config it runs. That only means something if
//! the answer is stable: the same stage answers the same on every call, before and after
//! events; a fresh stage of the same config answers the same; and the answer stays within
//! `describe`'s list, each capability once.

use std::collections::BTreeSet;

use streamgate_runtime::{Plugin, StageError, StageLimits, WasmStage, wit};

use crate::expect::{ClaimSource, capability_name};
use crate::generate::Log;
use crate::harness::{Ctx, Setup};
use crate::report::Verdict;

/// The setup of `config`: a 0.2.0 stage's own claims, or `describe`'s list for 0.1.0
/// (and for a 0.2.0 stage that cannot answer: `capabilities/stable` reports why).
pub fn setup(plugin: &Plugin, config: &str, limits: StageLimits) -> Setup {
    if plugin.world().stage_reports_capabilities()
        && let Ok(claims) = plugin.stage(config, limits).and_then(|mut stage| stage.capabilities())
    {
        return Setup::with_claims(claims, ClaimSource::Stage, config.to_string());
    }
    Setup::new(plugin.description(), config.to_string())
}

/// `[dedupe, coalesce]`.
pub fn names(capabilities: &[wit::Capability]) -> String {
    let names: Vec<&str> = capabilities.iter().map(|&c| capability_name(c)).collect();
    format!("[{}]", names.join(", "))
}

/// `capabilities/stable`: for 0.2.0, every config's stages answer the same claims every
/// time, within `describe`'s list; for 0.1.0, says the claims come from `describe`.
pub fn stable(ctx: &Ctx) -> Verdict {
    let world = ctx.plugin.world();
    let described = ctx.plugin.described_capabilities();
    if !world.stage_reports_capabilities() {
        return Verdict::skip(format!(
            "a {world} component: its stages cannot say what they do under a config, so the claims checked \
             are describe's {} under every config (build for 0.2.0 or later to claim per config)",
            names(described)
        ));
    }
    let mut per_config = Vec::with_capacity(ctx.setups.len());
    for (index, setup) in ctx.setups.iter().enumerate() {
        let log = ctx.runs().iter().find(|r| r.setup == index).map(|r| &r.log);
        if let Err(why) = stable_under(ctx, setup, log, described) {
            let note = "stage.capabilities must depend on the config only: compute it from the config at \
                        create, never from events or call counts"
                .to_string();
            return Verdict::fail(format!("under {}: {why}", setup.label()), note, None)
                .cases(ctx.setups.len());
        }
        per_config.push(format!("{}: {}", setup.label(), names(&setup.claims)));
    }
    Verdict::pass(format!(
        "the claims checked are what each stage says under its config (stage.capabilities), the same on every \
         call, before and after events, and from fresh stages: {}",
        per_config.join("; ")
    ))
    .cases(ctx.setups.len())
}

/// One config: a stage asked twice, then after `log`'s batches, and a fresh stage, all
/// answer `setup.claims`, which `describe` lists, each once.
fn stable_under(
    ctx: &Ctx,
    setup: &Setup,
    log: Option<&Log>,
    described: &[wit::Capability],
) -> Result<(), String> {
    if setup.claims_from != ClaimSource::Stage {
        return Err(format!("no stage answered stage.capabilities{}", first_error(ctx, &setup.config)));
    }
    let claims = &setup.claims;
    let distinct: BTreeSet<&str> = claims.iter().map(|&c| capability_name(c)).collect();
    if distinct.len() != claims.len() {
        return Err(format!("stage.capabilities named a capability twice: {}", names(claims)));
    }
    if let Some(extra) = claims.iter().find(|c| !described.contains(c)) {
        return Err(format!(
            "stage.capabilities claimed {}, which describe's {} does not list",
            capability_name(*extra),
            names(described)
        ));
    }
    let ask = |stage: &mut WasmStage, when: &str| -> Result<(), String> {
        let answer = stage.capabilities().map_err(|e| format!("stage.capabilities {when} failed: {e}"))?;
        if &answer != claims {
            return Err(format!(
                "stage.capabilities answered {} {when}, but {} before",
                names(&answer),
                names(claims)
            ));
        }
        Ok(())
    };
    let create = || ctx.plugin.stage(&setup.config, ctx.limits).map_err(|e| format!("creating a stage: {e}"));
    let mut stage = create()?;
    ask(&mut stage, "on a new stage")?;
    ask(&mut stage, "when asked again")?;
    if let Some(log) = log {
        for batch in &log.batches {
            let events: Vec<wit::Event> = batch.events.iter().map(wit::Event::from).collect();
            if stage.push(batch.now, &events).is_err() {
                // A fault is the generated checks' to report; the claims were stable so far.
                return Ok(());
            }
        }
        ask(&mut stage, &format!("after a generated log of {} events", log.events()))?;
    }
    ask(&mut create()?, "on a fresh stage of the same config")
}

/// Why a stage of `config` could not say its capabilities, for the message.
fn first_error(ctx: &Ctx, config: &str) -> String {
    match ctx.plugin.stage(config, ctx.limits).and_then(|mut s| s.capabilities()) {
        Err(StageError::Config(m)) => format!(" (the config was refused: {m})"),
        Err(e) => format!(" ({e})"),
        Ok(_) => String::new(),
    }
}
