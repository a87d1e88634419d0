//! meta-log-federation's engine, loaded by Emacs as `meta-log-federation-module`.
//!
//! Everything but [`elisp`] is plain Rust that knows nothing of Emacs and is tested by
//! `cargo test` alone. [`elisp`] registers the Elisp functions and converts values.

pub mod canvasl;
pub mod elisp;
pub mod events;
pub mod federation;
pub mod fsutil;
pub mod identity;
pub mod links;
pub mod merge;
pub mod runtime;
pub mod session;
pub mod sync;
pub mod transport;

/// The module's version, checked by the Elisp side at load time.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");
