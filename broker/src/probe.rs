//! Readiness probe: an MQTT 3.1.1 CONNECT answered by a CONNACK proves that a broker serves
//! the port (a bare TCP connect would also succeed against an unrelated listener).

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

static PROBES: AtomicU32 = AtomicU32::new(0);

/// Connects to ADDR with a clean session, waits for an accepting CONNACK, disconnects.
pub fn mqtt_connect(addr: SocketAddr, timeout: Duration) -> io::Result<()> {
    let client_id = format!(
        "meta-log-broker-probe-{}-{}",
        std::process::id(),
        PROBES.fetch_add(1, Ordering::Relaxed)
    );
    let mut stream = TcpStream::connect_timeout(&addr, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    stream.set_nodelay(true)?;
    stream.write_all(&connect_packet(&client_id, 10))?;
    let mut connack = [0u8; 4];
    stream.read_exact(&mut connack)?;
    match connack {
        [0x20, 0x02, _, 0x00] => {
            // DISCONNECT: a clean goodbye, so the broker keeps no session and fires no will.
            let _ = stream.write_all(&[0xE0, 0x00]);
            Ok(())
        }
        [0x20, 0x02, _, code] => Err(io::Error::other(format!(
            "broker refused the probe (CONNACK return code {code})"
        ))),
        other => Err(io::Error::other(format!(
            "not an MQTT 3.1.1 CONNACK: {other:02x?}"
        ))),
    }
}

/// An MQTT 3.1.1 CONNECT packet with a clean session, no will, no credentials.
fn connect_packet(client_id: &str, keep_alive_secs: u16) -> Vec<u8> {
    let id = client_id.as_bytes();
    let mut body = Vec::with_capacity(12 + id.len());
    body.extend_from_slice(&[0x00, 0x04, b'M', b'Q', b'T', b'T', 0x04, 0x02]);
    body.extend_from_slice(&keep_alive_secs.to_be_bytes());
    body.extend_from_slice(&(id.len() as u16).to_be_bytes());
    body.extend_from_slice(id);
    let mut packet = vec![0x10];
    let mut len = body.len();
    loop {
        let mut byte = (len % 128) as u8;
        len /= 128;
        if len > 0 {
            byte |= 0x80;
        }
        packet.push(byte);
        if len == 0 {
            break;
        }
    }
    packet.extend_from_slice(&body);
    packet
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connect_packet_layout() {
        let p = connect_packet("ab", 10);
        assert_eq!(
            p,
            [0x10, 14, 0, 4, b'M', b'Q', b'T', b'T', 4, 2, 0, 10, 0, 2, b'a', b'b']
        );
    }

    #[test]
    fn refuses_a_listener_that_is_not_a_broker() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            let _ = s.write_all(b"HTTP/1.0 400 Bad Request\r\n\r\n");
        });
        assert!(mqtt_connect(addr, Duration::from_secs(2)).is_err());
        server.join().unwrap();
    }
}
