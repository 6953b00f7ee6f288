//! `Specifier`: every written form parses to the right parts and prints back,
//! each malformed text is refused with a typed error naming the bad part, and
//! the length limits hold at their exact boundaries.

use ikc_core::{
    KernelTarget, MAX_NAME_LEN, MAX_SPECIFIER_LEN, ParseSpecifierError, Part, Specifier,
};
use proptest::prelude::*;

fn parse(text: &str) -> Result<Specifier, ParseSpecifierError> {
    text.parse()
}

fn named(kernel: &str) -> KernelTarget {
    KernelTarget::Named(kernel.to_owned())
}

#[test]
fn full_form_parses_into_its_three_parts_and_prints_back_unchanged() {
    let spec = parse("poe://Server/calc/add").unwrap();
    assert_eq!(spec.kernel(), &named("Server"));
    assert_eq!(spec.session(), "calc");
    assert_eq!(spec.event(), Some("add"));
    assert_eq!(spec.to_string(), "poe://Server/calc/add");
}

#[test]
fn session_form_with_scheme_has_no_event_and_prints_back_unchanged() {
    let spec = parse("poe://Server/calc").unwrap();
    assert_eq!(spec.kernel(), &named("Server"));
    assert_eq!(spec.session(), "calc");
    assert_eq!(spec.event(), None);
    assert_eq!(spec.to_string(), "poe://Server/calc");
}

#[test]
fn form_without_scheme_names_the_kernel_and_prints_with_the_scheme() {
    let spec = parse("Server/calc/add").unwrap();
    assert_eq!(spec.kernel(), &named("Server"));
    assert_eq!((spec.session(), spec.event()), ("calc", Some("add")));
    assert_eq!(spec.to_string(), "poe://Server/calc/add");
    assert_eq!(parse(&spec.to_string()).unwrap(), spec);
}

#[test]
fn session_event_form_targets_the_local_kernel_and_prints_back_unchanged() {
    let spec = parse("calc/add").unwrap();
    assert_eq!(spec.kernel(), &KernelTarget::Local);
    assert_eq!((spec.session(), spec.event()), ("calc", Some("add")));
    assert_eq!(spec.to_string(), "calc/add");
}

#[test]
fn star_kernel_means_any_kernel_with_or_without_the_scheme() {
    for text in ["poe://*/calc/add", "*/calc/add"] {
        let spec = parse(text).unwrap();
        assert_eq!(spec.kernel(), &KernelTarget::Any, "{text}");
        assert_eq!((spec.session(), spec.event()), ("calc", Some("add")));
        assert_eq!(spec.to_string(), "poe://*/calc/add");
    }
    let session_only = parse("poe://*/calc").unwrap();
    assert_eq!(session_only.kernel(), &KernelTarget::Any);
    assert_eq!(session_only.to_string(), "poe://*/calc");
}

#[test]
fn kernel_names_may_be_addresses_with_colons_and_dots() {
    let spec = parse("poe://127.0.0.1:4000/calc/add").unwrap();
    assert_eq!(spec.kernel(), &named("127.0.0.1:4000"));
    assert_eq!(spec.to_string(), "poe://127.0.0.1:4000/calc/add");
}

#[test]
fn constructors_build_the_same_specifiers_as_parsing() {
    assert_eq!(
        Specifier::local("calc", "add").unwrap(),
        parse("calc/add").unwrap()
    );
    assert_eq!(
        Specifier::remote("Server", "calc", "add").unwrap(),
        parse("poe://Server/calc/add").unwrap()
    );
    assert_eq!(
        Specifier::remote("*", "calc", "add").unwrap().kernel(),
        &KernelTarget::Any
    );
    assert_eq!(
        parse("poe://Server/calc")
            .unwrap()
            .with_event("add")
            .unwrap(),
        parse("poe://Server/calc/add").unwrap()
    );
}

#[test]
fn constructors_refuse_bad_names_naming_the_part() {
    assert_eq!(
        Specifier::local("", "add"),
        Err(ParseSpecifierError::EmptyPart {
            part: Part::Session
        })
    );
    assert_eq!(
        Specifier::remote("Ser ver", "calc", "add"),
        Err(ParseSpecifierError::BadChar {
            part: Part::Kernel,
            ch: ' '
        })
    );
    assert_eq!(
        parse("calc/add").unwrap().with_event("a/b"),
        Err(ParseSpecifierError::BadChar {
            part: Part::Event,
            ch: '/'
        })
    );
}

#[test]
fn empty_text_is_refused_as_empty() {
    assert_eq!(parse(""), Err(ParseSpecifierError::Empty));
}

#[test]
fn a_lone_session_without_scheme_is_refused_as_missing_its_event() {
    assert_eq!(
        parse("calc"),
        Err(ParseSpecifierError::MissingEvent {
            text: "calc".to_owned()
        })
    );
}

#[test]
fn more_than_kernel_session_event_is_refused_as_too_many_parts() {
    for text in ["a/b/c/d", "poe://a/b/c/d", "poe://a/b/c/"] {
        assert_eq!(
            parse(text),
            Err(ParseSpecifierError::TooManyParts {
                text: text.to_owned()
            }),
            "{text}"
        );
    }
}

#[test]
fn an_empty_part_is_refused_naming_that_part() {
    let cases = [
        ("poe:///calc/add", Part::Kernel),
        ("/calc/add", Part::Kernel),
        ("poe://Server", Part::Session),
        ("poe://Server/", Part::Session),
        ("a//b", Part::Session),
        ("/add", Part::Session),
        ("calc/", Part::Event),
        ("poe://Server/calc/", Part::Event),
    ];
    for (text, part) in cases {
        assert_eq!(
            parse(text),
            Err(ParseSpecifierError::EmptyPart { part }),
            "{text}"
        );
    }
}

#[test]
fn whitespace_and_control_characters_are_refused_naming_part_and_character() {
    let cases = [
        ("poe://Ser ver/calc/add", Part::Kernel, ' '),
        ("poe://Server/ca\tlc/add", Part::Session, '\t'),
        ("calc/ad\u{0}d", Part::Event, '\u{0}'),
        ("calc/add\n", Part::Event, '\n'),
        ("ca\u{7f}lc/add", Part::Session, '\u{7f}'),
        ("calc/a\u{a0}dd", Part::Event, '\u{a0}'),
    ];
    for (text, part, ch) in cases {
        assert_eq!(
            parse(text),
            Err(ParseSpecifierError::BadChar { part, ch }),
            "{text:?}"
        );
    }
}

#[test]
fn a_name_of_max_name_len_bytes_is_accepted_and_one_more_is_refused() {
    let longest = "s".repeat(MAX_NAME_LEN);
    let spec = parse(&format!("{longest}/add")).unwrap();
    assert_eq!(spec.session(), longest);

    for (text, part) in [
        (
            format!("poe://{}/calc/add", "k".repeat(MAX_NAME_LEN + 1)),
            Part::Kernel,
        ),
        (
            format!("{}/add", "s".repeat(MAX_NAME_LEN + 1)),
            Part::Session,
        ),
        (
            format!("calc/{}", "e".repeat(MAX_NAME_LEN + 1)),
            Part::Event,
        ),
    ] {
        assert_eq!(
            parse(&text),
            Err(ParseSpecifierError::PartTooLong {
                part,
                len: MAX_NAME_LEN + 1,
                max: MAX_NAME_LEN
            })
        );
    }
}

#[test]
fn name_length_is_counted_in_bytes_not_characters() {
    // 129 two-byte characters: 258 bytes, over the limit.
    let wide = "é".repeat(MAX_NAME_LEN / 2 + 1);
    assert_eq!(
        parse(&format!("{wide}/add")),
        Err(ParseSpecifierError::PartTooLong {
            part: Part::Session,
            len: wide.len(),
            max: MAX_NAME_LEN
        })
    );
}

#[test]
fn text_over_max_specifier_len_is_refused_before_its_parts_are_read() {
    // Exactly at the limit the parts are checked (and this event is too long).
    let at_limit = format!("a/{}", "b".repeat(MAX_SPECIFIER_LEN - 2));
    assert_eq!(at_limit.len(), MAX_SPECIFIER_LEN);
    assert!(matches!(
        parse(&at_limit),
        Err(ParseSpecifierError::PartTooLong {
            part: Part::Event,
            ..
        })
    ));

    let over = format!("a/{}", "b".repeat(MAX_SPECIFIER_LEN - 1));
    assert_eq!(
        parse(&over),
        Err(ParseSpecifierError::TooLong {
            len: MAX_SPECIFIER_LEN + 1,
            max: MAX_SPECIFIER_LEN
        })
    );
}

#[test]
fn error_messages_name_the_bad_part() {
    let message = |text: &str| parse(text).unwrap_err().to_string();
    assert_eq!(message("poe:///calc/add"), "the kernel name is empty");
    assert_eq!(message("a//b"), "the session name is empty");
    assert!(message("calc/a b").starts_with("the event name contains ' '"));
    assert!(message(&format!("{}/add", "s".repeat(300))).starts_with("the session name is 300"));
    assert_eq!(Part::Kernel.to_string(), "kernel");
}

/// A valid kernel, session or event name: no `/`, whitespace or control
/// character, at most 32 characters (so at most 128 bytes).
fn name() -> impl Strategy<Value = String> {
    "[^/\\s\\p{Cc}]{1,32}".prop_filter("names are not `*`", |name| name != "*")
}

fn kernel_target() -> impl Strategy<Value = KernelTarget> {
    prop_oneof![
        Just(KernelTarget::Local),
        Just(KernelTarget::Any),
        name().prop_map(KernelTarget::Named),
    ]
}

fn specifier() -> impl Strategy<Value = Specifier> {
    (kernel_target(), name(), proptest::option::of(name())).prop_map(|(kernel, session, event)| {
        let text = match (&kernel, &event) {
            (KernelTarget::Local, Some(event)) => format!("{session}/{event}"),
            // A local specifier always has an event; give it one.
            (KernelTarget::Local, None) => format!("{session}/ev"),
            (KernelTarget::Any, Some(event)) => format!("poe://*/{session}/{event}"),
            (KernelTarget::Any, None) => format!("poe://*/{session}"),
            (KernelTarget::Named(k), Some(event)) => format!("poe://{k}/{session}/{event}"),
            (KernelTarget::Named(k), None) => format!("poe://{k}/{session}"),
        };
        let spec: Specifier = text.parse().expect("generated text is valid");
        assert_eq!(spec.kernel(), &kernel);
        assert_eq!(spec.session(), session);
        let event = event
            .as_deref()
            .or((kernel == KernelTarget::Local).then_some("ev"));
        assert_eq!(spec.event(), event);
        spec
    })
}

proptest! {
    #[test]
    fn display_then_parse_gives_back_the_same_specifier(spec in specifier()) {
        let text = spec.to_string();
        prop_assert_eq!(text.parse::<Specifier>(), Ok(spec));
    }

    #[test]
    fn parsing_any_text_never_panics_and_what_parses_round_trips(text in any::<String>()) {
        if let Ok(spec) = text.parse::<Specifier>() {
            prop_assert_eq!(spec.to_string().parse::<Specifier>(), Ok(spec));
        }
    }

    #[test]
    fn parsing_slash_heavy_text_never_panics(text in "(poe://)?[a*/ ]{0,12}") {
        if let Ok(spec) = text.parse::<Specifier>() {
            prop_assert_eq!(spec.to_string().parse::<Specifier>(), Ok(spec));
        }
    }

    #[test]
    fn parse_owned_agrees_with_parse(text in "(poe://)?[a-c*/ é]{0,12}|\\PC{0,40}") {
        prop_assert_eq!(Specifier::parse_owned(text.clone()), text.parse::<Specifier>());
    }
}

/// The parser as first written (`splitn` and a `String` per part): the
/// reference the allocation-free parser is checked against.
mod reference {
    use ikc_core::{KernelTarget, ParseSpecifierError, Part};

    pub(super) type Parsed = (KernelTarget, String, Option<String>);

    fn name(part: Part, text: &str) -> Result<String, ParseSpecifierError> {
        if text.is_empty() {
            return Err(ParseSpecifierError::EmptyPart { part });
        }
        if text.len() > ikc_core::MAX_NAME_LEN {
            return Err(ParseSpecifierError::PartTooLong {
                part,
                len: text.len(),
                max: ikc_core::MAX_NAME_LEN,
            });
        }
        if let Some(ch) = text
            .chars()
            .find(|&c| c == '/' || c.is_whitespace() || c.is_control())
        {
            return Err(ParseSpecifierError::BadChar { part, ch });
        }
        Ok(text.to_owned())
    }

    fn kernel_target(text: &str) -> Result<KernelTarget, ParseSpecifierError> {
        if text == "*" {
            Ok(KernelTarget::Any)
        } else {
            name(Part::Kernel, text).map(KernelTarget::Named)
        }
    }

    pub(super) fn parse(text: &str) -> Result<Parsed, ParseSpecifierError> {
        if text.is_empty() {
            return Err(ParseSpecifierError::Empty);
        }
        let max = ikc_core::MAX_SPECIFIER_LEN;
        if text.len() > max {
            return Err(ParseSpecifierError::TooLong {
                len: text.len(),
                max,
            });
        }
        let (with_scheme, rest) = match text.strip_prefix("poe://") {
            Some(rest) => (true, rest),
            None => (false, text),
        };
        let parts: Vec<&str> = rest.splitn(4, '/').collect();
        match (with_scheme, parts.as_slice()) {
            (true, [kernel, session]) => {
                Ok((kernel_target(kernel)?, name(Part::Session, session)?, None))
            }
            (_, [kernel, session, event]) => Ok((
                kernel_target(kernel)?,
                name(Part::Session, session)?,
                Some(name(Part::Event, event)?),
            )),
            (false, [session, event]) => Ok((
                KernelTarget::Local,
                name(Part::Session, session)?,
                Some(name(Part::Event, event)?),
            )),
            (true, [kernel]) => {
                kernel_target(kernel)?;
                Err(ParseSpecifierError::EmptyPart {
                    part: Part::Session,
                })
            }
            (false, [_]) => Err(ParseSpecifierError::MissingEvent {
                text: text.to_owned(),
            }),
            _ => Err(ParseSpecifierError::TooManyParts {
                text: text.to_owned(),
            }),
        }
    }
}

fn parts(spec: Specifier) -> reference::Parsed {
    (
        spec.kernel().clone(),
        spec.session().to_owned(),
        spec.event().map(str::to_owned),
    )
}

proptest! {
    #[test]
    fn parse_agrees_with_the_reference_parser(
        text in "(poe://)?[a-c*/ \t\u{7f}é\u{2028}]{0,14}|(poe://)?[a/]{250,270}|\\PC{0,40}|[!-~]{0,3}/[a-c]{254,258}|[a-c]{254,258}/[!-~]{0,3}"
    ) {
        prop_assert_eq!(text.parse::<Specifier>().map(parts), reference::parse(&text));
        prop_assert_eq!(Specifier::parse_owned(text.clone()).map(parts), reference::parse(&text));
    }
}
