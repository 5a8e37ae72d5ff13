//! Byte-exact emulation of Python's `json.dump` (default settings) for the
//! values the dataset tools write, and Python's int/float number model.

use std::cmp::Ordering;
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

/// A JSON number as Python's `json` module holds it: `int` or `float`.
///
/// `instances.json` boxes keep their type through SSP-SAM's pipeline (an
/// integer `12` is written back as `12`, a float `12.0` as `12.0`).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum PyNum {
    /// A Python `int` (within `i64`).
    Int(i64),
    /// A Python `float`.
    Float(f64),
}

impl PyNum {
    /// The value as `f64`.
    pub fn as_f64(self) -> f64 {
        match self {
            PyNum::Int(i) => i as f64,
            PyNum::Float(f) => f,
        }
    }

    /// Converts a parsed JSON number (`1` is an int, `1.0` and `1e5` floats).
    pub fn from_json(n: &serde_json::Number) -> Option<Self> {
        if let Some(i) = n.as_i64() {
            Some(PyNum::Int(i))
        } else if n.is_u64() {
            None
        } else {
            n.as_f64().map(PyNum::Float)
        }
    }

    /// Python `a + b` (int + int stays int; anything with a float is a float).
    ///
    /// ```
    /// use segany_data::pyjson::PyNum;
    /// assert_eq!(PyNum::Int(2).py_add(PyNum::Int(3)), PyNum::Int(5));
    /// assert_eq!(PyNum::Int(2).py_add(PyNum::Float(0.5)), PyNum::Float(2.5));
    /// ```
    pub fn py_add(self, other: PyNum) -> PyNum {
        match (self, other) {
            (PyNum::Int(a), PyNum::Int(b)) => match a.checked_add(b) {
                Some(s) => PyNum::Int(s),
                None => PyNum::Float(a as f64 + b as f64),
            },
            (a, b) => PyNum::Float(a.as_f64() + b.as_f64()),
        }
    }

    /// Exact Python comparison of int and float values.
    pub fn py_cmp(self, other: PyNum) -> Option<Ordering> {
        match (self, other) {
            (PyNum::Int(a), PyNum::Int(b)) => Some(a.cmp(&b)),
            (PyNum::Float(a), PyNum::Float(b)) => a.partial_cmp(&b),
            (PyNum::Int(a), PyNum::Float(b)) => cmp_int_float(a, b),
            (PyNum::Float(a), PyNum::Int(b)) => cmp_int_float(b, a).map(Ordering::reverse),
        }
    }

    /// Python's `repr` of the number, as `json.dumps` writes it.
    ///
    /// ```
    /// use segany_data::pyjson::PyNum;
    /// assert_eq!(PyNum::Float(12.0).to_python(), "12.0");
    /// assert_eq!(PyNum::Float(1e-5).to_python(), "1e-05");
    /// assert_eq!(PyNum::Float(123.45).to_python(), "123.45");
    /// assert_eq!(PyNum::Int(7).to_python(), "7");
    /// ```
    pub fn to_python(self) -> String {
        match self {
            PyNum::Int(i) => i.to_string(),
            PyNum::Float(f) => float_repr(f),
        }
    }
}

fn cmp_int_float(a: i64, b: f64) -> Option<Ordering> {
    if b.is_nan() {
        return None;
    }
    // i64 → i128 and the float's integer part compare exactly.
    if b >= 9.3e18 {
        return Some(Ordering::Less);
    }
    if b <= -9.3e18 {
        return Some(Ordering::Greater);
    }
    let fl = b.floor();
    match (a as i128).cmp(&(fl as i128)) {
        Ordering::Equal if b > fl => Some(Ordering::Less),
        o => Some(o),
    }
}

/// Python's `min(xs)`: the first minimal element (`None` when empty or
/// incomparable).
pub fn py_min(xs: &[PyNum]) -> Option<PyNum> {
    let mut it = xs.iter().copied();
    let mut best = it.next()?;
    for x in it {
        if x.py_cmp(best)? == Ordering::Less {
            best = x;
        }
    }
    Some(best)
}

/// Python's `max(xs)`: the first maximal element.
pub fn py_max(xs: &[PyNum]) -> Option<PyNum> {
    let mut it = xs.iter().copied();
    let mut best = it.next()?;
    for x in it {
        if x.py_cmp(best)? == Ordering::Greater {
            best = x;
        }
    }
    Some(best)
}

/// Python's `float.__repr__`: shortest round-trip digits, scientific
/// notation when the decimal exponent is < -4 or >= 16, `inf`/`nan` written
/// as `json.dumps` does (`Infinity`, `-Infinity`, `NaN`).
pub fn float_repr(f: f64) -> String {
    if f.is_nan() {
        return "NaN".into();
    }
    if f.is_infinite() {
        return if f > 0.0 { "Infinity" } else { "-Infinity" }.into();
    }
    if f == 0.0 {
        return if f.is_sign_negative() { "-0.0" } else { "0.0" }.into();
    }
    // Rust's `{:e}` gives the shortest round-trip digits: "d.ddde±x".
    let sci = format!("{:e}", f.abs());
    let (mant, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let digits: String = mant.chars().filter(|c| *c != '.').collect();
    let sign = if f < 0.0 { "-" } else { "" };
    if !(-4..16).contains(&exp) {
        let mut m = digits[..1].to_string();
        if digits.len() > 1 {
            m.push('.');
            m.push_str(&digits[1..]);
        }
        let es = if exp < 0 { '-' } else { '+' };
        return format!("{sign}{m}e{es}{:02}", exp.abs());
    }
    let n = digits.len() as i32;
    let s = if exp < 0 {
        format!("0.{}{}", "0".repeat((-exp - 1) as usize), digits)
    } else if exp + 1 >= n {
        format!("{}{}.0", digits, "0".repeat((exp + 1 - n) as usize))
    } else {
        let (a, b) = digits.split_at((exp + 1) as usize);
        format!("{a}.{b}")
    };
    format!("{sign}{s}")
}

/// A JSON string as `json.dumps(ensure_ascii=True)` writes it.
///
/// ```
/// use segany_data::pyjson::string_repr;
/// assert_eq!(string_repr("a\"é\n"), r#""a\"\u00e9\n""#);
/// ```
pub fn string_repr(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            ' '..='~' => out.push(c),
            _ => {
                let mut buf = [0u16; 2];
                for u in c.encode_utf16(&mut buf) {
                    let _ = write!(out, "\\u{u:04x}");
                }
            }
        }
    }
    out.push('"');
    out
}
