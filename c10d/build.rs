// Builds csrc/c10d_shim.cpp against the headers of the libtorch that torch-sys links
// (DEP_TCH_LIBTORCH_LIB = <libtorch>/lib), with gloo's headers from Debian's libgloo-dev
// (/usr/include/gloo; the torch wheel ships none). NCCL support is compiled in when the
// CUDA and NCCL headers of the nvidia pip wheels next to torch are present (see
// scripts/setup.sh); without them the NCCL backend reports that it was not built.
use std::path::{Path, PathBuf};

fn main() {
    let lib = PathBuf::from(
        std::env::var("DEP_TCH_LIBTORCH_LIB").expect("torch-sys sets DEP_TCH_LIBTORCH_LIB"),
    );
    let root = lib
        .parent()
        .expect("libtorch/lib has a parent")
        .to_path_buf();
    let inc = root.join("include");
    println!("cargo:rerun-if-changed=csrc/c10d_shim.cpp");
    // NCCL is compiled in when the nvidia wheels' headers sit next to torch: rebuild when
    // packages come or go there (e.g. `./x test` adding them after `./x demo`'s CPU set-up).
    if let Some(site) = root
        .canonicalize()
        .ok()
        .and_then(|t| t.parent().map(Path::to_path_buf))
    {
        println!("cargo:rerun-if-changed={}", site.display());
    }
    println!("cargo:rerun-if-env-changed=DINOV2_C10D_NO_NCCL");
    if !Path::new("/usr/include/gloo/config.h").exists() {
        panic!(
            "gloo's headers are missing (/usr/include/gloo): install Debian's libgloo-dev (scripts/setup.sh does)"
        );
    }
    let mut b = cc::Build::new();
    b.cpp(true)
        .file("csrc/c10d_shim.cpp")
        .include(&inc)
        .include(inc.join("torch/csrc/api/include"))
        .flag("-std=c++17")
        .flag("-D_GLIBCXX_USE_CXX11_ABI=1")
        .define("GLOG_USE_GLOG_EXPORT", None)
        .define("USE_C10D_GLOO", None)
        .flag_if_supported("-Wno-unused-parameter")
        .flag_if_supported("-Wno-deprecated-declarations")
        .warnings(false);
    let nccl = nccl_includes(&root);
    if let Some(dirs) = &nccl {
        b.define("USE_C10D_NCCL", None)
            .define("USE_CUDA", None)
            .define("DINOV2_C10D_NCCL", None);
        for d in dirs {
            b.include(d);
        }
    }
    b.compile("dinov2_c10d");
    println!("cargo:rustc-link-search=native={}", lib.display());
    // this crate's own tests find libtorch without LD_LIBRARY_PATH
    println!("cargo:rustc-link-arg=-Wl,-rpath,{}", lib.display());
    println!("cargo:rustc-link-lib=dylib=torch_cpu");
    println!("cargo:rustc-link-lib=dylib=c10");
    if nccl.is_some() {
        println!("cargo:rustc-link-lib=dylib=torch_cuda");
        println!("cargo:rustc-link-lib=dylib=c10_cuda");
        println!("cargo:rustc-cfg=c10d_nccl");
    }
    println!("cargo:rustc-check-cfg=cfg(c10d_nccl)");
}

/// The include folders of the nvidia wheels (site-packages/nvidia/*/include) when the
/// headers ProcessGroupNCCL needs are all there.
fn nccl_includes(torch: &Path) -> Option<Vec<PathBuf>> {
    if std::env::var_os("DINOV2_C10D_NO_NCCL").is_some()
        || !torch.join("lib/libtorch_cuda.so").exists()
    {
        return None;
    }
    let nvidia = torch.canonicalize().ok()?.parent()?.join("nvidia");
    // nvidia/<pkg>/include, and the CCCL headers one level down (nvidia/cu13/include/cccl)
    let dirs: Vec<PathBuf> = std::fs::read_dir(&nvidia)
        .ok()?
        .filter_map(|e| e.ok())
        .map(|e| e.path().join("include"))
        .flat_map(|p| [p.join("cccl"), p])
        .filter(|p| p.is_dir())
        .collect();
    let has = |f: &str| dirs.iter().any(|d| d.join(f).exists());
    (has("nccl.h")
        && has("cuda_runtime_api.h")
        && has("crt/host_defines.h")
        && has("cuda/std/cstdint"))
    .then_some(dirs)
}
