//! The provider registry: one place that declares each provider's name, summary, environment
//! variables, auth keys and capabilities. The CLI (`--provider`, `sbx auth`, `sbx ls`, `sbx providers`,
//! `sbx.yaml` validation), the conformance tests and the table in `docs/providers/README.md` all read it.
//!
//! Adding a provider is one module, one entry here (and in [`all`]) and one conformance run
//! (`tests/it/conformance.rs` fails while a registered provider has none).

use std::fmt;
use crate::Capabilities;

/// What sbx knows about a provider without talking to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProviderInfo {
    /// The name the CLI and `sbx.yaml` use.
    pub name: &'static str,
    /// One line for `sbx providers` and the docs.
    pub summary: &'static str,
    /// What it can do (its [`crate::Provider::capabilities`] returns exactly this).
    pub capabilities: Capabilities,
    /// Environment variables it reads besides its keys (never secrets).
    pub env: &'static [&'static str],
    /// Variables that hold its API key, first wins (empty: it needs none).
    pub auth: &'static [&'static str],
    /// How the host reaches the runtime inside its sandboxes.
    pub connect: &'static str,
    /// Its documentation page, relative to the repository root.
    pub docs: &'static str,
    /// Its sandboxes die on a platform timer unless sbx extends it while they are in use.
    pub keep_alive: bool,
}

/// `local`: a directory on this host and a runtime process confined to it (no isolation).
pub const LOCAL: ProviderInfo = ProviderInfo {
    name: "local",
    summary: "a directory on this host; processes run as you (development, trusted tasks)",
    capabilities: Capabilities {
        pause: true,
        network_none: false,
        public_ports: true,
        resource_limits: false,
        isolated: false,
        snapshots: false,
        keyless_route: false,
        max_lifetime: None,
    },
    env: &[],
    auth: &[],
    connect: "loopback TCP",
    docs: "docs/providers/local.md",
    keep_alive: false,
};

/// `docker`: a container on the local Docker engine.
pub const DOCKER: ProviderInfo = ProviderInfo {
    name: "docker",
    summary: "a container on the local Docker engine",
    capabilities: Capabilities {
        pause: true,
        network_none: true,
        public_ports: true,
        resource_limits: true,
        isolated: true,
        snapshots: false,
        keyless_route: false,
        max_lifetime: None,
    },
    env: &["DOCKER_HOST", crate::docker::ENV_IMAGE],
    auth: &[],
    connect: "published loopback port (a Unix socket with --network none)",
    docs: "docs/providers/docker.md",
    keep_alive: false,
};

/// `e2b`: an E2B cloud sandbox (Firecracker microVM).
pub const E2B: ProviderInfo = ProviderInfo {
    name: "e2b",
    summary: "an E2B cloud sandbox (Firecracker microVM)",
    capabilities: Capabilities {
        pause: true,
        network_none: false,
        public_ports: true,
        resource_limits: false,
        isolated: true,
        snapshots: false,
        keyless_route: false,
        max_lifetime: Some(crate::e2b::MAX_TIMEOUT),
    },
    env: &[crate::e2b::ENV_DOMAIN, crate::e2b::ENV_API_URL, crate::e2b::ENV_SANDBOX_URL, crate::e2b::ENV_TEMPLATE, crate::e2b::ENV_TIMEOUT],
    auth: &[crate::e2b::ENV_API_KEY],
    connect: "the sandbox's public HTTPS host for the port",
    docs: "docs/providers/e2b.md",
    keep_alive: true,
};

/// `daytona`: a Daytona cloud sandbox.
pub const DAYTONA: ProviderInfo = ProviderInfo {
    name: "daytona",
    summary: "a Daytona cloud sandbox",
    capabilities: Capabilities {
        pause: true,
        network_none: false,
        public_ports: true,
        resource_limits: true,
        isolated: true,
        snapshots: false,
        keyless_route: false,
        max_lifetime: None,
    },
    env: &[
        crate::daytona::ENV_API_URL,
        crate::daytona::ENV_TARGET,
        crate::daytona::ENV_SNAPSHOT,
        crate::daytona::ENV_AUTO_STOP,
        crate::daytona::ENV_AUTO_ARCHIVE,
    ],
    auth: &[crate::daytona::ENV_API_KEY],
    connect: "a preview URL with its token header",
    docs: "docs/providers/daytona.md",
    keep_alive: false,
};

/// `vercel`: a Vercel Sandbox (Firecracker microVM).
pub const VERCEL: ProviderInfo = ProviderInfo {
    name: "vercel",
    summary: "a Vercel Sandbox (Firecracker microVM)",
    capabilities: Capabilities {
        pause: false,
        network_none: false,
        public_ports: true,
        resource_limits: true,
        isolated: true,
        snapshots: false,
        keyless_route: false,
        max_lifetime: Some(std::time::Duration::from_secs(5 * 3600)),
    },
    env: &[
        crate::vercel::credentials::ENV_TEAM_ID,
        crate::vercel::credentials::ENV_PROJECT_ID,
        crate::vercel::credentials::ENV_OIDC_TOKEN_FILE,
        crate::vercel::ENV_API_URL,
        crate::vercel::ENV_IMAGE,
        crate::vercel::ENV_TIMEOUT,
        crate::vercel::ENV_REGION,
    ],
    // The SDK's order: an OIDC token wins over an access token.
    auth: &[crate::vercel::credentials::ENV_OIDC_TOKEN, crate::vercel::credentials::ENV_TOKEN],
    connect: "the port's public route URL",
    docs: "docs/providers/vercel.md",
    keep_alive: true,
};

/// `ssh`: a directory on a machine reached over SSH, with the runtime confined to it (no isolation).
pub const SSH: ProviderInfo = ProviderInfo {
    name: "ssh",
    summary: "a directory on any Linux x86_64 host you can ssh into; processes run as that user",
    capabilities: Capabilities {
        pause: false,
        network_none: false,
        public_ports: false,
        resource_limits: false,
        isolated: false,
        snapshots: false,
        keyless_route: false,
        max_lifetime: None,
    },
    env: &[crate::ssh::ENV_HOST, crate::ssh::ENV_ACCEPT_NEW, crate::ssh::ENV_DIR, crate::ssh::ENV_IDLE_TIMEOUT, "SSH_AUTH_SOCK"],
    auth: &[],
    connect: "a local Unix socket forwarded over the SSH connection (direct-tcpip) to the runtime on the host's loopback",
    docs: "docs/providers/ssh.md",
    keep_alive: false,
};

/// `modal`: a Modal Sandbox (gVisor container), over gRPC.
pub const MODAL: ProviderInfo = ProviderInfo {
    name: "modal",
    summary: "a Modal Sandbox (gVisor container), over gRPC",
    capabilities: Capabilities {
        pause: false,
        network_none: true,
        public_ports: true,
        resource_limits: true,
        isolated: true,
        snapshots: false,
        keyless_route: false,
        max_lifetime: Some(crate::modal::MAX_TIMEOUT),
    },
    env: &[
        crate::modal::ENV_API_URL,
        crate::modal::ENV_APP,
        crate::modal::ENV_ENVIRONMENT,
        crate::modal::ENV_IMAGE,
        crate::modal::ENV_TIMEOUT,
        crate::modal::ENV_WORKDIR,
        crate::modal::ENV_CIDR_ALLOWLIST,
        crate::modal::ENV_TUNNEL_SCHEME,
    ],
    // Both are needed (`sbx auth` stores them as `ID:SECRET`).
    auth: &[crate::modal::ENV_TOKEN_ID, crate::modal::ENV_TOKEN_SECRET],
    connect: "the port's encrypted tunnel URL",
    docs: "docs/providers/modal.md",
    keep_alive: false,
};

/// Every registered provider, in the order the CLI lists them.
pub fn all() -> &'static [ProviderInfo] {
    const ALL: &[ProviderInfo] = &[LOCAL, DOCKER, E2B, DAYTONA, VERCEL, SSH, MODAL];
    ALL
}

/// The names of every registered provider, in order.
pub fn names() -> Vec<&'static str> {
    all().iter().map(|p| p.name).collect()
}

/// A name that is not a registered provider.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct UnknownProvider {
    /// The name asked for.
    pub name: String,
    /// The closest registered name, when one is close.
    pub suggestion: Option<&'static str>,
}

impl fmt::Display for UnknownProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "unknown provider `{}`; ", self.name)?;
        if let Some(s) = self.suggestion {
            write!(f, "did you mean `{s}`? ")?;
        }
        write!(f, "valid providers: {}", names().join(", "))
    }
}

/// The provider called `name`, or an error that suggests the closest name and lists the valid ones.
pub fn get(name: &str) -> Result<&'static ProviderInfo, UnknownProvider> {
    if let Some(p) = all().iter().find(|p| p.name == name) {
        return Ok(p);
    }
    let lower = name.to_ascii_lowercase();
    let suggestion = all()
        .iter()
        .map(|p| (edit_distance(&lower, p.name), p.name))
        .filter(|(d, n)| *d <= 2.max(n.len() / 3))
        .min()
        .map(|(_, n)| n);
    Err(UnknownProvider { name: name.to_owned(), suggestion })
}

/// Levenshtein distance (names are a few ASCII letters; no crate needed for that).
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            cur.push((prev[j] + usize::from(ca != *cb)).min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}

fn yes(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "–"
    }
}

fn code_list(items: &[&str]) -> String {
    if items.is_empty() {
        "–".into()
    } else {
        items.iter().map(|i| format!("`{i}`")).collect::<Vec<_>>().join(", ")
    }
}

/// The registry as a Markdown table (what `sbx providers --markdown` prints and
/// `docs/providers/README.md` holds).
pub fn markdown_table() -> String {
    let mut out = String::from(
        "| Provider | What it is | Isolated | Network none | Ports | Pause | Snapshots | Keyless route | Max lifetime | API key | Other env |\n\
         |---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for p in all() {
        let c = &p.capabilities;
        let life = c.max_lifetime.map(|d| format!("{} h", d.as_secs() / 3600)).unwrap_or_else(|| "–".into());
        out.push_str(&format!(
            "| [`{}`]({}) | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |\n",
            p.name,
            p.docs.trim_start_matches("docs/providers/"),
            p.summary,
            yes(c.isolated),
            yes(c.network_none),
            yes(c.public_ports),
            yes(c.pause),
            yes(c.snapshots),
            yes(c.keyless_route),
            life,
            code_list(p.auth),
            code_list(p.env),
        ));
    }
    out
}

/// The markers around the generated table in `docs/providers/README.md`.
pub const DOCS_BEGIN: &str = "<!-- registry:begin (generated by `sbx providers --markdown`; a test fails when it drifts) -->";
/// See [`DOCS_BEGIN`].
pub const DOCS_END: &str = "<!-- registry:end -->";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_lowercase() {
        let mut names = names();
        assert!(names.iter().all(|n| n.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())));
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), all().len());
    }

    #[test]
    fn unknown_names_suggest_the_closest_and_list_the_valid_ones() {
        assert_eq!(get("docker").unwrap().name, "docker");
        let e = get("dokcer").unwrap_err();
        assert_eq!(e.suggestion, Some("docker"));
        assert_eq!(e.to_string(), "unknown provider `dokcer`; did you mean `docker`? valid providers: local, docker, e2b, daytona, vercel, ssh, modal");
        let e = get("kubernetes").unwrap_err();
        assert_eq!(e.suggestion, None, "{e}");
        assert_eq!(e.to_string(), "unknown provider `kubernetes`; valid providers: local, docker, e2b, daytona, vercel, ssh, modal");
        assert_eq!(get("E2B").unwrap_err().suggestion, Some("e2b"));
    }

    #[test]
    fn every_docs_page_exists() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        for p in all() {
            assert!(root.join(p.docs).is_file(), "{} has no page at {}", p.name, p.docs);
        }
    }

    #[test]
    fn the_docs_table_is_the_generated_one() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/providers/README.md");
        let text = std::fs::read_to_string(&path).expect("docs/providers/README.md");
        let begin = text.find(DOCS_BEGIN).expect("begin marker") + DOCS_BEGIN.len();
        let end = text.find(DOCS_END).expect("end marker");
        assert_eq!(
            text[begin..end].trim(),
            markdown_table().trim(),
            "docs/providers/README.md is out of date: paste `sbx providers --markdown` between the markers"
        );
    }
}
