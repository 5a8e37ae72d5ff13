//! OpenAI CLIP's text clean-up, ported from Python:
//! `whitespace_clean(basic_clean(text)).lower()` where `basic_clean` is `ftfy.fix_text`,
//! `html.unescape` twice and `str.strip`.
//!
//! `ftfy.fix_text` is reproduced step by step (HTML entities when the segment has no `<`, C1
//! controls, Latin ligatures, character width, curly quotes, line breaks, terminal escapes,
//! control characters, NFC, repeated to a fixed point), **except mojibake repair**
//! (`fix_encoding`): text that ftfy would re-decode (e.g. `"sÃ³"` → `"só"`) is left as is.

use tokenizers::NormalizedString;

use super::tables::{tables, Tables};

/// Cleans `text` exactly as CLIP's tokenizer does before BPE (see the module docs for the one
/// documented gap). `Err` only if the built-in tables are corrupted.
pub fn clean_text(text: &str) -> Result<String, String> {
    let t = tables()?;
    let s = ftfy_fix_text(text, t);
    let s = html_unescape(&html_unescape(&s, t), t);
    let s = py_strip(&s, t).to_string();
    let s = whitespace_clean(&s, t);
    Ok(py_lower(&s, t))
}

/// `ftfy.fix_text`: independent line segments; once a segment contains `<`, HTML unescaping
/// stays off for the rest of the text.
fn ftfy_fix_text(text: &str, t: &Tables) -> String {
    const MAX_DECODE_LENGTH: usize = 1_000_000;
    let chars: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut unescape = true;
    let mut pos = 0;
    while pos < chars.len() {
        let mut end = match chars[pos..].iter().position(|&c| c == '\n') {
            Some(i) => pos + i + 1,
            None => chars.len(),
        };
        if end - pos > MAX_DECODE_LENGTH {
            end = pos + MAX_DECODE_LENGTH;
        }
        let segment: String = chars[pos..end].iter().collect();
        if segment.contains('<') {
            unescape = false;
        }
        out.push_str(&ftfy_fix_segment(segment, unescape, t));
        pos = end;
    }
    out
}

fn translate(s: &str, f: impl Fn(char) -> Option<String>) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match f(c) {
            Some(r) => out.push_str(&r),
            None => out.push(c),
        }
    }
    out
}

/// `ftfy.fix_and_explain` on one segment (without `fix_encoding`).
fn ftfy_fix_segment(mut text: String, unescape: bool, t: &Tables) -> String {
    loop {
        let orig = text.clone();
        if unescape {
            text = ftfy_unescape_html(&text, t);
        }
        text = translate(&text, |c| t.c1_cp1252.get(&c).cloned());
        text = translate(&text, |c| t.ligatures.get(&c).cloned());
        text = translate(&text, |c| t.width_map.get(&c).cloned());
        text = translate(&text, |c| match c {
            '\u{201c}'..='\u{201f}' => Some("\"".into()),
            '\u{02bc}' | '\u{2018}'..='\u{201b}' => Some("'".into()),
            _ => None,
        });
        text = text
            .replace("\r\n", "\n")
            .replace('\r', "\n")
            .replace(['\u{2028}', '\u{2029}', '\u{85}'], "\n");
        text = remove_terminal_escapes(&text);
        text = text
            .chars()
            .filter(|c| !t.control_chars.contains(c))
            .collect();
        let mut n = NormalizedString::from(text.as_str());
        n.nfc();
        text = n.get().to_string();
        if text == orig {
            return text;
        }
    }
}

/// Removes `ESC [ (digit|;)* letter` (ftfy's `ANSI_RE`, ASCII digits).
fn remove_terminal_escapes(s: &str) -> String {
    let chars: Vec<char> = s.chars().collect();
    let mut out = String::with_capacity(s.len());
    let mut i = 0;
    while i < chars.len() {
        if chars[i] == '\u{1b}' && chars.get(i + 1) == Some(&'[') {
            let mut j = i + 2;
            while j < chars.len() && (chars[j].is_ascii_digit() || chars[j] == ';') {
                j += 1;
            }
            if j < chars.len() && chars[j].is_ascii_alphabetic() {
                i = j + 1;
                continue;
            }
        }
        out.push(chars[i]);
        i += 1;
    }
    out
}

/// ftfy's `unescape_html`: `&#?[0-9A-Za-z]{1,24};` replaced when it is a known entity (or a
/// numeric reference fully consumed by `html.unescape`).
fn ftfy_unescape_html(s: &str, t: &Tables) -> String {
    if !s.contains('&') {
        return s.to_string();
    }
    let chars: Vec<char> = s.chars().collect();
    let mut out = String::with_capacity(s.len());
    let mut i = 0;
    while i < chars.len() {
        if chars[i] == '&' {
            let mut j = i + 1;
            if chars.get(j) == Some(&'#') {
                j += 1;
            }
            let start = j;
            while j < chars.len() && chars[j].is_ascii_alphanumeric() {
                j += 1;
            }
            let n = j - start;
            if (1..=24).contains(&n) && chars.get(j) == Some(&';') {
                let m: String = chars[i..=j].iter().collect();
                let rep = if let Some(v) = t.ftfy_entities.get(&m) {
                    v.clone()
                } else if m.starts_with("&#") {
                    let u = html_unescape(&m, t);
                    if u.contains(';') {
                        m
                    } else {
                        u
                    }
                } else {
                    m
                };
                out.push_str(&rep);
                i = j + 1;
                continue;
            }
        }
        out.push(chars[i]);
        i += 1;
    }
    out
}

/// Python's `html.unescape`.
pub(crate) fn html_unescape(s: &str, t: &Tables) -> String {
    if !s.contains('&') {
        return s.to_string();
    }
    let chars: Vec<char> = s.chars().collect();
    let mut out = String::with_capacity(s.len());
    let mut i = 0;
    while i < chars.len() {
        if chars[i] != '&' {
            out.push(chars[i]);
            i += 1;
            continue;
        }
        match charref(&chars, i + 1, t) {
            Some((rep, end)) => {
                out.push_str(&rep);
                i = end;
            }
            None => {
                out.push('&');
                i += 1;
            }
        }
    }
    out
}

/// Matches `#[0-9]+;?|#[xX][0-9a-fA-F]+;?|[^\t\n\f <&#;]{1,32};?` at `chars[p..]` and returns
/// the replacement and the end index.
fn charref(chars: &[char], p: usize, t: &Tables) -> Option<(String, usize)> {
    let at = |k: usize| chars.get(k).copied();
    if at(p) == Some('#') {
        let (radix, digits_start) = match at(p + 1) {
            Some('x') | Some('X') => (16, p + 2),
            _ => (10, p + 1),
        };
        let mut j = digits_start;
        while j < chars.len() && chars[j].is_digit(radix) && chars[j].is_ascii() {
            j += 1;
        }
        if j == digits_start {
            // `#x` without hex digits: the decimal branch fails too (x is no digit).
            return None;
        }
        let digits: String = chars[digits_start..j].iter().collect();
        let end = if at(j) == Some(';') { j + 1 } else { j };
        let num = digits
            .chars()
            .try_fold(0u64, |acc, c| {
                let d = c.to_digit(radix)? as u64;
                acc.checked_mul(radix as u64)?.checked_add(d)
            })
            .unwrap_or(u64::MAX);
        let rep = if let Some(v) = u32::try_from(num)
            .ok()
            .and_then(|n| t.invalid_charrefs.get(&n))
        {
            v.clone()
        } else if (0xD800..=0xDFFF).contains(&num) || num > 0x10FFFF {
            "\u{FFFD}".to_string()
        } else if t.invalid_codepoints.contains(&(num as u32)) {
            String::new()
        } else {
            char::from_u32(num as u32)
                .map(String::from)
                .unwrap_or_default()
        };
        return Some((rep, end));
    }
    let mut j = p;
    while j < chars.len()
        && j - p < 32
        && !matches!(chars[j], '\t' | '\n' | '\x0c' | ' ' | '<' | '&' | '#' | ';')
    {
        j += 1;
    }
    if j == p {
        return None;
    }
    let end = if at(j) == Some(';') { j + 1 } else { j };
    let name: String = chars[p..end].iter().collect();
    if let Some(v) = t.html5.get(&name) {
        return Some((v.clone(), end));
    }
    let name_chars: Vec<char> = name.chars().collect();
    for x in (2..name_chars.len()).rev() {
        if x > t.html5_max_len {
            continue;
        }
        let prefix: String = name_chars[..x].iter().collect();
        if let Some(v) = t.html5.get(&prefix) {
            let rest: String = name_chars[x..].iter().collect();
            return Some((format!("{v}{rest}"), end));
        }
    }
    Some((format!("&{name}"), end))
}

/// `str.strip()`.
fn py_strip<'a>(s: &'a str, t: &Tables) -> &'a str {
    s.trim_matches(|c| t.py_space.contains(&c))
}

/// `regex.sub(r'\s+', ' ', s).strip()`.
fn whitespace_clean(s: &str, t: &Tables) -> String {
    let mut out = String::with_capacity(s.len());
    let mut in_space = false;
    for c in s.chars() {
        if t.re_space.contains(&c) {
            if !in_space {
                out.push(' ');
            }
            in_space = true;
        } else {
            out.push(c);
            in_space = false;
        }
    }
    py_strip(&out, t).to_string()
}

/// `str.lower()`, with the final-sigma rule.
fn py_lower(s: &str, t: &Tables) -> String {
    let chars: Vec<char> = s.chars().collect();
    let cased = |c: char| c.is_lowercase() || c.is_uppercase();
    let mut out = String::with_capacity(s.len());
    for (i, &c) in chars.iter().enumerate() {
        if c == '\u{3a3}' {
            let before = i > 0 && cased(chars[i - 1]);
            let after = chars.get(i + 1).is_some_and(|&n| cased(n));
            out.push(if before && !after {
                '\u{3c2}'
            } else {
                '\u{3c3}'
            });
            continue;
        }
        match t.lower.get(&c) {
            Some(l) => out.push_str(l),
            None => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn python_examples() {
        let t = tables().unwrap();
        assert_eq!(
            html_unescape("&amp;lt; &#x41;&#66 &notit; &zz;", t),
            "&lt; AB ¬it; &zz;"
        );
        assert_eq!(
            ftfy_unescape_html("P&EACUTE;REZ &not that", t),
            "PÉREZ &not that"
        );
        assert_eq!(
            clean_text("  Hello\u{3000}ＷＯＲＬＤ &amp;amp; ﬁne “quotes” ").unwrap(),
            "hello world & fine \"quotes\""
        );
        assert_eq!(clean_text("ΟΔΟΣ").unwrap(), "οδος");
    }
}
