//! Who is calling: each identity source reaches the handler
//! (`Request::caller().identity`) and the access policy: the peer's
//! address, the shared-secret key it proved (rotation with two keys), its
//! TLS client certificate (mutual TLS), its Unix socket credentials; and
//! allow/deny by each, `IKC/*` built-ins included.
#![cfg(all(feature = "auth", feature = "tls"))]

mod support;

use std::path::Path;

use ikc_core::{BoxError, ErrorKind, Kernel, Request, Value, service_fn};
use ikc_server::access::{AccessLayer, Policy};
use ikc_server::auth::{Keyring, Secret};
use ikc_server::tls::{ClientTls, ServerTls};
use ikc_server::{Client, ClientBuilder, Server, ServerHandle};
use rcgen::{
    BasicConstraints, Certificate, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair,
};

use support::{LOOPBACK, within};

/// The policy of these tests: `admin/*` only for key B, the certificate of
/// `CN=ops`, a SAN under `.ops.test`, or uid 0; `IKC/*` only for
/// authenticated peers; the rest for anyone.
const POLICY: &str = r#"
    [[rule]]
    target = "admin/*"
    allow = [{ key_id = "B" }, { subject = "CN=ops" }, { san = "*.ops.test" }, { uid = 0 }]

    [[rule]]
    target = "IKC/*"
    allow = [{ authenticated = true }]

    [[rule]]
    target = "*"
    allow = [{}]
"#;

/// A kernel whose `whoami/get` answers the caller's identity as text and
/// whose `admin/reset` answers `"reset"`.
fn kernel() -> Kernel {
    let kernel = Kernel::new("Server");
    kernel
        .publish(
            "whoami",
            ["get"],
            service_fn(|req: Request| async move {
                let caller = req.caller().ok_or("no caller")?;
                Ok::<_, BoxError>(Value::from(caller.identity.to_string()))
            }),
        )
        .unwrap();
    kernel
        .publish(
            "admin",
            ["reset"],
            service_fn(|_: Request| async { Ok::<_, BoxError>(Value::from("reset")) }),
        )
        .unwrap();
    kernel
}

fn policed() -> Server<tower::layer::util::Stack<AccessLayer, tower::layer::util::Identity>> {
    Server::builder()
        .kernel(kernel())
        .layer(AccessLayer::new(POLICY.parse::<Policy>().unwrap()))
}

async fn connect(builder: ClientBuilder, server: &ServerHandle) -> Client {
    within("connect", builder.connect(&server.local_addr().to_string()))
        .await
        .unwrap()
}

async fn whoami(client: &Client) -> String {
    let answer = within("whoami", client.call("whoami/get", Value::Null)).await;
    match answer.unwrap() {
        Value::String(text) => text,
        other => panic!("not text: {other:?}"),
    }
}

async fn kind_of(client: &Client, target: &str) -> Result<Value, ErrorKind> {
    within(target, client.call(target, Value::Null))
        .await
        .map_err(|e| e.kind())
}

#[tokio::test]
async fn an_unauthenticated_peer_has_its_address_and_no_more() {
    let server = policed().bind(LOOPBACK).serve().await.unwrap();
    let client = connect(Client::builder(), &server).await;
    let me = whoami(&client).await;
    assert!(me.starts_with("unauthenticated from 127.0.0.1:"), "{me}");
    // Neither admin nor the built-ins.
    assert_eq!(
        kind_of(&client, "admin/reset").await,
        Err(ErrorKind::Forbidden)
    );
    assert_eq!(
        kind_of(&client, "IKC/ping").await,
        Err(ErrorKind::Forbidden)
    );
    // Refused calls leave the connection working.
    assert!(whoami(&client).await.contains("from 127.0.0.1:"));
}

#[tokio::test]
async fn a_key_that_may_not_call_a_session_is_forbidden_and_one_that_may_is_not() {
    let keys = Keyring::new([Secret::with_id("A", "key a"), Secret::with_id("B", "key b")]);
    let server = policed().bind(LOOPBACK).secret(keys).serve().await.unwrap();

    let a = connect(
        Client::builder().secret(Secret::with_id("A", "key a")),
        &server,
    )
    .await;
    assert!(whoami(&a).await.starts_with("key=A from 127.0.0.1:"));
    // The client knows the server the same way: the address it dialled and
    // the key both proved.
    let seen = a.server().identity;
    assert_eq!(seen.key_id.as_deref(), Some("A"));
    assert_eq!(seen.addr, Some(server.local_addr().to_string()));
    let refused = within("a call with key A", a.call("admin/reset", Value::Null))
        .await
        .unwrap_err();
    assert_eq!(refused.kind(), ErrorKind::Forbidden);
    assert!(refused.message().contains("admin/reset"), "{refused}");
    // Authenticated: the built-ins are open to it.
    assert!(kind_of(&a, "IKC/ping").await.is_ok());

    let b = connect(
        Client::builder().secret(Secret::with_id("B", "key b")),
        &server,
    )
    .await;
    assert_eq!(kind_of(&b, "admin/reset").await, Ok(Value::from("reset")));
}

#[tokio::test]
async fn during_a_rotation_the_old_and_the_new_key_both_work() {
    let dir = tempfile::tempdir().unwrap();
    let ring = dir.path().join("keys.toml");
    std::fs::write(
        &ring,
        "[keys]\nold = \"2025 secret\"\nnew = \"2026 secret\"\n",
    )
    .unwrap();
    let server = policed()
        .bind(LOOPBACK)
        .secret(Keyring::from_file(&ring).unwrap())
        .serve()
        .await
        .unwrap();
    let old = connect(
        Client::builder().secret(Secret::with_id("old", "2025 secret")),
        &server,
    )
    .await;
    let new = connect(
        Client::builder().secret(Secret::with_id("new", "2026 secret")),
        &server,
    )
    .await;
    assert!(whoami(&old).await.starts_with("key=old "));
    assert!(whoami(&new).await.starts_with("key=new "));

    // An id the server does not hold, and a right id with a wrong secret.
    for secret in [
        Secret::with_id("older", "2025 secret"),
        Secret::with_id("new", "2025 secret"),
    ] {
        let refused = within(
            "a refused key",
            Client::builder()
                .secret(secret)
                .connect(&server.local_addr().to_string()),
        )
        .await;
        assert!(refused.is_err(), "{refused:?}");
    }

    // After the rotation the server holds only the new key.
    let rotated = policed()
        .bind(LOOPBACK)
        .secret(Secret::with_id("new", "2026 secret"))
        .serve()
        .await
        .unwrap();
    let addr = rotated.local_addr().to_string();
    let old = within(
        "old key",
        Client::builder()
            .secret(Secret::with_id("old", "2025 secret"))
            .connect(&addr),
    )
    .await;
    assert!(old.is_err());
    let new = connect(
        Client::builder().secret(Secret::with_id("new", "2026 secret")),
        &rotated,
    )
    .await;
    assert!(whoami(&new).await.starts_with("key=new "));
}

/// A CA, a server certificate for 127.0.0.1 and client certificates, all
/// made here.
struct Pki {
    ca: String,
    cert: Certificate,
    key: KeyPair,
}

impl Pki {
    fn new() -> Self {
        let mut params = CertificateParams::new(Vec::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "ikc test CA");
        let key = KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        Pki {
            ca: cert.pem(),
            cert,
            key,
        }
    }

    /// A certificate and its key, for `cn` with `sans`.
    fn issue(&self, cn: &str, sans: &[&str], usage: ExtendedKeyUsagePurpose) -> (String, String) {
        let mut params =
            CertificateParams::new(sans.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>())
                .unwrap();
        params.distinguished_name.push(DnType::CommonName, cn);
        params.extended_key_usages = vec![usage];
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.cert, &self.key).unwrap();
        (cert.pem(), key.serialize_pem())
    }
}

async fn mtls_server(pki: &Pki) -> ServerHandle {
    let (cert, key) = pki.issue(
        "server",
        &["127.0.0.1"],
        ExtendedKeyUsagePurpose::ServerAuth,
    );
    let tls = ServerTls::from_pem(cert.as_bytes(), key.as_bytes())
        .unwrap()
        .client_ca_pem(pki.ca.as_bytes())
        .unwrap();
    policed()
        .bind(LOOPBACK)
        .handshake_timeout(std::time::Duration::from_secs(2))
        .tls(tls)
        .serve()
        .await
        .unwrap()
}

fn client_tls(pki: &Pki, cn: &str, sans: &[&str]) -> ClientTls {
    let (cert, key) = pki.issue(cn, sans, ExtendedKeyUsagePurpose::ClientAuth);
    ClientTls::from_pem(pki.ca.as_bytes())
        .unwrap()
        .identity_pem(cert.as_bytes(), key.as_bytes())
        .unwrap()
}

#[tokio::test]
async fn mutual_tls_requires_a_client_certificate_and_names_the_caller_by_it() {
    let pki = Pki::new();
    let server = mtls_server(&pki).await;

    let ops = connect(Client::builder().tls(client_tls(&pki, "ops", &[])), &server).await;
    assert!(
        whoami(&ops)
            .await
            .starts_with("cert=\"CN=ops\" from 127.0.0.1:")
    );
    assert_eq!(kind_of(&ops, "admin/reset").await, Ok(Value::from("reset")));
    assert!(
        kind_of(&ops, "IKC/ping").await.is_ok(),
        "a certificate authenticates"
    );

    // Another subject: admin only through a SAN the policy names.
    let worker = connect(
        Client::builder().tls(client_tls(&pki, "worker", &["w1.fleet.test"])),
        &server,
    )
    .await;
    assert_eq!(
        kind_of(&worker, "admin/reset").await,
        Err(ErrorKind::Forbidden)
    );
    let by_san = connect(
        Client::builder().tls(client_tls(&pki, "worker", &["w2.ops.test"])),
        &server,
    )
    .await;
    assert_eq!(
        kind_of(&by_san, "admin/reset").await,
        Ok(Value::from("reset"))
    );

    // No client certificate: the TLS handshake fails.
    let plain = ClientTls::from_pem(pki.ca.as_bytes()).unwrap();
    let refused = within(
        "a client without a certificate",
        Client::builder()
            .tls(plain)
            .connect(&server.local_addr().to_string()),
    )
    .await;
    assert!(refused.is_err(), "{refused:?}");
    // A certificate from another CA: refused too.
    let stranger = Pki::new();
    let (cert, key) = stranger.issue("ops", &[], ExtendedKeyUsagePurpose::ClientAuth);
    let forged = ClientTls::from_pem(pki.ca.as_bytes())
        .unwrap()
        .identity_pem(cert.as_bytes(), key.as_bytes())
        .unwrap();
    let refused = within(
        "a client of another CA",
        Client::builder()
            .tls(forged)
            .connect(&server.local_addr().to_string()),
    )
    .await;
    assert!(refused.is_err(), "{refused:?}");
}

async fn unix_server(path: &Path) -> ServerHandle {
    policed().unix(path).serve().await.unwrap()
}

#[tokio::test]
async fn a_unix_peer_is_known_by_its_credentials() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ikc.sock");
    let server = unix_server(&path).await;
    let client = connect(Client::builder(), &server).await;
    let (uid, gid) = (
        nix::unistd::getuid().as_raw(),
        nix::unistd::getgid().as_raw(),
    );
    assert_eq!(
        whoami(&client).await,
        format!("uid={uid} gid={gid} from unix")
    );
    // uid 0 may call admin; another uid may not (the CLI test runs a
    // client of another uid against `ikc serve`).
    let expected = if uid == 0 {
        Ok(Value::from("reset"))
    } else {
        Err(ErrorKind::Forbidden)
    };
    assert_eq!(kind_of(&client, "admin/reset").await, expected);
}
