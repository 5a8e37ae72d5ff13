//! Softmax of attention logits plus decomposed relative positions, fused on the CPU.
//!
//! The reference computes `softmax(attn + rel_h[.., ⌊j/kw⌋] + rel_w[.., j mod kw])` over
//! `(B, N, kh·kw)` logits — for ViT-B's global blocks 12 × 4096 × 4096 values. Materialising the
//! biased logits costs a full extra pass over that tensor; here each row is biased (in the
//! reference's order: `(attn + rel_h) + rel_w`, f32) and normalised in one parallel pass. Other
//! devices and dtypes use the broadcast formulation.

use candle_core::{CpuStorage, CustomOp3, DType, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

struct RelPosSoftmax {
    kh: usize,
    kw: usize,
}

fn slice<'a>(s: &'a CpuStorage, l: &Layout, what: &str) -> Result<&'a [f32]> {
    match (s, l.contiguous_offsets()) {
        (CpuStorage::F32(v), Some((a, b))) => Ok(&v[a..b]),
        _ => candle_core::bail!("rel-pos softmax: {what} must be a contiguous f32 tensor"),
    }
}

impl CustomOp3 for RelPosSoftmax {
    fn name(&self) -> &'static str {
        "rel-pos-softmax"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (kh, kw) = (self.kh, self.kw);
        let m = kh * kw;
        let attn = slice(s1, l1, "attn")?;
        let rel_h = slice(s2, l2, "rel_h")?;
        let rel_w = slice(s3, l3, "rel_w")?;
        let rows = attn.len() / m.max(1);
        if attn.len() != rows * m || rel_h.len() != rows * kh || rel_w.len() != rows * kw {
            candle_core::bail!(
                "rel-pos softmax: inconsistent shapes {:?} {:?} {:?}",
                l1.dims(),
                l2.dims(),
                l3.dims()
            )
        }
        let mut dst = vec![0f32; attn.len()];
        dst.par_chunks_mut(m).enumerate().for_each(|(r, out)| {
            let a = &attn[r * m..(r + 1) * m];
            let rh = &rel_h[r * kh..(r + 1) * kh];
            let rw = &rel_w[r * kw..(r + 1) * kw];
            let mut max = f32::NEG_INFINITY;
            for (i, &h) in rh.iter().enumerate() {
                let (src, o) = (&a[i * kw..(i + 1) * kw], &mut out[i * kw..(i + 1) * kw]);
                for ((o, &x), &w) in o.iter_mut().zip(src).zip(rw) {
                    let v = (x + h) + w;
                    *o = v;
                    max = max.max(v);
                }
            }
            let mut sum = 0f32;
            for o in out.iter_mut() {
                *o = (*o - max).exp();
                sum += *o;
            }
            let inv = 1.0 / sum;
            for o in out.iter_mut() {
                *o *= inv;
            }
        });
        Ok((CpuStorage::F32(dst), l1.shape().clone()))
    }
}

/// `softmax(attn + rel_h ⊗ 1 + 1 ⊗ rel_w)` over the last dimension.
///
/// `attn`: `(B, N, kh·kw)`; `rel_h`: `(B, N, kh)`; `rel_w`: `(B, N, kw)`.
pub fn rel_pos_softmax(attn: &Tensor, rel_h: &Tensor, rel_w: &Tensor) -> Result<Tensor> {
    let (b, n, _) = attn.dims3()?;
    let kh = rel_h.dim(2)?;
    let kw = rel_w.dim(2)?;
    let cpu_f32 = attn.device().is_cpu()
        && [attn.dtype(), rel_h.dtype(), rel_w.dtype()]
            .iter()
            .all(|d| *d == DType::F32);
    if cpu_f32 {
        return attn.contiguous()?.apply_op3_no_bwd(
            &rel_h.contiguous()?,
            &rel_w.contiguous()?,
            &RelPosSoftmax { kh, kw },
        );
    }
    let biased = attn
        .reshape((b, n, kh, kw))?
        .broadcast_add(&rel_h.unsqueeze(3)?)?
        .broadcast_add(&rel_w.unsqueeze(2)?)?
        .reshape((b, n, kh * kw))?;
    segany_core::nn::softmax_last_dim(&biased)
}
