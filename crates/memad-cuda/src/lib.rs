//! libtorch's CUDA C++ API that tch 0.24 does not bind, through a small C++ shim
//! (`src/shim.cpp`, compiled by `build.rs`):
//! - [`memory_stats`] and [`reset_peak_memory`]: the caching allocator's counters, what
//!   PyTorch's `torch.cuda.memory_allocated`, `max_memory_allocated`, `memory_reserved`
//!   and `reset_peak_memory_stats` report, so that memad's GPU memory figures compare with a
//!   PyTorch script's;
//! - [`CudaGraph`]: `at::cuda::CUDAGraph`, what `with torch.cuda.graph(g): ...` and
//!   `g.replay()` do: the kernels a closure enqueues are recorded once and relaunched as one
//!   graph, without the host's per-kernel launch cost; [`GraphedScorer`] scores a method's
//!   test batches through one (`cuda_graphs = true` in an experiment).
//!
//! The shim is compiled only when the libtorch tch links has CUDA (PyPI's torch does) and
//! the CUDA runtime headers are found; otherwise every function returns
//! [`Error::NotBuilt`] saying why. Without a CUDA device the functions return
//! [`Error::Cuda`] with libtorch's message.
use std::panic::{catch_unwind, AssertUnwindSafe};

mod graphed_score;
pub use graphed_score::GraphedScorer;

/// Why a CUDA extension call failed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("memad was built without its CUDA extension: {0}")]
    NotBuilt(&'static str),
    #[error("libtorch CUDA: {0}")]
    Cuda(String),
    #[error("CUDA graph capture failed: {0}")]
    Capture(String),
}

pub type Result<T> = std::result::Result<T, Error>;

/// Whether the shim was compiled (`Err` says why not).
pub fn is_built() -> Result<()> {
    #[cfg(memad_cuda_ext)]
    return Ok(());
    #[cfg(not(memad_cuda_ext))]
    return Err(Error::NotBuilt(
        option_env!("MEMAD_CUDA_NOT_BUILT").unwrap_or("unknown reason"),
    ));
}

/// The caching allocator's counters for one device, in bytes, over all its pools.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryStats {
    /// Bytes in live tensors (`torch.cuda.memory_allocated`).
    pub allocated: i64,
    /// The most `allocated` has been since the last [`reset_peak_memory`]
    /// (`torch.cuda.max_memory_allocated`).
    pub peak_allocated: i64,
    /// Bytes the allocator holds from the driver, used or cached (`memory_reserved`).
    pub reserved: i64,
    /// The most `reserved` has been since the last reset (`max_memory_reserved`).
    pub peak_reserved: i64,
}

/// Number of CUDA devices libtorch sees (0 without a GPU or driver).
pub fn device_count() -> Result<usize> {
    is_built()?;
    let mut count: std::ffi::c_int = 0;
    call(|err, len| unsafe { ffi::memad_cuda_device_count(&mut count, err, len) })?;
    Ok(count.max(0) as usize)
}

/// The caching allocator's counters of CUDA device `device`.
pub fn memory_stats(device: usize) -> Result<MemoryStats> {
    check_device(device)?;
    let mut out = [0i64; 4];
    call(|err, len| unsafe {
        ffi::memad_cuda_memory_stats(device as _, out.as_mut_ptr(), err, len)
    })?;
    Ok(MemoryStats {
        allocated: out[0],
        peak_allocated: out[1],
        reserved: out[2],
        peak_reserved: out[3],
    })
}

/// Starts the peaks of [`memory_stats`] afresh from the current values.
pub fn reset_peak_memory(device: usize) -> Result<()> {
    check_device(device)?;
    call(|err, len| unsafe { ffi::memad_cuda_reset_peak_memory(device as _, err, len) })
}

/// A captured CUDA graph (`at::cuda::CUDAGraph`). Its private memory pool holds every
/// tensor allocated during the capture; the tensors the capture returned are its outputs,
/// which each [`CudaGraph::replay`] overwrites in place. Inputs are tensors made before the
/// capture: copy new values into them (`Tensor::copy_`) and replay.
pub struct CudaGraph {
    raw: *mut ffi::Graph,
}

impl CudaGraph {
    /// Records the CUDA work `f` enqueues on device `device`, as
    /// `with torch.cuda.graph(g): out = f()`. During the capture the kernels are recorded,
    /// not run: what `f` returns holds its values only after the first
    /// [`CudaGraph::replay`]. `f` must not synchronise with the host (reading a value,
    /// `nonzero`, a data-dependent shape): CUDA refuses that during a capture, and the
    /// capture fails with [`Error::Capture`] (also when `f` panics).
    ///
    /// Run `f` eagerly at least once before (lazy initialisation, cuDNN's algorithm search
    /// are not capturable). Autocast's cache of cast weights is off during the capture.
    pub fn capture<T>(device: usize, f: impl FnOnce() -> T) -> Result<(CudaGraph, T)> {
        check_device(device)?;
        let mut raw: *mut ffi::Graph = std::ptr::null_mut();
        call(|err, len| unsafe { ffi::memad_cuda_graph_new(&mut raw, err, len) })?;
        let graph = CudaGraph { raw };
        call(|err, len| unsafe {
            ffi::memad_cuda_graph_capture_begin(graph.raw, device as _, err, len)
        })
        .map_err(|e| Error::Capture(e.to_string()))?;
        let out = catch_unwind(AssertUnwindSafe(f));
        let ended =
            call(|err, len| unsafe { ffi::memad_cuda_graph_capture_end(graph.raw, err, len) });
        match (out, ended) {
            (Ok(out), Ok(())) => Ok((graph, out)),
            (Ok(_), Err(e)) => Err(Error::Capture(e.to_string())),
            (Err(panic), ended) => {
                let mut message = panic_message(&panic);
                if let Err(e) = ended {
                    message = format!("{message} ({e})");
                }
                Err(Error::Capture(message))
            }
        }
    }

    /// Relaunches the captured work on the current stream (asynchronously, as any kernel).
    pub fn replay(&self) -> Result<()> {
        call(|err, len| unsafe { ffi::memad_cuda_graph_replay(self.raw, err, len) })
    }
}

impl Drop for CudaGraph {
    fn drop(&mut self) {
        // SAFETY: `raw` came from memad_cuda_graph_new and is freed once, here.
        #[cfg(memad_cuda_ext)]
        unsafe {
            ffi::memad_cuda_graph_free(self.raw)
        };
    }
}

fn check_device(device: usize) -> Result<()> {
    let count = device_count()?;
    if device >= count {
        return Err(Error::Cuda(format!(
            "no CUDA device {device} (libtorch sees {count})"
        )));
    }
    Ok(())
}

fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = panic.downcast_ref::<&str>() {
        s.to_string()
    } else if let Some(s) = panic.downcast_ref::<String>() {
        s.clone()
    } else {
        "the captured closure panicked".into()
    }
}

/// Calls a shim function with an error buffer; its message on failure.
fn call(f: impl FnOnce(*mut std::ffi::c_char, usize) -> std::ffi::c_int) -> Result<()> {
    let mut buffer = vec![0 as std::ffi::c_char; 4096];
    if f(buffer.as_mut_ptr(), buffer.len()) == 0 {
        return Ok(());
    }
    // SAFETY: the shim writes a NUL-terminated message into the buffer on failure.
    let message = unsafe { std::ffi::CStr::from_ptr(buffer.as_ptr()) };
    Err(Error::Cuda(message.to_string_lossy().trim().to_string()))
}

#[cfg(memad_cuda_ext)]
mod ffi {
    use std::ffi::{c_char, c_int};

    /// `memad_cuda_graph` of shim.cpp (opaque).
    #[repr(C)]
    pub struct Graph {
        _private: [u8; 0],
    }

    unsafe extern "C" {
        pub fn memad_cuda_device_count(count: *mut c_int, err: *mut c_char, len: usize) -> c_int;
        pub fn memad_cuda_memory_stats(
            device: c_int,
            out: *mut i64,
            err: *mut c_char,
            len: usize,
        ) -> c_int;
        pub fn memad_cuda_reset_peak_memory(device: c_int, err: *mut c_char, len: usize) -> c_int;
        pub fn memad_cuda_graph_new(graph: *mut *mut Graph, err: *mut c_char, len: usize) -> c_int;
        pub fn memad_cuda_graph_free(graph: *mut Graph);
        pub fn memad_cuda_graph_capture_begin(
            graph: *mut Graph,
            device: c_int,
            err: *mut c_char,
            len: usize,
        ) -> c_int;
        pub fn memad_cuda_graph_capture_end(
            graph: *mut Graph,
            err: *mut c_char,
            len: usize,
        ) -> c_int;
        pub fn memad_cuda_graph_replay(graph: *mut Graph, err: *mut c_char, len: usize) -> c_int;
    }
}

/// Stand-ins so that the crate compiles without the shim; never called ([`is_built`] and
/// [`check_device`] return first).
#[cfg(not(memad_cuda_ext))]
#[allow(clippy::missing_safety_doc)]
mod ffi {
    use std::ffi::{c_char, c_int};
    pub struct Graph;
    pub unsafe fn memad_cuda_device_count(_: *mut c_int, _: *mut c_char, _: usize) -> c_int {
        unreachable!()
    }
    pub unsafe fn memad_cuda_memory_stats(
        _: c_int,
        _: *mut i64,
        _: *mut c_char,
        _: usize,
    ) -> c_int {
        unreachable!()
    }
    pub unsafe fn memad_cuda_reset_peak_memory(_: c_int, _: *mut c_char, _: usize) -> c_int {
        unreachable!()
    }
    pub unsafe fn memad_cuda_graph_new(_: *mut *mut Graph, _: *mut c_char, _: usize) -> c_int {
        unreachable!()
    }
    pub unsafe fn memad_cuda_graph_capture_begin(
        _: *mut Graph,
        _: c_int,
        _: *mut c_char,
        _: usize,
    ) -> c_int {
        unreachable!()
    }
    pub unsafe fn memad_cuda_graph_capture_end(_: *mut Graph, _: *mut c_char, _: usize) -> c_int {
        unreachable!()
    }
    pub unsafe fn memad_cuda_graph_replay(_: *mut Graph, _: *mut c_char, _: usize) -> c_int {
        unreachable!()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{Device, Kind, Tensor};

    /// The CUDA devices of this machine; the GPU tests below are `#[ignore]`d and run on a
    /// GPU machine by `tools/gpu_all.sh` (part `cuda_extension`).
    fn gpu() -> usize {
        let count = device_count().expect("the CUDA extension is built on the GPU machine");
        assert!(count > 0, "these tests need a CUDA device");
        0
    }

    #[test]
    fn without_a_device_every_call_says_why() {
        let expected_count = match is_built() {
            Ok(()) => device_count().unwrap(),
            Err(Error::NotBuilt(reason)) => {
                assert!(!reason.is_empty());
                assert!(matches!(memory_stats(0), Err(Error::NotBuilt(_))));
                let said = format!("memad was built without its CUDA extension: {reason}");
                let err = reset_peak_memory(0).unwrap_err();
                assert!(matches!(err, Error::NotBuilt(_)), "{err}");
                assert_eq!(err.to_string(), said);
                let mut ran = false;
                let err = CudaGraph::capture(0, || ran = true).err().unwrap();
                assert!(matches!(err, Error::NotBuilt(_)), "{err}");
                assert_eq!(err.to_string(), said);
                assert!(!ran, "the closure must not run without the extension");
                return;
            }
            Err(e) => panic!("{e}"),
        };
        let missing = expected_count; // one past the last device
        let err = memory_stats(missing).unwrap_err().to_string();
        assert!(err.contains(&format!("no CUDA device {missing}")), "{err}");
        let err = reset_peak_memory(missing).unwrap_err().to_string();
        assert!(err.contains(&format!("no CUDA device {missing}")), "{err}");
        let mut ran = false;
        let err = CudaGraph::capture(missing, || ran = true)
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains(&format!("no CUDA device {missing}")), "{err}");
        assert!(!ran, "the closure must not run when no capture began");
    }

    #[test]
    #[ignore = "needs a CUDA device: tools/gpu_all.sh runs it"]
    fn memory_stats_follow_allocations_like_torch_cuda() {
        let device = gpu();
        let before = memory_stats(device).unwrap();
        let t = Tensor::zeros([16, 1024, 1024], (Kind::Float, Device::Cuda(device))); // 64 MiB
        let during = memory_stats(device).unwrap();
        assert!(
            during.allocated - before.allocated >= 64 << 20,
            "{before:?} -> {during:?}"
        );
        assert!(during.peak_allocated >= during.allocated);
        assert!(during.reserved >= during.allocated);
        drop(t);
        let after = memory_stats(device).unwrap();
        assert!(
            after.allocated <= during.allocated - (64 << 20),
            "{during:?} -> {after:?}"
        );
        assert!(after.peak_allocated >= during.allocated, "the peak stays");
        reset_peak_memory(device).unwrap();
        let reset = memory_stats(device).unwrap();
        assert_eq!(reset.peak_allocated, reset.allocated);
    }

    #[test]
    #[ignore = "needs a CUDA device: tools/gpu_all.sh runs it"]
    fn a_replayed_graph_computes_what_eager_code_computes_on_new_inputs() {
        let device = gpu();
        let cuda = Device::Cuda(device);
        tch::manual_seed(0);
        let w = Tensor::randn([64, 32], (Kind::Float, cuda));
        let f = |x: &Tensor| {
            (x.matmul(&w) + 1.0)
                .relu()
                .sum_dim_intlist([1].as_slice(), false, Kind::Float)
        };
        let mut input = Tensor::randn([8, 64], (Kind::Float, cuda));
        let _ = f(&input); // warm-up (cuBLAS handles, workspaces)
        let (graph, output) = tch::no_grad(|| CudaGraph::capture(device, || f(&input))).unwrap();
        for _ in 0..3 {
            let fresh = Tensor::randn([8, 64], (Kind::Float, cuda));
            input.copy_(&fresh);
            graph.replay().unwrap();
            let eager = f(&fresh);
            assert!(
                output.allclose(&eager, 1e-5, 1e-5, false),
                "replay != eager"
            );
        }
    }

    #[test]
    #[ignore = "needs a CUDA device: tools/gpu_all.sh runs it"]
    fn a_host_synchronisation_fails_the_capture_and_cuda_keeps_working() {
        let device = gpu();
        let cuda = Device::Cuda(device);
        let x = Tensor::ones([4], (Kind::Float, cuda));
        let result = CudaGraph::capture(device, || x.sum(Kind::Float).double_value(&[]));
        let err = result
            .err()
            .expect("reading a value during a capture must fail")
            .to_string();
        assert!(err.starts_with("CUDA graph capture failed"), "{err}");
        let y = (&x * 2.0).sum(Kind::Float).double_value(&[]);
        assert_eq!(y, 8.0, "eager work after a failed capture");
    }
}
