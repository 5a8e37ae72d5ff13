//! Test helpers shared by the TinyViT modules.

use candle_core::{DType, Device, Result, Tensor};
use candle_nn::{VarBuilder, VarMap};
use std::collections::HashMap;

/// Random tensors for whatever `build` reads, built once to learn the names: N(0, 0.5), with
/// BatchNorm variances in [0.5, 1.5).
pub(crate) fn random_tensors<M>(
    build: impl Fn(VarBuilder) -> Result<M>,
) -> HashMap<String, Tensor> {
    let varmap = VarMap::new();
    build(VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu)).expect("build");
    let data = varmap.data().lock().expect("varmap");
    data.iter()
        .map(|(k, v)| {
            let t = v.as_tensor();
            let r = if k.ends_with("running_var") {
                Tensor::rand(0.5f32, 1.5, t.shape(), &Device::Cpu)
            } else {
                Tensor::randn(0f32, 0.5, t.shape(), &Device::Cpu)
            };
            (k.clone(), r.expect("random"))
        })
        .collect()
}

/// `build` on `tensors` converted to `dtype`.
pub(crate) fn build_as<M>(
    tensors: &HashMap<String, Tensor>,
    dtype: DType,
    build: impl Fn(VarBuilder) -> Result<M>,
) -> Result<M> {
    let t = tensors
        .iter()
        .map(|(k, v)| Ok((k.clone(), v.to_dtype(dtype)?)))
        .collect::<Result<HashMap<_, _>>>()?;
    build(VarBuilder::from_tensors(t, dtype, &Device::Cpu))
}
