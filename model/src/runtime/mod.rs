//! Facts about the libtorch this process runs on, and its CUDA start-up.
//!
//! rustc links with `--as-needed`, which drops `libtorch_cuda.so` (nothing references it
//! directly), so tch would see no CUDA. [`init`] loads it by hand once at start-up; when that
//! fails (no GPU libraries, no driver) everything carries on on the CPU.

mod cuda_driver;
mod cuda_load;
mod libtorch;

pub use cuda_driver::{CudaDevice, DriverInfo, driver_info};
pub use cuda_load::{CudaLoad, init};
pub use libtorch::{EXPECTED_TORCH_VERSION, Libtorch, libtorch};
