//! The built-in waiting-queue simulator for the embedded demo: a concert sale opens and a
//! crowd joins in the first ticks, a few more trickle in for a while, the front is
//! admitted at a steady rate, and some leave. Every tick, each user whose place changed
//! (and each newcomer) gets their rank; about one event in twenty is sent twice (as an
//! at-least-once producer would). The sale ends when the line is empty, so the users
//! (and the state kept per user) are bounded. Deterministic for a seed.

use serde_json::json;

use super::Simulator;

/// Ticks over which the opening crowd joins.
const BURST_TICKS: u64 = 3;
/// Ticks after the opening during which latecomers still trickle in.
const TRICKLE_TICKS: u64 = 120;
/// Users admitted per tick.
const ADMITS_PER_TICK: usize = 5;

pub struct QueueSim {
    /// Users in line, front first.
    line: Vec<u64>,
    /// Each user's rank as last sent, by position in `line`.
    sent_rank: Vec<usize>,
    /// Users joining in the opening burst.
    crowd: u64,
    ticks: u64,
    next_user: u64,
    next_event: u64,
    rng: u64,
}

impl QueueSim {
    /// A sale `crowd` users rush into when it opens.
    pub fn new(crowd: usize, seed: u64) -> Self {
        QueueSim {
            line: Vec::new(),
            sent_rank: Vec::new(),
            crowd: crowd as u64,
            ticks: 0,
            next_user: 0,
            next_event: 0,
            rng: seed | 1,
        }
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
            "userId": format!("u-{user:04}"),
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
            out.push(self.event(user, "admitted", 0, now_ms));
        }
        if self.roll() < 40 && !self.line.is_empty() {
            let at = (self.roll() as usize * 97) % self.line.len();
            let user = self.line.remove(at);
            self.sent_rank.remove(at);
            out.push(self.event(user, "left", 0, now_ms));
        }
        for _ in 0..self.joining() {
            self.line.push(self.next_user);
            // Never sent: the first rank goes out below.
            self.sent_rank.push(0);
            self.next_user += 1;
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
        assert_eq!(left + admitted, sim.next_user as usize, "everyone left or was admitted, once");
        assert!(tick(&mut sim, ticks * 1_000).is_empty(), "the sale is over");
    }
}
