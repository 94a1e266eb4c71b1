//! Input-pipeline throughput: memad's batch loader against the common PyTorch pipeline
//! (`benches/reference/loader_reference.py`: PIL + torchvision `Resize` + `ToTensor` in a
//! `DataLoader` with worker processes), in one run; figures in `docs/benchmarks.md`.
//!
//! ```text
//! loader_bench [--images 64] [--source 900] [--size 256] [--batch 16] [--threads 2]
//!              [--workers 2] [--rounds 3] [--dir DIR] [--out CSV] [--python PY]
//!              [--machine TEXT] [--no-reference]
//! ```
//!
//! - Writes `--images` textured `--source`x`--source` RGB PNGs (MVTec-sized; deterministic)
//!   into `DIR/png` (kept between runs; default `$TMPDIR/memad-loader-bench`).
//! - Each round times one shuffled epoch, decoded and resized to `--size` with batches of
//!   `--batch`, of: `memad_cold` ([`BatchLoader`] as training uses it, no cache, every
//!   batch made a CPU tensor with `to_batch`), `memad_cold_fill` (the same with an empty
//!   cache folder `DIR/cache`, filling it: a training run's first epoch), `memad_cached` (the
//!   next epoch, read from that cache) and `reference` (the Python script, run by `--python`,
//!   default the project venv's; imports excluded, worker start-up included). memad runs
//!   on a rayon pool of `--threads` threads, the reference with `--workers` workers; the
//!   order memad/reference alternates between rounds. The PNGs and cache entries are in
//!   the page cache (both pipelines read the same warm files).
//! - Writes `--out` (default `benches/reference/results/loader_cpu.csv`): one row per round
//!   and a `best` row (each pipeline's best round), with the 1-minute load average when the
//!   run and each round started, images/s of each pipeline and the ratios
//!   `memad_cold / reference` and `memad_cached / memad_cold_fill`.
use memad_data::image_io::Geometry;
use memad_data::loader::{shuffled, BatchLoader, LoadOptions};
use memad_data::{Label, Sample};
use rayon::prelude::*;
use std::error::Error;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

type BoxResult<T> = Result<T, Box<dyn Error>>;

/// Command-line options.
#[derive(Debug, Clone, clap::Parser)]
#[command(
    name = "loader_bench",
    about = "Times memad's loader against PIL + torchvision with a DataLoader."
)]
struct Args {
    /// Images written and loaded per epoch.
    #[arg(long, default_value_t = 64, value_parser = positive)]
    images: usize,
    /// Side of the source PNGs (MVTec: about 900).
    #[arg(long, default_value_t = 900, value_parser = clap::value_parser!(u32).range(1..))]
    source: u32,
    /// Side images are resized to.
    #[arg(long, default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..))]
    size: u32,
    #[arg(long, default_value_t = 16, value_parser = positive)]
    batch: usize,
    /// memad's rayon threads.
    #[arg(long, default_value_t = 2, value_parser = positive)]
    threads: usize,
    /// The reference's DataLoader workers.
    #[arg(long, default_value_t = 2, value_parser = positive)]
    workers: usize,
    #[arg(long, default_value_t = 3, value_parser = positive)]
    rounds: usize,
    /// Working folder (PNGs and the cache).
    #[arg(long, default_value_os_t = std::env::temp_dir().join("memad-loader-bench"))]
    dir: PathBuf,
    #[arg(long, default_value = "benches/reference/results/loader_cpu.csv")]
    out: PathBuf,
    /// The Python with torch and torchvision (default: $PYTHON, else memad's venv).
    #[arg(long, default_value_os_t = default_python())]
    python: PathBuf,
    /// Machine description for the CSV (default: read from the system).
    #[arg(long)]
    machine: Option<String>,
    /// Time memad only.
    #[arg(long = "no-reference", action = clap::ArgAction::SetFalse)]
    reference: bool,
}

/// A count of at least 1.
fn positive(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err(format!("expected a positive integer, got `{text}`")),
    }
}

/// `$PYTHON`, else the interpreter of memad's cached torch environment.
fn default_python() -> PathBuf {
    std::env::var_os("PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            std::env::var_os("MEMAD_CACHE")
                .map(PathBuf::from)
                .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cache/memad")))
                .unwrap_or_default()
                .join("torch-2.11.0/venv/bin/python")
        })
}

/// Writes the `n` PNGs (`0000.png`, ...) that are not there yet: woven and grained texture
/// with per-pixel noise, so that they compress about as MVTec's photographs do.
fn ensure_pngs(dir: &Path, n: usize, px: u32) -> BoxResult<Vec<PathBuf>> {
    std::fs::create_dir_all(dir)?;
    let paths: Vec<PathBuf> = (0..n).map(|i| dir.join(format!("{i:04}.png"))).collect();
    paths
        .par_iter()
        .enumerate()
        .filter(|(_, p)| !p.exists())
        .try_for_each(|(i, path)| -> Result<(), String> {
            let seed = i as u64 * 0x9E37_79B9_7F4A_7C15;
            let img = image::RgbImage::from_fn(px, px, |x, y| {
                let (fx, fy) = (x as f32, y as f32);
                let weave = ((fx * 0.21 + i as f32).sin() * (fy * 0.17).cos()) * 40.0;
                let grain = ((fx * 0.013 + fy * 0.031).sin() * 9.0 + fy * 0.002).sin() * 30.0;
                let h = hash(seed ^ ((y as u64) << 32 | x as u64));
                let noise = (h & 31) as f32 - 16.0;
                let base = 128.0 + weave + grain + noise;
                let ch =
                    |k: f32, j: u32| (base * k + ((h >> (8 * j)) & 7) as f32).clamp(0.0, 255.0);
                image::Rgb([ch(1.0, 1) as u8, ch(0.85, 2) as u8, ch(0.6, 3) as u8])
            });
            let tmp = path.with_extension("png.tmp");
            img.save_with_format(&tmp, image::ImageFormat::Png)
                .and_then(|()| std::fs::rename(&tmp, path).map_err(Into::into))
                .map_err(|e| format!("{}: {e}", path.display()))
        })?;
    Ok(paths)
}

fn hash(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// One epoch through the loader (every batch made a CPU tensor): images/s.
fn memad_epoch(samples: &[Sample], a: &Args, cache: Option<PathBuf>, seed: u64) -> BoxResult<f64> {
    let order = shuffled(samples.len(), seed);
    let t0 = Instant::now();
    let loader = BatchLoader::with_cache(
        samples.to_vec(),
        order,
        a.batch,
        LoadOptions::new(Geometry::square(a.size)),
        cache,
    );
    let mut n = 0usize;
    for host in loader {
        let batch = host?.to_batch(tch::Device::Cpu);
        n += batch.input.size()[0] as usize;
    }
    Ok(n as f64 / t0.elapsed().as_secs_f64())
}

/// One epoch of the Python reference: images/s as it reports them.
fn reference_epoch(png: &Path, a: &Args, seed: u64) -> BoxResult<f64> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("reference/loader_reference.py");
    let out = Command::new(&a.python)
        .arg(&script)
        .args(["--dir".as_ref(), png.as_os_str()])
        .args([
            "--size",
            &a.size.to_string(),
            "--batch",
            &a.batch.to_string(),
        ])
        .args([
            "--workers",
            &a.workers.to_string(),
            "--seed",
            &seed.to_string(),
        ])
        .output()
        .map_err(|e| format!("{}: {e} (--python or PYTHON)", a.python.display()))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        return Err(format!(
            "{} failed: {}{}",
            script.display(),
            stdout,
            String::from_utf8_lossy(&out.stderr)
        )
        .into());
    }
    let field = "\"images_per_s\": ";
    let at = stdout
        .find(field)
        .ok_or("no images_per_s in the reference's output")?
        + field.len();
    let end = stdout[at..].find([',', '}']).ok_or("bad JSON")? + at;
    Ok(stdout[at..end].trim().parse()?)
}

fn load1() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().map(str::to_string))
        .unwrap_or_else(|| "unknown".into())
}

fn command_line(cmd: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(cmd).args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// `N-core ARCH (CPU model (vector ISA)), M GiB` from /proc.
fn machine() -> String {
    let model = memad_core::device::cpu_description();
    let mem_gib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            let kb = m
                .lines()
                .next()?
                .split_whitespace()
                .nth(1)?
                .parse::<f64>()
                .ok()?;
            Some(kb / 1024.0 / 1024.0)
        })
        .unwrap_or(0.0);
    format!(
        "{}-core {} ({model}), {mem_gib:.0} GiB",
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        std::env::consts::ARCH
    )
}

const PIPELINES: [&str; 4] = ["memad_cold", "memad_cold_fill", "memad_cached", "reference"];

fn main() -> BoxResult<()> {
    let a = <Args as clap::Parser>::parse();
    let load_start = load1();
    rayon::ThreadPoolBuilder::new()
        .num_threads(a.threads)
        .build_global()?;
    let png = a.dir.join("png");
    let cache = a.dir.join("cache");
    let paths = ensure_pngs(&png, a.images, a.source)?;
    // The reference reads every *.png of the folder: no others.
    let extra = std::fs::read_dir(&png)?
        .filter(|e| e.as_ref().is_ok_and(|e| !paths.contains(&e.path())))
        .count();
    if extra > 0 {
        return Err(format!(
            "{} holds {extra} other files; use a fresh --dir",
            png.display()
        )
        .into());
    }
    let samples: Vec<Sample> = paths
        .iter()
        .map(|p| Sample {
            image: p.clone(),
            label: Label::Normal,
            defect: "good".into(),
            mask: None,
            frames: Vec::new(),
            video: None,
            pixels: None,
        })
        .collect();
    let src = a.source;
    let bytes: u64 = paths
        .iter()
        .filter_map(|p| p.metadata().ok())
        .map(|m| m.len())
        .sum();
    println!(
        "{} PNGs of {src}x{src} ({:.1} MiB) in {}; load average {load_start}",
        a.images,
        bytes as f64 / (1 << 20) as f64,
        png.display()
    );
    // Warm the page cache and the code paths.
    memad_epoch(&samples, &a, None, 0)?;
    let mut rows: Vec<(String, String, [f64; 4])> = Vec::new();
    for round in 0..a.rounds {
        let load = load1();
        let seed = round as u64 + 1;
        let mut r = [f64::NAN; 4];
        let reference_first = round % 2 == 1;
        if a.reference && reference_first {
            r[3] = reference_epoch(&png, &a, seed)?;
        }
        r[0] = memad_epoch(&samples, &a, None, seed)?;
        if cache.exists() {
            std::fs::remove_dir_all(&cache)?;
        }
        r[1] = memad_epoch(&samples, &a, Some(cache.clone()), seed)?;
        r[2] = memad_epoch(&samples, &a, Some(cache.clone()), seed + 100)?;
        if a.reference && !reference_first {
            r[3] = reference_epoch(&png, &a, seed)?;
        }
        println!(
            "round {}: load {load}: {}",
            round + 1,
            PIPELINES
                .iter()
                .zip(r)
                .map(|(p, v)| format!("{p} {v:.1}/s"))
                .collect::<Vec<_>>()
                .join(", ")
        );
        rows.push(((round + 1).to_string(), load, r));
    }
    let mut best = [f64::NAN; 4];
    for (_, _, r) in &rows {
        for k in 0..4 {
            best[k] = best[k].max(r[k]);
        }
    }
    rows.push(("best".into(), String::new(), best));

    let machine = a.machine.clone().unwrap_or_else(machine);
    let date = command_line("date", &["+%F"]).unwrap_or_default();
    let commit = env!("MEMAD_BUILD_COMMIT");
    if let Some(parent) = a.out.parent() {
        std::fs::create_dir_all(parent)?;
    }
    let mut f = std::fs::File::create(&a.out)?;
    writeln!(
        f,
        "machine,date,commit,load1_start,round,load1_round,images,source_px,size,batch,\
threads,workers,memad_cold_ips,memad_cold_fill_ips,memad_cached_ips,reference_ips,\
cold_vs_reference,cached_vs_cold_fill"
    )?;
    for (round, load, r) in &rows {
        writeln!(
            f,
            "\"{machine}\",{date},{commit},{load_start},{round},{load},{},{},{},{},{},{},\
{:.1},{:.1},{:.1},{:.1},{:.2},{:.1}",
            a.images,
            a.source,
            a.size,
            a.batch,
            a.threads,
            a.workers,
            r[0],
            r[1],
            r[2],
            r[3],
            r[0] / r[3],
            r[2] / r[1]
        )?;
    }
    println!(
        "best: memad cold {:.1}/s, cold filling the cache {:.1}/s, cached {:.1}/s, reference \
{:.1}/s; cold / reference {:.2}x, cached / cold(fill) {:.1}x -> {}",
        best[0],
        best[1],
        best[2],
        best[3],
        best[0] / best[3],
        best[2] / best[1],
        a.out.display()
    );
    Ok(())
}
