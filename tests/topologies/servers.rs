//! Redis deployments as real local processes on free loopback ports: a primary, a
//! replica and three sentinels; or a three-primary Redis Cluster. Stopped on drop.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use crate::common::{free_port, kill, port_open, scratch_path, wait_for};

/// The name the sentinels monitor the primary under.
pub const MASTER: &str = "mymaster";

/// One `redis-server` process (a data node or a sentinel).
pub struct Node {
    child: Option<Child>,
    pub port: u16,
}

impl Node {
    fn start(port: u16, args: &[String]) -> Node {
        let child = Command::new("redis-server")
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server not found: run `make test`, which installs it");
        wait_for(&format!("redis-server on port {port} to listen"), Duration::from_secs(10), || {
            port_open(port)
        });
        Node { child: Some(child), port }
    }

    /// A data node without persistence, with `extra` arguments. Its own empty working
    /// directory: a replica writes the snapshot it syncs from there, and a server loads
    /// one it finds there at start.
    fn data(port: u16, extra: &[&str]) -> Node {
        let dir = scratch_path("redis");
        std::fs::create_dir_all(&dir).unwrap();
        let dir = dir.display().to_string();
        let mut args: Vec<String> = [
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            &dir,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        args.extend(extra.iter().map(|s| s.to_string()));
        Node::start(port, &args)
    }

    /// Kills the process at once (SIGKILL), as a crash would.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            kill(&mut child);
        }
        wait_for("a killed redis-server to let go of its port", Duration::from_secs(10), || {
            !port_open(self.port)
        });
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    /// Sends `signal` (`STOP`, `CONT`) to the process: a paused server keeps its
    /// connections but answers nothing.
    pub fn signal(&self, signal: &str) {
        let pid = self.child.as_ref().expect("running").id().to_string();
        let status = Command::new("kill").arg(format!("-{signal}")).arg(pid).status().expect("kill");
        assert!(status.success(), "kill -{signal}");
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            kill(&mut child);
        }
    }
}

/// `redis-cli -p PORT ARGS...`, its output (raw: one value per line).
pub fn cli(port: u16, args: &[&str]) -> String {
    let out = Command::new("redis-cli")
        .args(["-h", "127.0.0.1", "-p", &port.to_string(), "--raw"])
        .args(args)
        .output()
        .expect("redis-cli not found: run `make test`, which installs it");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A primary, a replica and three sentinels (quorum 2) watching them.
pub struct Sentinels {
    /// The two data nodes; which one is the primary changes with a failover.
    pub nodes: Vec<Node>,
    sentinels: Vec<Node>,
}

impl Sentinels {
    /// Starts everything and waits until the replica is in sync and every sentinel
    /// knows the replica and the other two sentinels (a failover needs both).
    pub fn start() -> Sentinels {
        let primary = Node::data(free_port(), &[]);
        let replica_of = primary.port.to_string();
        let replica = Node::data(free_port(), &["--replicaof", "127.0.0.1", &replica_of]);
        wait_for("the replica to be in sync", Duration::from_secs(20), || {
            cli(replica.port, &["INFO", "replication"]).contains("master_link_status:up")
        });
        let sentinels = (0..3).map(|_| sentinel(primary.port)).collect::<Vec<_>>();
        for s in &sentinels {
            wait_for(
                "each sentinel to know the replica and the other sentinels",
                Duration::from_secs(30),
                || {
                    let master = cli(s.port, &["SENTINEL", "MASTER", MASTER]);
                    let replicas = cli(s.port, &["SENTINEL", "REPLICAS", MASTER]);
                    field(&master, "num-other-sentinels") == Some(2)
                        && replicas.contains(&replica.port.to_string())
                },
            );
        }
        Sentinels { nodes: vec![primary, replica], sentinels }
    }

    /// `redis://127.0.0.1:PORT` of each sentinel.
    pub fn urls(&self) -> Vec<String> {
        self.sentinels.iter().map(Node::url).collect()
    }

    /// The port of the primary the sentinels name now.
    pub fn primary_port(&self) -> u16 {
        let answer = cli(self.sentinels[0].port, &["SENTINEL", "GET-MASTER-ADDR-BY-NAME", MASTER]);
        answer.lines().nth(1).and_then(|p| p.trim().parse().ok()).expect("the sentinels name a primary")
    }

    /// SIGKILLs the primary, waits until the sentinels promote the replica, and
    /// restarts the killed node (empty, as without persistence) as the new primary's
    /// replica, then waits until the pair has settled: one primary named by the
    /// sentinels, the other node in sync with it. Returns the port the sentinels
    /// promoted. (On a loaded machine the sentinels, quick to decide, may fail over
    /// once more, back to the restarted node once it has synced: still one primary with
    /// one replica in sync, which is what a client must live with.)
    pub fn fail_over(&mut self) -> u16 {
        let old = self.primary_port();
        let victim = self.nodes.iter().position(|n| n.port == old).expect("the primary is ours");
        self.nodes[victim].kill();
        wait_for("the sentinels to promote the replica", Duration::from_secs(60), || {
            self.primary_port() != old
        });
        let new = self.primary_port();
        let new_arg = new.to_string();
        self.nodes[victim] = Node::data(old, &["--replicaof", "127.0.0.1", &new_arg]);
        let start = std::time::Instant::now();
        loop {
            let primary = self.primary_port();
            let replica = if primary == old { new } else { old };
            let says = cli(replica, &["INFO", "replication"]);
            let follows = says.lines().any(|l| l.trim() == format!("master_port:{primary}"));
            if follows && says.contains("master_link_status:up") {
                return new;
            }
            assert!(
                start.elapsed() < Duration::from_secs(90),
                "the pair has not settled (a primary and a replica in sync) after 90 s.\n\
                 The sentinels name {primary}; {replica} says:\n{says}\n{primary} says:\n{}",
                cli(primary, &["INFO", "replication"]),
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// The integer value of `name` in a `SENTINEL MASTER` answer (name and value on
/// alternate lines).
fn field(answer: &str, name: &str) -> Option<u64> {
    let lines: Vec<&str> = answer.lines().collect();
    lines.windows(2).find(|w| w[0].trim() == name).and_then(|w| w[1].trim().parse().ok())
}

/// A sentinel watching the primary at `primary` (quick to decide: down after 1 s).
fn sentinel(primary: u16) -> Node {
    let port = free_port();
    let path: PathBuf = scratch_path("sentinel.conf");
    let conf = format!(
        "port {port}\nbind 127.0.0.1\ndir {dir}\nsentinel monitor {MASTER} 127.0.0.1 {primary} 2\n\
         sentinel down-after-milliseconds {MASTER} 1000\nsentinel failover-timeout {MASTER} 10000\n\
         sentinel parallel-syncs {MASTER} 1\n",
        dir = std::env::temp_dir().display()
    );
    std::fs::write(&path, conf).unwrap();
    Node::start(port, &[path.display().to_string(), "--sentinel".into()])
}

/// Three cluster primaries, no replicas, all 16384 slots assigned.
pub struct Cluster {
    pub nodes: Vec<Node>,
}

impl Cluster {
    pub fn start() -> Cluster {
        let nodes: Vec<Node> = (0..3)
            .map(|_| {
                let port = free_port();
                let conf = scratch_path("nodes.conf").display().to_string();
                // The bus port defaults to port + 10000, which may be taken or out of range.
                let bus = free_port().to_string();
                Node::data(
                    port,
                    &["--cluster-enabled", "yes", "--cluster-config-file", &conf, "--cluster-port", &bus],
                )
            })
            .collect();
        let addrs: Vec<String> = nodes.iter().map(|n| format!("127.0.0.1:{}", n.port)).collect();
        let out = Command::new("redis-cli")
            .arg("--cluster")
            .arg("create")
            .args(&addrs)
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .output()
            .expect("redis-cli not found: run `make test`, which installs it");
        assert!(out.status.success(), "redis-cli --cluster create: {}", String::from_utf8_lossy(&out.stdout));
        for n in &nodes {
            wait_for("every node to see the cluster ok", Duration::from_secs(30), || {
                cli(n.port, &["CLUSTER", "INFO"]).contains("cluster_state:ok")
            });
        }
        Cluster { nodes }
    }

    pub fn urls(&self) -> Vec<String> {
        self.nodes.iter().map(Node::url).collect()
    }

    /// The port of the node holding `key` (each node lists only its own keys).
    pub fn node_holding(&self, key: &str) -> Option<u16> {
        self.nodes.iter().map(|n| n.port).find(|&p| cli(p, &["EXISTS", key]).trim() == "1")
    }

    /// The port of the node serving `key`'s slot (whether or not the key exists).
    pub fn node_serving(&self, key: &str) -> u16 {
        let slot: u64 = cli(self.nodes[0].port, &["CLUSTER", "KEYSLOT", key]).trim().parse().expect("a slot");
        for n in &self.nodes {
            // Only the node serving the slot answers a read of the key without MOVED.
            let answer = cli(n.port, &["GET", key]);
            if !answer.contains("MOVED") {
                return n.port;
            }
        }
        panic!("no node serves slot {slot} of {key}");
    }
}
