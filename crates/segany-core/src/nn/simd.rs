//! Run-time selection of an AVX2/FMA build of a slice loop.

/// Defines `$vis fn $name(xs: &mut [f32])` running `$body(xs)`: on x86-64 CPUs with AVX2 and
/// FMA (detected at run time) in a copy compiled for those features, elsewhere in the baseline
/// build. `$body` should be `#[inline(always)]` so that each copy gets its own code.
macro_rules! avx2_dispatch {
    ($(#[$meta:meta])* $vis:vis fn $name:ident => $body:ident) => {
        $(#[$meta])*
        $vis fn $name(xs: &mut [f32]) {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx2,fma")]
                unsafe fn wide(xs: &mut [f32]) {
                    $body(xs)
                }
                if std::arch::is_x86_feature_detected!("avx2")
                    && std::arch::is_x86_feature_detected!("fma")
                {
                    // SAFETY: the CPU supports the features `wide` is compiled for (checked
                    // just above).
                    unsafe { wide(xs) };
                    return;
                }
            }
            $body(xs)
        }
    };
}

pub(crate) use avx2_dispatch;
