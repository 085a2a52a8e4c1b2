//! The task events the shim publishes to containerd (through the crate's [`RemotePublisher`],
//! which queues and retries): TaskCreate, TaskStart, TaskExit, TaskOOM (when the container's init
//! exits after an OOM kill in its guest cgroup), TaskExecAdded, TaskExecStarted,
//! TaskPaused, TaskResumed, TaskDelete.
use containerd_shim::protos::events::task::{
    TaskCreate, TaskDelete, TaskExecAdded, TaskExecStarted, TaskExit, TaskIO, TaskOOM, TaskPaused,
    TaskResumed, TaskStart,
};
use containerd_shim::protos::protobuf::MessageDyn;
use containerd_shim::protos::topics;
use containerd_shim::publisher::RemotePublisher;
use containerd_shim::Context;

use super::io::StdioPaths;
use super::process::{timestamp, Exit};

/// Publishes to containerd in the shim's namespace (nowhere when there is no publisher: tests).
pub struct Events {
    publisher: Option<RemotePublisher>,
    namespace: String,
}

impl Events {
    pub fn new(publisher: Option<RemotePublisher>, namespace: &str) -> Events {
        Events {
            publisher,
            namespace: namespace.to_string(),
        }
    }

    async fn publish(&self, topic: &str, event: Box<dyn MessageDyn>) {
        let Some(p) = &self.publisher else {
            return;
        };
        if let Err(e) = p
            .publish(Context::default(), topic, &self.namespace, event)
            .await
        {
            tracing::warn!("publishing {topic}: {e}");
        }
    }

    pub async fn create(&self, id: &str, bundle: &str, stdio: &StdioPaths, pid: u32) {
        let mut io = TaskIO::new();
        io.stdin = stdio.stdin.clone();
        io.stdout = stdio.stdout.clone();
        io.stderr = stdio.stderr.clone();
        io.terminal = stdio.terminal;
        let mut ev = TaskCreate::new();
        ev.container_id = id.to_string();
        ev.bundle = bundle.to_string();
        ev.io = Some(io).into();
        ev.pid = pid;
        self.publish(topics::TASK_CREATE_EVENT_TOPIC, Box::new(ev))
            .await;
    }

    pub async fn start(&self, id: &str, pid: u32) {
        let mut ev = TaskStart::new();
        ev.container_id = id.to_string();
        ev.pid = pid;
        self.publish(topics::TASK_START_EVENT_TOPIC, Box::new(ev))
            .await;
    }

    /// `exec_id`: the process's (the container id for the init, as containerd expects).
    pub async fn exit(&self, id: &str, exec_id: &str, pid: u32, exit: Exit) {
        let mut ev = TaskExit::new();
        ev.container_id = id.to_string();
        ev.id = exec_id.to_string();
        ev.pid = pid;
        ev.exit_status = exit.status;
        ev.exited_at = Some(timestamp(exit.at)).into();
        self.publish(topics::TASK_EXIT_EVENT_TOPIC, Box::new(ev))
            .await;
    }

    /// The container's cgroup saw an OOM kill.
    pub async fn oom(&self, id: &str) {
        let mut ev = TaskOOM::new();
        ev.container_id = id.to_string();
        self.publish(topics::TASK_OOM_EVENT_TOPIC, Box::new(ev))
            .await;
    }

    pub async fn exec_added(&self, id: &str, exec_id: &str) {
        let mut ev = TaskExecAdded::new();
        ev.container_id = id.to_string();
        ev.exec_id = exec_id.to_string();
        self.publish(topics::TASK_EXEC_ADDED_EVENT_TOPIC, Box::new(ev))
            .await;
    }

    pub async fn exec_started(&self, id: &str, exec_id: &str, pid: u32) {
        let mut ev = TaskExecStarted::new();
        ev.container_id = id.to_string();
        ev.exec_id = exec_id.to_string();
        ev.pid = pid;
        self.publish(topics::TASK_EXEC_STARTED_EVENT_TOPIC, Box::new(ev))
            .await;
    }

    pub async fn paused(&self, id: &str) {
        let mut ev = TaskPaused::new();
        ev.container_id = id.to_string();
        self.publish(topics::TASK_PAUSED_EVENT_TOPIC, Box::new(ev))
            .await;
    }

    pub async fn resumed(&self, id: &str) {
        let mut ev = TaskResumed::new();
        ev.container_id = id.to_string();
        self.publish(topics::TASK_RESUMED_EVENT_TOPIC, Box::new(ev))
            .await;
    }

    pub async fn delete(&self, id: &str, pid: u32, exit: Exit) {
        let mut ev = TaskDelete::new();
        ev.container_id = id.to_string();
        ev.pid = pid;
        ev.exit_status = exit.status;
        ev.exited_at = Some(timestamp(exit.at)).into();
        self.publish(topics::TASK_DELETE_EVENT_TOPIC, Box::new(ev))
            .await;
    }
}
