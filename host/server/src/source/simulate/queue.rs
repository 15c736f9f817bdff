//! The built-in waiting-queue simulator for the embedded demo: users join a concert
//! queue, move up as the front is admitted, sometimes leave, and about one event in
//! twenty is sent twice (as an at-least-once producer would). Deterministic for a seed.

use serde_json::json;

use super::Simulator;

pub struct QueueSim {
    /// Users in line, front first.
    line: Vec<u64>,
    next_user: u64,
    next_event: u64,
    rng: u64,
    /// Users joining per tick, and admitted per tick.
    joins: usize,
    admits: usize,
}

impl QueueSim {
    pub fn new(initial: usize, seed: u64) -> Self {
        let mut sim =
            QueueSim { line: Vec::new(), next_user: 0, next_event: 0, rng: seed | 1, joins: 3, admits: 3 };
        for _ in 0..initial {
            sim.line.push(sim.next_user);
            sim.next_user += 1;
        }
        sim
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
}

impl Simulator for QueueSim {
    fn tick(&mut self, now_ms: i64) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        let admitted: Vec<u64> = self.line.drain(..self.admits.min(self.line.len())).collect();
        for user in admitted {
            let e = self.event(user, "admitted", 0, now_ms);
            out.push(e);
        }
        if self.roll() < 30 && !self.line.is_empty() {
            let at = (self.roll() as usize) % self.line.len();
            let user = self.line.remove(at);
            let e = self.event(user, "left", 0, now_ms);
            out.push(e);
        }
        for _ in 0..self.joins {
            self.line.push(self.next_user);
            self.next_user += 1;
        }
        for rank in 1..=self.line.len() {
            let user = self.line[rank - 1];
            let e = self.event(user, "rank", rank, now_ms);
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
    use super::*;

    #[test]
    fn the_front_is_admitted_and_everyone_else_moves_up() {
        let mut sim = QueueSim::new(10, 1);
        let events: Vec<serde_json::Value> =
            sim.tick(1_000).iter().map(|e| serde_json::from_slice(e).unwrap()).collect();
        let admitted: Vec<&str> = events
            .iter()
            .filter(|e| e["kind"] == "admitted")
            .map(|e| e["userId"].as_str().unwrap())
            .collect();
        assert_eq!(admitted, ["u-0000", "u-0001", "u-0002"]);
        let first_rank = events.iter().find(|e| e["kind"] == "rank").unwrap();
        assert_eq!(first_rank["rank"], 1);
        assert!(events.iter().all(|e| e["timestamp"] == 1_000));
    }
}
