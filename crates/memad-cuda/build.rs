//! Compiles `src/shim.cpp` against the libtorch torch-sys links (`DEP_TCH_LIBTORCH_LIB`)
//! when that libtorch has CUDA (`libtorch_cuda.so`, `ATen/cuda/CUDAGraph.h`) and the CUDA
//! runtime headers can be found; otherwise the crate builds without it and every function
//! returns `Error::NotBuilt` with the reason (a CPU-only libtorch needs no CUDA toolkit).
//!
//! CUDA headers are looked for in `$CUDA_HOME/include`, `$CUDA_PATH/include`,
//! `/usr/local/cuda/include`, and beside PyPI's torch in the `nvidia-cuda-runtime` wheel
//! (`site-packages/nvidia/cu13/include` or `nvidia/cuda_runtime/include`, with the
//! `crt/` headers of `nvidia-cuda-crt`, which `./dev setup` installs).
use std::env;
use std::path::{Path, PathBuf};

fn main() {
    println!("cargo::rustc-check-cfg=cfg(memad_cuda_ext)");
    println!("cargo:rerun-if-changed=src/shim.cpp");
    for var in ["DEP_TCH_LIBTORCH_LIB", "CUDA_HOME", "CUDA_PATH"] {
        println!("cargo:rerun-if-env-changed={var}");
    }
    match find_inputs() {
        Ok(inputs) => compile(&inputs),
        Err(reason) => println!("cargo:rustc-env=MEMAD_CUDA_NOT_BUILT={reason}"),
    }
}

struct Inputs {
    lib_dir: PathBuf,
    includes: Vec<PathBuf>,
}

fn find_inputs() -> Result<Inputs, String> {
    let lib_dir = PathBuf::from(
        env::var("DEP_TCH_LIBTORCH_LIB")
            .map_err(|_| "torch-sys did not say where libtorch is".to_string())?,
    );
    if !lib_dir.join("libtorch_cuda.so").exists() {
        return Err(format!(
            "the libtorch in {} has no CUDA (no libtorch_cuda.so)",
            lib_dir.display()
        ));
    }
    let root = lib_dir
        .parent()
        .ok_or("libtorch's lib folder has no parent")?;
    let include = root.join("include");
    if !include.join("ATen/cuda/CUDAGraph.h").exists() {
        return Err(format!(
            "no ATen/cuda/CUDAGraph.h under {}",
            include.display()
        ));
    }
    let cuda = cuda_include(root).ok_or_else(|| {
        "no CUDA runtime headers (cuda_runtime_api.h and crt/host_config.h): run ./dev setup \
         (PyPI's nvidia-cuda-crt) or set CUDA_HOME to a CUDA toolkit"
            .to_string()
    })?;
    Ok(Inputs {
        includes: vec![
            include.clone(),
            include.join("torch/csrc/api/include"),
            cuda,
        ],
        lib_dir,
    })
}

fn cuda_include(torch_root: &Path) -> Option<PathBuf> {
    let mut candidates: Vec<PathBuf> = ["CUDA_HOME", "CUDA_PATH"]
        .iter()
        .filter_map(env::var_os)
        .map(|dir| PathBuf::from(dir).join("include"))
        .collect();
    candidates.push(PathBuf::from("/usr/local/cuda/include"));
    // PyPI: torch/ sits beside nvidia/ in site-packages.
    if let Some(site) = torch_root.parent() {
        candidates.push(site.join("nvidia/cu13/include"));
        candidates.push(site.join("nvidia/cuda_runtime/include"));
    }
    // cuda_runtime.h includes crt/host_config.h, which PyPI ships apart (nvidia-cuda-crt).
    candidates.into_iter().find(|dir| {
        dir.join("cuda_runtime_api.h").exists() && dir.join("crt/host_config.h").exists()
    })
}

fn compile(inputs: &Inputs) {
    // Same flags as torch-sys's own C++ (libtch): C++17, the libtorch's C++11 ABI.
    let abi = env::var("LIBTORCH_CXX11_ABI").unwrap_or_else(|_| "1".into());
    cc::Build::new()
        .cpp(true)
        .pic(true)
        .warnings(false)
        .includes(&inputs.includes)
        .flag("-std=c++17")
        .flag(format!("-D_GLIBCXX_USE_CXX11_ABI={abi}"))
        .flag("-DGLOG_USE_GLOG_EXPORT")
        .file("src/shim.cpp")
        .compile("memad_cuda_shim");
    println!(
        "cargo:rustc-link-search=native={}",
        inputs.lib_dir.display()
    );
    for lib in ["torch_cuda", "c10_cuda", "torch_cpu", "c10"] {
        println!("cargo:rustc-link-lib=dylib={lib}");
    }
    println!("cargo:rustc-cfg=memad_cuda_ext");
}
