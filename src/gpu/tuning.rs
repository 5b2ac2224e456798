//! Per-adapter tuning of kernel shapes.

/// Each gemm invocation computes a TILE x TILE block of C (fixed in the WGSL).
pub(crate) const GEMM_TILE: u32 = 4;

/// The gemm workgroup shape (`WG_X` x `WG_Y` invocations, each a 4x4 tile of C), an
/// override constant: 8x8 from the matmul bench (BENCHMARKS.md); `WGPU_RNN_GEMM_WG=XxY`
/// overrides it.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct GemmWorkgroup {
    pub x: u32,
    pub y: u32,
}

impl std::fmt::Display for GemmWorkgroup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}x{}", self.x, self.y)
    }
}

impl GemmWorkgroup {
    pub(crate) fn for_device(limits: &wgpu::Limits) -> Self {
        let parsed = std::env::var("WGPU_RNN_GEMM_WG").ok().and_then(|v| {
            let (x, y) = v.split_once('x')?;
            Some(GemmWorkgroup {
                x: x.trim().parse().ok()?,
                y: y.trim().parse().ok()?,
            })
        });
        let fits = |w: &GemmWorkgroup| {
            w.x >= 1
                && w.y >= 1
                && w.x <= limits.max_compute_workgroup_size_x
                && w.y <= limits.max_compute_workgroup_size_y
                && w.x * w.y <= limits.max_compute_invocations_per_workgroup
        };
        if let Some(w) = parsed.filter(fits) {
            return w;
        }
        // Measured on lavapipe, every shape from 64x1 to 16x16 is within a few percent of
        // 8x8 (BENCHMARKS.md); no GPU has been measured, so it serves every adapter kind
        // until one is, and a per-kind choice would go here.
        GemmWorkgroup { x: 8, y: 8 }
    }
}
