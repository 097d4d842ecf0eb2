//! Secrets (the client secret, tokens) are registered here as soon as they are known, and
//! every log line and error message passes through [`redact`] on its way out.

use std::sync::RwLock;

static SECRETS: RwLock<Vec<String>> = RwLock::new(Vec::new());

/// Shorter strings would redact ordinary words; no real secret or token is this short.
const MIN_SECRET_LEN: usize = 6;

pub fn register_secret(secret: &str) {
    register(secret, MIN_SECRET_LEN);
}

/// The configured client secret is masked whatever its length.
pub fn register_client_secret(secret: &str) {
    register(secret, 1);
}

fn register(secret: &str, min_len: usize) {
    if secret.len() < min_len {
        return;
    }
    let mut list = SECRETS.write().unwrap_or_else(|p| p.into_inner());
    if !list.iter().any(|s| s == secret) {
        // Keep the list small over months of uptime: drop the oldest token, never the
        // first entry (the client secret).
        if list.len() >= 64 {
            list.remove(1);
        }
        list.push(secret.to_string());
    }
}

/// Replaces every registered secret (and its URL-encoded form) with `***`.
pub fn redact(message: &str) -> String {
    let list = SECRETS.read().unwrap_or_else(|p| p.into_inner());
    let mut out = message.to_string();
    for secret in list.iter() {
        if out.contains(secret.as_str()) {
            out = out.replace(secret.as_str(), "***");
        }
        let encoded = crate::omnium::encode_component(secret);
        if encoded != *secret && out.contains(encoded.as_str()) {
            out = out.replace(encoded.as_str(), "***");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registered_secrets_are_masked_plain_and_url_encoded() {
        register_secret("p@ss w0rd!");
        let msg = redact("POST /api/token?clientSecret=p%40ss%20w0rd%21 failed; secret p@ss w0rd!");
        assert!(!msg.contains("w0rd"), "{msg}");
        assert_eq!(redact("nothing here"), "nothing here");
    }
}
