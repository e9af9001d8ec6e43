//! The fake's control plane (`modal.client.ModalClient`): apps, images, sandboxes (one container
//! each, with their tunnels and timeouts).

use std::collections::BTreeMap;
use std::pin::Pin;
use std::sync::{Arc, Weak};
use std::time::Duration;

use futures::Stream;
use sbx_providers::modal::proto::client::{self as pb, generic_result::GenericStatus, modal_client_server::ModalClient};
use tonic::{Request, Response, Status};

use super::{docker, now, Shared, CONTAINER_LABEL};

/// One sandbox.
#[derive(Clone)]
pub(crate) struct Sb {
    pub(crate) id: String,
    pub(crate) app_id: String,
    pub(crate) name: String,
    pub(crate) image_id: String,
    pub(crate) container: String,
    pub(crate) task_id: String,
    pub(crate) workdir: Option<String>,
    pub(crate) tags: Vec<pb::SandboxTag>,
    pub(crate) created_at: f64,
    pub(crate) timeout_secs: u32,
    pub(crate) tunnels: Vec<pb::TunnelData>,
    pub(crate) network: pb::NetworkAccess,
    /// Set once it has ended (terminated, timed out, or its entrypoint exited).
    pub(crate) result: Option<pb::GenericResult>,
    /// Being ended (its container is being removed).
    pub(crate) ending: bool,
    /// Closes its tunnel listeners when dropped with the last copy.
    pub(crate) _tunnels_open: Arc<Vec<tokio::sync::oneshot::Sender<()>>>,
}

pub(crate) struct Control(pub(crate) Arc<Shared>);

fn id(prefix: &str) -> String {
    format!("{prefix}-{}", crate::random_token())
}

fn result(status: GenericStatus, exitcode: i32, exception: &str) -> pb::GenericResult {
    pb::GenericResult { status: status as i32, exitcode, exception: exception.into(), traceback: String::new() }
}

fn not_found(id: &str) -> Status {
    Status::not_found(format!("Sandbox {id} not found"))
}

impl Shared {
    fn sandbox(&self, id: &str) -> Result<Sb, Status> {
        self.sandboxes.lock().unwrap().get(id).cloned().ok_or_else(|| not_found(id))
    }

    /// Ends sandbox `id` with `r` (unless it already ended): its container is removed first, so a
    /// sandbox that reports a result has none left.
    pub(crate) async fn end(&self, id: &str, r: pb::GenericResult) -> Option<pb::GenericResult> {
        let container = {
            let mut map = self.sandboxes.lock().unwrap();
            let sb = map.get_mut(id)?;
            if sb.result.is_some() || sb.ending {
                // Ended, or being ended by someone else (the entrypoint watcher sees the removal).
                return sb.result.clone();
            }
            sb.ending = true;
            sb.container.clone()
        };
        let _ = docker(&["rm", "-f", "-v", &container]).await;
        let mut map = self.sandboxes.lock().unwrap();
        let sb = map.get_mut(id)?;
        if sb.result.is_none() {
            sb.result = Some(r);
            sb.tunnels.clear();
            sb._tunnels_open = Arc::default();
            return None;
        }
        sb.result.clone()
    }

    async fn internal_network(&self) -> Result<String, Status> {
        self.network
            .get_or_try_init(|| async {
                let name = format!("fake-modal-{}-internal", self.port);
                let label = format!("{CONTAINER_LABEL}=modal");
                docker(&["network", "create", "--internal", "--label", &label, &name]).await.map_err(Status::internal)?;
                Ok(name)
            })
            .await
            .cloned()
    }
}

/// A loopback listener forwarding every connection to `ip:port` (a tunnel, minus Modal's TLS).
async fn open_tunnel(ip: String, port: u16) -> Result<(u16, tokio::sync::oneshot::Sender<()>), Status> {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0)).await.map_err(|e| Status::internal(e.to_string()))?;
    let local = listener.local_addr().map_err(|e| Status::internal(e.to_string()))?.port();
    let (tx, mut rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = &mut rx => return,
                conn = listener.accept() => {
                    let Ok((mut inbound, _)) = conn else { continue };
                    let target = format!("{ip}:{port}");
                    tokio::spawn(async move {
                        if let Ok(mut out) = tokio::net::TcpStream::connect(&target).await {
                            let _ = tokio::io::copy_bidirectional(&mut inbound, &mut out).await;
                        }
                    });
                }
            }
        }
    });
    Ok((local, tx))
}

type Stream2<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send>>;

#[tonic::async_trait]
impl ModalClient for Control {
    async fn app_get_or_create(&self, req: Request<pb::AppGetOrCreateRequest>) -> Result<Response<pb::AppGetOrCreateResponse>, Status> {
        self.0.gate("AppGetOrCreate", req.metadata(), false)?;
        let r = req.into_inner();
        if r.app_name.is_empty() {
            return Err(Status::invalid_argument("app_name is required"));
        }
        let key = format!("{}/{}", r.environment_name, r.app_name);
        let app_id = self.0.apps.lock().unwrap().entry(key).or_insert_with(|| id("ap")).clone();
        Ok(Response::new(pb::AppGetOrCreateResponse { app_id }))
    }

    async fn auth_token_get(&self, req: Request<pb::AuthTokenGetRequest>) -> Result<Response<pb::AuthTokenGetResponse>, Status> {
        self.0.gate("AuthTokenGet", req.metadata(), false)?;
        let token = self.0.jwt();
        self.0.auth_tokens.lock().unwrap().insert(token.clone());
        Ok(Response::new(pb::AuthTokenGetResponse { token }))
    }

    async fn client_hello(&self, req: Request<()>) -> Result<Response<pb::ClientHelloResponse>, Status> {
        self.0.gate("ClientHello", req.metadata(), false)?;
        Ok(Response::new(pb::ClientHelloResponse { warning: String::new(), image_builder_version: "2025.06".into() }))
    }

    async fn environment_get_or_create(
        &self,
        req: Request<pb::EnvironmentGetOrCreateRequest>,
    ) -> Result<Response<pb::EnvironmentGetOrCreateResponse>, Status> {
        self.0.gate("EnvironmentGetOrCreate", req.metadata(), false)?;
        let name = req.into_inner().deployment_name;
        let settings = pb::EnvironmentSettings { image_builder_version: "2025.06".into(), webhook_suffix: "modal.run".into() };
        let metadata = pb::EnvironmentMetadata { name: if name.is_empty() { "main".into() } else { name }, settings: Some(settings) };
        Ok(Response::new(pb::EnvironmentGetOrCreateResponse { environment_id: "en-fake".into(), metadata: Some(metadata) }))
    }

    async fn image_get_or_create(&self, req: Request<pb::ImageGetOrCreateRequest>) -> Result<Response<pb::ImageGetOrCreateResponse>, Status> {
        self.0.gate("ImageGetOrCreate", req.metadata(), false)?;
        let r = req.into_inner();
        let cmds = r.image.map(|i| i.dockerfile_commands).unwrap_or_default();
        let from = cmds.first().and_then(|c| c.strip_prefix("FROM ")).map(|s| s.trim().to_owned());
        let Some(from) = from else { return Err(Status::invalid_argument("the fake builds images from `FROM <image>` only")) };
        let (docker_image, res) = if cmds.len() == 1 {
            match docker(&["image", "inspect", "--format", "{{.Id}}", &from]).await {
                Ok(_) => (from.clone(), result(GenericStatus::Success, 0, "")),
                Err(_) => (from.clone(), result(GenericStatus::Failure, 1, &format!("Image {from} not found (the fake only runs local images)"))),
            }
        } else {
            // More than a FROM: really build it (labelled, so the fake's images can be found).
            let dir = tempfile::tempdir().map_err(|e| Status::internal(e.to_string()))?;
            std::fs::write(dir.path().join("Dockerfile"), cmds.join("\n") + "\n").map_err(|e| Status::internal(e.to_string()))?;
            let tag = format!("fake-modal-image:{}", &crate::random_token()[..12]);
            let label = format!("{CONTAINER_LABEL}=modal");
            let path = dir.path().to_string_lossy().into_owned();
            match docker(&["build", "-q", "--label", &label, "-t", &tag, &path]).await {
                Ok(_) => (tag, result(GenericStatus::Success, 0, "")),
                Err(e) => (tag, result(GenericStatus::Failure, 1, &format!("Image build failed: {e}"))),
            }
        };
        let image_id = id("im");
        self.0.images.lock().unwrap().insert(image_id.clone(), (docker_image, res.clone()));
        let metadata = pb::ImageMetadata { workdir: None, image_builder_version: Some(r.builder_version) };
        Ok(Response::new(pb::ImageGetOrCreateResponse { image_id, result: Some(res), metadata: Some(metadata) }))
    }

    type ImageJoinStreamingStream = Stream2<pb::ImageJoinStreamingResponse>;

    async fn image_join_streaming(&self, req: Request<pb::ImageJoinStreamingRequest>) -> Result<Response<Self::ImageJoinStreamingStream>, Status> {
        self.0.gate("ImageJoinStreaming", req.metadata(), false)?;
        let r = req.into_inner();
        let Some((_, res)) = self.0.images.lock().unwrap().get(&r.image_id).cloned() else {
            return Err(Status::not_found(format!("Image {} not found", r.image_id)));
        };
        let msg = pb::ImageJoinStreamingResponse { result: Some(res), entry_id: "1".into(), eof: true, metadata: Some(pb::ImageMetadata::default()) };
        Ok(Response::new(Box::pin(futures::stream::iter([Ok(msg)]))))
    }

    async fn sandbox_create_v2(&self, req: Request<pb::SandboxCreateV2Request>) -> Result<Response<pb::SandboxCreateV2Response>, Status> {
        self.0.gate("SandboxCreateV2", req.metadata(), true)?;
        let key = req.metadata().get("x-idempotency-key").and_then(|v| v.to_str().ok()).map(str::to_owned);
        let r = req.into_inner();
        let existing = key.as_ref().and_then(|k| self.0.idempotent.lock().unwrap().get(k).cloned());
        let sb = match existing {
            // The same call again (a retry after a lost answer): the same sandbox, not a second one.
            Some(id) => self.0.sandbox(&id)?,
            None => {
                let sb = create(&self.0, r).await?;
                if let Some(k) = key {
                    self.0.idempotent.lock().unwrap().insert(k, sb.id.clone());
                }
                sb
            }
        };
        self.0.lose("SandboxCreateV2")?;
        let jwt = self.0.jwt();
        self.0.router_jwts.lock().unwrap().insert(jwt.clone(), sb.id.clone());
        Ok(Response::new(pb::SandboxCreateV2Response {
            sandbox_id: sb.id.clone(),
            tunnels: sb.tunnels.clone(),
            task_id: sb.task_id.clone(),
            metadata: Some(pb::SandboxHandleMetadata { result: None, app_id: sb.app_id.clone() }),
            command_router_access: Some(pb::CommandRouterAccess { jwt, url: format!("http://127.0.0.1:{}", self.0.port) }),
            sandbox_token: String::new(),
        }))
    }

    async fn sandbox_get_command_router_access(
        &self,
        req: Request<pb::SandboxGetCommandRouterAccessRequest>,
    ) -> Result<Response<pb::SandboxGetCommandRouterAccessResponse>, Status> {
        self.0.gate("SandboxGetCommandRouterAccess", req.metadata(), true)?;
        use pb::sandbox_get_command_router_access_request::Target;
        let sb = match req.into_inner().target {
            Some(Target::SandboxId(id)) => self.0.sandbox(&id)?,
            Some(Target::TaskId(t)) => {
                self.0.sandboxes.lock().unwrap().values().find(|s| s.task_id == t).cloned().ok_or_else(|| Status::not_found("task not found"))?
            }
            None => return Err(Status::invalid_argument("sandbox_id or task_id is required")),
        };
        let jwt = self.0.jwt();
        self.0.router_jwts.lock().unwrap().insert(jwt.clone(), sb.id.clone());
        let url = format!("http://127.0.0.1:{}", self.0.port);
        Ok(Response::new(pb::SandboxGetCommandRouterAccessResponse { jwt, url, worker_ipv4_address: "127.0.0.1".into() }))
    }

    async fn sandbox_get_task_id_v2(&self, req: Request<pb::SandboxGetTaskIdRequest>) -> Result<Response<pb::SandboxGetTaskIdResponse>, Status> {
        self.0.gate("SandboxGetTaskIdV2", req.metadata(), true)?;
        let sb = self.0.sandbox(&req.into_inner().sandbox_id)?;
        Ok(Response::new(pb::SandboxGetTaskIdResponse { task_id: Some(sb.task_id), task_result: sb.result }))
    }

    async fn sandbox_get_tunnels_v2(&self, req: Request<pb::SandboxGetTunnelsRequest>) -> Result<Response<pb::SandboxGetTunnelsResponse>, Status> {
        self.0.gate("SandboxGetTunnelsV2", req.metadata(), true)?;
        let sb = self.0.sandbox(&req.into_inner().sandbox_id)?;
        Ok(Response::new(pb::SandboxGetTunnelsResponse { result: sb.result, tunnels: sb.tunnels }))
    }

    async fn sandbox_list_v2(&self, req: Request<pb::SandboxListRequest>) -> Result<Response<pb::SandboxListResponse>, Status> {
        self.0.gate("SandboxListV2", req.metadata(), true)?;
        let r = req.into_inner();
        let mut all: Vec<Sb> = self
            .0
            .sandboxes
            .lock()
            .unwrap()
            .values()
            .filter(|s| r.app_id.is_empty() || s.app_id == r.app_id)
            .filter(|s| r.include_finished || s.result.is_none())
            .filter(|s| r.before_timestamp <= 0.0 || s.created_at < r.before_timestamp)
            .filter(|s| r.tags.iter().all(|t| s.tags.iter().any(|h| h.tag_name == t.tag_name && h.tag_value == t.tag_value)))
            .cloned()
            .collect();
        all.sort_by(|a, b| b.created_at.total_cmp(&a.created_at));
        // Small pages, so clients must page.
        let sandboxes = all.into_iter().take(4).map(|s| info(&s)).collect();
        Ok(Response::new(pb::SandboxListResponse { sandboxes }))
    }

    async fn sandbox_tags_get_v2(&self, req: Request<pb::SandboxTagsGetRequest>) -> Result<Response<pb::SandboxTagsGetResponse>, Status> {
        self.0.gate("SandboxTagsGetV2", req.metadata(), true)?;
        let sb = self.0.sandbox(&req.into_inner().sandbox_id)?;
        Ok(Response::new(pb::SandboxTagsGetResponse { tags: sb.tags }))
    }

    async fn sandbox_terminate_v2(&self, req: Request<pb::SandboxTerminateRequest>) -> Result<Response<pb::SandboxTerminateResponse>, Status> {
        self.0.gate("SandboxTerminateV2", req.metadata(), true)?;
        let id = req.into_inner().sandbox_id;
        self.0.sandbox(&id)?;
        let existing = self.0.end(&id, result(GenericStatus::Terminated, 0, "")).await;
        self.0.lose("SandboxTerminateV2")?;
        Ok(Response::new(pb::SandboxTerminateResponse { existing_result: existing }))
    }

    async fn sandbox_wait_v2(&self, req: Request<pb::SandboxWaitRequest>) -> Result<Response<pb::SandboxWaitResponse>, Status> {
        self.0.gate("SandboxWaitV2", req.metadata(), true)?;
        let r = req.into_inner();
        let deadline = tokio::time::Instant::now() + Duration::from_secs_f32(r.timeout.max(0.0)).min(self.0.config.max_wait);
        loop {
            let sb = self.0.sandbox(&r.sandbox_id)?;
            if sb.result.is_some() || tokio::time::Instant::now() >= deadline {
                let metadata = pb::SandboxHandleMetadata { result: sb.result.clone(), app_id: sb.app_id };
                return Ok(Response::new(pb::SandboxWaitResponse { result: sb.result, metadata: Some(metadata) }));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

fn info(s: &Sb) -> pb::SandboxInfo {
    pb::SandboxInfo {
        id: s.id.clone(),
        created_at: s.created_at,
        task_info: Some(pb::TaskInfo { id: s.task_id.clone(), started_at: s.created_at, result: s.result.clone(), sandbox_id: s.id.clone(), ..Default::default() }),
        app_id: s.app_id.clone(),
        tags: s.tags.clone(),
        name: s.name.clone(),
        image_id: s.image_id.clone(),
        timeout_secs: s.timeout_secs,
        tunnels: s.tunnels.clone(),
        metadata: Some(pb::SandboxHandleMetadata { result: s.result.clone(), app_id: s.app_id.clone() }),
    }
}

/// Makes the container, its tunnels and the watcher that notices its entrypoint exit.
async fn create(st: &Arc<Shared>, r: pb::SandboxCreateV2Request) -> Result<Sb, Status> {
    if !st.apps.lock().unwrap().values().any(|a| *a == r.app_id) {
        return Err(Status::not_found(format!("App {} not found", r.app_id)));
    }
    let def = r.definition.ok_or_else(|| Status::invalid_argument("definition is required"))?;
    let Some((image, res)) = st.images.lock().unwrap().get(&def.image_id).cloned() else {
        return Err(Status::not_found(format!("Image {} not found", def.image_id)));
    };
    if res.status != GenericStatus::Success as i32 {
        return Err(Status::failed_precondition(format!("Image {} did not build: {}", def.image_id, res.exception)));
    }
    if let Some(w) = def.workdir.as_deref().filter(|w| !w.starts_with('/')) {
        return Err(Status::invalid_argument(format!("workdir `{w}` must be absolute")));
    }
    let name = def.name.clone().unwrap_or_default();
    if !name.is_empty() {
        let taken = st.sandboxes.lock().unwrap().values().any(|s| s.app_id == r.app_id && s.name == name && s.result.is_none());
        if taken {
            return Err(Status::already_exists(format!("A sandbox named {name} is already running in this app")));
        }
    }
    use pb::network_access::NetworkAccessType as N;
    let network = def.network_access.clone().unwrap_or(pb::NetworkAccess { network_access_type: N::Open as i32, ..Default::default() });
    let ports: Vec<pb::PortSpec> = match &def.open_ports_oneof {
        Some(pb::sandbox::OpenPortsOneof::OpenPorts(p)) => p.ports.clone(),
        None => vec![],
    };
    if network.network_access_type == N::Blocked as i32 && !ports.is_empty() {
        return Err(Status::invalid_argument("open ports need network access"));
    }
    let sid = format!("sb-{}", crate::random_token());
    let container = format!("fake-modal-{}-{}", st.port, &crate::random_token()[..12]);
    let mut args: Vec<String> = ["run", "-d", "--init", "--name", &container, "--label", &format!("{CONTAINER_LABEL}=modal"), "--label", &format!("{CONTAINER_LABEL}.sandbox={sid}")]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
    if let Some(w) = &def.workdir {
        args.extend(["-w".into(), w.clone()]);
    }
    if let Some(res) = &def.resources {
        let host = std::thread::available_parallelism().map(|n| n.get() as f64).unwrap_or(1.0);
        if res.milli_cpu > 0 {
            args.extend(["--cpus".into(), format!("{:.3}", (f64::from(res.milli_cpu) / 1000.0).min(host))]);
        }
        if res.memory_mb > 0 {
            args.extend(["--memory".into(), format!("{}m", res.memory_mb.max(6))]);
        }
    }
    if network.network_access_type != N::Open as i32 {
        args.extend(["--network".into(), st.internal_network().await?]);
    }
    let mut env = BTreeMap::new();
    for s in &r.secret_sources {
        match &s.source {
            Some(pb::secret_source::Source::Env(m)) => env.extend(m.contents.clone()),
            Some(pb::secret_source::Source::SecretId(id)) => return Err(Status::not_found(format!("Secret {id} not found (the fake has no stored secrets)"))),
            None => {}
        }
    }
    for (k, v) in &env {
        args.extend(["-e".into(), format!("{k}={v}")]);
    }
    args.push(image);
    if def.entrypoint_args.is_empty() {
        args.extend(["sleep".into(), "infinity".into()]);
    } else {
        args.extend(def.entrypoint_args.iter().cloned());
    }
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    if let Err(e) = docker(&argv).await {
        let _ = docker(&["rm", "-f", &container]).await;
        return Err(Status::internal(format!("failed to start the sandbox: {e}")));
    }
    let ip = docker(&["inspect", "-f", "{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}", &container]).await.unwrap_or_default();
    let mut tunnels = Vec::new();
    let mut closers = Vec::new();
    for p in &ports {
        let cport = u16::try_from(p.port).map_err(|_| Status::invalid_argument("port out of range"))?;
        let (local, tx) = open_tunnel(ip.clone(), cport).await?;
        closers.push(tx);
        tunnels.push(pb::TunnelData {
            host: "127.0.0.1".into(),
            port: u32::from(local),
            unencrypted_host: p.unencrypted.then(|| "127.0.0.1".to_owned()),
            unencrypted_port: p.unencrypted.then_some(u32::from(local)),
            container_port: p.port,
        });
    }
    let sb = Sb {
        id: sid.clone(),
        app_id: r.app_id,
        name,
        image_id: def.image_id,
        container: container.clone(),
        task_id: format!("ta-{}", &crate::random_token()[..24]),
        workdir: def.workdir,
        tags: r.tags,
        created_at: now(),
        timeout_secs: if def.timeout_secs == 0 { 300 } else { def.timeout_secs },
        tunnels,
        network,
        result: None,
        ending: false,
        _tunnels_open: Arc::new(closers),
    };
    st.sandboxes.lock().unwrap().insert(sid.clone(), sb.clone());
    // The entrypoint's exit ends the sandbox (unless something ended it first).
    let weak = Arc::downgrade(st);
    tokio::spawn(async move {
        let code = docker(&["wait", &container]).await;
        let Some(st) = weak.upgrade() else { return };
        if let Ok(code) = code {
            let code: i32 = code.trim().parse().unwrap_or(-1);
            let status = if code == 0 { GenericStatus::Success } else { GenericStatus::Failure };
            st.end(&sid, result(status, code, "")).await;
        }
    });
    Ok(sb)
}

/// Ends sandboxes whose timeout ran out (every 200 ms, while the fake lives), as Modal does.
pub(crate) fn spawn_reaper(st: Weak<Shared>) {
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_millis(200)).await;
            let Some(st) = st.upgrade() else { return };
            let t = now();
            let due: Vec<String> = st
                .sandboxes
                .lock()
                .unwrap()
                .values()
                .filter(|s| s.result.is_none() && t >= s.created_at + f64::from(s.timeout_secs))
                .map(|s| s.id.clone())
                .collect();
            for id in due {
                st.end(&id, result(GenericStatus::Timeout, 0, "Sandbox timed out")).await;
            }
        }
    });
}
