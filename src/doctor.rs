//! `dinov2 doctor`: what a user needs to know before a long job.

use anyhow::Result;
use model::runtime::{self, CudaLoad, EXPECTED_TORCH_VERSION};
use serde::Serialize;
use std::path::Path;
use std::process::ExitCode;
use tch::{Device, Kind, Tensor};

/// Everything the doctor found.
#[derive(Debug, Serialize)]
pub struct Report {
    pub dinov2_version: &'static str,
    pub libtorch: Option<runtime::Libtorch>,
    pub libtorch_cuda: CudaLoad,
    /// The libtorch release this binary was built against (`2.11.0`).
    pub build_torch_version: &'static str,
    /// libtorch's, CUDA's, NCCL's, OpenMP's and the C++ runtime's libraries as loaded, with the
    /// path each was mapped from.
    pub libraries: Vec<runtime::LoadedLibrary>,
    /// When `libtorch_cuda.so` is present but did not load: every dependency of it the system
    /// loader cannot find (from `ldd`), or why that could not be asked.
    pub missing_libraries: std::result::Result<Vec<String>, String>,
    pub libtorch_features: Vec<&'static str>,
    /// The c10d process groups this build has (data-parallel training).
    pub c10d_backends: Vec<&'static str>,
    pub torch_threads: (i32, i32),
    /// Result of a small fp32 matmul checked against fp64, on the CPU.
    pub cpu_tensor_check: std::result::Result<f64, String>,
    pub cuda_driver: std::result::Result<runtime::DriverInfo, String>,
    pub torch_cuda_devices: i64,
    pub cudnn: Option<i64>,
    pub cpu_model: String,
    pub cpus_available: usize,
    pub cpus_online: usize,
    pub simd: pipeline::simd::SimdReport,
    pub jpeg_self_test: std::result::Result<pipeline::simd::JpegSelfTest, String>,
    pub memory_available_bytes: Option<u64>,
    pub memory_total_bytes: Option<u64>,
    pub disk_path: String,
    pub disk_free_bytes: Option<u64>,
    pub disk_total_bytes: Option<u64>,
    /// Things that would make a job fail or silently run somewhere slower than expected.
    pub problems: Vec<String>,
}

/// Collects the report.
pub fn collect(disk_path: &Path) -> Report {
    let libtorch = runtime::libtorch();
    let libtorch_cuda = runtime::init().clone();
    let missing_libraries = match (&libtorch_cuda, &libtorch) {
        (CudaLoad::Failed(_), Some(lt)) => {
            runtime::unresolved_dependencies(&lt.lib_dir.join("libtorch_cuda.so"))
        }
        _ => Ok(Vec::new()),
    };
    let cuda_driver = runtime::driver_info();
    let torch_cuda_devices = tch::Cuda::device_count();
    let cudnn = tch::Cuda::cudnn_is_available().then(tch::utils::version_cudnn);
    let mut libtorch_features = Vec::new();
    for (on, name) in [
        (tch::utils::has_mkl(), "MKL"),
        (tch::utils::has_openmp(), "OpenMP"),
        (tch::utils::has_mkldnn(), "oneDNN"),
        (tch::utils::has_lapack(), "LAPACK"),
        (tch::utils::has_cuda(), "CUDA"),
    ] {
        if on {
            libtorch_features.push(name);
        }
    }
    let (disk_free_bytes, disk_total_bytes) = disk_space(disk_path).unzip();
    let mut report = Report {
        dinov2_version: env!("CARGO_PKG_VERSION"),
        libtorch,
        libtorch_cuda,
        build_torch_version: EXPECTED_TORCH_VERSION,
        libraries: runtime::loaded_libraries()
            .into_iter()
            .filter(|l| runtime::is_torch_or_cuda(&l.name))
            .collect(),
        missing_libraries,
        libtorch_features,
        c10d_backends: if c10d::has_nccl() {
            vec!["gloo", "nccl"]
        } else {
            vec!["gloo"]
        },
        torch_threads: (tch::get_num_threads(), tch::get_num_interop_threads()),
        cpu_tensor_check: cpu_tensor_check().map_err(|e| format!("{e:#}")),
        cuda_driver,
        torch_cuda_devices,
        cudnn,
        cpu_model: cpu_model(),
        cpus_available: std::thread::available_parallelism().map_or(1, |n| n.get()),
        // SAFETY: sysconf has no preconditions.
        cpus_online: unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) }.max(1) as usize,
        simd: pipeline::simd::report(),
        jpeg_self_test: pipeline::simd::jpeg_self_test(640, 480, 5).map_err(|e| format!("{e:#}")),
        memory_available_bytes: meminfo("MemAvailable:"),
        memory_total_bytes: meminfo("MemTotal:"),
        disk_path: disk_path.display().to_string(),
        disk_free_bytes,
        disk_total_bytes,
        problems: Vec::new(),
    };
    report.problems = problems(&report);
    report
}

fn problems(r: &Report) -> Vec<String> {
    let mut out = Vec::new();
    match &r.libtorch {
        None => out.push("libtorch_cpu.so is not among the loaded libraries".to_string()),
        Some(lt) if !lt.is_expected() => out.push(format!(
            "libtorch at {} is version {}, but this build needs {EXPECTED_TORCH_VERSION}: \
             run scripts/setup.sh, or point LIBTORCH at a {EXPECTED_TORCH_VERSION} libtorch and rebuild",
            lt.lib_dir.display(),
            lt.version.as_deref().unwrap_or("unknown")
        )),
        Some(_) => {}
    }
    if let Err(e) = &r.cpu_tensor_check {
        out.push(format!("libtorch CPU tensor check failed: {e}"));
    }
    if let Ok(driver) = &r.cuda_driver {
        let gpus = driver.devices.len() as i64;
        if gpus > 0 && r.torch_cuda_devices == 0 {
            let why = match &r.libtorch_cuda {
                CudaLoad::Absent => {
                    "this libtorch has no libtorch_cuda.so (a CPU-only build)".into()
                }
                CudaLoad::Failed(e) => match &r.missing_libraries {
                    Ok(m) if !m.is_empty() => format!(
                        "libtorch_cuda.so did not load: {e}; not found: {} (their folders, e.g. \
                         site-packages/nvidia/*/lib of the PyTorch installation, belong on \
                         LD_LIBRARY_PATH)",
                        m.join(", ")
                    ),
                    _ => format!("libtorch_cuda.so did not load: {e}"),
                },
                CudaLoad::Loaded(_) => "libtorch loaded its CUDA library but sees no device".into(),
            };
            out.push(format!(
                "the NVIDIA driver sees {gpus} GPU(s) but libtorch cannot use them ({why}); \
                 jobs would run on the CPU. Rerun scripts/setup.sh on this machine (it installs the \
                 CUDA libraries when nvidia-smi works)"
            ));
        }
    }
    if let Err(e) = &r.jpeg_self_test {
        out.push(format!("libjpeg-turbo self-test failed: {e}"));
    }
    out
}

/// fp32 matmul on the CPU compared with the same product in fp64; returns the max abs error.
fn cpu_tensor_check() -> Result<f64> {
    let opts = (Kind::Float, Device::Cpu);
    tch::manual_seed(0);
    let a = Tensor::f_randn([128, 256], opts)?;
    let b = Tensor::f_randn([256, 64], opts)?;
    let c = a.f_matmul(&b)?;
    let exact = a
        .f_to_kind(Kind::Double)?
        .f_matmul(&b.f_to_kind(Kind::Double)?)?;
    let err = (c.f_to_kind(Kind::Double)? - exact)
        .f_abs()?
        .f_max()?
        .f_double_value(&[])?;
    anyhow::ensure!(err < 1e-3, "fp32 matmul differs from fp64 by {err}");
    Ok(err)
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| std::env::consts::ARCH.to_string())
}

fn meminfo(key: &str) -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with(key))?;
    let kib: u64 = line[key.len()..]
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()?;
    Some(kib * 1024)
}

fn disk_space(path: &Path) -> Option<(u64, u64)> {
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).ok()?;
    // SAFETY: statvfs writes into the zeroed struct we own.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return None;
    }
    let frsize = st.f_frsize as u64;
    Some((st.f_bavail as u64 * frsize, st.f_blocks as u64 * frsize))
}

fn gib(bytes: u64) -> String {
    format!("{:.1} GiB", bytes as f64 / (1u64 << 30) as f64)
}

/// The libraries grouped by the folder they were loaded from, in load order.
fn by_folder(libs: &[runtime::LoadedLibrary]) -> Vec<(String, Vec<String>)> {
    let mut out: Vec<(String, Vec<String>)> = Vec::new();
    for l in libs {
        let dir = l
            .path
            .parent()
            .map_or_else(String::new, |d| d.display().to_string());
        match out.iter_mut().find(|(d, _)| *d == dir) {
            Some((_, names)) => names.push(l.name.clone()),
            None => out.push((dir, vec![l.name.clone()])),
        }
    }
    out
}

/// Prints the report as text.
pub fn print(r: &Report) {
    let row = |k: &str, v: String| println!("  {k:<16}{v}");
    println!("dinov2 {} doctor", r.dinov2_version);
    println!("libtorch");
    match &r.libtorch {
        Some(lt) => {
            let v = lt.version.as_deref().unwrap_or("unknown");
            let ok = if lt.is_expected() { "ok" } else { "MISMATCH" };
            row(
                "version",
                format!("{v} (this build needs {EXPECTED_TORCH_VERSION}: {ok})"),
            );
            row("path", lt.lib_dir.display().to_string());
        }
        None => row("version", "not found among the loaded libraries".into()),
    }
    row(
        "CUDA library",
        match &r.libtorch_cuda {
            CudaLoad::Loaded(p) => format!("loaded {p}"),
            CudaLoad::Absent => "none (CPU-only libtorch)".into(),
            CudaLoad::Failed(e) => format!("not loadable, CPU only ({e})"),
        },
    );
    row("built with", r.libtorch_features.join(", "));
    match &r.missing_libraries {
        Ok(m) if !m.is_empty() => row("not found", m.join(", ")),
        Ok(_) => {}
        Err(e) => row("not found", format!("unknown ({e})")),
    }
    row("c10d", r.c10d_backends.join(", "));
    row(
        "threads",
        format!(
            "intra-op {}, inter-op {}",
            r.torch_threads.0, r.torch_threads.1
        ),
    );
    row(
        "CPU check",
        match &r.cpu_tensor_check {
            Ok(err) => format!("ok (fp32 matmul vs fp64: max abs error {err:.2e})"),
            Err(e) => format!("FAILED: {e}"),
        },
    );
    println!("Libraries (loaded from)");
    for (dir, names) in by_folder(&r.libraries) {
        println!("  {dir}");
        println!("      {}", names.join(" "));
    }
    println!("CUDA");
    match &r.cuda_driver {
        Ok(d) => {
            let v = d.cuda_driver_version;
            row(
                "driver",
                format!(
                    "CUDA {}.{}, {} GPU(s)",
                    v / 1000,
                    v % 1000 / 10,
                    d.devices.len()
                ),
            );
            for dev in &d.devices {
                let (ma, mi) = dev.compute_capability;
                row(
                    &format!("GPU {}", dev.index),
                    format!("{}, {}, sm_{ma}{mi}", dev.name, gib(dev.total_memory_bytes)),
                );
            }
        }
        Err(e) => row("driver", e.clone()),
    }
    row(
        "libtorch sees",
        format!("{} CUDA device(s)", r.torch_cuda_devices),
    );
    row(
        "cuDNN",
        match r.cudnn {
            Some(v) => format!("available, version {v}"),
            None => "not available".into(),
        },
    );
    println!("CPU");
    row("model", r.cpu_model.clone());
    row(
        "cores",
        format!(
            "{} usable by this process ({} online)",
            r.cpus_available, r.cpus_online
        ),
    );
    row("SIMD", r.simd.cpu_features.join(" "));
    row(
        "resize",
        format!("fast_image_resize uses {}", r.simd.resize_extension),
    );
    row("augment", r.simd.augment_kernels.join(", "));
    row(
        "JPEG",
        match &r.jpeg_self_test {
            Ok(t) => format!(
                "libjpeg-turbo 3 uses {}; {}x{} decode {:.2} ms",
                r.simd.jpeg_simd, t.width, t.height, t.decode_ms
            ),
            Err(e) => format!("FAILED: {e}"),
        },
    );
    println!("Memory and disk");
    match (r.memory_available_bytes, r.memory_total_bytes) {
        (Some(a), Some(t)) => row("memory", format!("{} available of {}", gib(a), gib(t))),
        _ => row("memory", "unknown (/proc/meminfo unreadable)".into()),
    }
    match (r.disk_free_bytes, r.disk_total_bytes) {
        (Some(f), Some(t)) => row(
            "disk",
            format!("{} free of {} at {}", gib(f), gib(t), r.disk_path),
        ),
        _ => row("disk", format!("unknown ({} not readable)", r.disk_path)),
    }
    if r.problems.is_empty() {
        println!("No problems found.");
    } else {
        println!("Problems:");
        for p in &r.problems {
            println!("  - {p}");
        }
    }
}

/// `dinov2 doctor`.
pub fn run(json: bool, path: &Path) -> Result<ExitCode> {
    let report = collect(path);
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print(&report);
    }
    Ok(if report.problems.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
