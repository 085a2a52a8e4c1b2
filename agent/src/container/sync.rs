//! The sync socket between the agent and a container helper: a `SOCK_SEQPACKET` socket pair, one
//! JSON message per packet, EOF when the other side is gone.
//!
//! Agent → helper: `Config`, then (init only) `Start`. Helper → agent: `Pty` (with the master's
//! descriptor attached, SCM_RIGHTS) in terminal mode, `Ready` (init: set up, blocked before exec)
//! or `Error`. The helper's end is close-on-exec, so after `Start` (or, for an exec, after
//! `Config`) EOF without an `Error` means the exec succeeded; an exec failure is an `Error`
//! naming the binary and the errno.
use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::Duration;

use nix::cmsg_space;
use nix::sys::socket::{
    recvmsg, sendmsg, setsockopt, socketpair, sockopt, AddressFamily, ControlMessage,
    ControlMessageOwned, MsgFlags, SockFlag, SockType,
};
use nix::sys::time::TimeVal;
use serde::{Deserialize, Serialize};

use super::config::HelperConfig;

/// The largest message (a spec with a big seccomp profile stays far below).
pub const MAX_MESSAGE: usize = 4 << 20;

/// The descriptor number the helper finds its end of the socket on.
pub const HELPER_SYNC_FD: RawFd = 3;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "msg", rename_all = "snake_case")]
pub enum Msg {
    Config(HelperConfig),
    /// Carries the pty master's descriptor.
    Pty,
    Ready,
    Start,
    Error {
        message: String,
    },
}

/// One end of the socket.
#[derive(Debug)]
pub struct SyncSocket {
    fd: OwnedFd,
}

/// What arrived: a message (maybe with a descriptor), or EOF.
#[derive(Debug)]
pub enum Received {
    Msg(Msg, Option<OwnedFd>),
    Eof,
}

/// A new pair: (agent's end, helper's end), both close-on-exec.
pub fn pair() -> nix::Result<(SyncSocket, SyncSocket)> {
    let (a, b) = socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    )?;
    for fd in [&a, &b] {
        // Room for the whole config in one packet.
        setsockopt(fd, sockopt::SndBuf, &MAX_MESSAGE)?;
        setsockopt(fd, sockopt::RcvBuf, &MAX_MESSAGE)?;
    }
    Ok((SyncSocket { fd: a }, SyncSocket { fd: b }))
}

impl SyncSocket {
    /// The helper's end, inherited as [`HELPER_SYNC_FD`].
    ///
    /// # Safety
    /// The caller owns descriptor [`HELPER_SYNC_FD`] (the helper's startup contract) and nothing
    /// else uses or closes it.
    pub unsafe fn from_inherited() -> SyncSocket {
        SyncSocket {
            // SAFETY: forwarded to the caller (see above).
            fd: unsafe { OwnedFd::from_raw_fd(HELPER_SYNC_FD) },
        }
    }

    pub fn fd(&self) -> &OwnedFd {
        &self.fd
    }

    /// Limits how long `recv` blocks (None: forever).
    pub fn set_timeout(&self, timeout: Option<Duration>) -> nix::Result<()> {
        let tv = timeout
            .map(|t| TimeVal::new(t.as_secs() as _, t.subsec_micros() as _))
            .unwrap_or_else(|| TimeVal::new(0, 0));
        setsockopt(&self.fd, sockopt::ReceiveTimeout, &tv)
    }

    /// Sends `msg`, with `fd` attached if given.
    pub fn send(&self, msg: &Msg, fd: Option<RawFd>) -> std::io::Result<()> {
        let bytes = serde_json::to_vec(msg)?;
        let iov = [IoSlice::new(&bytes)];
        let fds = fd.map(|f| [f]);
        let cmsgs: Vec<ControlMessage> = fds.iter().map(|f| ControlMessage::ScmRights(f)).collect();
        sendmsg::<()>(self.fd.as_raw_fd(), &iov, &cmsgs, MsgFlags::empty(), None)?;
        Ok(())
    }

    /// Receives one message (blocking, within the timeout if one is set).
    pub fn recv(&self) -> std::io::Result<Received> {
        let mut buf = vec![0u8; MAX_MESSAGE];
        let mut cmsg = cmsg_space!([RawFd; 1]);
        let (n, fd, truncated) = {
            let mut iov = [IoSliceMut::new(&mut buf)];
            let msg = loop {
                match recvmsg::<()>(
                    self.fd.as_raw_fd(),
                    &mut iov,
                    Some(&mut cmsg),
                    MsgFlags::MSG_CMSG_CLOEXEC,
                ) {
                    Err(nix::errno::Errno::EINTR) => continue,
                    other => break other?,
                }
            };
            let mut fd = None;
            for c in msg.cmsgs()? {
                if let ControlMessageOwned::ScmRights(fds) = c {
                    for raw in fds {
                        // SAFETY: SCM_RIGHTS just installed `raw` in this process for us; we
                        // are its only owner.
                        let owned = unsafe { OwnedFd::from_raw_fd(raw) };
                        fd.get_or_insert(owned);
                    }
                }
            }
            (msg.bytes, fd, msg.flags.contains(MsgFlags::MSG_TRUNC))
        };
        if n == 0 && fd.is_none() {
            return Ok(Received::Eof);
        }
        if truncated {
            return Err(std::io::Error::other("sync message too long"));
        }
        let msg = serde_json::from_slice(&buf[..n])
            .map_err(|e| std::io::Error::other(format!("bad sync message: {e}")))?;
        Ok(Received::Msg(msg, fd))
    }
}

impl From<SyncSocket> for OwnedFd {
    fn from(s: SyncSocket) -> OwnedFd {
        s.fd
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_fds_and_eof() {
        let (a, b) = pair().unwrap();
        a.send(&Msg::Start, None).unwrap();
        let devnull = std::fs::File::open("/dev/null").unwrap();
        b.send(&Msg::Pty, Some(devnull.as_raw_fd())).unwrap();
        b.send(
            &Msg::Error {
                message: "exec \"x\": ENOENT".into(),
            },
            None,
        )
        .unwrap();
        assert!(matches!(b.recv().unwrap(), Received::Msg(Msg::Start, None)));
        assert!(matches!(
            a.recv().unwrap(),
            Received::Msg(Msg::Pty, Some(_))
        ));
        match a.recv().unwrap() {
            Received::Msg(Msg::Error { message }, None) => assert!(message.contains("ENOENT")),
            other => panic!("{other:?}"),
        }
        drop(b);
        assert!(matches!(a.recv().unwrap(), Received::Eof));
    }

    #[test]
    fn recv_times_out() {
        let (a, _b) = pair().unwrap();
        a.set_timeout(Some(Duration::from_millis(20))).unwrap();
        assert!(a.recv().is_err());
    }
}
