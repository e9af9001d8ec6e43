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

impl Cli {
    /// In sandbox `name`: an exit code comes back, and 16 MiB of random bytes arrive as the sandbox
    /// hashes them (output is bytes through the provider's route).
    pub(crate) async fn exit_code_and_bytes(&self, name: &str) {
        let out = self.run(&["exec", name, "--", "sh", "-c", "exit 3"]).await;
        assert_eq!(out.status.code(), Some(3));
        let want = self.ok(&["exec", name, "--", "sh", "-c", crate::output_bytes::RANDOM_16_MIB]).await;
        let got = self.ok(&["exec", name, "--", "cat", "/tmp/random.bin"]).await;
        crate::output_bytes::assert_sha256sum(&want.stdout, &got.stdout);
    }

    /// `sbx cp` of a file holding `text` into `dir` of sandbox `name` and back; the copy reads the same.
    pub(crate) async fn copy_in_and_out(&self, name: &str, dir: &str, text: &str) {
        let src = self.home.path().join("hello.txt");
        std::fs::write(&src, text).expect("write");
        let inside = format!("{dir}/hello.txt");
        self.ok(&["exec", name, "--", "mkdir", "-p", dir]).await;
        self.ok(&["cp", src.to_str().expect("utf8"), &format!("{name}:{inside}")]).await;
        let out = self.ok(&["exec", name, "--", "cat", &inside]).await;
        assert_eq!(String::from_utf8_lossy(&out.stdout), text);
        let back = self.home.path().join("back.txt");
        self.ok(&["cp", &format!("{name}:{inside}"), back.to_str().expect("utf8")]).await;
        assert_eq!(std::fs::read_to_string(&back).expect("read"), text);
    }

    /// A mock-agent turn in sandbox `name` answers with `line`.
    pub(crate) async fn mock_prompt_echoes(&self, name: &str, line: &str) {
        let out = self.ok(&["prompt", name, &format!("echo {line}"), "--agent", "mock"]).await;
        assert_eq!(String::from_utf8_lossy(&out.stdout), format!("{line}\n"));
    }
}
