//! Counting the broker's clients for `--idle-exit`.
//!
//! rumqttd exposes no connection count (its meters are sent only after publishes, and reset),
//! so the established TCP connections whose local port is the broker's are counted from
//! /proc/net/tcp and /proc/net/tcp6 (this process's network namespace, Linux only).

use std::fs;
use std::io;

const TABLES: [&str; 2] = ["/proc/net/tcp", "/proc/net/tcp6"];

/// TCP state code of ESTABLISHED in the kernel's tables.
const ESTABLISHED: &str = "01";

pub struct ConnectionCounter {
    port: u16,
}

impl ConnectionCounter {
    /// Fails when the kernel's tables cannot be read, so idle exit is known not to work.
    pub fn new(port: u16) -> io::Result<Self> {
        fs::read_to_string(TABLES[0])?;
        Ok(Self { port })
    }

    /// Number of established connections to the broker's port right now.
    pub fn established(&mut self) -> io::Result<usize> {
        let mut total = 0;
        for (i, table) in TABLES.iter().enumerate() {
            match fs::read_to_string(table) {
                Ok(text) => total += count_established(&text, self.port),
                // A kernel without IPv6 has no tcp6 table.
                Err(e) if i > 0 && e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        Ok(total)
    }
}

/// Counts the rows of a /proc/net/tcp-style TABLE in state ESTABLISHED with local PORT.
fn count_established(table: &str, port: u16) -> usize {
    table
        .lines()
        .skip(1)
        .filter(|line| {
            let mut fields = line.split_whitespace();
            let local = fields.nth(1);
            let state = fields.nth(1);
            let local_port = local
                .and_then(|l| l.rsplit_once(':'))
                .and_then(|(_, p)| u16::from_str_radix(p, 16).ok());
            local_port == Some(port) && state == Some(ESTABLISHED)
        })
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "\
  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0100007F:075B 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1 1 0000000000000000 100 0 0 10 0
   1: 0100007F:075B 0100007F:D2F0 01 00000000:00000000 00:00000000 00000000     0        0 2 1 0000000000000000 20 4 30 10 -1
   2: 0100007F:D2F0 0100007F:075B 01 00000000:00000000 00:00000000 00000000     0        0 3 1 0000000000000000 20 4 30 10 -1
   3: 0100007F:075B 0100007F:D2F2 06 00000000:00000000 03:00000000 00000000     0        0 0 3 0000000000000000
";

    #[test]
    fn counts_only_established_rows_on_the_local_port() {
        // 0x075B = 1883: the listening row (0A), our side of one client (01), the client's
        // own side (local port 0xD2F0, not ours) and a TIME_WAIT row (06).
        assert_eq!(count_established(SAMPLE, 1883), 1);
        assert_eq!(count_established(SAMPLE, 0xD2F0), 1);
        assert_eq!(count_established(SAMPLE, 1884), 0);
    }

    #[test]
    fn sees_a_real_connection() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let mut counter = ConnectionCounter::new(port).unwrap();
        assert_eq!(counter.established().unwrap(), 0);
        let _client = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        let (_server_side, _) = listener.accept().unwrap();
        assert_eq!(counter.established().unwrap(), 1);
    }
}
