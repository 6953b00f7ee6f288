//! Calling a Perl POE::Component::IKC server from Rust with the legacy
//! client: the IKC0 negotiation and Storable messages, as ClientLite speaks
//! them.
//!
//! The Perl side (POE::Component::IKC 0.2402), `calc.pl`:
//!
//! ```perl
//! use POE qw(Component::IKC::Server);
//! POE::Component::IKC::Server->spawn(ip => '127.0.0.1', port => 6033, name => 'Perl');
//! POE::Session->create(inline_states => {
//!     _start => sub {
//!         $_[KERNEL]->alias_set('calc');
//!         $_[KERNEL]->call(IKC => publish => calc => ['add']);
//!     },
//!     # A call's answer is the state's return value.
//!     add => sub { my $sum = 0; $sum += $_ for @{ $_[ARG0] }; return $sum },
//! });
//! POE::Kernel->run;
//! ```
//!
//! ```sh
//! perl calc.pl &
//! cargo run --example perl_peer                 # or pass another address
//! ```
//!
//! An ikc server accepts legacy peers too, which is what the example's
//! test talks to when no Perl is at hand.

use ikc::core::BoxError;
use ikc::{Client, Value};

/// Calls `calc/add` on the Perl kernel at `addr`, then posts to it.
async fn run(addr: &str) -> Result<Value, BoxError> {
    let perl = Client::builder()
        .name("RustClient")
        .legacy(true)
        .connect(addr)
        .await?;
    println!("connected to the Perl kernel {:?}", perl.server().kernel);
    let sum = perl.call("poe://Perl/calc/add", vec![1, 2, 39]).await?;
    println!("calc/add [1, 2, 39] = {sum:?}");
    // A post: delivered, no answer awaited (IKC's `post`).
    perl.post("calc/add", vec![0]).await?;
    perl.close();
    Ok(sum)
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), BoxError> {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:6033".to_owned());
    run(&addr).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use ikc::core::BoxError;
    use ikc::{Kernel, Request, Server, Value, service_fn};

    /// An ikc server standing in for `calc.pl`: kernel `Perl`, session
    /// `calc`, event `add`.
    #[tokio::test]
    async fn the_legacy_client_calls_a_kernel_that_speaks_perls_protocol() {
        let kernel = Kernel::new("Perl");
        kernel
            .publish(
                "calc",
                ["add"],
                service_fn(|req: Request| async move {
                    let numbers: Vec<i64> = req.arg_as()?;
                    Ok::<_, BoxError>(Value::from(numbers.iter().sum::<i64>()))
                }),
            )
            .unwrap();
        let server = Server::builder()
            .kernel(kernel)
            .bind("127.0.0.1:0".parse().unwrap())
            .serve()
            .await
            .unwrap();
        let sum = tokio::time::timeout(
            std::time::Duration::from_secs(10),
            super::run(&server.local_addr().to_string()),
        )
        .await
        .expect("the example finishes")
        .expect("the example succeeds");
        assert_eq!(sum, Value::from(42));
    }
}
