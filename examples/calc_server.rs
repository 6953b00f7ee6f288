//! A calculator session: several events, typed arguments through serde,
//! typed errors. Run it, then the client (`calc_client.rs`) in a second
//! terminal:
//!
//! ```sh
//! cargo run --example calc_server               # listens on 127.0.0.1:6031
//! cargo run --example calc_client
//! ```
//!
//! The same session from the command line:
//! `cargo run -- call --addr 127.0.0.1:6031 poe://Calc/calc/div '{"num": 1, "den": 0}'`.

use ikc::core::BoxError;
use ikc::server::ServerHandle;
use ikc::{ErrorKind, IkcError, Kernel, Request, Server, Value, service_fn};
use serde::{Deserialize, Serialize};

/// Where `main` listens; the client's default too.
pub(crate) const ADDR: &str = "127.0.0.1:6031";

/// The argument of `calc/div`, as a map `{"num": .., "den": ..}`.
#[derive(Debug, Deserialize)]
struct Division {
    num: f64,
    den: f64,
}

/// The answer of `calc/stats`.
#[derive(Debug, Serialize)]
struct Stats {
    count: usize,
    sum: f64,
    mean: f64,
}

/// One event of the calculator: a wrong argument answers `BadRequest` (the
/// `?` on `arg_as` does it), a division by zero answers `BadRequest` with a
/// reason, an unknown event never reaches here (`NoEvent`).
async fn calc(req: Request) -> Result<Value, BoxError> {
    match req.event() {
        "add" => {
            let numbers: Vec<i64> = req.arg_as()?;
            let sum = numbers
                .iter()
                .try_fold(0_i64, |sum, n| sum.checked_add(*n))
                .ok_or_else(|| IkcError::new(ErrorKind::BadRequest, "the sum overflows"))?;
            Ok(Value::from(sum))
        }
        "div" => {
            let Division { num, den } = req.arg_as()?;
            if den == 0.0 {
                return Err(IkcError::new(ErrorKind::BadRequest, "division by zero").into());
            }
            Ok(Value::from(num / den))
        }
        "stats" => {
            let numbers: Vec<f64> = req.arg_as()?;
            if numbers.is_empty() {
                return Err(IkcError::new(ErrorKind::BadRequest, "no numbers").into());
            }
            let sum: f64 = numbers.iter().sum();
            #[allow(clippy::cast_precision_loss)]
            let mean = sum / numbers.len() as f64;
            let stats = Stats {
                count: numbers.len(),
                sum,
                mean,
            };
            Ok(ikc::proto::value::to_value(&stats)?)
        }
        other => Err(format!("event {other} is published but not handled").into()),
    }
}

/// Publishes the calculator on `kernel` as session `calc`.
fn publish_calc(kernel: &Kernel) -> Result<(), BoxError> {
    kernel.publish("calc", ["add", "div", "stats"], service_fn(calc))?;
    Ok(())
}

/// Publishes `calc` on a kernel named `Calc` and serves it on `addr`.
///
/// # Errors
///
/// When the address cannot be bound.
pub(crate) async fn serve(addr: &str) -> Result<ServerHandle, BoxError> {
    let kernel = Kernel::new("Calc");
    publish_calc(&kernel)?;
    let server = Server::builder()
        .kernel(kernel)
        .bind(addr.parse()?)
        .serve()
        .await?;
    Ok(server)
}

#[allow(dead_code)] // Unused where calc_client.rs's test includes this file.
#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), BoxError> {
    let server = serve(ADDR).await?;
    println!("calc listening on {}; Ctrl-C stops it", server.local_addr());
    tokio::signal::ctrl_c().await?;
    server.shutdown();
    server.stopped().await;
    Ok(())
}

#[cfg(test)]
mod tests {
    use ikc::{Client, ErrorKind, Kernel, Value};

    /// The session tested as a unit: a client kernel connected to it in
    /// memory with the testing kit, no socket.
    #[tokio::test]
    async fn the_session_answers_a_kernel_connected_in_memory() {
        let server = Kernel::new("Calc");
        super::publish_calc(&server).unwrap();
        let client = Kernel::new("Tester");
        let _pair = ikc::testing::connect(&client, &server);
        let div = "poe://Calc/calc/div".parse().unwrap();
        let half = ikc::proto::value::to_value(
            &[("num", 1.0), ("den", 2.0)]
                .into_iter()
                .collect::<std::collections::BTreeMap<_, _>>(),
        )
        .unwrap();
        assert_eq!(client.call(&div, half).await.unwrap(), Value::from(0.5));
        let by_zero = ikc::proto::value::to_value(
            &[("num", 1.0), ("den", 0.0)]
                .into_iter()
                .collect::<std::collections::BTreeMap<_, _>>(),
        )
        .unwrap();
        let error = client.call(&div, by_zero).await.unwrap_err();
        assert_eq!(
            (error.kind(), error.message()),
            (ErrorKind::BadRequest, "division by zero")
        );
    }

    #[tokio::test]
    async fn the_calculator_answers_and_refuses_with_typed_errors() {
        let server = super::serve("127.0.0.1:0").await.expect("serves");
        let client = Client::connect(&server.local_addr().to_string())
            .await
            .expect("connects");
        let sum = client.call("calc/add", vec![1, 2, 3]).await.unwrap();
        assert_eq!(sum, Value::from(6));
        let error = client.call("calc/add", "not numbers").await.unwrap_err();
        assert_eq!(error.kind(), ErrorKind::BadRequest, "{error}");
        let error = client.call("calc/nope", Value::Null).await.unwrap_err();
        assert_eq!(error.kind(), ErrorKind::NoEvent, "{error}");
    }
}
