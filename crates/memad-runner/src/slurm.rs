//! `memad sweep --launcher slurm`: the combinations of a sweep as one Slurm job array.
//!
//! The sweep writes `<runs>/sweeps/<base>/array.sbatch` and a list file
//! `array-<hash>.list` (one absolute combination TOML per line; array task `i` runs line
//! `i + 1`), then submits the script with `sbatch --parsable`. Each task runs
//! `memad --datasets <catalog> run <combination>.toml --runs <runs>` with absolute paths (the
//! runs folder must be shared by the nodes), its output in `<combination>.log` beside the
//! TOML as with the local launcher; `memad table` then reads the runs like any others.
//!
//! Resources come from a sweep file's `[slurm]` table (`partition`, `time`, `cpus_per_task`,
//! `mem`, `gres`, `array_limit`, `options`), each overridden by the flag of the same name.
//! They are written into the script as `#SBATCH` lines, so `sbatch array.sbatch` re-submits
//! the same tasks by hand. The list file is named by the hash of its content: a later sweep
//! writes a new list, never changing the one a pending array reads.
use anyhow::{bail, Context};
use serde::Deserialize;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Slurm resources and options: the flags of `memad sweep` (used with `--launcher slurm`).
#[derive(clap::Args, Debug, Clone, Default)]
pub struct SlurmArgs {
    /// Slurm partition (`#SBATCH --partition`).
    #[arg(long)]
    pub partition: Option<String>,
    /// Time limit per task, in a Slurm format (`30`, `01:00:00`, `1-00:00:00`).
    #[arg(long)]
    pub time: Option<String>,
    /// CPUs per task; also each task's `OMP_NUM_THREADS`.
    #[arg(long)]
    pub cpus_per_task: Option<u32>,
    /// Memory per node (`4G`, `16000M`).
    #[arg(long)]
    pub mem: Option<String>,
    /// Generic resources per node (`gpu:1`).
    #[arg(long)]
    pub gres: Option<String>,
    /// Tasks of the array running at the same time (`--array=0-N%LIMIT`).
    #[arg(long)]
    pub array_limit: Option<u32>,
    /// Another sbatch option written into the script, e.g. `--account=lab` (repeatable).
    #[arg(long = "sbatch-option", value_name = "OPTION")]
    pub options: Vec<String>,
    /// Write the script and list, print the sbatch command, submit nothing.
    #[arg(long)]
    pub no_submit: bool,
    /// Wait until every task has ended (`sbatch --wait`); fails when a task failed.
    #[arg(long)]
    pub wait: bool,
}

impl SlurmArgs {
    /// Whether any Slurm flag was given (they need `--launcher slurm`).
    pub fn any_given(&self) -> bool {
        let values = [&self.partition, &self.time, &self.mem, &self.gres];
        values.iter().any(|v| v.is_some())
            || self.cpus_per_task.is_some()
            || self.array_limit.is_some()
            || !self.options.is_empty()
            || self.no_submit
            || self.wait
    }
}

/// The `[slurm]` table of a sweep file; a flag overrides the key of the same name.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlurmConfig {
    pub partition: Option<String>,
    pub time: Option<String>,
    pub cpus_per_task: Option<u32>,
    pub mem: Option<String>,
    pub gres: Option<String>,
    pub array_limit: Option<u32>,
    /// Further sbatch options (`["--account=lab", "--qos=short"]`).
    #[serde(default)]
    pub options: Vec<String>,
}

impl SlurmConfig {
    /// The sweep file's values with the flags on top (flag options are appended).
    pub fn with_flags(&self, flags: &SlurmArgs) -> SlurmConfig {
        let mut options = self.options.clone();
        options.extend(flags.options.iter().cloned());
        SlurmConfig {
            partition: flags.partition.clone().or_else(|| self.partition.clone()),
            time: flags.time.clone().or_else(|| self.time.clone()),
            cpus_per_task: flags.cpus_per_task.or(self.cpus_per_task),
            mem: flags.mem.clone().or_else(|| self.mem.clone()),
            gres: flags.gres.clone().or_else(|| self.gres.clone()),
            array_limit: flags.array_limit.or(self.array_limit),
            options,
        }
    }
}

/// What the array script needs; every path absolute.
#[derive(Debug, Clone)]
pub struct ArrayJob {
    /// `memad-<base name>`.
    pub job_name: String,
    /// The sweep folder (`<runs>/sweeps/<base>`): script, list, Slurm's own output.
    pub folder: PathBuf,
    /// The list file: one combination TOML per line.
    pub list: PathBuf,
    /// Number of tasks (lines of the list).
    pub tasks: usize,
    pub memad: PathBuf,
    pub catalog: PathBuf,
    pub runs: PathBuf,
    pub weights_dir: Option<PathBuf>,
    /// The working folder of each task.
    pub workdir: PathBuf,
    pub resources: SlurmConfig,
}

/// `path` made absolute against the current folder (not resolving links), without `.` parts.
fn absolute(path: &Path) -> anyhow::Result<PathBuf> {
    let joined = std::env::current_dir()
        .context("reading the current folder")?
        .join(path);
    let mut out = PathBuf::new();
    for part in joined.components() {
        match part {
            std::path::Component::CurDir => {}
            std::path::Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    Ok(out)
}

/// `s` quoted for bash: in single quotes, a `'` written as `'\''`.
fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// A value for an `#SBATCH` line: sbatch splits those lines at white space.
fn sbatch_value<'a>(what: &str, value: &'a str) -> anyhow::Result<&'a str> {
    anyhow::ensure!(
        !value.is_empty() && !value.chars().any(char::is_whitespace),
        "Slurm {what} `{value}` is empty or holds white space, which an #SBATCH line cannot carry"
    );
    Ok(value)
}

/// The text of the list file: one path per line.
pub fn list_text(files: &[PathBuf]) -> anyhow::Result<String> {
    let mut text = String::new();
    for f in files {
        let s = f.to_str().context("a combination path is not UTF-8")?;
        anyhow::ensure!(!s.contains('\n'), "a combination path holds a line break");
        text.push_str(s);
        text.push('\n');
    }
    Ok(text)
}

/// The sbatch script of the array: `#SBATCH` resources, then the task picking its line.
pub fn script(job: &ArrayJob) -> anyhow::Result<String> {
    anyhow::ensure!(job.tasks > 0, "an array needs at least one task");
    let path = |p: &Path| -> anyhow::Result<String> {
        p.to_str()
            .map(str::to_string)
            .with_context(|| format!("{} is not UTF-8", p.display()))
    };
    let folder = path(&job.folder)?;
    let r = &job.resources;
    let mut s = String::from("#!/bin/bash\n");
    writeln!(
        s,
        "# Written by `memad sweep --launcher slurm`: {} tasks, one per line of the list below.",
        job.tasks
    )?;
    writeln!(s, "# Submit again by hand: sbatch {folder}/array.sbatch")?;
    writeln!(
        s,
        "#SBATCH --job-name={}",
        sbatch_value("job name", &job.job_name)?
    )?;
    let limit = r.array_limit.map(|l| format!("%{l}")).unwrap_or_default();
    writeln!(s, "#SBATCH --array=0-{}{limit}", job.tasks - 1)?;
    writeln!(
        s,
        "#SBATCH --output={}/slurm-%A_%a.out",
        sbatch_value("sweep folder", &folder)?
    )?;
    writeln!(
        s,
        "#SBATCH --chdir={}",
        sbatch_value("working folder", &path(&job.workdir)?)?
    )?;
    let fields = [
        ("partition", &r.partition),
        ("time", &r.time),
        ("mem", &r.mem),
        ("gres", &r.gres),
    ];
    for (key, value) in fields {
        if let Some(v) = value {
            writeln!(s, "#SBATCH --{key}={}", sbatch_value(key, v)?)?;
        }
    }
    if let Some(c) = r.cpus_per_task {
        writeln!(s, "#SBATCH --cpus-per-task={c}")?;
    }
    for o in &r.options {
        anyhow::ensure!(
            o.starts_with('-'),
            "sbatch option `{o}` does not start with - ([slurm] options or --sbatch-option): \
             write it as sbatch takes it, e.g. `--{o}`"
        );
        writeln!(s, "#SBATCH {}", sbatch_value("option", o)?)?;
    }
    let list = shell_quote(&path(&job.list)?);
    let mut run = format!(
        "{} --datasets {} run \"$file\" --runs {}",
        shell_quote(&path(&job.memad)?),
        shell_quote(&path(&job.catalog)?),
        shell_quote(&path(&job.runs)?)
    );
    if let Some(w) = &job.weights_dir {
        write!(run, " --weights-dir {}", shell_quote(&path(w)?))?;
    }
    write!(
        s,
        r#"set -euo pipefail
list={list}
file=$(sed -n "$((SLURM_ARRAY_TASK_ID + 1))p" "$list")
if [ -z "$file" ]; then
    echo "task $SLURM_ARRAY_TASK_ID: no line $((SLURM_ARRAY_TASK_ID + 1)) in $list" >&2
    exit 2
fi
export OMP_NUM_THREADS="${{SLURM_CPUS_PER_TASK:-1}}"
echo "task $SLURM_ARRAY_TASK_ID on $(hostname): $file (log: ${{file%.toml}}.log)"
exec {run} >"${{file%.toml}}.log" 2>&1
"#
    )?;
    Ok(s)
}

/// The job id from `sbatch --parsable` (`ID` or `ID;CLUSTER`).
pub fn parse_job_id(stdout: &str) -> anyhow::Result<String> {
    let id = stdout.trim().split(';').next().unwrap_or("").trim();
    anyhow::ensure!(
        !id.is_empty() && id.chars().all(|c| c.is_ascii_digit()),
        "sbatch printed `{}`, not a job id",
        stdout.trim()
    );
    Ok(id.to_string())
}

/// Writes the list and `array.sbatch` of the combinations `files` into `folder` and, unless
/// `--no-submit`, submits it. `files` are the combinations not already done.
#[allow(clippy::too_many_arguments)]
pub fn launch(
    flags: &SlurmArgs,
    config: &SlurmConfig,
    base_name: &str,
    folder: &Path,
    files: &[PathBuf],
    catalog: &Path,
    runs: &Path,
    weights_dir: Option<&Path>,
) -> anyhow::Result<()> {
    if files.is_empty() {
        println!("nothing to submit: every combination has a complete run");
        return Ok(());
    }
    let folder = absolute(folder)?;
    let files = files
        .iter()
        .map(|f| absolute(f))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let list_body = list_text(&files)?;
    let hash = crate::run::sha256_hex(list_body.as_bytes());
    let list = folder.join(format!("array-{}.list", &hash[..12]));
    crate::output::write_atomic(&list, list_body.as_bytes())?;
    let job = ArrayJob {
        job_name: format!("memad-{base_name}"),
        folder: folder.clone(),
        list,
        tasks: files.len(),
        memad: std::env::current_exe().context("finding the memad executable")?,
        catalog: absolute(catalog)?,
        runs: absolute(runs)?,
        weights_dir: weights_dir.map(absolute).transpose()?,
        workdir: absolute(Path::new("."))?,
        resources: config.with_flags(flags),
    };
    let sbatch = folder.join("array.sbatch");
    crate::output::write_atomic(&sbatch, script(&job)?.as_bytes())?;
    println!("wrote {} ({} tasks)", sbatch.display(), job.tasks);
    if flags.no_submit {
        println!("submit with: sbatch {}", sbatch.display());
        return Ok(());
    }
    let mut cmd = Command::new("sbatch");
    cmd.arg("--parsable");
    if flags.wait {
        cmd.arg("--wait");
    }
    cmd.arg(&sbatch);
    let out = cmd.output().map_err(|e| {
        anyhow::anyhow!(
            "running sbatch: {e}; on a machine with Slurm, submit with: sbatch {}",
            sbatch.display()
        )
    })?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    // With --wait, sbatch prints the id at once and exits with the array's worst status.
    let id = parse_job_id(stdout.lines().next().unwrap_or(""));
    match (&id, out.status.success()) {
        (Ok(id), true) if flags.wait => println!("job array {id}: every task ended well"),
        (Ok(id), true) => {
            println!("submitted job array {id} ({} tasks)", job.tasks);
            println!("watch it: squeue -j {id}");
        }
        (Ok(id), false) if flags.wait => bail!(
            "job array {id}: a task failed ({}); see the .log files in {}{}",
            out.status,
            folder.display(),
            stderr_note(&stderr)
        ),
        _ => bail!(
            "sbatch {} failed ({}): {}{}",
            sbatch.display(),
            out.status,
            stdout.trim(),
            stderr_note(&stderr)
        ),
    }
    println!(
        "logs: {}/<combination>.log (Slurm's own: slurm-<job>_<task>.out)",
        folder.display()
    );
    Ok(())
}

fn stderr_note(stderr: &str) -> String {
    match stderr.trim() {
        "" => String::new(),
        s => format!("\n{s}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(resources: SlurmConfig) -> ArrayJob {
        ArrayJob {
            job_name: "memad-quickstart".into(),
            folder: "/shared/runs/sweeps/quickstart".into(),
            list: "/shared/runs/sweeps/quickstart/array-abc.list".into(),
            tasks: 3,
            memad: "/opt/memad/target/release/memad".into(),
            catalog: "/opt/memad/datasets.toml".into(),
            runs: "/shared/runs".into(),
            weights_dir: None,
            workdir: "/opt/memad".into(),
            resources,
        }
    }

    #[test]
    fn script_holds_resources_array_and_absolute_command() {
        let config = SlurmConfig {
            partition: Some("long".into()),
            time: Some("02:00:00".into()),
            mem: Some("8G".into()),
            options: vec!["--account=lab".into()],
            ..Default::default()
        };
        let flags = SlurmArgs {
            partition: Some("debug".into()),
            cpus_per_task: Some(2),
            gres: Some("gpu:1".into()),
            array_limit: Some(2),
            options: vec!["--qos=short".into()],
            ..Default::default()
        };
        let mut j = job(config.with_flags(&flags));
        j.weights_dir = Some("/home/me/weights".into());
        let s = script(&j).unwrap();
        let lines: Vec<&str> = s.lines().collect();
        assert_eq!(lines[0], "#!/bin/bash");
        let sbatch: Vec<&str> = lines
            .iter()
            .copied()
            .filter(|l| l.starts_with("#SBATCH"))
            .collect();
        assert_eq!(
            sbatch,
            [
                "#SBATCH --job-name=memad-quickstart",
                "#SBATCH --array=0-2%2",
                "#SBATCH --output=/shared/runs/sweeps/quickstart/slurm-%A_%a.out",
                "#SBATCH --chdir=/opt/memad",
                // The flag wins over the sweep file; keys only in the file stay.
                "#SBATCH --partition=debug",
                "#SBATCH --time=02:00:00",
                "#SBATCH --mem=8G",
                "#SBATCH --gres=gpu:1",
                "#SBATCH --cpus-per-task=2",
                "#SBATCH --account=lab",
                "#SBATCH --qos=short",
            ]
        );
        // sbatch reads #SBATCH lines only before the first command.
        let first_command = lines.iter().position(|l| l.starts_with("set ")).unwrap();
        let last_sbatch = lines
            .iter()
            .rposition(|l| l.starts_with("#SBATCH"))
            .unwrap();
        assert!(last_sbatch < first_command, "{s}");
        assert!(s.contains("list='/shared/runs/sweeps/quickstart/array-abc.list'\n"));
        assert!(s.contains(r#"sed -n "$((SLURM_ARRAY_TASK_ID + 1))p" "$list""#));
        assert!(s.contains(r#"export OMP_NUM_THREADS="${SLURM_CPUS_PER_TASK:-1}""#));
        assert!(
            s.contains(
                "exec '/opt/memad/target/release/memad' --datasets '/opt/memad/datasets.toml' \
                 run \"$file\" --runs '/shared/runs' --weights-dir '/home/me/weights' \
                 >\"${file%.toml}.log\" 2>&1\n"
            ),
            "{s}"
        );
    }

    #[test]
    fn script_without_resources_has_only_the_array_lines() {
        let s = script(&job(SlurmConfig::default())).unwrap();
        let n = s.lines().filter(|l| l.starts_with("#SBATCH")).count();
        assert_eq!(n, 4, "{s}");
        assert!(s.contains("#SBATCH --array=0-2\n"), "{s}");
        assert!(!s.contains("--weights-dir"), "{s}");
    }

    #[test]
    fn bad_values_are_refused() {
        let bad = SlurmConfig {
            partition: Some("two words".into()),
            ..Default::default()
        };
        let err = script(&job(bad)).unwrap_err().to_string();
        assert!(err.contains("partition `two words`"), "{err}");
        let bad = SlurmConfig {
            options: vec!["account=lab".into()],
            ..Default::default()
        };
        let err = script(&job(bad)).unwrap_err().to_string();
        assert!(
            err.contains("sbatch option `account=lab` does not start with -"),
            "{err}"
        );
        let mut j = job(SlurmConfig::default());
        j.tasks = 0;
        let err = script(&j).unwrap_err().to_string();
        assert!(err.contains("an array needs at least one task"), "{err}");
    }

    #[test]
    fn paths_with_quotes_are_quoted_for_bash() {
        assert_eq!(shell_quote("/a/it's"), r"'/a/it'\''s'");
        let mut j = job(SlurmConfig::default());
        j.runs = "/shared/it's runs".into();
        let s = script(&j).unwrap();
        assert!(s.contains(r"--runs '/shared/it'\''s runs'"), "{s}");
    }

    #[test]
    fn list_has_one_path_per_line_in_task_order() {
        let files = [PathBuf::from("/r/q_seed-0.toml"), "/r/q_seed-1.toml".into()];
        assert_eq!(
            list_text(&files).unwrap(),
            "/r/q_seed-0.toml\n/r/q_seed-1.toml\n"
        );
        assert!(list_text(&["/r/a\nb.toml".into()]).is_err());
    }

    #[test]
    fn job_id_from_parsable_output() {
        assert_eq!(parse_job_id("42\n").unwrap(), "42");
        assert_eq!(parse_job_id("42;cluster\n").unwrap(), "42");
        assert!(parse_job_id("sbatch: error: invalid partition").is_err());
        assert!(parse_job_id("").is_err());
    }

    #[test]
    fn sweep_file_slurm_table_is_checked() {
        let c: SlurmConfig =
            toml::from_str("partition = \"gpu\"\ncpus_per_task = 4\noptions = [\"--qos=x\"]\n")
                .unwrap();
        assert_eq!(c.partition.as_deref(), Some("gpu"));
        assert_eq!(c.cpus_per_task, Some(4));
        assert!(toml::from_str::<SlurmConfig>("partitoin = \"gpu\"\n").is_err());
    }

    #[test]
    fn absolute_paths_drop_dot_parts() {
        let cwd = std::env::current_dir().unwrap();
        assert_eq!(absolute(Path::new("./a/../b")).unwrap(), cwd.join("b"));
        assert_eq!(
            absolute(Path::new("/x/./y")).unwrap(),
            PathBuf::from("/x/y")
        );
    }
}
