//! The publishers: messages of about 100 bytes carrying their send time (`"sent"`,
//! microseconds since the epoch), paced to a rate from one thread. streamgate's come
//! through Kafka (an rdkafka producer, `linger.ms` 1, Nagle off, as a producer that
//! cares about latency is set), Nchan's through its HTTP
//! publisher location (one keep-alive connection, one POST after another, so a slow
//! server slows the publisher: the rate reached is what the table shows).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};

use crate::client::now_us;

/// Distinct keys the messages cycle through.
const KEYS: u64 = 1_000;

/// One message: key, event time (ms) for the policies, send time (µs) for the latency.
pub fn message(i: u64) -> (String, String) {
    let key = format!("k-{}", i % KEYS);
    let sent = now_us();
    let body = format!(
        r#"{{"k":"{key}","t":{},"sent":{sent},"lat":37.5665,"lng":126.978,"pad":"abcdefghijklmnop"}}"#,
        sent / 1000
    );
    (key, body)
}

pub trait Publish: Send {
    fn send(&mut self, i: u64) -> std::io::Result<()>;
}

pub struct Kafka {
    producer: ThreadedProducer<DefaultProducerContext>,
    topic: String,
}

impl Kafka {
    pub fn new(brokers: &str, topic: &str) -> Kafka {
        let producer = ClientConfig::new()
            .set("bootstrap.servers", brokers)
            .set("linger.ms", "1")
            .set("socket.nagle.disable", "true")
            .create()
            .expect("kafka producer");
        Kafka { producer, topic: topic.to_string() }
    }
}

impl Publish for Kafka {
    fn send(&mut self, i: u64) -> std::io::Result<()> {
        let (key, body) = message(i);
        self.producer
            .send(BaseRecord::to(&self.topic).key(&key).payload(&body))
            .map_err(|(e, _)| std::io::Error::other(e.to_string()))
    }
}

impl Drop for Kafka {
    fn drop(&mut self) {
        let _ = self.producer.flush(Duration::from_secs(5));
    }
}

/// POSTs to an Nchan publisher location over one keep-alive connection (opened again
/// when nginx closes it).
pub struct Nchan {
    addr: SocketAddr,
    stream: Option<TcpStream>,
    path: String,
    buf: Vec<u8>,
}

impl Nchan {
    pub fn new(addr: SocketAddr, path: &str) -> Nchan {
        Nchan { addr, stream: None, path: path.to_string(), buf: vec![0; 4096] }
    }
}

impl Publish for Nchan {
    fn send(&mut self, i: u64) -> std::io::Result<()> {
        let result = self.post(i);
        if result.is_err() {
            self.stream = None;
        }
        result
    }
}

impl Nchan {
    fn post(&mut self, i: u64) -> std::io::Result<()> {
        if self.stream.is_none() {
            let stream = TcpStream::connect(self.addr)?;
            stream.set_nodelay(true)?;
            self.stream = Some(stream);
        }
        let stream = self.stream.as_mut().expect("connected above");
        let (_, body) = message(i);
        let request = format!(
            "POST {} HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            self.path,
            body.len()
        );
        stream.write_all(request.as_bytes())?;
        // Read the answer: headers, then Content-Length bytes of body.
        let mut have = 0;
        loop {
            let n = stream.read(&mut self.buf[have..])?;
            if n == 0 {
                return Err(std::io::Error::other("nginx closed the publisher connection"));
            }
            have += n;
            let Some(end) = memchr::memmem::find(&self.buf[..have], b"\r\n\r\n") else { continue };
            let head = std::str::from_utf8(&self.buf[..end]).map_err(std::io::Error::other)?;
            if !(head.starts_with("HTTP/1.1 201") || head.starts_with("HTTP/1.1 202")) {
                return Err(std::io::Error::other(format!("publish refused: {head}")));
            }
            let length = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase().strip_prefix("content-length:").map(|v| v.trim().to_string())
                })
                .and_then(|v| v.parse::<usize>().ok())
                .unwrap_or(0);
            if have >= end + 4 + length {
                return Ok(());
            }
        }
    }
}

/// Sends at `rate` messages per second until `until`; returns how many were sent.
/// Paced in 1 ms steps: each step sends what the rate owes so far.
pub fn paced(publisher: &mut dyn Publish, rate: f64, first: u64, until: Instant) -> u64 {
    let start = Instant::now();
    let mut sent = 0u64;
    while Instant::now() < until {
        let owed = (start.elapsed().as_secs_f64() * rate) as u64;
        while sent < owed && Instant::now() < until {
            if let Err(e) = publisher.send(first + sent) {
                eprintln!("fanout: publish failed: {e}");
                std::thread::sleep(Duration::from_millis(100));
                break;
            }
            sent += 1;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    sent
}
