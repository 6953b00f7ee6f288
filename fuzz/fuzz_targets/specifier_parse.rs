//! Arbitrary text into the specifier parser.
//!
//! Checked: no panic; every accepted specifier prints as text that parses
//! back to the same specifier and prints the same again
//! (`parse(display(s)) == s`); the constructors (`local`, `remote`,
//! `with_event`) agree with the parser; errors print.

#![no_main]

use ikc_core::{KernelTarget, Specifier};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let spec = match text.parse::<Specifier>() {
        Ok(spec) => spec,
        Err(error) => {
            let _ = error.to_string();
            return;
        }
    };
    let shown = spec.to_string();
    let again: Specifier = shown
        .parse()
        .unwrap_or_else(|e| panic!("{shown:?} (printed from {text:?}) does not parse: {e}"));
    assert_eq!(again, spec, "{text:?} printed as {shown:?}");
    assert_eq!(again.to_string(), shown);

    let Some(event) = spec.event() else {
        return;
    };
    let built = match spec.kernel() {
        KernelTarget::Local => Specifier::local(spec.session(), event),
        KernelTarget::Any => Specifier::remote("*", spec.session(), event),
        KernelTarget::Named(kernel) => Specifier::remote(kernel, spec.session(), event),
    };
    assert_eq!(
        built.as_ref(),
        Ok(&spec),
        "constructors disagree on {text:?}"
    );
    assert_eq!(spec.with_event(event).as_ref(), Ok(&spec));
});
