//! Noun phrases of a caption, standing in for SSA's spaCy `doc.noun_chunks`
//! (`scripts/utils.py::get_noun_phrases`, model `en_core_web_sm`). spaCy's statistical tagger
//! and parser cannot be ported, so this is a fixed, documented word-list rule:
//!
//! 1. **Tokens**: maximal runs of letters, digits, `'` and `-` (so `t-shirt`, `man's` stay
//!    whole); any other character (punctuation, `,`, `.`) ends the current phrase.
//! 2. **Classes** (compared lower-cased): *determiners* ([`DETERMINERS`]: articles,
//!    demonstratives, possessives, quantifiers, number words and digits); *breaks* ([`BREAKS`]:
//!    prepositions, conjunctions, pronouns, auxiliaries, common verbs and adverbs); words ending
//!    in `-ing` or `-ed` are breaks too (participles: "sitting", "covered"), except right after a
//!    determiner ("a building", "a stuffed animal") or when listed in [`ING_NOUNS`]
//!    ("ceiling", "living room"); everything else is *content* (nouns and adjectives).
//! 3. **Phrases**: each maximal run of content words together with the determiners directly
//!    before it, e.g. "a small white dog". A run made only of determiners yields nothing; a run
//!    whose last word is in [`ADJECTIVES`] ("the cat is white") yields nothing.
//! 4. Phrases keep the caption's spelling, words joined by one space, first occurrence order,
//!    duplicates dropped.
//!
//! Where it differs from spaCy: no part-of-speech tagging, so verbs outside the lists that are
//! not `-ing`/`-ed` forms ("a dog chases a ball") are taken as content and merge phrases
//! ("a dog chases"); coordinated modifiers split ("a red and white bus" → "white bus" where
//! spaCy gives "a red and white bus"); pronouns ("it", "he") are never phrases (spaCy makes them
//! chunks); a possessive noun stays with its head ("the man's hat" is one phrase, as in spaCy).

/// Articles, demonstratives, possessives, quantifiers and numbers.
pub const DETERMINERS: &[&str] = &[
    "a", "an", "the", "this", "that", "these", "those", "some", "any", "each", "every", "another",
    "no", "its", "his", "her", "their", "our", "my", "your", "several", "many", "few", "both",
    "all", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven",
    "twelve", "dozen", "multiple",
];

/// Words that end a phrase and are never part of one.
pub const BREAKS: &[&str] = &[
    // prepositions and particles
    "on",
    "in",
    "at",
    "with",
    "of",
    "near",
    "by",
    "under",
    "over",
    "behind",
    "next",
    "to",
    "from",
    "for",
    "into",
    "onto",
    "above",
    "below",
    "beside",
    "besides",
    "between",
    "through",
    "across",
    "against",
    "along",
    "around",
    "about",
    "up",
    "down",
    "out",
    "off",
    "inside",
    "outside",
    "atop",
    "beneath",
    "underneath",
    "toward",
    "towards",
    "while",
    "during",
    "without",
    "like",
    "as",
    "than",
    "top",
    "front",
    "side",
    // conjunctions
    "and",
    "or",
    "but",
    "nor",
    "so",
    "yet",
    "if",
    "then",
    "when",
    "where",
    "which",
    "who",
    "whom",
    "whose",
    "what",
    // pronouns
    "it",
    "he",
    "she",
    "they",
    "we",
    "i",
    "you",
    "him",
    "them",
    "us",
    "me",
    "itself",
    "himself",
    "herself",
    "themselves",
    "there",
    "here",
    "someone",
    "something",
    // auxiliaries and common verbs
    "is",
    "are",
    "was",
    "were",
    "be",
    "been",
    "am",
    "has",
    "have",
    "had",
    "do",
    "does",
    "did",
    "can",
    "could",
    "will",
    "would",
    "may",
    "might",
    "should",
    "must",
    "sits",
    "stands",
    "lies",
    "lays",
    "holds",
    "looks",
    "eats",
    "rides",
    "plays",
    "walks",
    "runs",
    "flies",
    "wears",
    "shows",
    "appears",
    "seems",
    "sit",
    "stand",
    "lie",
    "lay",
    "hold",
    "look",
    "eat",
    "ride",
    "play",
    "walk",
    "run",
    "fly",
    "wear",
    "made",
    "taken",
    // adverbs
    "very",
    "not",
    "also",
    "just",
    "together",
    "away",
    "back",
    "very",
    "too",
];

/// `-ing` words that are nouns (or noun modifiers) wherever they stand.
pub const ING_NOUNS: &[&str] = &[
    "building",
    "buildings",
    "ceiling",
    "painting",
    "paintings",
    "clothing",
    "railing",
    "ring",
    "rings",
    "king",
    "thing",
    "things",
    "string",
    "wing",
    "wings",
    "morning",
    "evening",
    "spring",
    "swing",
    "living",
    "dining",
    "parking",
    "bedding",
    "pudding",
    "icing",
    "frosting",
    "stuffing",
    "topping",
    "toppings",
    "wedding",
    "sling",
    "sibling",
    "ceiling",
    "lighting",
    "ping",
    "pong",
    "bowling",
    "skiing",
    "surfing",
    "fishing",
    "sing",
];

/// Adjectives that cannot end a phrase.
pub const ADJECTIVES: &[&str] = &[
    "red",
    "white",
    "black",
    "blue",
    "green",
    "yellow",
    "brown",
    "gray",
    "grey",
    "orange",
    "pink",
    "purple",
    "big",
    "small",
    "large",
    "little",
    "old",
    "young",
    "tall",
    "short",
    "long",
    "dark",
    "bright",
    "empty",
    "full",
    "open",
    "closed",
    "wet",
    "dry",
    "wooden",
    "new",
    "close",
    "different",
    "other",
    "same",
    "cute",
    "pretty",
    "beautiful",
    "happy",
];

#[derive(Clone, Copy, PartialEq, Eq)]
enum Class {
    Det,
    Break,
    Content,
}

fn classify(word: &str, prev: Option<Class>) -> Class {
    let w = word.to_lowercase();
    if DETERMINERS.contains(&w.as_str()) || w.chars().all(|c| c.is_ascii_digit()) {
        return Class::Det;
    }
    if BREAKS.contains(&w.as_str()) {
        return Class::Break;
    }
    let participle = (w.len() > 4 && w.ends_with("ing")) || (w.len() > 3 && w.ends_with("ed"));
    if participle && !ING_NOUNS.contains(&w.as_str()) && prev != Some(Class::Det) {
        return Class::Break;
    }
    Class::Content
}

fn is_word_char(c: char) -> bool {
    c.is_alphanumeric() || c == '\'' || c == '-'
}

/// Splits `text` into words; `None` marks a punctuation boundary.
fn tokens(text: &str) -> Vec<Option<&str>> {
    let mut out = Vec::new();
    let mut start: Option<usize> = None;
    for (i, c) in text.char_indices() {
        if is_word_char(c) {
            start.get_or_insert(i);
            continue;
        }
        if let Some(s) = start.take() {
            out.push(Some(&text[s..i]));
        }
        if !c.is_whitespace() {
            out.push(None);
        }
    }
    if let Some(s) = start {
        out.push(Some(&text[s..]));
    }
    out
}

/// The noun phrases of `caption`, by the rule in the module docs.
///
/// ```
/// use segany_blip::noun_phrases;
/// assert_eq!(
///     noun_phrases("a cat laying on a couch next to a remote control"),
///     vec!["a cat", "a couch", "a remote control"]
/// );
/// ```
pub fn noun_phrases(caption: &str) -> Vec<String> {
    let mut phrases: Vec<String> = Vec::new();
    let mut current: Vec<(&str, Class)> = Vec::new();
    let mut flush = |current: &mut Vec<(&str, Class)>| {
        let last = current.iter().rposition(|(_, c)| *c == Class::Content);
        if let Some(last) = last {
            let end_word = current[last].0.to_lowercase();
            if last + 1 == current.len() && !ADJECTIVES.contains(&end_word.as_str()) {
                let words: Vec<&str> = current.iter().map(|(w, _)| *w).collect();
                let p = words.join(" ");
                if !phrases.contains(&p) {
                    phrases.push(p);
                }
            }
        }
        current.clear();
    };
    let mut prev: Option<Class> = None;
    for tok in tokens(caption) {
        let Some(word) = tok else {
            flush(&mut current);
            prev = None;
            continue;
        };
        let class = classify(word, prev);
        match class {
            Class::Break => flush(&mut current),
            Class::Det => {
                // A determiner after content starts a new phrase ("the dog the cat").
                if current.last().is_some_and(|(_, c)| *c == Class::Content) {
                    flush(&mut current);
                }
                current.push((word, class));
            }
            Class::Content => current.push((word, class)),
        }
        prev = Some(class);
    }
    flush(&mut current);
    phrases
}

#[cfg(test)]
mod tests {
    use super::noun_phrases;

    /// Captions in BLIP's style with the phrases of the rule (spaCy's differences noted).
    #[test]
    fn captions() {
        let cases: &[(&str, &[&str])] = &[
            ("a cat laying on a couch", &["a cat", "a couch"]),
            (
                "two cats sleeping on a pink blanket",
                &["two cats", "a pink blanket"],
            ),
            (
                "a man riding a skateboard down a street",
                &["a man", "a skateboard", "a street"],
            ),
            (
                "there is a dog that is sitting on the grass",
                &["a dog", "the grass"],
            ),
            (
                "a living room with a couch and a television",
                &["a living room", "a couch", "a television"],
            ),
            (
                "a group of people standing around a table",
                &["a group", "people", "a table"],
            ),
            (
                "a plate of food with broccoli and meat",
                &["a plate", "food", "broccoli", "meat"],
            ),
            (
                "a woman in a white dress holding an umbrella",
                &["a woman", "a white dress", "an umbrella"],
            ),
            (
                "the ceiling of a large building",
                &["the ceiling", "a large building"],
            ),
            ("a stuffed animal on a bed", &["a stuffed animal", "a bed"]),
            ("a close up of a cup of coffee", &["a cup", "coffee"]),
            ("the cat is white", &["the cat"]),
            ("a bus, a car and a truck.", &["a bus", "a car", "a truck"]),
            ("a man's hat on a table", &["a man's hat", "a table"]),
            ("a cat and a cat", &["a cat"]),
            ("arafed woman in a space suit", &["woman", "a space suit"]),
            ("", &[]),
            ("on the", &[]),
        ];
        for (caption, want) in cases {
            assert_eq!(noun_phrases(caption), *want, "caption {caption:?}");
        }
    }
}
