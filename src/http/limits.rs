//! Caps on connections and the rate of new ones: in total, per client address, per
//! document. Past a cap a new request is answered (503, or 429 for the rate, with
//! `Retry-After`) before any upgrade, while every open session carries on.
//!
//! A connection holds a [`Seat`] from accept to close (a WebSocket keeps its connection's
//! seat for its whole life), and a WebSocket also a [`DocSeat`]. The per-address cap and
//! rate count TCP connections by their peer address; behind a trusted proxy (whose
//! connections all come from one address) they count by the client address the proxy
//! forwards, from the first request of each connection.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::HeaderMap;
use tokio::time::Instant;

use crate::metrics::Metrics;
use crate::model::DocId;

/// A new connection's rate allows bursts of this many seconds' worth.
const BURST_SECONDS: f64 = 5.0;

/// Idle rate buckets kept before the full ones are forgotten (a bucket that has refilled
/// knows nothing a new one would not).
const MAX_IDLE_BUCKETS: usize = 10_000;

/// Descriptors kept free of connections: the database pool, files, and the refusals
/// themselves (a refused connection is answered, which takes a descriptor for a moment).
/// A quarter of the limit, within these bounds, and never more than half of it.
const DESCRIPTOR_RESERVE: (u64, u64) = (32, 256);

/// The limits, as configured (0 = off, where a limit can be off).
#[derive(Clone, Debug)]
pub struct LimitSettings {
    pub max_connections: usize,
    pub max_connections_per_ip: usize,
    pub max_connections_per_doc: usize,
    /// New connections per second per client address; 0 = off.
    pub connect_rate_per_ip: u32,
    /// Take the client's address from `Forwarded` / `X-Forwarded-For`.
    pub trust_proxy_headers: bool,
}

/// Why a new connection or socket is refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The server's connection cap: 503.
    Full,
    /// This address's cap: 503.
    AddressFull,
    /// This document's cap: 503.
    DocFull,
    /// This address opens connections too fast: 429, again after this long.
    TooFast(Duration),
}

impl Refusal {
    /// For the metrics.
    pub fn reason(self) -> &'static str {
        match self {
            Self::Full => "full",
            Self::AddressFull => "address_full",
            Self::DocFull => "doc_full",
            Self::TooFast(_) => "too_fast",
        }
    }

    /// What the refused client is told.
    pub fn message(self) -> &'static str {
        match self {
            Self::Full => "the server is at its connection limit; try again later",
            Self::AddressFull => "too many connections from your address; try again later",
            Self::DocFull => "this document is at its connection limit; try again later",
            Self::TooFast(_) => "too many new connections from your address; slow down",
        }
    }

    /// How long the client should wait before it tries again (`Retry-After`).
    pub fn retry_after(self) -> Duration {
        match self {
            Self::TooFast(wait) => wait,
            _ => Duration::from_secs(5),
        }
    }
}

/// Every connection count, shared by the accept loop and the handlers.
pub struct Limits {
    settings: LimitSettings,
    state: Mutex<Counts>,
    metrics: Metrics,
}

#[derive(Default)]
struct Counts {
    total: usize,
    per_ip: HashMap<IpAddr, usize>,
    buckets: HashMap<IpAddr, Bucket>,
    per_doc: HashMap<DocId, usize>,
}

/// A token bucket of new connections for one address.
#[derive(Clone, Copy)]
struct Bucket {
    tokens: f64,
    last: Instant,
}

impl Limits {
    pub fn new(settings: LimitSettings, metrics: Metrics) -> Arc<Self> {
        Arc::new(Self { settings, state: Mutex::new(Counts::default()), metrics })
    }

    /// Counts a refusal.
    pub fn refused(&self, refusal: Refusal) -> Refusal {
        self.metrics.refused_connection(refusal.reason());
        refusal
    }

    pub fn settings(&self) -> &LimitSettings {
        &self.settings
    }

    /// How many refused connections may be answered at once (each holds a descriptor until
    /// its client has sent a head, or for two seconds): an eighth of the cap, so that they
    /// fit in the default descriptor reserve, from 4 to 64. Past it one is closed unanswered.
    pub fn refusal_slots(&self) -> usize {
        (self.settings.max_connections / 8).clamp(4, 64)
    }

    fn counts(&self) -> std::sync::MutexGuard<'_, Counts> {
        // Nothing panics while holding the lock; a poisoned one still holds whole counts.
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// A seat for a connection just accepted from `peer`. Its address counts now unless
    /// the client's address will come from proxy headers (then see [`Seat::claim_address`]).
    pub fn admit(self: &Arc<Self>, peer: SocketAddr) -> Result<Arc<Seat>, Refusal> {
        let mut counts = self.counts();
        if counts.total >= self.settings.max_connections {
            return Err(Refusal::Full);
        }
        let ip = (!self.settings.trust_proxy_headers).then_some(peer.ip());
        if let Some(ip) = ip {
            self.admit_address(&mut counts, ip)?;
        }
        counts.total += 1;
        self.metrics.tcp_connections.inc();
        Ok(Arc::new(Seat { limits: Arc::clone(self), ip: Mutex::new(ip) }))
    }

    /// Counts a connection of `ip` against its cap and rate.
    fn admit_address(&self, counts: &mut Counts, ip: IpAddr) -> Result<(), Refusal> {
        let cap = self.settings.max_connections_per_ip;
        if cap > 0 && counts.per_ip.get(&ip).copied().unwrap_or(0) >= cap {
            return Err(Refusal::AddressFull);
        }
        self.take_token(counts, ip)?;
        *counts.per_ip.entry(ip).or_default() += 1;
        Ok(())
    }

    fn take_token(&self, counts: &mut Counts, ip: IpAddr) -> Result<(), Refusal> {
        let rate = f64::from(self.settings.connect_rate_per_ip);
        if rate == 0.0 {
            return Ok(());
        }
        let burst = (rate * BURST_SECONDS).max(1.0);
        let now = Instant::now();
        if counts.buckets.len() > MAX_IDLE_BUCKETS {
            counts.buckets.retain(|_, b| b.tokens + now.duration_since(b.last).as_secs_f64() * rate < burst);
        }
        let bucket = counts.buckets.entry(ip).or_insert(Bucket { tokens: burst, last: now });
        bucket.tokens = (bucket.tokens + now.duration_since(bucket.last).as_secs_f64() * rate).min(burst);
        bucket.last = now;
        if bucket.tokens < 1.0 {
            let wait = Duration::from_secs_f64((1.0 - bucket.tokens) / rate).max(Duration::from_secs(1));
            return Err(Refusal::TooFast(wait));
        }
        bucket.tokens -= 1.0;
        Ok(())
    }

    /// A seat among a document's connections (a WebSocket), or `DocFull`.
    pub fn join_doc(self: &Arc<Self>, id: DocId) -> Result<DocSeat, Refusal> {
        let mut counts = self.counts();
        let seats = counts.per_doc.entry(id).or_default();
        if *seats >= self.settings.max_connections_per_doc {
            if *seats == 0 {
                counts.per_doc.remove(&id);
            }
            return Err(Refusal::DocFull);
        }
        *seats += 1;
        Ok(DocSeat { limits: Arc::clone(self), id })
    }

    /// Open connections, for logs and tests.
    pub fn open_connections(&self) -> usize {
        self.counts().total
    }

    fn release(&self, ip: Option<IpAddr>) {
        let mut counts = self.counts();
        counts.total = counts.total.saturating_sub(1);
        self.metrics.tcp_connections.dec();
        if let Some(ip) = ip {
            release_key(&mut counts.per_ip, ip);
        }
    }
}

fn release_key<K: std::hash::Hash + Eq>(map: &mut HashMap<K, usize>, key: K) {
    if let Some(count) = map.get_mut(&key) {
        *count -= 1;
        if *count == 0 {
            map.remove(&key);
        }
    }
}

/// A connection's place within the caps; given back when the last holder drops it.
pub struct Seat {
    limits: Arc<Limits>,
    /// The address counted for this connection, once known.
    ip: Mutex<Option<IpAddr>>,
}

impl Seat {
    /// Behind a trusted proxy: counts the connection under the client address its first
    /// request names. Later requests on the same connection do not count again.
    pub fn claim_address(&self, ip: IpAddr) -> Result<(), Refusal> {
        let mut claimed = self.ip.lock().unwrap_or_else(|p| p.into_inner());
        if claimed.is_some() {
            return Ok(());
        }
        let mut counts = self.limits.counts();
        self.limits.admit_address(&mut counts, ip)?;
        *claimed = Some(ip);
        Ok(())
    }
}

impl Drop for Seat {
    fn drop(&mut self) {
        let ip = *self.ip.get_mut().unwrap_or_else(|p| p.into_inner());
        self.limits.release(ip);
    }
}

/// A WebSocket's place among its document's connections.
pub struct DocSeat {
    limits: Arc<Limits>,
    id: DocId,
}

impl Drop for DocSeat {
    fn drop(&mut self) {
        release_key(&mut self.limits.counts().per_doc, self.id);
    }
}

/// The default connection cap: what the descriptor limit allows, less a reserve, so that
/// the server answers "try later" instead of failing to accept. Raises the soft limit to
/// the hard one first, as servers do.
pub fn default_max_connections() -> usize {
    let limit = raise_descriptor_limit();
    let reserve = (limit / 4).clamp(DESCRIPTOR_RESERVE.0, DESCRIPTOR_RESERVE.1).min(limit / 2);
    usize::try_from(limit.saturating_sub(reserve)).unwrap_or(usize::MAX).max(1)
}

/// The process's descriptor limit, after raising the soft limit to the hard one.
fn raise_descriptor_limit() -> u64 {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit and setrlimit only read and write the struct passed in.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return 1024;
        }
        if limit.rlim_cur < limit.rlim_max {
            let raised = libc::rlimit { rlim_cur: limit.rlim_max, rlim_max: limit.rlim_max };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                limit = raised;
            }
        }
    }
    limit.rlim_cur
}

/// The client's address: the peer's, or behind a trusted proxy the one it forwards (the
/// last `for=` of `Forwarded`, else the last address of `X-Forwarded-For`: the entry our
/// own proxy appended; earlier entries are whatever the client claimed).
pub fn client_address(peer: SocketAddr, headers: &HeaderMap, trust_proxy_headers: bool) -> SocketAddr {
    if !trust_proxy_headers {
        return peer;
    }
    forwarded(headers).or_else(|| x_forwarded_for(headers)).unwrap_or(peer)
}

fn forwarded(headers: &HeaderMap) -> Option<SocketAddr> {
    let last = headers.get_all("forwarded").iter().filter_map(|v| v.to_str().ok()).next_back()?;
    let element = last.rsplit(',').next()?;
    let value = element.split(';').find_map(|pair| {
        let (key, value) = pair.trim().split_once('=')?;
        key.eq_ignore_ascii_case("for").then(|| value.trim().trim_matches('"'))
    })?;
    parse_node(value)
}

fn x_forwarded_for(headers: &HeaderMap) -> Option<SocketAddr> {
    let last = headers.get_all("x-forwarded-for").iter().filter_map(|v| v.to_str().ok()).next_back()?;
    parse_node(last.rsplit(',').next()?.trim())
}

/// `1.2.3.4`, `1.2.3.4:80`, `[2001:db8::1]:443` or `2001:db8::1`.
fn parse_node(value: &str) -> Option<SocketAddr> {
    if let Ok(addr) = value.parse::<SocketAddr>() {
        return Some(addr);
    }
    let bare = value.trim_start_matches('[').split(']').next().unwrap_or(value);
    bare.parse::<IpAddr>().ok().map(|ip| SocketAddr::new(ip, 0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings() -> LimitSettings {
        LimitSettings {
            max_connections: 3,
            max_connections_per_ip: 2,
            max_connections_per_doc: 1,
            connect_rate_per_ip: 0,
            trust_proxy_headers: false,
        }
    }

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn caps_in_total_and_per_address_and_seats_come_back() {
        let limits = Limits::new(settings(), Metrics::new());
        let a = limits.admit(addr("10.0.0.1:1")).unwrap();
        let b = limits.admit(addr("10.0.0.1:2")).unwrap();
        assert_eq!(limits.admit(addr("10.0.0.1:3")).err(), Some(Refusal::AddressFull));
        let c = limits.admit(addr("10.0.0.2:1")).unwrap();
        assert_eq!(limits.admit(addr("10.0.0.3:1")).err(), Some(Refusal::Full));
        drop(a);
        assert!(limits.admit(addr("10.0.0.1:4")).is_ok(), "a seat given back is free again");
        drop((b, c));
        assert_eq!(limits.open_connections(), 0);
    }

    #[test]
    fn documents_have_their_own_cap() {
        let limits = Limits::new(settings(), Metrics::new());
        let doc = DocId::new();
        let seat = limits.join_doc(doc).unwrap();
        assert_eq!(limits.join_doc(doc).err(), Some(Refusal::DocFull));
        assert!(limits.join_doc(DocId::new()).is_ok());
        drop(seat);
        assert!(limits.join_doc(doc).is_ok());
    }

    #[tokio::test(start_paused = true)]
    async fn the_connect_rate_allows_a_burst_then_refills() {
        let settings = LimitSettings {
            max_connections: 1000,
            max_connections_per_ip: 0,
            connect_rate_per_ip: 2,
            ..settings()
        };
        let limits = Limits::new(settings, Metrics::new());
        let peer = addr("10.0.0.1:1");
        let burst: Vec<_> = (0..10).map(|_| limits.admit(peer).unwrap()).collect();
        let Err(Refusal::TooFast(wait)) = limits.admit(peer) else { panic!("not refused") };
        assert!(wait >= Duration::from_secs(1));
        assert!(limits.admit(addr("10.0.0.2:1")).is_ok(), "other addresses are not held back");
        tokio::time::advance(Duration::from_millis(600)).await;
        assert!(limits.admit(peer).is_ok(), "refilled at the rate");
        drop(burst);
    }

    #[test]
    fn behind_a_proxy_the_forwarded_address_counts() {
        let limits = Limits::new(LimitSettings { trust_proxy_headers: true, ..settings() }, Metrics::new());
        let proxy = addr("10.9.9.9:1");
        let seats: Vec<_> = (0..3).map(|_| limits.admit(proxy).unwrap()).collect();
        seats[0].claim_address("1.1.1.1".parse().unwrap()).unwrap();
        seats[0].claim_address("2.2.2.2".parse().unwrap()).unwrap(); // already counted
        seats[1].claim_address("1.1.1.1".parse().unwrap()).unwrap();
        assert_eq!(seats[2].claim_address("1.1.1.1".parse().unwrap()), Err(Refusal::AddressFull));
    }

    #[test]
    fn forwarded_addresses_are_read_from_the_last_entry() {
        let peer = addr("10.0.0.1:5");
        let mut headers = HeaderMap::new();
        assert_eq!(client_address(peer, &headers, true), peer);
        headers.insert("x-forwarded-for", "6.6.6.6, 203.0.113.7".parse().unwrap());
        assert_eq!(client_address(peer, &headers, true).ip(), "203.0.113.7".parse::<IpAddr>().unwrap());
        assert_eq!(client_address(peer, &headers, false), peer, "not trusted: the peer");
        headers.insert("forwarded", r#"for=6.6.6.6, for="[2001:db8::1]:4711";proto=https"#.parse().unwrap());
        assert_eq!(client_address(peer, &headers, true).ip(), "2001:db8::1".parse::<IpAddr>().unwrap());
        headers.insert("forwarded", "for=unknown".parse().unwrap());
        assert_eq!(client_address(peer, &headers, true).ip(), "203.0.113.7".parse::<IpAddr>().unwrap());
    }
}
