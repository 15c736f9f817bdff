//! Bad input and bad clients: a feed salted with malformed messages, and a thousand
//! clients that connect and never read.

use std::io::Write;
use std::net::TcpStream;
use std::time::{Duration, Instant};

use super::cluster::TENANT;
use super::plan::Run;
use super::tally;

/// One malformed message after every ninth good one (10 % of the feed): each is dropped
/// and counted (`streamgate_source_decode_errors_total`), and every good one delivered.
pub async fn malformed_tenth() {
    let (mut run, live) = Run::start(Some(9)).await;
    let (produced, malformed) = run.finish().await;
    let full = run.full_streams(&produced).await;
    let (log, repeats) = run.log().await;
    let counted = run.cluster.metric_sum(&[0, 1, 2], "streamgate_source_decode_errors_total") as u64;
    assert!(
        counted >= malformed,
        "{malformed} malformed messages produced, only {counted} counted as dropped"
    );
    if repeats == 0 {
        assert_eq!(
            counted, malformed,
            "no event is twice in the log (nothing read twice), so each drop is counted once"
        );
    }
    let mut streams = full.clone();
    streams.extend(live.iter().map(|c| c.recorded()));
    let notes = format!(
        "{malformed} malformed messages in the feed, {counted} drops counted; live clients compared too"
    );
    let mut row = tally::count("10 % malformed messages", &produced, &log, &streams, notes);
    row.delivered.truncate(3);
    row.print();
    row.assert_promises();
    assert_eq!(row.in_log, row.produced, "every good event reached the log");
}

/// `Plan::stalled` connections to instance 0 ask for the whole stream and never read.
/// A reading client of the same instance keeps its cadence (its longest wait for a frame
/// while the feed runs is within 2 s of a reader's on instance 1, which has no stalled
/// clients: the machine's own hiccups hit both), the instance's memory stays bounded,
/// and nothing is lost for readers.
pub async fn stalled_clients() {
    let (mut run, live) = Run::start(None).await;
    let base = run.cluster.base(0);
    let rss_before = run.cluster.instance(0).rss_bytes();
    let host = base.trim_start_matches("http://").to_string();
    let request = format!(
        "GET /tenants/{TENANT}/events HTTP/1.1\r\nHost: {host}\r\nAccept: text/event-stream\r\nLast-Event-ID: 0-0\r\n\r\n"
    );
    let stalled: Vec<TcpStream> = tokio::task::block_in_place(|| {
        (0..run.plan.stalled)
            .map(|n| {
                let mut s = TcpStream::connect(&host).unwrap_or_else(|e| panic!("stalled client {n}: {e}"));
                s.write_all(request.as_bytes()).unwrap();
                s
            })
            .collect()
    });
    // The stalled ones and instance 0's reading client.
    let want = (run.plan.stalled + 1) as f64;
    tokio::task::block_in_place(|| {
        crate::common::wait_for("instance 0 to count the stalled clients", Duration::from_secs(30), || {
            run.cluster.metric_sum(&[0], "streamgate_sse_clients") >= want
        })
    });
    let since = Instant::now();
    let (produced, _) = run.finish().await;
    let rss_after = run.cluster.instance(0).rss_bytes();
    let full = run.full_streams(&produced).await;
    tally::wait_complete(&live[0], "instance 0's reading client", &produced, run.plan.patience()).await;
    tally::wait_complete(&live[1], "instance 1's reading client", &produced, run.plan.patience()).await;
    let reader = live[0].recorded();
    let (gap, control) = (longest_gap(&reader, since), longest_gap(&live[1].recorded(), since));
    let growth_mb = rss_after.saturating_sub(rss_before) as f64 / 1e6;
    let (log, _) = run.log().await;
    let notes = format!(
        "{} stalled clients on i0: longest wait for a frame {} ms there, {} ms on i1; i0 RSS +{growth_mb:.0} MB",
        stalled.len(),
        gap.as_millis(),
        control.as_millis()
    );
    let mut streams = full.clone();
    streams.push(reader);
    let mut row =
        tally::count(&format!("{} stalled clients", stalled.len()), &produced, &log, &streams, notes);
    row.delivered.truncate(3);
    row.print();
    row.assert_promises();
    assert!(
        gap < control + Duration::from_secs(2),
        "a reading client waited {gap:?} for a frame beside stalled clients, {control:?} on an instance without"
    );
    assert!(growth_mb < 200.0, "instance 0 grew {growth_mb:.0} MB with stalled clients");
    drop(stalled);
}

/// The longest wait between two frames that arrived after `since`.
fn longest_gap(r: &super::client::Recorded, since: Instant) -> Duration {
    let after: Vec<&Instant> = r.arrivals.iter().filter(|&&t| t >= since).collect();
    after.windows(2).map(|w| *w[1] - *w[0]).max().unwrap_or_default()
}
