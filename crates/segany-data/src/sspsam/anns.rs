//! `anns/<dataset>.json`: split → entries `{iid, bbox, cat_id, refs, mask_id}`.

use std::fmt;
use std::path::Path;

use serde::de::{MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};

use crate::error::{DataError, Result};
use crate::pyjson::{string_repr, PyNum};
use crate::refer::OneOrMany;

/// One entry of SSP-SAM's prepared annotations.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PreparedEntry {
    /// Image id.
    pub iid: i64,
    /// `[x, y, w, h]` (RefCOCO family) or `[x1, y1, x2, y2]` (gRefCOCO).
    pub bbox: Vec<PyNum>,
    /// Category remapped to 0..79 (`cat_process`); gRefCOCO keeps its raw id list.
    pub cat_id: OneOrMany,
    /// Sentences: all of the ref's in `train`, one per entry otherwise.
    pub refs: Vec<String>,
    /// `ref_id`, the mask file stem.
    pub mask_id: i64,
}

/// The whole file, splits in file order.
///
/// ```
/// use segany_data::sspsam::PreparedAnns;
/// let text = r#"{"val": [{"iid": 9, "bbox": [1, 2.5, 3, 4], "cat_id": 0, "refs": ["a dog"], "mask_id": 7}]}"#;
/// let anns = PreparedAnns::from_json(text.as_bytes(), "example")?;
/// assert_eq!(anns.splits[0].0, "val");
/// assert_eq!(anns.to_python_json(), text); // byte-identical to json.dump
/// # Ok::<(), segany_data::DataError>(())
/// ```
#[derive(Clone, Debug, Default, PartialEq)]
pub struct PreparedAnns {
    /// `(split, entries)` in order.
    pub splits: Vec<(String, Vec<PreparedEntry>)>,
}

impl PreparedAnns {
    /// Parses the JSON text; `name` appears in errors.
    pub fn from_json(bytes: &[u8], name: &str) -> Result<Self> {
        let splits: OrderedSplits = serde_json::from_slice(bytes).map_err(|e| DataError::Json {
            path: name.into(),
            source: e,
        })?;
        Ok(Self { splits: splits.0 })
    }

    /// Reads `anns/<dataset>.json`.
    pub fn read(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|e| DataError::io(path, e))?;
        Self::from_json(&bytes, &path.display().to_string())
    }

    /// The text Python's `json.dump(annotations, f)` writes (no trailing
    /// newline, `", "`/`": "` separators, ASCII escapes).
    pub fn to_python_json(&self) -> String {
        let mut s = String::from("{");
        for (i, (split, entries)) in self.splits.iter().enumerate() {
            if i > 0 {
                s.push_str(", ");
            }
            s.push_str(&string_repr(split));
            s.push_str(": [");
            for (j, e) in entries.iter().enumerate() {
                if j > 0 {
                    s.push_str(", ");
                }
                s.push_str(&entry_json(e));
            }
            s.push(']');
        }
        s.push('}');
        s
    }

    /// Writes [`PreparedAnns::to_python_json`] to `path`.
    pub fn write(&self, path: &Path) -> Result<()> {
        std::fs::write(path, self.to_python_json()).map_err(|e| DataError::io(path, e))
    }
}

fn entry_json(e: &PreparedEntry) -> String {
    let nums = |v: &[PyNum]| {
        v.iter()
            .map(|n| n.to_python())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let cat = match &e.cat_id {
        OneOrMany::One(c) => c.to_string(),
        OneOrMany::Many(v) => format!(
            "[{}]",
            v.iter().map(i64::to_string).collect::<Vec<_>>().join(", ")
        ),
    };
    let refs = e
        .refs
        .iter()
        .map(|r| string_repr(r))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "{{\"iid\": {}, \"bbox\": [{}], \"cat_id\": {}, \"refs\": [{}], \"mask_id\": {}}}",
        e.iid,
        nums(&e.bbox),
        cat,
        refs,
        e.mask_id
    )
}

/// A JSON object read into a vector, keeping key order.
struct OrderedSplits(Vec<(String, Vec<PreparedEntry>)>);

impl<'de> Deserialize<'de> for OrderedSplits {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = OrderedSplits;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an object of split name to entry list")
            }
            fn visit_map<A: MapAccess<'de>>(
                self,
                mut m: A,
            ) -> std::result::Result<Self::Value, A::Error> {
                let mut out = Vec::new();
                while let Some((k, v)) = m.next_entry::<String, Vec<PreparedEntry>>()? {
                    out.push((k, v));
                }
                Ok(OrderedSplits(out))
            }
        }
        d.deserialize_map(V)
    }
}
