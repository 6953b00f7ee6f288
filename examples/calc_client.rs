//! The client of `calc_server.rs`: calls with typed arguments, reads typed
//! answers, and tells the kinds of error apart.
//!
//! ```sh
//! cargo run --example calc_server               # in one terminal
//! cargo run --example calc_client               # in another; or pass an address
//! ```

use ikc::core::BoxError;
use ikc::{Client, ErrorKind, IkcError, Value};
use serde::{Deserialize, Serialize};

/// The argument of `calc/div`.
#[derive(Debug, Serialize)]
struct Division {
    num: f64,
    den: f64,
}

/// The answer of `calc/stats`.
#[derive(Debug, Deserialize, PartialEq)]
struct Stats {
    count: usize,
    sum: f64,
    mean: f64,
}

/// What the client saw, for its test.
#[derive(Debug, PartialEq)]
struct Seen {
    sum: i64,
    quotient: f64,
    stats: Stats,
    by_zero: ErrorKind,
    bad_argument: ErrorKind,
}

/// Calls every event of `calc` on the server at `addr`.
async fn run(addr: &str) -> Result<Seen, BoxError> {
    let client = Client::connect(addr).await?;

    let sum = client.call("poe://Calc/calc/add", vec![40, 2]).await?;
    let sum: i64 = ikc::proto::value::from_value(sum)?;
    println!("40 + 2 = {sum}");

    let division = ikc::proto::value::to_value(&Division { num: 1.0, den: 4.0 })?;
    let quotient: f64 = ikc::proto::value::from_value(client.call("calc/div", division).await?)?;
    println!("1 / 4 = {quotient}");

    let stats = client.call("calc/stats", vec![1.0, 2.0, 6.0]).await?;
    let stats: Stats = ikc::proto::value::from_value(stats)?;
    println!("stats of [1, 2, 6]: {stats:?}");

    // Errors come back typed: the kind says what went wrong, the message why.
    let by_zero = ikc::proto::value::to_value(&Division { num: 1.0, den: 0.0 })?;
    let by_zero = kind_of(client.call("calc/div", by_zero).await)?;
    let bad_argument = kind_of(client.call("calc/add", Value::from("forty-two")).await)?;

    client.close();
    Ok(Seen {
        sum,
        quotient,
        stats,
        by_zero,
        bad_argument,
    })
}

/// The kind of a call's error, printed; a call that succeeded is a bug here.
fn kind_of(result: Result<Value, IkcError>) -> Result<ErrorKind, BoxError> {
    match result {
        Ok(value) => Err(format!("expected an error, got {value:?}").into()),
        Err(error) => {
            println!("refused: {} ({})", error.kind(), error.message());
            Ok(error.kind())
        }
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), BoxError> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:6031".to_owned());
    run(&addr).await?;
    Ok(())
}

// The server of the pair, exactly as `cargo run --example calc_server` runs
// it, for the test.
#[cfg(test)]
#[path = "calc_server.rs"]
mod calc_server;

#[cfg(test)]
mod tests {
    use super::calc_server;

    #[tokio::test]
    async fn the_client_gets_typed_answers_and_typed_errors() {
        let server = calc_server::serve("127.0.0.1:0").await.expect("serves");
        let seen = super::run(&server.local_addr().to_string())
            .await
            .expect("the client runs");
        assert_eq!(
            seen,
            super::Seen {
                sum: 42,
                quotient: 0.25,
                stats: super::Stats {
                    count: 3,
                    sum: 9.0,
                    mean: 3.0
                },
                by_zero: ikc::ErrorKind::BadRequest,
                bad_argument: ikc::ErrorKind::BadRequest,
            }
        );
    }
}
