//! The layer norm's statistics of an image-to-token step whose image tokens stay factored.
//!
//! The factored path keeps of an image-to-token step only its record ([`ImageUpdate`]): the
//! probabilities and, per prompt and image token, the mean and `1/sqrt(var + eps)` of the
//! norm's input `y = keys + A·U + b`. Those two numbers need neither the tokens nor `A·U`.
//! With `keys = c·s + Ã·R` ([`LowRankKeys`] over the shared image, `s = x·diag(G)`; the first
//! block has `c = 1`, `s = x` and no `R`), `y = c·s + β·B` for the prompt's basis
//! `B = [R; U; b]` (`K` rows) and the token's coefficients `β = [Ã, A, 1]`. With `s̄ = s −
//! mean(s)` and `B̄` the rows of `B` less their own means:
//!
//! * `mean(y) = c·mean(s) + β·mean(B)`,
//! * `D·var(y) = |y − mean(y)|² = c²·|s̄|² + 2c·β·(B·s̄) + β·(B̄·B̄ᵀ)·βᵀ`.
//!
//! Every term is centred before it is squared (no `E[y²] − mean²`). `B·s̄` needs no product
//! per prompt with the image: the rows of `B` from a block's `U` are `v_h·W_o,hᵀ` (times
//! gains), so `B·s̄ = v_h·(W_o,hᵀ·s̄)` with the bracket projected once per batch; the bias,
//! gain and shift rows are the same for every prompt. Per prompt and image token that is
//! `K²` multiply-adds for the Gram form and `heads·Nt·c` per block for the cross terms,
//! against `heads·Nt·D` for `A·U`, a pass of the norm over the token, and (for blocks before
//! the last) writing and reading back the 4,096 × 256 tokens per prompt.

use super::low_rank::Projector;
use super::LowRankKeys;
use candle_core::{bail, Result};
use segany_core::nn::{dot, matmul_few_rows_into, matmul_into, MatRef, Scratch};

/// What every prompt of a batch shares for one block's norm statistics.
pub(crate) struct NormStats<'a> {
    /// The earlier blocks' updates, and their basis projected through `s̄` (`None`: the first
    /// block, whose tokens are the shared image itself).
    prev: Option<(LowRankKeys<'a>, Projector<'a>)>,
    n: usize,
    d: usize,
    h: usize,
    c: usize,
    nt: usize,
    /// Per image token: `mean(s)` and `|s̄|²`.
    mean_s: Vec<f32>,
    ss: Vec<f32>,
    /// Per head `W_o,hᵀ·s̄ᵀ`, `(heads, c, N)`.
    wos: Vec<f32>,
    /// Per image token `b·s̄`.
    bs: Vec<f32>,
    bias: Vec<f32>,
    eps: f32,
}

/// The Gram form `β·M·βᵀ` runs in this many diagonal blocks of `M`: each block's rows times
/// the coefficients from that block on, with the blocks right of the diagonal doubled and
/// those left of it skipped. Three blocks multiply 2/3 of `M`, against all of it in one.
const GRAM_BLOCKS: usize = 3;

/// Where diagonal block `i` of a `K × K` Gram matrix starts.
fn block_start(i: usize, k: usize) -> usize {
    i * k / GRAM_BLOCKS
}

/// One prompt's part: `mean(B)` per basis row and the Gram matrix `B̄·B̄ᵀ (K, K)`, with the
/// blocks right of its diagonal blocks doubled (those left of them are not read).
pub(crate) struct PromptStats {
    mean_b: Vec<f32>,
    gram: Vec<f32>,
}

impl<'a> NormStats<'a> {
    /// For a block with `out_proj` weight `wo (D, heads·c)` and bias `bias (D)`, `nt` tokens
    /// per prompt and norm epsilon `eps`, reading the shared image `x (N, D)` through the
    /// earlier blocks' updates `prev`.
    pub(crate) fn new(
        x: &[f32],
        prev: Option<LowRankKeys<'a>>,
        (wo, bias): (&[f32], &[f32]),
        (h, nt): (usize, usize),
        eps: f64,
    ) -> Result<Self> {
        let d = bias.len();
        let di = wo.len() / d.max(1);
        let n = x.len() / d.max(1);
        if d == 0 || h == 0 || wo.len() != d * di || di % h != 0 || x.len() != n * d {
            bail!(
                "norm statistics: image of {} values, out_proj of {}, width {d}, {h} heads",
                x.len(),
                wo.len()
            )
        }
        if let Some(p) = &prev {
            if (p.tokens(), p.width()) != (n, d) {
                bail!(
                    "norm statistics: earlier updates of {} tokens × {} for an image of \
                     {n} × {d}",
                    p.tokens(),
                    p.width()
                )
            }
        }
        let c = di / h;
        let g = match &prev {
            Some(p) => p.gain(),
            None => vec![1f32; d],
        };
        let (mut sbar, mut mean_s, mut ss) = (vec![0f32; n * d], vec![0f32; n], vec![0f32; n]);
        for (((row, xr), m), q) in sbar
            .chunks_mut(d)
            .zip(x.chunks(d))
            .zip(&mut mean_s)
            .zip(&mut ss)
        {
            for ((v, x), g) in row.iter_mut().zip(xr).zip(&g) {
                *v = x * g;
            }
            *m = row.iter().sum::<f32>() / d as f32;
            for v in row.iter_mut() {
                *v -= *m;
            }
            *q = dot(row, row);
        }
        // W_oᵀ·s̄ᵀ, (heads·c × N): head hh's rows are W_o,hᵀ·s̄ᵀ. One product for all heads
        // (gemm packs s̄ once, not once per head).
        let mut wos = vec![0f32; h * c * n];
        let st = MatRef::row_major(&sbar, n, d)?.t();
        matmul_into(
            &mut wos,
            n,
            MatRef::row_major(wo, d, di)?.t(),
            st,
            1.0,
            true,
        )?;
        let bs = sbar.chunks(d).map(|row| dot(bias, row)).collect();
        let prev = match prev {
            Some(p) => Some((p, p.projector(&sbar)?)),
            None => None,
        };
        Ok(Self {
            prev,
            n,
            d,
            h,
            c,
            nt,
            mean_s,
            ss,
            wos,
            bs,
            bias: bias.to_vec(),
            eps: eps as f32,
        })
    }

    fn prev_rank(&self) -> usize {
        self.prev.as_ref().map_or(0, |(p, _)| p.rank())
    }

    /// Basis rows `K`: the earlier blocks', this block's `heads·Nt` and its bias.
    fn rank(&self) -> usize {
        self.prev_rank() + self.h * self.nt + 1
    }

    /// Prompt `bb`'s part, for its values through `out_proj`, `u (heads·Nt, D)`.
    pub(crate) fn prompt(&self, bb: usize, u: &[f32]) -> Result<PromptStats> {
        let (d, k) = (self.d, self.rank());
        if u.len() != self.h * self.nt * d {
            bail!("norm statistics: {} update values for prompt {bb}", u.len())
        }
        let mut b = Vec::with_capacity(k * d);
        if let Some((p, _)) = &self.prev {
            b.extend(p.basis(bb));
        }
        b.extend_from_slice(u);
        b.extend_from_slice(&self.bias);
        let mut mean_b = vec![0f32; k];
        for (row, m) in b.chunks_mut(d).zip(&mut mean_b) {
            *m = row.iter().sum::<f32>() / d as f32;
            for v in row.iter_mut() {
                *v -= *m;
            }
        }
        let mut gram = vec![0f32; k * k];
        let bm = MatRef::row_major(&b, k, d)?;
        matmul_into(&mut gram, k, bm, bm.t(), 1.0, false)?;
        for i in 0..GRAM_BLOCKS {
            let (r0, r1) = (block_start(i, k), block_start(i + 1, k));
            for row in gram[r0 * k..r1 * k].chunks_mut(k) {
                for v in &mut row[r1..] {
                    *v *= 2.0;
                }
            }
        }
        Ok(PromptStats { mean_b, gram })
    }

    /// The statistics of prompt `bb`'s image tokens `r0..r0 + rows` into `mean` and `inv`
    /// (`rows` values each), from its part `ps`, its token values `v (Nt, heads·c)` and this
    /// block's probabilities for those tokens, `probs (heads·Nt, rows)` with rows `ld` apart.
    /// Everything runs image-token-minor, `(K, rows)`, so that the per-token sums over the
    /// basis run across the tokens.
    #[inline(always)] // into the caller's vector-width build (`avx2_dispatch!`)
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn tile(
        &self,
        bb: usize,
        ps: &PromptStats,
        v: &[f32],
        r0: usize,
        (probs, ld): (&[f32], usize),
        mean: &mut [f32],
        inv: &mut [f32],
    ) -> Result<()> {
        let (h, c, nt, n) = (self.h, self.c, self.nt, self.n);
        let (hn, di, rp, k) = (h * nt, h * c, self.prev_rank(), self.rank());
        let rows = mean.len();
        if probs.len() < hn.saturating_sub(1) * ld + rows
            || inv.len() != rows
            || r0 + rows > n
            || v.len() != nt * di
        {
            bail!(
                "norm statistics: {} probabilities {ld} apart, {} and {} statistics, {} \
                 values, tokens {r0}.. of {n}",
                probs.len(),
                rows,
                inv.len(),
                v.len()
            )
        }
        // Rows of the (K, rows) matrices, padded: rows a power of two apart share cache sets.
        let lt = rows + 16;
        // βᵀ and c.
        let mut bt = Scratch::take(k * lt);
        let mut cl = Scratch::take(rows);
        match &self.prev {
            Some((p, _)) => p.coefficients_t(bb, r0, &mut bt, lt, &mut cl),
            None => cl.fill(1.0),
        }
        for j in 0..hn {
            bt[(rp + j) * lt..][..rows].copy_from_slice(&probs[j * ld..][..rows]);
        }
        bt[(k - 1) * lt..][..rows].fill(1.0);
        // (B·s̄)ᵀ for these tokens.
        let mut tt = Scratch::take(k * lt);
        if let Some((_, proj)) = &self.prev {
            proj.project_columns(bb, r0, rows, &mut tt, lt)?;
        }
        for hh in 0..h {
            matmul_few_rows_into(
                &mut tt[(rp + hh * nt) * lt..],
                lt,
                (&v[hh * c..], di),
                (&self.wos[hh * c * n + r0..], n),
                (nt, c, rows),
                1.0,
                false,
            )?;
        }
        tt[(k - 1) * lt..][..rows].copy_from_slice(&self.bs[r0..r0 + rows]);
        // (B̄·B̄ᵀ)·βᵀ by diagonal blocks (see `GRAM_BLOCKS`): Σ_j β_j·gt_j is the Gram form.
        let mut gt = Scratch::take(k * lt);
        for i in 0..GRAM_BLOCKS {
            let (r0, r1) = (block_start(i, k), block_start(i + 1, k));
            if r1 == r0 {
                continue;
            }
            matmul_into(
                &mut gt[r0 * lt..],
                lt,
                MatRef::new(&ps.gram[r0 * k + r0..], r1 - r0, k - r0, k, 1)?,
                MatRef::new(&bt[r0 * lt..], k - r0, rows, lt, 1)?,
                1.0,
                false,
            )?;
        }
        // Per token: the Gram form, the cross term and β·mean(B).
        let (mut quad, mut cross) = (Scratch::take(rows), Scratch::take(rows));
        quad.fill(0.0);
        cross.fill(0.0);
        mean.fill(0.0);
        for (j, mb) in ps.mean_b.iter().enumerate() {
            let (b, g, t) = (
                &bt[j * lt..][..rows],
                &gt[j * lt..][..rows],
                &tt[j * lt..][..rows],
            );
            for (((((q, x), m), b), g), t) in quad
                .iter_mut()
                .zip(cross.iter_mut())
                .zip(mean.iter_mut())
                .zip(b)
                .zip(g)
                .zip(t)
            {
                *q += b * g;
                *x += b * t;
                *m += b * mb;
            }
        }
        let d = self.d as f32;
        let shared = self.mean_s[r0..].iter().zip(&self.ss[r0..]);
        for (((((m, iv), cp), q), x), (ms, ss)) in mean
            .iter_mut()
            .zip(inv.iter_mut())
            .zip(cl.iter())
            .zip(quad.iter())
            .zip(cross.iter())
            .zip(shared)
        {
            *m += cp * ms;
            let var = (cp * cp * ss + 2.0 * cp * x + q) / d;
            *iv = 1.0 / (var.max(0.0) + self.eps).sqrt();
        }
        Ok(())
    }
}
