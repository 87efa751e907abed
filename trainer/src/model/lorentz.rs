//! The Lorentz (hyperboloid) model of hyperbolic space of curvature -c: points x in R^{d+1}
//! with <x, x>_L = -1/c and x0 > 0, where <u, v>_L = -u0 v0 + sum_i u_i v_i.

use candle_core::{D, Result, Tensor};
use std::borrow::Cow;

/// Tangent norms are clamped to this (in units of 1/sqrt(c)): cosh(15) ~ 1.6e6 keeps f32 precise.
const MAX_NORM: f64 = 15.0;

/// Minkowski inner product over the last dimension: [.., d+1] x [.., d+1] -> [..].
pub fn inner(u: &Tensor, v: &Tensor) -> Result<Tensor> {
    let d = u.dim(D::Minus1)?;
    let prod = u.broadcast_mul(v)?;
    let time = prod.narrow(D::Minus1, 0, 1)?.squeeze(D::Minus1)?;
    let space = prod.narrow(D::Minus1, 1, d - 1)?.sum(D::Minus1)?;
    space - time
}

/// The exponential map at the origin (1/sqrt(c), 0, ..., 0) of a tangent vector v [n, d]:
/// x0 = cosh(sqrt(c)|v|) / sqrt(c), x_rest = sinh(sqrt(c)|v|) v / (sqrt(c)|v|).
pub fn exp_map0(v: &Tensor, c: f64) -> Result<Tensor> {
    let sc = c.sqrt();
    // Clamped before the square root, so a zero vector gets a zero gradient, not 0/0.
    let norm = v.sqr()?.sum_keepdim(D::Minus1)?.clamp(1e-14, f64::MAX)?.sqrt()?;
    let theta = (norm.clamp(0.0, MAX_NORM / sc)? * sc)?;
    let (pos, neg) = (theta.exp()?, theta.neg()?.exp()?);
    let x0 = (((&pos + &neg)? / 2.0)? / sc)?;
    let rest = v.broadcast_mul(&(sinhc(&theta, &pos, &neg)?.broadcast_mul(&theta)? / sc)?.broadcast_div(&norm)?)?;
    Tensor::cat(&[&x0, &rest], D::Minus1)
}

/// sinh(t) / t from e^t and e^-t, by its Taylor series below 1e-2 where the difference of
/// exponentials cancels in f32.
fn sinhc(t: &Tensor, pos: &Tensor, neg: &Tensor) -> Result<Tensor> {
    let exact = ((pos - neg)? / 2.0)?.broadcast_div(&t.clamp(1e-7, f64::MAX)?)?;
    let taylor = ((t.sqr()? / 6.0)? + 1.0)?;
    t.lt(1e-2)?.where_cond(&taylor, &exact)
}

/// The inverse of [`exp_map0`] for points produced by it: the tangent vector at the origin.
pub fn log_map0(x: &Tensor, c: f64) -> Result<Tensor> {
    let sc = c.sqrt();
    let d = x.dim(D::Minus1)?;
    let rest = x.narrow(D::Minus1, 1, d - 1)?;
    let x0 = x.narrow(D::Minus1, 0, 1)?;
    let theta = acosh_1p(&((x0 * sc)? - 1.0)?.clamp(0.0, f64::MAX)?)?;
    let rest_norm = rest.sqr()?.sum_keepdim(D::Minus1)?.clamp(1e-24, f64::MAX)?.sqrt()?;
    rest.broadcast_mul(&(theta / sc)?.broadcast_div(&rest_norm)?)
}

/// acosh(1 + w) = ln(1 + w + sqrt(w (w + 2))), exact near w = 0 where acosh(z) loses precision.
/// w is clamped at 1e-12 so that the gradient stays finite (and is 0 below the clamp).
fn acosh_1p(w: &Tensor) -> Result<Tensor> {
    let w = w.clamp(1e-12, f64::MAX)?;
    let root = (&w * (&w + 2.0)?)?.sqrt()?;
    ((w + 1.0)? + root)?.log()
}

/// Geodesic distance d(u, v) = acosh(-c <u, v>_L) / sqrt(c), computed stably in f32 as
/// acosh(1 + c |u - v|_L^2 / 2) (the same quantity on the hyperboloid, without the cancellation
/// of -c <u, v>_L ~ 1 for nearby points). d(x, x) ~ 1e-6 and its gradient is 0, never NaN.
pub fn distance(u: &Tensor, v: &Tensor, c: f64) -> Result<Tensor> {
    let diff = u.broadcast_sub(v)?;
    let sq = inner(&diff, &diff)?;
    acosh_1p(&(sq * (c / 2.0))?)? / c.sqrt()
}

/// Every distance [a, b] between the points u [a, d+1] and v [b, d+1], by one matrix product:
/// acosh(-c <u, v>_L) / sqrt(c). The product cancels for nearly equal points, so this serves
/// losses and rankings over many pairs; `distance` is the precise one.
pub fn pairwise(u: &Tensor, v: &Tensor, c: f64) -> Result<Tensor> {
    let d = u.dim(D::Minus1)?;
    let flipped = Tensor::cat(&[&u.narrow(1, 0, 1)?.neg()?, &u.narrow(1, 1, d - 1)?], 1)?;
    let inner = super::kernels::matmul(&flipped, &v.t()?.contiguous()?)?;
    acosh_1p(&((inner * -c)? - 1.0)?)? / c.sqrt()
}

/// Poincare-ball coordinates of hyperboloid points: x_rest / (1 + sqrt(c) x0).
pub fn to_poincare(x: &Tensor, c: f64) -> Result<Tensor> {
    let d = x.dim(D::Minus1)?;
    let x0 = x.narrow(D::Minus1, 0, 1)?;
    x.narrow(D::Minus1, 1, d - 1)?.broadcast_div(&((x0 * c.sqrt())? + 1.0)?)
}

/// Lorentz distances [q, t] from the points `queries` to the points `targets`: see [`Targets`].
pub fn distance_rows(queries: &Tensor, targets: &Tensor, c: f64) -> Result<Vec<Vec<f32>>> {
    Targets::new(targets)?.distances(queries, c)
}

/// Points that distances are measured to: rows of `width` f32 values, which every call reads in
/// place (the coder's leaves: read where they lie in the points cache's memory map; a 200,000-code
/// tree's are 86 MB).
pub struct Targets<'a> {
    values: Cow<'a, [f32]>,
    width: usize,
}

impl Targets<'static> {
    /// The rows of a tensor [t, d + 1] (a copy).
    pub fn new(points: &Tensor) -> Result<Targets<'static>> {
        let points = points
            .to_device(&candle_core::Device::Cpu)?
            .to_dtype(candle_core::DType::F32)?;
        Ok(Targets {
            width: points.dim(1)?,
            values: Cow::Owned(points.flatten_all()?.to_vec1()?),
        })
    }
}

impl<'a> Targets<'a> {
    /// Rows of `width` values, read where they lie (a table mapped from its file).
    pub fn in_place(values: &'a [f32], width: usize) -> Targets<'a> {
        Targets {
            values: Cow::Borrowed(values),
            width,
        }
    }

    /// Distances [q, t] from the points `queries`, by the precise formula of [`distance`] (the
    /// squared Lorentz norm of the difference), pair by pair: no [q, t, d+1] tensor of
    /// differences is made, which for the coder's thousands of texts against a thousand codes
    /// cost more than the encoder. Blocks of queries run in parallel, and so do spans of the
    /// targets (a server's one query takes both cores). A block reads its span a cache-sized
    /// tile at a time, so that the targets (37 MB on ICD-10-CM) come from memory once per block,
    /// not once per query; and each target row is measured against a group of queries at once
    /// ([`lane_sums_avx`]).
    pub fn distances(&self, queries: &Tensor, c: f64) -> Result<Vec<Vec<f32>>> {
        use rayon::prelude::*;
        const QUERY_BLOCK: usize = 32;
        const SPAN_ROWS: usize = 4096;
        let queries = queries.to_dtype(candle_core::DType::F32)?.to_vec2::<f32>()?;
        let c = [(c / 2.0) as f32, c.sqrt() as f32];
        let avx = super::kernels::isa() >= super::kernels::Isa::Avx2;
        let (values, width) = (&self.values[..], self.width.max(1));
        let n = values.len() / width;
        Ok(queries
            .par_chunks(QUERY_BLOCK)
            .flat_map_iter(|block| {
                let spans: Vec<Vec<Vec<f32>>> = values
                    .par_chunks(SPAN_ROWS * width)
                    .map(|span| span_distances(block, span, width, c, avx))
                    .collect();
                (0..block.len()).map(move |q| {
                    let mut row = Vec::with_capacity(n);
                    for span in &spans {
                        row.extend_from_slice(&span[q]);
                    }
                    row
                })
            })
            .collect())
    }
}

/// The distances [block, span rows] from a block of queries to a span of targets (rows of
/// `width`), a tile at a time, a group of queries against each row; `c` holds c / 2 and sqrt(c),
/// `avx` whether the CPU has AVX2 (kernels::isa).
fn span_distances(block: &[Vec<f32>], span: &[f32], width: usize, c: [f32; 2], avx: bool) -> Vec<Vec<f32>> {
    const TILE_ROWS: usize = 256;
    let mut rows: Vec<Vec<f32>> = block.iter().map(|_| Vec::with_capacity(span.len() / width)).collect();
    for tile in span.chunks(TILE_ROWS * width) {
        // Groups of four, then the rest in groups of two and one: no sums of padding (groups of
        // eight ran out of AVX registers and were 2 % slower).
        let mut done = 0;
        for group in [4, 2, 1] {
            while block.len() - done >= group {
                let (queries, out) = (&block[done..done + group], &mut rows[done..done + group]);
                match group {
                    4 => measure::<4>(queries, tile, width, out, c, avx),
                    2 => measure::<2>(queries, tile, width, out, c, avx),
                    _ => measure::<1>(queries, tile, width, out, c, avx),
                }
                done += group;
            }
        }
    }
    rows
}

/// The distances from `G` queries to each row of `tile`, pushed onto their rows.
fn measure<const G: usize>(
    queries: &[Vec<f32>],
    tile: &[f32],
    width: usize,
    rows: &mut [Vec<f32>],
    c: [f32; 2],
    avx: bool,
) {
    let us: [&[f32]; G] = std::array::from_fn(|q| queries[q].as_slice());
    #[cfg(target_arch = "x86_64")]
    if avx {
        // SAFETY: `avx` is set only where the CPU has AVX2 (kernels::isa).
        return unsafe { measure_avx(&us, tile, width, rows, c) };
    }
    let _ = avx;
    measure_with(&us, tile, width, rows, c, lane_sums);
}

/// [`measure`] compiled for AVX, its lane sums inlined (a call per row: a sixth of their time).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx")]
fn measure_avx<const G: usize>(us: &[&[f32]; G], tile: &[f32], width: usize, rows: &mut [Vec<f32>], c: [f32; 2]) {
    measure_with(us, tile, width, rows, c, |us, vs, whole| lane_sums_avx(us, vs, whole));
}

/// The distances from the queries `us` to each row of `tile`, from `sums`' lane sums; `c` holds
/// c / 2 and sqrt(c).
#[inline(always)]
fn measure_with<const G: usize>(
    us: &[&[f32]; G],
    tile: &[f32],
    width: usize,
    rows: &mut [Vec<f32>],
    [half_c, sc]: [f32; 2],
    sums: impl Fn(&[&[f32]; G], &[f32], usize) -> [[f32; LANES]; G],
) {
    for v in tile.chunks_exact(width) {
        let vs = &v[1..];
        let whole = vs.len() / LANES * LANES;
        let lanes = sums(us, vs, whole);
        for (q, row) in rows.iter_mut().enumerate() {
            let u = us[q];
            let mut space: f32 = lanes[q].iter().sum();
            for (a, b) in u[1 + whole..].iter().zip(&vs[whole..]) {
                space += (a - b) * (a - b);
            }
            let time = u[0] - v[0];
            // <u - v, u - v>_L, then acosh(1 + w) as acosh_1p computes it, w clamped the same way.
            let w = ((space - time * time) * half_c).max(1e-12);
            row.push(((w + 1.0) + (w * (w + 2.0)).sqrt()).ln() / sc);
        }
    }
}

/// The lanes of each sum of squares: one AVX register, and the same on every path, so that each
/// path sums in the same order and gives the same distances.
const LANES: usize = 8;

/// Each query's eight lane sums of (u_i - v_i)^2 over the first `whole` space coordinates.
fn lane_sums<const G: usize>(us: &[&[f32]; G], vs: &[f32], whole: usize) -> [[f32; LANES]; G] {
    std::array::from_fn(|q| {
        let mut lanes = [0f32; LANES];
        for (a, b) in us[q][1..1 + whole]
            .chunks_exact(LANES)
            .zip(vs[..whole].chunks_exact(LANES))
        {
            for k in 0..LANES {
                let d = a[k] - b[k];
                lanes[k] += d * d;
            }
        }
        lanes
    })
}

/// [`lane_sums`] with the group's sums side by side in AVX registers, the same operations lane
/// by lane (subtract, multiply, add; no fused multiply-add), so the same sums. One query at a
/// time waits on its own additions (three quarters of `classify`'s distance time on
/// ICD-10-CM); the group's independent sums keep the vector unit busy. Written with
/// intrinsics: the compiler kept the plain loop's interleaved sums in memory, a lane at a time.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx")]
#[inline]
fn lane_sums_avx<const G: usize>(us: &[&[f32]; G], vs: &[f32], whole: usize) -> [[f32; LANES]; G] {
    use std::arch::x86_64::*;
    assert!(whole.is_multiple_of(LANES) && whole <= vs.len() && us.iter().all(|u| u.len() > whole));
    let mut sums = [_mm256_setzero_ps(); G];
    for i in (0..whole).step_by(LANES) {
        // SAFETY: i + 8 <= whole <= vs.len(), and 1 + i + 8 <= u.len() (asserted above).
        let b = unsafe { _mm256_loadu_ps(vs.as_ptr().add(i)) };
        for q in 0..G {
            // SAFETY: as above.
            let a = unsafe { _mm256_loadu_ps(us[q].as_ptr().add(1 + i)) };
            let d = _mm256_sub_ps(a, b);
            sums[q] = _mm256_add_ps(sums[q], _mm256_mul_ps(d, d));
        }
    }
    std::array::from_fn(|q| {
        let mut lanes = [0f32; LANES];
        // SAFETY: `lanes` holds eight f32.
        unsafe { _mm256_storeu_ps(lanes.as_mut_ptr(), sums[q]) };
        lanes
    })
}

/// The m x m Lorentz distance matrix among the rows `rows` of `points`, row-major.
pub fn distance_matrix(points: &Tensor, rows: &[usize], c: f64) -> Result<Vec<f64>> {
    let points = super::select_rows(points, rows)?;
    Ok(distance_rows(&points, &points, c)?
        .into_iter()
        .flatten()
        .map(|d| d as f64)
        .collect())
}
