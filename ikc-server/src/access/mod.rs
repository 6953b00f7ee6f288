//! Access control: which callers may call or post to which sessions and
//! events, as a tower layer over the server's requests.
//!
//! - [`policy`]: the [`Policy`], read from TOML, and its check.
//! - [`layer`]: [`AccessLayer`], answering `Forbidden` to what the policy
//!   refuses.
//!
//! Add the layer with [`Server::layer`](crate::Server::layer) (or `ikc
//! serve --access FILE`): it sees every request a peer sends, the `IKC/*`
//! built-ins (`IKC/ping`, `IKC/subscribe`, `IKC/shutdown`...) included, and
//! decides from the caller's [`Identity`](ikc_core::Identity) as its
//! connection proved it. Requests made in this process carry no caller and
//! are not checked.
//!
//! ```toml
//! # What a request no rule covers gets: "deny" (the default) or "allow".
//! default = "deny"
//!
//! # Rules are tried in order; the first whose target (session/event glob;
//! # a target without "/" covers every event) and kind covers the request
//! # decides: the request runs when the caller matches one `allow` entry,
//! # an entry matching when every field it gives matches.
//! [[rule]]
//! target = "admin/*"
//! allow = [
//!   { key_id = "ops-2026" },                 # proved this shared-secret key
//!   { subject = "CN=ops-*" },                # TLS client certificate subject
//!   { san = "*.ops.example.com" },           # ... or one of its SANs
//!   { uid = 0, kernel = "root-*" },          # Unix socket peer of uid 0 named root-*
//! ]
//!
//! [[rule]]
//! target = "logs/line"
//! requests = "post"                          # "call", "post" or "both" (default)
//! allow = [{}]                               # anyone
//!
//! [[rule]]
//! target = "IKC/*"
//! allow = [{ authenticated = true }]         # proved a key, a certificate or Unix credentials
//!
//! [[rule]]
//! target = "*"
//! allow = [{ legacy = false }]               # every native peer, no Perl peer
//! ```
//!
//! A kernel name (`kernel`) is what the peer claims in its handshake, not a
//! proof: match it together with a key, a certificate or a uid where it
//! matters.
//!
//! **Perl IKC peers** (the legacy protocol) prove nothing: their identity
//! has their kernel name, their address and `legacy = true`, and no key,
//! certificate or credentials (a server with a shared secret refuses them
//! outright). They get what an unauthenticated peer gets: rules with
//! `authenticated = true`, a `key_id`, a `subject`, a `san` or a `uid` never
//! match them; `{}`, `{ authenticated = false }` and `{ legacy = true }`
//! do, with `kernel` as the only other field worth matching. Their protocol
//! has no error kinds: a refusal reaches them as the error text.
//!
//! A refused request is answered `ErrorKind::Forbidden`, naming the
//! caller and the target; the first refusal of each peer is logged at
//! `info`, the next ones at `debug`.

pub mod layer;
pub mod policy;

pub use self::layer::AccessLayer;
pub use self::policy::{Decision, Policy, PolicyError};
