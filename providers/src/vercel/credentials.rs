//! Vercel credentials, resolved the way the official SDK resolves them (`vercel.oidc`): a token plus
//! the team and project it acts for.
//!
//! Order: an OIDC token (`VERCEL_OIDC_TOKEN`, else the file `VERCEL_OIDC_TOKEN_FILE` names) wins over
//! an access token (`VERCEL_TOKEN`), as in the SDK. The team and project come from `VERCEL_TEAM_ID` /
//! `VERCEL_PROJECT_ID`, or (OIDC only) from the token's own `owner_id` / `project_id` claims. An OIDC
//! token whose `exp` has passed is refused with what to do, rather than sent to be refused by the API.

use base64::Engine as _;
use serde_json::Value;

use crate::{Error, Result};

use super::NAME;

/// Env var holding an access token.
pub const ENV_TOKEN: &str = "VERCEL_TOKEN";
/// Env var holding an OIDC token (wins over [`ENV_TOKEN`], as in the SDK).
pub const ENV_OIDC_TOKEN: &str = "VERCEL_OIDC_TOKEN";
/// Env var naming a file that holds an OIDC token.
pub const ENV_OIDC_TOKEN_FILE: &str = "VERCEL_OIDC_TOKEN_FILE";
/// Env var holding the team id.
pub const ENV_TEAM_ID: &str = "VERCEL_TEAM_ID";
/// Env var holding the project id.
pub const ENV_PROJECT_ID: &str = "VERCEL_PROJECT_ID";

/// A token and the team and project it acts for. Prints the token as `***`.
#[derive(Clone)]
pub struct Credentials {
    pub(super) token: String,
    pub(super) team_id: String,
    pub(super) project_id: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("token", &"***")
            .field("team_id", &self.team_id)
            .field("project_id", &self.project_id)
            .finish()
    }
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().map(|v| v.trim().to_owned()).filter(|v| !v.is_empty())
}

impl Credentials {
    /// Explicit values.
    pub fn new(token: impl Into<String>, team_id: impl Into<String>, project_id: impl Into<String>) -> Self {
        Self { token: token.into(), team_id: team_id.into(), project_id: project_id.into() }
    }

    /// From the environment, in the SDK's order (see the module docs).
    pub fn from_env() -> Result<Self> {
        let oidc = match env(ENV_OIDC_TOKEN) {
            Some(t) => Some(t),
            None => match env(ENV_OIDC_TOKEN_FILE) {
                Some(path) => Some(
                    std::fs::read_to_string(&path)
                        .map_err(|e| Error::io(format!("reading {ENV_OIDC_TOKEN_FILE}={path}"), e))?
                        .trim()
                        .to_owned(),
                ),
                None => None,
            },
        };
        match oidc.filter(|t| !t.is_empty()).or_else(|| env(ENV_TOKEN)) {
            Some(token) => Self::from_token(token),
            None => Err(Error::Auth {
                provider: NAME,
                message: format!(
                    "no token: set {ENV_TOKEN} (with {ENV_TEAM_ID} and {ENV_PROJECT_ID}) or {ENV_OIDC_TOKEN}, or run \
                     `sbx auth login vercel`"
                ),
            }),
        }
    }

    /// `token` (from the environment, `sbx auth login` or a flag) with the team and project from the
    /// environment or, for an OIDC token, from its claims.
    pub fn from_token(token: impl Into<String>) -> Result<Self> {
        let token = token.into().trim().to_owned();
        let claims = jwt_claims(&token);
        if let Some(exp) = claims.as_ref().and_then(|c| c.get("exp")).and_then(Value::as_u64) {
            if exp <= crate::util::unix_now() {
                return Err(Error::Auth {
                    provider: NAME,
                    message: format!(
                        "the OIDC token expired (exp {exp}); refresh it (`vercel env pull`), or unset {ENV_OIDC_TOKEN} and \
                         use {ENV_TOKEN}, or run `sbx auth login vercel`"
                    ),
                });
            }
        }
        let claim = |k: &str| claims.as_ref().and_then(|c| c.get(k)).and_then(Value::as_str).map(str::to_owned);
        let team_id = env(ENV_TEAM_ID).or_else(|| claim("owner_id"));
        let project_id = env(ENV_PROJECT_ID).or_else(|| claim("project_id"));
        match (team_id, project_id) {
            (Some(team_id), Some(project_id)) => Ok(Self { token, team_id, project_id }),
            (team, _) => Err(Error::Auth {
                provider: NAME,
                message: format!(
                    "set {} (sandboxes belong to a team's project; both ids are in the project's settings)",
                    match team {
                        None => format!("{ENV_TEAM_ID} and {ENV_PROJECT_ID}"),
                        Some(_) => ENV_PROJECT_ID.to_owned(),
                    }
                ),
            }),
        }
    }

    /// The team id.
    pub fn team_id(&self) -> &str {
        &self.team_id
    }

    /// The project id.
    pub fn project_id(&self) -> &str {
        &self.project_id
    }
}

/// The claims of a JWT (unverified: only to read the team and project it names, as the SDK does).
fn jwt_claims(token: &str) -> Option<Value> {
    let mut parts = token.split('.');
    let (_, payload, _) = (parts.next()?, parts.next()?, parts.next()?);
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload.trim_end_matches('=')).ok()?;
    serde_json::from_slice::<Value>(&bytes).ok().filter(Value::is_object)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jwt(claims: &str) -> String {
        let b = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        format!("{}.{}.sig", b.encode(r#"{"alg":"RS256"}"#), b.encode(claims))
    }

    #[test]
    fn claims_of_oidc_tokens_are_read() {
        let t = jwt(r#"{"owner_id":"team_1","project_id":"prj_2","exp":99999999999}"#);
        let c = jwt_claims(&t).expect("claims");
        assert_eq!(c["owner_id"], "team_1");
        assert!(jwt_claims("not-a-jwt").is_none());
        assert!(jwt_claims("a.%%%.c").is_none());
    }

    #[test]
    fn debug_hides_the_token() {
        let c = Credentials::new("secret-token", "team", "prj");
        assert!(!format!("{c:?}").contains("secret-token"));
    }
}
