//! Embeds the commit a binary is built from as `MEMAD_BUILD_COMMIT`: 12 hex digits; when
//! tracked files differed from it at build time, `-dirty-` and the first 8 hex digits of the
//! git object hash of that difference (`git diff HEAD`), so that binaries of two different
//! edits of one commit are told apart; `unknown` outside a git checkout. A run
//! records the code that produced its numbers this way, also where the binary runs without
//! its checkout (a GPU machine) or after the checkout has moved on. Shared by `memad` and the
//! benchmark binaries (`benches/Cargo.toml` names this file as its build script).
use std::path::Path;

include!("src/git_commit.rs");

fn git(args: &[&str]) -> Option<String> {
    git_in(Path::new("."), args)
}

fn main() {
    // Built again when HEAD moves (checkout, commit) or a workspace source changes (the
    // dirty flag).
    if let (Some(git_dir), Some(root)) = (
        git(&["rev-parse", "--absolute-git-dir"]),
        git(&["rev-parse", "--show-toplevel"]),
    ) {
        let (git_dir, root) = (Path::new(&git_dir), Path::new(&root));
        let mut watched = vec![git_dir.join("HEAD"), git_dir.join("packed-refs")];
        if let Some(head_ref) = git(&["symbolic-ref", "-q", "HEAD"]) {
            watched.push(git_dir.join(head_ref));
        }
        for source in ["crates", "benches", "Cargo.toml", "Cargo.lock"] {
            watched.push(root.join(source));
        }
        // Paths inside the checkout are given relative to this package (Cargo resolves them
        // so): a target folder copied or shared between checkouts then watches the files of
        // the checkout it builds, not those of the one it was first built in.
        let manifest = std::env::var("CARGO_MANIFEST_DIR").unwrap_or_default();
        let up = Path::new(&manifest).strip_prefix(root).ok().map(|inside| {
            inside
                .components()
                .map(|_| "..")
                .collect::<std::path::PathBuf>()
        });
        for path in watched {
            let relative =
                (up.as_ref()).and_then(|up| Some(up.join(path.strip_prefix(root).ok()?)));
            println!(
                "cargo:rerun-if-changed={}",
                relative.unwrap_or(path).display()
            );
        }
    }
    let commit = describe_checkout(Path::new(".")).unwrap_or_else(|| "unknown".to_string());
    println!("cargo:rustc-env=MEMAD_BUILD_COMMIT={commit}");
}
