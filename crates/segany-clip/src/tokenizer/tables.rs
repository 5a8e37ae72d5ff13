//! Character tables of the text clean-up, dumped from Python by
//! `tools/fixtures/clip_text_tables.py` (HTML5 entities, ftfy translate maps, Python's
//! whitespace and lower-case tables) and parsed once on first use.

use std::collections::{HashMap, HashSet};
use std::sync::OnceLock;

use serde::Deserialize;

const TABLES_JSON: &str = include_str!("../../assets/text_clean_tables.json");

#[derive(Deserialize)]
struct Raw {
    ftfy_entities: HashMap<String, String>,
    html5: HashMap<String, String>,
    invalid_charrefs: HashMap<u32, String>,
    invalid_codepoints: Vec<u32>,
    ligatures: HashMap<u32, String>,
    width_map: HashMap<u32, String>,
    control_chars: Vec<u32>,
    c1_cp1252: HashMap<u32, String>,
    py_space: Vec<u32>,
    re_space: Vec<u32>,
    lower: HashMap<u32, String>,
}

/// The parsed tables.
pub(crate) struct Tables {
    /// ftfy's entity table: `&name;` (and all-caps variants) → text.
    pub ftfy_entities: HashMap<String, String>,
    /// `html.entities.html5`: `name;` or legacy `name` → text.
    pub html5: HashMap<String, String>,
    /// Longest key of `html5`, in chars.
    pub html5_max_len: usize,
    /// `html._invalid_charrefs`.
    pub invalid_charrefs: HashMap<u32, String>,
    /// `html._invalid_codepoints`.
    pub invalid_codepoints: HashSet<u32>,
    /// `ftfy.chardata.LIGATURES`.
    pub ligatures: HashMap<char, String>,
    /// `ftfy.chardata.WIDTH_MAP`.
    pub width_map: HashMap<char, String>,
    /// `ftfy.chardata.CONTROL_CHARS`.
    pub control_chars: HashSet<char>,
    /// C1 controls → their Windows-1252 characters (ftfy's `sloppy-windows-1252`).
    pub c1_cp1252: HashMap<char, String>,
    /// `str.isspace()`.
    pub py_space: HashSet<char>,
    /// `regex` module's `\s`.
    pub re_space: HashSet<char>,
    /// `str.lower()` for single characters (where it changes them).
    pub lower: HashMap<char, String>,
}

fn chars<V>(m: HashMap<u32, V>) -> HashMap<char, V> {
    m.into_iter()
        .filter_map(|(k, v)| char::from_u32(k).map(|c| (c, v)))
        .collect()
}

fn char_set(v: Vec<u32>) -> HashSet<char> {
    v.into_iter().filter_map(char::from_u32).collect()
}

/// The tables, parsed on first use. The JSON is a build-time asset of this crate, so parsing
/// cannot fail at run time unless the asset is corrupted; that is reported as `Err`.
pub(crate) fn tables() -> Result<&'static Tables, String> {
    static T: OnceLock<Result<Tables, String>> = OnceLock::new();
    T.get_or_init(|| {
        let raw: Raw = serde_json::from_str(TABLES_JSON)
            .map_err(|e| format!("assets/text_clean_tables.json: {e}"))?;
        let html5_max_len = raw
            .html5
            .keys()
            .map(|k| k.chars().count())
            .max()
            .unwrap_or(0);
        Ok(Tables {
            ftfy_entities: raw.ftfy_entities,
            html5: raw.html5,
            html5_max_len,
            invalid_charrefs: raw.invalid_charrefs,
            invalid_codepoints: raw.invalid_codepoints.into_iter().collect(),
            ligatures: chars(raw.ligatures),
            width_map: chars(raw.width_map),
            control_chars: char_set(raw.control_chars),
            c1_cp1252: chars(raw.c1_cp1252),
            py_space: char_set(raw.py_space),
            re_space: char_set(raw.re_space),
            lower: chars(raw.lower),
        })
    })
    .as_ref()
    .map_err(Clone::clone)
}
