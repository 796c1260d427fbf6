//! Where the `commerce` binary is, for test targets that run it as a process (the CLI tests and
//! the fault suite). Included by `#[path]` into each: test targets are separate crates.

use std::path::{Path, PathBuf};

/// The `commerce` binary: `COMMERCE_BIN`, else the one `cargo test --workspace --all-targets`
/// (and `cargo build --bin commerce`) puts next to this test's `deps/` directory.
pub fn commerce_binary() -> PathBuf {
    if let Ok(path) = std::env::var("COMMERCE_BIN") {
        return PathBuf::from(path);
    }
    let exe = std::env::current_exe().expect("the test knows its own path");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("the test binary lives in <target>/<profile>/deps");
    let binary = profile_dir.join(format!("commerce{}", std::env::consts::EXE_SUFFIX));
    assert!(
        binary.exists(),
        "{} is missing: run `cargo build --bin commerce` first (`make test` builds it), \
         or set COMMERCE_BIN",
        binary.display()
    );
    binary
}
