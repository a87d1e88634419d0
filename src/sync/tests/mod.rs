//! Tests of the sync engine, one file per subject; `util` holds the shared helpers (engines in
//! temporary directories, a simulated bus). Each file reaches the engine's items through
//! `super::` (the glob import below), as it did as a sibling of the engine's modules.

#[allow(unused_imports)]
use super::*;

mod blackboard;
mod bus;
mod damage;
mod engine;
mod federation;
mod hostile;
mod large;
mod line_edits;
mod origin;
mod sealed;
mod statelog;
mod units;
mod util;
mod worker_saves;
