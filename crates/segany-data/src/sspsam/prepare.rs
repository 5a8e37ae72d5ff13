//! SSP-SAM's `data_seg/data_process.py` (and `grefcoco_data_process.py`).

use std::path::{Path, PathBuf};

use super::{mask_path, PreparedAnns, PreparedEntry};
use crate::error::{DataError, Result};
use crate::npy::{write_npy, Order};
use crate::progress::progress_bar;
use crate::refer::{Flavor, OneOrMany, Refer};

/// `cat_process`: COCO category ids 1..90 → contiguous 0..79 (ids outside
/// the listed ranges pass through unchanged, as in the original).
///
/// ```
/// use segany_data::sspsam::cat_process;
/// assert_eq!(cat_process(1), 0);
/// assert_eq!(cat_process(13), 11);
/// assert_eq!(cat_process(90), 79);
/// assert_eq!(cat_process(12), 12); // not a COCO id: unchanged
/// ```
pub fn cat_process(cat: i64) -> i64 {
    match cat {
        1..=11 => cat - 1,
        13..=25 => cat - 2,
        27..=28 => cat - 3,
        31..=44 => cat - 5,
        46..=65 => cat - 6,
        67 => cat - 7,
        70 => cat - 9,
        72..=82 => cat - 10,
        84..=90 => cat - 11,
        _ => cat,
    }
}

/// The splits `data_process.py` writes for a dataset and split-by.
///
/// ```
/// use segany_data::sspsam::splits_for;
/// assert_eq!(splits_for("refcocog", "google")?, vec!["train", "val"]);
/// assert_eq!(splits_for("refclef", "unc")?.len(), 5);
/// # Ok::<(), segany_data::DataError>(())
/// ```
pub fn splits_for(dataset: &str, split_by: &str) -> Result<Vec<&'static str>> {
    Ok(match (dataset, split_by) {
        ("refclef", "unc") => vec!["train", "val", "testA", "testB", "testC"],
        ("refclef", _) => vec!["train", "val", "test"],
        ("refcoco" | "refcoco+" | "grefcoco", _) => vec!["train", "val", "testA", "testB"],
        ("refcocog", "google") => vec!["train", "val"],
        ("refcocog", _) => vec!["train", "val", "test"],
        _ => {
            return Err(DataError::format(
                "dataset",
                format!("{dataset:?} is not refcoco, refcoco+, refcocog, refclef or grefcoco"),
            ))
        }
    })
}

/// What [`prepare`] wrote.
#[derive(Clone, Debug)]
pub struct PrepareReport {
    /// The annotations (also written to `anns_path`).
    pub anns: PreparedAnns,
    /// `OUT/anns/<dataset>.json`.
    pub anns_path: PathBuf,
    /// Number of mask files written.
    pub masks_written: usize,
}

/// Reproduces `prepare_dataset(dataset, splits, output_dir, generate_mask)`:
/// writes `output_dir/anns/<dataset>.json` and, with `generate_mask`,
/// `output_dir/masks/<dataset>/<ref_id>.npy` (the `uint8` mask of
/// [`Refer::mask`]). Like the original it also creates the directories
/// `anns/<dataset>/` and `masks/<dataset>/`.
///
/// `splits` defaults to [`splits_for`]; `show_progress` draws a progress bar
/// on stderr.
pub fn prepare(
    refer: &Refer,
    split_by: &str,
    output_dir: &Path,
    generate_mask: bool,
    show_progress: bool,
) -> Result<PrepareReport> {
    let dataset = refer.dataset();
    let splits = splits_for(dataset, split_by)?;
    let anns_dir = output_dir.join("anns");
    let masks_dir = output_dir.join("masks").join(dataset);
    for d in [anns_dir.join(dataset), masks_dir.clone()] {
        std::fs::create_dir_all(&d).map_err(|e| DataError::io(&d, e))?;
    }
    let per_split: Vec<Vec<i64>> = splits
        .iter()
        .map(|s| refer.ref_ids(s))
        .collect::<Result<_>>()?;
    let total: usize = per_split.iter().map(Vec::len).sum();
    let bar = progress_bar(total as u64, "prepare", show_progress);
    let mut anns = PreparedAnns::default();
    let mut masks_written = 0;
    for (split, ids) in splits.iter().zip(per_split) {
        let mut entries = Vec::new();
        for i in ids {
            let r = refer.get_ref(i)?;
            let (bbox, cat_id) = match refer.flavor() {
                Flavor::Refer => {
                    let bbox = refer.ref_box(i)?.to_vec();
                    let OneOrMany::One(cat) = r.category_id else {
                        return Err(DataError::format(
                            format!("{dataset}: ref {i}"),
                            "category_id is a list",
                        ));
                    };
                    (bbox, OneOrMany::One(cat_process(cat)))
                }
                Flavor::GRefer => (refer.union_box_xyxy(i)?.to_vec(), r.category_id.clone()),
            };
            refer.image(r.image_id)?; // loadImgs: a missing image is an error there too
            let sents: Vec<String> = r.sentences.iter().map(|s| s.sent.clone()).collect();
            let entry = |refs: Vec<String>| PreparedEntry {
                iid: r.image_id,
                bbox: bbox.clone(),
                cat_id: cat_id.clone(),
                refs,
                mask_id: i,
            };
            if *split == "train" {
                entries.push(entry(sents));
            } else {
                entries.extend(sents.into_iter().map(|s| entry(vec![s])));
            }
            if generate_mask {
                // pycocotools decodes column-major and numpy keeps that
                // order through the sum; gRefCOCO's no-target `np.zeros` is
                // row-major.
                let order = if refer.flavor() == Flavor::GRefer && r.ann_id.to_vec() == [-1] {
                    Order::C
                } else {
                    Order::Fortran
                };
                write_npy(&mask_path(&masks_dir, i), &refer.mask(i)?, order)?;
                masks_written += 1;
            }
            bar.inc(1);
        }
        anns.splits.push((split.to_string(), entries));
    }
    bar.finish_and_clear();
    let anns_path = anns_dir.join(format!("{dataset}.json"));
    anns.write(&anns_path)?;
    Ok(PrepareReport {
        anns,
        anns_path,
        masks_written,
    })
}
