//! SSP-SAM's file-name conventions.

use std::path::{Path, PathBuf};

/// SSP-SAM dataset key → prepared-annotation stem (`datasets/dataset.py`).
///
/// ```
/// assert_eq!(segany_data::sspsam::prepared_name("unc"), Some("refcoco"));
/// assert_eq!(segany_data::sspsam::prepared_name("referit"), Some("refclef"));
/// ```
pub fn prepared_name(key: &str) -> Option<&'static str> {
    Some(match key {
        "unc" => "refcoco",
        "unc+" => "refcoco+",
        "gref" => "refcocog_google",
        "gref_umd" => "refcocog_umd",
        "referit" => "refclef",
        "grefcoco" => "grefcoco",
        _ => return None,
    })
}

/// COCO train2014 image path: `<root>/COCO_train2014_%012d.jpg`.
///
/// ```
/// use std::path::Path;
/// let p = segany_data::sspsam::coco_train2014_path(Path::new("train2014"), 42);
/// assert_eq!(p, Path::new("train2014/COCO_train2014_000000000042.jpg"));
/// ```
pub fn coco_train2014_path(root: &Path, image_id: i64) -> PathBuf {
    root.join(format!("COCO_train2014_{image_id:012}.jpg"))
}

/// ReferIt (RefCLEF) image path: `<root>/%d.jpg`.
pub fn referit_path(root: &Path, image_id: i64) -> PathBuf {
    root.join(format!("{image_id}.jpg"))
}

/// Mask path `<masks_dir>/<ref_id>.npy`.
pub fn mask_path(masks_dir: &Path, ref_id: i64) -> PathBuf {
    masks_dir.join(format!("{ref_id}.npy"))
}

/// The image path of `image_id` for `dataset` under SSP-SAM's layout
/// (`refclef` → ReferIt naming, everything else COCO train2014).
pub fn image_path(dataset: &str, image_root: &Path, image_id: i64) -> PathBuf {
    if dataset == "refclef" || dataset == "referit" {
        referit_path(image_root, image_id)
    } else {
        coco_train2014_path(image_root, image_id)
    }
}
