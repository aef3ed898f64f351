//! Resource validation against the R4 StructureDefinitions and the US Core profiles a resource
//! claims in `meta.profile`.
//!
//! The validator walks the JSON once, side by side with the element tree of the resource's type
//! ([`crate::definitions::TypeDef`]): unknown keys, JSON shapes, cardinality, choice types,
//! primitive values ([`primitive`]), required bindings ([`binding`]), nested resources, and then
//! the profile constraints ([`profile`]). It never clones the resource, and builds location
//! strings only for the issues it reports ([`path`]).

mod binding;
mod checks;
mod extensions;
mod invariants;
mod narrative;
mod path;
mod primitive;
mod profile;
mod slicing;

use serde_json::{Map, Value};

use crate::Definitions;
use crate::definitions::{Element, TypeDef, TypeKind};
use crate::outcome::{Issue, IssueType};
use crate::validation::invariants::Subject;
use crate::validation::path::Path;

/// JSON nesting (objects and arrays both count) deeper than this is refused instead of walked.
/// It bounds the stack, and it stays below the JSON parser's limit of 128 with room for the
/// few levels a Bundle adds around an entry, so any stored resource (including one built by
/// PATCH) can be parsed again.
const MAX_DEPTH: usize = 100;

/// The elements that hold extensions, checked against their definitions.
const EXTENSIONS: [&str; 2] = ["extension", "modifierExtension"];

/// The resource type whose rules [`checks`] adds to its invariants.
const BUNDLE: &str = "Bundle";

/// The data type whose `size` and `hash` are checked against its `data`.
const ATTACHMENT: &str = "Attachment";

impl Definitions {
    /// Validates `resource` against its base StructureDefinition and any known US Core profile
    /// in `meta.profile`. Returns every issue found; the resource is valid when none is an error.
    pub fn validate(&self, resource: &Value) -> Vec<Issue> {
        let mut validator = Validator {
            definitions: self,
            issues: Vec::new(),
            pending: Vec::new(),
            resources: Vec::new(),
            walking: Vec::new(),
            holders: Vec::new(),
        };
        validator.resource(resource, None, 0);
        let mut issues = validator.issues;
        let root_type = resource.get("resourceType").and_then(Value::as_str).unwrap_or("Resource");
        for pending in validator.pending {
            // Both pointers were taken from this resource while walking it.
            let enclosing = validator.resources.get(pending.resource).and_then(|pointer| resource.pointer(pointer));
            if let (Some(node), Some(enclosing)) = (resource.pointer(&pending.node), enclosing) {
                let path = || path::render_pointer(root_type, &pending.node);
                issues.extend(invariants::check_at(pending.subject, node, enclosing, resource, path));
            }
        }
        deduplicate(&mut issues);
        issues
    }
}

/// The state of one validation: the definitions and the issues found so far.
pub(crate) struct Validator<'d> {
    definitions: &'d Definitions,
    issues: Vec<Issue>,
    /// Values of data types whose invariants are evaluated once the walk is done, when the
    /// whole resource can be `%resource`.
    pending: Vec<Pending<'d>>,
    /// The JSON pointers of the resources met (the outermost first).
    resources: Vec<String>,
    /// Those being walked, as indexes into `resources`, innermost last.
    walking: Vec<usize>,
    /// The elements being walked, innermost last, each with the type of its value: what an
    /// extension's context is matched against.
    holders: Vec<(Site<'d>, &'d str)>,
}

/// A value whose element's or data type's invariants are to be evaluated.
struct Pending<'d> {
    subject: Subject<'d>,
    /// The JSON pointer of the value, from the outermost resource (issues render it as a path).
    node: String,
    /// Its enclosing resource, an index into `Validator::resources`.
    resource: usize,
}

/// Where an element sits: the type whose element list holds it, and the element itself with
/// its index in that list.
#[derive(Clone, Copy)]
pub(crate) struct Site<'d> {
    ty: &'d TypeDef,
    element: &'d Element,
    index: u32,
}

impl<'d> Site<'d> {
    /// The root element of `ty`.
    fn root(ty: &'d TypeDef) -> Site<'d> {
        Site { ty, element: &ty.elements[0], index: 0 }
    }
}

impl<'d> Validator<'d> {
    /// Records an error at `path`.
    pub(crate) fn error(&mut self, code: IssueType, path: &Path<'_>, diagnostics: impl Into<String>) {
        self.issues.push(Issue::error_at(code, path.render(), diagnostics));
    }

    /// Validates a whole resource; `parent` is where it is nested (a contained resource, a
    /// Bundle entry), or `None` at the top.
    fn resource(&mut self, value: &Value, parent: Option<&Path<'_>>, depth: usize) {
        let unknown = Path::root("Resource");
        let at = parent.unwrap_or(&unknown);
        let Some(object) = value.as_object() else {
            return self.error(IssueType::Structure, at, "a resource must be a JSON object");
        };
        let Some(type_name) = object.get("resourceType").and_then(Value::as_str) else {
            return self.error(IssueType::Structure, at, "resourceType is missing or not a string");
        };
        let ty = match self.definitions.type_def(type_name) {
            Some(ty) if ty.kind == TypeKind::Resource && !ty.is_abstract => ty,
            _ => {
                return self.error(IssueType::Structure, at, format!("'{type_name}' is not a known resource type"));
            }
        };
        let root = Path::root(type_name);
        let path = parent.unwrap_or(&root);
        let site = Site::root(ty);
        self.walking.push(self.resources.len());
        self.resources.push(parent.map(Path::pointer).unwrap_or_default());
        self.holders.push((site, &ty.name));
        self.resource_id(object, path);
        self.contained_ids(object, path);
        if ty.name == BUNDLE {
            self.bundle(object, path);
        }
        self.object(object, site, path, depth, true);
        self.holders.pop();
        self.walking.pop();
        self.profiles(value, ty, path);
        self.issues.extend(invariants::check_at(Subject::root(ty), value, value, value, || path.render()));
    }

    /// Validates the keys of `object` against the children of `site`.
    fn object(
        &mut self,
        object: &Map<String, Value>,
        site: Site<'d>,
        path: &Path<'_>,
        depth: usize,
        is_resource: bool,
    ) {
        if depth > MAX_DEPTH {
            return self.error(
                IssueType::Structure,
                path,
                format!("elements are nested deeper than {MAX_DEPTH} levels"),
            );
        }
        if object.is_empty() {
            return self.error(IssueType::Structure, path, "empty objects are not allowed");
        }
        let children = self.children(site);
        let mut chosen: Vec<(&str, &str)> = Vec::new();
        for (key, value) in object {
            if key == "resourceType" && is_resource {
                continue;
            }
            let (name, is_extension) = match key.strip_prefix('_') {
                Some(name) => (name, true),
                None => (key.as_str(), false),
            };
            let Some((index, child, type_code)) = find_child(site.ty, children, name) else {
                self.error(IssueType::Structure, &path.key(key), format!("unknown element '{key}'"));
                continue;
            };
            let child_site = Site { ty: site.ty, element: child, index };
            if child.choice && self.second_choice(&mut chosen, child, type_code) {
                let message = format!("only one type of {}[x] is allowed", child.name);
                self.error(IssueType::Structure, &path.key(key), message);
            }
            if EXTENSIONS.contains(&key.as_str()) {
                self.extensions(value, &path.key(key));
            }
            self.holders.push((child_site, type_code));
            if is_extension {
                self.primitive_extension(value, child_site, type_code, object, key, &path.key(key), depth);
            } else {
                self.element(value, child_site, type_code, object, key, &path.key(key), depth);
            }
            self.holders.pop();
        }
        self.required(object, site.ty, children, path);
    }

    /// Records the choice variant used for `element`; true if another variant was used before.
    fn second_choice<'a>(
        &self,
        chosen: &mut Vec<(&'a str, &'a str)>,
        element: &'a Element,
        type_code: &'a str,
    ) -> bool {
        match chosen.iter().find(|(name, _)| *name == element.name) {
            Some((_, previous)) => *previous != type_code,
            None => {
                chosen.push((&element.name, type_code));
                false
            }
        }
    }

    /// Reports required children (`min` ≥ 1) missing from `object`.
    fn required(&mut self, object: &Map<String, Value>, ty: &'d TypeDef, children: &'d [u32], path: &Path<'_>) {
        for &index in children {
            let element = &ty.elements[index as usize];
            if element.min == 0 {
                continue;
            }
            let present = object.keys().any(|key| {
                let name = key.strip_prefix('_').unwrap_or(key);
                matches_element(element, name).is_some()
            });
            if !present {
                let message = format!("missing required element '{}'", element.name);
                self.error(IssueType::Required, &path.key(&element.name), message);
            }
        }
    }

    /// Validates the value of one element: array or single value as its cardinality demands.
    #[allow(clippy::too_many_arguments)] // The parent object and key are needed to pair `_name`.
    fn element(
        &mut self,
        value: &Value,
        site: Site<'d>,
        type_code: &'d str,
        parent: &Map<String, Value>,
        key: &str,
        path: &Path<'_>,
        depth: usize,
    ) {
        let element = site.element;
        if element.max == 0 {
            return self.error(IssueType::Structure, path, format!("element '{key}' is not allowed"));
        }
        match value {
            Value::Array(items) if element.max > 1 => {
                if items.is_empty() {
                    return self.error(IssueType::Structure, path, "empty arrays are not allowed");
                }
                if items.len() > element.max as usize {
                    let message = format!("at most {} items are allowed, found {}", element.max, items.len());
                    self.error(IssueType::Value, path, message);
                }
                for (index, item) in items.iter().enumerate() {
                    if item.is_null() && has_extension_at(parent, key, index) {
                        continue;
                    }
                    self.single(item, site, type_code, &path.index(index), depth + 1);
                }
            }
            Value::Array(_) => {
                self.error(IssueType::Structure, path, format!("'{key}' is a single value, not an array"))
            }
            _ if element.max > 1 => self.error(IssueType::Structure, path, format!("'{key}' must be an array")),
            _ => self.single(value, site, type_code, path, depth),
        }
    }

    /// Validates one value of an element, by its type.
    fn single(&mut self, value: &Value, site: Site<'d>, type_code: &'d str, path: &Path<'_>, depth: usize) {
        let element = site.element;
        let index = element.content_reference.unwrap_or(site.index);
        self.pend(Subject { owner: site.ty, index, type_code }, value, path);
        if !element.children.is_empty() || element.content_reference.is_some() {
            match value.as_object() {
                Some(object) => {
                    self.ele_1(object, path);
                    self.object(object, site, path, depth + 1, false);
                }
                None => self.error(IssueType::Structure, path, format!("'{}' must be a JSON object", element.name)),
            }
            return;
        }
        let Some(ty) = self.definitions.type_def(type_code) else {
            return;
        };
        match ty.kind {
            TypeKind::Primitive => self.primitive(value, ty, path),
            TypeKind::Resource => self.resource(value, Some(path), depth + 1),
            TypeKind::Complex => match value.as_object() {
                Some(object) => {
                    self.ele_1(object, path);
                    self.object(object, Site::root(ty), path, depth + 1, false);
                    self.pend(Subject::root(ty), value, path);
                    if ty.name == ATTACHMENT {
                        self.attachment(object, path);
                    }
                }
                None => self.error(IssueType::Structure, path, format!("a {} value must be a JSON object", ty.name)),
            },
        }
        if let Some(binding) = element.binding {
            self.binding(value, type_code, binding, path);
        }
    }

    /// Queues the invariants of `subject` on `value`, at `path`, when some must be evaluated.
    fn pend(&mut self, subject: Subject<'d>, value: &Value, path: &Path<'_>) {
        if invariants::applies(subject, value) {
            let resource = self.walking.last().copied().unwrap_or_default();
            self.pending.push(Pending { subject, node: path.pointer(), resource });
        }
    }

    /// `ele-1` on an element that is an object: it needs children besides its `id` (an empty
    /// object is refused as such by [`Validator::object`]).
    fn ele_1(&mut self, object: &Map<String, Value>, path: &Path<'_>) {
        if !object.is_empty() && object.keys().all(|key| key == "id") {
            let message = format!("{}: All FHIR elements must have a @value or children", invariants::ELE_1);
            self.error(IssueType::Invariant, path, message);
        }
    }

    /// Validates `_name`: the id and extensions of a primitive value (an object, or an array of
    /// objects and nulls aligned with the value array).
    #[allow(clippy::too_many_arguments)] // Mirrors `element`.
    fn primitive_extension(
        &mut self,
        value: &Value,
        site: Site<'d>,
        type_code: &str,
        parent: &Map<String, Value>,
        key: &str,
        path: &Path<'_>,
        depth: usize,
    ) {
        let Some(ty) = self.definitions.type_def(type_code).filter(|ty| ty.kind == TypeKind::Primitive) else {
            return self.error(IssueType::Structure, path, format!("'{key}' is only allowed for primitive elements"));
        };
        let primitive_site = Site::root(ty);
        match value {
            Value::Array(items) if site.element.max > 1 => {
                let values = parent.get(&key[1..]).and_then(Value::as_array);
                if values.is_some_and(|values| values.len() != items.len()) {
                    self.error(IssueType::Structure, path, format!("'{key}' must align with '{}'", &key[1..]));
                }
                for (index, item) in items.iter().enumerate() {
                    match item {
                        Value::Null => {}
                        Value::Object(object) => {
                            self.object(object, primitive_site, &path.index(index), depth + 2, false)
                        }
                        _ => self.error(IssueType::Structure, &path.index(index), "must be a JSON object or null"),
                    }
                }
            }
            Value::Object(object) if site.element.max <= 1 => {
                self.object(object, primitive_site, path, depth + 1, false)
            }
            _ => self.error(IssueType::Structure, path, format!("'{key}' has the wrong JSON shape")),
        }
    }

    /// The child elements of `site`, following a `contentReference`.
    fn children(&self, site: Site<'d>) -> &'d [u32] {
        match site.element.content_reference {
            Some(target) => site.ty.elements.get(target as usize).map_or(&[], |e| e.children.as_slice()),
            None => &site.element.children,
        }
    }
}

/// The child of `children` that JSON key `name` (without `_`) stands for, with its index, and
/// the type it holds.
fn find_child<'d>(ty: &'d TypeDef, children: &[u32], name: &str) -> Option<(u32, &'d Element, &'d str)> {
    let elements = children.iter().filter_map(|&index| Some((index, ty.elements.get(index as usize)?)));
    let mut choice = None;
    for (index, element) in elements {
        if !element.choice && element.name == name {
            return Some((index, element, element.types.first().map_or("", String::as_str)));
        }
        if choice.is_none() && element.choice {
            choice = matches_element(element, name).map(|type_code| (index, element, type_code));
        }
    }
    choice
}

/// If JSON key `name` stands for `element`, the type code it holds: the element's only type,
/// or for a choice element the type its suffix names (`valueString` → `string`).
pub(crate) fn matches_element<'d>(element: &'d Element, name: &str) -> Option<&'d str> {
    if !element.choice {
        return (element.name == name).then(|| element.types.first().map_or("", String::as_str));
    }
    let suffix = name.strip_prefix(element.name.as_str())?;
    element.types.iter().map(String::as_str).find(|type_code| is_type_suffix(suffix, type_code))
}

/// True if `suffix` is `type_code` with its first letter in upper case.
pub(crate) fn is_type_suffix(suffix: &str, type_code: &str) -> bool {
    let (Some(first), Some(type_first)) = (suffix.chars().next(), type_code.chars().next()) else {
        return false;
    };
    first.is_ascii_uppercase()
        && first == type_first.to_ascii_uppercase()
        && suffix.len() == type_code.len()
        && suffix[1..] == type_code[type_first.len_utf8()..]
}

/// True if `_key[index]` holds an id or extensions, which lets `key[index]` be null.
fn has_extension_at(parent: &Map<String, Value>, key: &str, index: usize) -> bool {
    let extension_key = format!("_{key}");
    parent
        .get(&extension_key)
        .and_then(Value::as_array)
        .and_then(|items| items.get(index))
        .is_some_and(Value::is_object)
}

/// Drops repeated issues (the same problem found through two profiles, for instance).
fn deduplicate(issues: &mut Vec<Issue>) {
    let mut index = 0;
    while index < issues.len() {
        if issues[..index].contains(&issues[index]) {
            issues.remove(index);
        } else {
            index += 1;
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use serde_json::{Value, json};

    use crate::Definitions;

    /// The `(code, expression)` pairs of the error issues `resource` produces.
    pub(crate) fn issues_of(resource: &Value) -> Vec<(&'static str, String)> {
        Definitions::get()
            .validate(resource)
            .into_iter()
            .filter(|issue| issue.is_error())
            .map(|issue| (issue.code.code(), issue.expression.unwrap_or_default()))
            .collect()
    }

    /// The `(key, location)` pairs of the errors `resource` produces: the key is what the
    /// diagnostics start with, before a `:` (`obs-3`, `res-id`, `slice`).
    pub(crate) fn keyed_errors(resource: &Value) -> Vec<(String, String)> {
        Definitions::get()
            .validate(resource)
            .into_iter()
            .filter(|issue| issue.is_error())
            .map(|issue| {
                let key = issue.diagnostics.split(':').next().unwrap_or_default().to_owned();
                (key, issue.expression.unwrap_or_default())
            })
            .collect()
    }

    /// `(key, location)` pairs as [`keyed_errors`] gives them.
    pub(crate) fn keyed(expected: &[(&str, &str)]) -> Vec<(String, String)> {
        expected.iter().map(|(key, at)| ((*key).to_owned(), (*at).to_owned())).collect()
    }

    pub(crate) fn assert_valid(resource: &Value) {
        let issues: Vec<_> = Definitions::get().validate(resource).into_iter().filter(|i| i.is_error()).collect();
        assert!(issues.is_empty(), "unexpected issues: {issues:#?}");
    }

    #[test]
    fn resource_type_must_be_known_and_concrete() {
        assert_valid(&json!({"resourceType": "Patient"}));
        assert_eq!(issues_of(&json!({"id": "x"})), [("structure", "Resource".into())]);
        assert_eq!(issues_of(&json!({"resourceType": "Patientt"})), [("structure", "Resource".into())]);
        assert_eq!(issues_of(&json!({"resourceType": "DomainResource"})), [("structure", "Resource".into())]);
        assert_eq!(issues_of(&json!({"resourceType": 7})), [("structure", "Resource".into())]);
        assert_eq!(issues_of(&json!([1, 2])), [("structure", "Resource".into())]);
    }

    #[test]
    fn unknown_elements_are_errors() {
        let issues = issues_of(&json!({"resourceType": "Patient", "nickname": "Bob", "name": [{"first": "Bob"}]}));
        assert_eq!(issues, [("structure", "Patient.nickname".into()), ("structure", "Patient.name[0].first".into())]);
        let nested = json!({"resourceType": "Patient", "name": [{"period": {"resourceType": "Period"}}]});
        assert_eq!(issues_of(&nested), [("structure", "Patient.name[0].period.resourceType".into())]);
    }

    #[test]
    fn cardinality_shapes() {
        let single_as_array = json!({"resourceType": "Patient", "gender": ["male"]});
        assert_eq!(issues_of(&single_as_array), [("structure", "Patient.gender".into())]);
        let array_as_single = json!({"resourceType": "Patient", "name": {"family": "X"}});
        assert_eq!(issues_of(&array_as_single), [("structure", "Patient.name".into())]);
        let empty_array = json!({"resourceType": "Patient", "name": []});
        assert_eq!(issues_of(&empty_array), [("structure", "Patient.name".into())]);
        let empty_object = json!({"resourceType": "Patient", "name": [{}]});
        assert_eq!(issues_of(&empty_object), [("structure", "Patient.name[0]".into())]);
        let null = json!({"resourceType": "Patient", "active": null});
        assert_eq!(issues_of(&null), [("structure", "Patient.active".into())]);
    }

    #[test]
    fn required_elements_of_present_parents() {
        assert_eq!(
            issues_of(&json!({"resourceType": "Observation", "code": {"text": "x"}})),
            [("required", "Observation.status".into())]
        );
        let link = json!({"resourceType": "Patient", "link": [{"type": "seealso"}]});
        assert_eq!(issues_of(&link), [("required", "Patient.link[0].other".into())]);
        let extension = json!({"resourceType": "Patient", "extension": [{"valueString": "x"}]});
        assert_eq!(issues_of(&extension), [("required", "Patient.extension[0].url".into())]);
    }

    #[test]
    fn choice_types() {
        let observation = |extra: Value| {
            let mut resource = json!({"resourceType": "Observation", "status": "final", "code": {"text": "x"}});
            for (key, value) in extra.as_object().expect("object") {
                resource[key] = value.clone();
            }
            resource
        };
        assert_valid(&observation(json!({"valueString": "high"})));
        assert_valid(&observation(json!({"valueQuantity": {"value": 1, "unit": "mg"}})));
        assert_eq!(
            issues_of(&observation(json!({"valueHumanName": {"text": "x"}}))),
            [("structure", "Observation.valueHumanName".into())]
        );
        assert_eq!(
            issues_of(&observation(json!({"valuestring": "x"}))),
            [("structure", "Observation.valuestring".into())]
        );
        assert_eq!(
            issues_of(&observation(json!({"valueString": "x", "valueBoolean": true}))),
            [("structure", "Observation.valueBoolean".into())]
        );
        assert_valid(&observation(json!({"valueString": "x", "_valueString": {"id": "a"}})));
    }

    #[test]
    fn primitive_extensions() {
        let ext = json!([{"url": "http://example.org/x", "valueBoolean": true}]);
        assert_valid(&json!({"resourceType": "Patient", "_birthDate": {"extension": ext}}));
        assert_valid(
            &json!({"resourceType": "Patient", "name": [{"given": ["A", null], "_given": [null, {"extension": ext}]}]}),
        );
        let misaligned = json!({"resourceType": "Patient", "name": [{"given": ["A", null], "_given": [{"id": "1"}]}]});
        let issues = issues_of(&misaligned);
        assert!(issues.contains(&("structure", "Patient.name[0].given".into())), "{issues:?}");
        let bad_content = json!({"resourceType": "Patient", "_birthDate": {"value": "2000"}});
        assert_eq!(issues_of(&bad_content), [("structure", "Patient.birthDate.value".into())]);
        let on_complex = json!({"resourceType": "Patient", "_maritalStatus": {"id": "x"}});
        assert_eq!(issues_of(&on_complex), [("structure", "Patient.maritalStatus".into())]);
        let lone_null = json!({"resourceType": "Patient", "name": [{"given": [null]}]});
        assert_eq!(issues_of(&lone_null), [("structure", "Patient.name[0].given[0]".into())]);
    }

    #[test]
    fn extensions_recurse() {
        let nested = json!({"resourceType": "Patient", "extension": [{"url": "http://e/x", "extension": [{"url": "a", "valueCoding": {"code": "c"}}, {"valueString": "x"}]}]});
        assert_eq!(issues_of(&nested), [("required", "Patient.extension[0].extension[1].url".into())]);
        let modifier = json!({"resourceType": "Patient", "modifierExtension": [{"url": "http://e/x", "valueFoo": 1}]});
        // `valueFoo` is no value[x]: the extension then has neither value nor extensions (ext-1).
        assert_eq!(
            issues_of(&modifier),
            [
                ("structure", "Patient.modifierExtension[0].valueFoo".into()),
                ("invariant", "Patient.modifierExtension[0]".into())
            ]
        );
    }

    #[test]
    fn backbone_elements_and_content_references() {
        let questionnaire = json!({"resourceType": "Questionnaire", "status": "draft", "item": [
            {"linkId": "1", "type": "group", "item": [{"linkId": "1.1", "type": "string", "color": "red"}]}
        ]});
        assert_eq!(issues_of(&questionnaire), [("structure", "Questionnaire.item[0].item[0].color".into())]);
        let missing = json!({"resourceType": "Questionnaire", "status": "draft", "item": [{"linkId": "1", "type": "group", "item": [{"type": "string"}]}]});
        assert_eq!(issues_of(&missing), [("required", "Questionnaire.item[0].item[0].linkId".into())]);
    }

    #[test]
    fn nested_resources_are_validated_by_their_own_type() {
        let bundle = json!({"resourceType": "Bundle", "type": "collection", "entry": [
            {"fullUrl": "urn:uuid:6f1c2a40-0000-4000-8000-000000000001", "resource": {"resourceType": "Patient", "gender": "robot"}},
            {"fullUrl": "urn:uuid:6f1c2a40-0000-4000-8000-000000000002", "resource": {"resourceType": "Nope"}}
        ]});
        assert_eq!(
            issues_of(&bundle),
            [
                ("code-invalid", "Bundle.entry[0].resource.gender".into()),
                ("structure", "Bundle.entry[1].resource".into())
            ]
        );
        let contained = json!({"resourceType": "Patient", "managingOrganization": {"reference": "#o1"},
            "contained": [{"resourceType": "Organization", "id": "o1", "nam": "x"}]});
        // The misspelt name also leaves the Organization without a name or identifier (org-1).
        assert_eq!(
            issues_of(&contained),
            [("structure", "Patient.contained[0].nam".into()), ("invariant", "Patient.contained[0]".into())]
        );
        let parameters = json!({"resourceType": "Parameters", "parameter": [{"name": "p", "resource": {"resourceType": "Patient", "active": 1}}]});
        assert_eq!(issues_of(&parameters), [("structure", "Parameters.parameter[0].resource.active".into())]);
    }

    #[test]
    fn deep_nesting_is_refused_without_overflow() {
        let mut extension = json!({"url": "http://e/x", "valueString": "leaf"});
        for _ in 0..400 {
            extension = json!({"url": "http://e/x", "extension": [extension]});
        }
        let issues = issues_of(&json!({"resourceType": "Patient", "extension": [extension]}));
        assert_eq!(issues.len(), 1);
        assert_eq!(issues[0].0, "structure");
    }

    #[test]
    fn odd_inputs_do_not_panic() {
        for odd in [
            json!(null),
            json!("Patient"),
            json!({"resourceType": "Patient", "name": [[[]]]}),
            json!({"resourceType": "Patient", "_name": [null]}),
            json!({"resourceType": "Patient", "_": 1}),
            json!({"resourceType": "Bundle", "entry": [{"resource": null}]}),
            json!({"resourceType": "Patient", "text": {"div": 5}}),
        ] {
            let _ = Definitions::get().validate(&odd);
        }
        let many: Vec<Value> = (0..10_000).map(|i| json!({"family": format!("F{i}")})).collect();
        assert_valid(&json!({"resourceType": "Patient", "name": many}));
    }
}
