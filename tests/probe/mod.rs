//! The `examples/link_probe` program the WebRTC NAT and aiortc tests run as their peers.

use std::path::PathBuf;

/// `examples/link_probe`, built beside this test. `cargo test` builds it with everything else;
/// `cargo test --test NAME` does not, so a missing or stale probe (older than the library or
/// its source) stops the test with what to run, rather than testing old code.
pub fn probe_binary() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let profile_dir = exe.parent().unwrap().parent().unwrap();
    let probe = profile_dir.join("examples").join("link_probe");
    let modified = |p: &std::path::Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    // The newest source the probe is built from: the example and the library's `src/`.
    let mut newest = modified(&root.join("examples/link_probe.rs"));
    let mut dirs = vec![root.join("src")];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                dirs.push(path);
            } else {
                newest = newest.max(modified(&path));
            }
        }
    }
    let built = modified(&probe);
    assert!(
        built.is_some() && built >= newest,
        "{} is missing or older than its sources: run `cargo build --example link_probe` \
         (with the same profile) first, or the whole `cargo test`",
        probe.display()
    );
    probe
}
