//! Where the session's publications go: the MQTT client.

use crate::transport::client::{Client, ClientCallError};
use crate::transport::connection;

/// Why a publication was not handed to the client.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// There is no MQTT connection.
    #[error("federation has no MQTT connection: start federation again")]
    NotConnected,
    /// The client refused it (full queue, too large, ...).
    #[error(transparent)]
    Client(#[from] ClientCallError),
}

/// Takes a publication and returns at once (the client queues it).
pub trait Publisher: Send + Sync {
    /// Queues one message.
    fn publish(
        &self,
        topic: &str,
        payload: Vec<u8>,
        qos: u8,
        retain: bool,
    ) -> Result<(), PublishError>;
    /// Whether the connection is up right now.
    fn connected(&self) -> bool;
    /// Subscribes the session to `topic` (a share's own topic): its messages come to the
    /// worker. Idempotent; the client keeps it across reconnections.
    fn follow(&self, topic: &str) {
        let _ = topic;
    }
}

impl Publisher for Client {
    fn publish(
        &self,
        topic: &str,
        payload: Vec<u8>,
        qos: u8,
        retain: bool,
    ) -> Result<(), PublishError> {
        Ok(Client::publish(
            self,
            topic,
            payload,
            i64::from(qos),
            retain,
        )?)
    }

    fn connected(&self) -> bool {
        self.is_connected()
    }

    fn follow(&self, topic: &str) {
        // A topic the client refuses is refused again, and said, by the publication itself.
        let _ = self.subscribe_session(topic, 1);
    }
}

impl<P: Publisher + ?Sized> Publisher for std::sync::Arc<P> {
    fn publish(
        &self,
        topic: &str,
        payload: Vec<u8>,
        qos: u8,
        retain: bool,
    ) -> Result<(), PublishError> {
        (**self).publish(topic, payload, qos, retain)
    }

    fn connected(&self) -> bool {
        (**self).connected()
    }

    fn follow(&self, topic: &str) {
        (**self).follow(topic)
    }
}

/// The process' MQTT connection ([`crate::transport::connection`]), which Emacs opens,
/// reconnects and closes; the session publishes on whichever connection is current.
pub struct GlobalConnection;

impl Publisher for GlobalConnection {
    fn publish(
        &self,
        topic: &str,
        payload: Vec<u8>,
        qos: u8,
        retain: bool,
    ) -> Result<(), PublishError> {
        match connection::with_client(|c| c.publish(topic, payload, i64::from(qos), retain)) {
            None => Err(PublishError::NotConnected),
            Some(r) => Ok(r?),
        }
    }

    fn connected(&self) -> bool {
        connection::with_client(|c| c.is_connected()).unwrap_or(false)
    }

    fn follow(&self, topic: &str) {
        // Without a connection the publication fails and says so; with one, a topic the
        // client refuses is refused again, and said, by the publication itself.
        let _ = connection::with_client(|c| c.subscribe_session(topic, 1));
    }
}
