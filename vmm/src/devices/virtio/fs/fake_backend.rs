//! A scripted vhost-user back end for the tests: a raw socket peer that records every
//! message (code, flags, body, attached fds) and answers the requests that need an answer.

use std::fs::File;
use std::io::{IoSliceMut, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, RawFd};
use std::os::unix::net::UnixStream;
use std::sync::mpsc::{channel, Receiver};
use std::time::Duration;

use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
use vhost::vhost_user::message::FrontendReq;

/// Header flag: protocol version 1.
const VERSION: u32 = 0x1;
/// Header flag: this is a reply.
const REPLY: u32 = 0x4;
/// Header flag: the sender wants an acknowledgement.
pub const NEED_REPLY: u32 = 0x8;

/// One received message.
#[derive(Debug)]
pub struct Msg {
    pub code: u32,
    pub flags: u32,
    pub body: Vec<u8>,
    pub files: Vec<File>,
}

impl Msg {
    /// Little-endian u32 at `off` in the body.
    pub fn u32_at(&self, off: usize) -> u32 {
        u32::from_le_bytes(self.body[off..off + 4].try_into().unwrap())
    }

    /// Little-endian u64 at `off` in the body.
    pub fn u64_at(&self, off: usize) -> u64 {
        u64::from_le_bytes(self.body[off..off + 8].try_into().unwrap())
    }
}

/// How the fake answers.
#[derive(Clone, Debug)]
pub struct Script {
    pub features: u64,
    pub protocol: u64,
    pub queue_num: u64,
    /// Requests answered with a failure status (when an acknowledgement is wanted).
    pub fail: Vec<FrontendReq>,
}

/// The code of a request.
pub fn code(r: FrontendReq) -> u32 {
    r.into()
}

/// A running fake (its thread ends when the front end hangs up): messages arrive on `rx`;
/// `peer` is a handle on its socket end (shut it down to simulate the back end dying).
pub struct Fake {
    pub rx: Receiver<Msg>,
    pub peer: UnixStream,
}

impl Fake {
    /// Starts a fake; returns it and the front end's end of the connection.
    pub fn start(script: Script) -> (Fake, UnixStream) {
        let (ours, theirs) = UnixStream::pair().unwrap();
        let peer = theirs.try_clone().unwrap();
        let (tx, rx) = channel();
        std::thread::spawn(move || {
            let mut s = theirs;
            while let Some(msg) = recv(&mut s) {
                answer(&mut s, &script, &msg);
                if tx.send(msg).is_err() {
                    break;
                }
            }
        });
        (Fake { rx, peer }, ours)
    }

    /// Every message received so far (waits briefly for stragglers).
    pub fn drain(&self) -> Vec<Msg> {
        let mut v = Vec::new();
        while let Ok(m) = self.rx.recv_timeout(Duration::from_millis(200)) {
            v.push(m);
        }
        v
    }
}

fn recv(s: &mut UnixStream) -> Option<Msg> {
    let mut hdr = [0u8; 12];
    let mut files = Vec::new();
    let mut cmsg = nix::cmsg_space!([RawFd; 8]);
    let n = {
        let mut iov = [IoSliceMut::new(&mut hdr)];
        let msg = recvmsg::<()>(
            s.as_raw_fd(),
            &mut iov,
            Some(&mut cmsg),
            MsgFlags::MSG_WAITALL,
        )
        .ok()?;
        for c in msg.cmsgs().ok()? {
            if let ControlMessageOwned::ScmRights(fds) = c {
                // SAFETY: SCM_RIGHTS hands us new fds that nothing else owns.
                files.extend(fds.into_iter().map(|fd| unsafe { File::from_raw_fd(fd) }));
            }
        }
        msg.bytes
    };
    if n < hdr.len() {
        return None;
    }
    let word = |i: usize| u32::from_le_bytes(hdr[i * 4..i * 4 + 4].try_into().unwrap());
    let mut body = vec![0u8; word(2) as usize];
    s.read_exact(&mut body).ok()?;
    Some(Msg {
        code: word(0),
        flags: word(1),
        body,
        files,
    })
}

fn reply(s: &mut UnixStream, code: u32, body: &[u8]) {
    let mut out = Vec::with_capacity(12 + body.len());
    out.extend_from_slice(&code.to_le_bytes());
    out.extend_from_slice(&(VERSION | REPLY).to_le_bytes());
    out.extend_from_slice(&u32::try_from(body.len()).unwrap().to_le_bytes());
    out.extend_from_slice(body);
    let _ = s.write_all(&out);
}

fn answer(s: &mut UnixStream, script: &Script, m: &Msg) {
    let is = |r: FrontendReq| m.code == code(r);
    if is(FrontendReq::GET_FEATURES) {
        reply(s, m.code, &script.features.to_le_bytes());
    } else if is(FrontendReq::GET_PROTOCOL_FEATURES) {
        reply(s, m.code, &script.protocol.to_le_bytes());
    } else if is(FrontendReq::GET_QUEUE_NUM) {
        reply(s, m.code, &script.queue_num.to_le_bytes());
    } else if is(FrontendReq::GET_VRING_BASE) {
        let mut b = m.body[..4].to_vec();
        b.extend_from_slice(&0u32.to_le_bytes());
        reply(s, m.code, &b);
    } else if m.flags & NEED_REPLY != 0 {
        let failed = script.fail.iter().any(|r| is(*r));
        reply(s, m.code, &u64::from(failed).to_le_bytes());
    }
}
