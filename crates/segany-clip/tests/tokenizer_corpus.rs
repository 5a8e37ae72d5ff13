//! Token ids vs the official OpenAI `clip.tokenize` on the committed corpus
//! (`tests/fixtures/clip/tokenizer_corpus.json`, made by
//! `tools/fixtures/clip_tokenizer_corpus.py`).

mod common;

use segany_clip::{ClipError, ClipTokenizer, TokenizeOptions, EOT_ID, SOT_ID};
use serde::Deserialize;

#[derive(Deserialize)]
struct Entry {
    text: String,
    ids: Vec<u32>,
    n_tokens: usize,
    fix_encoding: bool,
}

#[derive(Deserialize)]
struct Corpus {
    context_length: usize,
    entries: Vec<Entry>,
}

fn corpus() -> Corpus {
    let path = common::fixtures_dir().join("tokenizer_corpus.json");
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

#[test]
fn tokenizer_matches_openai_clip_tokenize() {
    let c = corpus();
    assert!(c.entries.len() >= 2000, "corpus too small");
    let tok = ClipTokenizer::openai().unwrap();
    assert_eq!(tok.special_ids(), (SOT_ID, EOT_ID));
    let opts = TokenizeOptions {
        truncate: true,
        allow_empty: true,
    };
    let (mut checked, mut gap, mut gap_equal) = (0, 0, 0);
    let mut failures = Vec::new();
    for e in &c.entries {
        let row = &tok.tokenize_ids(&[&e.text], opts).unwrap()[0];
        assert_eq!(row.len(), c.context_length);
        let mut expected = e.ids.clone();
        expected.resize(c.context_length, 0);
        if e.fix_encoding {
            gap += 1;
            gap_equal += usize::from(*row == expected);
            continue;
        }
        checked += 1;
        // Untruncated length too.
        let full = tok.encode(&e.text).unwrap();
        if *row != expected || full.len() != e.n_tokens {
            failures.push(format!(
                "{:?}: got {:?} (len {}), want {:?} (len {})",
                e.text,
                &row[..row.iter().position(|&x| x == 0).unwrap_or(row.len())],
                full.len(),
                e.ids,
                e.n_tokens
            ));
        }
    }
    println!(
        "tokenizer parity: {checked} strings checked, {} mismatches; {gap} mojibake strings \
         (ftfy fix_encoding, not ported) of which {gap_equal} still match",
        failures.len()
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn truncation_keeps_eot_and_overflow_is_an_error() {
    let c = corpus();
    let tok = ClipTokenizer::openai().unwrap();
    let long: Vec<&Entry> = c
        .entries
        .iter()
        .filter(|e| e.n_tokens > c.context_length)
        .collect();
    assert!(!long.is_empty());
    for e in long {
        let row = &tok
            .tokenize_ids(
                &[&e.text],
                TokenizeOptions {
                    truncate: true,
                    allow_empty: false,
                },
            )
            .unwrap()[0];
        assert_eq!(row[c.context_length - 1], EOT_ID);
        assert_eq!(row[0], SOT_ID);
        let err = tok
            .tokenize_ids(&["ok", e.text.as_str()], TokenizeOptions::default())
            .unwrap_err();
        match err {
            ClipError::ContextOverflow {
                index,
                needed,
                context,
                ..
            } => {
                assert_eq!((index, needed, context), (1, e.n_tokens, c.context_length));
            }
            other => panic!("expected ContextOverflow, got {other}"),
        }
    }
}

#[test]
fn empty_text_and_empty_batch_are_errors() {
    let tok = ClipTokenizer::openai().unwrap();
    let err = tok
        .tokenize_ids(&["a cat", " \t\n"], TokenizeOptions::default())
        .unwrap_err();
    assert!(matches!(err, ClipError::EmptyText { index: 1 }), "{err}");
    let none: [&str; 0] = [];
    let err = tok
        .tokenize_ids(&none, TokenizeOptions::default())
        .unwrap_err();
    assert!(matches!(err, ClipError::EmptyInput { .. }), "{err}");
    // With allow_empty the official [SOT, EOT] framing is produced.
    let row = &tok
        .tokenize_ids(
            &[""],
            TokenizeOptions {
                truncate: false,
                allow_empty: true,
            },
        )
        .unwrap()[0];
    assert_eq!(&row[..3], &[SOT_ID, EOT_ID, 0]);
}
