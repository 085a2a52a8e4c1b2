//! Opening a log to append to: a regular file, or a FIFO whose reader is already there
//! (containerd's `log` FIFO in a bundle, which it copies into its own log). The open never
//! blocks: a FIFO nobody reads fails with ENXIO instead of hanging the caller; writes block
//! as on any log (containerd drains its FIFOs).
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

/// Opens `path` for appending (creating a regular file when `create` and it is missing).
pub fn open_append(path: &Path, create: bool) -> io::Result<File> {
    let f = OpenOptions::new()
        .append(true)
        .create(create)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)?;
    // Blocking writes from here on.
    rustix::fs::fcntl_setfl(&f, rustix::fs::OFlags::APPEND)?;
    Ok(f)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn files_are_appended_and_fifos_need_a_reader() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("log");
        open_append(&p, true).unwrap().write_all(b"a\n").unwrap();
        let mut f = open_append(&p, true).unwrap();
        f.write_all(b"b\n").unwrap();
        assert_eq!(std::fs::read_to_string(&p).unwrap(), "a\nb\n");
        let missing = d.path().join("missing");
        assert!(open_append(&missing, false).is_err());

        let fifo = d.path().join("fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        let e = open_append(&fifo, true).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ENXIO), "{e}");
        let reader = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(&fifo)
            .unwrap();
        let mut w = open_append(&fifo, true).unwrap();
        w.write_all(b"line\n").unwrap();
        drop(w);
        let mut got = String::new();
        std::io::Read::read_to_string(&mut &reader, &mut got).unwrap();
        assert_eq!(got, "line\n");
    }
}
