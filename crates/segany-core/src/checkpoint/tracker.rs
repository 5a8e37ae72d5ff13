//! A `VarBuilder` over a [`TensorStore`] that records which tensors the model asked for, so
//! that loading can report *all* missing, mis-shaped and unexpected tensors by name.

use super::TensorStore;
use crate::{Error, Result, ShapeMismatch};
use candle_core::{DType, Device, Shape, Tensor};
use candle_nn::var_builder::SimpleBackend;
use candle_nn::VarBuilder;
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, PoisonError};

#[derive(Default)]
struct Record {
    used: HashSet<String>,
    missing: Vec<String>,
    mismatched: Vec<ShapeMismatch>,
}

struct Tracker {
    /// Every stored tensor's name.
    names: HashSet<String>,
    /// The stored tensors the model has not taken yet. A tensor leaves the map when the model
    /// takes it, so that a layer that converts its weight (e.g. `Linear` storing it
    /// transposed) frees the original while loading goes on, instead of the store keeping
    /// every original alive until the model is complete.
    tensors: Mutex<HashMap<String, Tensor>>,
    record: Mutex<Record>,
}

impl Tracker {
    fn with<R>(&self, f: impl FnOnce(&mut Record) -> R) -> R {
        let mut guard = self.record.lock().unwrap_or_else(PoisonError::into_inner);
        f(&mut guard)
    }

    /// Takes the stored tensor `name` if its shape is `shape` (any shape when `None`).
    /// `Ok(None)`: not stored; stored with another shape: a clone, the tensor left in place;
    /// an error when the model took it before.
    fn take(&self, name: &str, shape: Option<&Shape>) -> candle_core::Result<Option<Tensor>> {
        let mut map = self.tensors.lock().unwrap_or_else(PoisonError::into_inner);
        match map.get(name) {
            Some(t) if shape.is_some_and(|s| t.shape() != s) => Ok(Some(t.clone())),
            Some(_) => Ok(map.remove(name)),
            None if self.names.contains(name) => {
                candle_core::bail!(
                    "tensor {name} was requested twice (weights shared between layers)"
                )
            }
            None => Ok(None),
        }
    }
}

struct Backend(Arc<Tracker>);

impl SimpleBackend for Backend {
    fn get(
        &self,
        s: Shape,
        name: &str,
        _h: candle_nn::Init,
        dtype: DType,
        dev: &Device,
    ) -> candle_core::Result<Tensor> {
        match self.0.take(name, Some(&s))? {
            None => {
                self.0.with(|r| r.missing.push(name.to_string()));
                Tensor::zeros(s, dtype, dev)
            }
            Some(t) if t.shape() != &s => {
                self.0.with(|r| {
                    r.used.insert(name.to_string());
                    r.mismatched.push(ShapeMismatch {
                        key: name.to_string(),
                        expected: s.dims().to_vec(),
                        found: t.dims().to_vec(),
                    })
                });
                Tensor::zeros(s, dtype, dev)
            }
            Some(t) => {
                self.0.with(|r| r.used.insert(name.to_string()));
                t.to_dtype(dtype)?.to_device(dev)
            }
        }
    }

    fn get_unchecked(&self, name: &str, dtype: DType, dev: &Device) -> candle_core::Result<Tensor> {
        match self.0.take(name, None)? {
            None => {
                self.0.with(|r| r.missing.push(name.to_string()));
                candle_core::bail!("missing tensor {name}")
            }
            Some(t) => {
                self.0.with(|r| r.used.insert(name.to_string()));
                t.to_dtype(dtype)?.to_device(dev)
            }
        }
    }

    fn contains_tensor(&self, name: &str) -> bool {
        self.0.names.contains(name)
    }
}

/// Builds a model from a [`TensorStore`] and checks the result against the checkpoint.
///
/// Tensors are converted to the requested dtype and moved to the device as the model asks for
/// them. A missing or mis-shaped tensor does not stop construction (zeros stand in) so that
/// [`CheckedVarBuilder::finish`] can name every problem at once.
///
/// ```
/// use candle_core::{DType, Device, Tensor};
/// use segany_core::{checkpoint::CheckedVarBuilder, Error, TensorStore};
/// let mut store = TensorStore::default();
/// store.insert("lin.weight", Tensor::zeros((4, 3), DType::F32, &Device::Cpu).unwrap());
/// store.insert("extra", Tensor::zeros(1, DType::F32, &Device::Cpu).unwrap());
/// let cvb = CheckedVarBuilder::new(store, DType::F32, &Device::Cpu);
/// let vb = cvb.var_builder();
/// let built = candle_nn::linear(3, 4, vb.pp("lin")); // needs lin.weight and lin.bias
/// match cvb.finish(built, |_| false) {
///     Err(Error::MissingTensors(names)) => assert_eq!(names, vec!["lin.bias".to_string()]),
///     other => panic!("unexpected {other:?}"),
/// }
/// ```
pub struct CheckedVarBuilder {
    tracker: Arc<Tracker>,
    dtype: DType,
    device: Device,
}

impl CheckedVarBuilder {
    /// Wraps a store; tensors will be produced in `dtype` on `device`.
    pub fn new(store: TensorStore, dtype: DType, device: &Device) -> Self {
        let tensors = store.into_map();
        let tracker = Arc::new(Tracker {
            names: tensors.keys().cloned().collect(),
            tensors: Mutex::new(tensors),
            record: Mutex::new(Record::default()),
        });
        Self {
            tracker,
            dtype,
            device: device.clone(),
        }
    }

    /// The `VarBuilder` to build the model with.
    pub fn var_builder(&self) -> VarBuilder<'static> {
        VarBuilder::from_backend(
            Box::new(Backend(self.tracker.clone())),
            self.dtype,
            self.device.clone(),
        )
    }

    /// Checks what the model asked for against what the checkpoint holds. Missing tensors are
    /// reported first, then mis-shaped ones, then a construction error, then stored tensors the
    /// model never used (unless `ignore(name)` is true).
    pub fn finish<T>(
        &self,
        built: candle_core::Result<T>,
        ignore: impl Fn(&str) -> bool,
    ) -> Result<T> {
        let (missing, mismatched, used) = self
            .tracker
            .with(|r| (r.missing.clone(), r.mismatched.clone(), r.used.clone()));
        if !missing.is_empty() {
            return Err(Error::MissingTensors(missing));
        }
        if !mismatched.is_empty() {
            return Err(Error::ShapeMismatch(mismatched));
        }
        let model = built?;
        let mut unexpected: Vec<String> = self
            .tracker
            .names
            .iter()
            .filter(|k| !used.contains(*k) && !ignore(k))
            .cloned()
            .collect();
        if !unexpected.is_empty() {
            unexpected.sort();
            return Err(Error::UnexpectedTensors(unexpected));
        }
        Ok(model)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tensor leaves the store when the model takes it (so converting it frees the
    /// original), stays known by name, and a second request for it is an error naming it.
    #[test]
    fn taken_tensors_leave_the_store() -> Result<()> {
        let dev = Device::Cpu;
        let mut store = TensorStore::default();
        store.insert("a.weight", Tensor::ones((2, 3), DType::F32, &dev)?);
        store.insert("b", Tensor::ones(4, DType::F32, &dev)?);
        let cvb = CheckedVarBuilder::new(store, DType::F32, &dev);
        let vb = cvb.var_builder();
        let a = vb.get((2, 3), "a.weight")?;
        assert_eq!(a.sum_all()?.to_scalar::<f32>()?, 6.0);
        let held = |name: &str| {
            let map = cvb
                .tracker
                .tensors
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            map.contains_key(name)
        };
        assert!(!held("a.weight") && held("b"));
        assert!(vb.contains_tensor("a.weight"));
        let again = vb.get((2, 3), "a.weight").map(|_| ()).unwrap_err();
        assert!(again.to_string().contains("a.weight"), "{again}");
        // A mis-shaped request leaves the tensor for the report.
        assert!(vb.get(5, "b").is_ok());
        assert!(held("b"));
        Ok(())
    }
}
