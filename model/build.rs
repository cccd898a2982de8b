// model's build script:
// - embeds libtorch's directory as the rpath of this package's tests (as ../build.rs does);
// - records the version of the libtorch this build links (model::runtime::BUILD_TORCH_VERSION,
//   what `dinov2 doctor` checks the loaded libtorch against);
// - compiles csrc/torch_settings.cpp, global libtorch settings tch does not expose
//   (TF32), and csrc/foreach.cpp, libtorch's multi-tensor and fused kernels, against that
//   libtorch's headers.
use std::path::PathBuf;

#[path = "src/runtime/version_file.rs"]
mod version_file;

fn main() {
    let lib = PathBuf::from(
        std::env::var("DEP_TCH_LIBTORCH_LIB").expect("torch-sys sets DEP_TCH_LIBTORCH_LIB"),
    );
    let root = lib
        .parent()
        .expect("libtorch/lib has a parent")
        .to_path_buf();
    println!("cargo:rustc-link-arg=-Wl,-rpath,{}", lib.display());

    // (a path that does not exist would make cargo rerun this script on every build)
    let stamp = ["version.py", "build-version"]
        .map(|f| root.join(f))
        .into_iter()
        .find(|p| p.exists())
        .unwrap_or_else(|| root.clone());
    println!("cargo:rerun-if-changed={}", stamp.display());
    let version = version_file::recorded_version(&root).unwrap_or_else(|| {
        println!(
            "cargo:warning={} records no version (no version.py or build-version); `dinov2 doctor` cannot check it",
            root.display()
        );
        String::new()
    });
    println!("cargo:rustc-env=DINOV2_LIBTORCH_BUILD_VERSION={version}");

    println!("cargo:rerun-if-changed=csrc/torch_settings.cpp");
    println!("cargo:rerun-if-changed=csrc/foreach.cpp");
    cc::Build::new()
        .cpp(true)
        .file("csrc/torch_settings.cpp")
        .file("csrc/foreach.cpp")
        .include(root.join("include"))
        .flag("-std=c++17")
        .flag("-D_GLIBCXX_USE_CXX11_ABI=1")
        .define("GLOG_USE_GLOG_EXPORT", None)
        .flag_if_supported("-Wno-unused-parameter")
        .warnings(false)
        .compile("dinov2_torch_settings");
    println!("cargo:rustc-link-search=native={}", lib.display());
    println!("cargo:rustc-link-lib=dylib=torch_cpu");
    println!("cargo:rustc-link-lib=dylib=c10");
}
