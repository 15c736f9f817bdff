//! `[limits]`: how large a request's URL and headers may be, how many SSE streams a
//! tenant and one client address may hold open, and how many requests per second one
//! address may make. The size bounds are always on; the others are off (0) by default,
//! as the demo wants. A refusal is a 414/431 (too large), a 429 (this address asks too
//! much) or a 503 (the tenant is full) with a one-line reason, counted in
//! `streamgate_http_refused_total`.
//! What is tracked per address is bounded (`tracked_addresses`): idle entries are
//! forgotten first, and a new address beyond the bound is refused rather than tracked.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use axum::extract::{ConnectInfo, FromRequestParts, Request, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

/// `[limits]`: 0 turns off the stream and rate limits; the size bounds and the tracked
/// addresses' bound are always on ([`LimitsConfig::validate`]).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    /// Longest request target (path and query), bytes.
    pub max_url_bytes: usize,
    /// Largest sum of header names and values, bytes.
    pub max_header_bytes: usize,
    /// Open SSE streams per tenant on this instance.
    pub streams_per_tenant: usize,
    /// Open SSE streams per client address on this instance.
    pub streams_per_address: usize,
    /// Requests per second per client address, any route (bursts of twice as many).
    pub requests_per_second_per_address: u32,
    /// Client addresses tracked at once (memory bound).
    pub tracked_addresses: usize,
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            max_url_bytes: 64 << 10,
            max_header_bytes: 32 << 10,
            streams_per_tenant: 0,
            streams_per_address: 0,
            requests_per_second_per_address: 0,
            tracked_addresses: 100_000,
        }
    }
}

impl LimitsConfig {
    /// The bounds that cannot be off: 0 there would refuse every request (a URL or
    /// headers of at least one byte, a first address to track) rather than lift a limit.
    pub fn validate(&self) -> Result<(), String> {
        let bounds = [("max_url_bytes", self.max_url_bytes), ("max_header_bytes", self.max_header_bytes)];
        match bounds.into_iter().chain([("tracked_addresses", self.tracked_addresses)]).find(|b| b.1 == 0) {
            Some((name, _)) => Err(format!("limits.{name} must be at least 1 (it is a bound, never off)")),
            None => Ok(()),
        }
    }
}

/// Why a request was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    UrlTooLong,
    HeadersTooLarge,
    Rate,
    AddressStreams,
    TenantStreams,
    TooManyAddresses,
}

impl Refusal {
    pub const ALL: [Refusal; 6] = [
        Refusal::UrlTooLong,
        Refusal::HeadersTooLarge,
        Refusal::Rate,
        Refusal::AddressStreams,
        Refusal::TenantStreams,
        Refusal::TooManyAddresses,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Refusal::UrlTooLong => "url_too_long",
            Refusal::HeadersTooLarge => "headers_too_large",
            Refusal::Rate => "rate",
            Refusal::AddressStreams => "address_streams",
            Refusal::TenantStreams => "tenant_streams",
            Refusal::TooManyAddresses => "tracked_addresses",
        }
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let (status, reason) = match self {
            Refusal::UrlTooLong => (StatusCode::URI_TOO_LONG, "the URL is longer than limits.max_url_bytes"),
            Refusal::HeadersTooLarge => (
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                "the headers are larger than limits.max_header_bytes",
            ),
            Refusal::Rate => {
                (StatusCode::TOO_MANY_REQUESTS, "too many requests from this address; slow down")
            }
            Refusal::AddressStreams => {
                (StatusCode::TOO_MANY_REQUESTS, "too many open streams from this address")
            }
            Refusal::TenantStreams => {
                (StatusCode::SERVICE_UNAVAILABLE, "this tenant's streams are full here")
            }
            Refusal::TooManyAddresses => {
                (StatusCode::SERVICE_UNAVAILABLE, "too many clients; try again later")
            }
        };
        (status, [("retry-after", "1")], format!("{reason}\n")).into_response()
    }
}

/// What one address holds: open streams and its request bucket.
struct Address {
    streams: usize,
    tokens: f64,
    refilled: Instant,
}

/// The limits and what they track, shared by every request of the instance.
pub struct Limits {
    config: LimitsConfig,
    addresses: Mutex<HashMap<IpAddr, Address>>,
    refused: [AtomicU64; Refusal::ALL.len()],
}

impl Limits {
    pub fn new(config: LimitsConfig) -> Self {
        Limits { config, addresses: Mutex::default(), refused: Default::default() }
    }

    pub fn config(&self) -> &LimitsConfig {
        &self.config
    }

    /// Requests refused for `reason` so far.
    pub fn refused(&self, reason: Refusal) -> u64 {
        self.refused[Self::slot(reason)].load(Relaxed)
    }

    fn slot(reason: Refusal) -> usize {
        Refusal::ALL.iter().position(|r| *r == reason).expect("listed")
    }

    pub fn count(&self, reason: Refusal) -> Refusal {
        self.refused[Self::slot(reason)].fetch_add(1, Relaxed);
        reason
    }

    fn tracking(&self) -> bool {
        self.config.streams_per_address > 0 || self.config.requests_per_second_per_address > 0
    }

    /// Runs `f` on the address's entry, creating it (within the bound) if needed.
    fn with_address<R>(&self, ip: IpAddr, f: impl FnOnce(&mut Address) -> R) -> Result<R, Refusal> {
        let mut map = self.addresses.lock().unwrap();
        if !map.contains_key(&ip) && map.len() >= self.config.tracked_addresses {
            let now = Instant::now();
            let burst = self.burst();
            map.retain(|_, a| a.streams > 0 || refill(a, now, self.rate(), burst) < burst);
            if map.len() >= self.config.tracked_addresses {
                return Err(self.count(Refusal::TooManyAddresses));
            }
        }
        let entry = map.entry(ip).or_insert_with(|| Address {
            streams: 0,
            tokens: self.burst(),
            refilled: Instant::now(),
        });
        Ok(f(entry))
    }

    fn rate(&self) -> f64 {
        self.config.requests_per_second_per_address as f64
    }

    fn burst(&self) -> f64 {
        2.0 * self.rate()
    }

    /// Takes one request from the address's bucket.
    pub fn request(&self, ip: IpAddr) -> Result<(), Refusal> {
        if self.config.requests_per_second_per_address == 0 {
            return Ok(());
        }
        let (rate, burst) = (self.rate(), self.burst());
        let allowed = self.with_address(ip, |a| {
            refill(a, Instant::now(), rate, burst);
            let ok = a.tokens >= 1.0;
            if ok {
                a.tokens -= 1.0;
            }
            ok
        })?;
        if allowed { Ok(()) } else { Err(self.count(Refusal::Rate)) }
    }

    /// Counts a new stream of a tenant that has `open` already, if there is room.
    pub fn open_tenant_stream(&self, open: &std::sync::atomic::AtomicI64) -> Result<(), Refusal> {
        let max = self.config.streams_per_tenant as i64;
        open.fetch_update(Relaxed, Relaxed, |n| (max == 0 || n < max).then_some(n + 1))
            .map(|_| ())
            .map_err(|_| self.count(Refusal::TenantStreams))
    }

    /// A stream slot for `ip` (released when the permit drops).
    pub fn open_stream(self: &Arc<Self>, ip: Option<IpAddr>) -> Result<StreamPermit, Refusal> {
        let max = self.config.streams_per_address;
        let ip = ip.filter(|_| self.tracking());
        if let Some(ip) = ip {
            let opened = self.with_address(ip, |a| {
                let ok = max == 0 || a.streams < max;
                if ok {
                    a.streams += 1;
                }
                ok
            })?;
            if !opened {
                return Err(self.count(Refusal::AddressStreams));
            }
        }
        Ok(StreamPermit { limits: self.clone(), ip })
    }
}

/// Adds the tokens earned since the last refill; the bucket's level.
fn refill(a: &mut Address, now: Instant, rate: f64, burst: f64) -> f64 {
    let earned = now.duration_since(a.refilled).as_secs_f64() * rate;
    a.tokens = (a.tokens + earned).min(burst);
    a.refilled = now;
    a.tokens
}

/// One open stream of an address; dropping it frees the slot.
pub struct StreamPermit {
    limits: Arc<Limits>,
    ip: Option<IpAddr>,
}

impl Drop for StreamPermit {
    fn drop(&mut self) {
        if let Some(ip) = self.ip {
            let mut map = self.limits.addresses.lock().unwrap();
            if let Some(a) = map.get_mut(&ip) {
                a.streams = a.streams.saturating_sub(1);
            }
        }
    }
}

/// The client address of a request served with connect info (tests without it: none).
pub fn client_ip(req: &Request) -> Option<IpAddr> {
    req.extensions().get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip())
}

/// Extractor: the client's address, if the server records it.
pub struct ClientIp(pub Option<IpAddr>);

impl<S: Send + Sync> FromRequestParts<S> for ClientIp {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        Ok(ClientIp(parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip())))
    }
}

/// Middleware, before any route runs: the size bounds, then the per-address rate.
pub async fn guard(State(limits): State<Arc<Limits>>, req: Request, next: Next) -> Response {
    let target = req.uri().path_and_query().map_or(0, |p| p.as_str().len());
    if target > limits.config.max_url_bytes {
        return limits.count(Refusal::UrlTooLong).into_response();
    }
    let headers: usize = req.headers().iter().map(|(k, v)| k.as_str().len() + v.len()).sum();
    if headers > limits.config.max_header_bytes {
        return limits.count(Refusal::HeadersTooLarge).into_response();
    }
    if let Some(ip) = client_ip(&req)
        && let Err(refusal) = limits.request(ip)
    {
        return refusal.into_response();
    }
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(config: LimitsConfig) -> Arc<Limits> {
        Arc::new(Limits::new(config))
    }

    #[test]
    fn streams_per_address_are_counted_and_freed() {
        let l = limits(LimitsConfig { streams_per_address: 2, ..Default::default() });
        let (a, b) = ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        let first = l.open_stream(Some(a)).unwrap();
        let _second = l.open_stream(Some(a)).unwrap();
        assert_eq!(l.open_stream(Some(a)).err(), Some(Refusal::AddressStreams));
        assert!(l.open_stream(Some(b)).is_ok(), "another address has its own count");
        drop(first);
        assert!(l.open_stream(Some(a)).is_ok(), "a closed stream frees its slot");
        assert_eq!(l.refused(Refusal::AddressStreams), 1);
    }

    #[test]
    fn the_request_rate_allows_a_burst_then_refuses() {
        let l = limits(LimitsConfig { requests_per_second_per_address: 5, ..Default::default() });
        let ip: IpAddr = "::1".parse().unwrap();
        let allowed = (0..30).filter(|_| l.request(ip).is_ok()).count();
        assert!((10..=11).contains(&allowed), "a burst of twice the rate, then refusals: {allowed}");
        assert_eq!(l.refused(Refusal::Rate), 30 - allowed as u64);
    }

    #[test]
    fn tracked_addresses_are_bounded() {
        let l = limits(LimitsConfig { streams_per_address: 1, tracked_addresses: 2, ..Default::default() });
        let ips: Vec<IpAddr> = (1..=3).map(|i| format!("10.0.0.{i}").parse().unwrap()).collect();
        let held: Vec<_> = ips[..2].iter().map(|ip| l.open_stream(Some(*ip)).unwrap()).collect();
        assert_eq!(l.open_stream(Some(ips[2])).err(), Some(Refusal::TooManyAddresses));
        drop(held);
        assert!(l.open_stream(Some(ips[2])).is_ok(), "idle addresses are forgotten to make room");
    }

    #[test]
    fn everything_is_off_by_default() {
        let l = limits(LimitsConfig::default());
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let permits: Vec<_> = (0..1000).map(|_| l.open_stream(Some(ip)).unwrap()).collect();
        assert!((0..1000).all(|_| l.request(ip).is_ok()));
        assert_eq!(permits.len(), 1000);
        assert!(l.addresses.lock().unwrap().is_empty(), "nothing tracked when no limit is set");
    }
}
