//! Deterministic synthetic canvases for tests and benchmarks.

use std::fmt::Write as _;

/// A tiny xorshift64* generator (deterministic, not for cryptography).
#[derive(Clone, Debug)]
pub struct XorShift(u64);

impl XorShift {
    /// A generator for `seed` (any value, 0 included).
    pub fn new(seed: u64) -> Self {
        // Mix the seed so that nearby seeds give unrelated streams; never zero.
        XorShift((seed ^ 0x9E37_79B9_7F4A_7C15).wrapping_mul(0xBF58_476D_1CE4_E5B9) | 1)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A number in `0..n` (0 if `n` is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next_u64() % n
        }
    }

    /// True with probability `per_mille / 1000`.
    pub fn chance(&mut self, per_mille: u64) -> bool {
        self.below(1000) < per_mille
    }

    /// A random element of a non-empty slice (`None` for an empty one).
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> Option<&'a T> {
        items.get(self.below(items.len() as u64) as usize)
    }
}

const WORDS: &[&str] = &[
    "automaton",
    "canvas",
    "node",
    "edge",
    "peer",
    "sync",
    "identity",
    "topology",
    "sheaf",
    "homology",
    "centroid",
    "kernel",
    "seed",
    "dimension",
    "federation",
    "blackboard",
    "merge",
    "lattice",
    "vertex",
    "proof",
    "church",
    "encoding",
    "lambda",
    "pair",
    "successor",
    "shape",
    "Überblick",
    "naïve",
    "λ-calcul",
    "→",
    "日本語",
    "\\\"quoted\\\"",
    "line\\nbreak",
    "0D",
    "7D",
];
const COLORS: &[&str] = &["1", "2", "3", "4", "5", "6", "#ff8800"];
const SIDES: &[&str] = &["top", "right", "bottom", "left"];
const TYPES: &[&str] = &["text", "text", "text", "file", "group", "link"];

/// A realistic canvas with `n_entries` JSON lines, the same for the same `seed`: one
/// `@version 1.0` directive and a blank line, then about 85% nodes (`id`, `type`, `x`, `y`,
/// `width`, `height`, `color`, `text`) and 15% edges (`id`, `type`, `fromNode`, `toNode`,
/// `fromSide`, `toSide`, `color`, `label`), about 1% of them repeating an earlier id. Lines
/// average about 170 bytes; some text is non-ASCII or contains JSON escapes.
pub fn generate_canvas(n_entries: usize, seed: u64) -> String {
    let mut rng = XorShift::new(seed);
    let mut out = String::with_capacity(n_entries * 176 + 16);
    out.push_str("@version 1.0\n\n");
    let mut nodes: Vec<u32> = Vec::new();
    let mut issued: Vec<(&str, u32)> = Vec::with_capacity(n_entries);
    for i in 0..n_entries {
        let is_edge = nodes.len() >= 2 && rng.chance(150);
        let mut prefix = if is_edge { "edge" } else { "node" };
        let mut num = i as u32;
        if rng.chance(10) {
            // Repeat an earlier id (whatever kind of entry had it).
            if let Some(&(p, n)) = rng.pick(&issued) {
                prefix = p;
                num = n;
            }
        }
        if num == i as u32 {
            issued.push((prefix, num));
        }
        let _ = write!(out, "{{\"id\":\"{prefix}-{num:08}\"");
        if is_edge {
            let from = rng.pick(&nodes).copied().unwrap_or(0);
            let to = rng.pick(&nodes).copied().unwrap_or(0);
            let from_side = rng.pick(SIDES).copied().unwrap_or("top");
            let to_side = rng.pick(SIDES).copied().unwrap_or("top");
            let color = rng.pick(COLORS).copied().unwrap_or("1");
            let _ = write!(
                out,
                ",\"type\":\"edge\",\"fromNode\":\"node-{from:08}\",\"toNode\":\"node-{to:08}\",\"fromSide\":\"{from_side}\",\"toSide\":\"{to_side}\",\"color\":\"{color}\",\"label\":\""
            );
            let n = 2 + rng.below(3) as usize;
            push_words(&mut out, &mut rng, n);
            out.push_str("\"}\n");
        } else {
            if num == i as u32 {
                nodes.push(num);
            }
            let ty = rng.pick(TYPES).copied().unwrap_or("text");
            let x = rng.below(400_000) as f64 / 8.0 - 25_000.0;
            let y = rng.below(400_000) as f64 / 8.0 - 25_000.0;
            let w = 120 + 20 * rng.below(20);
            let h = 60 + 20 * rng.below(12);
            let color = rng.pick(COLORS).copied().unwrap_or("1");
            let _ = write!(
                out,
                ",\"type\":\"{ty}\",\"x\":{x},\"y\":{y},\"width\":{w},\"height\":{h},\"color\":\"{color}\",\"text\":\""
            );
            let n = 5 + rng.below(8) as usize;
            push_words(&mut out, &mut rng, n);
            out.push_str("\"}\n");
        }
    }
    out
}

fn push_words(out: &mut String, rng: &mut XorShift, n: usize) {
    for k in 0..n {
        if k > 0 {
            out.push(' ');
        }
        out.push_str(rng.pick(WORDS).copied().unwrap_or("x"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::canvasl::parse::{parse_str, WarningKind};
    use crate::canvasl::write::write;

    #[test]
    fn deterministic_per_seed() {
        assert_eq!(generate_canvas(300, 7), generate_canvas(300, 7));
        assert_ne!(generate_canvas(300, 7), generate_canvas(300, 8));
    }

    #[test]
    fn shape_of_generated_canvas() {
        let text = generate_canvas(5000, 1);
        let doc = parse_str(&text);
        assert_eq!(write(&doc), text.as_bytes());
        assert_eq!(doc.entries().count(), 5000);
        assert_eq!(doc.directives().count(), 1);
        let dups = doc
            .warnings()
            .iter()
            .filter(|w| w.kind == WarningKind::DuplicateId)
            .count();
        assert_eq!(doc.warnings().len(), dups);
        assert!((20..=80).contains(&dups), "{dups} duplicates");
        let edges = doc
            .entries()
            .filter(|e| e.edge_endpoints().is_some())
            .count();
        assert!((500..=1000).contains(&edges), "{edges} edges");
        for e in doc.entries().take(200) {
            assert_eq!(e.fields().len(), 8);
        }
        let avg = text.len() / 5000;
        assert!((140..=200).contains(&avg), "average line {avg} bytes");
    }

    #[test]
    fn xorshift_ranges() {
        let mut r = XorShift::new(0);
        for _ in 0..1000 {
            assert!(r.below(7) < 7);
        }
        assert_eq!(r.below(0), 0);
        assert!(r.pick::<u8>(&[]).is_none());
    }
}
