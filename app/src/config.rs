//! Where the provisioner is: `?api=` in the page URL wins, then `api` in `config.json` beside `index.html`,
//! then the page's own origin. One build serves every deployment.

use serde::Deserialize;

/// The contents of `config.json`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct SiteConfig {
    /// Base URL of the provisioner API, e.g. `https://demo.example.com`. Empty or absent: same origin.
    #[serde(default)]
    pub api: Option<String>,
    /// WebSocket URLs of the shared servers, overriding what the provisioner's `GET /info` says.
    #[serde(default)]
    pub shared: Option<Vec<String>>,
}

/// Resolves the API base URL (no trailing slash).
pub fn api_base(query: &str, config: &SiteConfig, origin: &str) -> String {
    let from_query = query
        .trim_start_matches('?')
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .find(|(key, _)| *key == "api")
        .map(|(_, value)| percent_decode(value));
    from_query
        .or_else(|| config.api.clone())
        .map(|api| api.trim().trim_end_matches('/').to_owned())
        .filter(|api| api.starts_with("http://") || api.starts_with("https://"))
        .unwrap_or_else(|| origin.trim_end_matches('/').to_owned())
}

/// Minimal `%XX` decoding for a URL in a query string.
fn percent_decode(value: &str) -> String {
    let bytes = value.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(hex) = value.get(i + 1..i + 3)
            && let Ok(byte) = u8::from_str_radix(hex, 16)
        {
            out.push(byte);
            i += 3;
            continue;
        }
        out.push(if bytes[i] == b'+' { b' ' } else { bytes[i] });
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_beats_config_beats_origin() {
        let config = SiteConfig {
            api: Some("https://api.example.com/".into()),
            ..SiteConfig::default()
        };
        assert_eq!(
            api_base("", &SiteConfig::default(), "http://localhost:8081"),
            "http://localhost:8081"
        );
        assert_eq!(api_base("", &config, "http://x"), "https://api.example.com");
        assert_eq!(
            api_base(
                "?theme=dark&api=http%3A%2F%2F127.0.0.1%3A9000",
                &config,
                "http://x"
            ),
            "http://127.0.0.1:9000"
        );
    }

    #[test]
    fn nonsense_falls_back_to_the_origin() {
        let config = SiteConfig {
            api: Some("javascript:alert(1)".into()),
            ..SiteConfig::default()
        };
        assert_eq!(
            api_base("?api=ftp://x", &config, "https://me.github.io"),
            "https://me.github.io"
        );
        assert_eq!(
            serde_json::from_str::<SiteConfig>("{}").unwrap(),
            SiteConfig::default()
        );
    }
}
