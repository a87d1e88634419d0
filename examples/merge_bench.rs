//! `cargo run --release --example merge_bench`: prints the merge layer's figures.

use meta_log_federation_module::merge::bench::{bench_report, CountingAlloc};

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

fn main() {
    print!("{}", bench_report());
}
