//! Link frames (docs/PROTOCOL.md §16.3): one JSON object each; over TCP, a 4-byte big-endian
//! length before each.

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Largest frame, in bytes (a federation event is at most 65,536 bytes; a frame adds its topic
/// and JSON escaping).
pub const MAX_FRAME_BYTES: usize = 262_144;

/// One frame.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "kebab-case")]
pub enum Frame {
    /// The signed hello (first frame from each side).
    Hello {
        /// The signed hello event, as a JSON object.
        event: serde_json::Value,
    },
    /// One federation event.
    Event {
        /// The MQTT topic it would have been published to.
        topic: String,
        /// The event's exact JSON text.
        payload: String,
    },
    /// Asks for a pong with the same nonce.
    Ping {
        /// Any integer.
        nonce: u64,
    },
    /// Answers a ping.
    Pong {
        /// The ping's nonce.
        nonce: u64,
    },
    /// The sender closes the link.
    Close {
        /// Why.
        #[serde(default)]
        reason: String,
    },
}

impl Frame {
    /// The frame's bytes.
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Parses one frame; the error says why it is not one.
    pub fn decode(bytes: &[u8]) -> Result<Frame, String> {
        if bytes.len() > MAX_FRAME_BYTES {
            return Err(format!(
                "frame of {} bytes exceeds {MAX_FRAME_BYTES}",
                bytes.len()
            ));
        }
        serde_json::from_slice(bytes).map_err(|e| format!("not a link frame: {e}"))
    }
}

/// Reads one length-prefixed frame's bytes; `Ok(None)` at a clean end of stream.
pub async fn read_frame<R: AsyncRead + Unpin>(r: &mut R) -> std::io::Result<Option<Vec<u8>>> {
    let mut len = [0u8; 4];
    match r.read_exact(&mut len).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let n = u32::from_be_bytes(len) as usize;
    if n > MAX_FRAME_BYTES {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("frame of {n} bytes announced; the limit is {MAX_FRAME_BYTES}"),
        ));
    }
    let mut buf = vec![0u8; n];
    r.read_exact(&mut buf).await?;
    Ok(Some(buf))
}

/// Writes one length-prefixed frame.
pub async fn write_frame<W: AsyncWrite + Unpin>(w: &mut W, bytes: &[u8]) -> std::io::Result<()> {
    if bytes.len() > MAX_FRAME_BYTES {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!(
                "frame of {} bytes; the limit is {MAX_FRAME_BYTES}",
                bytes.len()
            ),
        ));
    }
    w.write_all(&(bytes.len() as u32).to_be_bytes()).await?;
    w.write_all(bytes).await?;
    w.flush().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_have_the_documented_json() {
        let f = Frame::Event {
            topic: "canvasl/sync".into(),
            payload: "{}".into(),
        };
        assert_eq!(
            String::from_utf8(f.encode()).unwrap(),
            r#"{"type":"event","topic":"canvasl/sync","payload":"{}"}"#
        );
        assert_eq!(Frame::decode(&f.encode()).unwrap(), f);
        assert_eq!(
            Frame::decode(br#"{"type":"ping","nonce":7}"#).unwrap(),
            Frame::Ping { nonce: 7 }
        );
        assert!(Frame::decode(br#"{"type":"launch"}"#).is_err());
        assert!(Frame::decode(&vec![b' '; MAX_FRAME_BYTES + 1]).is_err());
    }

    #[tokio::test]
    async fn length_prefixed_frames_round_trip_and_oversized_ones_are_refused() {
        let (mut a, mut b) = tokio::io::duplex(1 << 20);
        write_frame(&mut a, b"one").await.unwrap();
        write_frame(&mut a, b"").await.unwrap();
        assert_eq!(read_frame(&mut b).await.unwrap().unwrap(), b"one");
        assert_eq!(read_frame(&mut b).await.unwrap().unwrap(), b"");
        a.write_all(&((MAX_FRAME_BYTES as u32) + 1).to_be_bytes())
            .await
            .unwrap();
        assert!(read_frame(&mut b).await.is_err());
        drop(a);
        let (a2, mut b2) = tokio::io::duplex(64);
        drop(a2);
        assert!(read_frame(&mut b2).await.unwrap().is_none());
    }
}
