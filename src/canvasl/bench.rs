//! A small, dependency-free benchmark of parsing and writing (run it in release, e.g.
//! `cargo run --release --example canvasl_bench`).

use std::fmt::Write as _;
use std::hint::black_box;
use std::time::Instant;

use super::generate::generate_canvas;
use super::parse::parse;
use super::write::write;

/// The largest corpus file, read at run time (the report says so if it is missing).
const LARGEST_CORPUS_FILE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/data/corpus/automaton__automaton.jsonl"
);

/// Each timed run repeats the operation until it has processed at least this many bytes, so that
/// small inputs are not timed at the clock's resolution.
const MIN_BYTES_PER_RUN: usize = if cfg!(test) { 100_000 } else { 16_000_000 };

/// Parse and write throughput (MB = 10^6 bytes, median of 5 runs) on `generate_canvas(100_000, 42)`
/// and on the largest corpus file. Also shows parse + building every entry's JSON object (parsing
/// itself only validates entries and extracts ids) and writing with every entry re-serialized.
pub fn bench_report() -> String {
    let mut out = String::new();
    if cfg!(debug_assertions) {
        out.push_str("note: debug build; run in release for meaningful figures\n");
    }
    let generated = generate_canvas(100_000, 42);
    measure(
        &mut out,
        "generate_canvas(100_000, 42)",
        generated.as_bytes(),
    );
    match std::fs::read(LARGEST_CORPUS_FILE) {
        Ok(bytes) => measure(&mut out, "automaton__automaton.jsonl", &bytes),
        Err(e) => {
            let _ = writeln!(out, "{LARGEST_CORPUS_FILE}: skipped ({e})");
        }
    }
    out
}

/// Median seconds per operation over 5 runs.
fn median_secs(len: usize, mut op: impl FnMut()) -> f64 {
    let reps = MIN_BYTES_PER_RUN.div_ceil(len.max(1)).max(1);
    let mut runs: Vec<f64> = (0..5)
        .map(|_| {
            let start = Instant::now();
            for _ in 0..reps {
                op();
            }
            start.elapsed().as_secs_f64() / reps as f64
        })
        .collect();
    runs.sort_by(f64::total_cmp);
    runs[2]
}

fn measure(out: &mut String, name: &str, bytes: &[u8]) {
    let doc = match parse(bytes) {
        Ok(doc) => doc,
        Err(e) => {
            let _ = writeln!(out, "{name}: parse error: {e}");
            return;
        }
    };
    let identical = write(&doc) == bytes;
    let mb = bytes.len() as f64 / 1e6;
    let _ = writeln!(
        out,
        "{name}: {} bytes, {} lines, {} entries, round trip {}",
        bytes.len(),
        doc.lines().len(),
        doc.entries().count(),
        if identical {
            "byte-identical"
        } else {
            "DIFFERENT"
        }
    );

    let parse_s = median_secs(bytes.len(), || {
        black_box(parse(black_box(bytes)).is_ok());
    });
    let parse_fields_s = median_secs(bytes.len(), || {
        if let Ok(d) = parse(black_box(bytes)) {
            black_box(d.entries().map(|e| e.fields().len()).sum::<usize>());
        }
    });
    let write_s = median_secs(bytes.len(), || {
        black_box(write(black_box(&doc)).len());
    });
    let mut edited = doc.clone();
    let keys: Vec<_> = edited.entries().map(|e| e.key().clone()).collect();
    for k in &keys {
        let _ = edited.set_entry_field(k, "benchTouched", serde_json::Value::Bool(true));
    }
    let edited_len = write(&edited).len();
    let write_all_s = median_secs(edited_len, || {
        // Re-serialize every entry (what a full rewrite would cost), then write.
        let mut d = doc.clone();
        for k in &keys {
            let _ = d.set_entry_field(k, "benchTouched", serde_json::Value::Bool(true));
        }
        black_box(write(&d).len());
    });
    for (what, secs, size) in [
        ("parse", parse_s, mb),
        ("parse + build all objects", parse_fields_s, mb),
        ("write (unchanged)", write_s, mb),
        (
            "edit every entry + write",
            write_all_s,
            edited_len as f64 / 1e6,
        ),
    ] {
        let _ = writeln!(
            out,
            "  {what:<28} {:>9.2} ms  {:>8.1} MB/s",
            secs * 1e3,
            size / secs
        );
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn report_mentions_both_inputs() {
        // Keep this cheap in debug: only check the wiring, on a tiny input.
        let mut out = String::new();
        let text = super::generate_canvas(50, 3);
        super::measure(&mut out, "tiny", text.as_bytes());
        assert!(out.contains("byte-identical"), "{out}");
        assert!(out.contains("MB/s"), "{out}");
    }
}
