//! The load balancers of `deploy/`, run from the example files themselves: nginx
//! (`deploy/nginx/streamgate.conf`, included in a generated main config) and HAProxy
//! (`deploy/haproxy/streamgate.cfg`), with the example's three instance addresses and
//! its public port swapped for the test's free loopback ports.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::free_port;

/// Which balancer, and so which example file.
#[derive(Clone, Copy, Debug)]
pub enum Kind {
    Nginx,
    Haproxy,
}

/// The instance addresses the example files name, in order.
const EXAMPLE_INSTANCES: [&str; 3] = ["127.0.0.1:8081", "127.0.0.1:8082", "127.0.0.1:8083"];

impl Kind {
    /// What the balancer is called in prose.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Nginx => "nginx",
            Kind::Haproxy => "HAProxy",
        }
    }

    fn example(self) -> PathBuf {
        let file = match self {
            Kind::Nginx => "nginx/streamgate.conf",
            Kind::Haproxy => "haproxy/streamgate.cfg",
        };
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../deploy").join(file)
    }

    /// The example's public listener, and what it becomes on `port`.
    fn listener(self, port: u16) -> (&'static str, String) {
        match self {
            Kind::Nginx => ("listen 8080;", format!("listen 127.0.0.1:{port};")),
            Kind::Haproxy => ("bind :8080", format!("bind 127.0.0.1:{port}")),
        }
    }
}

/// A running balancer in front of instances; stopped on drop.
pub struct Balancer {
    child: Child,
    pub port: u16,
    dir: PathBuf,
}

impl Balancer {
    /// Starts `kind` from its example file in front of the instances listening on
    /// `instances` (three ports) and waits until it accepts connections.
    pub fn start(kind: Kind, instances: &[u16]) -> Balancer {
        let port = free_port();
        let dir =
            std::env::temp_dir().join(format!("streamgate-chaos-{kind:?}-{}-{port}", std::process::id()));
        std::fs::create_dir_all(dir.join("tmp")).unwrap();
        let example = std::fs::read_to_string(kind.example()).unwrap();
        let mut text = swap_all(&example, kind.listener(port).0, &kind.listener(port).1);
        for (from, to) in EXAMPLE_INSTANCES.iter().zip(instances) {
            text = swap_all(&text, from, &format!("127.0.0.1:{to}"));
        }
        let mut command = match kind {
            Kind::Nginx => {
                std::fs::write(dir.join("streamgate.conf"), text).unwrap();
                let main = dir.join("nginx.conf");
                std::fs::write(&main, nginx_main(&dir)).unwrap();
                let mut c = Command::new("nginx");
                c.arg("-p").arg(&dir).arg("-c").arg(main);
                c
            }
            Kind::Haproxy => {
                let cfg = dir.join("haproxy.cfg");
                std::fs::write(&cfg, text).unwrap();
                let mut c = Command::new("haproxy");
                c.arg("-db").arg("-f").arg(cfg);
                c
            }
        };
        let log = std::fs::File::create(dir.join("stderr.log")).unwrap();
        let child = command.stdout(Stdio::null()).stderr(log).spawn().unwrap_or_else(|e| {
            panic!("cannot start {kind:?} ({e}): run `scripts/setup.sh balancers` (make test does)")
        });
        let mut balancer = Balancer { child, port, dir };
        let start = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if let Some(status) = balancer.child.try_wait().unwrap() {
                panic!("{kind:?} exited with {status}: {}", balancer.errors());
            }
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "{kind:?} did not listen: {}",
                balancer.errors()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        balancer
    }

    /// `http://127.0.0.1:PORT`, the balancer's public address.
    pub fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// What the balancer wrote to stderr and its error log.
    pub fn errors(&self) -> String {
        let read = |f: &str| std::fs::read_to_string(self.dir.join(f)).unwrap_or_default();
        format!("{}{}", read("stderr.log"), read("error.log"))
    }
}

impl Drop for Balancer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `text` with every occurrence of `from` replaced; a panic if the example file no longer
/// has one (the test would otherwise run some other config).
fn swap_all(text: &str, from: &str, to: &str) -> String {
    assert!(text.contains(from), "the example file no longer names {from:?}");
    text.replace(from, to)
}

/// The main config nginx needs around the example (an `http`-block file): its own pid,
/// logs and temporary files under `dir`, run as this user (root keeps root).
fn nginx_main(dir: &std::path::Path) -> String {
    // SAFETY: geteuid has no preconditions.
    let user = if unsafe { libc::geteuid() } == 0 { "user root;" } else { "" };
    let d = dir.display();
    format!(
        r#"{user}
worker_processes 1;
daemon off;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {d}/tmp/body;
    proxy_temp_path {d}/tmp/proxy;
    fastcgi_temp_path {d}/tmp/fastcgi;
    uwsgi_temp_path {d}/tmp/uwsgi;
    scgi_temp_path {d}/tmp/scgi;
    include {d}/streamgate.conf;
}}
"#
    )
}
