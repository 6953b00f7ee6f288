//! DNS discovery against a DNS server in the test, on 127.0.0.1, answering
//! from a record set the test changes: servers named by SRV records join
//! and leave as the records do, and a host whose A records go away
//! empties the set.
#![cfg(feature = "dns")]

mod support;

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use hickory_proto::op::Message;
use hickory_proto::rr::rdata::{A, SRV};
use hickory_proto::rr::{Name, RData, Record};
use hickory_resolver::TokioResolver;
use hickory_resolver::config::{NameServerConfig, ResolverConfig};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use ikc_core::{ErrorKind, Kernel, Request, service_fn};
use ikc_server::balance::dns::Dns;
use ikc_server::{BoxError, Client, Server, ServerHandle};
use tokio::net::UdpSocket;

use support::{LOOPBACK, within};

/// The records the test's DNS server answers with.
type Records = Arc<Mutex<Vec<Record>>>;

/// Serves `records` over UDP on 127.0.0.1; its address.
async fn dns_server(records: Records) -> SocketAddr {
    let socket = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).await.unwrap();
    let addr = socket.local_addr().unwrap();
    tokio::spawn(async move {
        let mut buf = vec![0; 4096];
        loop {
            let Ok((len, from)) = socket.recv_from(&mut buf).await else {
                return;
            };
            let Ok(query) = Message::from_vec(&buf[..len]) else {
                continue;
            };
            let mut answer = Message::response(query.metadata.id, query.metadata.op_code);
            answer.metadata.authoritative = true;
            answer.metadata.recursion_desired = query.metadata.recursion_desired;
            answer.metadata.recursion_available = true;
            for question in &query.queries {
                answer.add_query(question.clone());
                let records = records.lock().unwrap_or_else(PoisonError::into_inner);
                for record in records.iter().filter(|record| {
                    record.name == *question.name() && record.record_type() == question.query_type()
                }) {
                    answer.add_answer(record.clone());
                }
            }
            if let Ok(bytes) = answer.to_vec() {
                let _ = socket.send_to(&bytes, from).await;
            }
        }
    });
    addr
}

fn resolver(dns: SocketAddr) -> TokioResolver {
    let mut server = NameServerConfig::udp(dns.ip());
    for connection in &mut server.connections {
        connection.port = dns.port();
    }
    let config = ResolverConfig::from_parts(None, Vec::new(), vec![server]);
    let mut builder = TokioResolver::builder_with_config(config, TokioRuntimeProvider::default());
    // Every lookup asks the server: the test changes the records.
    builder.options_mut().cache_size = 0;
    builder.build().unwrap()
}

fn name(text: &str) -> Name {
    Name::from_ascii(text).unwrap()
}

fn a(host: &str) -> Record {
    Record::from_rdata(name(host), 1, RData::A(A(Ipv4Addr::LOCALHOST)))
}

fn srv(service: &str, target: &str, port: u16) -> Record {
    Record::from_rdata(
        name(service),
        1,
        RData::SRV(SRV::new(0, 0, port, name(target))),
    )
}

/// A server counting the calls to `count/hit`.
async fn counted() -> (ServerHandle, Arc<AtomicUsize>) {
    let kernel = Kernel::new("Fleet");
    let hits = Arc::new(AtomicUsize::new(0));
    let seen = Arc::clone(&hits);
    kernel
        .publish(
            "count",
            ["hit"],
            service_fn(move |req: Request| {
                seen.fetch_add(1, Ordering::Relaxed);
                async move { Ok::<_, BoxError>(req.into_arg()) }
            }),
        )
        .unwrap();
    let server = Server::builder()
        .kernel(kernel)
        .bind(LOOPBACK)
        .serve()
        .await
        .unwrap();
    (server, hits)
}

fn port(server: &ServerHandle) -> u16 {
    server
        .local_addr()
        .to_string()
        .rsplit_once(':')
        .and_then(|(_, port)| port.parse().ok())
        .unwrap()
}

const SERVICE: &str = "_ikc._tcp.fleet.test.";

#[tokio::test]
async fn servers_named_by_srv_records_join_and_leave_as_the_records_change() {
    let servers = [counted().await, counted().await, counted().await];
    let hits = |n: usize| servers[n].1.load(Ordering::Relaxed);
    let records = Records::default();
    {
        let mut set = records.lock().unwrap();
        for (n, host) in ["s0.fleet.test.", "s1.fleet.test.", "s2.fleet.test."]
            .iter()
            .enumerate()
        {
            set.push(a(host));
            if n < 2 {
                set.push(srv(SERVICE, host, port(&servers[n].0)));
            }
        }
    }
    let dns = dns_server(Arc::clone(&records)).await;
    let discovery = Dns::srv(resolver(dns), SERVICE).interval(Duration::from_millis(100));
    let client = Client::balanced(Client::builder(), discovery).await;
    assert_eq!(client.members(), 2);
    for n in 0..100 {
        within("a call", client.call("count/hit", n)).await.unwrap();
    }
    assert!(hits(0) > 0 && hits(1) > 0, "both named servers serve");
    assert_eq!(hits(2), 0, "a server the records do not name gets nothing");

    // The records now name s1 and s2.
    {
        let mut set = records.lock().unwrap();
        set.retain(|record| {
            !matches!(&record.data, RData::SRV(srv) if srv.target == name("s0.fleet.test."))
        });
        set.push(srv(SERVICE, "s2.fleet.test.", port(&servers[2].0)));
    }
    within("the new server to get a call", async {
        let mut n = 0;
        while hits(2) == 0 {
            n += 1;
            client.call("count/hit", n).await.unwrap();
            tokio::task::yield_now().await;
        }
    })
    .await;
    // And s0 is out: once its member is gone, it gets no more calls.
    // (The balancer takes the discovery's changes as it serves calls.)
    within("s0 to leave the set", async {
        while client.members() != 2 {
            client.call("count/hit", 0).await.unwrap();
            tokio::task::yield_now().await;
        }
    })
    .await;
    let before = hits(0);
    for n in 0..100 {
        within("a call", client.call("count/hit", n)).await.unwrap();
    }
    assert_eq!(hits(0), before, "a server the records dropped gets nothing");
}

#[tokio::test]
async fn a_host_whose_records_go_away_empties_the_set() {
    let (server, hits) = counted().await;
    let records = Records::new(Mutex::new(vec![a("one.fleet.test.")]));
    let dns = dns_server(Arc::clone(&records)).await;
    let discovery = Dns::host(resolver(dns), "one.fleet.test.", port(&server))
        .interval(Duration::from_millis(100));
    let client = Client::balanced(Client::builder(), discovery).await;
    within("a call", client.call("count/hit", 1)).await.unwrap();
    assert_eq!(hits.load(Ordering::Relaxed), 1);

    records.lock().unwrap().clear();
    let error = within("the set to empty", async {
        loop {
            match client.call("count/hit", 2).await {
                Err(error) if error.kind() == ErrorKind::NoKernel => return error,
                _ => tokio::time::sleep(Duration::from_millis(20)).await,
            }
        }
    })
    .await;
    assert_eq!(error.kind(), ErrorKind::NoKernel);
}
