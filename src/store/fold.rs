//! The one folding rule search applies to the index and to what the cashier types, so that
//! both sides always meet.
//!
//! - Lower case, and Latin letters lose their marks: `é` → `e`, `ü` → `u`, `å` → `a`.
//! - Letters a foreign keyboard lacks fold to what is typed instead: `ø` → `o`, `æ` → `ae`,
//!   `œ` → `oe`, `ß` → `ss`, `þ` → `th`.
//! - The spellings Norwegian and German use when those keys are missing are the same word:
//!   `aa`, `ae`, `oe` and `ue` become `a`, `a`, `o` and `u` (left to right, a pair at a time).
//!   So "Blåbær", "blabaer", "blaabaer" and "blabar" are one word, "Aasen" finds "Åsen",
//!   "Norrona" and "Norroena" find "Norrøna", "Mueller" finds "Müller", "strasse" finds
//!   "Straße". A cashier typing `ø` always finds `ø`; one typing `o` for it finds it too (and
//!   `ost` then also finds `øst`: never failing to find weighs more than a few extra hits).
//! - Chinese, Japanese and Korean characters are a token each (their words are not separated
//!   by spaces), and what the cashier types in those scripts is searched as a phrase: "ラテ"
//!   finds "抹茶ラテ".
//!
//! Folding is prefix-stable: a prefix of a word folds to a prefix of the folded word (a pair
//! folds to its first letter), so typing a word one letter at a time never loses the product
//! on the way.

/// One searchable unit of folded text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Token {
    pub text: String,
    /// A single CJK character.
    pub cjk: bool,
    /// Nothing separated it from the token before it in the input.
    pub glued: bool,
}

/// Chinese (Han), Japanese kana and Korean Hangul.
fn is_cjk(c: char) -> bool {
    matches!(c as u32,
        0x1100..=0x11FF       // Hangul Jamo
        | 0x2E80..=0x2FDF     // CJK radicals
        | 0x3040..=0x30FF     // Hiragana, Katakana
        | 0x3130..=0x318F     // Hangul compatibility Jamo
        | 0x31F0..=0x31FF     // Katakana phonetic extensions
        | 0x3400..=0x4DBF     // CJK extension A
        | 0x4E00..=0x9FFF     // CJK unified ideographs
        | 0xAC00..=0xD7AF     // Hangul syllables
        | 0xF900..=0xFAFF     // CJK compatibility ideographs
        | 0xFF66..=0xFF9F     // halfwidth Katakana
        | 0x20000..=0x3134F) // CJK extensions B-G
}

/// Combining diacritical marks (decomposed text carries its letters' marks as these).
fn is_combining_mark(c: char) -> bool {
    matches!(c as u32,
        0x0300..=0x036F       // combining diacritical marks
        | 0x1AB0..=0x1AFF     // extended
        | 0x1DC0..=0x1DFF     // supplement
        | 0x20D0..=0x20FF     // for symbols
        | 0xFE20..=0xFE2F) // half marks
}

/// A lower-case letter's folded spelling (`None`: the letter itself).
fn fold_char(c: char) -> Option<&'static str> {
    Some(match c {
        'à' | 'á' | 'â' | 'ã' | 'ä' | 'å' | 'ā' | 'ă' | 'ą' => "a",
        'æ' => "ae",
        'ç' | 'ć' | 'ĉ' | 'ċ' | 'č' => "c",
        'ď' | 'đ' | 'ð' => "d",
        'è' | 'é' | 'ê' | 'ë' | 'ē' | 'ĕ' | 'ė' | 'ę' | 'ě' => "e",
        'ĝ' | 'ğ' | 'ġ' | 'ģ' => "g",
        'ĥ' | 'ħ' => "h",
        'ì' | 'í' | 'î' | 'ï' | 'ĩ' | 'ī' | 'ĭ' | 'į' | 'ı' => "i",
        'ĳ' => "ij",
        'ĵ' => "j",
        'ķ' => "k",
        'ĺ' | 'ļ' | 'ľ' | 'ŀ' | 'ł' => "l",
        'ñ' | 'ń' | 'ņ' | 'ň' | 'ŉ' => "n",
        'ò' | 'ó' | 'ô' | 'õ' | 'ö' | 'ø' | 'ō' | 'ŏ' | 'ő' => "o",
        'œ' => "oe",
        'ŕ' | 'ŗ' | 'ř' => "r",
        'ś' | 'ŝ' | 'ş' | 'š' | 'ſ' => "s",
        'ß' => "ss",
        'ţ' | 'ť' | 'ŧ' => "t",
        'þ' => "th",
        'ù' | 'ú' | 'û' | 'ü' | 'ũ' | 'ū' | 'ŭ' | 'ů' | 'ű' | 'ų' => "u",
        'ŵ' => "w",
        'ý' | 'ÿ' | 'ŷ' => "y",
        'ź' | 'ż' | 'ž' => "z",
        _ => return None,
    })
}

struct Folder {
    tokens: Vec<Token>,
    word: String,
    word_glued: bool,
    /// The last letter of the current word, while it may start a pair.
    pair_start: Option<char>,
    /// No separator since the last token ended.
    touching: bool,
}

impl Folder {
    fn end_word(&mut self) {
        if !self.word.is_empty() {
            self.tokens.push(Token {
                text: std::mem::take(&mut self.word),
                cjk: false,
                glued: self.word_glued,
            });
            self.touching = true;
        }
        self.pair_start = None;
    }

    fn separator(&mut self) {
        self.end_word();
        self.touching = false;
    }

    fn letter(&mut self, c: char) {
        if is_combining_mark(c) {
            // A mark written apart from its letter (decomposed text, NFD: "a" + U+030A is
            // "å") is dropped like the mark of a composed letter, never a word break.
            return;
        }
        if is_cjk(c) {
            self.end_word();
            self.tokens.push(Token {
                text: c.to_string(),
                cjk: true,
                glued: self.touching && !self.tokens.is_empty(),
            });
            self.touching = true;
            return;
        }
        if !c.is_alphanumeric() {
            self.separator();
            return;
        }
        if let Some(first) = self.pair_start {
            if matches!(
                (first, c),
                ('a', 'a') | ('a', 'e') | ('o', 'e') | ('u', 'e')
            ) {
                // The pair folds to its first letter, already written.
                self.pair_start = None;
                return;
            }
        }
        if self.word.is_empty() {
            self.word_glued = self.touching && !self.tokens.is_empty();
        }
        self.word.push(c);
        self.pair_start = matches!(c, 'a' | 'o' | 'u').then_some(c);
    }

    fn feed(&mut self, c: char) {
        for lower in c.to_lowercase() {
            match fold_char(lower) {
                Some(s) => s.chars().for_each(|f| self.letter(f)),
                None => self.letter(lower),
            }
        }
    }
}

/// The folded tokens of `text`, in order.
pub(crate) fn tokens(text: &str) -> Vec<Token> {
    let mut f = Folder {
        tokens: Vec::new(),
        word: String::new(),
        word_glued: false,
        pair_start: None,
        touching: false,
    };
    text.chars().for_each(|c| f.feed(c));
    f.end_word();
    f.tokens
}

/// What the index holds for `text`: its folded tokens separated by spaces.
pub(crate) fn fold(text: &str) -> String {
    let toks = tokens(text);
    let mut out = String::with_capacity(text.len() + toks.len());
    for (i, t) in toks.iter().enumerate() {
        if i > 0 {
            out.push(' ');
        }
        out.push_str(&t.text);
    }
    out
}

/// An FTS5 query for what the cashier typed: every word must match as a prefix; words typed
/// together without a space in between (a CJK run, "抹茶latte") must match as a phrase.
/// Empty when nothing searchable was typed.
pub(crate) fn fts_query(text: &str) -> String {
    query_groups(text)
        .iter()
        .map(|g| format!("\"{}\"*", g.join(" ")))
        .collect::<Vec<_>>()
        .join(" ")
}

/// What the cashier typed as [`fts_query`] groups it: each group's tokens must follow each
/// other in one column, its last one as a prefix; every group must match.
pub(crate) fn query_groups(text: &str) -> Vec<Vec<String>> {
    let mut groups: Vec<Vec<String>> = Vec::new();
    for t in tokens(text) {
        match groups.last_mut() {
            Some(g) if t.glued => g.push(t.text),
            _ => groups.push(vec![t.text]),
        }
    }
    groups
}

/// Whether `groups` ([`query_groups`]) match a row whose columns' folded tokens are
/// `columns`, as the FTS5 query [`fts_query`] makes of them matches the index: each group a
/// phrase inside one column (its tokens in a row, the last one a prefix), any column.
pub(crate) fn groups_match(groups: &[Vec<String>], columns: &[Vec<String>]) -> bool {
    groups.iter().all(|g| {
        let Some((last, head)) = g.split_last() else {
            return true;
        };
        columns.iter().any(|col| {
            col.len() >= g.len()
                && (0..=col.len() - g.len()).any(|i| {
                    head.iter().zip(&col[i..]).all(|(q, t)| q == t)
                        && col[i + head.len()].starts_with(last.as_str())
                })
        })
    })
}

/// The version of the folding rules ([`fold`], [`sort_key`]). What the index holds was
/// folded by the rules of the version stored beside it (`sync_state` key
/// [`FOLD_VERSION_KEY`]); a database folded by other rules (or before the version was
/// kept: rules 1, without decomposed marks) is folded again once, at open
/// (`schema::migrate`). Bump it with every change to either function's output.
pub(crate) const FOLD_VERSION: i64 = 2;
pub(crate) const FOLD_VERSION_KEY: &str = "search.fold_version";

/// The bytes a name sorts by in a listing, as a Norwegian cashier expects: letters without
/// regard to case; marks dropped (`é` as `e`, `ü` as `u`) except that `æ`, `ø` and `å`
/// are letters of their own after `z`, in that order (`ä` sorts as `æ`, `ö` as `ø`, as in
/// Norwegian dictionaries; decomposed `å`, `ä`, `ö` as composed); `ß` as `ss`; spaces and
/// punctuation before digits, digits before letters; other scripts after Latin, by code
/// point. Compared bytewise (SQLite's BLOB order), so an index on it is the listing order.
pub(crate) fn sort_key(text: &str) -> Vec<u8> {
    const AE: u8 = b'z' + 1;
    const OE: u8 = b'z' + 2;
    const AA: u8 = b'z' + 3;
    let mut key: Vec<u8> = Vec::with_capacity(text.len());
    // Whether the last byte written is a letter a following combining mark may change.
    let mut last_letter: Option<u8> = None;
    for c in text.chars() {
        if is_combining_mark(c) {
            // Decomposed text: a ring over `a` is `å`, a diaeresis over `a`/`o` is `æ`/`ø`;
            // every other mark is dropped like a composed letter's.
            let replaced = match (last_letter, c) {
                (Some(b'a'), '\u{30A}') => Some(AA),
                (Some(b'a'), '\u{308}') => Some(AE),
                (Some(b'o'), '\u{308}') => Some(OE),
                _ => None,
            };
            if let Some(r) = replaced {
                if let Some(l) = key.last_mut() {
                    *l = r;
                }
                last_letter = None;
            }
            continue;
        }
        last_letter = None;
        for lower in c.to_lowercase() {
            match lower {
                'æ' | 'ä' | 'ǽ' | 'ǣ' => key.push(AE),
                'ø' | 'ö' | 'ǿ' => key.push(OE),
                'å' | 'ǻ' => key.push(AA),
                'a'..='z' => {
                    key.push(lower as u8);
                    last_letter = Some(lower as u8);
                }
                '0'..='9' => key.push(lower as u8),
                // `İ` lower-cases to `i` and a combining dot.
                c if is_combining_mark(c) => {}
                c if c.is_whitespace() => key.push(b' '),
                c if c.is_ascii() => key.push(b'!'),
                c => match fold_char(c) {
                    Some(f) => key.extend_from_slice(f.as_bytes()),
                    None if c.is_alphanumeric() => {
                        let mut buf = [0u8; 4];
                        key.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
                    }
                    // Punctuation and symbols of other blocks: with the ASCII ones.
                    None => key.push(b'!'),
                },
            }
        }
    }
    key
}

/// Registers `fo_fold(text)` (the index side of [`fold`], used by the search triggers) on a
/// connection that writes the catalog.
pub(crate) fn register(conn: &rusqlite::Connection) -> rusqlite::Result<()> {
    use rusqlite::functions::FunctionFlags;
    conn.create_scalar_function(
        "fo_fold",
        1,
        FunctionFlags::SQLITE_UTF8
            | FunctionFlags::SQLITE_DETERMINISTIC
            | FunctionFlags::SQLITE_INNOCUOUS,
        // The catalog's text columns hold text (TEXT affinity) or NULL.
        |ctx| Ok(ctx.get::<Option<String>>(0)?.map(|t| fold(&t))),
    )?;
    conn.create_scalar_function(
        "fo_sort_key",
        1,
        FunctionFlags::SQLITE_UTF8
            | FunctionFlags::SQLITE_DETERMINISTIC
            | FunctionFlags::SQLITE_INNOCUOUS,
        |ctx| Ok(sort_key(&ctx.get::<Option<String>>(0)?.unwrap_or_default())),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nordic_and_german_spellings_fold_together() {
        for (a, b) in [
            ("Blåbær", "blabaer"),
            ("Blåbær", "blaabaer"),
            ("Blåbær", "blabar"),
            ("Norrøna", "norrona"),
            ("Norrøna", "NORROENA"),
            ("Åsen", "Aasen"),
            ("Straße", "strasse"),
            ("Müller", "mueller"),
            ("Müller", "muller"),
            ("Crème brûlée", "creme brulee"),
            ("Smørbrød", "smorbrod"),
            ("Ærfugl", "aerfugl"),
        ] {
            assert_eq!(fold(a), fold(b), "{a} / {b}");
        }
        assert_eq!(fold("Øl"), "ol");
        assert_eq!(fold("SKU-100 XL"), "sku 100 xl");
    }

    /// Review (reviewa): decomposed text (NFD, as some systems store and some keyboards
    /// send it) carries marks as separate characters; they split words ("Ålesund" in NFD
    /// folded to "a lesund", so "ålesund" typed composed did not find it).
    #[test]
    fn decomposed_marks_fold_like_composed_letters() {
        for (composed, decomposed) in [
            ("Ålesund", "A\u{30A}lesund"),
            ("Blåbær", "Bla\u{30A}bær"),
            ("Müller Café", "Mu\u{308}ller Cafe\u{301}"),
            ("Crème brûlée", "Cre\u{300}me bru\u{302}le\u{301}e"),
        ] {
            assert_eq!(fold(decomposed), fold(composed), "{decomposed:?}");
            assert_eq!(fts_query(decomposed), fts_query(composed), "{decomposed:?}");
        }
    }

    #[test]
    fn a_prefix_folds_to_a_prefix() {
        for word in [
            "blåbærsyltetøy",
            "aaaeoeue",
            "Straße",
            "Norrøna",
            "Ærfuglædun",
            "Mueller",
            "抹茶ラテ",
        ] {
            let whole = fold(word);
            let chars: Vec<char> = word.chars().collect();
            for n in 1..=chars.len() {
                let p: String = chars[..n].iter().collect();
                assert!(
                    whole.starts_with(&fold(&p)),
                    "{p:?} -> {:?} is no prefix of {whole:?}",
                    fold(&p)
                );
            }
        }
    }

    #[test]
    fn cjk_characters_are_tokens_and_typed_runs_are_phrases() {
        assert_eq!(fold("抹茶ラテ 500ml"), "抹 茶 ラ テ 500ml");
        assert_eq!(fold("김치 볶음밥"), "김 치 볶 음 밥");
        assert_eq!(fts_query("ラテ"), "\"ラ テ\"*");
        assert_eq!(fts_query("茶la"), "\"茶 la\"*");
        assert_eq!(fts_query("抹茶 ラテ"), "\"抹 茶\"* \"ラ テ\"*");
    }

    /// Issue 12: listings sorted names bytewise ("Zalo" before "banan", "Øl" before "ål"
    /// wrong, "Épler" after every ASCII name). A Norwegian cashier expects case ignored,
    /// marks ignored, and Æ Ø Å after Z in that order.
    #[test]
    fn names_sort_as_a_norwegian_cashier_expects() {
        let mut names = vec![
            "Ål",
            "øl",
            "Zalo",
            "banan",
            "Æble",
            "Épler",
            "eple",
            "Abc",
            "ärt",
            "Ørret",
            "Zzz",
            "10 egg",
            "2 egg",
            "Äpple",
            "Öl",
            "A\u{30A}s",
            "aas",
            "Crème",
            "creme",
            "Straße",
            "strasse",
            "ost",
            "Ost",
            "ås",
        ];
        names.sort_by(|a, b| sort_key(a).cmp(&sort_key(b)).then(a.cmp(b)));
        assert_eq!(
            names,
            [
                "10 egg",
                "2 egg",
                "aas",
                "Abc",
                "banan",
                "Crème",
                "creme",
                "eple",
                "Épler",
                "Ost",
                "ost",
                "Straße",
                "strasse",
                "Zalo",
                "Zzz",
                "Æble",
                "Äpple",
                "ärt",
                "Öl",
                "øl",
                "Ørret",
                "Ål",
                "A\u{30A}s",
                "ås",
            ]
        );
        // Whatever the case or composition, one name has one key.
        assert_eq!(sort_key("ÅS"), sort_key("a\u{30A}s"));
        assert_eq!(sort_key("BLÅBÆR"), sort_key("blåbær"));
    }

    #[test]
    fn queries_are_quoted_prefix_terms_and_punctuation_is_nothing() {
        assert_eq!(fts_query("ull gen"), "\"ull\"* \"gen\"*");
        assert_eq!(fts_query("SKU-1 \"x"), "\"sku\"* \"1\"* \"x\"*");
        assert_eq!(fts_query("  --  "), "");
        assert_eq!(fts_query("\"*"), "");
        assert_eq!(fts_query("Straße"), "\"strasse\"*");
    }
}
