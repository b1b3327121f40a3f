pub mod crash;
pub mod duplicates;
pub mod faults;
pub mod galera;
pub mod soak;
pub mod wal_order;
