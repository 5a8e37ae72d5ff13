//! Run-time selection of an AVX-512 or AVX2/FMA build of a slice loop.

/// Defines `$vis fn $name(args) -> ret` running `$body(args)`: on x86-64 CPUs with AVX-512F/VL
/// in a copy compiled for them (16-lane vectors, 32 registers), else with AVX2 and FMA in a
/// copy compiled for those (features detected at run time), elsewhere in the baseline build.
/// `$body` should be `#[inline(always)]` so that each copy gets its own code.
///
/// Exported for the model crates' own kernels (as `segany_core::avx2_dispatch!`).
#[macro_export]
macro_rules! avx2_dispatch {
    ($(#[$meta:meta])* $vis:vis fn $name:ident($($arg:ident: $ty:ty),* $(,)?) $(-> $ret:ty)? => $body:ident) => {
        $crate::avx2_dispatch! {
            $(#[$meta])* $vis fn $name($($arg: $ty),*) $(-> $ret)? => $body, baseline $body
        }
    };
    // `$body` in the AVX-512 and AVX2/FMA copies, `$base` in the baseline build: for loops
    // that use fused multiply-adds (`f32::mul_add`), which are one instruction where FMA is
    // available and a library call where it is not.
    ($(#[$meta:meta])* $vis:vis fn $name:ident($($arg:ident: $ty:ty),* $(,)?) $(-> $ret:ty)? => $body:expr, baseline $base:expr) => {
        $(#[$meta])*
        $vis fn $name($($arg: $ty),*) $(-> $ret)? {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx2,fma")]
                unsafe fn wide($($arg: $ty),*) $(-> $ret)? {
                    $body($($arg),*)
                }
                #[target_feature(enable = "avx512f,avx512vl,avx2,fma")]
                unsafe fn wide512($($arg: $ty),*) $(-> $ret)? {
                    $body($($arg),*)
                }
                if std::arch::is_x86_feature_detected!("avx512f")
                    && std::arch::is_x86_feature_detected!("avx512vl")
                {
                    // SAFETY: the CPU supports the features `wide512` is compiled for.
                    return unsafe { wide512($($arg),*) };
                }
                if std::arch::is_x86_feature_detected!("avx2")
                    && std::arch::is_x86_feature_detected!("fma")
                {
                    // SAFETY: the CPU supports the features `wide` is compiled for (checked
                    // just above).
                    return unsafe { wide($($arg),*) };
                }
            }
            $base($($arg),*)
        }
    };
}

pub(crate) use crate::avx2_dispatch;
