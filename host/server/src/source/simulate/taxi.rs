//! The built-in taxi simulator: taxis driving around Seoul, reporting positions with
//! the faults real fleets have mixed in: duplicates, late (out-of-order) reports,
//! reports that go back in time, and stale reports from a lagging device. Some taxis
//! take breaks: off duty (silent) for 40 s, long enough for the map to expire them,
//! then back on the road.
//!
//! Deterministic for a seed (and the times it is ticked at).

use serde_json::json;

use super::Simulator;
use super::seoul;

/// The city limit's bounding box: (south, north, west, east). Taxis stay inside the limit
/// ([`seoul::inside`]).
const BOUNDS: (f64, f64, f64, f64) = (37.43, 37.70, 126.77, 127.18);

/// How long a break lasts: over the map's 30 s, so the taxi expires before it returns.
pub const BREAK_MS: i64 = 40_000;
/// A taxi that takes breaks starts one this often.
pub const BREAK_CYCLE_MS: i64 = 120_000;
/// The first break of the `k`-th taxi that takes breaks starts this long after the first
/// tick, plus `k` times [`BREAK_STAGGER_MS`] (within one cycle), so breaks are spread out.
const FIRST_BREAK_MS: i64 = 5_000;
const BREAK_STAGGER_MS: i64 = 10_000;

/// Share of reports given each fault, per mille; and which taxis take breaks.
#[derive(Clone, Copy, Debug)]
pub struct FaultRates {
    pub duplicate: u32,
    pub late: u32,
    pub backwards: u32,
    pub stale: u32,
    /// One taxi in this many (`taxi-0000`, then every `off_duty_one_in`-th) goes off
    /// duty for [`BREAK_MS`] every [`BREAK_CYCLE_MS`]; 0: none does.
    pub off_duty_one_in: usize,
}

impl Default for FaultRates {
    fn default() -> Self {
        FaultRates { duplicate: 30, late: 30, backwards: 20, stale: 10, off_duty_one_in: 25 }
    }
}

struct Taxi {
    id: String,
    lat: f64,
    lng: f64,
    heading: f64,
    last: Option<(f64, f64, i64)>,
    /// When its first break starts, after the simulator's first tick (None: no breaks).
    first_break_ms: Option<i64>,
}

impl Taxi {
    /// Off duty at `since_start_ms` after the first tick.
    fn on_break(&self, since_start_ms: i64) -> bool {
        self.first_break_ms.is_some_and(|first| {
            since_start_ms >= first && (since_start_ms - first) % BREAK_CYCLE_MS < BREAK_MS
        })
    }
}

impl Simulator for TaxiSim {
    fn tick(&mut self, now_ms: i64) -> Vec<Vec<u8>> {
        TaxiSim::tick(self, now_ms)
    }
}

pub struct TaxiSim {
    taxis: Vec<Taxi>,
    rng: u64,
    faults: FaultRates,
    late: Vec<Vec<u8>>,
    /// The time of the first tick, from which breaks are counted.
    start_ms: Option<i64>,
}

impl TaxiSim {
    pub fn new(taxis: usize, seed: u64, faults: FaultRates) -> Self {
        let mut sim = TaxiSim {
            taxis: Vec::with_capacity(taxis),
            rng: seed | 1,
            faults,
            late: Vec::new(),
            start_ms: None,
        };
        for i in 0..taxis {
            let (lat, lng) = sim.place_in_city();
            let heading = sim.unit() * std::f64::consts::TAU;
            let every = faults.off_duty_one_in;
            let first_break_ms = (every > 0 && i % every == 0)
                .then(|| FIRST_BREAK_MS + (i / every) as i64 * BREAK_STAGGER_MS % BREAK_CYCLE_MS);
            let id = format!("taxi-{i:04}");
            sim.taxis.push(Taxi { id, lat, lng, heading, last: None, first_break_ms });
        }
        sim
    }

    /// A random point inside the city limit (the first of up to 64 tries; the centre
    /// of the bounds, which is inside, if all miss).
    fn place_in_city(&mut self) -> (f64, f64) {
        for _ in 0..64 {
            let lat = BOUNDS.0 + self.unit() * (BOUNDS.1 - BOUNDS.0);
            let lng = BOUNDS.2 + self.unit() * (BOUNDS.3 - BOUNDS.2);
            if seoul::inside(lat, lng) {
                return (lat, lng);
            }
        }
        ((BOUNDS.0 + BOUNDS.1) / 2.0, (BOUNDS.2 + BOUNDS.3) / 2.0)
    }

    /// xorshift64*: tiny, deterministic, good enough for traffic.
    fn next_u64(&mut self) -> u64 {
        self.rng ^= self.rng >> 12;
        self.rng ^= self.rng << 25;
        self.rng ^= self.rng >> 27;
        self.rng.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    fn per_mille(&mut self) -> u32 {
        (self.next_u64() % 1000) as u32
    }

    /// One report per taxi on duty at `now_ms`, plus faults; last tick's late reports
    /// come last.
    pub fn tick(&mut self, now_ms: i64) -> Vec<Vec<u8>> {
        let since_start = now_ms - *self.start_ms.get_or_insert(now_ms);
        let mut out = Vec::with_capacity(self.taxis.len() + self.late.len());
        for i in 0..self.taxis.len() {
            if self.taxis[i].on_break(since_start) {
                continue;
            }
            let turn = (self.unit() - 0.5) * 0.6;
            let speed = 0.0003 + self.unit() * 0.0006;
            let jitter = (self.next_u64() % 200) as i64;
            let roll = self.per_mille();
            let FaultRates { duplicate, late, backwards, stale, .. } = self.faults;
            let t = &mut self.taxis[i];
            t.heading += turn;
            let lat = t.lat + speed * t.heading.cos();
            let lng = t.lng + speed * t.heading.sin() / 0.79;
            if seoul::inside(lat, lng) {
                (t.lat, t.lng) = (lat, lng);
            } else {
                // At the city limit: turn around and stay put this tick.
                t.heading += std::f64::consts::PI;
            }
            let ts = now_ms - jitter;
            let report = report(&t.id, t.lat, t.lng, ts);
            let previous = t.last.replace((t.lat, t.lng, ts));
            let mut threshold = duplicate;
            if roll < threshold {
                out.push(report.clone());
                out.push(report);
                continue;
            }
            threshold += late;
            if roll < threshold {
                self.late.push(report);
                continue;
            }
            out.push(report);
            threshold += backwards;
            if roll < threshold {
                if let Some((lat, lng, old_ts)) = previous {
                    out.push(self::report(&self.taxis[i].id, lat, lng, old_ts - 1_000));
                }
                continue;
            }
            threshold += stale;
            if roll < threshold {
                let t = &self.taxis[i];
                out.push(self::report(&t.id, t.lat, t.lng, now_ms - 45_000));
            }
        }
        let late = std::mem::take(&mut self.late);
        out.extend(late);
        out
    }
}

fn report(id: &str, lat: f64, lng: f64, timestamp: i64) -> Vec<u8> {
    let round = |x: f64| (x * 1e6).round() / 1e6;
    serde_json::to_vec(
        &json!({ "mediaId": id, "lat": round(lat), "lng": round(lng), "timestamp": timestamp }),
    )
    .expect("a JSON object serialises")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_parse_stay_in_seoul_and_include_faults() {
        let mut sim = TaxiSim::new(300, 7, FaultRates::default());
        let extractor = crate::source::Extractor::for_tenant(&crate::demo::taxi_tenant());
        let mut total = 0;
        let mut stale = 0;
        for n in 0..20 {
            let now = 1_763_900_000_000 + n * 1_000;
            for raw in sim.tick(now) {
                let e = extractor.decode(&raw).expect("simulator output decodes");
                let v: serde_json::Value = serde_json::from_slice(&raw).unwrap();
                let (lat, lng) = (v["lat"].as_f64().unwrap(), v["lng"].as_f64().unwrap());
                assert!(seoul::inside(lat, lng), "{lat},{lng} is off the map");
                if e.event_time < now - 30_000 {
                    stale += 1;
                }
                total += 1;
            }
        }
        assert!(total > 300 * 20, "duplicates and extras add reports: {total}");
        assert!(stale > 0, "some reports are stale");
    }

    #[test]
    fn one_taxi_in_25_takes_staggered_breaks_long_enough_to_expire() {
        let mut sim = TaxiSim::new(60, 5, FaultRates { off_duty_one_in: 25, ..FaultRates::default() });
        let start = 1_763_900_000_000;
        let mut last_seen: std::collections::BTreeMap<String, i64> = Default::default();
        let mut longest_silence: std::collections::BTreeMap<String, i64> = Default::default();
        for n in 0..=300 {
            let now = start + n * 1_000;
            for raw in sim.tick(now) {
                let v: serde_json::Value = serde_json::from_slice(&raw).unwrap();
                let id = v["mediaId"].as_str().unwrap().to_string();
                if let Some(prev) = last_seen.insert(id.clone(), now) {
                    let gap = longest_silence.entry(id).or_default();
                    *gap = (*gap).max(now - prev);
                }
            }
        }
        let on_break: Vec<&str> =
            longest_silence.iter().filter(|(_, gap)| **gap > 2_000).map(|(id, _)| id.as_str()).collect();
        assert_eq!(on_break, ["taxi-0000", "taxi-0025", "taxi-0050"], "only every 25th taxi takes breaks");
        for id in on_break {
            let gap = longest_silence[id];
            // Measured between two reports: it came back.
            assert!((BREAK_MS..=BREAK_MS + 2_000).contains(&gap), "{id} silent for {gap} ms");
        }
        assert_eq!(last_seen.len(), 60, "every taxi reported");
        let mut sim = TaxiSim::new(30, 5, FaultRates::default());
        let reports_0000 = |raws: Vec<Vec<u8>>| {
            raws.iter()
                .filter(|r| serde_json::from_slice::<serde_json::Value>(r).unwrap()["mediaId"] == "taxi-0000")
                .count()
        };
        assert!(reports_0000(sim.tick(start)) > 0);
        // A late report from the tick before may still arrive with the first silent tick.
        sim.tick(start + FIRST_BREAK_MS);
        assert_eq!(reports_0000(sim.tick(start + FIRST_BREAK_MS + 1)), 0, "off duty from 5 s");
    }

    #[test]
    fn same_seed_same_traffic() {
        let mut a = TaxiSim::new(10, 3, FaultRates::default());
        let mut b = TaxiSim::new(10, 3, FaultRates::default());
        assert_eq!(a.tick(1000), b.tick(1000));
    }
}
