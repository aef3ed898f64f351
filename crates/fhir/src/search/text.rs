//! String normalisation for string search: FHIR string search ignores case and accents, so
//! index and query values are both folded the same way.

use unicode_normalization::UnicodeNormalization;
use unicode_normalization::char::is_combining_mark;

/// Lower-cases `text` and strips combining marks after canonical decomposition
/// (`Müller` → `muller`).
pub fn normalize(text: &str) -> String {
    // Most indexed text (codes' display names, names, addresses) is ASCII, where folding is
    // only lower-casing; decomposition is for the rest.
    if text.is_ascii() {
        return text.to_ascii_lowercase();
    }
    text.nfd().filter(|character| !is_combining_mark(*character)).flat_map(char::to_lowercase).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folds_case_and_accents() {
        assert_eq!(normalize("Zoë Müller"), "zoe muller");
        assert_eq!(normalize("ÉLAN"), "elan");
        assert_eq!(normalize("Blood Pressure 2"), "blood pressure 2");
    }
}
