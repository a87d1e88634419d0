//! MQTT transport: broker URLs, topics, the client with its own queue and reconnects, and the
//! process-wide connection that the Elisp functions use.

pub mod client;
pub mod connection;
pub mod options;
#[cfg(feature = "tls")]
pub mod tls;
pub mod topic;
pub mod url;
