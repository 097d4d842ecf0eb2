//! Secrets: the client secret, bearer tokens and proxy credentials.
//!
//! Each is held as a [`Secret`]: never printed by `Debug`, wiped (zeroized) when dropped.
//! Every client registers its secrets in its own [`Scope`] as soon as they are known; every
//! log line and error message passes through [`redact`] on its way out, which masks the
//! secrets of every live scope. A scope is forgotten (and its secrets wiped) when its client
//! closes, so one client's secrets neither outlive it nor crowd out another's: nothing is
//! evicted while its client lives.
//!
//! A secret shorter than [`MIN_MASKED_LEN`] bytes is not masked in every message (a
//! three-letter secret would blank that word in every log line); it is masked where the
//! secret itself could be printed, with [`redact_with`] (the token request, whose URL
//! carries it).

use std::sync::{Arc, Mutex, RwLock};
use zeroize::Zeroizing;

/// A string that must never reach a log, an error message or the database.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Secret(Zeroizing<String>);

impl Secret {
    pub fn new(s: impl Into<String>) -> Secret {
        Secret(Zeroizing::new(s.into()))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl<'de> serde::Deserialize<'de> for Secret {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Secret, D::Error> {
        String::deserialize(d).map(Secret::new)
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// Registered secrets at least this long are masked in every message leaving the library.
pub const MIN_MASKED_LEN: usize = 8;

struct Entry {
    secret: Secret,
    /// Monotonic ms after which it is useless (an expired token); `None` = while the scope
    /// lives.
    expires_at: Option<i64>,
}

#[derive(Default)]
struct ScopeSecrets {
    entries: Mutex<Vec<Entry>>,
}

/// Every live scope. A `Vec` of `Arc`s: scopes are few (one per open client).
static SCOPES: RwLock<Vec<Arc<ScopeSecrets>>> = RwLock::new(Vec::new());

/// The secrets of one client, masked in every message while the scope lives.
pub struct Scope {
    inner: Arc<ScopeSecrets>,
}

impl Default for Scope {
    fn default() -> Self {
        Scope::new()
    }
}

impl Scope {
    pub fn new() -> Scope {
        let inner = Arc::new(ScopeSecrets::default());
        SCOPES
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .push(inner.clone());
        Scope { inner }
    }

    /// Masks `secret` in every message from now on, until the scope is forgotten, or after
    /// `expires_at` (monotonic ms, judged at `now`) once a later secret is added.
    pub fn add(&self, secret: &Secret, expires_at: Option<i64>, now: i64) {
        if secret.is_empty() {
            return;
        }
        let mut entries = self.inner.entries.lock().unwrap_or_else(|p| p.into_inner());
        // An expired token cannot be used by whoever reads it: it need not be masked.
        entries.retain(|e| e.expires_at.is_none_or(|at| at > now));
        if let Some(e) = entries.iter_mut().find(|e| e.secret == *secret) {
            e.expires_at = match (e.expires_at, expires_at) {
                (Some(a), Some(b)) => Some(a.max(b)),
                _ => None,
            };
            return;
        }
        entries.push(Entry {
            secret: secret.clone(),
            expires_at,
        });
    }

    /// Forgets (and wipes) every secret of this scope now.
    pub fn forget(&self) {
        self.inner
            .entries
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
        SCOPES
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .retain(|s| !Arc::ptr_eq(s, &self.inner));
    }

    /// How many secrets the scope holds (tests).
    pub fn len(&self) -> usize {
        self.inner
            .entries
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Drop for Scope {
    fn drop(&mut self) {
        self.forget();
    }
}

/// Replaces every secret of every live scope at least [`MIN_MASKED_LEN`] bytes long (and its
/// URL-encoded form) with `***`.
pub fn redact(message: &str) -> String {
    let scopes = SCOPES.read().unwrap_or_else(|p| p.into_inner());
    let mut out = message.to_string();
    for scope in scopes.iter() {
        let entries = scope.entries.lock().unwrap_or_else(|p| p.into_inner());
        for e in entries.iter() {
            if e.secret.expose().len() >= MIN_MASKED_LEN {
                mask(&mut out, &e.secret);
            }
        }
    }
    out
}

/// [`redact`], and also masks `secrets` whatever their length: for a message that may print
/// one of them (an error about the request that carried it).
pub fn redact_with(message: &str, secrets: &[&Secret]) -> String {
    let mut out = redact(message);
    for s in secrets {
        if !s.is_empty() {
            mask(&mut out, s);
        }
    }
    out
}

fn mask(out: &mut String, secret: &Secret) {
    let plain = secret.expose();
    if out.contains(plain) {
        *out = out.replace(plain, "***");
    }
    let encoded = Zeroizing::new(crate::omnium::encode_component(plain));
    if *encoded != plain && out.contains(encoded.as_str()) {
        *out = out.replace(encoded.as_str(), "***");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registered_secrets_are_masked_plain_and_url_encoded() {
        let scope = Scope::new();
        scope.add(&Secret::new("p@ss w0rd!"), None, 0);
        let msg = redact("POST /api/token?clientSecret=p%40ss%20w0rd%21 failed; secret p@ss w0rd!");
        assert!(!msg.contains("w0rd"), "{msg}");
        assert_eq!(redact("nothing here"), "nothing here");
    }

    #[test]
    fn a_scope_forgets_its_secrets_at_close_and_others_stay_masked() {
        let a = Scope::new();
        let b = Scope::new();
        a.add(&Secret::new("alpha-secret-1"), None, 0);
        b.add(&Secret::new("bravo-secret-2"), None, 0);
        // Many tokens of one client never push out another client's secret.
        for i in 0..200 {
            a.add(&Secret::new(format!("token-of-a-{i:04}")), Some(1_000), 0);
        }
        let line = "alpha-secret-1 bravo-secret-2 token-of-a-0000 token-of-a-0199";
        assert_eq!(redact(line), "*** *** *** ***");
        drop(a);
        assert_eq!(
            redact(line),
            "alpha-secret-1 *** token-of-a-0000 token-of-a-0199"
        );
        b.forget();
        assert_eq!(redact(line), line);
    }

    #[test]
    fn expired_tokens_are_dropped_when_a_new_one_arrives() {
        let s = Scope::new();
        s.add(&Secret::new("client-secret"), None, 0);
        s.add(&Secret::new("token-one-xyz"), Some(100), 0);
        s.add(&Secret::new("token-two-xyz"), Some(300), 50);
        assert_eq!(s.len(), 3);
        s.add(&Secret::new("token-three-x"), Some(500), 200);
        assert_eq!(s.len(), 3, "the first token expired at 100");
        assert!(redact("client-secret").contains("***"));
    }

    #[test]
    fn short_secrets_are_masked_only_where_they_are_printed() {
        let s = Scope::new();
        let short = Secret::new("Zq9");
        s.add(&short, None, 0);
        // An ordinary log line keeps its words.
        assert_eq!(redact("sale Zq9-1 recorded"), "sale Zq9-1 recorded");
        // The token request's URL is masked with the secret itself.
        let msg = redact_with(
            "POST /api/token?clientId=c&clientSecret=Zq9 failed",
            &[&short],
        );
        assert!(!msg.contains("Zq9"), "{msg}");
    }

    #[test]
    fn a_secret_is_not_printed_by_debug() {
        assert_eq!(format!("{:?}", Secret::new("hunter22")), "Secret(***)");
    }
}
