//! Small constant tensors (normalisation statistics, filter taps) made from host values once
//! per device and kind, then reused.
//!
//! `Tensor::from_slice(..).to_device(cuda)` at every call copies from pageable host memory,
//! which makes the host wait for the device (two waits per teacher forward for ImageNet's
//! mean and std) and cannot be captured in a CUDA graph. A PyTorch module keeps such
//! constants as buffers on its device; [`constant`] is the same for free functions.
use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};
use tch::{Device, Kind, Tensor};

type Cache = HashMap<(String, Device, Kind), Tensor>;

/// The tensor `make()` builds (on the CPU, from host values), moved to `device` as `kind`
/// the first time `name` is asked for there, the same tensor afterwards. `name` must
/// identify the values (include any parameter they depend on). Do not modify the result in
/// place: every caller shares it.
pub fn constant(name: &str, device: Device, kind: Kind, make: impl FnOnce() -> Tensor) -> Tensor {
    static CACHE: OnceLock<Mutex<Cache>> = OnceLock::new();
    let mut cache = CACHE
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    cache
        .entry((name.to_string(), device, kind))
        .or_insert_with(|| tch::no_grad(|| make().to_device(device).to_kind(kind)))
        .shallow_clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_constant_is_made_once_per_name_device_and_kind() {
        let mut made = 0;
        let mut get = |name: &str, kind: Kind| {
            constant(name, Device::Cpu, kind, || {
                made += 1;
                Tensor::from_slice(&[1.5f32, 2.5])
            })
        };
        let a = get("test:pair", Kind::Float);
        let b = get("test:pair", Kind::Float);
        assert_eq!(a.data_ptr(), b.data_ptr(), "the same tensor");
        let c = get("test:pair", Kind::Double);
        assert_eq!(c.kind(), Kind::Double);
        assert_eq!(Vec::<f64>::try_from(&c).unwrap(), [1.5, 2.5]);
        let other = get("test:other", Kind::Float);
        assert_ne!(other.data_ptr(), a.data_ptr());
        assert_eq!(made, 3);
    }
}
