//! Every gemm variant against an f64 product on the host: awkward sizes (1, 3, 17, 65,
//! 130: below, across and past every tile), both layouts of each operand, offsets, a C
//! row stride wider than N, and every epilogue; K long enough to be split.

use super::plan::{GemmSpec, Operand, PlanBuilder};
use super::{GemmTuning, Gpu, GpuOptions, GpuTensor};
use rand::{Rng, SeedableRng};

/// The variants a user can choose, at shapes that stress their edges.
pub(crate) const VARIANTS: [&str; 6] = [
    "register:8x8",
    "register:16x4",
    "tiled:64x64x16/split8",
    "tiled:32x32x8/split4",
    "tiled:16x64x4/split64",
    "tiled:64x16x32",
];

pub(crate) fn gpu_with(gemm: &str) -> Gpu {
    let tuning: GemmTuning = gemm.parse().unwrap();
    Gpu::with_options(&GpuOptions::from_env().with_gemm(tuning)).unwrap_or_else(|e| {
        panic!(
            "these tests need a working wgpu adapter; creating the GPU context failed: {e}\n\
             On a machine without a GPU run `sudo .ci/install-adapter` (installs Mesa's \
             lavapipe), or select one with WGPU_BACKEND / WGPU_ADAPTER_NAME."
        )
    })
}

struct Case {
    m: usize,
    n: usize,
    k: usize,
    a_transposed: bool,
    b_transposed: bool,
    bias: bool,
    accumulate: bool,
    /// Offsets and strides that are multiples of 4 (so the tiled kernel loads vec4s),
    /// strides padded past the matrix; else odd offsets and tight strides.
    aligned: bool,
}

/// Runs one case on `gpu`; returns the worst error over its allowance (≤ 1 passes) and
/// the C buffer. One function, over 100 lines: the layout of the case's operands, the
/// product, and the check of every element of C (and of what lies beside it) read as one
/// story, with the offsets and strides in view.
fn run(gpu: &Gpu, c: &Case, rng: &mut impl Rng) -> (f64, Vec<f32>) {
    let (m, n, k) = (c.m, c.n, c.k);
    let mut draw =
        |len: usize| -> Vec<f32> { (0..len).map(|_| rng.random_range(-1.0..1.0)).collect() };
    // Offsets, padded strides and a wider C row make any index slip read or write the
    // wrong values.
    let (c_off, bias_off, c_rs) = (7, 2, n + 3);
    let (a_off, b_off) = if c.aligned { (4, 8) } else { (3, 5) };
    let stride = |len: usize| {
        if c.aligned {
            len.next_multiple_of(4) + 4
        } else {
            len
        }
    };
    // A is (M, K): row-major with row stride a_ld, or stored transposed (K rows of a_ld).
    let a_ld = stride(if c.a_transposed { m } else { k });
    let b_ld = stride(if c.b_transposed { k } else { n });
    let a = draw(a_off + m.max(k) * a_ld);
    let b = draw(b_off + k.max(n) * b_ld);
    let c0 = draw(c_off + m * c_rs);
    let bias = draw(bias_off + n);
    // A(i,p), B(p,j) as the strides the operands are given with.
    let a_at = |i: usize, p: usize| {
        if c.a_transposed {
            a[a_off + p * a_ld + i]
        } else {
            a[a_off + i * a_ld + p]
        }
    };
    let b_at = |p: usize, j: usize| {
        if c.b_transposed {
            b[b_off + j * b_ld + p]
        } else {
            b[b_off + p * b_ld + j]
        }
    };

    let t = |data: &[f32]| GpuTensor::from_slice(gpu, &[data.len()], data).unwrap();
    let (ta, tb, tc, tbias) = (t(&a), t(&b), t(&c0), t(&bias));
    let a_op = if c.a_transposed {
        Operand {
            buf: ta.buffer(),
            off: a_off,
            rs: 1,
            cs: a_ld,
        }
    } else {
        Operand::rows(ta.buffer(), a_off, a_ld)
    };
    let b_op = if c.b_transposed {
        Operand {
            buf: tb.buffer(),
            off: b_off,
            rs: 1,
            cs: b_ld,
        }
    } else {
        Operand::rows(tb.buffer(), b_off, b_ld)
    };
    let mut spec = GemmSpec::new(m, n, k, a_op, b_op, Operand::rows(tc.buffer(), c_off, c_rs))
        .accumulate(c.accumulate);
    if c.bias {
        spec.bias = Some((tbias.buffer(), bias_off));
    }
    let mut plan = PlanBuilder::new(gpu);
    plan.gemm(spec).unwrap();
    let plan = plan.finish().unwrap();
    let mut rec = super::Recorder::new(gpu, "gemm test");
    rec.plans(&[&plan]).unwrap();
    rec.submit().unwrap();
    let got = tc.download().unwrap();

    let mut worst = 0.0f64;
    for i in 0..m {
        for j in 0..c_rs {
            let at = c_off + i * c_rs + j;
            if j >= n {
                assert_eq!(got[at], c0[at], "wrote outside C at ({i},{j})");
                continue;
            }
            let (mut want, mut scale) = (0.0f64, 0.0f64);
            for p in 0..k {
                let v = a_at(i, p) as f64 * b_at(p, j) as f64;
                want += v;
                scale += v.abs();
            }
            for extra in [(c.bias, bias[bias_off + j]), (c.accumulate, c0[at])] {
                if extra.0 {
                    want += extra.1 as f64;
                    scale += (extra.1 as f64).abs();
                }
            }
            let allowance = 4.0 * (k as f64 + 2.0) * f32::EPSILON as f64 * scale + 1e-7;
            let err = (got[at] as f64 - want).abs() / allowance;
            assert!(err.is_finite(), "non-finite result at ({i},{j})");
            worst = worst.max(err);
        }
    }
    // Nothing before C or after its last row moved.
    assert_eq!(got[..c_off], c0[..c_off]);
    (worst, got)
}

#[test]
fn every_gemm_variant_matches_the_host_product_at_awkward_shapes() {
    let sizes = [
        (1, 1, 1),
        (3, 17, 5),
        (17, 3, 65),
        (65, 130, 17),
        (130, 65, 3),
        (1, 130, 600),
        (65, 17, 1030),
        (3, 3, 0),
        (64, 36, 20),
        (6, 70, 260),
    ];
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(11);
    for variant in VARIANTS {
        let gpu = gpu_with(variant);
        for (index, &(m, n, k)) in sizes.iter().enumerate() {
            // Every layout (both operands' orientations, aligned or not) at every size;
            // the epilogue turns with the size, so each (layout, epilogue) pair runs at
            // two sizes or more.
            for layout in 0..8 {
                let epilogue = (layout + index) % 4;
                let case = Case {
                    aligned: layout & 4 == 4,
                    m,
                    n,
                    k,
                    a_transposed: layout & 1 == 1,
                    b_transposed: layout & 2 == 2,
                    bias: epilogue & 1 == 1,
                    accumulate: epilogue & 2 == 2,
                };
                let (worst, _) = run(&gpu, &case, &mut rng);
                assert!(
                    worst <= 1.0,
                    "{variant}: m {m} n {n} k {k} layout {layout} epilogue {epilogue}: \
                     error {worst:.2} x the allowance"
                );
            }
        }
    }
}

#[test]
fn split_k_is_used_and_deterministic() {
    let gpu = gpu_with("tiled:32x32x8/split4");
    assert_eq!(gpu.gemm().splits(65, 17, 1030), 4);
    let case = Case {
        m: 65,
        n: 17,
        k: 1030,
        a_transposed: true,
        b_transposed: false,
        bias: true,
        accumulate: true,
        aligned: true,
    };
    let (worst, first) = run(&gpu, &case, &mut rand_chacha::ChaCha8Rng::seed_from_u64(5));
    assert!(worst <= 1.0);
    let (_, second) = run(&gpu, &case, &mut rand_chacha::ChaCha8Rng::seed_from_u64(5));
    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    assert_eq!(bits(&first), bits(&second));
}

#[test]
fn a_gemm_choice_that_does_not_fit_the_device_is_refused() {
    let huge: GemmTuning = "tiled:256x256x64".parse().unwrap();
    let e = Gpu::with_options(&GpuOptions::from_env().with_gemm(huge)).unwrap_err();
    assert!(e.to_string().contains("cannot run on this device"), "{e}");
}
