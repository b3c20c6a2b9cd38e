//! Which browser origins may use the services: the one rule shared by the provisioner's CORS and the ping
//! server's WebSocket upgrade check (browsers do not apply CORS to WebSockets, so the server must).

/// Whether `origin` (the `Origin` header's value) is allowed: listed exactly in `allowed` (trailing slashes
/// ignored), or, when `localhost` is true, an `http(s)://localhost`, `127.0.0.1` or `[::1]` origin on any port.
pub fn allowed(origin: &str, allowed: &[String], localhost: bool) -> bool {
    if allowed.iter().any(|a| a.trim().trim_end_matches('/') == origin) {
        return true;
    }
    if !localhost {
        return false;
    }
    let Some(rest) = origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"))
    else {
        return false;
    };
    let host = rest.rsplit_once(':').map_or(rest, |(host, port)| {
        if !port.is_empty() && port.chars().all(|c| c.is_ascii_digit()) {
            host
        } else {
            rest
        }
    });
    matches!(host, "localhost" | "127.0.0.1" | "[::1]")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allowlist_and_localhost_rule() {
        let list = vec!["https://me.github.io/".to_owned()];
        for (origin, localhost, expected) in [
            ("https://me.github.io", false, true),
            ("https://me.github.io.evil.com", true, false),
            ("https://evil.com", true, false),
            ("http://localhost:8081", true, true),
            ("http://localhost", true, true),
            ("http://127.0.0.1:3000", true, true),
            ("http://[::1]:3000", true, true),
            ("http://[::1]", true, true),
            ("http://localhost.evil.com", true, false),
            ("http://localhost:", true, false),
            ("http://localhost:8081", false, false),
            ("null", true, false),
            ("", true, false),
        ] {
            assert_eq!(allowed(origin, &list, localhost), expected, "{origin}");
        }
    }
}
