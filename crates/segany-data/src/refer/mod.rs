//! Readers for RefCOCO, RefCOCO+, RefCOCOg, RefCLEF (`refer.py`) and
//! gRefCOCO (`grefer.py`): `refs(<split_by>).p` / `grefs(<split_by>).json`
//! pickles or JSON plus COCO-style `instances.json`.

mod dataset;
mod instances;
mod model;
mod pickle;
mod sample;

pub use dataset::{Flavor, Refer};
pub use instances::{Annotation, Category, ImageInfo, Instances, RleCounts, RleJson, Segmentation};
pub use model::{OneOrMany, Ref, Sentence};
pub use pickle::{pickle_to_json, read_pickle, MAX_PICKLE_BYTES};
pub use sample::Sample;
