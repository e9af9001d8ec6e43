//! `~/.ssh/known_hosts` as OpenSSH reads it: plain and hashed (`|1|salt|hash`) host patterns,
//! `[host]:port` for ports other than 22, `*`/`?` wildcards, `!` negations, `@revoked` and
//! `@cert-authority` markers, comments. Our own parser (not russh's) because the answer must name the
//! exact line to fix, counted the way an editor counts, comments included.

use std::path::Path;

use hmac::{Hmac, Mac};
use russh::keys::ssh_key::PublicKey;

/// What the file says about a host's key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// A line lists this exact key for the host.
    Known,
    /// No line names the host.
    Unknown,
    /// Lines name the host, but with another key of the same type: possibly a man in the middle.
    Changed {
        /// The 1-based line numbers that hold the old key.
        lines: Vec<usize>,
    },
    /// Lines name the host with keys of other types only (OpenSSH refuses to learn a new type silently
    /// too).
    OtherTypes {
        /// The 1-based line numbers.
        lines: Vec<usize>,
    },
    /// The key is marked `@revoked`.
    Revoked {
        /// The 1-based line number.
        line: usize,
    },
}

/// The host as known_hosts spells it: `host` on port 22, `[host]:port` otherwise.
pub fn host_token(host: &str, port: u16) -> String {
    if port == 22 {
        host.to_owned()
    } else {
        format!("[{host}]:{port}")
    }
}

/// Checks `key` for `host`:`port` against the file at `path` (a missing file knows nothing).
pub fn check(path: &Path, host: &str, port: u16, key: &PublicKey) -> std::io::Result<Verdict> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Verdict::Unknown),
        Err(e) => return Err(e),
    };
    Ok(check_text(&text, host, port, key))
}

/// [`check`] on the file's text.
pub fn check_text(text: &str, host: &str, port: u16, key: &PublicKey) -> Verdict {
    let token = host_token(host, port);
    let (mut known, mut changed, mut other) = (false, Vec::new(), Vec::new());
    for (i, line) in text.lines().enumerate() {
        let line_no = i + 1;
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let mut fields = line.split_whitespace();
        let mut first = fields.next().unwrap_or_default();
        let marker = first.strip_prefix('@').map(str::to_owned);
        if marker.is_some() {
            first = fields.next().unwrap_or_default();
        }
        let (Some(_kind), Some(b64)) = (fields.next(), fields.next()) else { continue };
        if !patterns_match(first, &token) {
            continue;
        }
        let Ok(recorded) = russh::keys::parse_public_key_base64(b64) else { continue };
        match marker.as_deref() {
            Some("revoked") if recorded.key_data() == key.key_data() => return Verdict::Revoked { line: line_no },
            Some(_) => continue, // @cert-authority lines are for certificates, which we do not accept here.
            None => {}
        }
        if recorded.key_data() == key.key_data() {
            known = true;
        } else if recorded.algorithm() == key.algorithm() {
            changed.push(line_no);
        } else {
            other.push(line_no);
        }
    }
    if !changed.is_empty() {
        Verdict::Changed { lines: changed }
    } else if known {
        Verdict::Known
    } else if !other.is_empty() {
        Verdict::OtherTypes { lines: other }
    } else {
        Verdict::Unknown
    }
}

/// Whether a comma-separated pattern list matches `token` (any positive match and no negated one).
fn patterns_match(list: &str, token: &str) -> bool {
    let mut hit = false;
    for pat in list.split(',') {
        if let Some(hashed) = pat.strip_prefix("|1|") {
            if hashed_matches(hashed, token) {
                hit = true;
            }
        } else if let Some(neg) = pat.strip_prefix('!') {
            if glob(neg, token) {
                return false;
            }
        } else if glob(pat, token) {
            hit = true;
        }
    }
    hit
}

/// `salt|hash`, both base64: HMAC-SHA1 of the host token keyed with the salt.
fn hashed_matches(hashed: &str, token: &str) -> bool {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD;
    let Some((salt, hash)) = hashed.split_once('|') else { return false };
    let (Ok(salt), Ok(hash)) = (b64.decode(salt), b64.decode(hash)) else { return false };
    let Ok(mut mac) = Hmac::<sha1::Sha1>::new_from_slice(&salt) else { return false };
    mac.update(token.as_bytes());
    mac.verify_slice(&hash).is_ok()
}

/// OpenSSH's wildcards: `*` any run, `?` one character (host names compare case-insensitively).
fn glob(pattern: &str, text: &str) -> bool {
    let p: Vec<char> = pattern.to_ascii_lowercase().chars().collect();
    let t: Vec<char> = text.to_ascii_lowercase().chars().collect();
    let (mut pi, mut ti, mut star, mut mark) = (0, 0, None, 0);
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi] == t[ti]) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

/// Appends `host`'s key to the file (created 0600 with its directory 0700 when missing), as a plain
/// `[host]:port type base64` line.
pub fn learn(path: &Path, host: &str, port: u16, key: &PublicKey) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    if let Some(dir) = path.parent() {
        std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
    }
    let existing = std::fs::read(path).unwrap_or_default();
    let mut f = std::fs::OpenOptions::new().create(true).append(true).mode(0o600).open(path)?;
    let openssh = key.to_openssh().map_err(std::io::Error::other)?;
    let sep = if existing.is_empty() || existing.ends_with(b"\n") { "" } else { "\n" };
    writeln!(f, "{sep}{} {}", host_token(host, port), openssh.trim())
}

/// `SHA256:<base64>` of a key, as `ssh-keygen -l` prints it.
pub fn fingerprint(key: &PublicKey) -> String {
    key.fingerprint(russh::keys::HashAlg::Sha256).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(seed: u8) -> PublicKey {
        let sk = russh::keys::ssh_key::private::Ed25519Keypair::from_seed(&[seed; 32]);
        PublicKey::from(russh::keys::ssh_key::public::KeyData::Ed25519(sk.public))
    }

    fn line(host: &str, k: &PublicKey) -> String {
        format!("{host} {}\n", k.to_openssh().unwrap().trim())
    }

    #[test]
    fn plain_ported_hashed_and_changed_entries() {
        let (a, b) = (key(1), key(2));
        let text = format!("# comment\n\n{}{}", line("[box]:2222", &a), line("other", &b));
        assert_eq!(check_text(&text, "box", 2222, &a), Verdict::Known);
        assert_eq!(check_text(&text, "box", 22, &a), Verdict::Unknown);
        assert_eq!(check_text(&text, "box", 2222, &b), Verdict::Changed { lines: vec![3] });
        // A hashed entry for [box]:2222 (salt of 20 bytes, as ssh-keygen -H writes).
        use base64::Engine as _;
        let salt = [7u8; 20];
        let mut mac = Hmac::<sha1::Sha1>::new_from_slice(&salt).unwrap();
        mac.update(b"[box]:2222");
        let b64 = base64::engine::general_purpose::STANDARD;
        let hashed = format!("|1|{}|{}", b64.encode(salt), b64.encode(mac.finalize().into_bytes()));
        let text = line(&hashed, &a);
        assert_eq!(check_text(&text, "box", 2222, &a), Verdict::Known);
        assert_eq!(check_text(&text, "box", 2222, &b), Verdict::Changed { lines: vec![1] });
        assert_eq!(check_text(&text, "box2", 2222, &b), Verdict::Unknown);
    }

    #[test]
    fn wildcards_negation_and_revoked() {
        let (a, b) = (key(3), key(4));
        let text = format!("{}{}", line("*.example,!bad.example", &a), line("@revoked *", &b));
        assert_eq!(check_text(&text, "h.example", 22, &a), Verdict::Known);
        assert_eq!(check_text(&text, "bad.example", 22, &a), Verdict::Unknown);
        assert_eq!(check_text(&text, "anything", 22, &b), Verdict::Revoked { line: 2 });
    }

    #[test]
    fn learn_appends_a_line_that_check_then_knows() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ssh/known_hosts");
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(&path, "other ssh-ed25519 AAAA").unwrap();
        let k = key(5);
        learn(&path, "127.0.0.1", 2200, &k).unwrap();
        assert_eq!(check(&path, "127.0.0.1", 2200, &k).unwrap(), Verdict::Known);
        assert!(std::fs::read_to_string(&path).unwrap().lines().nth(1).unwrap().starts_with("[127.0.0.1]:2200 ssh-ed25519 "));
    }
}
