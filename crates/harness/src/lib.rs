//! Driving the real `mpesa-gateway` binary from outside, as an operator (or a crash) would:
//! processes that can be killed with SIGKILL and restarted, fresh databases on the local servers,
//! payments seeded in bulk, and STK callbacks shaped as Safaricom sends them.

pub mod callbacks;
pub mod database;
pub mod galera;
pub mod process;
