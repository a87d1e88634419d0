//! `cargo run --release --example bench_core`: the pure-Rust figures of `make bench`
//! (identity and CanvasL); the MQTT and Elisp figures come from `bin/bench`.
fn main() {
    print!(
        "{}",
        meta_log_federation_module::identity::bench::bench_report()
    );
    print!(
        "{}",
        meta_log_federation_module::canvasl::bench::bench_report()
    );
}
