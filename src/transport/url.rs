//! Broker URLs: `mqtt://[user[:password]@]host[:port]`, `mqtts://…` (TLS), and MQTT over
//! WebSockets, `ws://[user[:password]@]host[:port][/path]` and `wss://…` (TLS). This is the one
//! place their rules live: Elisp asks the module (`meta-log-federation--broker-url-parts`,
//! `-broker-url-redact`, `-broker-url-with-login`) instead of parsing URLs itself.
//!
//! A hand-written parser rather than the `url` crate: that crate pulls in the ICU tables for
//! international domain names, roughly doubling the module's cold build for one URL shape, and
//! its generic error messages would not tell an Emacs user what to fix.
//!
//! The rules: the scheme is one of the four above, in any case; a host is a DNS name (letters,
//! digits and `-` in labels of 1 to 63 characters, not starting or ending with `-`, at most
//! 253 characters), an IPv4 address or a bracketed IPv6 address; the port is 1 to 65535
//! (default 1883, 8883, 80, 443); a user name and password are percent-encoded (`@` as
//! `%40`) and may not hold control characters; `mqtt://` and `mqtts://` URLs have no path
//! (a trailing `/` is allowed), WebSocket URLs may have one (default `/`, sent as written in
//! the HTTP upgrade request); none has a query or fragment.

use std::fmt;
use std::net::Ipv6Addr;

/// Default port of plain MQTT.
pub const DEFAULT_PORT: u16 = 1883;
/// Default port of MQTT over TLS.
pub const DEFAULT_TLS_PORT: u16 = 8883;
/// Default port of MQTT over WebSockets (that of HTTP).
pub const DEFAULT_WS_PORT: u16 = 80;
/// Default port of MQTT over secure WebSockets (that of HTTPS).
pub const DEFAULT_WSS_PORT: u16 = 443;

/// What a correct URL looks like, appended to every refusal.
const EXPECTED: &str = "expected mqtt://[user[:password]@]host[:port], mqtts://..., \
                        ws://[user[:password]@]host[:port][/path] or wss://...";

/// A parsed broker address.
#[derive(Clone, PartialEq, Eq)]
pub struct BrokerUrl {
    /// TLS (`mqtts://`, `wss://`).
    pub tls: bool,
    /// MQTT over WebSockets (`ws://`, `wss://`).
    pub websocket: bool,
    pub host: String,
    pub port: u16,
    /// The HTTP path of a WebSocket URL (`/` when it has none); empty for `mqtt(s)://`.
    pub path: String,
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
    /// The scheme: `mqtt`, `mqtts`, `ws` or `wss`.
    pub fn scheme(&self) -> &'static str {
        match (self.websocket, self.tls) {
            (false, false) => "mqtt",
            (false, true) => "mqtts",
            (true, false) => "ws",
            (true, true) => "wss",
        }
    }

    fn host_port_path(&self) -> String {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        format!("{host}:{}{}", self.port, self.path)
    }

    fn build(&self, user: Option<&str>, password: Option<&str>) -> String {
        let userinfo = match (user, password) {
            (Some(u), Some(p)) => format!("{}:{}@", percent_encode(u), percent_encode(p)),
            (Some(u), None) => format!("{}@", percent_encode(u)),
            _ => String::new(),
        };
        format!("{}://{userinfo}{}", self.scheme(), self.host_port_path())
    }

    /// The URL with any password replaced by `***`, safe to show to users.
    pub fn redacted(&self) -> String {
        let user = match (&self.username, &self.password) {
            (Some(u), Some(_)) => format!("{}:***@", percent_encode(u)),
            (Some(u), None) => format!("{}@", percent_encode(u)),
            _ => String::new(),
        };
        format!("{}://{user}{}", self.scheme(), self.host_port_path())
    }

    /// The URL without its password (user, host, port and path kept): what a link may hold.
    pub fn without_password(&self) -> String {
        self.build(self.username.as_deref(), None)
    }

    /// The URL with `user` and `password` as its login (both percent-encoded as needed).
    pub fn with_login(&self, user: &str, password: &str) -> String {
        self.build(Some(user), Some(password))
    }

    /// The address a WebSocket connection is opened to, `ws(s)://host:port/path`, without the
    /// login (sent in MQTT's CONNECT, not in the HTTP request).
    pub fn websocket_address(&self) -> String {
        let scheme = if self.tls { "wss" } else { "ws" };
        format!("{scheme}://{}", self.host_port_path())
    }
}

/// Why a broker URL was refused; the message says what a correct one looks like.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0} ({EXPECTED})")]
pub struct UrlError(pub String);

fn err<T>(msg: impl Into<String>) -> Result<T, UrlError> {
    Err(UrlError(msg.into()))
}

/// Splits `scheme://rest`, the scheme compared without regard to case; `None` when there is
/// no `://`.
fn split_scheme(url: &str) -> Option<(String, &str)> {
    let i = url.find("://")?;
    Some((url[..i].to_ascii_lowercase(), &url[i + 3..]))
}

/// Parses a broker URL.
pub fn parse(url: &str) -> Result<BrokerUrl, UrlError> {
    let url = url.trim();
    if let Some(c) = url.chars().find(|c| c.is_control()) {
        return err(format!(
            "broker URL {:?} contains a control character (U+{:04X})",
            redact_text(url),
            u32::from(c)
        ));
    }
    let Some((scheme, rest)) = split_scheme(url) else {
        return err(format!(
            "broker URL `{url}` has no scheme (mqtt://, mqtts://, ws:// or wss://)"
        ));
    };
    let (tls, websocket) = match scheme.as_str() {
        "mqtt" => (false, false),
        "mqtts" => (true, false),
        "ws" => (false, true),
        "wss" => (true, true),
        _ => {
            return err(format!(
                "unsupported scheme `{scheme}` in broker URL `{}`",
                redact_text(url)
            ))
        }
    };
    let shown = redact_text(url);
    if rest.contains('?') || rest.contains('#') {
        return err(format!(
            "broker URL `{shown}` has a query or fragment; broker URLs have none"
        ));
    }
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    };
    let path = if websocket {
        if path.is_empty() {
            "/".to_string()
        } else if path.chars().any(char::is_whitespace) {
            return err(format!("broker URL `{shown}` has spaces in its path"));
        } else {
            path.to_string()
        }
    } else if path.is_empty() || path == "/" {
        String::new()
    } else {
        return err(format!(
            "broker URL `{shown}` has a path; {scheme}:// URLs have none (only ws:// and \
             wss:// URLs have a path)"
        ));
    };
    let (userinfo, hostport) = match authority.rfind('@') {
        Some(i) => (Some(&authority[..i]), &authority[i + 1..]),
        None => (None, authority),
    };
    let (username, password) = match userinfo {
        None => (None, None),
        Some(info) => {
            if info.contains('@') {
                return err(format!(
                    "broker URL `{shown}` has more than one `@`; write an `@` in a user name \
                     or password as %40"
                ));
            }
            let (u, p) = match info.find(':') {
                Some(i) => (&info[..i], Some(&info[i + 1..])),
                None => (info, None),
            };
            if u.is_empty() {
                return err(format!(
                    "broker URL `{shown}` has an empty user name before `@`"
                ));
            }
            let user = percent_decode(u, "user name")?;
            let password = p.map(|p| percent_decode(p, "password")).transpose()?;
            (Some(user), password)
        }
    };
    let (host, port) = split_host_port(hostport, &shown)?;
    let port = match port {
        None => match (websocket, tls) {
            (false, false) => DEFAULT_PORT,
            (false, true) => DEFAULT_TLS_PORT,
            (true, false) => DEFAULT_WS_PORT,
            (true, true) => DEFAULT_WSS_PORT,
        },
        Some(p) => match p.parse::<u16>() {
            Ok(n) if n > 0 && p.bytes().all(|b| b.is_ascii_digit()) => n,
            _ => {
                return err(format!(
                    "bad port `{p}` in broker URL `{shown}`: give a number from 1 to 65535"
                ))
            }
        },
    };
    Ok(BrokerUrl {
        tls,
        websocket,
        host,
        port,
        path,
        username,
        password,
    })
}

/// Whether `host` is a DNS name or an IPv4 address as RFC 1123 allows them: labels of letters,
/// digits and `-`, 1 to 63 characters, not starting or ending with `-`; at most 253 in all.
fn is_host_name(host: &str) -> bool {
    host.len() <= 253
        && host.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

fn split_host_port<'a>(hp: &'a str, url: &str) -> Result<(String, Option<&'a str>), UrlError> {
    if let Some(rest) = hp.strip_prefix('[') {
        // IPv6 literal: [::1]:1883
        let Some(end) = rest.find(']') else {
            return err(format!("unclosed `[` in broker URL `{url}`"));
        };
        let host = &rest[..end];
        if host.parse::<Ipv6Addr>().is_err() {
            return err(format!(
                "`[{host}]` in broker URL `{url}` is not an IPv6 address"
            ));
        }
        let after = &rest[end + 1..];
        if after.is_empty() {
            return Ok((host.to_string(), None));
        }
        match after.strip_prefix(':') {
            Some(p) => Ok((host.to_string(), Some(p))),
            None => err(format!(
                "unexpected `{after}` after `]` in broker URL `{url}`"
            )),
        }
    } else {
        let (host, port) = match hp.rfind(':') {
            Some(i) => (&hp[..i], Some(&hp[i + 1..])),
            None => (hp, None),
        };
        if host.is_empty() {
            return err(format!("broker URL `{url}` has no host"));
        }
        if !is_host_name(host) {
            return err(format!(
                "`{host}` in broker URL `{url}` is not a host name (letters, digits, `-` and \
                 `.`), an IPv4 address or a bracketed IPv6 address"
            ));
        }
        Ok((host.to_string(), port))
    }
}

/// `url` with any password replaced by `***`, safe to show: the canonical form of a valid URL
/// ([`BrokerUrl::redacted`]), else the text with the password of its user information hidden
/// however malformed the rest is (for URLs [`parse`] refused, or from elsewhere).
pub fn redact_any(url: &str) -> String {
    parse(url).map_or_else(|_| redact_text(url), |u| u.redacted())
}

/// The text of `url` with the password of its user information, if any, replaced by `***`.
fn redact_text(url: &str) -> String {
    let Some(start) = url.find("://").map(|i| i + 3) else {
        return url.to_string();
    };
    let end = url[start..]
        .find(['/', '?', '#'])
        .map_or(url.len(), |i| start + i);
    let Some(at) = url[start..end].rfind('@').map(|i| start + i) else {
        return url.to_string();
    };
    match url[start..at].find(':') {
        Some(colon) => format!("{}:***{}", &url[..start + colon], &url[at..]),
        None => url.to_string(),
    }
}

/// Characters written as they are in a user name or password; everything else is `%XX`.
fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if is_unreserved(b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Decodes `%XX` escapes in the `what` (user name or password) of a URL; refuses bad escapes,
/// text that is not UTF-8 and control characters. The error never shows the text (it may be
/// a password).
fn percent_decode(s: &str, what: &str) -> Result<String, UrlError> {
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
                None => {
                    return err(format!(
                        "bad percent escape in the {what} of a broker URL (write % as %25)"
                    ))
                }
            }
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    let text = String::from_utf8(out).map_err(|_| {
        UrlError(format!(
            "the {what} of a broker URL does not decode to UTF-8"
        ))
    })?;
    if text.chars().any(|c| c.is_control()) {
        return err(format!(
            "the {what} of a broker URL holds a control character"
        ));
    }
    Ok(text)
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
            ("localhost:1883", "no scheme"),
            ("http://localhost", "unsupported scheme `http`"),
            ("mqtt:h", "no scheme"),
            ("mqtt://", "no host"),
            ("mqtt://:1883", "no host"),
            ("mqtt://host:0", "bad port"),
            ("mqtt://host:99999", "bad port"),
            ("mqtt://host:abc", "bad port"),
            ("mqtt://host:+12", "bad port"),
            ("mqtt://h:1883 ;rm -rf", "bad port"),
            ("mqtt://host/topic", "path"),
            ("mqtts://host/x", "path"),
            ("mqtt://h:1883?x=1", "query"),
            ("ws://h/mqtt#frag", "fragment"),
            ("mqtt://@host", "empty user"),
            ("mqtt://u:%zz@host", "percent"),
            ("mqtt://a@b@h", "%40"),
            ("mqtt://u%0a@h", "control"),
            ("mqtt://[::1", "unclosed"),
            ("mqtt://[zz]:1", "not an IPv6"),
            ("mqtt://ho st", "not a host name"),
            ("mqtt://-h", "not a host name"),
            ("mqtt://h_x", "not a host name"),
            ("mqtt://h..x", "not a host name"),
            ("mqtt://h\n:1883", "control"),
            ("mqtt://h\0", "control"),
            ("ws://h/a b", "spaces"),
        ] {
            let e = parse(bad).unwrap_err().to_string();
            assert!(e.contains(why), "{bad}: {e}");
            assert!(e.contains("expected mqtt://"), "{bad}: {e}");
        }
    }

    #[test]
    fn websocket_urls() {
        let u = parse("ws://broker.example").unwrap();
        assert!(u.websocket && !u.tls);
        assert_eq!((u.port, u.path.as_str()), (80, "/"));
        assert_eq!(u.websocket_address(), "ws://broker.example:80/");
        let u = parse("WSS://alice:pw@broker.example/mqtt").unwrap();
        assert!(u.websocket && u.tls);
        assert_eq!((u.port, u.path.as_str()), (443, "/mqtt"));
        assert_eq!(u.scheme(), "wss");
        assert_eq!(u.redacted(), "wss://alice:***@broker.example:443/mqtt");
        assert_eq!(u.without_password(), "wss://alice@broker.example:443/mqtt");
        assert_eq!(u.websocket_address(), "wss://broker.example:443/mqtt");
        let u = parse("ws://[::1]:9001/").unwrap();
        assert_eq!(u.websocket_address(), "ws://[::1]:9001/");
    }

    #[test]
    fn schemes_are_case_insensitive_and_logins_round_trip() {
        let u = parse("MQTT://[::1]:1884").unwrap();
        assert_eq!(u.redacted(), "mqtt://[::1]:1884");
        let u = parse("mqtt://h:1883").unwrap();
        let full = u.with_login("a lice@x", "p:w/d%");
        assert_eq!(full, "mqtt://a%20lice%40x:p%3Aw%2Fd%25@h:1883");
        let back = parse(&full).unwrap();
        assert_eq!(back.username.as_deref(), Some("a lice@x"));
        assert_eq!(back.password.as_deref(), Some("p:w/d%"));
        assert_eq!(back.without_password(), "mqtt://a%20lice%40x@h:1883");
    }

    #[test]
    fn redaction_never_shows_a_password() {
        assert_eq!(redact_any("mqtt://u:secret@h"), "mqtt://u:***@h:1883");
        // Malformed URLs too, including in the refusal itself.
        for bad in [
            "mqtt://u:secret@h:99999",
            "mqtt://u:secret@h/x",
            "gopher://u:secret@h",
        ] {
            assert!(!redact_any(bad).contains("secret"), "{bad}");
            assert!(redact_any(bad).contains("u:***@h"), "{bad}");
            assert!(!parse(bad).unwrap_err().0.contains("secret"), "{bad}");
        }
        assert_eq!(redact_any("not a url"), "not a url");
    }
}
