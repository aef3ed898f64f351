//! Path steps over FHIR JSON: finding a node's children by element name and giving each the
//! FHIR type the definitions say it has.
//!
//! The element trees of [`crate::Definitions`] drive navigation: a choice element `value`
//! finds `valueQuantity` and types it `Quantity`, an array flattens into its items, a primitive
//! pairs with its `_name` companion (so extension-only entries still count), and a `Resource`
//! element takes the type its `resourceType` names. Keys the definitions do not know are still
//! followed, untyped (or typed from a choice suffix), so that lenient expressions and
//! not-yet-validated JSON keep working.

use serde_json::{Map, Value};

use crate::Definitions;
use crate::definitions::{Element, TypeDef, TypeKind};
use crate::fhirpath::value::{Item, NULL, Node, Site};

/// The node for a whole resource (or any JSON value) at the root of an evaluation.
pub(crate) fn root(value: &Value) -> Node<'_> {
    typed_node(value, None, "")
}

/// The node for a value of the FHIR type `type_code` (a data type, which its JSON does not
/// name) at the root of an evaluation.
pub(crate) fn typed_root<'a>(value: &'a Value, type_code: &'a str) -> Node<'a> {
    typed_node(value, None, type_code)
}

/// The node for a value of the element at `element` in the tree of the type `owner` (a
/// backbone element), at the root of an evaluation; untyped when there is no such element.
pub(crate) fn element_root<'a>(value: &'a Value, owner: &str, element: u32) -> Node<'a> {
    let site = Definitions::get()
        .type_def(owner)
        .filter(|def| (element as usize) < def.elements.len())
        .map(|owner| Site { owner, element });
    Node { value, extension: None, type_name: "BackboneElement", site, unresolved_reference: false }
}

/// Appends the children of `node` named `name` (the FHIRPath name: `value` for `value[x]`).
pub(crate) fn children_named<'a>(node: &Node<'a>, name: &str, out: &mut Vec<Item<'a>>) {
    if node.unresolved_reference {
        return;
    }
    let Some(object) = node.object() else {
        return;
    };
    if let Some(site) = node.site
        && let Some((index, element)) = child_elements(site).find(|(_, element)| element.name == name)
    {
        let slot = Some((site, index, element));
        if element.choice {
            for (key, value) in object {
                if let Some(type_code) = choice_type(key, name, element) {
                    push_values(out, value, extension_of(object, key), type_code, slot);
                }
            }
        } else {
            let type_code = element_type(site, element);
            let extension = extension_of(object, name);
            if let Some(value) = object.get(name) {
                push_values(out, value, extension, type_code, slot);
            } else if let Some(extension) = extension {
                push_values(out, &NULL, Some(extension), type_code, slot);
            }
        }
        return;
    }
    untyped_children(object, name, out);
}

/// Appends every child of `node`, in JSON order.
pub(crate) fn all_children<'a>(node: &Node<'a>, out: &mut Vec<Item<'a>>) {
    if node.unresolved_reference {
        return;
    }
    let Some(object) = node.object() else {
        return;
    };
    for (key, value) in object {
        if key == "resourceType" {
            continue;
        }
        if let Some(base) = key.strip_prefix('_') {
            // Extension-only primitives; the others come with their value key.
            if !object.contains_key(base) {
                push_values(out, &NULL, Some(value), "", None);
            }
            continue;
        }
        let typed = node.site.and_then(|site| {
            child_elements(site).find_map(|(index, element)| {
                let type_code = if element.choice {
                    choice_type(key, &element.name, element)?
                } else if element.name == *key {
                    element_type(site, element)
                } else {
                    return None;
                };
                Some((type_code, (site, index, element)))
            })
        });
        match typed {
            Some((type_code, slot)) => push_values(out, value, extension_of(object, key), type_code, Some(slot)),
            None => push_values(out, value, extension_of(object, key), "", None),
        }
    }
}

/// True when a node of FHIR type `type_name` is a `target` (the type itself or one it
/// specializes: `code` is a `string`, `Age` a `Quantity`, `Patient` a `Resource`).
pub(crate) fn is_fhir_type(type_name: &str, target: &str) -> bool {
    if type_name == target {
        return true;
    }
    let definitions = Definitions::get();
    let mut current = match definitions.type_def(type_name) {
        Some(def) => def.base.as_deref(),
        // The R4 Quantity profiles are not separate types in the definitions.
        None if crate::fhirpath::value::is_quantity_type(type_name) => Some("Quantity"),
        None => None,
    };
    for _ in 0..8 {
        let Some(name) = current else {
            return false;
        };
        if name == target {
            return true;
        }
        current = definitions.type_def(name).and_then(|def| def.base.as_deref());
    }
    false
}

/// True when `name` is a FHIR type (a resource, datatype, primitive or Quantity profile).
pub(crate) fn is_known_fhir_type(name: &str) -> bool {
    Definitions::get().type_def(name).is_some() || crate::fhirpath::value::is_quantity_type(name)
}

/// The node for `value` typed `type_code`; a `Resource` slot takes the type of the JSON's
/// `resourceType`.
fn typed_node<'a>(value: &'a Value, extension: Option<&'a Value>, type_code: &'a str) -> Node<'a> {
    let definitions = Definitions::get();
    let resource_type = value.get("resourceType").and_then(Value::as_str);
    let def = match resource_type {
        Some(name) if type_code.is_empty() || type_code == "Resource" || type_code == "DomainResource" => {
            definitions.type_def(name)
        }
        _ if type_code.is_empty() => None,
        _ => definitions.type_def(type_code).or_else(|| {
            crate::fhirpath::value::is_quantity_type(type_code).then(|| definitions.type_def("Quantity")).flatten()
        }),
    };
    let type_name: &'a str = match (def, resource_type) {
        (Some(def), _) if def.kind == TypeKind::Resource => &def.name,
        (_, Some(name)) if type_code.is_empty() => name,
        _ => type_code,
    };
    Node { value, extension, type_name, site: def.map(|owner| Site { owner, element: 0 }), unresolved_reference: false }
}

/// Pushes `value` (flattening arrays) with its `_name` companion, typed from `element`.
fn push_values<'a>(
    out: &mut Vec<Item<'a>>,
    value: &'a Value,
    extension: Option<&'a Value>,
    type_code: &'static str,
    slot: Option<(Site, u32, &'static Element)>,
) {
    let make = |value: &'a Value, extension: Option<&'a Value>| -> Node<'a> {
        match slot {
            Some((site, index, element)) if !element.children.is_empty() || element.content_reference.is_some() => {
                let target = element.content_reference.unwrap_or(index);
                Node {
                    value,
                    extension,
                    type_name: if type_code.is_empty() { "BackboneElement" } else { type_code },
                    site: Some(Site { owner: site.owner, element: target }),
                    unresolved_reference: false,
                }
            }
            _ => typed_node(value, extension, type_code),
        }
    };
    match value {
        Value::Array(values) => {
            let extensions = extension.and_then(Value::as_array);
            let count = values.len().max(extensions.map_or(0, Vec::len));
            for index in 0..count {
                let value = values.get(index).unwrap_or(&NULL);
                let extension = extensions.and_then(|e| e.get(index)).filter(|e| !e.is_null());
                if value.is_null() && extension.is_none() {
                    continue;
                }
                out.push(Item::Node(make(value, extension)));
            }
        }
        Value::Null if extension.is_none() => {}
        _ => out.push(Item::Node(make(value, extension))),
    }
}

/// Children of a node whose type the definitions do not know: the key itself, or a choice key
/// (`valueString` for `value`) typed from its suffix.
fn untyped_children<'a>(object: &'a Map<String, Value>, name: &str, out: &mut Vec<Item<'a>>) {
    let extension = extension_of(object, name);
    if let Some(value) = object.get(name) {
        return push_values(out, value, extension, "", None);
    }
    if let Some(extension) = extension {
        return push_values(out, &NULL, Some(extension), "", None);
    }
    for (key, value) in object {
        let Some(suffix) = key.strip_prefix(name) else {
            continue;
        };
        if !suffix.starts_with(|c: char| c.is_ascii_uppercase()) {
            continue;
        }
        let type_code = suffix_type(suffix);
        push_values(out, value, extension_of(object, key), type_code, None);
    }
}

/// The type code of a single-typed element. `Resource.id` is an `id` in R4, though its
/// definition names the FHIRPath `System.String` (which the definitions record as `string`).
fn element_type(site: Site, element: &'static Element) -> &'static str {
    if element.name == "id" && site.element == 0 && site.owner.kind == TypeKind::Resource {
        return "id";
    }
    element.types.first().map_or("", String::as_str)
}

/// The definitions' name for a choice suffix (`String` → `string`, `Quantity` → `Quantity`).
fn suffix_type(suffix: &str) -> &'static str {
    let definitions = Definitions::get();
    if let Some(def) = definitions.type_def(suffix) {
        return &def.name;
    }
    let mut lowered = suffix.to_owned();
    if let Some(first) = lowered.get_mut(0..1) {
        first.make_ascii_lowercase();
    }
    definitions.type_def(&lowered).map_or("", |def| def.name.as_str())
}

/// The type code of `key` as a value of choice element `element` named `name`
/// (`valueQuantity` → `Quantity`), or `None` when `key` is not one of its keys.
fn choice_type(key: &str, name: &str, element: &'static Element) -> Option<&'static str> {
    let suffix = key.strip_prefix(name)?;
    let mut chars = suffix.chars();
    let first = chars.next()?;
    if !first.is_ascii_uppercase() {
        return None;
    }
    element
        .types
        .iter()
        .find(|code| {
            let mut code_chars = code.chars();
            code_chars.next().is_some_and(|c| c.eq_ignore_ascii_case(&first)) && code_chars.as_str() == chars.as_str()
        })
        .map(String::as_str)
}

/// The `_name` companion of key `name`, found without allocating the key.
fn extension_of<'a>(object: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    object.iter().find(|(key, _)| key.strip_prefix('_') == Some(name)).map(|(_, value)| value)
}

/// The child elements of a site (following `contentReference`), with their indexes.
fn child_elements(site: Site) -> impl Iterator<Item = (u32, &'static Element)> {
    let owner: &'static TypeDef = site.owner;
    let element = owner.elements.get(site.element as usize);
    let source = element
        .and_then(|element| element.content_reference)
        .and_then(|target| owner.elements.get(target as usize))
        .or(element);
    source.into_iter().flat_map(move |element| {
        element.children.iter().filter_map(move |&child| owner.elements.get(child as usize).map(|e| (child, e)))
    })
}
