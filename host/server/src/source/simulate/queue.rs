//! The built-in waiting-queue simulator for the embedded demo: a concert sale opens and a
//! crowd joins in the first ticks, a few more trickle in for a while, the front is
//! admitted at a steady rate, and some leave. Every tick, each user whose place changed
//! (and each newcomer) gets their rank; about one event in twenty is sent twice (as an
//! at-least-once producer would). The sale ends when the line is empty, so the users
//! (and the state kept per user) are bounded. Deterministic for a seed, unless someone
//! walks in through the [`Door`] (the demo page's "join the queue" button): they take the
//! next user id and join at the back on the next tick, like everyone else (but never
//! leave by chance: they wait until admitted).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use serde_json::json;
use tokio::sync::mpsc;

use super::Simulator;

/// Ticks over which the opening crowd joins.
const BURST_TICKS: u64 = 3;
/// Ticks after the opening during which latecomers still trickle in.
const TRICKLE_TICKS: u64 = 120;
/// Users admitted per tick.
const ADMITS_PER_TICK: usize = 5;
/// Newcomers at the door, waiting for the next tick, at most.
const DOOR_CAPACITY: usize = 1_024;

/// Lets someone from outside the simulation join the line (the demo's join endpoint).
#[derive(Clone, Debug)]
pub struct Door {
    next_user: Arc<AtomicU64>,
    arrivals: mpsc::Sender<u64>,
}

/// Too many are at the door already; try again after the next tick.
#[derive(Debug, thiserror::Error)]
#[error("{DOOR_CAPACITY} people are already at the door; try again in a second")]
pub struct DoorBusy;

impl Door {
    /// A new user: their id (`u-1234`) at once; they join at the back on the next tick
    /// and get their rank then.
    pub fn join(&self) -> Result<String, DoorBusy> {
        let permit = self.arrivals.try_reserve().map_err(|_| DoorBusy)?;
        let user = self.next_user.fetch_add(1, Ordering::Relaxed);
        permit.send(user);
        Ok(user_id(user))
    }
}

fn user_id(user: u64) -> String {
    format!("u-{user:04}")
}

pub struct QueueSim {
    /// Users in line, front first.
    line: Vec<u64>,
    /// Those who came in through the door: real people, who leave only when admitted.
    walk_ins: std::collections::BTreeSet<u64>,
    /// Each user's rank as last sent, by position in `line`.
    sent_rank: Vec<usize>,
    /// Users joining in the opening burst.
    crowd: u64,
    ticks: u64,
    /// Shared with the door, so ids are never given twice.
    next_user: Arc<AtomicU64>,
    next_event: u64,
    rng: u64,
    arrivals: mpsc::Receiver<u64>,
    door: Door,
}

impl QueueSim {
    /// A sale `crowd` users rush into when it opens.
    pub fn new(crowd: usize, seed: u64) -> Self {
        let next_user = Arc::new(AtomicU64::new(0));
        let (tx, arrivals) = mpsc::channel(DOOR_CAPACITY);
        QueueSim {
            line: Vec::new(),
            walk_ins: Default::default(),
            sent_rank: Vec::new(),
            crowd: crowd as u64,
            ticks: 0,
            next_user: next_user.clone(),
            next_event: 0,
            rng: seed | 1,
            arrivals,
            door: Door { next_user, arrivals: tx },
        }
    }

    /// The way in for users from outside the simulation.
    pub fn door(&self) -> Door {
        self.door.clone()
    }

    fn roll(&mut self) -> u64 {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        self.rng % 100
    }

    fn event(&mut self, user: u64, kind: &str, rank: usize, now_ms: i64) -> Vec<u8> {
        self.next_event += 1;
        serde_json::to_vec(&json!({
            "eventId": format!("q-{}", self.next_event),
            "queueType": "concert",
            "userId": user_id(user),
            "kind": kind,
            "rank": rank,
            "timestamp": now_ms,
        }))
        .expect("a JSON object serialises")
    }

    /// How many join this tick: the crowd in the first ticks, then a few, then none.
    fn joining(&mut self) -> u64 {
        if self.ticks < BURST_TICKS {
            let joined = self.crowd * self.ticks / BURST_TICKS;
            self.crowd * (self.ticks + 1) / BURST_TICKS - joined
        } else if self.ticks < BURST_TICKS + TRICKLE_TICKS {
            self.roll() % 4
        } else {
            0
        }
    }
}

impl Simulator for QueueSim {
    fn tick(&mut self, now_ms: i64) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        let front = ADMITS_PER_TICK.min(self.line.len());
        let admitted: Vec<u64> = self.line.drain(..front).collect();
        self.sent_rank.drain(..front);
        for user in admitted {
            self.walk_ins.remove(&user);
            out.push(self.event(user, "admitted", 0, now_ms));
        }
        if self.roll() < 40 && !self.line.is_empty() {
            let at = (self.roll() as usize * 97) % self.line.len();
            if !self.walk_ins.contains(&self.line[at]) {
                let user = self.line.remove(at);
                self.sent_rank.remove(at);
                out.push(self.event(user, "left", 0, now_ms));
            }
        }
        let simulated = self.joining();
        let simulated: Vec<u64> =
            (0..simulated).map(|_| self.next_user.fetch_add(1, Ordering::Relaxed)).collect();
        let walk_ins: Vec<u64> = std::iter::from_fn(|| self.arrivals.try_recv().ok()).collect();
        self.walk_ins.extend(&walk_ins);
        for user in simulated.into_iter().chain(walk_ins) {
            self.line.push(user);
            // Never sent: the first rank goes out below.
            self.sent_rank.push(0);
        }
        self.ticks += 1;
        for at in 0..self.line.len() {
            let rank = at + 1;
            if self.sent_rank[at] == rank {
                continue;
            }
            self.sent_rank[at] = rank;
            let e = self.event(self.line[at], "rank", rank, now_ms);
            if self.roll() < 5 {
                out.push(e.clone());
            }
            out.push(e);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::*;

    fn tick(sim: &mut QueueSim, now_ms: i64) -> Vec<Value> {
        sim.tick(now_ms).iter().map(|e| serde_json::from_slice(e).unwrap()).collect()
    }

    fn of_kind<'a>(events: &'a [Value], kind: &str) -> Vec<&'a Value> {
        events.iter().filter(|e| e["kind"] == kind).collect()
    }

    #[test]
    fn the_crowd_rushes_in_then_the_front_is_admitted_at_a_steady_rate() {
        let mut sim = QueueSim::new(3_000, 1);
        let first = tick(&mut sim, 1_000);
        assert!(of_kind(&first, "admitted").is_empty(), "nobody was in line yet");
        let first_ranks = of_kind(&first, "rank");
        assert!(first_ranks.len() >= 1_000, "a third of the crowd joins in the first tick");
        assert_eq!(first_ranks[0]["userId"], "u-0000");
        assert_eq!(first_ranks[0]["rank"], 1);
        assert!(first.iter().all(|e| e["timestamp"] == 1_000));
        tick(&mut sim, 2_000);
        tick(&mut sim, 3_000);
        assert!(sim.line.len() > 2_900, "the whole crowd is in line: {}", sim.line.len());
        let fourth = tick(&mut sim, 4_000);
        let admitted: Vec<&str> =
            of_kind(&fourth, "admitted").iter().map(|e| e["userId"].as_str().unwrap()).collect();
        assert_eq!(admitted.len(), ADMITS_PER_TICK);
        let ranks = of_kind(&fourth, "rank");
        assert!(
            ranks.iter().all(|e| !admitted.contains(&e["userId"].as_str().unwrap())),
            "the admitted get no rank"
        );
    }

    #[test]
    fn some_leave_and_the_sale_ends_with_an_empty_line() {
        let mut sim = QueueSim::new(300, 2);
        let (mut left, mut admitted, mut ticks) = (0, 0, 0);
        while ticks < 10 || !sim.line.is_empty() {
            let events = tick(&mut sim, ticks * 1_000);
            left += of_kind(&events, "left").len();
            admitted += of_kind(&events, "admitted").len();
            ticks += 1;
            assert!(ticks < 1_000, "the line never emptied");
        }
        assert!(left > 0, "nobody left");
        let users = sim.next_user.load(Ordering::Relaxed) as usize;
        assert_eq!(left + admitted, users, "everyone left or was admitted, once");
        assert!(tick(&mut sim, ticks * 1_000).is_empty(), "the sale is over");
    }

    #[test]
    fn a_user_at_the_door_joins_at_the_back_with_a_fresh_id_and_is_admitted_in_turn() {
        let mut sim = QueueSim::new(40, 3);
        let door = sim.door();
        tick(&mut sim, 1_000);
        let joined = door.join().unwrap();
        let waiting = sim.line.len();
        let events = tick(&mut sim, 2_000);
        let mine: Vec<&Value> = events.iter().filter(|e| e["userId"] == joined.as_str()).collect();
        assert_eq!(mine.len(), 1, "one rank for the newcomer: {mine:?}");
        assert_eq!(mine[0]["kind"], "rank");
        assert_eq!(mine[0]["rank"].as_u64().unwrap() as usize, sim.line.len(), "at the back");
        assert!(sim.line.len() >= waiting - ADMITS_PER_TICK, "behind the {waiting} already waiting");
        let ids: Vec<&str> = events.iter().map(|e| e["userId"].as_str().unwrap()).collect();
        assert_eq!(ids.iter().filter(|id| **id == joined).count(), 1, "{joined} is nobody else's id");
        let mut now = 3_000;
        let admitted = loop {
            let events = tick(&mut sim, now);
            if let Some(e) = events.iter().find(|e| e["userId"] == joined.as_str() && e["kind"] != "rank") {
                break e.clone();
            }
            now += 1_000;
            assert!(now < 100_000, "{joined} never got to the front");
        };
        assert_eq!(admitted["kind"], "admitted", "a walk-in never leaves by chance");
        assert!(door.join().unwrap() > joined, "ids keep rising");
    }

    #[test]
    fn a_crowded_door_says_so() {
        let sim = QueueSim::new(0, 1);
        let door = sim.door();
        for _ in 0..DOOR_CAPACITY {
            door.join().unwrap();
        }
        assert!(door.join().unwrap_err().to_string().contains("try again"));
    }
}
