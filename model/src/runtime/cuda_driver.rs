//! What the NVIDIA driver sees, asked through the CUDA driver API (`libcuda.so.1`) directly,
//! independently of libtorch: this tells "no GPU" apart from "a GPU libtorch cannot use".

use std::ffi::{CStr, c_char, c_int, c_void};

/// One GPU as the driver reports it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct CudaDevice {
    pub index: i32,
    pub name: String,
    pub total_memory_bytes: u64,
    pub compute_capability: (i32, i32),
}

/// The driver and its GPUs.
#[derive(Debug, Clone, serde::Serialize)]
pub struct DriverInfo {
    /// e.g. 13000 for CUDA 13.0.
    pub cuda_driver_version: i32,
    pub devices: Vec<CudaDevice>,
}

type CuInit = unsafe extern "C" fn(u32) -> c_int;
type CuDriverGetVersion = unsafe extern "C" fn(*mut c_int) -> c_int;
type CuDeviceGetCount = unsafe extern "C" fn(*mut c_int) -> c_int;
type CuDeviceGet = unsafe extern "C" fn(*mut c_int, c_int) -> c_int;
type CuDeviceGetName = unsafe extern "C" fn(*mut c_char, c_int, c_int) -> c_int;
type CuDeviceTotalMem = unsafe extern "C" fn(*mut usize, c_int) -> c_int;
type CuDeviceGetAttribute = unsafe extern "C" fn(*mut c_int, c_int, c_int) -> c_int;

const CC_MAJOR: c_int = 75; // CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR
const CC_MINOR: c_int = 76; // CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR

/// Asks the NVIDIA driver for its version and GPUs. `Err` says why there is no answer:
/// no driver library (the usual CPU machine), or the driver refusing to initialise.
pub fn driver_info() -> Result<DriverInfo, String> {
    // SAFETY: dlopen/dlsym of the driver library; every symbol is checked before use and
    // called with the signature the CUDA driver API documents.
    unsafe {
        let handle = libc::dlopen(c"libcuda.so.1".as_ptr(), libc::RTLD_NOW | libc::RTLD_LOCAL);
        if handle.is_null() {
            return Err("no NVIDIA driver (libcuda.so.1 not found)".into());
        }
        let sym = |name: &CStr| -> Result<*mut c_void, String> {
            let p = libc::dlsym(handle, name.as_ptr());
            if p.is_null() {
                Err(format!("libcuda.so.1 lacks {}", name.to_string_lossy()))
            } else {
                Ok(p)
            }
        };
        let cu_init: CuInit = std::mem::transmute(sym(c"cuInit")?);
        let get_version: CuDriverGetVersion = std::mem::transmute(sym(c"cuDriverGetVersion")?);
        let get_count: CuDeviceGetCount = std::mem::transmute(sym(c"cuDeviceGetCount")?);
        let get_device: CuDeviceGet = std::mem::transmute(sym(c"cuDeviceGet")?);
        let get_name: CuDeviceGetName = std::mem::transmute(sym(c"cuDeviceGetName")?);
        let total_mem: CuDeviceTotalMem = std::mem::transmute(sym(c"cuDeviceTotalMem_v2")?);
        let get_attr: CuDeviceGetAttribute = std::mem::transmute(sym(c"cuDeviceGetAttribute")?);

        let check = |what: &str, rc: c_int| {
            if rc == 0 {
                Ok(())
            } else {
                Err(format!("{what} failed with CUDA driver error {rc}"))
            }
        };
        check("cuInit", cu_init(0))?;
        let mut version = 0;
        check("cuDriverGetVersion", get_version(&mut version))?;
        let mut count = 0;
        check("cuDeviceGetCount", get_count(&mut count))?;
        let mut devices = Vec::new();
        for index in 0..count {
            let mut dev = 0;
            check("cuDeviceGet", get_device(&mut dev, index))?;
            let mut name = [0 as c_char; 256];
            check("cuDeviceGetName", get_name(name.as_mut_ptr(), 256, dev))?;
            let mut bytes = 0usize;
            check("cuDeviceTotalMem", total_mem(&mut bytes, dev))?;
            let (mut major, mut minor) = (0, 0);
            check("cuDeviceGetAttribute", get_attr(&mut major, CC_MAJOR, dev))?;
            check("cuDeviceGetAttribute", get_attr(&mut minor, CC_MINOR, dev))?;
            devices.push(CudaDevice {
                index,
                name: CStr::from_ptr(name.as_ptr()).to_string_lossy().into_owned(),
                total_memory_bytes: bytes as u64,
                compute_capability: (major, minor),
            });
        }
        Ok(DriverInfo {
            cuda_driver_version: version,
            devices,
        })
    }
}
