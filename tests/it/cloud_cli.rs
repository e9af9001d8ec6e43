//! `sbx` as a subprocess pointed at a cloud provider's fake, with a home of its own: one harness for
//! the E2B, Daytona, Vercel and Modal CLI tests (async, so the fake keeps serving meanwhile).

/// A home (state, config, data) and the fake's environment (its URLs and keys).
pub(crate) struct Cli {
    env: Vec<(String, String)>,
    pub(crate) home: tempfile::TempDir,
}

impl Cli {
    /// `env` is what points sbx at the fake (its `env()`).
    pub(crate) fn new(env: Vec<(String, String)>) -> Self {
        Self { env, home: tempfile::tempdir().expect("tempdir") }
    }

    pub(crate) fn command(&self, args: &[&str]) -> tokio::process::Command {
        let mut c = tokio::process::Command::new(sbx_tests::bin("sbx"));
        c.args(args)
            .env("XDG_STATE_HOME", self.home.path().join("state"))
            .env("XDG_CONFIG_HOME", self.home.path().join("config"))
            .env("XDG_DATA_HOME", self.home.path().join("data"))
            .env("SBX_RUNTIME", sbx_tests::static_runtime())
            .env("NO_COLOR", "1")
            .env_remove("VERCEL_OIDC_TOKEN")
            .env_remove("VERCEL_OIDC_TOKEN_FILE");
        for (k, v) in &self.env {
            c.env(k, v);
        }
        c
    }

    pub(crate) async fn run(&self, args: &[&str]) -> std::process::Output {
        self.command(args).output().await.expect("run sbx")
    }

    pub(crate) async fn ok(&self, args: &[&str]) -> std::process::Output {
        let out = self.run(args).await;
        assert!(out.status.success(), "sbx {args:?} failed ({:?}):\n{}", out.status.code(), String::from_utf8_lossy(&out.stderr));
        out
    }
}
