//! The device-thread loop with a scripted handler: start, events, wake-ups, timeouts, stop
//! and join, a broken device, a panicking handler.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use super::*;
use crate::devices::virtio::test_utils::{eventfd, wait_until};

const TOKEN_EVT: u64 = 7;

/// Counts what the loop calls; fails or panics on the event value it is told to.
struct Script {
    epoll: Epoll,
    evt: EventFd,
    timeout_ms: i32,
    fail_on: Option<u64>,
    panic_on: Option<u64>,
    /// (starts, events, wake-ups), visible while the thread runs.
    seen: Arc<Mutex<(usize, Vec<u64>, usize)>>,
    dropped: Arc<AtomicUsize>,
}

impl Drop for Script {
    fn drop(&mut self) {
        self.dropped.fetch_add(1, Ordering::SeqCst);
    }
}

impl EpollHandler for Script {
    fn epoll(&self) -> &Epoll {
        &self.epoll
    }

    fn timeout_ms(&self) -> i32 {
        self.timeout_ms
    }

    fn start(&mut self) -> Result<(), String> {
        self.seen.lock().unwrap().0 += 1;
        Ok(())
    }

    fn handle_event(&mut self, token: u64, events: EventSet) -> Result<(), String> {
        assert_eq!((token, events), (TOKEN_EVT, EventSet::IN));
        let value = self.evt.read().unwrap();
        self.seen.lock().unwrap().1.push(value);
        if self.panic_on == Some(value) {
            panic!("scripted panic");
        }
        match self.fail_on {
            Some(v) if v == value => Err(format!("event {value}")),
            _ => Ok(()),
        }
    }

    fn after_wake(&mut self) -> Result<(), String> {
        self.seen.lock().unwrap().2 += 1;
        Ok(())
    }
}

struct Rig {
    evt: EventFd,
    interrupt: Arc<Interrupt>,
    seen: Arc<Mutex<(usize, Vec<u64>, usize)>>,
    dropped: Arc<AtomicUsize>,
}

fn script(timeout_ms: i32, fail_on: Option<u64>, panic_on: Option<u64>) -> (Script, Rig) {
    let evt = eventfd();
    let epoll = Epoll::new().unwrap();
    epoll_add(&epoll, evt.as_raw_fd(), EventSet::IN, TOKEN_EVT).unwrap();
    let rig = Rig {
        evt: evt.try_clone().unwrap(),
        interrupt: Arc::new(Interrupt::new(eventfd())),
        seen: Arc::default(),
        dropped: Arc::default(),
    };
    let script = Script {
        epoll,
        evt,
        timeout_ms,
        fail_on,
        panic_on,
        seen: rig.seen.clone(),
        dropped: rig.dropped.clone(),
    };
    (script, rig)
}

fn spawn(s: Script, rig: &Rig) -> DeviceThread<Script> {
    DeviceThread::spawn("test-dev", "test".into(), s, rig.interrupt.clone()).unwrap()
}

#[test]
fn events_reach_the_handler_until_stopped() {
    let (s, rig) = script(-1, None, None);
    let mut thread = spawn(s, &rig);
    wait_until("start not called", || rig.seen.lock().unwrap().0 == 1);
    for value in [3, 5] {
        rig.evt.write(value).unwrap();
        wait_until("event not handled", || {
            rig.seen.lock().unwrap().1.last() == Some(&value)
        });
    }
    wait_until("no wake-up after the events", || {
        rig.seen.lock().unwrap().2 == 2
    });
    // No timeout: nothing else wakes the thread.
    std::thread::sleep(std::time::Duration::from_millis(50));
    assert_eq!(*rig.seen.lock().unwrap(), (1, vec![3, 5], 2));
    let script = thread.stop().expect("the handler back");
    assert_eq!(script.seen.lock().unwrap().1, [3, 5]);
    assert!(thread.stop().is_none(), "stopped twice");
    assert!(!rig.interrupt.needs_reset());
}

#[test]
fn a_timeout_wakes_the_handler() {
    let (s, rig) = script(1, None, None);
    let mut thread = spawn(s, &rig);
    wait_until("no wake-up on timeouts", || rig.seen.lock().unwrap().2 >= 3);
    assert!(rig.seen.lock().unwrap().1.is_empty());
    assert!(thread.stop().is_some());
}

#[test]
fn a_handler_error_marks_the_device_broken_and_ends_the_thread() {
    let (s, rig) = script(-1, Some(2), None);
    let mut thread = spawn(s, &rig);
    rig.evt.write(2).unwrap();
    wait_until("device not marked broken", || rig.interrupt.needs_reset());
    // The thread has ended: later events are not handled.
    wait_until("handler not given back", || {
        thread.handle.as_ref().is_some_and(|h| h.is_finished())
    });
    rig.evt.write(9).unwrap();
    let script = thread.stop().expect("the handler back");
    assert_eq!(script.seen.lock().unwrap().1, [2]);
    assert_eq!(
        rig.seen.lock().unwrap().2,
        0,
        "after_wake ran after an error"
    );
}

#[test]
fn a_panicking_handler_is_reported_on_stop() {
    let (s, rig) = script(-1, None, Some(4));
    let mut thread = spawn(s, &rig);
    rig.evt.write(4).unwrap();
    wait_until("handler did not run", || {
        thread.handle.as_ref().is_some_and(|h| h.is_finished())
    });
    assert!(thread.stop().is_none());
    // The unwinding thread dropped the handler.
    assert_eq!(rig.dropped.load(Ordering::SeqCst), 1);
}

#[test]
fn drop_stops_and_joins_the_thread() {
    let (s, rig) = script(-1, None, None);
    let thread = spawn(s, &rig);
    wait_until("start not called", || rig.seen.lock().unwrap().0 == 1);
    assert_eq!(rig.dropped.load(Ordering::SeqCst), 0);
    drop(thread);
    // Joined: the handler came back and was dropped with the DeviceThread.
    assert_eq!(rig.dropped.load(Ordering::SeqCst), 1);
}
