//! The text encodings of FHIRPath 2.1 `encode`/`decode` (`base64`, `urlbase64`, `hex`) and
//! `escape`/`unescape` (`html`, `json`), written out here because they are a few lines each
//! and not worth a dependency.

const BASE64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
const URL_BASE64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// `text` encoded in `format`; `None` for an unknown format.
pub(crate) fn encode(text: &str, format: &str) -> Option<String> {
    match format {
        "base64" => Some(base64_encode(text.as_bytes(), BASE64)),
        "urlbase64" => Some(base64_encode(text.as_bytes(), URL_BASE64)),
        "hex" => Some(text.bytes().map(|byte| format!("{byte:02x}")).collect()),
        _ => None,
    }
}

/// `text` decoded from `format`; `None` for an unknown format, bad input or non-UTF-8 bytes.
pub(crate) fn decode(text: &str, format: &str) -> Option<String> {
    let bytes = match format {
        "base64" => base64_decode(text, BASE64)?,
        "urlbase64" => base64_decode(text, URL_BASE64)?,
        "hex" => {
            if !text.len().is_multiple_of(2) {
                return None;
            }
            (0..text.len())
                .step_by(2)
                .map(|at| u8::from_str_radix(text.get(at..at + 2)?, 16).ok())
                .collect::<Option<_>>()?
        }
        _ => return None,
    };
    String::from_utf8(bytes).ok()
}

/// `text` escaped for `format` (`html` or `json`).
pub(crate) fn escape(text: &str, format: &str) -> Option<String> {
    let mut out = String::with_capacity(text.len());
    for character in text.chars() {
        match (format, character) {
            ("html", '&') => out.push_str("&amp;"),
            ("html", '<') => out.push_str("&lt;"),
            ("html", '>') => out.push_str("&gt;"),
            ("html", '"') => out.push_str("&quot;"),
            ("html", '\'') => out.push_str("&#39;"),
            ("json", '"') => out.push_str("\\\""),
            ("json", '\\') => out.push_str("\\\\"),
            ("json", '\n') => out.push_str("\\n"),
            ("json", '\r') => out.push_str("\\r"),
            ("json", '\t') => out.push_str("\\t"),
            ("html" | "json", other) => out.push(other),
            _ => return None,
        }
    }
    Some(out)
}

/// `text` unescaped from `format` (`html` or `json`).
pub(crate) fn unescape(text: &str, format: &str) -> Option<String> {
    match format {
        "html" => Some(
            text.replace("&lt;", "<")
                .replace("&gt;", ">")
                .replace("&quot;", "\"")
                .replace("&#39;", "'")
                .replace("&apos;", "'")
                .replace("&amp;", "&"),
        ),
        "json" => {
            let mut out = String::with_capacity(text.len());
            let mut characters = text.chars();
            while let Some(character) = characters.next() {
                if character != '\\' {
                    out.push(character);
                    continue;
                }
                match characters.next() {
                    Some('n') => out.push('\n'),
                    Some('r') => out.push('\r'),
                    Some('t') => out.push('\t'),
                    Some(other) => out.push(other),
                    None => out.push('\\'),
                }
            }
            Some(out)
        }
        _ => None,
    }
}

fn base64_encode(bytes: &[u8], alphabet: &[u8; 64]) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let group =
            chunk.iter().enumerate().fold(0u32, |group, (index, byte)| group | u32::from(*byte) << (16 - 8 * index));
        for index in 0..4 {
            if index <= chunk.len() {
                out.push(char::from(alphabet[(group >> (18 - 6 * index) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn base64_decode(text: &str, alphabet: &[u8; 64]) -> Option<Vec<u8>> {
    let symbols = text.trim_end_matches('=').as_bytes();
    let mut out = Vec::with_capacity(symbols.len() * 3 / 4);
    let mut group = 0u32;
    let mut bits = 0;
    for symbol in symbols {
        let value = alphabet.iter().position(|candidate| candidate == symbol)?;
        group = group << 6 | value as u32;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((group >> bits & 0xff) as u8);
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips() {
        assert_eq!(encode("subjects?_d", "base64").as_deref(), Some("c3ViamVjdHM/X2Q="));
        assert_eq!(encode("subjects?_d", "urlbase64").as_deref(), Some("c3ViamVjdHM_X2Q="));
        assert_eq!(decode("dGVzdA==", "base64").as_deref(), Some("test"));
        assert_eq!(decode("74657374", "hex").as_deref(), Some("test"));
        assert_eq!(escape("\"1<2\"", "html").as_deref(), Some("&quot;1&lt;2&quot;"));
        assert_eq!(unescape("\\\"1<2\\\"", "json").as_deref(), Some("\"1<2\""));
    }
}
