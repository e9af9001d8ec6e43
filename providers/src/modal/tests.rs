use super::*;

fn provider() -> ModalProvider {
    ModalProvider::new(Credentials { token_id: "ak-1".into(), token_secret: "as-1".into() }).expect("provider")
}

// A runtime: the gRPC channel is made lazily, but its connector needs a Tokio reactor.
#[tokio::test]
async fn definitions_carry_ports_resources_network_and_timeout() {
    let p = provider();
    let mut spec = SandboxSpec::named("a b");
    spec.ports = vec![3000, 2468];
    spec.cpus = Some(1.5);
    spec.memory_mb = Some(1000);
    spec.ttl = Some(Duration::from_secs(600));
    let d = p.definition(&spec, "im-1".into(), "sbx-a-b-1234");
    let Some(pb::sandbox::OpenPortsOneof::OpenPorts(ports)) = &d.open_ports_oneof else { panic!("{d:?}") };
    assert_eq!(ports.ports.iter().map(|p| (p.port, p.unencrypted)).collect::<Vec<_>>(), [(2468, false), (3000, false)]);
    let r = d.resources.expect("resources");
    assert_eq!((r.milli_cpu, r.memory_mb, d.timeout_secs), (1500, 1000, 600));
    assert_eq!(d.network_access.as_ref().map(|n| n.network_access_type), Some(pb::network_access::NetworkAccessType::Open as i32));
    assert_eq!(d.entrypoint_args, ["sleep", "infinity"]);
    spec.network = crate::Network::None;
    let d = p.clone().with_cidr_allowlist(vec!["10.0.0.0/8".into()]).definition(&spec, "im-1".into(), "n");
    let n = d.network_access.expect("network");
    assert_eq!((n.network_access_type, n.allowed_cidrs), (pb::network_access::NetworkAccessType::Allowlist as i32, vec!["10.0.0.0/8".to_owned()]));
    spec.ttl = Some(Duration::from_secs(100 * 3600));
    assert_eq!(p.definition(&spec, "im".into(), "n").timeout_secs, 24 * 3600, "capped at Modal's maximum");
}

#[test]
fn tags_mark_the_sandbox_as_sbx_s() {
    let mut spec = SandboxSpec::named("x");
    spec.labels.insert("team".into(), "infra".into());
    let t = ModalProvider::tags(&spec);
    assert_eq!(t[labels::MANAGED], "true");
    assert_eq!(t[labels::NAME], "x");
    assert_eq!(t["team"], "infra");
    assert_eq!(labels_of(&to_tags(&t)), t);
}

// A runtime: the gRPC channel is made lazily, but its connector needs a Tokio reactor.
#[tokio::test]
async fn tunnel_urls_are_the_sdk_s() {
    let p = provider();
    let t = |host: &str, port| pb::TunnelData { host: host.into(), port, container_port: 2468, ..Default::default() };
    assert_eq!(p.tunnel_url(&t("abc.modal.host", 443)), "https://abc.modal.host");
    assert_eq!(p.tunnel_url(&t("abc.modal.host", 8443)), "https://abc.modal.host:8443");
    assert_eq!(p.with_tunnel_scheme("http").tunnel_url(&t("127.0.0.1", 4000)), "http://127.0.0.1:4000");
}

// A runtime: the gRPC channel is made lazily, but its connector needs a Tokio reactor.
#[tokio::test]
async fn a_missing_token_and_a_stored_key_are_handled() {
    let e = ModalProvider::new(Credentials { token_id: String::new(), token_secret: "s".into() }).expect_err("no id");
    assert!(e.to_string().contains("MODAL_TOKEN_ID") && e.to_string().contains("sbx auth login modal"), "{e}");
    let p = ModalProvider::from_key("ak-1:as-2").expect("provider");
    assert_eq!((p.api.creds.token_id.as_str(), p.api.creds.token_secret.as_str()), ("ak-1", "as-2"));
    assert!(!format!("{p:?}").contains("as-2"), "the secret is never printed");
}

#[test]
fn ended_sandboxes_say_so() {
    use pb::generic_result::GenericStatus as S;
    let r = |s: S| pb::GenericResult { status: s as i32, ..Default::default() };
    assert!(finished("sb-1", &r(S::Terminated)).is_not_found());
    assert!(finished("sb-1", &r(S::Timeout)).to_string().contains("timeout ran out"));
    assert!(matches!(finished("sb-1", &r(S::Failure)), Error::NotRunning { .. }));
}
