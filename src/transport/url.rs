//! Broker URLs: `mqtt://[user[:password]@]host[:port]` and `mqtts://…`.
//!
//! A hand-written parser rather than the `url` crate: that crate pulls in the ICU tables for
//! international domain names, roughly doubling the module's cold build for one URL shape, and
//! its generic error messages would not tell an Emacs user what to fix.

use std::fmt;

/// Default port of plain MQTT.
pub const DEFAULT_PORT: u16 = 1883;
/// Default port of MQTT over TLS.
pub const DEFAULT_TLS_PORT: u16 = 8883;

/// A parsed broker address.
#[derive(Clone, PartialEq, Eq)]
pub struct BrokerUrl {
    pub tls: bool,
    pub host: String,
    pub port: u16,
    pub username: Option<String>,
    pub password: Option<String>,
}

impl fmt::Debug for BrokerUrl {
    // Never print the password: these values end up in logs and *Messages*.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BrokerUrl({})", self.redacted())
    }
}

impl BrokerUrl {
    /// The URL with any password replaced by `***`, safe to show to users.
    pub fn redacted(&self) -> String {
        let scheme = if self.tls { "mqtts" } else { "mqtt" };
        let user = match (&self.username, &self.password) {
            (Some(u), Some(_)) => format!("{u}:***@"),
            (Some(u), None) => format!("{u}@"),
            _ => String::new(),
        };
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        format!("{scheme}://{user}{host}:{}", self.port)
    }
}

/// Why a broker URL was refused; the message says what a correct one looks like.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0} (expected mqtt://[user[:password]@]host[:port] or mqtts://...)")]
pub struct UrlError(pub String);

fn err<T>(msg: impl Into<String>) -> Result<T, UrlError> {
    Err(UrlError(msg.into()))
}

/// Parses a broker URL.
pub fn parse(url: &str) -> Result<BrokerUrl, UrlError> {
    let url = url.trim();
    let (tls, rest) = if let Some(r) = url.strip_prefix("mqtt://") {
        (false, r)
    } else if let Some(r) = url.strip_prefix("mqtts://") {
        (true, r)
    } else if url.contains("://") {
        let scheme = url.split("://").next().unwrap_or_default();
        return err(format!(
            "unsupported scheme `{scheme}` in broker URL `{url}`"
        ));
    } else {
        return err(format!(
            "broker URL `{url}` has no mqtt:// or mqtts:// scheme"
        ));
    };
    // A trailing slash is harmless; a path is not something MQTT has.
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    if rest.contains('/') || rest.contains('?') || rest.contains('#') {
        return err(format!(
            "broker URL `{url}` has a path or query; MQTT URLs have none"
        ));
    }
    let (userinfo, hostport) = match rest.rfind('@') {
        Some(i) => (Some(&rest[..i]), &rest[i + 1..]),
        None => (None, rest),
    };
    let (username, password) = match userinfo {
        None => (None, None),
        Some(info) => {
            let (u, p) = match info.find(':') {
                Some(i) => (&info[..i], Some(&info[i + 1..])),
                None => (info, None),
            };
            if u.is_empty() {
                return err(format!(
                    "broker URL `{url}` has an empty user name before `@`"
                ));
            }
            (Some(percent_decode(u)?), p.map(percent_decode).transpose()?)
        }
    };
    let (host, port) = split_host_port(hostport, url)?;
    let port = match port {
        None => {
            if tls {
                DEFAULT_TLS_PORT
            } else {
                DEFAULT_PORT
            }
        }
        Some(p) => match p.parse::<u16>() {
            Ok(0) | Err(_) => return err(format!("bad port `{p}` in broker URL `{url}`")),
            Ok(n) => n,
        },
    };
    if host.is_empty() {
        return err(format!("broker URL `{url}` has no host"));
    }
    if host.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return err(format!(
            "broker URL `{url}` has spaces or control characters in its host"
        ));
    }
    Ok(BrokerUrl {
        tls,
        host: host.to_string(),
        port,
        username,
        password,
    })
}

fn split_host_port<'a>(hp: &'a str, url: &str) -> Result<(&'a str, Option<&'a str>), UrlError> {
    if let Some(rest) = hp.strip_prefix('[') {
        // IPv6 literal: [::1]:1883
        let Some(end) = rest.find(']') else {
            return err(format!("unclosed `[` in broker URL `{url}`"));
        };
        let host = &rest[..end];
        let after = &rest[end + 1..];
        if after.is_empty() {
            return Ok((host, None));
        }
        match after.strip_prefix(':') {
            Some(p) => Ok((host, Some(p))),
            None => err(format!(
                "unexpected `{after}` after `]` in broker URL `{url}`"
            )),
        }
    } else {
        match hp.rfind(':') {
            Some(i) => Ok((&hp[..i], Some(&hp[i + 1..]))),
            None => Ok((hp, None)),
        }
    }
}

fn percent_decode(s: &str) -> Result<String, UrlError> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = bytes
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok());
            match hex {
                Some(b) => out.push(b),
                None => return err(format!("bad percent escape in `{s}`")),
            }
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| UrlError(format!("`{s}` does not decode to UTF-8")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_host_gets_default_port() {
        let u = parse("mqtt://localhost").unwrap();
        assert_eq!((u.tls, u.host.as_str(), u.port), (false, "localhost", 1883));
        assert_eq!(u.username, None);
    }

    #[test]
    fn tls_default_port_and_credentials() {
        let u = parse("mqtts://alice:s%40cret@broker.example:9000/").unwrap();
        assert!(u.tls);
        assert_eq!(u.port, 9000);
        assert_eq!(u.username.as_deref(), Some("alice"));
        assert_eq!(u.password.as_deref(), Some("s@cret"));
        assert_eq!(u.redacted(), "mqtts://alice:***@broker.example:9000");
        assert!(!format!("{u:?}").contains("cret"));
        assert_eq!(parse("mqtts://h").unwrap().port, 8883);
    }

    #[test]
    fn ipv6_literal() {
        let u = parse("mqtt://[::1]:1884").unwrap();
        assert_eq!((u.host.as_str(), u.port), ("::1", 1884));
        assert_eq!(u.redacted(), "mqtt://[::1]:1884");
    }

    #[test]
    fn malformed_urls_are_refused_with_a_reason() {
        for (bad, why) in [
            ("localhost:1883", "no mqtt://"),
            ("http://localhost", "unsupported scheme `http`"),
            ("mqtt://", "no host"),
            ("mqtt://:1883", "no host"),
            ("mqtt://host:0", "bad port"),
            ("mqtt://host:99999", "bad port"),
            ("mqtt://host:abc", "bad port"),
            ("mqtt://host/topic", "path"),
            ("mqtt://@host", "empty user"),
            ("mqtt://u:%zz@host", "percent"),
            ("mqtt://[::1", "unclosed"),
            ("mqtt://ho st", "spaces"),
        ] {
            let e = parse(bad).unwrap_err().to_string();
            assert!(e.contains(why), "{bad}: {e}");
            assert!(e.contains("expected mqtt://"), "{bad}: {e}");
        }
    }
}
