//! `Kernel`: names and aliases, shared state between clones, refusing a
//! peer that claims a name already in use, and publishing sessions as tower
//! services that only see the events they published.

mod support;

use std::future::{Ready, ready};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context, Poll};

use ikc_core::builtin::IKC_EVENTS;
use ikc_core::transport::memory;
use ikc_core::{
    BoxError, Channel, ErrorKind, IKC_SESSION, Kernel, MonitorEvent, ParseSpecifierError, Part,
    PeerInfo, RegisterError, Request, Value, service_fn,
};
use support::{answers, connect, counting, driver_end, echo, failing, next_event, spec, within};
use tower::Service;

fn claiming(kernel: &str, aliases: &[&str]) -> PeerInfo {
    PeerInfo::new(
        kernel.to_owned(),
        aliases.iter().map(|a| (*a).to_owned()).collect(),
        7,
    )
}

/// Tries to register a peer with `info` on `kernel` over a fresh transport.
fn register(kernel: &Kernel, info: PeerInfo) -> Result<(), RegisterError> {
    let (end, _other) = memory::pair(1);
    Channel::builder(kernel.clone())
        .connect(info, end)
        .map(drop)
}

#[test]
fn a_kernel_answers_to_its_name_and_to_each_alias_added() {
    let kernel = Kernel::new("Server");
    assert_eq!(kernel.name(), "Server");
    assert!(kernel.aliases().is_empty());
    assert!(kernel.is_named("Server"));
    assert!(!kernel.is_named("127.0.0.1:4000"));

    kernel.add_alias("127.0.0.1:4000").unwrap();
    kernel.add_alias("calc-server").unwrap();
    assert_eq!(kernel.aliases(), ["127.0.0.1:4000", "calc-server"]);
    assert!(kernel.is_named("127.0.0.1:4000"));
    assert!(kernel.is_named("calc-server"));
    assert!(!kernel.is_named("Other"));
    assert_eq!(kernel.pid(), std::process::id());
}

#[test]
fn adding_an_alias_twice_or_the_own_name_as_alias_changes_nothing() {
    let kernel = Kernel::new("Server");
    kernel.add_alias("alias").unwrap();
    kernel.add_alias("alias").unwrap();
    kernel.add_alias("Server").unwrap();
    assert_eq!(kernel.aliases(), ["alias"]);
}

#[test]
fn invalid_kernel_names_and_aliases_are_refused_with_a_typed_error() {
    assert_eq!(
        Kernel::try_new("").unwrap_err(),
        ParseSpecifierError::EmptyPart { part: Part::Kernel }
    );
    assert_eq!(
        Kernel::try_new("*").unwrap_err(),
        ParseSpecifierError::BadChar {
            part: Part::Kernel,
            ch: '*'
        }
    );
    assert_eq!(
        Kernel::try_new("a/b").unwrap_err(),
        ParseSpecifierError::BadChar {
            part: Part::Kernel,
            ch: '/'
        }
    );
    let kernel = Kernel::new("Server");
    assert_eq!(
        kernel.add_alias("my alias"),
        Err(ParseSpecifierError::BadChar {
            part: Part::Kernel,
            ch: ' '
        })
    );
    assert!(kernel.aliases().is_empty());
}

#[tokio::test]
async fn clones_share_name_aliases_sessions_and_monitor_bus() {
    let kernel = Kernel::new("Server");
    let clone = kernel.clone();
    let mut monitor = kernel.monitor();

    clone.add_alias("alias").unwrap();
    clone.publish("echo", ["say"], echo()).unwrap();
    clone.emit(MonitorEvent::Shutdown);

    assert_eq!(clone.name(), kernel.name());
    assert!(kernel.is_named("alias"));
    assert!(kernel.is_published("echo"));
    let answer = kernel.call(&spec("echo/say"), Value::from("hi")).await;
    assert_eq!(answer, Ok(Value::from("hi")));
    assert_eq!(next_event(&mut monitor).await, MonitorEvent::Shutdown);

    assert!(kernel.retract("echo"));
    assert!(!clone.is_published("echo"));
}

#[test]
fn a_new_kernel_publishes_only_the_builtin_ikc_session() {
    let kernel = Kernel::new("Server");
    let events: Vec<String> = {
        let mut events: Vec<String> = IKC_EVENTS.iter().map(|e| (*e).to_owned()).collect();
        events.sort();
        events
    };
    assert_eq!(kernel.published(), [(IKC_SESSION.to_owned(), events)]);
    assert!(kernel.kernels().is_empty());
}

#[tokio::test]
async fn a_second_peer_claiming_a_connected_name_is_refused_and_the_first_stays_reachable() {
    let server = Kernel::new("Server");
    let first = Kernel::new("Client");
    first.publish("whoami", ["ask"], answers("first")).unwrap();
    let _link = connect(&server, &first);

    assert_eq!(
        register(&server, claiming("Client", &[])),
        Err(RegisterError::NameTaken {
            name: "Client".to_owned()
        })
    );

    let answer = within(
        "the first peer's answer",
        server.call(&spec("poe://Client/whoami/ask"), Value::Null),
    )
    .await;
    assert_eq!(answer, Ok(Value::from("first")));
    let names: Vec<String> = server.kernels().into_iter().map(|p| p.kernel).collect();
    assert_eq!(names, ["Client"]);
}

#[tokio::test]
async fn a_peer_claiming_a_connected_alias_is_refused_and_none_of_its_names_registers() {
    let server = Kernel::new("Server");
    let first = Kernel::new("First");
    first.add_alias("shared").unwrap();
    first.publish("whoami", ["ask"], answers("first")).unwrap();
    let _link = connect(&server, &first);

    assert_eq!(
        register(&server, claiming("Second", &["own", "shared"])),
        Err(RegisterError::NameTaken {
            name: "shared".to_owned()
        })
    );
    assert!(server.peer("Second").is_none());
    assert!(server.peer("own").is_none());
    let answer = within(
        "the first peer's answer",
        server.call(&spec("poe://shared/whoami/ask"), Value::Null),
    )
    .await;
    assert_eq!(answer, Ok(Value::from("first")));
}

#[test]
fn a_peer_claiming_the_local_kernels_name_or_alias_is_refused() {
    let server = Kernel::new("Server");
    server.add_alias("10.0.0.1:4000").unwrap();
    assert_eq!(
        register(&server, claiming("Server", &[])),
        Err(RegisterError::NameTaken {
            name: "Server".to_owned()
        })
    );
    assert_eq!(
        register(&server, claiming("Client", &["10.0.0.1:4000"])),
        Err(RegisterError::NameTaken {
            name: "10.0.0.1:4000".to_owned()
        })
    );
    assert!(server.kernels().is_empty());
}

#[test]
fn a_peer_with_an_invalid_name_is_refused_as_bad_name() {
    let server = Kernel::new("Server");
    for info in [claiming("bad name", &[]), claiming("Client", &["a/b"])] {
        assert!(matches!(
            register(&server, info),
            Err(RegisterError::BadName(ParseSpecifierError::BadChar { .. }))
        ));
    }
    assert!(server.kernels().is_empty());
}

#[tokio::test]
async fn a_name_is_free_again_once_its_peer_has_disconnected() {
    let server = Kernel::new("Server");
    let client = Kernel::new("Client");
    let link = connect(&server, &client);
    assert!(server.peer("Client").is_some());

    link.b_driver.abort();
    driver_end(link.a_driver).await.unwrap();
    assert!(server.peer("Client").is_none());

    let again = Kernel::new("Client");
    again.publish("whoami", ["ask"], answers("again")).unwrap();
    let _link = connect(&server, &again);
    let answer = within(
        "the new peer's answer",
        server.call(&spec("poe://Client/whoami/ask"), Value::Null),
    )
    .await;
    assert_eq!(answer, Ok(Value::from("again")));
}

#[tokio::test]
async fn a_connected_peer_is_listed_and_reachable_by_name_and_by_alias() {
    let server = Kernel::new("Server");
    let client = Kernel::new("Client");
    client.add_alias("10.0.0.2:5000").unwrap();
    client
        .publish("whoami", ["ask"], answers("client"))
        .unwrap();
    let _link = connect(&server, &client);

    assert_eq!(
        server.kernels(),
        [PeerInfo::new(
            "Client".to_owned(),
            vec!["10.0.0.2:5000".to_owned()],
            client.pid()
        )]
    );
    let by_alias = server.peer("10.0.0.2:5000").expect("alias is registered");
    assert!(by_alias.same_channel(&server.peer("Client").unwrap()));
    for target in ["poe://Client/whoami/ask", "poe://10.0.0.2:5000/whoami/ask"] {
        let answer = within("the peer's answer", server.call(&spec(target), Value::Null)).await;
        assert_eq!(answer, Ok(Value::from("client")), "{target}");
    }
}

#[tokio::test]
async fn a_service_fn_closure_is_published_and_called() {
    let kernel = Kernel::new("Calc");
    kernel
        .publish(
            "calc",
            ["add"],
            service_fn(|req: Request| async move {
                let (a, b): (i64, i64) = req.arg_as()?;
                Ok::<_, BoxError>(Value::from(a + b))
            }),
        )
        .unwrap();
    let sum = kernel
        .call(&spec("calc/add"), Value::from(vec![2, 3]))
        .await;
    assert_eq!(sum, Ok(Value::from(5)));
}

/// A hand-written session: counts its calls and answers with the count.
#[derive(Clone, Default)]
struct CounterSession {
    calls: Arc<AtomicUsize>,
}

impl Service<Request> for CounterSession {
    type Response = Value;
    type Error = std::convert::Infallible;
    type Future = Ready<Result<Value, Self::Error>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request) -> Self::Future {
        let n = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
        let answer = match req.event() {
            "next" => Value::from(u32::try_from(n).unwrap()),
            other => Value::from(format!("unexpected {other}")),
        };
        ready(Ok(answer))
    }
}

#[tokio::test]
async fn a_hand_written_tower_service_is_published_and_called() {
    let kernel = Kernel::new("Server");
    let session = CounterSession::default();
    kernel
        .publish("counter", ["next"], session.clone())
        .unwrap();

    for expected in 1..=3_u32 {
        let answer = kernel.call(&spec("counter/next"), Value::Null).await;
        assert_eq!(answer, Ok(Value::from(expected)));
    }
    assert_eq!(session.calls.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn an_event_not_published_is_no_event_and_never_reaches_the_service() {
    let kernel = Kernel::new("Server");
    let (service, count) = counting();
    kernel.publish("echo", ["say"], service).unwrap();

    let error = kernel
        .call(&spec("echo/shout"), Value::from("hi"))
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::NoEvent);
    assert!(error.message().contains("shout"), "{error}");
    assert_eq!(count.load(Ordering::SeqCst), 0);

    let error = kernel
        .post(&spec("echo/shout"), Value::from("hi"))
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::NoEvent);
    assert_eq!(count.load(Ordering::SeqCst), 0);

    assert_eq!(
        kernel.call(&spec("echo/say"), Value::from("hi")).await,
        Ok(Value::from("hi"))
    );
    assert_eq!(count.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn an_unknown_session_is_no_session_and_an_unknown_kernel_is_no_kernel() {
    let kernel = Kernel::new("Server");
    let error = kernel
        .call(&spec("nowhere/say"), Value::Null)
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::NoSession);
    assert!(error.message().contains("nowhere"), "{error}");

    let error = kernel
        .call(&spec("poe://Elsewhere/echo/say"), Value::Null)
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::NoKernel);
    assert!(error.message().contains("Elsewhere"), "{error}");
}

#[tokio::test]
async fn the_local_kernel_is_reachable_by_its_own_name_and_aliases() {
    let kernel = Kernel::new("Server");
    kernel.add_alias("alias").unwrap();
    kernel.publish("echo", ["say"], echo()).unwrap();
    for target in [
        "echo/say",
        "poe://Server/echo/say",
        "Server/echo/say",
        "poe://alias/echo/say",
        "poe://*/echo/say",
    ] {
        let answer = kernel.call(&spec(target), Value::from(1)).await;
        assert_eq!(answer, Ok(Value::from(1)), "{target}");
    }
}

#[tokio::test]
async fn a_target_without_an_event_is_a_bad_request() {
    let kernel = Kernel::new("Server");
    kernel.publish("echo", ["say"], echo()).unwrap();
    let error = kernel
        .call(&spec("poe://Server/echo"), Value::Null)
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::BadRequest);
}

#[tokio::test]
async fn a_retracted_session_is_no_session() {
    let kernel = Kernel::new("Server");
    kernel.publish("echo", ["say"], echo()).unwrap();
    assert!(kernel.is_published("echo"));

    assert!(kernel.retract("echo"));
    assert!(!kernel.is_published("echo"));
    assert!(!kernel.retract("echo"), "a second retract finds nothing");
    let error = kernel
        .call(&spec("echo/say"), Value::Null)
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::NoSession);
    assert!(kernel.published().iter().all(|(name, _)| name != "echo"));
}

#[tokio::test]
async fn publishing_a_name_again_replaces_the_session_and_its_events() {
    let kernel = Kernel::new("Server");
    kernel.publish("who", ["a"], answers("old")).unwrap();
    kernel.publish("who", ["b", "c"], answers("new")).unwrap();

    assert_eq!(
        kernel.call(&spec("who/b"), Value::Null).await,
        Ok(Value::from("new"))
    );
    let error = kernel.call(&spec("who/a"), Value::Null).await.unwrap_err();
    assert_eq!(error.kind(), ErrorKind::NoEvent);
    let listed = kernel.published();
    let who = listed.iter().find(|(name, _)| name == "who").unwrap();
    assert_eq!(who.1, ["b", "c"]);
}

#[test]
fn published_lists_sessions_and_their_events_sorted() {
    let kernel = Kernel::new("Server");
    kernel.publish("zeta", ["z", "a", "m"], echo()).unwrap();
    kernel.publish("alpha", ["one"], echo()).unwrap();
    let names: Vec<_> = kernel.published().into_iter().map(|(n, _)| n).collect();
    assert_eq!(names, ["IKC", "alpha", "zeta"]);
    assert_eq!(kernel.published()[2].1, ["a", "m", "z"]);
}

#[test]
fn publishing_invalid_names_is_refused_naming_the_part() {
    let kernel = Kernel::new("Server");
    assert_eq!(
        kernel.publish("a/b", ["say"], echo()),
        Err(ParseSpecifierError::BadChar {
            part: Part::Session,
            ch: '/'
        })
    );
    assert_eq!(
        kernel.publish("echo", ["say", ""], echo()),
        Err(ParseSpecifierError::EmptyPart { part: Part::Event })
    );
    assert!(!kernel.is_published("echo"));
}

#[tokio::test]
async fn a_failing_service_is_a_handler_error_with_its_message() {
    let kernel = Kernel::new("Server");
    kernel
        .publish("broken", ["go"], failing("disk full"))
        .unwrap();
    let error = kernel
        .call(&spec("broken/go"), Value::Null)
        .await
        .unwrap_err();
    assert_eq!(error.kind(), ErrorKind::Handler);
    assert_eq!(error.message(), "disk full");
}

#[test]
fn a_peer_registered_before_its_transport_holds_its_names_until_dropped() {
    let server = Kernel::new("Server");
    let registered = Channel::builder(server.clone())
        .register(claiming("Client", &["alias"]))
        .unwrap();
    let listed = server.peer("alias").expect("registered under its alias");
    assert!(listed.same_channel(registered.handle()));
    assert_eq!(
        register(&server, claiming("Client", &[])),
        Err(RegisterError::NameTaken {
            name: "Client".to_owned()
        })
    );

    drop(registered);
    assert!(server.peer("Client").is_none());
    assert!(server.peer("alias").is_none());
}

#[tokio::test]
async fn a_registered_peer_connects_later_over_the_handle_it_was_given() {
    let server = Kernel::new("Server");
    let client = Kernel::new("Client");
    client.publish("who", ["ask"], answers("client")).unwrap();
    let registered = Channel::builder(server.clone())
        .register(support::peer_info(&client))
        .unwrap();
    let early = registered.handle().clone();

    let (server_end, client_end) = memory::pair(16);
    let (handle, server_driver) = registered.connect(server_end);
    assert!(handle.same_channel(&early));
    let (_, client_driver) = Channel::builder(client.clone())
        .connect(support::peer_info(&server), client_end)
        .unwrap();
    let _drivers = (tokio::spawn(server_driver), tokio::spawn(client_driver));

    let answer = within(
        "the client's answer",
        early.call(&spec("poe://Client/who/ask"), Value::Null),
    )
    .await;
    assert_eq!(answer, Ok(Value::from("client")));
}
