//! Socket activation as systemd does it: the test opens the listening
//! socket, and a shell execs `ikc serve` with it as descriptor 3 and
//! `LISTEN_FDS`, `LISTEN_PID` (the shell's pid, which `exec` keeps) and
//! `LISTEN_FDNAMES` set. The server serves that socket, not `--bind`'s;
//! a connection made before it started is served too.

mod support;

use std::os::fd::{AsFd, AsRawFd};
use std::process::{Command, Stdio};

use nix::fcntl::{FcntlArg, FdFlag, fcntl};
use nix::sys::signal::Signal;

use support::{Served, run};

/// `ikc serve ARGS` started as systemd starts a socket-activated service,
/// with `socket` as its descriptor 3.
fn activated(socket: &impl AsFd, args: &[&str]) -> Served {
    let fd = socket.as_fd().as_raw_fd();
    // The child must inherit it (the standard library opens sockets
    // close-on-exec); the shell moves it to 3.
    fcntl(socket.as_fd(), FcntlArg::F_SETFD(FdFlag::empty())).expect("fcntl");
    let moved = if fd == 3 {
        String::new()
    } else {
        format!("exec 3<&{fd} {fd}<&-; ")
    };
    let mut command = Command::new("sh");
    command
        .arg("-c")
        .arg(format!(
            r#"{moved}export LISTEN_FDS=1 LISTEN_PID=$$ LISTEN_FDNAMES=ikc; exec "$0" serve "$@""#
        ))
        .arg(env!("CARGO_BIN_EXE_ikc"))
        .args(args)
        .env_remove("RUST_LOG");
    Served::spawn(command)
}

#[test]
fn a_tcp_socket_from_systemd_is_served_with_what_waited_in_its_backlog() {
    let socket = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = socket.local_addr().unwrap().to_string();
    // A client that connects before the server runs: it waits in the
    // backlog of the socket the manager holds.
    let early = support::ikc()
        .args(["ping", "--addr", &addr])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("ikc ping starts");

    let server = activated(&socket, &["--bind", "127.0.0.1:0"]);
    drop(socket);
    assert_eq!(
        server.addr, addr,
        "it serves the passed socket, not --bind's"
    );
    let early = support::finish(early, "the early ping");
    assert!(early.status.success(), "{early:?}");
    assert!(run(&["ping", "--addr", &addr]).status.success());
}

#[test]
fn a_unix_socket_from_systemd_is_served_by_workers_and_left_to_its_owner() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ikc.sock");
    let socket = std::os::unix::net::UnixListener::bind(&path).unwrap();
    let addr = format!("unix:{}", path.display());

    let mut server = activated(&socket, &["--workers", "2"]);
    drop(socket);
    assert_eq!(server.addr, addr);
    for _ in 0..3 {
        let ping = run(&["ping", "--addr", &addr]);
        assert!(ping.status.success(), "{ping:?}");
    }
    server.signal(Signal::SIGTERM);
    assert!(server.wait_exit().success());
    // The socket file is the manager's: ikc does not remove it.
    assert!(path.exists());
}
