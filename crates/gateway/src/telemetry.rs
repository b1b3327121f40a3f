//! Logs: `tracing` to stderr, human-readable or JSON (`LOG_FORMAT=json`), filtered by `RUST_LOG`.
//!
//! A log line that cannot be written is dropped. tracing-subscriber's default is to report the
//! failure with `eprintln!`, which panics when stderr itself cannot be written: with stderr on a
//! full disk every log line then panicked the task that logged it, and requests got no answer.

use tracing_subscriber::EnvFilter;

use crate::config::LogFormat;

pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        EnvFilter::new(crate::config::default_of("RUST_LOG").unwrap_or("info"))
    });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .log_internal_errors(false);
    let _ = match format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Text => builder.try_init(),
    };
}

/// As [`init`], with an explicit filter (tests).
pub fn init_filter(format: LogFormat, filter: &str) {
    let builder = tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::new(filter))
        .with_writer(std::io::stderr)
        .log_internal_errors(false);
    let _ = match format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Text => builder.try_init(),
    };
}
