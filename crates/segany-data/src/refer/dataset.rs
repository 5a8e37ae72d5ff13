//! The `REFER` / `G_REFER` index: refs, annotations, images and categories.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::{read_pickle, Annotation, ImageInfo, Instances, Ref};
use crate::error::{DataError, Result};
use crate::mask::Mask;
use crate::pyjson::{py_max, py_min, PyNum};

/// Which API the dataset follows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flavor {
    /// `refer.py` (RefCOCO, RefCOCO+, RefCOCOg, RefCLEF): one annotation per ref.
    Refer,
    /// `grefer.py` (gRefCOCO): annotation lists, `[-1]` = no target.
    GRefer,
}

/// A loaded referring dataset with the lookups of `refer.py`'s `createIndex`.
///
/// ```no_run
/// use segany_data::refer::Refer;
/// let refer = Refer::load("data".as_ref(), "refcoco", "unc")?;
/// for s in refer.samples("testA")? {
///     println!("{} {}: {}", s.ref_id, s.sent_id, s.sent);
/// }
/// # Ok::<(), segany_data::DataError>(())
/// ```
#[derive(Clone, Debug)]
pub struct Refer {
    dataset: String,
    flavor: Flavor,
    refs: Vec<Ref>,
    ref_index: HashMap<i64, usize>,
    anns: HashMap<i64, Annotation>,
    imgs: HashMap<i64, ImageInfo>,
    cats: HashMap<i64, String>,
    available_splits: Vec<String>,
}

impl Refer {
    /// Loads `data_root/<dataset>/refs(<split_by>).p` and `instances.json`,
    /// or for `grefcoco` `grefs(<split_by>).p` (falling back to `.json`).
    pub fn load(data_root: &Path, dataset: &str, split_by: &str) -> Result<Self> {
        let dir = data_root.join(dataset);
        let (flavor, refs) = if dataset == "grefcoco" {
            let p = dir.join(format!("grefs({split_by}).p"));
            if p.exists() {
                (Flavor::GRefer, read_pickle(&p)?)
            } else {
                let j = dir.join(format!("grefs({split_by}).json"));
                let text = std::fs::read(&j).map_err(|e| DataError::io(&j, e))?;
                let v = serde_json::from_slice(&text).map_err(|e| DataError::Json {
                    path: j.clone(),
                    source: e,
                })?;
                (Flavor::GRefer, v)
            }
        } else {
            (
                Flavor::Refer,
                read_pickle(&dir.join(format!("refs({split_by}).p")))?,
            )
        };
        let instances = Instances::read(&dir.join("instances.json"))?;
        let name = format!("{dataset}/refs({split_by})");
        Self::from_parts(dataset, flavor, refs, instances, &name)
    }

    /// Builds the index from a decoded refs list and `instances.json`;
    /// `name` appears in errors.
    pub fn from_parts(
        dataset: &str,
        flavor: Flavor,
        refs: Value,
        instances: Instances,
        name: &str,
    ) -> Result<Self> {
        let Value::Array(items) = refs else {
            return Err(DataError::format(name, "refs are not a list"));
        };
        let refs: Vec<Ref> = items
            .into_iter()
            .enumerate()
            .map(|(i, v)| {
                serde_json::from_value(v)
                    .map_err(|e| DataError::format(format!("{name}: ref [{i}]"), e.to_string()))
            })
            .collect::<Result<_>>()?;
        let anns: HashMap<i64, Annotation> = instances
            .annotations
            .into_iter()
            .map(|a| (a.id, a))
            .collect();
        let imgs = instances.images.into_iter().map(|i| (i.id, i)).collect();
        let cats = instances
            .categories
            .into_iter()
            .map(|c| (c.id, c.name))
            .collect();
        let mut ref_index = HashMap::new();
        let mut available_splits: Vec<String> = Vec::new();
        for (i, r) in refs.iter().enumerate() {
            for a in r.ann_id.to_vec() {
                let no_target = flavor == Flavor::GRefer && a == -1;
                if !no_target && !anns.contains_key(&a) {
                    return Err(DataError::MissingId {
                        kind: "annotation",
                        id: a,
                        context: format!(" (ref_id {} in {name})", r.ref_id),
                    });
                }
            }
            if !available_splits.contains(&r.split) {
                available_splits.push(r.split.clone());
            }
            ref_index.insert(r.ref_id, i);
        }
        Ok(Self {
            dataset: dataset.to_string(),
            flavor,
            refs,
            ref_index,
            anns,
            imgs,
            cats,
            available_splits,
        })
    }

    /// Dataset name (`refcoco`, …).
    pub fn dataset(&self) -> &str {
        &self.dataset
    }

    /// API flavour.
    pub fn flavor(&self) -> Flavor {
        self.flavor
    }

    /// All refs in file order.
    pub fn refs(&self) -> &[Ref] {
        &self.refs
    }

    /// Category name of a COCO category id.
    pub fn category_name(&self, id: i64) -> Option<&str> {
        self.cats.get(&id).map(String::as_str)
    }

    /// `getRefIds(split=split)`, in file order. `""` selects every ref.
    ///
    /// RefCOCO family: `testA`/`testB`/`testC` match any split containing the
    /// letter (so `testAB` counts for both), `testAB`/`testBC`/`testAC` match
    /// exactly, `test` matches any split containing `test`, `train`/`val`
    /// match exactly; anything else is [`DataError::UnknownSplit`].
    /// gRefCOCO: exact match with a split present in the data.
    pub fn ref_ids(&self, split: &str) -> Result<Vec<i64>> {
        let keep: Box<dyn Fn(&str) -> bool> = match (self.flavor, split) {
            (_, "") => Box::new(|_| true),
            (Flavor::GRefer, s) => {
                if !self.available_splits.iter().any(|a| a == s) {
                    return Err(DataError::UnknownSplit(s.to_string()));
                }
                Box::new(move |r| r == s)
            }
            (Flavor::Refer, "testA" | "testB" | "testC") => {
                let c = split.chars().last().unwrap_or('?');
                Box::new(move |r| r.contains(c))
            }
            (Flavor::Refer, "testAB" | "testBC" | "testAC" | "train" | "val") => {
                Box::new(move |r| r == split)
            }
            (Flavor::Refer, "test") => Box::new(|r| r.contains("test")),
            (Flavor::Refer, s) => return Err(DataError::UnknownSplit(s.to_string())),
        };
        Ok(self
            .refs
            .iter()
            .filter(|r| keep(&r.split))
            .map(|r| r.ref_id)
            .collect())
    }

    /// `Refs[ref_id]` (the last ref with this id, as Python's dict keeps).
    pub fn get_ref(&self, ref_id: i64) -> Result<&Ref> {
        self.ref_index
            .get(&ref_id)
            .map(|&i| &self.refs[i])
            .ok_or(DataError::MissingId {
                kind: "ref",
                id: ref_id,
                context: String::new(),
            })
    }

    /// `Imgs[image_id]`.
    pub fn image(&self, image_id: i64) -> Result<&ImageInfo> {
        self.imgs.get(&image_id).ok_or(DataError::MissingId {
            kind: "image",
            id: image_id,
            context: format!(" in {}/instances.json", self.dataset),
        })
    }

    /// `Anns[ann_id]`.
    pub fn annotation(&self, ann_id: i64) -> Result<&Annotation> {
        self.anns.get(&ann_id).ok_or(DataError::MissingId {
            kind: "annotation",
            id: ann_id,
            context: format!(" in {}/instances.json", self.dataset),
        })
    }

    /// `getRefBox(ref_id)` of `refer.py`: the annotation's `[x, y, w, h]`
    /// (first annotation for gRefCOCO refs).
    pub fn ref_box(&self, ref_id: i64) -> Result<&[PyNum]> {
        let r = self.get_ref(ref_id)?;
        let ann = r.ann_id.to_vec().first().copied().unwrap_or(-1);
        Ok(&self.annotation(ann)?.bbox)
    }

    /// SSP-SAM's gRefCOCO box: the union `[x1, y1, x2, y2]` of the targets'
    /// boxes (Python arithmetic on ints/floats), `[0, 0, 0, 0]` when any
    /// target is missing (`[-1]`), as `grefcoco_data_process.py` computes it.
    pub fn union_box_xyxy(&self, ref_id: i64) -> Result<[PyNum; 4]> {
        let r = self.get_ref(ref_id)?;
        let mut boxes = Vec::new();
        for a in r.ann_id.to_vec() {
            match self.anns.get(&a) {
                Some(ann) => boxes.push(ann.bbox.clone()),
                None => {
                    boxes = vec![vec![PyNum::Int(0); 4]];
                    break;
                }
            }
        }
        let mut xyxy: Vec<[PyNum; 4]> = Vec::new();
        for b in &boxes {
            let [x, y, w, h] = b[..] else {
                return Err(DataError::format(
                    format!("{}: ref {ref_id}", self.dataset),
                    format!("bbox has {} values, expected 4", b.len()),
                ));
            };
            xyxy.push([x, y, x.py_add(w), y.py_add(h)]);
        }
        let col = |i: usize| xyxy.iter().map(|b| b[i]).collect::<Vec<_>>();
        let bad = || DataError::format(format!("ref {ref_id}"), "box is empty or NaN");
        Ok([
            py_min(&col(0)).ok_or_else(bad)?,
            py_min(&col(1)).ok_or_else(bad)?,
            py_max(&col(2)).ok_or_else(bad)?,
            py_max(&col(3)).ok_or_else(bad)?,
        ])
    }

    /// `refer.getMask(ref)['mask']`: the `uint8` sum of the ref's decoded
    /// polygons/RLEs at the image's resolution. For gRefCOCO refs this is
    /// [`Refer::merged_mask`].
    pub fn mask(&self, ref_id: i64) -> Result<Mask> {
        if self.flavor == Flavor::GRefer {
            return self.merged_mask(ref_id);
        }
        let r = self.get_ref(ref_id)?;
        let img = self.image(r.image_id)?;
        let ann = self.annotation(r.ann_id.to_vec().first().copied().unwrap_or(-1))?;
        ann.segmentation.to_mask(img.height, img.width)
    }

    /// `grefer.getMaskByRef(ref, merge=True)['mask']`: the union of the
    /// non-crowd targets clipped to 1, and all zeros for `ann_id == [-1]`.
    pub fn merged_mask(&self, ref_id: i64) -> Result<Mask> {
        let r = self.get_ref(ref_id)?;
        let ids = r.ann_id.to_vec();
        if ids == [-1] {
            let img = self.image(r.image_id)?;
            return Ok(Mask::zeros(img.height, img.width));
        }
        let mut sum: Option<Mask> = None;
        for a in ids {
            let ann = self.annotation(a)?;
            if ann.iscrowd != 0 {
                continue;
            }
            let img = self.image(ann.image_id)?;
            let m = ann.segmentation.to_mask(img.height, img.width)?;
            match &mut sum {
                None => sum = Some(m),
                Some(s) => s.wrapping_add_assign(&m)?,
            }
        }
        let sum = sum.ok_or_else(|| {
            DataError::format(
                format!("ref {ref_id}"),
                "every target is a crowd annotation",
            )
        })?;
        let (h, w) = (sum.height(), sum.width());
        let data = sum.into_vec().into_iter().map(|v| v.min(1)).collect();
        Mask::from_vec(h, w, data)
    }

    /// The image path under the usual layout: `<image_root>/<file_name>`.
    pub fn image_path(&self, image_root: &Path, image_id: i64) -> Result<PathBuf> {
        Ok(image_root.join(&self.image(image_id)?.file_name))
    }
}
