//! Python pickles (`refs(unc).p`, `grefs(unc).p`) as JSON-like values.

use std::path::Path;

use serde_json::{Map, Number, Value};
use serde_pickle::{DeOptions, HashableValue, Value as PValue};

use crate::error::{DataError, Result};

/// Largest pickle file read (refs pickles are tens of MB).
pub const MAX_PICKLE_BYTES: u64 = 1 << 30;

/// Decodes a pickle (any protocol, Python 2 `str` decoded as UTF-8) into a
/// `serde_json::Value`: dicts with string keys, lists/tuples/sets as arrays,
/// `None` as null. Big integers, non-finite floats and non-string keys are
/// errors.
///
/// ```
/// // pickle.dumps([{"ref_id": 3, "sent": "left dog"}], protocol=2)
/// let bytes = b"\x80\x02]q\x00}q\x01(X\x06\x00\x00\x00ref_idq\x02K\x03X\x04\x00\x00\x00sentq\x03X\x08\x00\x00\x00left dogq\x04ua.";
/// let v = segany_data::refer::pickle_to_json(bytes, "example")?;
/// assert_eq!(v[0]["ref_id"], 3);
/// assert_eq!(v[0]["sent"], "left dog");
/// # Ok::<(), segany_data::DataError>(())
/// ```
pub fn pickle_to_json(bytes: &[u8], name: &str) -> Result<Value> {
    let opts = DeOptions::new().decode_strings();
    let v = serde_pickle::value_from_slice(bytes, opts).map_err(|e| DataError::Pickle {
        path: name.into(),
        source: e,
    })?;
    convert(v, name, "$")
}

/// Reads and decodes a pickle file with [`pickle_to_json`].
pub fn read_pickle(path: &Path) -> Result<Value> {
    let meta = std::fs::metadata(path).map_err(|e| DataError::io(path, e))?;
    if meta.len() > MAX_PICKLE_BYTES {
        return Err(DataError::format(
            path.display().to_string(),
            format!(
                "{} bytes exceeds the {MAX_PICKLE_BYTES}-byte limit",
                meta.len()
            ),
        ));
    }
    let bytes = std::fs::read(path).map_err(|e| DataError::io(path, e))?;
    pickle_to_json(&bytes, &path.display().to_string())
}

fn convert(v: PValue, name: &str, at: &str) -> Result<Value> {
    let bad = |m: String| DataError::format(format!("{name}: {at}"), m);
    Ok(match v {
        PValue::None => Value::Null,
        PValue::Bool(b) => Value::Bool(b),
        PValue::I64(i) => Value::Number(i.into()),
        PValue::Int(b) => return Err(bad(format!("integer {b} out of range"))),
        PValue::F64(f) => {
            Value::Number(Number::from_f64(f).ok_or_else(|| bad(format!("non-finite float {f}")))?)
        }
        PValue::Bytes(b) => {
            Value::String(String::from_utf8(b).map_err(|_| bad("bytes are not UTF-8".to_string()))?)
        }
        PValue::String(s) => Value::String(s),
        PValue::List(xs) | PValue::Tuple(xs) => Value::Array(
            xs.into_iter()
                .enumerate()
                .map(|(i, x)| convert(x, name, &format!("{at}[{i}]")))
                .collect::<Result<_>>()?,
        ),
        PValue::Set(xs) | PValue::FrozenSet(xs) => Value::Array(
            xs.into_iter()
                .enumerate()
                .map(|(i, x)| convert(x.into_value(), name, &format!("{at}{{{i}}}")))
                .collect::<Result<_>>()?,
        ),
        PValue::Dict(d) => {
            let mut m = Map::new();
            for (k, v) in d {
                let key = match k {
                    HashableValue::String(s) => s,
                    HashableValue::Bytes(b) => String::from_utf8(b)
                        .map_err(|_| bad("dict key is not UTF-8".to_string()))?,
                    other => return Err(bad(format!("dict key {other:?} is not a string"))),
                };
                let val = convert(v, name, &format!("{at}.{key}"))?;
                m.insert(key, val);
            }
            Value::Object(m)
        }
    })
}
