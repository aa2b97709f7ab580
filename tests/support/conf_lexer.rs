//! pgpool.conf read back the way pgpool 4.3.5 reads it (`src/config/pool_config.l`,
//! `ParseConfigFile`), so tests can check that what we render means exactly what we intended.
//! A test oracle, so it lives with the tests (it was once in src/); its own checks are in
//! `tests/suite/selftest.rs`.
//!
//! pgpool's lexer, in flex terms (longest match wins, ties go to the earlier rule):
//!
//! ```text
//! \n                                   EOL
//! [ \t\r]+                             skipped
//! #.*$                                 skipped (a comment needs the newline after it)
//! KEY       {LETTER}{LETTER_OR_DIGIT}*
//! STRING    '([^'\n]|\\.)*'            the quotes are stripped, nothing is unescaped
//! UNQUOTED  {LETTER}({LETTER_OR_DIGIT}|[-._:/])*
//! INTEGER   [-+]?([0-9]+|0x[0-9a-fA-F]+)[a-zA-Z]*
//! REAL      [-+]?[0-9]*"."[0-9]*([Ee][-+]?[0-9]+)?
//! =                                    EQUALS
//! .                                    PARSE_ERROR
//! LETTER = [A-Za-z_\200-\377], LETTER_OR_DIGIT = [A-Za-z_0-9\200-\377]
//! ```
//!
//! and its parser: skip EOLs; a KEY must come next (anything else is a syntax error); an
//! optional `=`; then *any* token is the value, even an EOL or an error token. Nothing demands
//! an EOL after the value, which is why `'x' port = 6433 #'` sets `port` (docs/pgpool.md, "pgpool.conf has no escaping").
//!
//! Pure and byte-based, as pgpool is: bytes >= 0x80 are letters.

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Key,
    String,
    Unquoted,
    Integer,
    Real,
    Equals,
    Eol,
    /// Any byte no other rule takes; pgpool's POOL_PARSE_ERROR.
    Error,
    /// End of input; pgpool's token 0.
    Eof,
}

/// One `key = value` as pgpool records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub key: String,
    /// After `extract_string`: a quoted value without its quotes, anything else verbatim.
    pub value: String,
    /// The kind of the value token: a value that is not `String` for a key we quote means the
    /// quoting broke.
    pub kind: Kind,
    /// 1-based line of the key.
    pub line: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyntaxError {
    pub line: usize,
    pub text: String,
}

impl fmt::Display for SyntaxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "parse error at line {} {:?}", self.line, self.text)
    }
}

impl std::error::Error for SyntaxError {}

fn is_letter(b: u8) -> bool {
    b.is_ascii_alphabetic() || b == b'_' || b >= 0x80
}

fn is_letter_or_digit(b: u8) -> bool {
    is_letter(b) || b.is_ascii_digit()
}

/// Length of the longest match of each rule at the start of `s`; 0 = no match.
fn key_len(s: &[u8]) -> usize {
    match s.first() {
        Some(&b) if is_letter(b) => {
            1 + s[1..]
                .iter()
                .take_while(|&&b| is_letter_or_digit(b))
                .count()
        }
        _ => 0,
    }
}

fn unquoted_len(s: &[u8]) -> usize {
    match s.first() {
        Some(&b) if is_letter(b) => {
            1 + s[1..]
                .iter()
                .take_while(|&&b| {
                    is_letter_or_digit(b) || matches!(b, b'-' | b'.' | b'_' | b':' | b'/')
                })
                .count()
        }
        _ => 0,
    }
}

/// `'([^'\n]|\\.)*'`: the longest prefix that is a complete string. Backtracking matters:
/// `'abc\'` matches whole (the `\` taken as an ordinary character), and so does `'a\'b'`
/// (`\'` taken as a pair), so every closing quote reachable by some path is a candidate.
fn string_len(s: &[u8]) -> usize {
    if s.first() != Some(&b'\'') {
        return 0;
    }
    // reach[i]: position i (after the opening quote) can be reached inside the string.
    let mut reach = vec![false; s.len() + 1];
    reach[1] = true;
    let mut best = 0;
    for i in 1..s.len() {
        if !reach[i] {
            continue;
        }
        let b = s[i];
        if b == b'\'' {
            best = i + 1;
        }
        if b != b'\'' && b != b'\n' {
            reach[i + 1] = true;
        }
        // `\\.`: flex's `.` is any byte but newline.
        if b == b'\\' && i + 1 < s.len() && s[i + 1] != b'\n' {
            reach[i + 2] = true;
        }
    }
    best
}

fn digits(s: &[u8], hex: bool) -> usize {
    s.iter()
        .take_while(|b| {
            if hex {
                b.is_ascii_hexdigit()
            } else {
                b.is_ascii_digit()
            }
        })
        .count()
}

fn sign_len(s: &[u8]) -> usize {
    usize::from(matches!(s.first(), Some(b'-' | b'+')))
}

fn integer_len(s: &[u8]) -> usize {
    let sign = sign_len(s);
    let rest = &s[sign..];
    let mut best = 0;
    let dec = digits(rest, false);
    if dec > 0 {
        best = dec;
    }
    if rest.starts_with(b"0x") {
        let hex = digits(&rest[2..], true);
        if hex > 0 {
            best = best.max(2 + hex);
        }
    }
    if best == 0 {
        return 0;
    }
    let units = rest[best..]
        .iter()
        .take_while(|b| b.is_ascii_alphabetic())
        .count();
    sign + best + units
}

fn real_len(s: &[u8]) -> usize {
    let sign = sign_len(s);
    let rest = &s[sign..];
    let int = digits(rest, false);
    if rest.get(int) != Some(&b'.') {
        return 0;
    }
    let frac = digits(&rest[int + 1..], false);
    let mut n = int + 1 + frac;
    if matches!(rest.get(n), Some(b'e' | b'E')) {
        let esign = sign_len(&rest[n + 1..]);
        let exp = digits(&rest[n + 1 + esign..], false);
        if exp > 0 {
            n += 1 + esign + exp;
        }
    }
    sign + n
}

/// Every token of `text`, with its line, ending with `Eof`.
pub fn tokens(text: &str) -> Vec<(Kind, String, usize)> {
    let s = text.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    let mut line = 1;
    while i < s.len() {
        let rest = &s[i..];
        match rest[0] {
            b'\n' => {
                out.push((Kind::Eol, "\n".to_string(), line));
                line += 1;
                i += 1;
                continue;
            }
            b' ' | b'\t' | b'\r' => {
                i += 1;
                continue;
            }
            b'#' => {
                // `#.*$`: only when a newline follows; at end of input `#` is an error byte.
                if let Some(nl) = rest.iter().position(|&b| b == b'\n') {
                    i += nl;
                    continue;
                }
            }
            _ => {}
        }
        // Rules in flex order; `max_by_key` would keep the last maximum, so compare by hand.
        let candidates = [
            (Kind::Key, key_len(rest)),
            (Kind::String, string_len(rest)),
            (Kind::Unquoted, unquoted_len(rest)),
            (Kind::Integer, integer_len(rest)),
            (Kind::Real, real_len(rest)),
            (Kind::Equals, usize::from(rest[0] == b'=')),
            (Kind::Error, 1),
        ];
        let mut best = candidates[0];
        for c in candidates {
            if c.1 > best.1 {
                best = c;
            }
        }
        let (kind, len) = best;
        out.push((
            kind,
            String::from_utf8_lossy(&rest[..len]).into_owned(),
            line,
        ));
        i += len;
    }
    out.push((Kind::Eof, String::new(), line));
    out
}

/// The entries pgpool would record, in file order (the last of a repeated key wins in pgpool).
pub fn parse(text: &str) -> Result<Vec<Entry>, SyntaxError> {
    let toks = tokens(text);
    let mut it = toks.into_iter().peekable();
    let mut entries = Vec::new();
    while let Some((kind, tok, line)) = it.next() {
        match kind {
            Kind::Eof => break,
            Kind::Eol => continue,
            Kind::Key => {}
            _ => return Err(SyntaxError { line, text: tok }),
        }
        let mut value = it.next().unwrap_or((Kind::Eof, String::new(), line));
        if value.0 == Kind::Equals {
            value = it.next().unwrap_or((Kind::Eof, String::new(), line));
        }
        let (vkind, vtext, _) = value;
        let v = if vkind == Kind::String {
            vtext[1..vtext.len() - 1].to_string()
        } else {
            vtext
        };
        entries.push(Entry {
            key: tok,
            value: v,
            kind: vkind,
            line,
        });
        // A value token of EOF ends the file: pgpool's next yylex returns 0 as well.
        if vkind == Kind::Eof {
            break;
        }
    }
    Ok(entries)
}
