//! A closed-loop load generator: `connections` workers on keep-alive connections, each sending
//! the next body as soon as its previous answer arrived; every latency is recorded.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

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

    pub fn percentile_ms(&self, p: f64) -> f64 {
        if self.latencies_us.is_empty() {
            return 0.0;
        }
        let i = ((p / 100.0) * (self.latencies_us.len() - 1) as f64).round() as usize;
        self.latencies_us[i.min(self.latencies_us.len() - 1)] as f64 / 1000.0
    }
}

pub async fn run_load(
    base: &str,
    path: &str,
    bodies: &[Vec<u8>],
    connections: usize,
    bearer: Option<&str>,
) -> anyhow::Result<LoadReport> {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(connections)
        .timeout(Duration::from_secs(60))
        .build()?;
    let bodies: Arc<Vec<Vec<u8>>> = Arc::new(bodies.to_vec());
    let next = Arc::new(AtomicUsize::new(0));
    let url = Arc::new(format!("{base}{path}"));
    let bearer = bearer.map(|b| Arc::new(b.to_owned()));
    let started = Instant::now();
    let mut workers = tokio::task::JoinSet::new();
    for _ in 0..connections {
        let (client, bodies, next, url, bearer) = (
            client.clone(),
            bodies.clone(),
            next.clone(),
            url.clone(),
            bearer.clone(),
        );
        workers.spawn(async move {
            let mut latencies = Vec::new();
            let (mut ok, mut errors) = (0u64, 0u64);
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(body) = bodies.get(i) else { break };
                let mut request = client
                    .post(url.as_str())
                    .header("content-type", "application/json")
                    .body(body.clone());
                if let Some(b) = &bearer {
                    request = request.bearer_auth(b.as_str());
                }
                let t = Instant::now();
                match request.send().await {
                    Ok(r) if r.status().is_success() => {
                        let _ = r.bytes().await;
                        ok += 1;
                    }
                    _ => errors += 1,
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
