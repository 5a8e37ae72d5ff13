//! A `VarBuilder` backend that serves canonical (OpenAI) names out of any [`Layout`].

use candle_core::{DType, Device, Result, Shape, Tensor};
use candle_nn::var_builder::SimpleBackend;
use candle_nn::VarBuilder;

use crate::layout::{Layout, Source};

/// Wraps a checkpoint `VarBuilder` and applies a layout's rename map on every lookup.
pub struct LayoutBackend<'a> {
    inner: VarBuilder<'a>,
    layout: Layout,
}

impl<'a> LayoutBackend<'a> {
    /// `inner` must point at the checkpoint root.
    pub fn new(inner: VarBuilder<'a>, layout: Layout) -> Self {
        Self { inner, layout }
    }

    fn has(&self, src: &Source) -> bool {
        match src {
            Source::Key(k) | Source::Transposed(k) => self.inner.contains_tensor(k),
            Source::Concat(ks) => ks.iter().all(|k| self.inner.contains_tensor(k)),
            Source::FirstOf(alts) => alts.iter().any(|s| self.has(s)),
        }
    }

    fn load(&self, src: &Source, dtype: DType, dev: &Device) -> Result<Tensor> {
        let get = |k: &str| self.inner.get_unchecked_dtype(k, dtype)?.to_device(dev);
        match src {
            Source::Key(k) => get(k),
            Source::Transposed(k) => get(k)?.t()?.contiguous(),
            Source::Concat(ks) => {
                let parts = ks.iter().map(|k| get(k)).collect::<Result<Vec<_>>>()?;
                Tensor::cat(&parts, 0)
            }
            Source::FirstOf(alts) => match alts.iter().find(|s| self.has(s)) {
                Some(s) => self.load(s, dtype, dev),
                None => Err(candle_core::Error::CannotFindTensor {
                    path: src.keys().join(" | "),
                }),
            },
        }
    }
}

/// Returns a `VarBuilder` over canonical names backed by a checkpoint in `layout`.
pub fn canonical_var_builder<'a>(inner: VarBuilder<'a>, layout: Layout) -> VarBuilder<'a> {
    let dtype = inner.dtype();
    let dev = inner.device().clone();
    VarBuilder::from_backend(Box::new(LayoutBackend::new(inner, layout)), dtype, dev)
}

impl SimpleBackend for LayoutBackend<'_> {
    fn get(
        &self,
        s: Shape,
        name: &str,
        _: candle_nn::Init,
        dtype: DType,
        dev: &Device,
    ) -> Result<Tensor> {
        let t = self.get_unchecked(name, dtype, dev)?;
        if t.shape() != &s {
            return Err(candle_core::Error::UnexpectedShape {
                msg: name.to_string(),
                expected: s,
                got: t.shape().clone(),
            });
        }
        Ok(t)
    }

    fn get_unchecked(&self, name: &str, dtype: DType, dev: &Device) -> Result<Tensor> {
        self.load(&self.layout.source(name), dtype, dev)
    }

    fn contains_tensor(&self, name: &str) -> bool {
        self.has(&self.layout.source(name))
    }
}
