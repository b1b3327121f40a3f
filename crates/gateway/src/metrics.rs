//! Prometheus metrics, kept by hand: a few counters and histograms behind one mutex each, which
//! is cheap next to a database commit and keeps the binary lean.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;

type Labels = Vec<(&'static str, String)>;

struct Family {
    help: &'static str,
    kind: &'static str,
}

/// Every metric the gateway exports, with its help text.
const FAMILIES: &[(&str, Family)] = &[
    (
        "mpesa_gateway_callbacks_received_total",
        Family {
            help: "Callbacks received from Safaricom, by kind and outcome.",
            kind: "counter",
        },
    ),
    (
        "mpesa_gateway_callbacks_rejected_total",
        Family {
            help: "Callback requests refused before storing (wrong secret, too large).",
            kind: "counter",
        },
    ),
    (
        "mpesa_gateway_payments_created_total",
        Family {
            help: "Payments created, by source.",
            kind: "counter",
        },
    ),
    (
        "mpesa_gateway_payments_final_total",
        Family {
            help: "Payments that reached a final state, by state.",
            kind: "counter",
        },
    ),
    (
        "mpesa_gateway_c2b_payments_total",
        Family {
            help: "C2B payments booked, by how they came (confirmation, pull, status).",
            kind: "counter",
        },
    ),
    (
        "mpesa_gateway_c2b_validations_total",
        Family {
            help: "C2B validation requests answered, by answer and by what decided (rules or the fallback).",
            kind: "counter",
        },
    ),
    (
        "mpesa_gateway_c2b_validation_seconds",
        Family {
            help: "Time to answer a C2B validation request.",
            kind: "histogram",
        },
    ),
    (
        "mpesa_gateway_c2b_pull_runs_total",
        Family {
            help: "Pull Transactions runs, by whether they recovered payments.",
            kind: "counter",
        },
    ),
    (
        "mpesa_gateway_payments_held_for_review_total",
        Family {
            help: "Times a payment was held for review.",
            kind: "counter",
        },
    ),
    (
        "mpesa_gateway_payment_time_to_final_seconds",
        Family {
            help: "Time from creation to a final state.",
            kind: "histogram",
        },
    ),
    (
        "mpesa_gateway_reconciler_queries_total",
        Family {
            help: "STK Queries made by the reconciler and refresh, by outcome.",
            kind: "counter",
        },
    ),
    (
        "mpesa_gateway_daraja_calls_total",
        Family {
            help: "Calls to Daraja, by API and outcome (0 or Daraja's error code).",
            kind: "counter",
        },
    ),
    (
        "mpesa_gateway_daraja_token_requests_total",
        Family {
            help: "OAuth token requests made to Daraja.",
            kind: "counter",
        },
    ),
    (
        "mpesa_gateway_outbox_events",
        Family {
            help: "Outbox events by status.",
            kind: "gauge",
        },
    ),
    (
        "mpesa_gateway_outbox_deliveries_total",
        Family {
            help: "Outbox delivery attempts, by channel and result.",
            kind: "counter",
        },
    ),
    (
        "mpesa_gateway_telegram_updates_total",
        Family {
            help: "Telegram updates handled by the bot, by what they were.",
            kind: "counter",
        },
    ),
    (
        "mpesa_gateway_http_requests_total",
        Family {
            help: "HTTP requests, by route and status class.",
            kind: "counter",
        },
    ),
    (
        "mpesa_gateway_http_request_duration_seconds",
        Family {
            help: "HTTP request duration, by route.",
            kind: "histogram",
        },
    ),
];

const BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
    120.0, 300.0, 600.0,
];

#[derive(Clone, Default)]
struct Histogram {
    counts: Vec<u64>,
    sum: f64,
    count: u64,
}

#[derive(Default)]
pub struct Metrics {
    counters: Mutex<BTreeMap<(&'static str, Labels), f64>>,
    histograms: Mutex<BTreeMap<(&'static str, Labels), Histogram>>,
}

fn labels(pairs: &[(&'static str, &str)]) -> Labels {
    pairs.iter().map(|(k, v)| (*k, (*v).to_owned())).collect()
}

impl Metrics {
    pub fn new() -> Self {
        Metrics::default()
    }

    pub fn inc(&self, name: &'static str, pairs: &[(&'static str, &str)]) {
        self.add(name, pairs, 1.0);
    }

    pub fn add(&self, name: &'static str, pairs: &[(&'static str, &str)], by: f64) {
        let mut c = self.counters.lock().unwrap_or_else(|e| e.into_inner());
        *c.entry((name, labels(pairs))).or_insert(0.0) += by;
    }

    /// Sets a gauge (or a counter mirrored from elsewhere, e.g. the Daraja client's own counts).
    pub fn set(&self, name: &'static str, pairs: &[(&'static str, &str)], value: f64) {
        let mut c = self.counters.lock().unwrap_or_else(|e| e.into_inner());
        c.insert((name, labels(pairs)), value);
    }

    pub fn observe(&self, name: &'static str, pairs: &[(&'static str, &str)], seconds: f64) {
        let mut h = self.histograms.lock().unwrap_or_else(|e| e.into_inner());
        let entry = h.entry((name, labels(pairs))).or_insert_with(|| Histogram {
            counts: vec![0; BUCKETS.len()],
            ..Histogram::default()
        });
        for (i, b) in BUCKETS.iter().enumerate() {
            if seconds <= *b {
                entry.counts[i] += 1;
            }
        }
        entry.sum += seconds;
        entry.count += 1;
    }

    /// A counter's current value (tests and the dashboard).
    pub fn value(&self, name: &'static str, pairs: &[(&'static str, &str)]) -> f64 {
        let c = self.counters.lock().unwrap_or_else(|e| e.into_inner());
        c.get(&(name, labels(pairs))).copied().unwrap_or(0.0)
    }

    /// The Prometheus text exposition format.
    pub fn render(&self) -> String {
        let counters = self
            .counters
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let histograms = self
            .histograms
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let mut out = String::new();
        for (name, family) in FAMILIES {
            let _ = writeln!(out, "# HELP {name} {}", family.help);
            let _ = writeln!(out, "# TYPE {name} {}", family.kind);
            if family.kind == "histogram" {
                for ((n, l), h) in histograms.iter().filter(|((n, _), _)| n == name) {
                    for (i, b) in BUCKETS.iter().enumerate() {
                        let _ = writeln!(
                            out,
                            "{n}_bucket{} {}",
                            fmt_labels(l, Some(&b.to_string())),
                            h.counts[i]
                        );
                    }
                    let _ = writeln!(out, "{n}_bucket{} {}", fmt_labels(l, Some("+Inf")), h.count);
                    let _ = writeln!(out, "{n}_sum{} {}", fmt_labels(l, None), h.sum);
                    let _ = writeln!(out, "{n}_count{} {}", fmt_labels(l, None), h.count);
                }
            } else {
                for ((n, l), v) in counters.iter().filter(|((n, _), _)| n == name) {
                    let _ = writeln!(out, "{n}{} {v}", fmt_labels(l, None));
                }
            }
        }
        out
    }
}

fn fmt_labels(l: &Labels, le: Option<&str>) -> String {
    if l.is_empty() && le.is_none() {
        return String::new();
    }
    let mut parts: Vec<String> = l
        .iter()
        .map(|(k, v)| {
            format!(
                "{k}=\"{}\"",
                v.replace('\\', "\\\\")
                    .replace('"', "\\\"")
                    .replace('\n', "\\n")
            )
        })
        .collect();
    if let Some(le) = le {
        parts.push(format!("le=\"{le}\""));
    }
    format!("{{{}}}", parts.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counters_and_histograms() {
        let m = Metrics::new();
        m.inc(
            "mpesa_gateway_callbacks_received_total",
            &[("kind", "stk"), ("outcome", "applied")],
        );
        m.inc(
            "mpesa_gateway_callbacks_received_total",
            &[("kind", "stk"), ("outcome", "applied")],
        );
        m.observe(
            "mpesa_gateway_payment_time_to_final_seconds",
            &[("status", "completed")],
            3.0,
        );
        let text = m.render();
        assert!(
            text.contains(
                "mpesa_gateway_callbacks_received_total{kind=\"stk\",outcome=\"applied\"} 2"
            ),
            "{text}"
        );
        assert!(text.contains("mpesa_gateway_payment_time_to_final_seconds_bucket{status=\"completed\",le=\"5\"} 1"), "{text}");
        assert!(text.contains("mpesa_gateway_payment_time_to_final_seconds_bucket{status=\"completed\",le=\"2.5\"} 0"), "{text}");
        assert!(
            text.contains(
                "mpesa_gateway_payment_time_to_final_seconds_count{status=\"completed\"} 1"
            )
        );
        assert!(text.contains("# TYPE mpesa_gateway_outbox_events gauge"));
    }

    #[test]
    fn label_values_are_escaped() {
        let m = Metrics::new();
        m.inc(
            "mpesa_gateway_http_requests_total",
            &[("route", "a\"b\\c\nd")],
        );
        assert!(m.render().contains(r#"route="a\"b\\c\nd""#));
    }
}
