//! Facts about the libtorch this process runs on, its CUDA start-up and its global settings.
//!
//! rustc links with `--as-needed`, which drops `libtorch_cuda.so` (nothing references it
//! directly), so tch would see no CUDA. [`init`] loads it by hand once at start-up; when that
//! fails (no GPU libraries, no driver) everything carries on on the CPU.

mod cuda_driver;
mod cuda_load;
mod libtorch;
mod loaded;
mod settings;
mod version_file;

pub use cuda_driver::{CudaDevice, DriverInfo, driver_info};
pub use cuda_load::{CudaLoad, init};
pub use libtorch::{EXPECTED_TORCH_VERSION, Libtorch, libtorch};
pub use loaded::{
    LoadedLibrary, is_torch_or_cuda, loaded_libraries, loaded_object_path, unresolved_dependencies,
};
pub use settings::{
    AutocastGuard, Precision, autocast, autocast_state, cuda_tf32, set_autocast_state,
    set_cuda_tf32, without_autocast,
};
