//! Training-step and scoring throughput of memad's RD4AD, MNAD and MDD-Net, and PatchCore's fit
//! and scoring time, at the papers' model shapes (or the quickstart shapes, `--shape`),
//! timed the way `benches/reference/step_reference.py` times the same models in plain PyTorch
//! (`benches/reference/compare_steps.sh` runs the two alternately; figures in
//! `docs/benchmarks.md`).
//!
//! ```text
//! step_bench --method rd4ad|mnad|mddnet|patchcore --device cpu|cuda --batch B --size S
//!            --steps N --warmup W --out results.csv [--shape paper|quickstart]
//!            [--fit-images N] [--classes C] [--threads T] [--commit C] [--date YYYY-MM-DD]
//!            [--precision fp32|bf16] [--channels-last] [--cudnn-benchmark] [--cuda-graphs]
//! ```
//!
//! - `--shape paper` (default): `experiments/paper/{rd4ad_mvtec,mnad_pred_ped2,mddnet_mvtec,
//!   patchcore_mvtec}.toml` (WideResNet-50-2 teachers). `--shape quickstart`:
//!   `experiments/{quickstart,mddnet_synthetic,patchcore_synthetic}.toml` (EfficientNet-Lite0,
//!   128 px in those files; the size is `--size`); the CSV's method is then
//!   `<method>_quickstart`.
//! - MDD-Net: the batch carries random normal images, random "anomalous" images, random binary
//!   masks (10% of the pixels) and random classes in `0..C` (`--classes`, default 15 for the
//!   paper shape, MVTec AD's categories, and 3 for the quickstart's synthetic categories); the
//!   memory is built for C classes; scoring predicts the class from the memory.
//! - PatchCore (fitted once, no optimizer): phase `fit` = `Method::fit` on `--fit-images`
//!   random images in batches of B (feature extraction) + `finalize` (greedy coreset), after
//!   a warm-up fit of W batches + finalize (whose bank the timed fit replaces); phase
//!   `coreset` = the `finalize` alone (images/s = fit images / coreset seconds); then phase
//!   `score` (W + N calls). `ms_per_batch` of both fit rows = seconds / number of fit batches.
//! - The method is built through the registry as `memad run` builds it, from the `[method]`
//!   section of its experiment file above, compiled into the binary (e.g.
//!   `experiments/paper/rd4ad_mvtec.toml`: WideResNet-50-2 teacher, layer1..3, embedding
//!   2048, decoder 3/4/6, width 0.5; `experiments/paper/mnad_pred_ped2.toml`: 4 past frames
//!   -> 1, input `[B, 15, S, S]` in `[0, 1]`); the
//!   teacher's weights are `random` (the cost does not depend on the values), MDD-Net's
//!   memory items start `random` (the steady-state step; `init = "features"` differs only in
//!   the one step that sets each class's items). The optimizer is the file's `[train]` Adam
//!   (lr, betas), memad's `memad_core::optim::Adam` as the runner builds it.
//! - Scoring phase first (`no_grad`, N calls of `Method::score` after W warm-up calls), then
//!   the training phase (W + N steps of `train_step`, the loss and its terms read as the
//!   runner reads them, in one transfer,
//!   `backward_step` = zero_grad + backward + Adam step, `after_step`). CUDA is synchronised
//!   before the clock is read.
//! - Peak memory (`peak_mem_mib`): on CPU the process's resident-set high-water mark (VmHWM of
//!   `/proc/self/status`, reset through `/proc/self/clear_refs` when the phase starts, so it
//!   covers that phase; weights, libtorch and the batch included). On CUDA the caching
//!   allocator's peak of live tensors during the phase (`memad_cuda::memory_stats`, reset at
//!   the phase start): what the reference reports with `torch.cuda.max_memory_allocated`.
//!   The scoring phase runs first.
//! - `--precision bf16`: every `train_step` and `score` under bf16 autocast
//!   (`memad_core::precision`, as `precision = "bf16"` in a run; PatchCore's fit stays fp32,
//!   as in a run, on both sides); `--channels-last`: the
//!   trained model's and the teacher's convolution weights in channels-last memory. The CSV
//!   method gets `_bf16` / `_cl` (the reference's `--precision` / `--channels-last` do the
//!   same with `torch.autocast` and `memory_format=torch.channels_last`).
//! - `--cudnn-benchmark`: cuDNN times its convolution algorithms on the warm-up steps and
//!   keeps the fastest (as `cudnn_benchmark = true` in a run; the reference sets
//!   `torch.backends.cudnn.benchmark`); the CSV method gets `_cudnn_benchmark`.
//! - `--cuda-graphs` (CUDA only): the scoring phase through `memad_cuda::GraphedScorer` (as
//!   `cuda_graphs = true`): the first warm-up call scores eagerly and captures the graph, the
//!   others replay it (the reference: `torch.cuda.graph`); the CSV method gets `_cuda_graphs`.
//!   A call that was not replayed is an error (the row would time eager scoring).
//! - Appends one CSV row per phase: `implementation,method,phase,device,batch,size,threads,
//!   images_per_s,ms_per_batch,peak_mem_mib,date,commit` with `implementation = memad`, and
//!   prints `trainable parameters: N` (compared with the reference's by the compare script).
use memad_core::optim::{Adam, AdamConfig};
use memad_core::precision::{autocast, make_channels_last, Precision};
use memad_core::{Batch, BuildContext, Method, Registry, SyntheticAnomalies, Training};
use memad_cuda::GraphedScorer;
use std::error::Error;
use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;
use tch::{Device, Kind, Tensor};

type BoxResult<T> = Result<T, Box<dyn Error>>;

const RD4AD_EXPERIMENT: &str = include_str!("../../../experiments/paper/rd4ad_mvtec.toml");
const MNAD_EXPERIMENT: &str = include_str!("../../../experiments/paper/mnad_pred_ped2.toml");
const MDDNET_EXPERIMENT: &str = include_str!("../../../experiments/paper/mddnet_mvtec.toml");
const PATCHCORE_EXPERIMENT: &str = include_str!("../../../experiments/paper/patchcore_mvtec.toml");
const RD4AD_QUICKSTART: &str = include_str!("../../../experiments/quickstart.toml");
const MDDNET_QUICKSTART: &str = include_str!("../../../experiments/mddnet_synthetic.toml");
const PATCHCORE_QUICKSTART: &str = include_str!("../../../experiments/patchcore_synthetic.toml");

const METHODS: [&str; 4] = ["rd4ad", "mnad", "mddnet", "patchcore"];

/// Command-line options.
#[derive(Debug, Clone, PartialEq, clap::Parser)]
#[command(
    name = "step_bench",
    about = "Times training and scoring steps of a method.",
    // `step_bench --version`: the commit the binary was built from (compare_steps.sh writes
    // it in the reference's rows too).
    version = env!("MEMAD_BUILD_COMMIT"),
    allow_negative_numbers = true,
    // compare_steps.sh puts per-method settings after the defaults: the last one wins.
    args_override_self = true
)]
struct Args {
    #[arg(long, value_parser = METHODS)]
    method: String,
    /// `paper` or `quickstart`.
    #[arg(long, default_value = "paper", value_parser = ["paper", "quickstart"])]
    shape: String,
    #[arg(long, default_value = "cpu", value_parser = ["cpu", "cuda"])]
    device: String,
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(i64).range(1..))]
    batch: i64,
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(i64).range(1..))]
    size: i64,
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..))]
    steps: u32,
    #[arg(long, default_value_t = 2)]
    warmup: u32,
    /// CSV the rows are appended to.
    #[arg(long)]
    out: Option<PathBuf>,
    /// PatchCore: images the bank is fitted on.
    #[arg(long, default_value_t = 16, value_parser = clap::value_parser!(i64).range(1..))]
    fit_images: i64,
    /// MDD-Net: classes of the memory (default by shape).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    classes: Option<u32>,
    #[arg(long, value_parser = clap::value_parser!(i32).range(1..))]
    threads: Option<i32>,
    /// The commit written in the rows (default: the one this binary was built from).
    #[arg(long)]
    commit: Option<String>,
    /// YYYY-MM-DD.
    #[arg(long)]
    date: Option<String>,
    /// `bf16`: training steps and scoring under bf16 autocast (as `precision = "bf16"` in
    /// an experiment); the CSV method gets `_bf16`.
    #[arg(long, default_value = "fp32", value_parser = ["fp32", "bf16"])]
    precision: String,
    /// Convolution weights (trained model and frozen teacher) in channels-last memory; the
    /// CSV method gets `_cl`.
    #[arg(long)]
    channels_last: bool,
    /// cuDNN picks the fastest convolution algorithms by timing them (CUDA only); the CSV
    /// method gets `_cudnn_benchmark`.
    #[arg(long)]
    cudnn_benchmark: bool,
    /// Scoring replayed from a CUDA graph (`memad_cuda::GraphedScorer`, as `cuda_graphs =
    /// true`; CUDA only): the first warm-up call scores eagerly and captures. The CSV method
    /// gets `_cuda_graphs`.
    #[arg(long)]
    cuda_graphs: bool,
}

impl Args {
    fn precision(&self) -> Precision {
        match self.precision.as_str() {
            "bf16" => Precision::Bf16,
            _ => Precision::Fp32,
        }
    }
}

/// Why the arguments give no benchmark: clap's own outcome (a parse error, or `--help` and
/// `--version`, which `clap::Error::exit` prints on stdout with status 0), or a combination
/// clap cannot express.
#[derive(Debug)]
enum ArgsError {
    Clap(clap::Error),
    Invalid(String),
}

impl std::fmt::Display for ArgsError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ArgsError::Clap(e) => write!(f, "{e}"),
            ArgsError::Invalid(msg) => f.write_str(msg),
        }
    }
}

fn parse_args(args: &[String]) -> Result<Args, ArgsError> {
    use clap::Parser;
    let parsed =
        Args::try_parse_from(std::iter::once("step_bench").chain(args.iter().map(String::as_str)))
            .map_err(ArgsError::Clap)?;
    if parsed.shape == "quickstart" && parsed.method == "mnad" {
        return Err(ArgsError::Invalid("mnad has the paper shape only".into()));
    }
    if parsed.cuda_graphs && parsed.device != "cuda" {
        return Err(ArgsError::Invalid(
            "--cuda-graphs needs --device cuda".into(),
        ));
    }
    Ok(parsed)
}

/// What the benchmark builds for a method: the resolved `[method]` section, the Adam settings
/// of the experiment's `[train]` and the input channels.
struct Setup {
    method: toml::Value,
    lr: f64,
    betas: (f64, f64),
    weight_decay: f64,
    channels: i64,
}

/// The experiment's `[method]` (teacher weights set to `random`, and channels-last when
/// `channels_last`) and `[train]` Adam.
fn setup(method: &str, shape: &str, channels_last: bool, registry: &Registry) -> BoxResult<Setup> {
    let (text, channels) = match (method, shape) {
        ("rd4ad", "quickstart") => (RD4AD_QUICKSTART, 3),
        ("rd4ad", _) => (RD4AD_EXPERIMENT, 3),
        ("mddnet", "quickstart") => (MDDNET_QUICKSTART, 3),
        ("mddnet", _) => (MDDNET_EXPERIMENT, 3),
        ("patchcore", "quickstart") => (PATCHCORE_QUICKSTART, 3),
        ("patchcore", _) => (PATCHCORE_EXPERIMENT, 3),
        _ => (MNAD_EXPERIMENT, 15),
    };
    let exp: toml::Value = toml::from_str(text)?;
    let mut section = exp
        .get("method")
        .cloned()
        .ok_or("the experiment has no [method]")?;
    if let Some(backbone) = section.get_mut("backbone").and_then(|b| b.as_table_mut()) {
        backbone.insert("weights".into(), "random".into());
        if channels_last {
            backbone.insert("channels_last".into(), true.into());
        }
    }
    // MDD-Net: the steady-state step. With `init = "features"` a class's items are set at the
    // first step that holds enough of its positions, once; small random batches may never
    // hold them and would check every step. After that the step is the same.
    if method == "mddnet" {
        if let Some(memory) = section.get_mut("memory").and_then(|m| m.as_table_mut()) {
            memory.insert("init".into(), "random".into());
        }
    }
    let train = exp.get("train").ok_or("the experiment has no [train]")?;
    if train.get("optimizer").and_then(|o| o.as_str()) != Some("adam") {
        return Err("the benchmark times Adam; the experiment names another optimizer".into());
    }
    let lr = train
        .get("lr")
        .and_then(|v| v.as_float())
        .ok_or("[train] lr")?;
    let betas: Vec<f64> = train
        .get("betas")
        .and_then(|v| v.as_array())
        .map(|a| a.iter().filter_map(|b| b.as_float()).collect())
        .unwrap_or_default();
    // PatchCore's file names no betas (it has no optimizer step): Adam's defaults.
    let [beta1, beta2] = match betas[..] {
        [] => [0.9, 0.999],
        [a, b] => [a, b],
        _ => return Err("[train] betas must hold two numbers".into()),
    };
    let weight_decay = train
        .get("weight_decay")
        .and_then(|v| v.as_float())
        .unwrap_or(0.0);
    let entry = registry.method(method, "method.kind")?;
    let method = (entry.resolve)(&section, "method", registry)?;
    Ok(Setup {
        method,
        lr,
        betas: (beta1, beta2),
        weight_decay,
        channels,
    })
}

/// One timed phase.
#[derive(Debug)]
struct Timing {
    phase: &'static str,
    seconds: f64,
    /// Images and batches the timed seconds cover.
    images: f64,
    batches: f64,
    /// CPU seconds of the process (all threads) over the timed steps: a diagnostic that
    /// depends less on other processes sharing the cores than the wall clock does.
    cpu_seconds: f64,
    peak_mem_mib: f64,
}

/// User + system CPU seconds of this process (`/proc/self/stat`, clock ticks of 1/100 s).
fn process_cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // The fields after the command name (in parentheses): utime and stime are the 12th and
    // 13th of them.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<f64> = rest
        .split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|f| f.parse().ok())
        .collect();
    fields.iter().sum::<f64>() / 100.0
}

/// Starts a phase's peak memory afresh: the resident-set high-water mark (VmHWM) on the CPU,
/// the caching allocator's peak on CUDA.
fn reset_peak(device: Device) -> BoxResult<()> {
    match device {
        Device::Cuda(i) => memad_cuda::reset_peak_memory(i)?,
        _ => {
            let _ = std::fs::write("/proc/self/clear_refs", "5");
        }
    }
    Ok(())
}

/// VmHWM of this process, MiB.
fn peak_rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

fn synchronize(device: Device) {
    if let Device::Cuda(i) = device {
        tch::Cuda::synchronize(i as i64);
    }
}

/// Peak memory of the phase that just ended, MiB (see the module doc).
fn phase_peak(device: Device) -> BoxResult<f64> {
    Ok(match device {
        Device::Cuda(i) => memad_cuda::memory_stats(i)?.peak_allocated as f64 / (1024.0 * 1024.0),
        _ => peak_rss_mib(),
    })
}

/// Times `warmup + steps` scoring calls of `batch`.
fn time_score(
    method: &dyn Method,
    batch: &Batch,
    args: &Args,
    device: Device,
) -> BoxResult<Timing> {
    reset_peak(device)?;
    let mut scorer = GraphedScorer::new(method, device, args.precision(), args.cuda_graphs);
    let (mut t0, mut c0) = (Instant::now(), process_cpu_seconds());
    for i in 0..args.warmup + args.steps {
        if i == args.warmup {
            synchronize(device);
            t0 = Instant::now();
            c0 = process_cpu_seconds();
        }
        drop(scorer.score(batch)?);
    }
    synchronize(device);
    // GraphedScorer falls back to eager scoring for a batch the graph does not fit: a row
    // labelled `_cuda_graphs` must time replays (the first call captures).
    let calls = (args.warmup + args.steps) as usize;
    if args.cuda_graphs && scorer.replayed + 1 != calls {
        return Err(format!(
            "--cuda-graphs: {} of the {} scoring calls replayed the graph (all but the first should)",
            scorer.replayed, calls
        )
        .into());
    }
    Ok(Timing {
        phase: "score",
        seconds: t0.elapsed().as_secs_f64(),
        images: (args.batch * args.steps as i64) as f64,
        batches: args.steps as f64,
        cpu_seconds: process_cpu_seconds() - c0,
        peak_mem_mib: phase_peak(device)?,
    })
}

/// Times `warmup + steps` scoring calls, then `warmup + steps` training steps.
fn run(
    method: &mut dyn Method,
    opt: &mut Adam,
    batch: &Batch,
    args: &Args,
    device: Device,
) -> BoxResult<Vec<Timing>> {
    let mut timings = vec![time_score(method, batch, args, device)?];

    reset_peak(device)?;
    let (mut t0, mut c0) = (Instant::now(), process_cpu_seconds());
    for i in 0..args.warmup + args.steps {
        if i == args.warmup {
            synchronize(device);
            t0 = Instant::now();
            c0 = process_cpu_seconds();
        }
        let out = autocast(device, args.precision(), || method.train_step(batch))?;
        // As the runner: the loss and its terms are read (one transfer) for the log and the
        // NaN check.
        let (loss, _terms) = out.read();
        if !loss.is_finite() {
            return Err(format!("the loss is {loss} at step {i}").into());
        }
        opt.backward_step(&out.loss);
        method.after_step()?;
    }
    synchronize(device);
    timings.push(Timing {
        phase: "train",
        seconds: t0.elapsed().as_secs_f64(),
        images: (args.batch * args.steps as i64) as f64,
        batches: args.steps as f64,
        cpu_seconds: process_cpu_seconds() - c0,
        peak_mem_mib: phase_peak(device)?,
    });
    Ok(timings)
}

/// An image batch without labels, masks or classes.
fn plain_batch(input: Tensor) -> Batch {
    let b = input.size()[0];
    let device = input.device();
    Batch {
        input,
        label: Tensor::zeros([b], (Kind::Int64, device)),
        mask: None,
        class: None,
        synthetic: None,
    }
}

/// PatchCore (fitted once): a warm-up fit of `warmup` batches + finalize, the timed fit of
/// `--fit-images` images (feature extraction, then the coreset timed on its own), then the
/// scoring of `batch` as the other methods.
fn run_fit_once(
    method: &mut dyn Method,
    batch: &Batch,
    args: &Args,
    device: Device,
) -> BoxResult<Vec<Timing>> {
    let (b, s) = (args.batch, args.size);
    let train = Tensor::rand([args.fit_images, 3, s, s], (Kind::Float, device));
    let batches = (args.fit_images + b - 1) / b;
    let chunk = |i: i64| plain_batch(train.narrow(0, i * b, b.min(args.fit_images - i * b)));
    tch::no_grad(|| -> BoxResult<()> {
        for i in 0..(args.warmup as i64).min(batches) {
            method.fit(&chunk(i))?;
        }
        if args.warmup > 0 {
            method.finalize(&memad_core::no_progress)?;
        }
        Ok(())
    })?;
    synchronize(device);
    reset_peak(device)?;
    let (t0, c0) = (Instant::now(), process_cpu_seconds());
    let coreset = tch::no_grad(|| -> BoxResult<(f64, f64)> {
        for i in 0..batches {
            method.fit(&chunk(i))?;
        }
        synchronize(device);
        let (t1, c1) = (Instant::now(), process_cpu_seconds());
        method.finalize(&memad_core::no_progress)?;
        synchronize(device);
        Ok((t1.elapsed().as_secs_f64(), process_cpu_seconds() - c1))
    })?;
    let (seconds, cpu_seconds) = (t0.elapsed().as_secs_f64(), process_cpu_seconds() - c0);
    let peak = phase_peak(device)?;
    drop(train);
    let mut timings = vec![
        Timing {
            phase: "fit",
            seconds,
            images: args.fit_images as f64,
            batches: batches as f64,
            cpu_seconds,
            peak_mem_mib: peak,
        },
        Timing {
            phase: "coreset",
            seconds: coreset.0,
            images: args.fit_images as f64,
            batches: batches as f64,
            cpu_seconds: coreset.1,
            peak_mem_mib: peak,
        },
    ];
    timings.push(time_score(method, batch, args, device)?);
    Ok(timings)
}

/// The method's name in the CSV:
/// `<method>[_quickstart][_bf16][_cl][_cudnn_benchmark][_cuda_graphs]`.
fn label(args: &Args) -> String {
    let mut label = args.method.clone();
    if args.shape != "paper" {
        label += &format!("_{}", args.shape);
    }
    if args.precision() == Precision::Bf16 {
        label += "_bf16";
    }
    if args.channels_last {
        label += "_cl";
    }
    if args.cudnn_benchmark {
        label += "_cudnn_benchmark";
    }
    if args.cuda_graphs {
        label += "_cuda_graphs";
    }
    label
}

const CSV_HEADER: &str = "implementation,method,phase,device,batch,size,threads,images_per_s,ms_per_batch,peak_mem_mib,date,commit";

/// One CSV row of a phase (`ms_per_batch` over the phase's batches).
fn csv_row(args: &Args, t: &Timing, threads: i32, date: &str, commit: &str) -> String {
    let per_batch = t.seconds / t.batches;
    format!(
        "memad,{},{},{},{},{},{},{:.3},{:.3},{:.1},{},{}",
        label(args),
        t.phase,
        args.device,
        args.batch,
        args.size,
        threads,
        t.images / t.seconds,
        per_batch * 1000.0,
        t.peak_mem_mib,
        date,
        commit
    )
}

/// Appends rows, writing the header first when the file is new or empty.
fn append_rows(path: &PathBuf, rows: &[String]) -> std::io::Result<()> {
    let fresh = std::fs::metadata(path).map_or(true, |m| m.len() == 0);
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    if fresh {
        writeln!(f, "{CSV_HEADER}")?;
    }
    for row in rows {
        writeln!(f, "{row}")?;
    }
    Ok(())
}

/// `YYYY-MM-DD` (UTC) of a Unix time, by the days-to-civil algorithm.
fn civil_date(unix_seconds: u64) -> String {
    let days = (unix_seconds / 86_400) as i64 + 719_468;
    let era = days.div_euclid(146_097);
    let doe = days - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}")
}

fn today() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    civil_date(now)
}

/// Builds the method, times both phases and returns the CSV rows.
fn bench(args: &Args) -> BoxResult<Vec<String>> {
    if let Some(t) = args.threads {
        tch::set_num_threads(t);
    }
    let device = memad_core::device::select(&args.device)?;
    tch::Cuda::cudnn_set_benchmark(args.cudnn_benchmark);
    let mut registry = Registry::default();
    memad_backbones::register(&mut registry);
    memad_methods::register(&mut registry);
    let setup = setup(&args.method, &args.shape, args.channels_last, &registry)?;
    let classes = match (args.method.as_str(), args.classes) {
        ("mddnet", Some(c)) => c as usize,
        ("mddnet", None) if args.shape == "quickstart" => 3,
        ("mddnet", None) => 15,
        _ => 1,
    };
    let ctx = BuildContext {
        device,
        weights_dir: "/nonexistent".into(),
        image_size: args.size,
        classes,
    };
    tch::manual_seed(0);
    let entry = registry.method(&args.method, "method.kind")?;
    let mut method = (entry.build)(&setup.method, &registry, &ctx)?;
    if args.channels_last {
        make_channels_last(method.trainable());
    }
    let trainable: i64 = method
        .trainable()
        .trainable_variables()
        .iter()
        .map(Tensor::numel)
        .map(|n| n as i64)
        .sum();
    println!("trainable parameters: {trainable}");
    // As `memad run` builds the optimizer for `optimizer = "adam"`.
    let mut opt = Adam::new(
        method.trainable(),
        AdamConfig {
            lr: setup.lr,
            beta1: setup.betas.0,
            beta2: setup.betas.1,
            eps: 1e-8,
            weight_decay: setup.weight_decay,
            decoupled: false,
        },
    )?;
    let shape = [args.batch, setup.channels, args.size, args.size];
    let mut batch = plain_batch(Tensor::rand(shape, (Kind::Float, device)));
    if args.method == "mddnet" {
        // Random anomalous images, masks of 10% of the pixels, classes.
        let mask_shape = [args.batch, 1, args.size, args.size];
        batch.synthetic = Some(SyntheticAnomalies {
            input: Tensor::rand(shape, (Kind::Float, device)),
            mask: Tensor::rand(mask_shape, (Kind::Float, device))
                .lt(0.1)
                .to_kind(Kind::Float),
        });
        batch.class = Some(Tensor::randint(
            classes as i64,
            [args.batch],
            (Kind::Int64, device),
        ));
    }
    let timings = if method.training() == Training::FitOnce {
        run_fit_once(method.as_mut(), &batch, args, device)?
    } else {
        run(method.as_mut(), &mut opt, &batch, args, device)?
    };
    let threads = tch::get_num_threads();
    let date = args.date.clone().unwrap_or_else(today);
    let commit = args
        .commit
        .clone()
        .unwrap_or_else(|| env!("MEMAD_BUILD_COMMIT").to_string());
    let rows: Vec<String> = timings
        .iter()
        .map(|t| csv_row(args, t, threads, &date, &commit))
        .collect();
    for t in &timings {
        println!(
            "memad {} {} {}: {:.2} images/s, {:.1} ms/batch ({:.1} CPU ms), peak {:.1} MiB",
            label(args),
            t.phase,
            args.device,
            t.images / t.seconds,
            1000.0 * t.seconds / t.batches,
            1000.0 * t.cpu_seconds / t.batches,
            t.peak_mem_mib
        );
    }
    Ok(rows)
}

fn main() {
    // As `memad` does: freed CPU tensors stay in the heap (compare_steps.sh gives the
    // reference the same heap settings through GLIBC_TUNABLES).
    memad_core::device::tune_host_allocator();
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let args = match parse_args(&argv) {
        Ok(a) => a,
        Err(ArgsError::Clap(e)) => e.exit(),
        Err(ArgsError::Invalid(msg)) => {
            eprintln!("{msg}");
            std::process::exit(2);
        }
    };
    let result = bench(&args).and_then(|rows| match &args.out {
        Some(path) => append_rows(path, &rows).map_err(Into::into),
        None => Ok(()),
    });
    if let Err(e) = result {
        eprintln!("step_bench: {e}");
        std::process::exit(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn arguments_parse_and_bad_ones_are_named() {
        let a = parse_args(&strings(
            "--method mnad --device cpu --batch 4 --size 32 --steps 3 --warmup 0 --out x.csv --threads 2",
        ))
        .unwrap();
        assert_eq!((a.method.as_str(), a.batch, a.size), ("mnad", 4, 32));
        assert_eq!((a.steps, a.warmup, a.threads), (3, 0, Some(2)));
        assert_eq!(a.out, Some(PathBuf::from("x.csv")));
        let e = parse_args(&strings("--method memae"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("'memae'")
                && e.contains("--method")
                && e.contains("rd4ad, mnad, mddnet, patchcore"),
            "{e}"
        );
        assert!(parse_args(&strings("--method mnad --batch -1"))
            .unwrap_err()
            .to_string()
            .contains("--batch"));
        let later = parse_args(&strings("--method mnad --steps 10 --steps 3")).unwrap();
        assert_eq!(later.steps, 3, "a repeated option: the last one wins");
        assert!(parse_args(&strings("--method mnad --bogus 1"))
            .unwrap_err()
            .to_string()
            .contains("--bogus"));
        assert_eq!(
            parse_args(&strings("--method rd4ad --cuda-graphs"))
                .unwrap_err()
                .to_string(),
            "--cuda-graphs needs --device cuda"
        );
        let graphed = parse_args(&strings("--method rd4ad --device cuda --cuda-graphs")).unwrap();
        assert_eq!(label(&graphed), "rd4ad_cuda_graphs");
    }

    #[test]
    fn the_paper_sections_resolve_with_random_teacher_weights() {
        let mut registry = Registry::default();
        memad_backbones::register(&mut registry);
        memad_methods::register(&mut registry);
        let rd = setup("rd4ad", "paper", false, &registry).unwrap();
        assert_eq!(
            rd.method["backbone"]["kind"].as_str(),
            Some("wide_resnet50_2")
        );
        assert_eq!(rd.method["backbone"]["weights"].as_str(), Some("random"));
        assert_eq!(rd.method["embed_channels"].as_integer(), Some(2048));
        assert_eq!((rd.lr, rd.betas, rd.channels), (0.005, (0.5, 0.999), 3));
        let mnad = setup("mnad", "paper", false, &registry).unwrap();
        let cl = setup("rd4ad", "quickstart", true, &registry).unwrap();
        assert_eq!(cl.method["backbone"]["channels_last"].as_bool(), Some(true));
        assert_eq!(mnad.method["frames"].as_integer(), Some(5));
        assert_eq!(
            (mnad.lr, mnad.betas, mnad.channels),
            (2e-4, (0.9, 0.999), 15)
        );
    }

    #[test]
    fn dates_are_civil() {
        assert_eq!(civil_date(0), "1970-01-01");
        assert_eq!(civil_date(951_782_400), "2000-02-29");
        assert_eq!(civil_date(1_700_000_000), "2023-11-14");
    }

    #[test]
    fn a_tiny_mnad_run_appends_two_rows_under_one_header() {
        let dir = std::env::temp_dir().join(format!("step_bench_test_{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let out = dir.join("steps.csv");
        let _ = std::fs::remove_file(&out);
        let args = parse_args(&strings(&format!(
            "--method mnad --batch 1 --size 16 --steps 1 --warmup 0 --commit abc --date 2026-01-02 --out {}",
            out.display()
        )))
        .unwrap();
        let rows = bench(&args).unwrap();
        append_rows(&out, &rows).unwrap();
        append_rows(&out, &rows).unwrap();
        let text = std::fs::read_to_string(&out).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 5, "{text}");
        assert_eq!(lines[0], CSV_HEADER);
        let score: Vec<&str> = lines[1].split(',').collect();
        assert_eq!(
            score[..7],
            ["memad", "mnad", "score", "cpu", "1", "16", score[6]]
        );
        assert_eq!(&lines[2][..17], "memad,mnad,train,");
        assert!(score[7].parse::<f64>().unwrap() > 0.0);
        assert!(score[9].parse::<f64>().unwrap() > 1.0, "peak RSS in MiB");
        assert_eq!(score[10..], ["2026-01-02", "abc"]);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    fn tiny_rows(method: &str, extra: &str) -> Vec<String> {
        let args = parse_args(&strings(&format!(
            "--method {method} --shape quickstart --batch 2 --size 32 --steps 1 --warmup 1 {extra}"
        )))
        .unwrap();
        bench(&args).unwrap()
    }

    #[test]
    fn a_tiny_patchcore_run_times_fit_coreset_and_score() {
        let rows = tiny_rows("patchcore", "--fit-images 3");
        let phases: Vec<&str> = rows.iter().map(|r| r.split(',').nth(2).unwrap()).collect();
        assert_eq!(phases, ["fit", "coreset", "score"]);
        assert!(rows[0].starts_with("memad,patchcore_quickstart,fit,cpu,2,32,"));
        for row in &rows {
            let v: f64 = row.split(',').nth(7).unwrap().parse().unwrap();
            assert!(v > 0.0 && v.is_finite(), "{row}");
            // Without `--commit` a row names the commit this binary was built from.
            assert_eq!(row.rsplit(',').next(), Some(env!("MEMAD_BUILD_COMMIT")));
        }
    }

    #[test]
    fn a_tiny_mddnet_run_trains_and_scores() {
        let rows = tiny_rows("mddnet", "--classes 2");
        assert_eq!(rows.len(), 2);
        assert!(rows[0].starts_with("memad,mddnet_quickstart,score,cpu,2,32,"));
        assert!(rows[1].starts_with("memad,mddnet_quickstart,train,"));
        let e = parse_args(&strings("--method mnad --shape quickstart"))
            .unwrap_err()
            .to_string();
        assert_eq!(e, "mnad has the paper shape only");
        let e = parse_args(&strings("--method mddnet --shape huge"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("'huge'") && e.contains("--shape") && e.contains("paper, quickstart"),
            "{e}"
        );
    }

    #[test]
    fn a_tiny_bf16_channels_last_run_is_labelled_as_such() {
        let rows = tiny_rows(
            "rd4ad",
            "--precision bf16 --channels-last --cudnn-benchmark",
        );
        let label = "rd4ad_quickstart_bf16_cl_cudnn_benchmark";
        assert!(rows[0].starts_with(&format!("memad,{label},score,cpu,2,32,")));
        assert!(rows[1].starts_with(&format!("memad,{label},train,")));
        let e = parse_args(&strings("--method rd4ad --precision fp16"))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("'fp16'") && e.contains("--precision") && e.contains("fp32, bf16"),
            "{e}"
        );
    }
}
