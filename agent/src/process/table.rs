//! The agent's processes, by exec id.
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::{oneshot, watch};

use super::error::ProcessError;
use super::exit::ExitStatus;
use crate::stdio::pty::Pty;

/// A started process.
pub struct ProcessEntry {
    pub exec_id: String,
    pub pid: i32,
    exit: watch::Receiver<Option<ExitStatus>>,
    /// Stops the stdin pump (CloseStdin); `None` once used or without a stdin stream.
    stdin_closer: Mutex<Option<oneshot::Sender<()>>>,
    /// The terminal of a terminal-mode process.
    pub pty: Option<Pty>,
}

impl ProcessEntry {
    pub fn new(
        exec_id: String,
        pid: i32,
        exit: watch::Receiver<Option<ExitStatus>>,
        stdin_closer: Option<oneshot::Sender<()>>,
        pty: Option<Pty>,
    ) -> Self {
        ProcessEntry {
            exec_id,
            pid,
            exit,
            stdin_closer: Mutex::new(stdin_closer),
            pty,
        }
    }

    /// The exit status, once the process has been reaped.
    pub fn exit_status(&self) -> Option<ExitStatus> {
        *self.exit.borrow()
    }

    /// Waits until the process has been reaped.
    pub async fn wait(&self) -> Result<ExitStatus, ProcessError> {
        let mut rx = self.exit.clone();
        let status = rx.wait_for(Option::is_some).await.map_err(|_| {
            ProcessError::Internal(format!("exec {}: lost track of the process", self.exec_id))
        })?;
        Ok(status.expect("waited for Some"))
    }

    /// Takes the stdin closer (the first CloseStdin uses it).
    pub fn take_stdin_closer(&self) -> Option<oneshot::Sender<()>> {
        self.stdin_closer
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take()
    }
}

enum Slot {
    /// ExecProcess is still setting the process up.
    Starting,
    Running(Arc<ProcessEntry>),
}

/// Exec id -> process. Cheap to clone.
#[derive(Clone, Default)]
pub struct ProcessTable {
    slots: Arc<Mutex<HashMap<String, Slot>>>,
}

/// An exec id held for an ExecProcess in progress; released on drop unless filled.
pub struct Reservation {
    table: ProcessTable,
    exec_id: String,
    filled: bool,
}

impl ProcessTable {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, Slot>> {
        self.slots.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Holds `exec_id` for a new process.
    pub fn reserve(&self, exec_id: &str) -> Result<Reservation, ProcessError> {
        let mut slots = self.lock();
        if slots.contains_key(exec_id) {
            return Err(ProcessError::AlreadyExists(exec_id.to_string()));
        }
        slots.insert(exec_id.to_string(), Slot::Starting);
        Ok(Reservation {
            table: self.clone(),
            exec_id: exec_id.to_string(),
            filled: false,
        })
    }

    /// The running process `exec_id`.
    pub fn get(&self, exec_id: &str) -> Result<Arc<ProcessEntry>, ProcessError> {
        match self.lock().get(exec_id) {
            Some(Slot::Running(e)) => Ok(e.clone()),
            _ => Err(ProcessError::NotFound(exec_id.to_string())),
        }
    }

    /// Forgets `entry` (if still registered under its id).
    pub fn remove(&self, entry: &Arc<ProcessEntry>) {
        let mut slots = self.lock();
        if matches!(slots.get(&entry.exec_id), Some(Slot::Running(e)) if Arc::ptr_eq(e, entry)) {
            slots.remove(&entry.exec_id);
        }
    }

    /// Every running process.
    pub fn all(&self) -> Vec<Arc<ProcessEntry>> {
        self.lock()
            .values()
            .filter_map(|s| match s {
                Slot::Running(e) => Some(e.clone()),
                Slot::Starting => None,
            })
            .collect()
    }
}

impl Reservation {
    /// Registers the started process under the reserved id.
    pub fn fill(mut self, entry: Arc<ProcessEntry>) {
        self.table
            .lock()
            .insert(self.exec_id.clone(), Slot::Running(entry));
        self.filled = true;
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if !self.filled {
            let mut slots = self.table.lock();
            if matches!(slots.get(&self.exec_id), Some(Slot::Starting)) {
                slots.remove(&self.exec_id);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reservations_block_reuse_until_released() {
        let table = ProcessTable::default();
        let r = table.reserve("a").unwrap();
        assert_eq!(
            table.reserve("a").err(),
            Some(ProcessError::AlreadyExists("a".into()))
        );
        assert!(matches!(table.get("a"), Err(ProcessError::NotFound(_))));
        drop(r);
        let r = table.reserve("a").unwrap();
        let (_tx, rx) = watch::channel(None);
        let entry = Arc::new(ProcessEntry::new("a".into(), 1, rx, None, None));
        r.fill(entry.clone());
        assert_eq!(table.get("a").unwrap().pid, 1);
        assert_eq!(table.all().len(), 1);
        table.remove(&entry);
        assert!(table.get("a").is_err());
    }
}
