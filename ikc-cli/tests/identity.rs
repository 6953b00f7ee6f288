//! `ikc serve --access` with the identities the CLI gives: keys named with
//! `--key-id` from a keyring file, the uid of a Unix socket client (a
//! client of another uid run as that user where the test runs as root),
//! and a client certificate (`--tls-client-ca`, mutual TLS).

mod support;

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;

use support::{Served, run, stdout};

/// `echo/upper` only for key B or uid 0; the rest for anyone.
const POLICY: &str = r#"
    [[rule]]
    target = "echo/upper"
    allow = [{ key_id = "B" }, { uid = 0 }]

    [[rule]]
    target = "*"
    allow = [{}]
"#;

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.display().to_string()
}

fn stderr(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn a_client_proving_key_a_may_not_call_what_only_key_b_may() {
    let dir = tempfile::tempdir().unwrap();
    let policy = write(dir.path(), "access.toml", POLICY);
    let ring = write(
        dir.path(),
        "keys.toml",
        "[keys]\nA = \"key a\"\nB = \"key b\"\n",
    );
    let server = Served::start(&[
        "--bind",
        "127.0.0.1:0",
        "--secret-file",
        &ring,
        "--access",
        &policy,
    ]);
    let call = |key: &str, target: &str| {
        run(&[
            "call",
            "--addr",
            &server.addr,
            "--secret-file",
            &ring,
            "--key-id",
            key,
            target,
            r#""hi""#,
        ])
    };
    let refused = call("A", "echo/upper");
    assert!(!refused.status.success(), "{refused:?}");
    assert!(stderr(&refused).contains("Forbidden"), "{refused:?}");
    let allowed = call("A", "echo/say");
    assert_eq!(stdout(&allowed), r#""hi""#, "{allowed:?}");
    let allowed = call("B", "echo/upper");
    assert_eq!(stdout(&allowed), r#""HI""#, "{allowed:?}");

    // A keyring of two keys needs --key-id; an id it lacks is named.
    let output = run(&[
        "call",
        "--addr",
        &server.addr,
        "--secret-file",
        &ring,
        "echo/say",
    ]);
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    assert!(stderr(&output).contains("--key-id"), "{output:?}");
    let output = call("C", "echo/say");
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    assert!(stderr(&output).contains("\"C\""), "{output:?}");

    // A bad policy file is a usage error naming it.
    let bad = write(dir.path(), "bad.toml", "[[rule]]\ntarget = 3\n");
    let output = run(&["serve", "--bind", "127.0.0.1:0", "--access", &bad]);
    assert_eq!(output.status.code(), Some(2), "{output:?}");
    assert!(stderr(&output).contains("bad.toml"), "{output:?}");
}

#[test]
fn a_unix_client_of_another_uid_is_refused_what_uid_0_may_call() {
    let dir = tempfile::tempdir().unwrap();
    // Readable by any user: the policy, the socket's directory, and a copy
    // of the binary for a client of another uid.
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let policy = write(dir.path(), "access.toml", POLICY);
    let socket = dir.path().join("ikc.sock");
    let mut serve = support::ikc();
    serve.args([
        "serve",
        "--unix",
        &socket.display().to_string(),
        "--access",
        &policy,
    ]);
    let server = Served::spawn(serve);
    std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o777)).unwrap();
    let addr = format!("unix:{}", socket.display());

    let me = nix::unistd::getuid().as_raw();
    let output = run(&["call", "--addr", &addr, "echo/upper", r#""hi""#]);
    if me == 0 {
        assert_eq!(stdout(&output), r#""HI""#, "{output:?}");
    } else {
        assert!(
            stderr(&output).contains("Forbidden"),
            "uid {me}: {output:?}"
        );
    }
    if me != 0 {
        // Running a client as another user needs root: the uid checked
        // above is the other side of the same rule.
        return;
    }

    let binary = dir.path().join("ikc");
    std::fs::copy(env!("CARGO_BIN_EXE_ikc"), &binary).unwrap();
    std::fs::set_permissions(&binary, std::fs::Permissions::from_mode(0o755)).unwrap();
    let nobody = |target: &str| {
        let mut command = Command::new(&binary);
        command
            .args(["call", "--addr", &addr, target, r#""hi""#])
            .env_remove("RUST_LOG")
            .current_dir(dir.path())
            .uid(65534)
            .gid(65534);
        support::output(command)
    };
    let refused = nobody("echo/upper");
    assert!(!refused.status.success(), "{refused:?}");
    let text = stderr(&refused);
    assert!(
        text.contains("Forbidden") && text.contains("uid=65534"),
        "{refused:?}"
    );
    // What the policy leaves open, uid 65534 may call.
    assert_eq!(stdout(&nobody("echo/say")), r#""hi""#);
    drop(server);
}

/// A self-signed certificate for `names`, written into `dir` as
/// `NAME.pem` and `NAME.key`; their paths.
fn self_signed(dir: &Path, name: &str, names: &[&str]) -> (String, String) {
    let certified = rcgen::generate_simple_self_signed(
        names.iter().map(|n| (*n).to_owned()).collect::<Vec<_>>(),
    )
    .unwrap();
    let cert = write(dir, &format!("{name}.pem"), &certified.cert.pem());
    let key = write(
        dir,
        &format!("{name}.key"),
        &certified.key_pair.serialize_pem(),
    );
    (cert, key)
}

#[test]
fn mutual_tls_on_the_command_line_names_the_client_by_its_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let (server_cert, server_key) = self_signed(dir.path(), "server", &["127.0.0.1"]);
    let (client_cert, client_key) = self_signed(dir.path(), "client", &["ops.fleet.test"]);
    let policy = write(
        dir.path(),
        "access.toml",
        "[[rule]]\ntarget = \"echo/upper\"\nallow = [{ san = \"*.fleet.test\" }]\n",
    );
    let server = Served::start(&[
        "--bind",
        "127.0.0.1:0",
        "--tls-cert",
        &server_cert,
        "--tls-key",
        &server_key,
        "--tls-client-ca",
        &client_cert,
        "--access",
        &policy,
    ]);
    let with_cert = run(&[
        "call",
        "--addr",
        &server.addr,
        "--tls-ca",
        &server_cert,
        "--tls-cert",
        &client_cert,
        "--tls-key",
        &client_key,
        "echo/upper",
        r#""mtls""#,
    ]);
    assert_eq!(stdout(&with_cert), r#""MTLS""#, "{with_cert:?}");
    // Not covered by a rule: denied by default.
    let output = run(&[
        "call",
        "--addr",
        &server.addr,
        "--tls-ca",
        &server_cert,
        "--tls-cert",
        &client_cert,
        "--tls-key",
        &client_key,
        "echo/say",
        r#""x""#,
    ]);
    assert!(stderr(&output).contains("Forbidden"), "{output:?}");
    // No client certificate: the connection is refused (status 3).
    let without = run(&[
        "call",
        "--addr",
        &server.addr,
        "--tls-ca",
        &server_cert,
        "echo/upper",
        "1",
    ]);
    assert_eq!(without.status.code(), Some(3), "{without:?}");
}
