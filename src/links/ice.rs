//! ICE servers: the `meta-log-federation-ice-servers` entries, and coturn's time-limited REST
//! credentials computed from a shared secret (coturn's `use-auth-secret` /
//! `static-auth-secret`; the "TURN REST API" draft): user name `EXPIRY:USER` (Unix time),
//! password `base64(HMAC-SHA1(secret, username))`.

use base64ct::{Base64, Encoding};
use hmac_sha1_compat::{Hmac, Mac};

use super::channel::IceServer;

/// How long REST credentials stay valid by default, in seconds (a day, as coturn's examples).
pub const DEFAULT_REST_TTL_SECS: u64 = 86_400;

/// coturn REST credentials `(username, password)` for `user`, valid until `now + ttl`.
pub fn rest_credentials(secret: &str, user: &str, now: u64, ttl: u64) -> (String, String) {
    let expiry = now.saturating_add(ttl);
    let username = if user.is_empty() {
        expiry.to_string()
    } else {
        format!("{expiry}:{user}")
    };
    // HMAC accepts keys of any length.
    let mut mac = <Hmac<sha1::Sha1> as Mac>::new_from_slice(secret.as_bytes())
        .expect("HMAC takes keys of any length");
    mac.update(username.as_bytes());
    let password = Base64::encode_string(&mac.finalize().into_bytes());
    (username, password)
}

/// Checks one ICE server URL (`stun:`, `stuns:`, `turn:`, `turns:` and a host); the error says
/// what to write instead.
pub fn check_url(url: &str) -> Result<(), String> {
    let rest = ["stun:", "stuns:", "turn:", "turns:"]
        .iter()
        .find_map(|p| url.strip_prefix(p));
    match rest {
        Some(r) if !r.is_empty() && !r.contains(char::is_whitespace) => Ok(()),
        _ => Err(format!(
            "ICE server URL {url:?} must be stun:HOST[:PORT] or turn:HOST[:PORT][?transport=udp]"
        )),
    }
}

/// An ICE server whose TURN credentials come from a coturn shared secret.
pub fn server_with_secret(urls: Vec<String>, secret: &str, user: &str, now: u64) -> IceServer {
    let (u, p) = rest_credentials(secret, user, now, DEFAULT_REST_TTL_SECS);
    IceServer {
        urls,
        username: Some(u),
        credential: Some(p),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rest_credentials_match_coturns_formula() {
        // Computed independently: printf '1700086400:alice' |
        //   openssl dgst -sha1 -hmac 'north' -binary | base64
        let (u, p) = rest_credentials("north", "alice", 1_700_000_000, 86_400);
        assert_eq!(u, "1700086400:alice");
        assert_eq!(p, "SXua5ne/+mDhiHTp0pQJzRO4ESg=");
        let (u, _) = rest_credentials("north", "", 10, 5);
        assert_eq!(u, "15");
    }

    #[test]
    fn ice_urls_are_checked() {
        assert!(check_url("stun:stun.example.org:3478").is_ok());
        assert!(check_url("turn:198.18.0.1:3478?transport=udp").is_ok());
        assert!(check_url("http://example.org").is_err());
        assert!(check_url("turn:").is_err());
    }
}
