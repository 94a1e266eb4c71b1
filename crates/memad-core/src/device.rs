//! Device selection and seeding.
//!
//! A tch binary is linked with `--as-needed`, so `libtorch_cuda.so` (whose only job is to
//! register the CUDA backend from its static initialisers) is dropped at link time and
//! `Cuda::is_available()` is false even on a GPU machine. [`load_cuda_backend`] dlopens it
//! from the folder the process loaded `libtorch_cpu.so` from, once, before any device query.
use crate::error::{CoreError, Result};
use std::ffi::{CStr, CString};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use tch::{Cuda, Device};

/// Outcome of loading libtorch's CUDA backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CudaBackend {
    Loaded(PathBuf),
    /// The libtorch in use has no CUDA backend (a CPU build).
    Absent,
    /// It exists but could not be loaded (missing CUDA runtime libraries).
    Failed(String),
}

/// Loads `libtorch_cuda.so` once per process; safe to call from anywhere, any number of times.
pub fn load_cuda_backend() -> &'static CudaBackend {
    static BACKEND: OnceLock<CudaBackend> = OnceLock::new();
    BACKEND.get_or_init(|| {
        let Some(dir) = libtorch_lib_dir() else {
            return CudaBackend::Failed("libtorch_cpu.so is not mapped in this process".into());
        };
        let path = dir.join("libtorch_cuda.so");
        if !path.exists() {
            return CudaBackend::Absent;
        }
        let c_path = CString::new(path.as_os_str().as_encoded_bytes()).expect("path without NUL");
        // SAFETY: dlopen with a valid C string; the handle is intentionally never closed so
        // the backend stays registered for the life of the process.
        let handle = unsafe { libc::dlopen(c_path.as_ptr(), libc::RTLD_NOW | libc::RTLD_GLOBAL) };
        if handle.is_null() {
            // SAFETY: dlerror returns a thread-local C string or null.
            let msg = unsafe { libc::dlerror() };
            let msg = if msg.is_null() {
                "unknown dlopen error".to_string()
            } else {
                unsafe { CStr::from_ptr(msg) }
                    .to_string_lossy()
                    .into_owned()
            };
            return CudaBackend::Failed(msg);
        }
        CudaBackend::Loaded(path)
    })
}

/// The folder this process loaded `libtorch_cpu.so` from (read from `/proc/self/maps`).
pub fn libtorch_lib_dir() -> Option<PathBuf> {
    let maps = std::fs::read_to_string("/proc/self/maps").ok()?;
    maps.lines()
        .filter_map(|line| line.split_whitespace().nth(5))
        .find(|p| p.ends_with("/libtorch_cpu.so"))
        .and_then(|p| Path::new(p).parent().map(Path::to_path_buf))
}

/// Parses a device string: `auto` (CUDA when available, else CPU), `cpu`, `cuda`, `cuda:N`.
pub fn select(spec: &str) -> Result<Device> {
    load_cuda_backend();
    let cuda_count = Cuda::device_count() as usize;
    let need_cuda = |index: usize| {
        if index < cuda_count {
            Ok(Device::Cuda(index))
        } else {
            Err(CoreError::Invalid(format!(
                "device `{spec}` requested but {cuda_count} CUDA device(s) are available ({})",
                describe_backend(load_cuda_backend())
            )))
        }
    };
    match spec {
        "auto" => Ok(Device::cuda_if_available()),
        "cpu" => Ok(Device::Cpu),
        "cuda" => need_cuda(0),
        other => match other.strip_prefix("cuda:").map(str::parse::<usize>) {
            Some(Ok(index)) => need_cuda(index),
            _ => Err(CoreError::Invalid(format!(
                "unknown device `{spec}`; use auto, cpu, cuda or cuda:N"
            ))),
        },
    }
}

pub fn describe_backend(backend: &CudaBackend) -> String {
    match backend {
        CudaBackend::Loaded(p) => format!("CUDA backend loaded from {}", p.display()),
        CudaBackend::Absent => "libtorch is a CPU-only build".to_string(),
        CudaBackend::Failed(e) => format!("CUDA backend failed to load: {e}"),
    }
}

/// What `memad info` prints.
#[derive(Debug, Clone)]
pub struct TorchInfo {
    pub libtorch_lib_dir: Option<PathBuf>,
    pub torch_version: Option<String>,
    pub cuda_backend: CudaBackend,
    pub cuda_available: bool,
    pub cuda_device_count: i64,
    pub cudnn_available: bool,
}

pub fn torch_info() -> TorchInfo {
    let cuda_backend = load_cuda_backend().clone();
    let libtorch_lib_dir = libtorch_lib_dir();
    TorchInfo {
        torch_version: libtorch_lib_dir.as_deref().and_then(read_torch_version),
        libtorch_lib_dir,
        cuda_backend,
        cuda_available: Cuda::is_available(),
        cuda_device_count: Cuda::device_count(),
        cudnn_available: Cuda::cudnn_is_available(),
    }
}

/// `torch/version.py` (a PyPI wheel) or `build-version` (a libtorch zip) next to `lib/`.
fn read_torch_version(lib_dir: &Path) -> Option<String> {
    let root = lib_dir.parent()?;
    if let Ok(text) = std::fs::read_to_string(root.join("version.py")) {
        let line = text.lines().find(|l| l.starts_with("__version__"))?;
        return Some(line.split(['\'', '"']).nth(1)?.to_string());
    }
    std::fs::read_to_string(root.join("build-version"))
        .ok()
        .map(|s| s.trim().to_string())
}

/// The heap settings [`tune_host_allocator`] applies: freed blocks up to this size stay in
/// the heap (glibc's `M_MMAP_THRESHOLD`)...
pub const MMAP_THRESHOLD: i32 = 64 << 20;
/// ... and up to this much free memory at the heap top is kept (`M_TRIM_THRESHOLD`).
pub const TRIM_THRESHOLD: i32 = 256 << 20;

/// Keeps libtorch's freed CPU tensors in the process heap instead of handing them back to
/// the kernel at every step. glibc returns blocks above its dynamic mmap threshold with
/// `munmap` and trims the heap top above 128 KiB, so each training step page-faults its
/// activations in afresh: `perf` put 10-15% of a CPU step in the kernel's page-fault path,
/// and these settings make the quickstart model's CPU training step 1.2-1.6x faster with the
/// same peak memory (docs/benchmarks.md). Blocks above [`MMAP_THRESHOLD`] are still mapped
/// and unmapped, and at most [`TRIM_THRESHOLD`] of free heap is kept. Nothing is changed
/// when the user set glibc malloc tunables (`GLIBC_TUNABLES` with `glibc.malloc.`, or a
/// `MALLOC_*_` variable) or off glibc. Runs once per process; returns whether the settings
/// were applied.
pub fn tune_host_allocator() -> bool {
    static TUNED: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *TUNED.get_or_init(apply_allocator_settings)
}

fn apply_allocator_settings() -> bool {
    let user_set = std::env::var("GLIBC_TUNABLES").is_ok_and(|t| t.contains("glibc.malloc."))
        || std::env::vars_os().any(|(k, _)| {
            k.to_str()
                .is_some_and(|k| k.starts_with("MALLOC_") && k.ends_with('_'))
        });
    if user_set {
        return false;
    }
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: mallopt only changes glibc's thresholds for later allocations.
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1
                && libc::mallopt(libc::M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1
        }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    false
}

/// The host CPU as `model (vector ISA)` from `/proc/cpuinfo`. libtorch picks its CPU kernels
/// by the vector instruction set (ATen's `avx512`, `avx2` or `default`; the environment
/// variable `ATEN_CPU_CAPABILITY` overrides the choice and is named when set), so the last
/// digits of CPU results, and through training the metrics, depend on it as they do on the
/// thread count. `unknown` where `/proc/cpuinfo` cannot be read.
pub fn cpu_description() -> String {
    match std::fs::read_to_string("/proc/cpuinfo") {
        Ok(info) => describe_cpu(&info, std::env::var("ATEN_CPU_CAPABILITY").ok()),
        Err(_) => "unknown".to_string(),
    }
}

/// [`cpu_description`] of a `/proc/cpuinfo` text; ATen's tests: AVX-512 needs avx512vl,
/// avx512bw, avx512dq and fma, AVX2 needs avx2 and fma.
fn describe_cpu(cpuinfo: &str, aten_override: Option<String>) -> String {
    let field = |name: &str| {
        cpuinfo.lines().find_map(|line| {
            let (key, value) = line.split_once(':')?;
            (key.trim() == name).then(|| value.trim().to_string())
        })
    };
    let model = field("model name").unwrap_or_else(|| "unknown model".to_string());
    let flags = field("flags").unwrap_or_default();
    let has = |flag: &str| flags.split_whitespace().any(|f| f == flag);
    let isa = if std::env::consts::ARCH != "x86_64" {
        std::env::consts::ARCH
    } else if ["avx512vl", "avx512bw", "avx512dq", "fma"]
        .iter()
        .all(|f| has(f))
    {
        "avx512"
    } else if has("avx2") && has("fma") {
        "avx2"
    } else {
        "default"
    };
    match aten_override.filter(|v| !v.is_empty()) {
        Some(v) => format!("{model} ({isa}, ATEN_CPU_CAPABILITY={v})"),
        None => format!("{model} ({isa})"),
    }
}

/// Seeds libtorch's generators (CPU and CUDA). Data order uses its own seeded generator.
pub fn seed_everything(seed: u64) {
    tch::manual_seed(seed as i64);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg(target_arch = "x86_64")]
    fn the_cpu_is_named_with_the_kernels_libtorch_picks() {
        let info = |flags: &str| {
            format!(
                "processor\t: 0\nmodel name\t: Some CPU\nflags\t\t: {flags}\n\nprocessor\t: 1\n"
            )
        };
        let avx512 = info("fpu sse avx2 fma avx512f avx512dq avx512bw avx512vl");
        assert_eq!(describe_cpu(&avx512, None), "Some CPU (avx512)");
        assert_eq!(
            describe_cpu(&info("fpu avx2 fma avx512f"), None),
            "Some CPU (avx2)"
        );
        assert_eq!(describe_cpu(&info("fpu avx2"), None), "Some CPU (default)");
        assert_eq!(
            describe_cpu(&avx512, Some("avx2".into())),
            "Some CPU (avx512, ATEN_CPU_CAPABILITY=avx2)"
        );
        assert_eq!(describe_cpu("", None), "unknown model (default)");
        assert!(!cpu_description().is_empty());
    }

    #[test]
    fn libtorch_is_found_and_versioned() {
        let _ = tch::Tensor::zeros([1], (tch::Kind::Float, Device::Cpu));
        let info = torch_info();
        assert!(info.libtorch_lib_dir.is_some());
        let version = info.torch_version.expect("torch version readable");
        assert!(version.starts_with("2.11.0"), "{version}");
        // The link drops libtorch_cuda.so (`--as-needed`); where the libtorch in use has
        // one, it must be loaded by dlopen, GPU or not (PyPI's torch carries its CUDA
        // runtime libraries).
        let lib_dir = info.libtorch_lib_dir.as_ref().expect("libtorch found");
        if lib_dir.join("libtorch_cuda.so").exists() {
            assert!(
                matches!(info.cuda_backend, CudaBackend::Loaded(_)),
                "{:?}",
                info.cuda_backend
            );
        } else {
            assert_eq!(info.cuda_backend, CudaBackend::Absent);
        }
    }

    #[test]
    fn device_strings() {
        assert_eq!(select("cpu").unwrap(), Device::Cpu);
        assert!(select("gpu")
            .unwrap_err()
            .to_string()
            .contains("use auto, cpu, cuda or cuda:N"));
        if !Cuda::is_available() {
            assert!(select("cuda:0").is_err());
            assert_eq!(select("auto").unwrap(), Device::Cpu);
        }
    }
}
