//! The generated protobuf code is checked in so users need no `protoc`; this
//! test regenerates it with protox + prost-build and fails when the checked-in
//! file is stale. Run with `IKC_REGENERATE=1` to rewrite it.

use std::path::Path;

#[test]
fn checked_in_generated_code_matches_the_proto() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let fds = protox::compile([root.join("proto/ikc.proto")], [root.join("proto")])
        .expect("ikc.proto compiles");
    let out = tempfile::tempdir().expect("temp dir");
    prost_build::Config::new()
        .out_dir(out.path())
        .bytes(["."])
        .btree_map(["."])
        .compile_fds(fds)
        .expect("prost-build generates code");
    let fresh = std::fs::read_to_string(out.path().join("ikc.v1.rs")).expect("generated file");
    let checked_in_path = root.join("src/generated/ikc.v1.rs");
    if std::env::var_os("IKC_REGENERATE").is_some() {
        std::fs::write(&checked_in_path, &fresh).expect("write generated file");
        return;
    }
    let checked_in = std::fs::read_to_string(&checked_in_path).unwrap_or_default();
    assert!(
        checked_in == fresh,
        "{} is stale: run `IKC_REGENERATE=1 cargo test -p ikc-proto --test codegen`",
        checked_in_path.display()
    );
}
