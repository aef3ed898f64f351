//! `txt-1` and `txt-2`, the narrative's `htmlChecks()`, checked natively (FHIRPath states them
//! as a function the engine does not have): the XHTML parses, its root is a `div` in the XHTML
//! namespace, it holds only the basic formatting elements and attributes the narrative rules
//! allow (no scripts, forms, frames, objects, event attributes or `javascript:`/`vbscript:`
//! links); and it has some non-whitespace text or an image.
//!
//! The allowed names come from the R4 narrative rules (the definitions only name the function);
//! they are the lists the official validator uses.

use roxmltree::{Document, Node, ParsingOptions};

use crate::outcome::IssueType;
use crate::validation::Validator;
use crate::validation::path::Path;

/// The namespace of narrative XHTML.
const XHTML_NAMESPACE: &str = "http://www.w3.org/1999/xhtml";

/// Elements a narrative may hold.
const ELEMENTS: &[&str] = &[
    "p",
    "br",
    "div",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "a",
    "span",
    "b",
    "em",
    "i",
    "strong",
    "small",
    "big",
    "tt",
    "dfn",
    "q",
    "var",
    "abbr",
    "acronym",
    "cite",
    "blockquote",
    "hr",
    "address",
    "bdo",
    "kbd",
    "sub",
    "sup",
    "ul",
    "ol",
    "li",
    "dl",
    "dt",
    "dd",
    "pre",
    "table",
    "caption",
    "colgroup",
    "col",
    "thead",
    "tr",
    "tfoot",
    "tbody",
    "th",
    "td",
    "code",
    "samp",
    "img",
    "map",
    "area",
];

/// Attributes any element may carry.
const ATTRIBUTES: &[&str] = &[
    "title",
    "style",
    "class",
    "id",
    "lang",
    "dir",
    "accesskey",
    "tabindex",
    "span",
    "width",
    "align",
    "valign",
    "char",
    "charoff",
    "abbr",
    "axis",
    "headers",
    "scope",
    "rowspan",
    "colspan",
];

/// Attributes particular elements may carry, as `element.attribute`.
const ELEMENT_ATTRIBUTES: &[&str] = &[
    "a.href",
    "a.name",
    "a.charset",
    "a.type",
    "a.hreflang",
    "a.rel",
    "a.rev",
    "a.shape",
    "a.coords",
    "img.src",
    "img.border",
    "img.alt",
    "img.longdesc",
    "img.height",
    "img.width",
    "img.usemap",
    "img.ismap",
    "div.xmlns",
    "blockquote.cite",
    "q.cite",
    "map.name",
    "area.shape",
    "area.coords",
    "area.href",
    "area.nohref",
    "area.alt",
    "table.summary",
    "table.width",
    "table.border",
    "table.frame",
    "table.rules",
    "table.cellspacing",
    "table.cellpadding",
    "pre.space",
    "td.nowrap",
];

/// Link schemes that run code. The official validator compares them case-sensitively; any
/// case is refused here.
const ACTIVE_SCHEMES: [&str; 2] = ["javascript:", "vbscript:"];

/// The `txt-1` and `txt-2` texts, as R4 writes them.
const TXT_1: &str = "txt-1: The narrative SHALL contain only the basic html formatting elements and attributes \
    described in chapters 7-11 (except section 4 of chapter 9) and 12 of the HTML 4.0 standard, <a> elements \
    (either name or href), images and internally contained style attributes";
const TXT_2: &str = "txt-2: The narrative SHALL have some non-whitespace content";

impl Validator<'_> {
    /// Checks a narrative's XHTML `text` at `path`.
    pub(crate) fn narrative(&mut self, text: &str, path: &Path<'_>) {
        let options = ParsingOptions { allow_dtd: false, ..ParsingOptions::default() };
        let document = match Document::parse_with_options(text, options) {
            Ok(document) => document,
            // HTML's named entities (`&nbsp;`) are not XML's: the official validator reads
            // them, so an unknown entity is passed over rather than refused.
            Err(roxmltree::Error::UnknownEntityReference(..)) => return,
            Err(error) => {
                return self.error(IssueType::Value, path, format!("{TXT_1} (the XHTML does not parse: {error})"));
            }
        };
        let root = document.root_element();
        if root.tag_name().name() != "div" || root.tag_name().namespace() != Some(XHTML_NAMESPACE) {
            let message = format!("{TXT_1} (the root must be a div in the {XHTML_NAMESPACE} namespace)");
            return self.error(IssueType::Value, path, message);
        }
        if let Some(problem) = root.descendants().filter(Node::is_element).find_map(not_allowed) {
            return self.error(IssueType::Value, path, format!("{TXT_1} ({problem})"));
        }
        let has_content = root.descendants().any(|node| {
            node.text().is_some_and(|text| node.is_text() && !text.trim().is_empty()) || node.has_tag_name("img")
        });
        if !has_content {
            // R4 states txt-2 as the same `htmlChecks()` as txt-1; the official validator
            // reads it as the content check it was meant to be (`htmlChecks2()`).
            self.error(IssueType::Value, path, TXT_2);
        }
    }
}

/// Why `element` is not allowed in a narrative, if it is not.
fn not_allowed(element: Node<'_, '_>) -> Option<String> {
    let name = element.tag_name().name();
    if element.tag_name().namespace() != Some(XHTML_NAMESPACE) || !ELEMENTS.contains(&name) {
        return Some(format!("the element {name} is not allowed"));
    }
    for attribute in element.attributes() {
        let local = attribute.name();
        let allowed = match attribute.namespace() {
            Some("http://www.w3.org/XML/1998/namespace") => local == "lang",
            Some(_) => false,
            None => ATTRIBUTES.contains(&local) || ELEMENT_ATTRIBUTES.iter().any(|pair| is_pair(pair, name, local)),
        };
        if !allowed {
            return Some(format!("the attribute {local} is not allowed on {name}"));
        }
        let link = attribute.value().trim_start().to_ascii_lowercase();
        if matches!(local, "href" | "src") && ACTIVE_SCHEMES.iter().any(|scheme| link.starts_with(scheme)) {
            return Some(format!("a {local} that runs code is not allowed"));
        }
    }
    None
}

/// Whether `pair` is `element.attribute`.
fn is_pair(pair: &str, element: &str, attribute: &str) -> bool {
    pair.split_once('.').is_some_and(|(e, a)| e == element && a == attribute)
}
