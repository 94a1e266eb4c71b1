//! `memad`: run, check and inspect memory-augmented anomaly-detection experiments.
mod backbone_cmd;
mod eval_cmd;
mod evaluate;
mod experiment;
mod glyphs;
mod interrupt;
mod metrics_cmd;
mod npz;
mod output;
mod overlay;
mod plot;
mod run;
mod run_folders;
mod slurm;
mod sweep;
mod table;

use anyhow::Context;
use clap::{Parser, Subcommand};
use memad_core::device::{describe_backend, torch_info};
use memad_core::Registry;
use memad_data::catalog::DatasetCatalog;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

#[derive(Parser)]
#[command(
    name = "memad",
    version,
    about = "Memory-augmented anomaly detection on libtorch"
)]
struct Cli {
    /// The dataset catalog; default: the nearest `datasets.toml` above the experiment file (for
    /// `eval`: the run folder), else above the current folder.
    #[arg(long, global = true)]
    datasets: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Train and evaluate an experiment; results go to `<runs>/<name>/<timestamp>/`. An
    /// unfinished run of the same resolved config is resumed from its last saved epoch.
    Run {
        experiment: PathBuf,
        /// Folder holding the runs.
        #[arg(long, default_value = "runs")]
        runs: PathBuf,
        /// A smoke run, to check a configuration end to end before the real one: the fewest
        /// epochs the method takes (one; MSCM: its `stage1_epochs`, then one of stage 2) on
        /// about `2 * batch_size` training samples and two test samples of each type per
        /// category (`data.subset`), named `<name>_smoke`. Every file of the dataset is still
        /// checked. Its numbers are not the dataset's.
        #[arg(long)]
        smoke: bool,
        /// Override `train.epochs` (after `--smoke`).
        #[arg(long)]
        epochs: Option<usize>,
        /// Folder of converted weights (default `~/.cache/memad/weights`).
        #[arg(long)]
        weights_dir: Option<PathBuf>,
        /// Start a new run even when an unfinished (`.partial`) run of the same resolved
        /// config exists; by default that run is resumed from its last saved epoch.
        #[arg(long)]
        restart: bool,
        /// `KEY=VALUE`: set a dotted path of the experiment (a TOML value; a bare word is a
        /// string). Repeatable. The run is named as `memad sweep` names this combination,
        /// `<name>_<key>-<value>...`.
        #[arg(long = "set", value_name = "KEY=VALUE")]
        set: Vec<String>,
    },
    /// Score the test sets again with a complete run's checkpoints under other evaluation
    /// settings (`--set method.test_time_update=false`, `--set eval.metrics=[...]`); each
    /// combination goes to `<run>/evals/<name>/<timestamp>/`. Nothing is trained.
    Eval(eval_cmd::EvalArgs),
    /// Run the Cartesian product of overrides of a base experiment (`--set KEY=V1,V2`, or a
    /// sweep file: `base` + `[grid]`); combinations with a complete run of the same config are
    /// skipped.
    Sweep(sweep::SweepArgs),
    /// Pivot the metrics of complete runs into a paper table (Markdown, CSV, LaTeX) as a spec
    /// (`experiments/tables/*.toml`) says; prints the Markdown.
    Table {
        spec: PathBuf,
        /// Write `<stem>.md`, `<stem>.csv` and `<stem>.tex` of the spec here.
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Draw a run's training curves, ROC and PR curves, (video runs) frame scores and
    /// (methods with a memory) memory-usage heat maps as PNG and SVG; `memad plot ablation ...` draws a metric against a swept parameter.
    Plot(PlotArgs),
    /// Parse, validate and resolve experiment files (and table specs); nothing is trained.
    Check {
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Print the resolved configuration (every default filled in).
        #[arg(long)]
        resolved: bool,
        /// `KEY=V1,V2,...` (repeatable): check each experiment file with every combination
        /// of these overrides, as `memad sweep --set` would run them.
        #[arg(long = "set", value_name = "KEY=VALUES")]
        set: Vec<String>,
    },
    /// Evaluate predictions from any framework: `--pred PRED.npz --gt GT.npz`.
    Metrics(metrics_cmd::MetricsArgs),
    /// Dataset tools.
    #[command(subcommand)]
    Datasets(DatasetsCommand),
    /// Weights cache: convert PyTorch checkpoints, download torchvision ones ahead of time.
    #[command(subcommand)]
    Weights(backbone_cmd::WeightsCommand),
    /// Backbone tools: run a backbone on an array and write its feature pyramid.
    #[command(subcommand)]
    Backbone(backbone_cmd::BackboneCommand),
    /// The registered kinds, by category.
    List,
    /// memad and libtorch versions, CUDA and cuDNN availability, where libtorch was loaded from.
    Info,
}

#[derive(clap::Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
struct PlotArgs {
    /// A run folder.
    #[arg(required = true)]
    run: Option<PathBuf>,
    /// Output folder (default `<run>/plots`).
    #[arg(long)]
    out: Option<PathBuf>,
    #[command(subcommand)]
    figure: Option<PlotCommand>,
}

#[derive(Subcommand)]
enum PlotCommand {
    /// A metric (mean over categories, then mean ± std over seeds) against a config value,
    /// one line per group: `ablation_<param>_<metric>.{png,svg}`.
    Ablation {
        /// A folder holding complete runs (searched 3 levels down) or a glob over run
        /// folders (`'runs/quickstart_*/*'`); repeat it to draw the runs of several. A
        /// run's `memad eval` results are read through a glob only
        /// (`'runs/mnad_ped2/*/evals/*/*'`).
        #[arg(long, required = true)]
        runs: Vec<String>,
        /// Dotted key of the runs' `config.toml` on the x axis (`method.memory.slots`).
        #[arg(long)]
        param: String,
        /// A `metrics.csv` metric (`image_auroc`, `pixel_auroc`, `aupro`, ...).
        #[arg(long)]
        metric: String,
        /// One line per value of this `metrics.csv` column (`method`, `name`, `backbone`)
        /// or dotted config key; several keys, comma-separated, label a line with the values
        /// a run has (`method,method.memory.init`).
        #[arg(long, default_value = "method")]
        group: String,
        /// Output folder (default `<runs>/plots` for one folder, else `plots`).
        #[arg(long)]
        out: Option<PathBuf>,
    },
}

#[derive(Subcommand)]
enum DatasetsCommand {
    /// Validate datasets of `datasets.toml` (all, or the one named): counts per split and
    /// class, image sizes, masks of the right size for every test anomaly, broken files.
    Check {
        name: Option<String>,
        /// Decode every image in full (slower): finds damage inside a file, which the
        /// default check of headers and end markers does not.
        #[arg(long)]
        decode: bool,
    },
    /// The datasets of `datasets.toml` with their format and root.
    List,
}

fn registry() -> Registry {
    let mut r = Registry::default();
    memad_backbones::register(&mut r);
    memad_methods::register(&mut r);
    r
}

/// The nearest `datasets.toml` in `start` or above it.
fn find_catalog(start: &Path) -> Option<PathBuf> {
    let start = std::fs::canonicalize(start).ok()?;
    start
        .ancestors()
        .map(|d| d.join("datasets.toml"))
        .find(|p| p.is_file())
}

/// `--datasets`, else the nearest `datasets.toml` above `dir`, else above the current folder.
fn catalog_for(explicit: &Option<PathBuf>, dir: &Path) -> anyhow::Result<DatasetCatalog> {
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    let path = match explicit {
        Some(p) => p.clone(),
        None => find_catalog(dir)
            .or_else(|| find_catalog(Path::new(".")))
            .context("no datasets.toml found above the experiment file or the current folder; pass --datasets")?,
    };
    Ok(DatasetCatalog::load(&path)?)
}

/// `file` loaded once, or once per combination of `axes` (each labelled ` [key = value,
/// ...]`), with the overrides set as `memad sweep` sets them.
fn check_with_overrides(
    file: &Path,
    axes: &[sweep::Axis],
    registry: &Registry,
    catalog: &DatasetCatalog,
) -> anyhow::Result<Vec<(String, anyhow::Result<experiment::Loaded>)>> {
    if axes.is_empty() {
        return Ok(vec![(
            String::new(),
            experiment::load(file, registry, catalog),
        )]);
    }
    let base = sweep::read_table(file)?;
    let mut out = Vec::new();
    for combo in sweep::combinations("", axes)? {
        let text = toml::to_string(&combo.apply(&base)?)?;
        let loaded = experiment::load_text(&text, file, registry, catalog);
        let loaded = sweep::with_kind_swap_hint(loaded, &combo.overrides);
        out.push((format!(" [{}]", combo.overrides_text()), loaded));
    }
    Ok(out)
}

/// The folder of an experiment file.
fn folder_of(file: &Path) -> &Path {
    file.parent().unwrap_or(Path::new("."))
}

fn main() -> ExitCode {
    // A closed stdout (`memad list | head`) ends the process quietly, as it does other
    // command-line tools, instead of a panic in `println!`.
    // SAFETY: restores the default disposition of one signal before any thread starts.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let cli = Cli::parse();
    interrupt::install();
    memad_core::device::tune_host_allocator();
    memad_core::device::load_cuda_backend();
    match execute(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            for cause in e.chain().skip(1) {
                eprintln!("  caused by: {cause}");
            }
            ExitCode::FAILURE
        }
    }
}

fn execute(cli: Cli) -> anyhow::Result<()> {
    let registry = registry();
    match cli.command {
        Command::Run {
            experiment,
            runs,
            smoke,
            epochs,
            weights_dir,
            restart,
            set,
        } => {
            let catalog = catalog_for(&cli.datasets, folder_of(&experiment))?;
            let overrides = experiment::RunOverrides { smoke, epochs };
            let loaded = if set.is_empty() {
                experiment::load_with(&experiment, &registry, &catalog, overrides)?
            } else {
                let (text, combo) = sweep::single_combination_text(&experiment, &set)?;
                let loaded =
                    experiment::load_text_with(&text, &experiment, &registry, &catalog, overrides);
                sweep::with_kind_swap_hint(loaded, &combo.overrides)?
            };
            let opts = run::RunOptions {
                runs_dir: runs,
                weights_dir: weights_dir
                    .unwrap_or_else(memad_backbones::weights::default_weights_dir),
                restart,
            };
            let summary = run::run(&loaded, &registry, &opts)?;
            print_table(&summary.results);
            println!(
                "\nresults: {}",
                summary.folder.join("metrics.csv").display()
            );
            println!(
                "config, log, losses, scores, checkpoints: {}",
                summary.folder.display()
            );
            Ok(())
        }
        Command::Check {
            files,
            resolved,
            set,
        } => {
            let axes = (set.iter())
                .map(|a| sweep::parse_set(a))
                .collect::<anyhow::Result<Vec<_>>>()?;
            let weights_dir = memad_backbones::weights::default_weights_dir();
            let mut failed = 0;
            let mut checked = 0;
            for file in &files {
                if table::is_spec_file(file) {
                    checked += 1;
                    match table::load_spec(file) {
                        Ok(_) => println!("ok   {}", file.display()),
                        Err(e) => {
                            failed += 1;
                            println!("FAIL {e:#}");
                        }
                    }
                    continue;
                }
                // A sweep file checks its base with every combination of its grid (and --set).
                let outcomes = sweep::base_and_axes(file, &axes).and_then(|(base, axes, _)| {
                    let catalog = catalog_for(&cli.datasets, folder_of(&base))?;
                    check_with_overrides(&base, &axes, &registry, &catalog)
                });
                let outcomes = outcomes.unwrap_or_else(|e| vec![(String::new(), Err(e))]);
                for (overrides, outcome) in outcomes {
                    checked += 1;
                    let outcome = outcome.and_then(|loaded| {
                        let notes = (loaded.check_on_disk(&weights_dir))
                            .with_context(|| format!("{}", file.display()))?;
                        Ok((loaded, notes))
                    });
                    match outcome {
                        Ok((loaded, notes)) => {
                            println!("ok   {}{overrides}", file.display());
                            for note in notes {
                                println!("     note: {note}");
                            }
                            if resolved {
                                println!("{}", loaded.experiment.to_toml());
                                if let Some(comment) = loaded.all_categories_comment() {
                                    println!("{comment}\n");
                                }
                            }
                        }
                        Err(e) => {
                            failed += 1;
                            println!("FAIL {e:#}{overrides}");
                        }
                    }
                }
            }
            anyhow::ensure!(
                failed == 0,
                "{failed} of {checked} checked (experiment files, --set combinations, table \
                 specs) failed"
            );
            Ok(())
        }
        Command::Eval(args) => {
            for summary in eval_cmd::run(&args, &cli.datasets, &registry)? {
                print_table(&summary.results);
                println!(
                    "\nresults: {}",
                    summary.folder.join("metrics.csv").display()
                );
            }
            Ok(())
        }
        Command::Sweep(args) => sweep::run(&args, &cli.datasets, &registry),
        Command::Table { spec, out } => table::run(&spec, out.as_deref()),
        Command::Plot(args) => {
            let written = match (args.figure, args.run) {
                (
                    Some(PlotCommand::Ablation {
                        runs,
                        param,
                        metric,
                        group,
                        out,
                    }),
                    _,
                ) => {
                    let out = out.unwrap_or_else(|| match runs.as_slice() {
                        [folder] if !folder.contains(['*', '?']) => Path::new(folder).join("plots"),
                        _ => PathBuf::from("plots"),
                    });
                    let spec = plot::AblationSpec {
                        runs,
                        param,
                        metric,
                        group,
                    };
                    plot::ablation(&spec, &out)?
                }
                (None, Some(run)) => plot::run(&run, args.out.as_deref())?,
                (None, None) => anyhow::bail!("memad plot: name a run folder"),
            };
            for file in written {
                println!("wrote {}", file.display());
            }
            Ok(())
        }
        Command::Metrics(args) => metrics_cmd::run(&args),
        Command::Weights(cmd) => {
            backbone_cmd::run_weights(&cmd, &memad_backbones::weights::default_weights_dir())
        }
        Command::Backbone(cmd) => {
            backbone_cmd::run_backbone(&cmd, &memad_backbones::weights::default_weights_dir())
        }
        Command::Datasets(cmd) => {
            let catalog = catalog_for(&cli.datasets, Path::new("."))?;
            match cmd {
                DatasetsCommand::List => {
                    let width = |f: fn(&memad_data::catalog::DatasetEntry) -> usize| {
                        catalog.entries().map(f).max().unwrap_or(0)
                    };
                    let name = width(|e| e.name.len());
                    let format = width(|e| e.format.name().len());
                    for e in catalog.entries() {
                        let missing = match (e.to_generate(), e.root.exists()) {
                            (Some(_), _) => "  (generated on first use)",
                            (None, true) => "",
                            (None, false) => "  (not on this machine)",
                        };
                        println!(
                            "{:<name$}  {:<format$}  {}{missing}",
                            e.name,
                            e.format.name(),
                            e.root.display()
                        );
                    }
                    Ok(())
                }
                DatasetsCommand::Check { name, decode } => {
                    use memad_data::check::ImageCheck;
                    let images = if decode {
                        ImageCheck::Decode
                    } else {
                        ImageCheck::Header
                    };
                    let entries: Vec<_> = match &name {
                        Some(n) => vec![catalog.get(n)?],
                        None => catalog.entries().collect(),
                    };
                    let mut failed = 0;
                    for entry in entries {
                        if entry.to_generate().is_some() {
                            println!(
                                "dataset `{}`: synthetic, not generated yet (`memad run` and `memad sweep` generate it into {} on first use)",
                                entry.name,
                                entry.root.display()
                            );
                            continue;
                        }
                        let report = memad_data::check::check_dataset_with(entry, images)?;
                        println!("{report}");
                        failed += usize::from(!report.is_ok());
                    }
                    anyhow::ensure!(failed == 0, "{failed} dataset(s) have problems");
                    Ok(())
                }
            }
        }
        Command::List => {
            for (category, kinds) in registry.listing() {
                println!("{category}:");
                for (kind, summary) in kinds {
                    println!("  {kind:<20} {summary}");
                }
            }
            Ok(())
        }
        Command::Info => {
            let info = torch_info();
            println!("memad          {}", env!("CARGO_PKG_VERSION"));
            println!("built from     commit {}", output::BUILD_COMMIT);
            println!(
                "torch          {}",
                info.torch_version.as_deref().unwrap_or("unknown")
            );
            println!("tch            0.24.0");
            let dir = info.libtorch_lib_dir.map(|d| d.display().to_string());
            println!("libtorch       {}", dir.as_deref().unwrap_or("unknown"));
            println!("cuda backend   {}", describe_backend(&info.cuda_backend));
            println!("cuda available {}", info.cuda_available);
            println!("cuda devices   {}", info.cuda_device_count);
            println!("cudnn          {}", info.cudnn_available);
            let extension = match memad_cuda::is_built() {
                Ok(()) => "built (CUDA graphs, allocator statistics)".to_string(),
                Err(e) => e.to_string(),
            };
            println!("cuda extension {extension}");
            println!("cpu            {}", memad_core::device::cpu_description());
            println!("cpu threads    {}", tch::get_num_threads());
            use memad_core::device::{tune_host_allocator, MMAP_THRESHOLD, TRIM_THRESHOLD};
            let heap = if tune_host_allocator() {
                format!(
                    "freed tensors kept in the heap (mmap threshold {} MiB, trim threshold {} MiB)",
                    MMAP_THRESHOLD >> 20,
                    TRIM_THRESHOLD >> 20
                )
            } else {
                "glibc defaults or the user's malloc tunables".to_string()
            };
            println!("host allocator {heap}");
            println!("default device {:?}", tch::Device::cuda_if_available());
            Ok(())
        }
    }
}

/// Categories x metrics, with the mean over categories. A metric a category lacks (undefined
/// there: no masked anomaly, no video with both classes) shows `-`, and its mean too.
fn print_table(results: &[(String, Vec<(String, f64)>)]) {
    let mut metrics: Vec<&str> = Vec::new();
    for (_, values) in results {
        for (m, _) in values {
            if !metrics.contains(&m.as_str()) {
                metrics.push(m);
            }
        }
    }
    if metrics.is_empty() {
        return;
    }
    let value = |values: &[(String, f64)], metric: &str| {
        values.iter().find(|(m, _)| m == metric).map(|(_, v)| *v)
    };
    let cell = |v: Option<f64>| v.map_or(format!(" {:>12}", "-"), |v| format!(" {v:>12.4}"));
    print!("\n{:<14}", "category");
    for m in &metrics {
        print!(" {m:>12}");
    }
    println!();
    for (category, values) in results {
        print!("{category:<14}");
        for m in &metrics {
            print!("{}", cell(value(values, m)));
        }
        println!();
    }
    if results.len() > 1 {
        print!("{:<14}", "mean");
        for m in &metrics {
            let all: Option<Vec<f64>> = results.iter().map(|(_, v)| value(v, m)).collect();
            print!(
                "{}",
                cell(all.map(|a| a.iter().sum::<f64>() / a.len() as f64))
            );
        }
        println!();
    }
    if results.iter().any(|(_, v)| v.len() < metrics.len()) {
        println!(
            "(-: undefined for that category, as its log says; no mean without every category)"
        );
    }
}
