//! The servers under test: Nchan (Debian's nginx-light with libnginx-mod-nchan), run
//! as this user from a generated config in a temporary directory, one worker, on a free
//! port; and streamgate (the release binary with its shipped defaults) beside real tansu
//! and redis-server, from the integration tests' harness.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::{Instance, Redis, Tansu, free_port};
use crate::defaults;

pub const NCHAN_MODULE: &str = "/usr/lib/nginx/modules/ngx_nchan_module.so";

/// nginx with one worker serving `/pub` (publisher) and `/sub` (EventSource subscribers)
/// of one channel.
pub struct Nchan {
    master: Child,
    pub port: u16,
    dir: PathBuf,
}

impl Nchan {
    pub fn start(max_connections: u64) -> Nchan {
        let port = free_port();
        let dir = std::env::temp_dir().join(format!("streamgate-fanout-nchan-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("tmp")).unwrap();
        let d = dir.display();
        // nginx switches workers to `user` only when started as root.
        // SAFETY: geteuid has no preconditions.
        let user = if unsafe { libc::geteuid() } == 0 { "user root;" } else { "" };
        let config = format!(
            r#"load_module {NCHAN_MODULE};
{user}
worker_processes 1;
worker_rlimit_nofile {max_connections};
daemon off;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections {max_connections}; }}
http {{
    access_log off;
    keepalive_requests 100000000;
    client_body_temp_path {d}/tmp/body;
    proxy_temp_path {d}/tmp/proxy;
    fastcgi_temp_path {d}/tmp/fastcgi;
    uwsgi_temp_path {d}/tmp/uwsgi;
    scgi_temp_path {d}/tmp/scgi;
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        location = /pub {{ nchan_publisher; nchan_channel_id bench; }}
        location = /sub {{ nchan_subscriber eventsource; nchan_channel_id bench; }}
    }}
}}
"#
        );
        let conf = dir.join("nginx.conf");
        std::fs::write(&conf, config).unwrap();
        let master = Command::new("nginx")
            .arg("-p")
            .arg(&dir)
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("nginx not found: run `scripts/setup.sh nchan`");
        let nchan = Nchan { master, port, dir };
        let start = Instant::now();
        while nchan.worker().is_none() || std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(start.elapsed() < Duration::from_secs(10), "nginx did not start: {}", nchan.errors());
            std::thread::sleep(Duration::from_millis(50));
        }
        nchan
    }

    /// The worker process (where Nchan runs).
    pub fn worker(&self) -> Option<u32> {
        let pid = self.master.id();
        let children = std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).ok()?;
        children.split_whitespace().next().and_then(|c| c.parse().ok())
    }

    fn errors(&self) -> String {
        std::fs::read_to_string(self.dir.join("error.log")).unwrap_or_default()
    }
}

impl Drop for Nchan {
    fn drop(&mut self) {
        // SIGQUIT: graceful stop of master and worker.
        let _ = Command::new("kill").arg("-QUIT").arg(self.master.id().to_string()).status();
        let start = Instant::now();
        while self.master.try_wait().ok().flatten().is_none() && start.elapsed() < Duration::from_secs(5) {
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.master.kill();
        let _ = self.master.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// streamgate with real tansu and redis-server: one tenant, one staleness stage, and
/// nothing else set (the shipped defaults).
pub struct Streamgate {
    // Dropped in this order: the instance before what it uses.
    pub instance: Instance,
    pub tansu: Tansu,
    pub redis: Redis,
}

pub const TOPIC: &str = "fanout";
pub const TENANT: &str = "bench";

impl Streamgate {
    /// `kafka_extra` and `tenant_extra`: see [`defaults`](crate::defaults).
    pub fn start(kafka_extra: &str, tenant_extra: &str) -> Streamgate {
        let redis = Redis::start();
        let tansu = Tansu::start();
        tansu.create_topic(TOPIC, 4);
        let config = defaults::config(&defaults::Shape {
            brokers: &tansu.brokers(),
            redis_url: &redis.url(),
            tenant: TENANT,
            topic: TOPIC,
            kafka_extra,
            tenant_extra,
        });
        let instance = Instance::start(&config);
        Streamgate { instance, tansu, redis }
    }
}
