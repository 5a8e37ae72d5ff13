//! SSP-SAM benchmarks: placeholder replaced below.
fn main() {}
