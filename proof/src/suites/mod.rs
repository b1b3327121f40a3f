pub mod crash;
pub mod duplicates;
pub mod faults;
pub mod soak;
