//! The text encodings of FHIRPath 2.1 `encode`/`decode` (`base64`, `urlbase64` through the
//! `base64` crate; `hex`) and `escape`/`unescape` (`html`, `json`), the latter written out here
//! because they are a few lines each.

use base64::Engine;
use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};

/// Padded output, as the specification's examples show; padding optional on input.
const CONFIG: GeneralPurposeConfig =
    GeneralPurposeConfig::new().with_encode_padding(true).with_decode_padding_mode(DecodePaddingMode::Indifferent);
const BASE64: GeneralPurpose = GeneralPurpose::new(&alphabet::STANDARD, CONFIG);
const URL_BASE64: GeneralPurpose = GeneralPurpose::new(&alphabet::URL_SAFE, CONFIG);

/// `text` encoded in `format`; `None` for an unknown format.
pub(crate) fn encode(text: &str, format: &str) -> Option<String> {
    match format {
        "base64" => Some(BASE64.encode(text)),
        "urlbase64" => Some(URL_BASE64.encode(text)),
        "hex" => Some(text.bytes().map(|byte| format!("{byte:02x}")).collect()),
        _ => None,
    }
}

/// `text` decoded from `format`; `None` for an unknown format, bad input or non-UTF-8 bytes.
pub(crate) fn decode(text: &str, format: &str) -> Option<String> {
    let bytes = match format {
        "base64" => BASE64.decode(text).ok()?,
        "urlbase64" => URL_BASE64.decode(text).ok()?,
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
