//! Mixed precision and memory format of a whole run (`precision`, `channels_last` at the top
//! of an experiment file).
//!
//! - [`autocast`] runs a closure under libtorch's autocast to bfloat16 on a device type:
//!   what `with torch.autocast(device_type, dtype=torch.bfloat16):` does in PyTorch. Inside,
//!   the ops of autocast's lower-precision list (convolutions, matmuls, ...) run in bf16, the
//!   numerically sensitive ones (norms, softmax, losses, ...) in fp32; variables, gradients
//!   and optimizer state stay fp32. bf16 has fp32's range, so no loss scaling is needed
//!   (fp16 would need it and is not offered). It works on the CPU too (slower, unless the
//!   CPU has bf16 units), which is how it is tested here.
//! - [`channels_last`] makes a 4-D tensor channels-last (NHWC memory, `[B, C, H, W]` sizes);
//!   a convolution whose weight is channels-last returns channels-last output, so converting
//!   the weights once ([`make_channels_last`]) puts a network in that format.
//!
//! tch 0.24 binds autocast's on/off switch only (CUDA, whose type is fp16); the type and
//! the per-device switch are libtorch's `at::autocast::{set_autocast_dtype,
//! set_autocast_enabled, ...}`, exported by `libtorch_cpu.so` and declared below by their
//! mangled names (plain functions of integer-sized enums and `bool`, so the C calling
//! convention is theirs).
use serde::{Deserialize, Serialize};
use tch::{nn::VarStore, Device, Tensor};

/// The floating-point type of a run's forward passes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Precision {
    /// Everything in fp32.
    #[default]
    Fp32,
    /// Forward passes (training steps and scoring) under autocast to bfloat16.
    Bf16,
}

/// `c10::DeviceType` values.
const DEVICE_CPU: i8 = 0;
const DEVICE_CUDA: i8 = 1;
/// `c10::ScalarType::BFloat16`.
const SCALAR_BF16: i8 = 15;

mod ffi {
    unsafe extern "C" {
        #[link_name = "_ZN2at8autocast20set_autocast_enabledEN3c1010DeviceTypeEb"]
        pub fn set_autocast_enabled(device_type: i8, enabled: bool);
        #[link_name = "_ZN2at8autocast19is_autocast_enabledEN3c1010DeviceTypeE"]
        pub fn is_autocast_enabled(device_type: i8) -> bool;
        #[link_name = "_ZN2at8autocast18set_autocast_dtypeEN3c1010DeviceTypeENS1_10ScalarTypeE"]
        pub fn set_autocast_dtype(device_type: i8, dtype: i8);
        #[link_name = "_ZN2at8autocast18get_autocast_dtypeEN3c1010DeviceTypeE"]
        pub fn get_autocast_dtype(device_type: i8) -> i8;
        #[link_name = "_ZN2at8autocast17increment_nestingEv"]
        pub fn increment_nesting() -> i32;
        #[link_name = "_ZN2at8autocast17decrement_nestingEv"]
        pub fn decrement_nesting() -> i32;
        #[link_name = "_ZN2at8autocast11clear_cacheEv"]
        pub fn clear_cache();
    }
}

/// Restores the autocast state of a device type on drop (also when `f` panics).
struct AutocastGuard {
    device_type: i8,
    was_enabled: bool,
    was_dtype: i8,
}

impl Drop for AutocastGuard {
    fn drop(&mut self) {
        // SAFETY: plain setters of libtorch's thread-local autocast state.
        unsafe {
            if ffi::decrement_nesting() == 0 {
                ffi::clear_cache(); // the casted weights of this autocast region
            }
            ffi::set_autocast_enabled(self.device_type, self.was_enabled);
            ffi::set_autocast_dtype(self.device_type, self.was_dtype);
        }
    }
}

/// Runs `f` with autocast to `precision` on `device`'s type (`Fp32`: runs `f` as is). The
/// state is per thread, as in PyTorch, and restored afterwards; regions nest.
pub fn autocast<T>(device: Device, precision: Precision, f: impl FnOnce() -> T) -> T {
    if precision == Precision::Fp32 {
        return f();
    }
    autocast_region(device, true, f)
}

/// Runs `f` with autocast switched off on `device`'s type, inside an [`autocast`] region
/// too (`torch.autocast(device_type, enabled=False)`): for computations whose result bf16
/// would change, such as a nearest-neighbour search by expanded squared distances.
pub fn full_precision<T>(device: Device, f: impl FnOnce() -> T) -> T {
    autocast_region(device, false, f)
}

/// `f` in an autocast region of `device`'s type, enabled (to bf16) or not.
fn autocast_region<T>(device: Device, enabled: bool, f: impl FnOnce() -> T) -> T {
    let device_type = if device.is_cuda() {
        DEVICE_CUDA
    } else {
        DEVICE_CPU
    };
    // SAFETY: plain getters and setters of libtorch's thread-local autocast state.
    let _guard = unsafe {
        let guard = AutocastGuard {
            device_type,
            was_enabled: ffi::is_autocast_enabled(device_type),
            was_dtype: ffi::get_autocast_dtype(device_type),
        };
        if enabled {
            ffi::set_autocast_dtype(device_type, SCALAR_BF16);
        }
        ffi::set_autocast_enabled(device_type, enabled);
        ffi::increment_nesting();
        guard
    };
    f()
}

/// `t` `[B, C, H, W]` with NHWC memory (the same values and sizes); other ranks unchanged.
pub fn channels_last(t: &Tensor) -> Tensor {
    if t.dim() != 4 {
        return t.shallow_clone();
    }
    t.permute([0, 2, 3, 1]).contiguous().permute([0, 3, 1, 2])
}

/// Whether `t` is a 4-D tensor laid out channels-last: its NHWC view is contiguous (strides
/// of size-1 dimensions do not matter, so a 1x1 kernel can be both layouts at once).
pub fn is_channels_last(t: &Tensor) -> bool {
    t.dim() == 4 && t.permute([0, 2, 3, 1]).is_contiguous()
}

/// Converts every 4-D variable of `vs` (convolution weights) to channels-last memory, in
/// place: the optimizer and checkpoints see the same variables.
pub fn make_channels_last(vs: &VarStore) {
    tch::no_grad(|| {
        for (_, mut var) in vs.variables() {
            if var.dim() == 4 && !is_channels_last(&var) {
                var.set_data(&channels_last(&var));
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::Kind;

    fn conv_output(x: &Tensor, w: &Tensor) -> Tensor {
        x.conv2d(w, None::<Tensor>, [1, 1], [1, 1], [1, 1], 1)
    }

    #[test]
    fn bf16_autocast_runs_convolutions_in_bf16_and_restores_the_state() {
        let x = Tensor::randn([2, 3, 8, 8], (Kind::Float, Device::Cpu));
        let w = Tensor::randn([4, 3, 3, 3], (Kind::Float, Device::Cpu));
        let fp32 = conv_output(&x, &w);
        let (inside, nested, after_nested) = autocast(Device::Cpu, Precision::Bf16, || {
            let nested = autocast(Device::Cpu, Precision::Bf16, || conv_output(&x, &w).kind());
            (conv_output(&x, &w), nested, x.matmul(&x).kind())
        });
        assert_eq!(
            (inside.kind(), nested, after_nested),
            (Kind::BFloat16, Kind::BFloat16, Kind::BFloat16)
        );
        let err = (inside.to_kind(Kind::Float) - &fp32)
            .abs()
            .max()
            .double_value(&[]);
        let scale = fp32.abs().max().double_value(&[]);
        assert!(
            err < 0.02 * scale,
            "bf16 result off by {err} (scale {scale})"
        );
        // Off again afterwards, inner regions leaving the outer one on.
        assert_eq!(conv_output(&x, &w).kind(), Kind::Float);
        // SAFETY: a getter.
        assert!(!unsafe { ffi::is_autocast_enabled(DEVICE_CPU) });
        assert_eq!(
            autocast(Device::Cpu, Precision::Fp32, || conv_output(&x, &w).kind()),
            Kind::Float
        );
    }

    #[test]
    fn full_precision_switches_an_autocast_region_off_for_its_closure() {
        let x = Tensor::randn([4, 4], (Kind::Float, Device::Cpu));
        let kinds = autocast(Device::Cpu, Precision::Bf16, || {
            let off = full_precision(Device::Cpu, || x.matmul(&x).kind());
            (off, x.matmul(&x).kind())
        });
        assert_eq!(
            kinds,
            (Kind::Float, Kind::BFloat16),
            "off inside, on again after"
        );
        // SAFETY: a getter.
        assert!(!unsafe { ffi::is_autocast_enabled(DEVICE_CPU) });
    }

    #[test]
    fn autocast_is_restored_after_a_panic() {
        let caught = std::panic::catch_unwind(|| {
            autocast(Device::Cpu, Precision::Bf16, || panic!("inside"));
        });
        assert!(caught.is_err());
        // SAFETY: a getter.
        assert!(!unsafe { ffi::is_autocast_enabled(DEVICE_CPU) });
    }

    #[test]
    fn channels_last_weights_give_channels_last_outputs_of_the_same_values() {
        let vs = VarStore::new(Device::Cpu);
        let conv = tch::nn::conv2d(vs.root(), 3, 4, 3, Default::default());
        let x = Tensor::randn([2, 3, 8, 8], (Kind::Float, Device::Cpu));
        let before = x.apply(&conv);
        make_channels_last(&vs);
        let after = x.apply(&conv);
        assert!(is_channels_last(&conv.ws) && is_channels_last(&after));
        assert!(!is_channels_last(&before));
        let diff = (after - before).abs().max().double_value(&[]);
        assert!(diff < 1e-5, "{diff}");
    }
}
