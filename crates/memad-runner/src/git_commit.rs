// The commit of the git checkout around the current folder, as memad records it. Shared by
// `build.rs` (through `include!`, which is why this file has no inner doc comment) and
// `output.rs`, so that a binary's commit and its checkout's are written alike.

/// `git ARGS`'s standard output in the folder `dir`, trimmed; `None` when git is missing or
/// fails.
fn git_in(dir: &std::path::Path, args: &[&str]) -> Option<String> {
    let out = (std::process::Command::new("git"))
        .args(args)
        .current_dir(dir)
        .output()
        .ok()?;
    (out.status.success()).then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// `HEAD`'s 12 hex digits of the checkout around `dir`; when tracked files differ from it,
/// then `-dirty-` and the first 8 hex digits of the git object hash of `git diff HEAD` (two
/// edits of one commit differ). `None` outside a git checkout.
fn describe_checkout(dir: &std::path::Path) -> Option<String> {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let head = git_in(dir, &["rev-parse", "--short=12", "HEAD"])?;
    let status = git_in(dir, &["status", "--porcelain", "--untracked-files=no"]);
    if status.is_none_or(|s| s.is_empty()) {
        return Some(head);
    }
    let fingerprint = || -> Option<String> {
        let diff = (Command::new("git"))
            .args(["diff", "HEAD", "--no-ext-diff", "--binary"])
            .current_dir(dir)
            .output()
            .ok()?;
        let mut hash = (Command::new("git"))
            .args(["hash-object", "--stdin"])
            .current_dir(dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .ok()?;
        hash.stdin.take()?.write_all(&diff.stdout).ok()?;
        let out = hash.wait_with_output().ok()?;
        let text = String::from_utf8_lossy(&out.stdout);
        (out.status.success() && text.len() >= 8).then(|| text[..8].to_string())
    };
    let diff = fingerprint().unwrap_or_else(|| "unknown".to_string());
    Some(format!("{head}-dirty-{diff}"))
}
