//! Instances going away mid-stream: SIGKILL (a crash) and SIGTERM (a rolling restart).

use std::time::Duration;

use super::client::Recorder;
use super::cluster::{SESSION_TIMEOUT, TENANT};
use super::plan::{Run, assert_prefix, joined};
use super::tally;

/// SIGKILL the `victims` one after another from a third of the way through the feed (the
/// first at 1/3, the next at 1/2), start them again at two thirds (several: also no
/// sooner than the session timeout after the last kill). Their partitions'
/// uncommitted messages are read again (at-least-once into the log), the id dedupe drops
/// the repeats, and every instance, the restarted ones replaying the log included,
/// serves the same complete stream; the survivors' live clients never notice.
pub async fn sigkill_then_restart(victims: &[usize]) {
    let (mut run, live) = Run::start(None).await;
    let mut last_kill = tokio::time::Instant::now();
    for (n, &i) in victims.iter().enumerate() {
        run.until_acked(run.plan.at(2 + n as u64, 6)).await;
        run.cluster.kill(i);
        last_kill = tokio::time::Instant::now();
        live[i]
            .wait_until("the killed instance's stream to break", Duration::from_secs(10), |r| {
                r.ended.map(|_| ()).ok_or_else(|| "still open".into())
            })
            .await;
    }
    run.until_acked(run.plan.at(2, 3)).await;
    if victims.len() > 1 {
        // Several victims come back only once the group has dropped them (its session
        // timeout): two members rejoining while the broker still counts them is where
        // tansu 0.6.0 was seen leaving a partition unassigned for over a minute.
        tokio::time::sleep_until(last_kill + SESSION_TIMEOUT + Duration::from_secs(2)).await;
    }
    for &i in victims {
        tokio::task::block_in_place(|| run.cluster.restart(i));
    }
    let (produced, _) = run.finish().await;
    let full = run.full_streams(&produced).await;
    let survivors: Vec<usize> = (0..run.cluster.len()).filter(|i| !victims.contains(i)).collect();
    for &i in &survivors {
        tally::wait_complete(
            &live[i],
            "a live client of a surviving instance",
            &produced,
            run.plan.patience(),
        )
        .await;
    }
    for &i in victims {
        assert_prefix("a killed instance's client before the crash", &live[i].recorded(), &full[i]);
    }
    let (log, repeats) = run.log().await;
    let notes = format!(
        "{victims:?} killed from 1/3, back at 2/3{}; {repeats} events twice in the log (dedupe drops \
         them); live clients of {survivors:?} compared too",
        if victims.len() > 1 { " and past the session timeout" } else { "" }
    );
    let mut streams = full.clone();
    streams.extend(survivors.iter().map(|&i| live[i].recorded()));
    let what = if victims.len() == 1 {
        "SIGKILL one instance, restart".into()
    } else {
        format!("SIGKILL {} instances in a row, restart", victims.len())
    };
    let mut row = tally::count(&what, &produced, &log, &streams, notes);
    row.delivered.truncate(3);
    row.print();
    row.assert_promises();
    assert_eq!(row.in_log, row.produced, "every produced event reached the log");
}

/// SIGTERM instance 0 a third of the way through: its source publishes what it holds and
/// commits, and each SSE stream ends with the shutdown hint. A client that follows the
/// hint (waits `retry:` ms, reconnects to instance 1 with `Last-Event-ID`) misses
/// nothing. Instance 0 comes back at two thirds (a rolling restart).
pub async fn sigterm_then_resume_elsewhere() {
    let (mut run, live) = Run::start(None).await;
    run.until_acked(run.plan.at(1, 3)).await;
    tokio::task::block_in_place(|| run.cluster.terminate(0));
    live[0]
        .wait_until("instance 0's stream to end", Duration::from_secs(10), |r| match r.ended {
            Some(true) => Ok(()),
            Some(false) => Err("it broke instead of ending cleanly".into()),
            None => Err("still open".into()),
        })
        .await;
    let before = live[0].recorded();
    let retry = before.retry.expect("the stream gave a retry: hint");
    assert!(
        before.comments.iter().any(|c| c.contains("shutting down")),
        "the stream's last words say it is shutting down: {:?}",
        before.comments
    );
    assert!(retry <= 1_000, "the hint asks for a quick reconnect, not {retry} ms");
    tokio::time::sleep(Duration::from_millis(retry)).await;
    let last = before.last_id().expect("frames before the shutdown").to_string();
    let resumed = Recorder::connect(&run.cluster.base(1), TENANT, Some(&last)).await;
    run.until_acked(run.plan.at(2, 3)).await;
    tokio::task::block_in_place(|| run.cluster.restart(0));
    let (produced, _) = run.finish().await;
    let full = run.full_streams(&produced).await;
    let what = "the client that moved to instance 1";
    tally::wait_resumed(&resumed, &before, what, &produced, run.plan.patience()).await;
    let moved = joined(&before, &resumed.recorded());
    let (log, repeats) = run.log().await;
    let notes = format!(
        "i0 stopped at 1/3 (clean end, retry: {retry}), back at 2/3; a client followed the hint to i1 \
         ({} + {} frames, the 4th stream compared); {repeats} events twice in the log",
        before.frames.len(),
        moved.frames.len() - before.frames.len()
    );
    let mut streams = full.clone();
    streams.push(moved);
    let mut row =
        tally::count("SIGTERM one instance, client follows the hint", &produced, &log, &streams, notes);
    row.delivered.truncate(3);
    row.print();
    row.assert_promises();
    assert_eq!(row.in_log, row.produced, "every produced event reached the log");
}
