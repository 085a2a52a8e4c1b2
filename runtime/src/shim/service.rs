//! containerd's Task service (ttrpc), a thin translation onto [`Tasks`]: requests in, responses
//! and errors (with the codes containerd maps to its error kinds) out.
use std::sync::Arc;

use async_trait::async_trait;
use containerd_shim::api::{
    CheckpointTaskRequest, CloseIORequest, ConnectRequest, ConnectResponse, CreateTaskRequest,
    CreateTaskResponse, DeleteRequest, DeleteResponse, ExecProcessRequest, KillRequest,
    PauseRequest, PidsRequest, PidsResponse, ResizePtyRequest, ResumeRequest, ShutdownRequest,
    StartRequest, StartResponse, StateRequest, StateResponse, StatsRequest, StatsResponse,
    UpdateTaskRequest, WaitRequest, WaitResponse,
};
use containerd_shim::protos::protobuf::well_known_types::empty::Empty;
use containerd_shim::protos::types::task::ProcessInfo;
use containerd_shim::{ExitSignal, Task, TtrpcContext, TtrpcResult};
use ttrpc::Code;

use super::io::StdioPaths;
use super::process::timestamp;
use super::stats;
use super::task::{CreateRequest, TaskError, Tasks};

/// The Task service of one shim.
pub struct Service {
    tasks: Arc<Tasks>,
    exit: Arc<ExitSignal>,
}

impl Service {
    pub fn new(tasks: Arc<Tasks>, exit: Arc<ExitSignal>) -> Service {
        Service { tasks, exit }
    }
}

fn status(code: Code, msg: String) -> ttrpc::Error {
    ttrpc::Error::RpcStatus(ttrpc::get_status(code, msg))
}

/// A task error as containerd reads it.
pub fn to_ttrpc(e: TaskError) -> ttrpc::Error {
    let code = match &e {
        TaskError::NotFound(_) => Code::NOT_FOUND,
        TaskError::AlreadyExists(_) => Code::ALREADY_EXISTS,
        TaskError::FailedPrecondition(_) => Code::FAILED_PRECONDITION,
        TaskError::Unimplemented(_) => Code::UNIMPLEMENTED,
        TaskError::Other(_) => Code::UNKNOWN,
    };
    let msg = e.to_string();
    tracing::warn!("task call failed: {msg}");
    status(code, msg)
}

trait Ttrpc<T> {
    fn tt(self) -> TtrpcResult<T>;
}

impl<T> Ttrpc<T> for Result<T, TaskError> {
    fn tt(self) -> TtrpcResult<T> {
        self.map_err(to_ttrpc)
    }
}

#[async_trait]
impl Task for Service {
    async fn state(&self, _ctx: &TtrpcContext, req: StateRequest) -> TtrpcResult<StateResponse> {
        let (p, bundle) = self.tasks.state(&req.id, &req.exec_id).await.tt()?;
        let mut r = StateResponse::new();
        r.id = req.id.clone();
        r.exec_id = req.exec_id.clone();
        r.bundle = bundle.display().to_string();
        r.pid = p.pid();
        r.status = p.status().proto().into();
        r.stdin = p.stdio.stdin.clone();
        r.stdout = p.stdio.stdout.clone();
        r.stderr = p.stdio.stderr.clone();
        r.terminal = p.stdio.terminal;
        if let Some(e) = p.exit() {
            r.exit_status = e.status;
            r.exited_at = Some(timestamp(e.at)).into();
        }
        Ok(r)
    }

    async fn create(
        &self,
        _ctx: &TtrpcContext,
        req: CreateTaskRequest,
    ) -> TtrpcResult<CreateTaskResponse> {
        if !req.checkpoint.is_empty() {
            return Err(status(
                Code::UNIMPLEMENTED,
                "restoring from a checkpoint is not supported: a container in a microVM cannot be checkpointed".into(),
            ));
        }
        tracing::info!(id = req.id, bundle = req.bundle, "create");
        let create = CreateRequest {
            id: req.id.clone(),
            bundle: req.bundle.clone(),
            rootfs: req
                .rootfs
                .iter()
                .map(|m| (m.type_.clone(), m.source.clone(), m.options.clone()))
                .collect(),
            stdio: StdioPaths {
                stdin: req.stdin.clone(),
                stdout: req.stdout.clone(),
                stderr: req.stderr.clone(),
                terminal: req.terminal,
            },
            config_path: req
                .options
                .as_ref()
                .and_then(|o| super::pod::runtime_options_config_path(&o.type_url, &o.value)),
        };
        let pid = self.tasks.create(create).await.tt()?;
        let mut r = CreateTaskResponse::new();
        r.pid = pid;
        Ok(r)
    }

    async fn start(&self, _ctx: &TtrpcContext, req: StartRequest) -> TtrpcResult<StartResponse> {
        let pid = self.tasks.start(&req.id, &req.exec_id).await.tt()?;
        let mut r = StartResponse::new();
        r.pid = pid;
        Ok(r)
    }

    async fn delete(&self, _ctx: &TtrpcContext, req: DeleteRequest) -> TtrpcResult<DeleteResponse> {
        let (pid, exit) = self.tasks.delete(&req.id, &req.exec_id).await.tt()?;
        let mut r = DeleteResponse::new();
        r.pid = pid;
        r.exit_status = exit.status;
        r.exited_at = Some(timestamp(exit.at)).into();
        Ok(r)
    }

    async fn pids(&self, _ctx: &TtrpcContext, req: PidsRequest) -> TtrpcResult<PidsResponse> {
        let pids = self.tasks.pids(&req.id).await.tt()?;
        let mut r = PidsResponse::new();
        r.processes = pids
            .into_iter()
            .map(|pid| {
                let mut p = ProcessInfo::new();
                p.pid = pid;
                p
            })
            .collect();
        Ok(r)
    }

    async fn pause(&self, _ctx: &TtrpcContext, req: PauseRequest) -> TtrpcResult<Empty> {
        self.tasks.pause(&req.id).await.tt()?;
        Ok(Empty::new())
    }

    async fn resume(&self, _ctx: &TtrpcContext, req: ResumeRequest) -> TtrpcResult<Empty> {
        self.tasks.resume(&req.id).await.tt()?;
        Ok(Empty::new())
    }

    async fn checkpoint(
        &self,
        _ctx: &TtrpcContext,
        _req: CheckpointTaskRequest,
    ) -> TtrpcResult<Empty> {
        Err(status(
            Code::UNIMPLEMENTED,
            "checkpoint is not supported: a container in a microVM cannot be checkpointed".into(),
        ))
    }

    async fn kill(&self, _ctx: &TtrpcContext, req: KillRequest) -> TtrpcResult<Empty> {
        tracing::info!(
            id = req.id,
            exec = req.exec_id,
            signal = req.signal,
            all = req.all,
            "kill"
        );
        self.tasks
            .kill(&req.id, &req.exec_id, req.signal, req.all)
            .await
            .tt()?;
        Ok(Empty::new())
    }

    async fn exec(&self, _ctx: &TtrpcContext, req: ExecProcessRequest) -> TtrpcResult<Empty> {
        let stdio = StdioPaths {
            stdin: req.stdin.clone(),
            stdout: req.stdout.clone(),
            stderr: req.stderr.clone(),
            terminal: req.terminal,
        };
        let spec = req.spec.as_ref().map(|a| a.value.as_slice()).unwrap_or(&[]);
        self.tasks
            .exec(&req.id, &req.exec_id, stdio, spec)
            .await
            .tt()?;
        Ok(Empty::new())
    }

    async fn resize_pty(&self, _ctx: &TtrpcContext, req: ResizePtyRequest) -> TtrpcResult<Empty> {
        self.tasks
            .resize(&req.id, &req.exec_id, req.width, req.height)
            .await
            .tt()?;
        Ok(Empty::new())
    }

    async fn close_io(&self, _ctx: &TtrpcContext, req: CloseIORequest) -> TtrpcResult<Empty> {
        if req.stdin {
            self.tasks.close_stdin(&req.id, &req.exec_id).await.tt()?;
        }
        Ok(Empty::new())
    }

    async fn update(&self, _ctx: &TtrpcContext, req: UpdateTaskRequest) -> TtrpcResult<Empty> {
        let Some(any) = req.resources.as_ref() else {
            return Err(status(Code::INVALID_ARGUMENT, "no resources given".into()));
        };
        // containerd sends the OCI LinuxResources as JSON (typeurl's JSON encoding).
        if serde_json::from_slice::<oci_spec::runtime::LinuxResources>(&any.value).is_err() {
            return Err(status(
                Code::INVALID_ARGUMENT,
                format!(
                    "resources of type {} are not OCI LinuxResources JSON",
                    any.type_url
                ),
            ));
        }
        self.tasks.update(&req.id, any.value.clone()).await.tt()?;
        Ok(Empty::new())
    }

    async fn wait(&self, _ctx: &TtrpcContext, req: WaitRequest) -> TtrpcResult<WaitResponse> {
        let exit = self.tasks.wait(&req.id, &req.exec_id).await.tt()?;
        let mut r = WaitResponse::new();
        r.exit_status = exit.status;
        r.exited_at = Some(timestamp(exit.at)).into();
        Ok(r)
    }

    async fn stats(&self, _ctx: &TtrpcContext, req: StatsRequest) -> TtrpcResult<StatsResponse> {
        let s = self.tasks.stats(&req.id).await.tt()?;
        let any = stats::to_any(&stats::metrics(&s))
            .map_err(|e| status(Code::INTERNAL, format!("encoding the metrics: {e}")))?;
        let mut r = StatsResponse::new();
        r.stats = Some(any).into();
        Ok(r)
    }

    async fn connect(
        &self,
        _ctx: &TtrpcContext,
        req: ConnectRequest,
    ) -> TtrpcResult<ConnectResponse> {
        let mut r = ConnectResponse::new();
        r.shim_pid = std::process::id();
        r.task_pid = self.tasks.init_pid(&req.id).await;
        r.version = crate::VERSION.to_string();
        Ok(r)
    }

    async fn shutdown(&self, _ctx: &TtrpcContext, _req: ShutdownRequest) -> TtrpcResult<Empty> {
        if self.tasks.shutdown().await {
            tracing::info!("no task left: the shim exits");
            self.exit.signal();
        }
        Ok(Empty::new())
    }
}
