//! Refs and sentences as stored in `refs(<split_by>).p` / `grefs(unc).json`.

use serde::{Deserialize, Serialize};

/// One value or a list (gRefCOCO stores `ann_id` and `category_id` as lists).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany {
    /// A scalar id.
    One(i64),
    /// A list of ids.
    Many(Vec<i64>),
}

impl OneOrMany {
    /// The ids as a list.
    pub fn to_vec(&self) -> Vec<i64> {
        match self {
            OneOrMany::One(v) => vec![*v],
            OneOrMany::Many(v) => v.clone(),
        }
    }
}

/// A referring expression.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Sentence {
    /// Sentence id.
    pub sent_id: i64,
    /// Normalised lower-case text (used by SSP-SAM).
    pub sent: String,
    /// Original text (used by LAVT/DFAM); empty when absent.
    #[serde(default)]
    pub raw: String,
    /// Tokens; empty when absent.
    #[serde(default)]
    pub tokens: Vec<String>,
}

/// A referred object (RefCOCO family) or object set (gRefCOCO).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Ref {
    /// Ref id.
    pub ref_id: i64,
    /// Annotation id(s); gRefCOCO uses `[-1]` for "no target".
    pub ann_id: OneOrMany,
    /// Image id.
    pub image_id: i64,
    /// Category id(s).
    pub category_id: OneOrMany,
    /// Split name (`train`, `val`, `testA`, …).
    pub split: String,
    /// The expressions.
    pub sentences: Vec<Sentence>,
}
