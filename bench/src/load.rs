//! A closed-loop load generator: `connections` workers on keep-alive connections, each sending
//! the next body as soon as its previous answer arrived; every latency is recorded.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use bytes::Bytes;
use http_body_util::{BodyExt as _, Full};

pub struct LoadReport {
    pub sent: u64,
    pub ok: u64,
    pub errors: u64,
    pub elapsed: Duration,
    /// Microseconds, sorted.
    pub latencies_us: Vec<u64>,
}

impl LoadReport {
    pub fn throughput(&self) -> f64 {
        self.ok as f64 / self.elapsed.as_secs_f64()
    }

    /// Two runs of the same load as one (a floor measured before and after what it is compared
    /// with).
    pub fn combined(a: LoadReport, b: LoadReport) -> LoadReport {
        let mut latencies_us = a.latencies_us;
        latencies_us.extend(b.latencies_us);
        latencies_us.sort_unstable();
        LoadReport {
            sent: a.sent + b.sent,
            ok: a.ok + b.ok,
            errors: a.errors + b.errors,
            elapsed: a.elapsed + b.elapsed,
            latencies_us,
        }
    }

    pub fn percentile_ms(&self, p: f64) -> f64 {
        if self.latencies_us.is_empty() {
            return 0.0;
        }
        let i = ((p / 100.0) * (self.latencies_us.len() - 1) as f64).round() as usize;
        self.latencies_us[i.min(self.latencies_us.len() - 1)] as f64 / 1000.0
    }
}

/// Where the load goes: one address, one path, the same headers on every request.
struct Target {
    addr: std::net::SocketAddr,
    host: http::HeaderValue,
    path: http::Uri,
    bearer: Option<http::HeaderValue>,
}

impl Target {
    fn new(base: &str, path: &str, bearer: Option<&str>) -> anyhow::Result<Target> {
        let authority = base
            .strip_prefix("http://")
            .context("the load generator speaks plain HTTP to loopback only")?;
        Ok(Target {
            addr: authority.parse().context("an IP address and port")?,
            host: http::HeaderValue::from_str(authority)?,
            path: path.parse()?,
            bearer: bearer
                .map(|b| http::HeaderValue::from_str(&format!("Bearer {b}")))
                .transpose()?,
        })
    }

    fn request(&self, body: Bytes) -> http::Request<Full<Bytes>> {
        let mut request = http::Request::new(Full::new(body));
        *request.method_mut() = http::Method::POST;
        *request.uri_mut() = self.path.clone();
        let headers = request.headers_mut();
        headers.insert(http::header::HOST, self.host.clone());
        headers.insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/json"),
        );
        if let Some(b) = &self.bearer {
            headers.insert(http::header::AUTHORIZATION, b.clone());
        }
        request
    }
}

type Sender = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

/// One keep-alive HTTP/1 connection of a worker (made again after an error).
async fn connect(addr: std::net::SocketAddr) -> anyhow::Result<Sender> {
    let stream = tokio::net::TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let (sender, connection) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
    tokio::spawn(connection);
    Ok(sender)
}

/// One request on the worker's connection: whether it was answered 2xx.
async fn send(sender: &mut Sender, request: http::Request<Full<Bytes>>) -> anyhow::Result<bool> {
    sender.ready().await?;
    let response = sender.send_request(request).await?;
    let ok = response.status().is_success();
    response.into_body().collect().await?;
    Ok(ok)
}

/// Sends every body once, over `connections` workers, each sending its next request as soon as
/// its previous one was answered (closed loop). The requests are built from bodies and headers
/// made beforehand, on connections the workers hold themselves: the load generator shares the
/// cores with what it measures, so it should spend as little of them as it can.
pub async fn run_load(
    base: &str,
    path: &str,
    bodies: &[Vec<u8>],
    connections: usize,
    bearer: Option<&str>,
) -> anyhow::Result<LoadReport> {
    run_load_at(base, path, bodies, connections, bearer, None).await
}

/// [`run_load`], or, with a `rate` (requests a second), open loop: request `i` is due at
/// `i / rate` seconds from the start whatever the answers, and its latency counts from when it
/// was due, so a request that waited for a free worker counts its wait. (tokio's timer ticks
/// every millisecond: requests due within one tick leave together.)
pub async fn run_load_at(
    base: &str,
    path: &str,
    bodies: &[Vec<u8>],
    connections: usize,
    bearer: Option<&str>,
    rate: Option<f64>,
) -> anyhow::Result<LoadReport> {
    let target = Arc::new(Target::new(base, path, bearer)?);
    let bodies: Arc<Vec<Bytes>> = Arc::new(bodies.iter().cloned().map(Bytes::from).collect());
    let next = Arc::new(AtomicUsize::new(0));
    let started = Instant::now();
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..connections {
        let (target, bodies, next) = (target.clone(), bodies.clone(), next.clone());
        workers.spawn(async move {
            let mut latencies = Vec::new();
            let (mut ok, mut errors) = (0u64, 0u64);
            let mut sender: Option<Sender> = None;
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(body) = bodies.get(i) else { break };
                let request = target.request(body.clone());
                let t = match rate {
                    Some(rate) => {
                        let due = started + Duration::from_secs_f64(i as f64 / rate);
                        tokio::time::sleep_until(due.into()).await;
                        due
                    }
                    None => Instant::now(),
                };
                let answered = async {
                    let s = match sender.as_mut() {
                        Some(s) => s,
                        None => sender.insert(connect(target.addr).await?),
                    };
                    tokio::time::timeout(Duration::from_secs(60), send(s, request)).await?
                }
                .await;
                match answered {
                    Ok(true) => ok += 1,
                    Ok(false) => errors += 1,
                    Err(_) => {
                        errors += 1;
                        sender = None;
                    }
                }
                latencies.push(t.elapsed().as_micros() as u64);
            }
            (latencies, ok, errors)
        });
    }
    let mut report = LoadReport {
        sent: 0,
        ok: 0,
        errors: 0,
        elapsed: Duration::ZERO,
        latencies_us: Vec::new(),
    };
    while let Some(r) = workers.join_next().await {
        let (latencies, ok, errors) = r?;
        report.latencies_us.extend(latencies);
        report.ok += ok;
        report.errors += errors;
    }
    report.elapsed = started.elapsed();
    report.sent = report.ok + report.errors;
    report.latencies_us.sort_unstable();
    Ok(report)
}
