//! The `examples/link_probe` program the WebRTC NAT and aiortc tests run as their peers.

use std::path::PathBuf;

/// `examples/link_probe`, built beside this test. `cargo test` builds it with everything else;
/// `cargo test --test NAME` does not, so a missing or stale probe (older than its source or the
/// library it links) stops the test with what to run, rather than testing old code.
///
/// The library is judged by its build (`deps/libmeta_log_federation_module*.rlib`), not by
/// `src/`: a change to a file only tests compile (`src/sync/tests/`) rebuilds neither the
/// library nor the probe, and is no reason to stop.
pub fn probe_binary() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let profile_dir = exe.parent().unwrap().parent().unwrap();
    let probe = profile_dir.join("examples").join("link_probe");
    let modified = |p: &std::path::Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut newest = modified(&root.join("examples/link_probe.rs"));
    let mut libraries = 0;
    for entry in std::fs::read_dir(profile_dir.join("deps"))
        .into_iter()
        .flatten()
        .flatten()
    {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        // `libmeta_log_federation_module.rlib` (a cdylib too, so no hash in its name), or
        // with a hash for other builds of it.
        if name.starts_with("libmeta_log_federation_module") && name.ends_with(".rlib") {
            newest = newest.max(modified(&entry.path()));
            libraries += 1;
        }
    }
    assert!(
        libraries > 0,
        "no build of the library beside {}: run the whole `cargo test`",
        probe.display()
    );
    let built = modified(&probe);
    assert!(
        built.is_some() && built >= newest,
        "{} is missing or older than its sources: run `cargo build --example link_probe` \
         (with the same profile) first, or the whole `cargo test`",
        probe.display()
    );
    probe
}
