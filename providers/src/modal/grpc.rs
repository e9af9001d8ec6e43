//! The Modal control plane over gRPC: one lazily connected channel, the metadata every call carries
//! (token pair, client identity, the short-lived `x-modal-auth-token` JWT the V2 RPCs want), a limit
//! on every call, retries of transient statuses with the shared [`RetryPolicy`] backoff, and one
//! mapping of a refused call to a typed [`Error`].

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tonic::metadata::{AsciiMetadataValue, MetadataMap};
use tonic::transport::{Channel, ClientTlsConfig, Endpoint};
use tonic::{Code, Status};

use super::proto::client::modal_client_client::ModalClientClient;
use super::proto::client::AuthTokenGetRequest;
use super::NAME;
use crate::http::RetryPolicy;
use crate::{Error, Result};

/// The SDK release whose schema is vendored (`providers/proto/modal`); sent as the client version,
/// which Modal's servers gate on.
pub(super) const CLIENT_VERSION: &str = "1.6.4";
/// Largest message either side decodes (command output and stdin chunks stay far below).
pub(super) const MAX_MESSAGE: usize = 64 << 20;
/// What to check when Modal cannot be reached.
const REACH_HINT: &str = "check your network, or SBX_MODAL_API_URL (default https://api.modal.com)";

/// The API token pair (`ak-…` / `as-…`).
#[derive(Clone)]
pub struct Credentials {
    /// `MODAL_TOKEN_ID`.
    pub token_id: String,
    /// `MODAL_TOKEN_SECRET`.
    pub token_secret: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials").field("token_id", &self.token_id).field("token_secret", &"***").finish()
    }
}

/// A JWT and when it expires (Unix seconds).
#[derive(Debug, Clone)]
struct Jwt {
    token: String,
    expires: u64,
}

/// The control-plane client. Cheap to clone (one shared channel and token cache).
#[derive(Clone)]
pub(super) struct Api {
    pub(super) url: String,
    channel: Channel,
    pub(super) creds: Credentials,
    pub(super) retry: RetryPolicy,
    pub(super) timeout: Duration,
    auth: Arc<Mutex<Option<Jwt>>>,
}

impl std::fmt::Debug for Api {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Api").field("url", &self.url).field("creds", &self.creds).finish_non_exhaustive()
    }
}

/// A channel to `url` (`https://` with the web PKI roots, `http://` as plain-text HTTP/2), connected on
/// first use. No limit of its own: each call sets one (a command's output stream lasts as long as the
/// command).
pub(super) fn channel(url: &str) -> Result<Channel> {
    let bad = |e: String| Error::InvalidSpec(format!("Modal URL `{url}`: {e}"));
    let mut ep = Endpoint::from_shared(url.to_owned())
        .map_err(|e| bad(e.to_string()))?
        .connect_timeout(Duration::from_secs(10))
        .http2_keep_alive_interval(Duration::from_secs(30))
        .keep_alive_while_idle(true)
        .user_agent(concat!("sbx/", env!("CARGO_PKG_VERSION")))
        .map_err(|e| bad(e.to_string()))?;
    if url.starts_with("https://") {
        ep = ep.tls_config(ClientTlsConfig::new().with_webpki_roots()).map_err(|e| bad(e.to_string()))?;
    } else if !url.starts_with("http://") {
        return Err(bad("use https:// (or http:// for a local server)".into()));
    }
    Ok(ep.connect_lazy())
}

/// Whether `url`'s host is this machine (plain-text gRPC is allowed only there, as in the SDK).
pub(super) fn is_loopback(url: &str) -> bool {
    let Ok(u) = reqwest::Url::parse(url) else { return false };
    matches!(u.host_str(), Some("localhost" | "127.0.0.1" | "[::1]" | "::1"))
}

fn ascii(v: &str) -> Option<AsciiMetadataValue> {
    AsciiMetadataValue::try_from(v).ok()
}

/// Unix seconds now.
fn now() -> u64 {
    crate::util::unix_now()
}

/// The `exp` claim of a JWT (unverified: only to know when to fetch a new one).
pub(super) fn jwt_expiry(token: &str) -> Option<u64> {
    use base64::Engine;
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload.trim_end_matches('=')).ok()?;
    serde_json::from_slice::<serde_json::Value>(&bytes).ok()?.get("exp")?.as_u64()
}

/// Whether a call that failed with `code` may be sent again (the SDK's list, plus throttling).
pub(super) fn transient(code: Code) -> bool {
    matches!(code, Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled | Code::Internal | Code::Unknown | Code::ResourceExhausted)
}

/// The typed error for a refused call `op` (about sandbox `sandbox`, when it is about one).
pub(super) fn error(status: &Status, op: &str, sandbox: Option<&str>, after: Duration) -> Error {
    let msg = status.message();
    match (status.code(), sandbox) {
        (Code::Unauthenticated | Code::PermissionDenied, _) => Error::Auth {
            provider: NAME,
            message: format!(
                "{op}: the token was refused ({msg}); set MODAL_TOKEN_ID and MODAL_TOKEN_SECRET to a valid token \
                 pair (`modal token new` makes one) or run `sbx auth login modal`"
            ),
        },
        (Code::NotFound, Some(id)) => Error::NotFound { sandbox: id.to_owned() },
        (Code::ResourceExhausted, _) => Error::RateLimited { provider: NAME, retry_after: None },
        (Code::DeadlineExceeded, _) => Error::Timeout { op: format!("{NAME} {op}"), after },
        (Code::Unavailable, _) => Error::Unavailable { provider: NAME, message: format!("{op}: {msg}; {REACH_HINT}") },
        (code, _) => Error::Provider { provider: NAME, message: format!("{op} failed (gRPC {code:?}): {msg}") },
    }
}

/// What a call needs besides its message.
#[derive(Debug, Clone, Copy)]
pub(super) struct Call<'a> {
    /// For errors and logs (`create`, `list`…).
    pub(super) op: &'a str,
    /// The sandbox it is about (a NOT_FOUND is then [`Error::NotFound`]).
    pub(super) sandbox: Option<&'a str>,
    /// Needs the `x-modal-auth-token` JWT (the `*V2` RPCs).
    pub(super) v2: bool,
    /// Limit of one attempt (`None`: the API's default).
    pub(super) timeout: Option<Duration>,
}

impl<'a> Call<'a> {
    pub(super) fn new(op: &'a str) -> Self {
        Self { op, sandbox: None, v2: false, timeout: None }
    }
    pub(super) fn v2(op: &'a str, sandbox: Option<&'a str>) -> Self {
        Self { op, sandbox, v2: true, timeout: None }
    }
    pub(super) fn timeout(mut self, t: Duration) -> Self {
        self.timeout = Some(t);
        self
    }
}

impl Api {
    pub(super) fn new(url: String, creds: Credentials, timeout: Duration) -> Result<Self> {
        let channel = channel(&url)?;
        Ok(Self { url, channel, creds, retry: RetryPolicy::default(), timeout, auth: Arc::default() })
    }

    pub(super) fn client(&self) -> ModalClientClient<Channel> {
        ModalClientClient::new(self.channel.clone()).max_decoding_message_size(MAX_MESSAGE)
    }

    /// The metadata of every control-plane call: the token pair and who is calling.
    fn metadata(&self, map: &mut MetadataMap) {
        let pairs = [
            ("x-modal-client-version", CLIENT_VERSION),
            ("x-modal-client-type", "1"),
            ("x-modal-token-id", self.creds.token_id.as_str()),
            ("x-modal-token-secret", self.creds.token_secret.as_str()),
        ];
        for (k, v) in pairs {
            if let Some(v) = ascii(v) {
                map.insert(k, v);
            }
        }
    }

    /// The V2 auth JWT (cached; fetched again when less than a minute is left, or when `fresh`).
    async fn auth_token(&self, fresh: bool) -> Result<String> {
        if !fresh {
            if let Some(j) = self.auth.lock().expect("auth").as_ref().filter(|j| j.expires > now() + 60) {
                return Ok(j.token.clone());
            }
        }
        let resp = self.call(Call::new("get an auth token"), AuthTokenGetRequest {}, |mut c, r| async move { c.auth_token_get(r).await }).await?;
        // No `exp`: the SDK assumes 20 minutes.
        let expires = jwt_expiry(&resp.token).unwrap_or(now() + 20 * 60);
        *self.auth.lock().expect("auth") = Some(Jwt { token: resp.token.clone(), expires });
        Ok(resp.token)
    }

    /// Sends `req` by `f` until it succeeds, fails for good, or the policy's attempts run out. Every
    /// attempt carries the same `x-idempotency-key`, so the server carries a create out once however
    /// often it is sent; an UNAUTHENTICATED V2 call is tried once more with a fresh auth token.
    pub(super) async fn call<Req, Resp, F, Fut>(&self, call: Call<'_>, req: Req, f: F) -> Result<Resp>
    where
        Req: Clone,
        F: Fn(ModalClientClient<Channel>, tonic::Request<Req>) -> Fut,
        Fut: Future<Output = std::result::Result<tonic::Response<Resp>, Status>>,
    {
        let key = uuid::Uuid::new_v4().to_string();
        let limit = call.timeout.unwrap_or(self.timeout);
        let mut attempt = 0;
        let mut refreshed = false;
        let mut fresh = false;
        loop {
            let mut r = tonic::Request::new(req.clone());
            r.set_timeout(limit);
            self.metadata(r.metadata_mut());
            if let Some(v) = ascii(&key) {
                r.metadata_mut().insert("x-idempotency-key", v);
            }
            if let Some(v) = ascii(&attempt.to_string()) {
                r.metadata_mut().insert("x-retry-attempt", v);
            }
            if call.v2 {
                // Boxed: fetching the token is itself a call.
                let token = Box::pin(self.auth_token(fresh)).await?;
                if let Some(v) = ascii(&token) {
                    r.metadata_mut().insert("x-modal-auth-token", v);
                }
            }
            let status = match tokio::time::timeout(limit + Duration::from_secs(5), f(self.client(), r)).await {
                Ok(Ok(resp)) => return Ok(resp.into_inner()),
                Ok(Err(s)) => s,
                Err(_) => Status::deadline_exceeded("no answer in time"),
            };
            if status.code() == Code::Unauthenticated && call.v2 && !refreshed {
                refreshed = true;
                fresh = true;
                continue;
            }
            fresh = false;
            if !transient(status.code()) || attempt + 1 >= self.retry.attempts {
                return Err(error(&status, call.op, call.sandbox, limit));
            }
            let wait = self.retry.backoff(attempt);
            tracing::debug!(provider = NAME, op = call.op, code = ?status.code(), message = status.message(), ?wait, "retrying");
            tokio::time::sleep(wait).await;
            attempt += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jwt_expiry_reads_the_exp_claim() {
        use base64::Engine;
        let enc = |v: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v);
        let jwt = format!("{}.{}.sig", enc(r#"{"alg":"none"}"#), enc(r#"{"exp":1700000000}"#));
        assert_eq!(jwt_expiry(&jwt), Some(1_700_000_000));
        assert_eq!(jwt_expiry("not-a-jwt"), None);
    }

    #[test]
    fn statuses_become_typed_errors_that_say_what_to_do() {
        let e = error(&Status::unauthenticated("bad token"), "create", None, Duration::from_secs(1));
        assert!(matches!(e, Error::Auth { .. }));
        assert!(e.to_string().contains("MODAL_TOKEN_ID") && e.to_string().contains("sbx auth login modal"), "{e}");
        assert!(error(&Status::not_found("x"), "get", Some("sb-1"), Duration::ZERO).is_not_found());
        assert!(matches!(error(&Status::resource_exhausted("x"), "list", None, Duration::ZERO), Error::RateLimited { .. }));
        assert!(transient(Code::Unavailable) && !transient(Code::InvalidArgument) && !transient(Code::NotFound));
        assert!(is_loopback("http://127.0.0.1:9") && is_loopback("http://localhost") && !is_loopback("http://10.0.0.1"));
    }
}
