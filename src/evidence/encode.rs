//! JSON encoding byte-identical to Go's `encoding/json`, which the reference daemon hashes.
//!
//! serde_json already writes compact JSON with Go's escapes for `"`, `\` and control characters (`\b`, `\f`, `\n`,
//! `\r`, `\t`, otherwise `\u00xx` in lower-case hex). Go additionally escapes `<`, `>` and `&` (HTML safety) and
//! U+2028/U+2029 (JavaScript safety); the formatter below adds exactly those.

use std::io;

use serde::Serialize;
use serde_json::ser::Formatter;

/// Formatter's default methods write compact JSON, as Go does; only string fragments need more escaping.
struct GoFormatter;

impl Formatter for GoFormatter {
    fn write_string_fragment<W: ?Sized + io::Write>(&mut self, writer: &mut W, fragment: &str) -> io::Result<()> {
        // Most fragments hold none of these: `<`, `>`, `&`, or 0xE2, the first byte of U+2028 and U+2029. A fold
        // without an early exit, so the compiler can check many bytes at a time.
        let suspect = fragment
            .bytes()
            .fold(false, |found, byte| found | matches!(byte, b'<' | b'>' | b'&' | 0xE2));
        if !suspect {
            return writer.write_all(fragment.as_bytes());
        }
        let mut start = 0;
        for (at, ch) in fragment.char_indices() {
            let escaped = match ch {
                '<' => "\\u003c",
                '>' => "\\u003e",
                '&' => "\\u0026",
                '\u{2028}' => "\\u2028",
                '\u{2029}' => "\\u2029",
                _ => continue,
            };
            writer.write_all(&fragment.as_bytes()[start..at])?;
            writer.write_all(escaped.as_bytes())?;
            start = at + ch.len_utf8();
        }
        writer.write_all(&fragment.as_bytes()[start..])
    }
}

/// Lower-case hex of `bytes`, as `hex::encode` writes it, from a table rather than one `char` at a time: the writer
/// makes three of these for every record (its id, its hash, its HMAC signature).
pub(crate) fn lower_hex(bytes: &[u8]) -> String {
    let mut digits = vec![0u8; bytes.len() * 2];
    hex::encode_to_slice(bytes, &mut digits).expect("two digits per byte");
    String::from_utf8(digits).expect("hex digits are ASCII")
}

/// Compact Go-style JSON of `value` (what Go's `json.Marshal` returns).
pub(crate) fn to_vec<T: Serialize + ?Sized>(value: &T) -> Vec<u8> {
    let mut out = Vec::with_capacity(512);
    write(&mut out, value);
    out
}

/// Appends the compact Go-style JSON of `value` to `out`.
pub(crate) fn write<T: Serialize + ?Sized>(out: &mut Vec<u8>, value: &T) {
    let mut serializer = serde_json::Serializer::with_formatter(out, GoFormatter);
    // Our evidence types are plain structs of strings, numbers and string-keyed maps: writing them to memory
    // cannot fail.
    value
        .serialize(&mut serializer)
        .expect("evidence types serialise to JSON");
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode(value: &str) -> String {
        String::from_utf8(to_vec(value)).unwrap()
    }

    #[test]
    fn escapes_html_characters_like_go() {
        assert_eq!(
            encode("<a href=\"x\">&</a>"),
            r#""\u003ca href=\"x\"\u003e\u0026\u003c/a\u003e""#
        );
        assert_eq!(encode("<redacted-oidc-jwt>"), r#""\u003credacted-oidc-jwt\u003e""#);
    }

    #[test]
    fn escapes_line_and_paragraph_separators() {
        assert_eq!(encode("a\u{2028}b\u{2029}c"), r#""a\u2028b\u2029c""#);
    }

    #[test]
    fn escapes_control_characters_like_go() {
        assert_eq!(
            encode("\n\r\t\u{8}\u{c}\u{0}\u{1f}\u{7f}"),
            r#""\n\r\t\b\f\u0000\u001f"#.to_owned() + "\u{7f}\""
        );
        assert_eq!(encode("back\\slash \"quoted\""), r#""back\\slash \"quoted\"""#);
    }

    #[test]
    fn leaves_other_unicode_raw() {
        assert_eq!(encode("é 日本 😀"), "\"é 日本 😀\"");
    }

    #[test]
    fn escapes_keys_and_writes_compactly() {
        let value = serde_json::json!({"a<b": [1, "&"], "c": {"d": null}});
        assert_eq!(
            String::from_utf8(to_vec(&value)).unwrap(),
            r#"{"a\u003cb":[1,"\u0026"],"c":{"d":null}}"#
        );
    }
}
