//! With the `cuda` feature: compiles `src/nn/cuda/kernels.cu` to PTX with nvcc (found as
//! `$CUDA_HOME/bin/nvcc`, `$CUDA_PATH/bin/nvcc` or on the PATH, as candle's own kernels are),
//! for the virtual architecture `compute_$CUDA_COMPUTE_CAP` (default 80; the driver compiles
//! the PTX for the GPU at load time).

fn main() {
    println!("cargo::rerun-if-changed=build.rs");
    println!("cargo::rerun-if-changed=src/nn/cuda/kernels.cu");
    println!("cargo::rerun-if-env-changed=CUDA_COMPUTE_CAP");
    if std::env::var_os("CARGO_FEATURE_CUDA").is_none() {
        return;
    }
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR").expect("OUT_DIR"));
    let nvcc = ["CUDA_HOME", "CUDA_PATH", "CUDA_ROOT"]
        .iter()
        .filter_map(std::env::var_os)
        .map(|root| std::path::PathBuf::from(root).join("bin").join("nvcc"))
        .find(|p| p.exists())
        .unwrap_or_else(|| "nvcc".into());
    let cap = std::env::var("CUDA_COMPUTE_CAP")
        .ok()
        .map(|c| c.trim().replace('.', ""))
        .filter(|c| !c.is_empty() && c.chars().all(|ch| ch.is_ascii_digit()))
        .unwrap_or_else(|| "80".into());
    let status = std::process::Command::new(&nvcc)
        .args(["--ptx", "-O3", "-std=c++17"])
        .arg(format!("-arch=compute_{cap}"))
        .arg("src/nn/cuda/kernels.cu")
        .arg("-o")
        .arg(out.join("kernels.ptx"))
        .status();
    match status {
        Ok(s) if s.success() => {}
        Ok(s) => panic!("{} failed ({s}) on src/nn/cuda/kernels.cu", nvcc.display()),
        Err(e) => panic!(
            "could not run {} for the `cuda` feature: {e} (set CUDA_HOME)",
            nvcc.display()
        ),
    }
}
