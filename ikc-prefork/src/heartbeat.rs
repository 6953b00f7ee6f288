//! The pipe each worker reports on: "ready" once, then a heartbeat with the
//! number of connections it accepted, from inside its runtime; "recycling"
//! when it used its connection budget, and "stop" when a peer asked the
//! server to shut down (`IKC/shutdown`).
//!
//! Records are 9 bytes (a tag and a little-endian `u64`), under `PIPE_BUF`,
//! so each write is atomic; the worker's end is non-blocking, so a
//! supervisor that is slow to read never stalls a worker.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use nix::fcntl::{FcntlArg, OFlag, fcntl};

const RECORD: usize = 9;
const READY: u8 = b'R';
const ALIVE: u8 = b'H';
const RECYCLING: u8 = b'C';
const STOP: u8 = b'S';

/// One report from a worker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Beat {
    /// The worker is serving.
    Ready,
    /// The worker's runtime is alive; it accepted this many connections.
    Alive { accepted: u64 },
    /// The worker used its connection budget: it no longer accepts, and
    /// needs a replacement.
    Recycling,
    /// A peer called `IKC/shutdown`: the whole server should stop.
    Stop,
}

fn nonblocking(fd: OwnedFd) -> io::Result<File> {
    fcntl(&fd, FcntlArg::F_SETFL(OFlag::O_NONBLOCK))?;
    Ok(File::from(fd))
}

/// A new pipe: the supervisor's reading end and the worker's writing end.
pub(crate) fn pipe() -> io::Result<(BeatReader, Heartbeat)> {
    let (read, write) = nix::unistd::pipe()?;
    Ok((
        BeatReader {
            file: nonblocking(read)?,
            buf: Vec::new(),
        },
        Heartbeat {
            file: nonblocking(write)?,
        },
    ))
}

/// The worker's end.
#[derive(Debug)]
pub(crate) struct Heartbeat {
    file: File,
}

impl Heartbeat {
    pub(crate) fn send(&self, beat: Beat) {
        let (tag, value) = match beat {
            Beat::Ready => (READY, 0),
            Beat::Alive { accepted } => (ALIVE, accepted),
            Beat::Recycling => (RECYCLING, 0),
            Beat::Stop => (STOP, 0),
        };
        let mut record = [0u8; RECORD];
        record[0] = tag;
        record[1..].copy_from_slice(&value.to_le_bytes());
        // A full pipe means the supervisor is behind; the next beat will do.
        let _ = (&self.file).write(&record);
    }
}

/// The supervisor's end.
#[derive(Debug)]
pub(crate) struct BeatReader {
    file: File,
    buf: Vec<u8>,
}

impl BeatReader {
    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        self.file.as_fd()
    }

    /// Reads every complete record available now. `Ok(None)` when the
    /// worker's end is closed (the worker exited).
    pub(crate) fn read(&mut self) -> io::Result<Option<Vec<Beat>>> {
        let mut chunk = [0u8; 512];
        let mut closed = false;
        loop {
            match (&self.file).read(&mut chunk) {
                Ok(0) => {
                    closed = true;
                    break;
                }
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        let whole = self.buf.len() - self.buf.len() % RECORD;
        let beats = self.buf[..whole]
            .chunks_exact(RECORD)
            .filter_map(|record| {
                let value = u64::from_le_bytes(record[1..].try_into().ok()?);
                match record[0] {
                    READY => Some(Beat::Ready),
                    ALIVE => Some(Beat::Alive { accepted: value }),
                    RECYCLING => Some(Beat::Recycling),
                    STOP => Some(Beat::Stop),
                    _ => None,
                }
            })
            .collect();
        self.buf.drain(..whole);
        if closed { Ok(None) } else { Ok(Some(beats)) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_written_by_the_worker_are_read_back_in_order() {
        let (mut reader, heartbeat) = pipe().unwrap();
        heartbeat.send(Beat::Ready);
        heartbeat.send(Beat::Alive { accepted: 7 });
        heartbeat.send(Beat::Recycling);
        heartbeat.send(Beat::Stop);
        assert_eq!(
            reader.read().unwrap(),
            Some(vec![
                Beat::Ready,
                Beat::Alive { accepted: 7 },
                Beat::Recycling,
                Beat::Stop
            ])
        );
        assert_eq!(reader.read().unwrap(), Some(vec![]));
        drop(heartbeat);
        assert_eq!(reader.read().unwrap(), None);
    }

    #[test]
    fn a_full_pipe_never_blocks_the_worker() {
        let (_reader, heartbeat) = pipe().unwrap();
        // Far more than a pipe holds (64 KiB): every write returns at once.
        for accepted in 0..20_000 {
            heartbeat.send(Beat::Alive { accepted });
        }
    }
}
