//! [`Policy`]: who may call or post what, read from TOML, and the check of
//! one request against it.

use std::path::Path;

use globset::{Glob, GlobMatcher};
use ikc_core::{PeerInfo, Request};
use serde::Deserialize;

/// Who may call or post what; see [the module docs](super). Cheap to
/// clone behind the [`AccessLayer`](super::AccessLayer)'s `Arc`.
#[derive(Debug, Clone)]
pub struct Policy {
    rules: Vec<Rule>,
    default: Decision,
}

/// What a request no rule covers gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Decision {
    /// It runs.
    Allow,
    /// It is answered `Forbidden`.
    Deny,
}

/// Which requests a rule covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Requests {
    /// Calls and posts.
    #[default]
    Both,
    Call,
    Post,
}

#[derive(Debug, Clone)]
struct Rule {
    /// The target's session and event patterns (`session/event`; a target
    /// with no `/` covers every event of the sessions it matches).
    session: GlobMatcher,
    event: GlobMatcher,
    requests: Requests,
    allow: Vec<Principal>,
}

/// One entry of a rule's `allow` list: a caller matches when it matches
/// every field given (an entry with no field matches anyone).
#[derive(Debug, Clone, Default)]
struct Principal {
    kernel: Option<GlobMatcher>,
    key_id: Option<String>,
    subject: Option<GlobMatcher>,
    san: Option<GlobMatcher>,
    uid: Option<u32>,
    gid: Option<u32>,
    authenticated: Option<bool>,
    legacy: Option<bool>,
}

/// Why a policy could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The text is not a policy: bad TOML, an unknown field, a bad pattern.
    #[error("bad access policy: {0}")]
    Invalid(String),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PolicyFile {
    #[serde(default = "deny")]
    default: Decision,
    #[serde(default)]
    rule: Vec<RuleFile>,
}

fn deny() -> Decision {
    Decision::Deny
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleFile {
    target: String,
    #[serde(default)]
    requests: Requests,
    #[serde(default)]
    allow: Vec<PrincipalFile>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct PrincipalFile {
    kernel: Option<String>,
    key_id: Option<String>,
    subject: Option<String>,
    san: Option<String>,
    uid: Option<u32>,
    gid: Option<u32>,
    authenticated: Option<bool>,
    legacy: Option<bool>,
}

fn glob(what: &str, pattern: &str) -> Result<GlobMatcher, PolicyError> {
    Glob::new(pattern)
        .map(|glob| glob.compile_matcher())
        .map_err(|e| PolicyError::Invalid(format!("{what} pattern {pattern:?}: {e}")))
}

fn optional_glob(what: &str, pattern: Option<&str>) -> Result<Option<GlobMatcher>, PolicyError> {
    pattern.map(|p| glob(what, p)).transpose()
}

impl std::str::FromStr for Policy {
    type Err = PolicyError;

    /// A policy from its TOML text; see [the module docs](super).
    fn from_str(text: &str) -> Result<Self, PolicyError> {
        let file: PolicyFile =
            toml::from_str(text).map_err(|e| PolicyError::Invalid(e.to_string()))?;
        let mut rules = Vec::with_capacity(file.rule.len());
        for rule in file.rule {
            let mut allow = Vec::with_capacity(rule.allow.len());
            for p in rule.allow {
                allow.push(Principal {
                    kernel: optional_glob("kernel", p.kernel.as_deref())?,
                    key_id: p.key_id,
                    subject: optional_glob("subject", p.subject.as_deref())?,
                    san: optional_glob("san", p.san.as_deref())?,
                    uid: p.uid,
                    gid: p.gid,
                    authenticated: p.authenticated,
                    legacy: p.legacy,
                });
            }
            let (session, event) = rule.target.split_once('/').unwrap_or((&rule.target, "*"));
            rules.push(Rule {
                session: glob("target", session)?,
                event: glob("target", event)?,
                requests: rule.requests,
                allow,
            });
        }
        Ok(Policy {
            rules,
            default: file.default,
        })
    }
}

impl Policy {
    /// Reads a policy file (TOML; see [the module docs](super)).
    ///
    /// # Errors
    ///
    /// When the file cannot be read or is not a policy.
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, PolicyError> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path).map_err(|source| PolicyError::Read {
            path: path.display().to_string(),
            source,
        })?;
        text.parse()
    }

    /// Whether `req` may run: a request made in this process (no caller)
    /// always may; a peer's request is decided by the first rule that
    /// covers its target and kind, else by the policy's default.
    #[must_use]
    pub fn allows(&self, req: &Request) -> bool {
        let Some(caller) = req.caller() else {
            return true;
        };
        let kind = if req.is_post() {
            Requests::Post
        } else {
            Requests::Call
        };
        self.rules
            .iter()
            .find(|rule| {
                (rule.requests == Requests::Both || rule.requests == kind)
                    && rule.session.is_match(req.session())
                    && rule.event.is_match(req.event())
            })
            .map_or(self.default == Decision::Allow, |rule| {
                rule.allow.iter().any(|p| p.matches(caller))
            })
    }
}

impl Principal {
    fn matches(&self, caller: &PeerInfo) -> bool {
        let identity = &caller.identity;
        let certificate = identity.certificate.as_ref();
        let unix = identity.unix.as_ref();
        self.kernel
            .as_ref()
            .is_none_or(|k| k.is_match(&caller.kernel))
            && self
                .key_id
                .as_ref()
                .is_none_or(|id| identity.key_id.as_ref() == Some(id))
            && self
                .subject
                .as_ref()
                .is_none_or(|s| certificate.is_some_and(|c| s.is_match(&c.subject)))
            && self.san.as_ref().is_none_or(|s| {
                certificate.is_some_and(|c| c.sans.iter().any(|san| s.is_match(san)))
            })
            && self
                .uid
                .is_none_or(|uid| unix.is_some_and(|u| u.uid == uid))
            && self
                .gid
                .is_none_or(|gid| unix.is_some_and(|u| u.gid == gid))
            && self
                .authenticated
                .is_none_or(|a| a == identity.is_authenticated())
            && self.legacy.is_none_or(|l| l == identity.legacy)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use ikc_core::{Certificate, Identity, UnixCredentials, Value};

    use super::*;

    fn from(kernel: &str, identity: Identity, target: &str, post: bool) -> Request {
        let target = target.parse().unwrap();
        let req = if post {
            Request::post(target, Value::Null)
        } else {
            Request::call(target, Value::Null)
        };
        req.with_caller(Arc::new(
            PeerInfo::new(kernel, vec![], 1).with_identity(identity),
        ))
    }

    const POLICY: &str = r#"
        default = "deny"

        [[rule]]
        target = "admin/*"
        allow = [{ key_id = "B" }, { subject = "CN=ops*" }, { uid = 0, kernel = "root-*" }]

        [[rule]]
        target = "logs/*"
        requests = "post"
        allow = [{}]

        [[rule]]
        target = "IKC/*"
        allow = [{ authenticated = true }]

        [[rule]]
        target = "*"
        allow = [{ legacy = false }]
    "#;

    #[test]
    fn the_first_rule_that_covers_a_target_decides() {
        let policy: Policy = POLICY.parse().unwrap();
        let key = |id: &str| Identity::default().with_key_id(id);
        assert!(policy.allows(&from("a", key("B"), "admin/reset", false)));
        assert!(!policy.allows(&from("a", key("A"), "admin/reset", false)));
        let cert =
            Identity::default().with_certificate(Certificate::new("CN=ops-1,O=Acme", vec![]));
        assert!(policy.allows(&from("a", cert, "admin/reset", false)));
        let root = Identity::default().with_unix(UnixCredentials::new(0, 0, None));
        assert!(policy.allows(&from("root-1", root.clone(), "admin/reset", false)));
        assert!(
            !policy.allows(&from("other", root, "admin/reset", false)),
            "every field must match"
        );
        let nobody = Identity::default();
        // Posts to logs are open; calls fall through to the last rule.
        assert!(policy.allows(&from("a", nobody.clone(), "logs/line", true)));
        assert!(policy.allows(&from("a", nobody.clone(), "logs/line", false)));
        assert!(!policy.allows(&from("a", nobody.clone(), "IKC/ping", false)));
        assert!(policy.allows(&from("a", key("A"), "IKC/ping", false)));
        let perl = Identity::default().with_legacy(true);
        assert!(!policy.allows(&from("perl", perl, "echo/say", false)));
        // In-process requests carry no caller and are not checked.
        let local = Request::call("admin/reset".parse().unwrap(), Value::Null);
        assert!(policy.allows(&local));
    }

    #[test]
    fn no_rule_means_the_default_and_bad_policies_are_named() {
        let open: Policy = "default = \"allow\"".parse().unwrap();
        assert!(open.allows(&from("a", Identity::default(), "x/y", false)));
        let closed: Policy = "".parse().unwrap();
        assert!(!closed.allows(&from("a", Identity::default(), "x/y", false)));
        let error = "[[rule]]\ntarget = \"a/*\"\nallow = [{ colour = \"red\" }]"
            .parse::<Policy>()
            .unwrap_err();
        assert!(error.to_string().contains("colour"), "{error}");
        let error = "[[rule]]\ntarget = \"a/[\"".parse::<Policy>().unwrap_err();
        assert!(error.to_string().contains("\"[\""), "{error}");
    }
}
