//! Names the git commit the binary is built from, for `commerce_build_info`: from
//! `COMMERCE_GIT_SHA` when the build sets it (an image built without `.git`), else from `git`
//! when it is there; neither, and the binary reports its version alone.

use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let output = Command::new("git").args(args).output().ok()?;
    let text = String::from_utf8(output.stdout).ok()?;
    let text = text.trim();
    (output.status.success() && !text.is_empty()).then(|| text.to_owned())
}

fn main() {
    println!("cargo:rerun-if-env-changed=COMMERCE_GIT_SHA");
    if let Ok(sha) = std::env::var("COMMERCE_GIT_SHA") {
        println!("cargo:rustc-env=COMMERCE_GIT_SHA={sha}");
        return;
    }
    let Some(sha) = git(&["rev-parse", "--short=12", "HEAD"]) else {
        return;
    };
    println!("cargo:rustc-env=COMMERCE_GIT_SHA={sha}");
    // Build again when HEAD moves: its file, the branch it names and the packed refs.
    let mut watched = vec!["HEAD".to_owned(), "packed-refs".to_owned()];
    watched.extend(git(&["symbolic-ref", "-q", "HEAD"]));
    for name in watched {
        let path = git(&["rev-parse", "--path-format=absolute", "--git-path", &name]);
        // A path that does not exist would make every build run this script again.
        if let Some(path) = path.filter(|p| std::path::Path::new(p).exists()) {
            println!("cargo:rerun-if-changed={path}");
        }
    }
}
