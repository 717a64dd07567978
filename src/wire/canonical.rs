//! The canonical JSON that Ed25519 signatures cover, byte for byte what the Python reference
//! signs: `json.dumps(obj, sort_keys=True, ensure_ascii=False, separators=(",", ":"))` (or
//! with `ensure_ascii=True`, which the reference uses for delegation entries).
//!
//! What it takes to match Python exactly: keys sorted by code point, no whitespace, Python's
//! string escapes (`\"`, `\\`, `\n`, `\r`, `\t`, `\b`, `\f`, other control characters as
//! lowercase `\u00XX`, nothing else unless ASCII-only), integers printed exactly however long
//! they are, and floats printed as Python's `repr` prints them (shortest digits that round
//! trip; `1e+16`, `1e-05`, `100.0`, `-0.0`; `NaN`, `Infinity`).
//!
//! Two entry points: [`from_value`] for JSON this node built (a frame, its card), and
//! [`Doc::parse`] for JSON received as text. The second keeps every number as written, so an
//! integer past 64 bits or a float that `serde_json` would round differently is encoded as
//! Python would decode and re-encode it; a signature made by the reference over such data
//! still verifies here.

use std::fmt::Write as _;

use serde_json::Value;

/// Whether non-ASCII characters are written as they are (`ensure_ascii=False`, what cards
/// and frames use) or as `\uXXXX` escapes (`ensure_ascii=True`, delegation entries).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ascii {
    /// `ensure_ascii=False`.
    Keep,
    /// `ensure_ascii=True`.
    Escape,
}

/// Canonical text of a `serde_json` value.
pub fn from_value(value: &Value, ascii: Ascii) -> String {
    let mut out = String::with_capacity(256);
    write_value(&mut out, value, ascii);
    out
}

/// Canonical text of a JSON object without some of its top-level keys (a frame without its
/// `identity` block), with no copy of the object.
pub fn object_without(map: &serde_json::Map<String, Value>, skip: &[&str], ascii: Ascii) -> String {
    let mut out = String::with_capacity(256);
    write_object(
        &mut out,
        map.iter().filter(|(k, _)| !skip.contains(&k.as_str())),
        ascii,
    );
    out
}

fn write_value(out: &mut String, value: &Value, ascii: Ascii) {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(true) => out.push_str("true"),
        Value::Bool(false) => out.push_str("false"),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                let _ = write!(out, "{i}");
            } else if let Some(u) = n.as_u64() {
                let _ = write!(out, "{u}");
            } else {
                write_float(out, n.as_f64().unwrap_or(f64::NAN));
            }
        }
        Value::String(s) => write_str(out, s, ascii),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_value(out, item, ascii);
            }
            out.push(']');
        }
        Value::Object(map) => write_object(out, map.iter(), ascii),
    }
}

fn write_object<'a>(
    out: &mut String,
    entries: impl Iterator<Item = (&'a String, &'a Value)>,
    ascii: Ascii,
) {
    let mut entries: Vec<(&String, &Value)> = entries.collect();
    // Code point order is UTF-8 byte order, which is how `str` compares.
    entries.sort_by(|a, b| a.0.cmp(b.0));
    out.push('{');
    for (i, (k, v)) in entries.into_iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        write_str(out, k, ascii);
        out.push(':');
        write_value(out, v, ascii);
    }
    out.push('}');
}

/// A string as Python's encoder writes it.
fn write_str(out: &mut String, s: &str, ascii: Ascii) {
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
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c if ascii == Ascii::Escape && !(' '..='~').contains(&c) => {
                let mut units = [0u16; 2];
                for unit in c.encode_utf16(&mut units) {
                    let _ = write!(out, "\\u{unit:04x}");
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// A float as Python's `repr` writes it (what `json.dumps` uses), with its spellings of the
/// non-finite values.
fn write_float(out: &mut String, x: f64) {
    if x.is_nan() {
        out.push_str("NaN");
        return;
    }
    if x.is_infinite() {
        out.push_str(if x > 0.0 { "Infinity" } else { "-Infinity" });
        return;
    }
    // Rust's `{:e}` gives the shortest digits that round-trip, as Python's repr does; only
    // the layout differs. `d.ddde±x` → digits and the decimal point position.
    let sci = format!("{x:e}");
    let (mantissa, exp) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exp: i32 = exp.parse().unwrap_or(0);
    let (negative, mantissa) = match mantissa.strip_prefix('-') {
        Some(m) => (true, m),
        None => (false, mantissa),
    };
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    // Python: value = 0.DIGITS × 10^decpt.
    let decpt = exp + 1;
    if negative {
        out.push('-');
    }
    let n = digits.len() as i32;
    if !(-4 < decpt && decpt <= 16) {
        out.push_str(&digits[..1]);
        if n > 1 {
            out.push('.');
            out.push_str(&digits[1..]);
        }
        let e = decpt - 1;
        let _ = write!(out, "e{}{:02}", if e < 0 { '-' } else { '+' }, e.abs());
    } else if decpt <= 0 {
        out.push_str("0.");
        for _ in 0..-decpt {
            out.push('0');
        }
        out.push_str(&digits);
    } else if decpt >= n {
        out.push_str(&digits);
        for _ in 0..decpt - n {
            out.push('0');
        }
        out.push_str(".0");
    } else {
        out.push_str(&digits[..decpt as usize]);
        out.push('.');
        out.push_str(&digits[decpt as usize..]);
    }
}

/// JSON received as text, parsed the way Python's `json.loads` does (numbers kept exact,
/// `NaN`/`Infinity` accepted, a repeated key keeps its last value), ready to be written in
/// canonical form with parts removed.
#[derive(Debug, Clone, PartialEq)]
pub enum Doc {
    /// `null`.
    Null,
    /// `true` / `false`.
    Bool(bool),
    /// An integer, as its exact decimal digits (Python ints have no size limit).
    Int(String),
    /// A float, as Python would hold it.
    Float(f64),
    /// A string.
    Str(String),
    /// An array.
    Arr(Vec<Doc>),
    /// An object, keys unique (the last of repeated keys wins, as in Python).
    Obj(Vec<(String, Doc)>),
}

/// Why received text is not JSON that Python would load.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseError(pub String);

impl std::fmt::Display for ParseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// Nesting deeper than this is refused (Python's default recursion limit is about 1,000).
const MAX_DEPTH: usize = 256;
/// Python refuses to convert integers longer than this many digits (`sys.int_info`).
const MAX_INT_DIGITS: usize = 4300;

impl Doc {
    /// Parses JSON text.
    pub fn parse(text: &str) -> Result<Doc, ParseError> {
        let mut p = Parser {
            s: text.as_bytes(),
            text,
            i: 0,
        };
        p.ws();
        let doc = p.value(0)?;
        p.ws();
        if p.i != p.s.len() {
            return Err(p.err("extra data after the JSON value"));
        }
        Ok(doc)
    }

    /// The value of `key` in an object.
    pub fn get(&self, key: &str) -> Option<&Doc> {
        match self {
            Doc::Obj(entries) => entries.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    /// Mutable [`Doc::get`].
    pub fn get_mut(&mut self, key: &str) -> Option<&mut Doc> {
        match self {
            Doc::Obj(entries) => entries.iter_mut().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    /// Removes `key` from an object; returns its value.
    pub fn remove(&mut self, key: &str) -> Option<Doc> {
        match self {
            Doc::Obj(entries) => {
                let at = entries.iter().position(|(k, _)| k == key)?;
                Some(entries.remove(at).1)
            }
            _ => None,
        }
    }

    /// The string, if this is one.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Doc::Str(s) => Some(s),
            _ => None,
        }
    }

    /// Canonical text.
    pub fn canonical(&self, ascii: Ascii) -> String {
        let mut out = String::with_capacity(256);
        self.write(&mut out, ascii);
        out
    }

    fn write(&self, out: &mut String, ascii: Ascii) {
        match self {
            Doc::Null => out.push_str("null"),
            Doc::Bool(true) => out.push_str("true"),
            Doc::Bool(false) => out.push_str("false"),
            Doc::Int(digits) => out.push_str(digits),
            Doc::Float(x) => write_float(out, *x),
            Doc::Str(s) => write_str(out, s, ascii),
            Doc::Arr(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    item.write(out, ascii);
                }
                out.push(']');
            }
            Doc::Obj(entries) => {
                let mut sorted: Vec<&(String, Doc)> = entries.iter().collect();
                sorted.sort_by(|a, b| a.0.cmp(&b.0));
                out.push('{');
                for (i, (k, v)) in sorted.into_iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    write_str(out, k, ascii);
                    out.push(':');
                    v.write(out, ascii);
                }
                out.push('}');
            }
        }
    }
}

struct Parser<'a> {
    s: &'a [u8],
    text: &'a str,
    i: usize,
}

impl Parser<'_> {
    fn err(&self, what: &str) -> ParseError {
        ParseError(format!("{what} at byte {}", self.i))
    }

    fn ws(&mut self) {
        while let Some(b' ' | b'\t' | b'\n' | b'\r') = self.s.get(self.i) {
            self.i += 1;
        }
    }

    fn eat(&mut self, lit: &str) -> bool {
        if self.s[self.i..].starts_with(lit.as_bytes()) {
            self.i += lit.len();
            true
        } else {
            false
        }
    }

    fn value(&mut self, depth: usize) -> Result<Doc, ParseError> {
        if depth > MAX_DEPTH {
            return Err(self.err("nesting too deep"));
        }
        match self.s.get(self.i) {
            None => Err(self.err("expected a value")),
            Some(b'{') => {
                self.i += 1;
                let mut entries: Vec<(String, Doc)> = Vec::new();
                self.ws();
                if self.eat("}") {
                    return Ok(Doc::Obj(entries));
                }
                loop {
                    self.ws();
                    if self.s.get(self.i) != Some(&b'"') {
                        return Err(self.err("expected a string key"));
                    }
                    let key = self.string()?;
                    self.ws();
                    if !self.eat(":") {
                        return Err(self.err("expected ':'"));
                    }
                    self.ws();
                    let v = self.value(depth + 1)?;
                    match entries.iter_mut().find(|(k, _)| *k == key) {
                        Some(slot) => slot.1 = v,
                        None => entries.push((key, v)),
                    }
                    self.ws();
                    if self.eat(",") {
                        continue;
                    }
                    if self.eat("}") {
                        return Ok(Doc::Obj(entries));
                    }
                    return Err(self.err("expected ',' or '}'"));
                }
            }
            Some(b'[') => {
                self.i += 1;
                let mut items = Vec::new();
                self.ws();
                if self.eat("]") {
                    return Ok(Doc::Arr(items));
                }
                loop {
                    self.ws();
                    items.push(self.value(depth + 1)?);
                    self.ws();
                    if self.eat(",") {
                        continue;
                    }
                    if self.eat("]") {
                        return Ok(Doc::Arr(items));
                    }
                    return Err(self.err("expected ',' or ']'"));
                }
            }
            Some(b'"') => Ok(Doc::Str(self.string()?)),
            Some(b't') if self.eat("true") => Ok(Doc::Bool(true)),
            Some(b'f') if self.eat("false") => Ok(Doc::Bool(false)),
            Some(b'n') if self.eat("null") => Ok(Doc::Null),
            Some(b'N') if self.eat("NaN") => Ok(Doc::Float(f64::NAN)),
            Some(b'I') if self.eat("Infinity") => Ok(Doc::Float(f64::INFINITY)),
            Some(b'-') if self.eat("-Infinity") => Ok(Doc::Float(f64::NEG_INFINITY)),
            Some(b'-' | b'0'..=b'9') => self.number(),
            Some(_) => Err(self.err("unexpected character")),
        }
    }

    fn digits(&mut self) -> usize {
        let start = self.i;
        while let Some(b'0'..=b'9') = self.s.get(self.i) {
            self.i += 1;
        }
        self.i - start
    }

    /// Python's number pattern: `-?(0|[1-9]\d*)(\.\d+)?([eE][-+]?\d+)?`.
    fn number(&mut self) -> Result<Doc, ParseError> {
        let start = self.i;
        let negative = self.eat("-");
        let int_start = self.i;
        match self.s.get(self.i) {
            Some(b'0') => self.i += 1,
            Some(b'1'..=b'9') => {
                self.digits();
            }
            _ => return Err(self.err("expected digits")),
        }
        let int_end = self.i;
        let mut is_float = false;
        if self.s.get(self.i) == Some(&b'.') && matches!(self.s.get(self.i + 1), Some(b'0'..=b'9'))
        {
            self.i += 1;
            self.digits();
            is_float = true;
        }
        if matches!(self.s.get(self.i), Some(b'e' | b'E')) {
            let save = self.i;
            self.i += 1;
            if matches!(self.s.get(self.i), Some(b'+' | b'-')) {
                self.i += 1;
            }
            if self.digits() == 0 {
                // Python's pattern does not take a bare `e`; what follows is then extra data.
                self.i = save;
            } else {
                is_float = true;
            }
        }
        let lexeme = &self.text[start..self.i];
        if is_float {
            let x: f64 = lexeme.parse().map_err(|_| self.err("unreadable number"))?;
            return Ok(Doc::Float(x));
        }
        let digits = &self.text[int_start..int_end];
        if digits.len() > MAX_INT_DIGITS {
            return Err(self.err("integer longer than Python converts"));
        }
        Ok(Doc::Int(if negative && digits != "0" {
            format!("-{digits}")
        } else {
            digits.to_owned()
        }))
    }

    fn hex4(&mut self) -> Result<u32, ParseError> {
        let h = self
            .text
            .get(self.i..self.i + 4)
            .filter(|h| h.bytes().all(|b| b.is_ascii_hexdigit()))
            .ok_or_else(|| self.err("bad \\u escape"))?;
        self.i += 4;
        u32::from_str_radix(h, 16).map_err(|_| self.err("bad \\u escape"))
    }

    fn string(&mut self) -> Result<String, ParseError> {
        self.i += 1; // the opening quote
        let mut out = String::new();
        loop {
            let start = self.i;
            while let Some(&b) = self.s.get(self.i) {
                if b == b'"' || b == b'\\' || b < 0x20 {
                    break;
                }
                self.i += 1;
            }
            out.push_str(&self.text[start..self.i]);
            match self.s.get(self.i) {
                None => return Err(self.err("unterminated string")),
                Some(b'"') => {
                    self.i += 1;
                    return Ok(out);
                }
                Some(b'\\') => {
                    self.i += 1;
                    let Some(&e) = self.s.get(self.i) else {
                        return Err(self.err("unterminated string"));
                    };
                    self.i += 1;
                    match e {
                        b'"' => out.push('"'),
                        b'\\' => out.push('\\'),
                        b'/' => out.push('/'),
                        b'b' => out.push('\u{8}'),
                        b'f' => out.push('\u{c}'),
                        b'n' => out.push('\n'),
                        b'r' => out.push('\r'),
                        b't' => out.push('\t'),
                        b'u' => {
                            let hi = self.hex4()?;
                            let c = if (0xd800..0xdc00).contains(&hi)
                                && self.s[self.i..].starts_with(b"\\u")
                            {
                                let save = self.i;
                                self.i += 2;
                                let lo = self.hex4()?;
                                if (0xdc00..0xe000).contains(&lo) {
                                    char::from_u32(0x10000 + ((hi - 0xd800) << 10) + (lo - 0xdc00))
                                } else {
                                    self.i = save;
                                    None
                                }
                            } else {
                                char::from_u32(hi)
                            };
                            // A lone surrogate: Python keeps it, but then cannot encode the
                            // canonical text as UTF-8 either, so no signature over it verifies.
                            out.push(c.ok_or_else(|| self.err("lone surrogate in string"))?);
                        }
                        _ => return Err(self.err("bad escape")),
                    }
                }
                Some(_) => return Err(self.err("control character in string")),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    use crate::test_support::{arb_json, config};
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(config(256))]

        /// Arbitrary text never panics the parser.
        #[test]
        fn prop_canonical_arbitrary_text_never_panics(text in any::<String>()) {
            let _ = Doc::parse(&text);
        }

        /// For any JSON value: the text path and the value path give the same canonical text;
        /// the canonical text parses back to itself (it is a fixed point); and the
        /// ASCII-escaped form is pure ASCII and decodes to the same value.
        #[test]
        fn prop_canonical_paths_agree_and_are_stable(value in arb_json(), pretty in any::<bool>()) {
            let text = if pretty {
                serde_json::to_string_pretty(&value).unwrap()
            } else {
                value.to_string()
            };
            let keep = from_value(&value, Ascii::Keep);
            prop_assert_eq!(&Doc::parse(&text).unwrap().canonical(Ascii::Keep), &keep);
            prop_assert_eq!(&Doc::parse(&keep).unwrap().canonical(Ascii::Keep), &keep);
            let escaped = from_value(&value, Ascii::Escape);
            prop_assert!(escaped.is_ascii());
            let back: Value = serde_json::from_str(&escaped).unwrap();
            prop_assert_eq!(back, value);
        }

        /// Any finite float prints as something that parses back to the same float, with
        /// Python's layout (a `.` or an exponent always; exponents signed, two digits or more).
        #[test]
        fn prop_canonical_floats_round_trip(bits in any::<u64>()) {
            let x = f64::from_bits(bits);
            prop_assume!(x.is_finite());
            let mut out = String::new();
            write_float(&mut out, x);
            prop_assert_eq!(out.parse::<f64>().unwrap().to_bits(), x.to_bits());
            prop_assert!(out.contains('.') || out.contains("e+") || out.contains("e-"), "{}", out);
            if let Some((_, e)) = out.split_once('e') {
                prop_assert!(e.len() >= 3);
            }
        }
    }

    /// (input, ensure_ascii=False, ensure_ascii=True), generated with Python 3.11:
    /// `json.dumps(json.loads(input), sort_keys=True, ensure_ascii=…, separators=(",", ":"))`.
    const PYTHON_VECTORS: &[(&str, &str, &str)] = &[
        (
            "{\"b\":1,\"a\":[true,false,null],\"é\":\"ü\",\"Z\":\"\\u0000\\u001f\\u007f\\u2028\",\"\\ud83d\\ude00\":\"😀\"}",
            "{\"Z\":\"\\u0000\\u001f\u{7f}\u{2028}\",\"a\":[true,false,null],\"b\":1,\"é\":\"ü\",\"😀\":\"😀\"}",
            "{\"Z\":\"\\u0000\\u001f\\u007f\\u2028\",\"a\":[true,false,null],\"b\":1,\"\\u00e9\":\"\\u00fc\",\"\\ud83d\\ude00\":\"\\ud83d\\ude00\"}",
        ),
        (
            "{\"t\":\"tab\\there \\\"q\\\" back\\\\slash /\\b\\f\\n\\r\",\"k\":{\"z\":{},\"y\":[]}}",
            "{\"k\":{\"y\":[],\"z\":{}},\"t\":\"tab\\there \\\"q\\\" back\\\\slash /\\b\\f\\n\\r\"}",
            "{\"k\":{\"y\":[],\"z\":{}},\"t\":\"tab\\there \\\"q\\\" back\\\\slash /\\b\\f\\n\\r\"}",
        ),
        (
            "[0,-0,1,-1,9007199254740993,123456789012345678901234567890,-18446744073709551616]",
            "[0,0,1,-1,9007199254740993,123456789012345678901234567890,-18446744073709551616]",
            "[0,0,1,-1,9007199254740993,123456789012345678901234567890,-18446744073709551616]",
        ),
        (
            "[0.0,-0.0,1.0,100.0,1e15,1e16,1.5e16,0.0001,0.00001,1.5e-7,0.30000000000000004,1e300,5e-324,1.7976931348623157e308,2.2250738585072014e-308,123456789.125,-2.5,1E400,-1e400,3.14159,6.02214076e23,1e22,1e21,12345678901234567,0.1,1e-4,9.999999999999999e15,99999999999999999]",
            "[0.0,-0.0,1.0,100.0,1000000000000000.0,1e+16,1.5e+16,0.0001,1e-05,1.5e-07,0.30000000000000004,1e+300,5e-324,1.7976931348623157e+308,2.2250738585072014e-308,123456789.125,-2.5,Infinity,-Infinity,3.14159,6.02214076e+23,1e+22,1e+21,12345678901234567,0.1,0.0001,1e+16,99999999999999999]",
            "[0.0,-0.0,1.0,100.0,1000000000000000.0,1e+16,1.5e+16,0.0001,1e-05,1.5e-07,0.30000000000000004,1e+300,5e-324,1.7976931348623157e+308,2.2250738585072014e-308,123456789.125,-2.5,Infinity,-Infinity,3.14159,6.02214076e+23,1e+22,1e+21,12345678901234567,0.1,0.0001,1e+16,99999999999999999]",
        ),
        (
            "{\"zz\":1,\"a\":2,\"A\":3,\"_\":4,\"aa\":5,\"ab\":6,\"é\":7,\"中\":8,\"😀\":9,\"10\":10,\"9\":11}",
            "{\"10\":10,\"9\":11,\"A\":3,\"_\":4,\"a\":2,\"aa\":5,\"ab\":6,\"zz\":1,\"é\":7,\"中\":8,\"😀\":9}",
            "{\"10\":10,\"9\":11,\"A\":3,\"_\":4,\"a\":2,\"aa\":5,\"ab\":6,\"zz\":1,\"\\u00e9\":7,\"\\u4e2d\":8,\"\\ud83d\\ude00\":9}",
        ),
        ("{\"a\":1,\"a\":2}", "{\"a\":2}", "{\"a\":2}"),
    ];

    /// (f64 bits, Python `repr`), random bit patterns and random decimals (seed 11).
    const PYTHON_FLOATS: &[(u64, &str)] = &[
        (0xdda1494c73cf256d, "-1.0539756485530688e+143"),
        (0xdb5b5fab8f4d3e27, "-1.2143721666352482e+132"),
        (0xc7fde805ec99108d, "-6.360375184993316e+38"),
        (0x73ab48767734d7c1, "1.526087629730313e+249"),
        (0xdae445508201e2bd, "-7.02551513787579e+129"),
        (0x309d6b79965eda32, "1.6260771785726701e-74"),
        (0xcdcc69292f45e678, "-5.984009685093657e+66"),
        (0x79cb9e86830c71c2, "4.8959585264576934e+278"),
        (0x9d2c67eda13ffe79, "-3.7634144828029947e-168"),
        (0x2fa91425cb008853, "4.2301541954837196e-79"),
        (0x7253edc618187993, "5.315422088462547e+242"),
        (0x244caf9c4dabb481, "7.893354548061464e-134"),
        (0x89e7d15f17362f25, "-6.0511296129096725e-261"),
        (0xe3eff9c0cf44dd3f, "-2.471417988383651e+173"),
        (0xa26b7f62b1852f27, "-7.046717376279707e-143"),
        (0x986e86cb0ab8ab67, "-5.352667702512672e-191"),
        (0x656abd72fb710734, "3.467443581611296e+180"),
        (0x73f778aaf6fa5db8, "4.201212419249933e+250"),
        (0xbd299753a7677796, "-4.545896140860994e-14"),
        (0xa66b0d389d95847e, "-1.278808376866442e-123"),
        (0x9f8558a628518867, "-7.773821756658801e-157"),
        (0xd4ea65d003d71684, "-1.1547680013076696e+101"),
        (0x102b938b8743feb6, "8.88116792998917e-231"),
        (0x09208a650f3ebdd3, "1.0259476444142278e-264"),
        (0xe12b2b8f30b17d0b, "-1.1937126864956989e+160"),
        (0x998092253deffa38, "-7.616900394922395e-186"),
        (0xc7321cc007b37e14, "-9.404446511312006e+34"),
        (0x5387f61376c468ae, "2.4990667113411633e+94"),
        (0x97491e2370c6a5b8, "-1.6800925191972358e-196"),
        (0x320094ead7a94ded, "7.688121853400444e-68"),
        (0x3bd0334684e55160, "1.3722183439346506e-20"),
        (0x4b4d8474a3ea284d, "5.654411402250841e+54"),
        (0x012d0ea67ff12229, "5.2964948879303666e-303"),
        (0x15c1d2dfa9964aef, "7.106101800028059e-204"),
        (0xa7a1149075139237, "-8.466578551422606e-118"),
        (0x6822a6b24735af1c, "4.254739997646274e+193"),
        (0x8d1fe1daff666589, "-1.82394811931708e-245"),
        (0xee82ec3ffee5a5b2, "-2.1888367315112703e+224"),
        (0x154cd2aad7185dda, "4.48880712297644e-206"),
        (0x4105cca7b53302fc, "178580.96347620327"),
        (0xc20ba2c250b601fc, "-14836845078.750969"),
        (0x834c687a3acb6266, "-8.89603834440535e-293"),
        (0x079dd25a49fe85b0, "5.512596216870721e-272"),
        (0x902a174f11fa2ac0, "-8.402816815872519e-231"),
        (0x1ba1192ec42b7170, "1.3502284154461823e-175"),
        (0x1b98fbe466809a11, "9.864696090544821e-176"),
        (0x4a789cb3d8b9b45c, "5.755304411044234e+50"),
        (0x111b8aaa62f28d1a, "2.906520696062733e-226"),
        (0x0452ef05f542441d, "7.771400548145935e-288"),
        (0xaf5570eed8e94b15, "-1.1301839483341071e-80"),
        (0x36a80bdf0023b682, "2.1060089631924535e-45"),
        (0xed52a24135b00a54, "-4.111104105007642e+218"),
        (0x0d650372e90794df, "3.846903957475949e-244"),
        (0x601e5b4578511608, "1.0175362681840425e+155"),
        (0xb57a6a1dfaf8cda9, "-4.4124872996083094e-51"),
        (0x6b77730f65bd9acb, "4.818254424152078e+209"),
        (0x90f5380e12b2a414, "-5.59818787271577e-227"),
        (0x32d03fdda123f501, "6.171919835623171e-64"),
        (0xacc6d8f2c74c7ccf, "-5.476576641333704e-93"),
        (0x563e9bed45100358, "2.8080761486268174e+107"),
        (0xbeabb4cf049dfef9, "-8.257116033e-07"),
        (0x3f830231104bdb29, "0.009281524000000001"),
        (0xbea1050597781b52, "-5.072241e-07"),
        (0xbfb68890b0396ffd, "-0.08802131941178"),
        (0x41815d4003333333, "36415488.4"),
        (0x4105a4e666666667, "177308.80000000002"),
        (0x41118b18cccccccd, "287430.2"),
        (0xbe8545a1edc00052, "-1.58488766e-07"),
        (0xbe9ee5c8cb735094, "-4.604100456e-07"),
        (0xc2950c7128b9b800, "-5785795571310.0"),
        (0x3ec7cbcb76ce0e6b, "2.8367129999999996e-06"),
        (0x419754ebce000000, "97860339.5"),
        (0xc07e371e3efa91ac, "-483.44488428"),
        (0xbef7df344b68b687, "-2.2766010000000003e-05"),
        (0xbea38bec73b3477a, "-5.82533381e-07"),
        (0x427d7a3c017b0000, "2025676871600.0"),
        (0xc235ca0751d84ccc, "-93583790552.29999"),
        (0xbfb2a6749a743b43, "-0.0728524090848"),
        (0x40045bf33b209272, "2.54489752"),
        (0x436c39facfb8cb60, "6.35603899e+16"),
        (0xbfe3da4e4ebb7119, "-0.62039866807348"),
        (0x41b649fe67143958, "373948007.079"),
        (0x3ec15ec2baf30d01, "2.07068429567e-06"),
        (0xc1fd842971000000, "-7923210000.0"),
        (0x43748c146d36b6f0, "9.25363023e+16"),
        (0x414f37629b020c49, "4091589.2109999997"),
        (0x40843b7c4ce1a5ba, "647.4356935147"),
        (0x3f3a4fc8a65db376, "0.000401484"),
        (0xc2c8b3c3fbbc5f80, "-54320732534975.0"),
        (0x40519eb7fe08aefc, "70.47998000000001"),
        (0xc3698b42e026ada1, "-5.751995010000001e+16"),
        (0xc16270f3046a7efa, "-9668504.138"),
        (0xbeb237dcae75d877, "-1.08589e-06"),
        (0xc1f81ef81cc7ffff, "-6474924492.499999"),
        (0x3eee45220c870467, "1.4433885000000001e-05"),
        (0xc0a58a31986bf217, "-2757.09686601"),
        (0x425244f07f56c8f6, "313864093019.14"),
        (0x3eadfce6dfec15c7, "8.937089999999999e-07"),
        (0xc2fca83b85deb400, "-504142059400000.0"),
        (0xbe9942591fd61e72, "-3.7639099999999997e-07"),
    ];

    #[test]
    fn matches_python_json_dumps() {
        for (input, keep, escape) in PYTHON_VECTORS {
            let doc = Doc::parse(input).expect("vector parses");
            assert_eq!(doc.canonical(Ascii::Keep), *keep, "{input}");
            assert_eq!(doc.canonical(Ascii::Escape), *escape, "{input}");
            // Where serde_json holds the same values, the value path agrees.
            if let Ok(v) = serde_json::from_str::<Value>(input)
                && !input.contains("1E400")
                && !input.contains("123456789012345678901234567890")
                && !input.contains(r#""a":1,"a":2"#)
            {
                assert_eq!(from_value(&v, Ascii::Keep), *keep, "{input}");
                assert_eq!(from_value(&v, Ascii::Escape), *escape, "{input}");
            }
        }
        for (bits, want) in PYTHON_FLOATS {
            let x = f64::from_bits(*bits);
            let mut out = String::new();
            write_float(&mut out, x);
            assert_eq!(out, *want, "{bits:#x}");
            // And through text: the repr parses back to the same canonical form.
            assert_eq!(Doc::parse(want).unwrap().canonical(Ascii::Keep), *want);
        }
    }

    #[test]
    fn floats_print_as_python_repr() {
        for (x, want) in [
            (0.0, "0.0"),
            (-0.0, "-0.0"),
            (1.0, "1.0"),
            (100.0, "100.0"),
            (1e15, "1000000000000000.0"),
            (1e16, "1e+16"),
            (1.5e16, "1.5e+16"),
            (0.0001, "0.0001"),
            (0.00001, "1e-05"),
            (1.5e-7, "1.5e-07"),
            (0.1 + 0.2, "0.30000000000000004"),
            (1e300, "1e+300"),
            (5e-324, "5e-324"),
            (123456789.125, "123456789.125"),
            (-2.5, "-2.5"),
        ] {
            let mut out = String::new();
            write_float(&mut out, x);
            assert_eq!(out, want, "{x:?}");
        }
    }

    #[test]
    fn value_and_text_paths_agree() {
        let v = json!({"b": [1, -2, 3.5, "x\u{e9}\n"], "a": {"z": null, "y": true}});
        let text = v.to_string();
        let doc = Doc::parse(&text).unwrap();
        assert_eq!(doc.canonical(Ascii::Keep), from_value(&v, Ascii::Keep));
        assert_eq!(
            from_value(&v, Ascii::Keep),
            r#"{"a":{"y":true,"z":null},"b":[1,-2,3.5,"xé\n"]}"#
        );
        assert_eq!(
            from_value(&v, Ascii::Escape),
            r#"{"a":{"y":true,"z":null},"b":[1,-2,3.5,"x\u00e9\n"]}"#
        );
    }

    #[test]
    fn text_keeps_numbers_exact_and_refuses_what_python_refuses() {
        let doc =
            Doc::parse(r#"{"n": 123456789012345678901234567890, "m": -0, "f": 1E400}"#).unwrap();
        assert_eq!(
            doc.canonical(Ascii::Keep),
            r#"{"f":Infinity,"m":0,"n":123456789012345678901234567890}"#
        );
        assert_eq!(
            Doc::parse(r#"{"a":1,"a":2}"#)
                .unwrap()
                .canonical(Ascii::Keep),
            r#"{"a":2}"#
        );
        for bad in [
            "",
            "01",
            "[1,]",
            "{\"a\"}",
            "\"\\ud800\"",
            "1e",
            "\"a\u{1}\"",
            "nul",
        ] {
            assert!(Doc::parse(bad).is_err(), "{bad:?}");
        }
    }
}
