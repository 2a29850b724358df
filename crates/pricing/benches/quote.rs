//! Quote throughput (placeholder, replaced below).
fn main() {}
