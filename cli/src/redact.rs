//! Keeps secrets out of everything sbx writes to the terminal: log lines (including those of
//! libraries that print request bodies at debug level, such as the Docker client's), error reports
//! and panic messages.
//!
//! Secrets are registered as they come into play (a runtime's token, credentials being passed, a
//! provider key); the log writer and the error and panic reporters replace any registered value with
//! `[redacted]` before writing.

use std::io::Write;
use std::sync::RwLock;

static SECRETS: RwLock<Vec<String>> = RwLock::new(Vec::new());

/// Values shorter than this are not registered: replacing them would garble unrelated text.
const MIN_LEN: usize = 8;

/// Registers a secret value.
pub fn register(secret: &str) {
    if secret.len() < MIN_LEN {
        return;
    }
    let mut all = SECRETS.write().unwrap_or_else(|e| e.into_inner());
    if !all.iter().any(|s| s == secret) {
        all.push(secret.to_owned());
        // Longest first, so a secret that contains another is replaced whole.
        all.sort_by_key(|s| std::cmp::Reverse(s.len()));
    }
}

/// `text` with every registered secret replaced.
pub fn redact(text: &str) -> String {
    let all = SECRETS.read().unwrap_or_else(|e| e.into_inner());
    let mut out = text.to_owned();
    for s in all.iter() {
        if out.contains(s.as_str()) {
            out = out.replace(s.as_str(), "[redacted]");
        }
        // JSON in log lines escapes some characters; catch the escaped form too.
        let escaped = serde_json::to_string(s).unwrap_or_default();
        let escaped = escaped.trim_matches('"');
        if escaped != s && out.contains(escaped) {
            out = out.replace(escaped, "[redacted]");
        }
    }
    out
}

/// A writer for log lines that redacts each write (the log formatter writes whole events).
pub struct RedactingStderr;

impl Write for RedactingStderr {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let text = String::from_utf8_lossy(buf);
        std::io::stderr().lock().write_all(redact(&text).as_bytes())?;
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

/// Panic messages go through [`redact`] too.
pub fn install_panic_hook() {
    std::panic::set_hook(Box::new(|info| {
        let msg = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| (*s).to_owned())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "(no message)".into());
        let at = info.location().map(|l| format!(" at {}:{}", l.file(), l.line())).unwrap_or_default();
        eprintln!("sbx panicked{at}: {}\nThis is a bug in sbx; please report it.", redact(&msg));
    }));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registered_values_are_replaced_plain_and_json_escaped() {
        register("sk-test-secret-\"quoted\"-value");
        register("short");
        let line = r#"{"Env":["K=sk-test-secret-\"quoted\"-value"]} and sk-test-secret-"quoted"-value and short"#;
        let out = redact(line);
        assert!(!out.contains("secret-"), "{out}");
        assert!(out.contains("short"), "values under 8 bytes are left alone");
    }
}
