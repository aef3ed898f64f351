//! The search parameters of each resource type, as search and indexing use them: one
//! definition per code (R4 core first, US Core filling in codes core lacks), looked up once
//! and cached, with stable integer ids for index rows.

use std::collections::HashMap;
use std::ops::Deref;
use std::sync::{Arc, OnceLock};

use crate::Definitions;
use crate::definitions::{SearchParamType, SearchParameter};
use crate::fhirpath::Expression;

/// Which index rows of a parameter: its values, or the extra rows some modifiers search.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ParamVariant {
    /// The parameter's own values.
    Value,
    /// `:text` on tokens: the display text of codes.
    Text,
    /// `:of-type` on identifiers: `type-code|value`.
    OfType,
    /// `:identifier` on references: the reference's identifier.
    Identifier,
}

/// A search parameter definition as registries and parsed queries hold it: an official one
/// (static, from [`Definitions`]) or a custom one (from a `SearchParameter` resource), shared by
/// the registries and clauses that use it and freed with the last of them. Derefs to the
/// definition; cloning is a copy or a reference count.
#[derive(Clone)]
pub enum Parameter {
    /// An R4 core or US Core definition.
    Official(&'static SearchParameter),
    /// A definition of one database, from [`Registry::with_custom`].
    Custom(Arc<SearchParameter>),
}

impl Parameter {
    /// The definition, for as long as the process runs, when it is an official one.
    pub fn as_official(&self) -> Option<&'static SearchParameter> {
        match self {
            Parameter::Official(parameter) => Some(parameter),
            Parameter::Custom(_) => None,
        }
    }
}

impl Deref for Parameter {
    type Target = SearchParameter;

    fn deref(&self) -> &SearchParameter {
        match self {
            Parameter::Official(parameter) => parameter,
            Parameter::Custom(parameter) => parameter,
        }
    }
}

impl PartialEq for Parameter {
    /// Equal definitions, official or not.
    fn eq(&self, other: &Parameter) -> bool {
        **self == **other
    }
}

impl std::fmt::Debug for Parameter {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        (**self).fmt(formatter)
    }
}

/// The search parameters of every resource type: the official definitions plus the custom
/// `SearchParameter` resources of one database. Each store keeps its own (see
/// [`Registry::with_custom`]); [`Registry::official`] has the definitions alone. A registry
/// owns its custom definitions and their compiled expressions: dropping the last registry (and
/// parsed query) that uses them frees them.
#[derive(Debug)]
pub struct Registry {
    /// Shared with [`Registry::official`] for the types no custom parameter applies to, so
    /// those types' indexing plans are worked out once per process.
    by_type: HashMap<&'static str, Arc<TypeParams>>,
}

/// The parameters of one resource type.
#[derive(Debug)]
struct TypeParams {
    params: Vec<Parameter>,
    /// What indexing needs of each parameter, worked out on the first write of the type.
    indexing: OnceLock<Vec<Indexed>>,
}

impl TypeParams {
    /// One definition per code out of `candidates`, in order: a later candidate replaces an
    /// earlier one of the same code only when it is R4 core and the earlier one is not.
    fn choose(candidates: impl IntoIterator<Item = Parameter>) -> TypeParams {
        let mut chosen: Vec<Parameter> = Vec::new();
        for parameter in candidates {
            let is_core = parameter.url.starts_with(CORE);
            match chosen.iter_mut().find(|existing| existing.code == parameter.code) {
                Some(existing) if is_core && !existing.url.starts_with(CORE) => *existing = parameter,
                Some(_) => {}
                None => chosen.push(parameter),
            }
        }
        chosen.sort_by(|a, b| a.code.cmp(&b.code));
        TypeParams { params: chosen, indexing: OnceLock::new() }
    }
}

/// A parameter as indexing uses it: its expression compiled for one resource type, and the
/// ids of its rows. Every write indexes every parameter of its type, so none of this is
/// recomputed per resource.
#[derive(Debug)]
pub(crate) struct Indexed {
    pub(crate) parameter: Parameter,
    /// `None` when no branch of the expression applies to the type.
    pub(crate) expression: Option<Arc<Expression>>,
    pub(crate) ids: VariantIds,
    /// For a composite parameter of two components, those components ready to evaluate.
    pub(crate) composite: Option<Composite>,
}

/// The two components of a composite parameter: each one's expression (relative to a node
/// the parameter's own expression reached), and the definition and row ids of the second,
/// whose values the rows hold.
#[derive(Debug)]
pub(crate) struct Composite {
    pub(crate) first: Arc<Expression>,
    pub(crate) second: Arc<Expression>,
    pub(crate) second_definition: &'static SearchParameter,
    pub(crate) second_ids: VariantIds,
}

impl Composite {
    /// `None` unless `parameter` has two components that both compile.
    fn of(parameter: &Parameter) -> Option<Composite> {
        let [first, second] = parameter.components.as_slice() else { return None };
        let second_definition = definition_by_url(&second.definition)?;
        let compile = |text: &str| match parameter {
            Parameter::Official(_) => crate::search::nodes::compiled_text(text),
            Parameter::Custom(_) => Expression::parse(text).ok().map(Arc::new),
        };
        Some(Composite {
            first: compile(&first.expression)?,
            second: compile(&second.expression)?,
            second_definition,
            second_ids: VariantIds::of(second_definition),
        })
    }
}

/// Parameters whose values are columns of every stored resource (its id and its
/// `meta.lastUpdated`): search reads those columns (see `parse.rs`), so they get no index rows.
const IN_COLUMNS: &[&str] = &["_id", "_lastUpdated"];

/// The row ids of each [`ParamVariant`] of one parameter.
#[derive(Debug, Clone, Copy)]
pub(crate) struct VariantIds {
    pub(crate) value: i64,
    pub(crate) text: i64,
    pub(crate) of_type: i64,
    pub(crate) identifier: i64,
}

impl VariantIds {
    pub(crate) fn of(parameter: &SearchParameter) -> VariantIds {
        VariantIds {
            value: variant_id(parameter, ParamVariant::Value),
            text: variant_id(parameter, ParamVariant::Text),
            of_type: variant_id(parameter, ParamVariant::OfType),
            identifier: variant_id(parameter, ParamVariant::Identifier),
        }
    }
}

impl Registry {
    /// The official R4 and US Core search parameters.
    pub fn official() -> Arc<Registry> {
        static OFFICIAL: OnceLock<Arc<Registry>> = OnceLock::new();
        Arc::clone(OFFICIAL.get_or_init(|| {
            let definitions = Definitions::get();
            let by_type = definitions
                .resource_types()
                .map(|name| {
                    // R4 core first, US Core filling in the codes core lacks.
                    let official = definitions.search_parameters(name).into_iter().map(Parameter::Official);
                    (name, Arc::new(TypeParams::choose(official)))
                })
                .collect();
            Arc::new(Registry { by_type })
        }))
    }

    /// The official parameters plus `custom` ones (from `SearchParameter` resources). A custom
    /// parameter only adds a code the official definitions do not have for that type. The
    /// registry owns the custom definitions and compiles their expressions itself: nothing of
    /// them outlives the registries and parsed queries that use them.
    pub fn with_custom(custom: Vec<SearchParameter>) -> Arc<Registry> {
        if custom.is_empty() {
            return Registry::official();
        }
        let custom: Vec<Parameter> =
            custom.into_iter().map(|parameter| Parameter::Custom(Arc::new(parameter))).collect();
        let official = Registry::official();
        let by_type = official
            .by_type
            .iter()
            .map(|(&name, params)| {
                let mut applicable =
                    custom.iter().filter(|parameter| parameter.base.iter().any(|base| base == name)).peekable();
                let params = match applicable.peek() {
                    None => Arc::clone(params),
                    Some(_) => Arc::new(TypeParams::choose(params.params.iter().cloned().chain(applicable.cloned()))),
                };
                (name, params)
            })
            .collect();
        Arc::new(Registry { by_type })
    }

    /// The search parameters of `resource_type`, one per code, sorted by code.
    pub fn params_for(&self, resource_type: &str) -> &[Parameter] {
        self.by_type.get(resource_type).map_or(&[], |params| params.params.as_slice())
    }

    /// The parameters of `resource_type` ready for indexing (see [`Indexed`]).
    pub(crate) fn indexing(&self, resource_type: &str) -> &[Indexed] {
        let Some(params) = self.by_type.get(resource_type) else { return &[] };
        params.indexing.get_or_init(|| {
            params
                .params
                .iter()
                .map(|parameter| Indexed {
                    parameter: parameter.clone(),
                    expression: if IN_COLUMNS.contains(&parameter.code.as_str()) {
                        None
                    } else {
                        match parameter {
                            // Official expressions are a bounded set, compiled once per process.
                            Parameter::Official(official) => crate::search::nodes::compiled(resource_type, official),
                            // Custom ones belong to this registry's plan, and go with it.
                            Parameter::Custom(custom) => crate::search::nodes::compile(resource_type, custom),
                        }
                    },
                    ids: VariantIds::of(parameter),
                    composite: (parameter.kind == SearchParamType::Composite)
                        .then(|| Composite::of(parameter))
                        .flatten(),
                })
                .collect()
        })
    }

    /// The search parameter `code` of `resource_type`.
    pub fn find_param(&self, resource_type: &str, code: &str) -> Option<&Parameter> {
        let params = self.params_for(resource_type);
        params.binary_search_by(|parameter| parameter.code.as_str().cmp(code)).ok().map(|found| &params[found])
    }
}

/// The official search parameter with canonical URL `url` (composite parameters name their
/// components this way).
pub(crate) fn definition_by_url(url: &str) -> Option<&'static SearchParameter> {
    static BY_URL: OnceLock<HashMap<&'static str, &'static SearchParameter>> = OnceLock::new();
    let by_url = BY_URL.get_or_init(|| {
        let definitions = Definitions::get();
        definitions
            .resource_types()
            .flat_map(|name| definitions.search_parameters(name))
            .map(|parameter| (parameter.url.as_str(), parameter))
            .collect()
    });
    by_url.get(url).copied()
}

/// The id of a composite parameter's rows for one value of its first (token) component:
/// `code`, or `system|code` when the system is known.
pub(crate) fn composite_id(parameter: &SearchParameter, system: Option<&str>, code: &str) -> i64 {
    match system {
        Some(system) => param_id(&format!("{}#{system}|{code}", parameter.url)),
        None => param_id(&format!("{}#{code}", parameter.url)),
    }
}

/// The URL prefix of R4 core search parameters.
const CORE: &str = "http://hl7.org/fhir/SearchParameter/";

/// Reads a `SearchParameter` resource into a definition; `None` if it lacks what search needs
/// (url, code, base, type, an expression that parses).
pub fn custom_from_resource(resource: &serde_json::Value) -> Option<SearchParameter> {
    use serde_json::Value;
    let text = |key: &str| resource.get(key).and_then(Value::as_str).map(str::to_owned);
    let list = |key: &str| -> Vec<String> {
        resource
            .get(key)
            .and_then(Value::as_array)
            .map(|items| items.iter().filter_map(Value::as_str).map(str::to_owned).collect())
            .unwrap_or_default()
    };
    let kind = match text("type")?.as_str() {
        "number" => SearchParamType::Number,
        "date" => SearchParamType::Date,
        "string" => SearchParamType::String,
        "token" => SearchParamType::Token,
        "reference" => SearchParamType::Reference,
        "quantity" => SearchParamType::Quantity,
        "uri" => SearchParamType::Uri,
        _ => return None,
    };
    let expression = text("expression")?;
    crate::fhirpath::Expression::parse(&expression).ok()?;
    let base = list("base");
    if base.is_empty() {
        return None;
    }
    Some(SearchParameter {
        url: text("url")?,
        code: text("code")?,
        kind,
        base,
        expression: Some(expression),
        target: list("target"),
        description: text("description").unwrap_or_default(),
        components: Vec::new(),
    })
}

/// The stable 63-bit id of a search parameter's index rows, derived from its canonical URL
/// so that index rows stay narrow integers without a registry table to keep in sync across
/// processes.
pub fn param_id(url: &str) -> i64 {
    use std::hash::Hasher;
    let mut hasher = fnv::FnvHasher::default();
    hasher.write(url.as_bytes());
    (hasher.finish() >> 1) as i64
}

/// The id of one variant of a parameter's rows.
pub(crate) fn variant_id(parameter: &SearchParameter, variant: ParamVariant) -> i64 {
    match variant {
        ParamVariant::Value => param_id(&parameter.url),
        ParamVariant::Text => param_id(&format!("{}#text", parameter.url)),
        ParamVariant::OfType => param_id(&format!("{}#of-type", parameter.url)),
        ParamVariant::Identifier => param_id(&format!("{}#identifier", parameter.url)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_definition_per_code_core_first() {
        let registry = Registry::official();
        let params = registry.params_for("Patient");
        let names: Vec<&str> = params.iter().filter(|p| p.code == "name").map(|p| p.url.as_str()).collect();
        assert_eq!(names, ["http://hl7.org/fhir/SearchParameter/Patient-name"]);
        assert!(registry.find_param("Patient", "birthdate").is_some());
        assert!(registry.find_param("Patient", "_id").is_some());
        assert!(registry.find_param("Patient", "nonsense").is_none());
        assert!(registry.find_param("Observation", "patient").is_some());
    }

    /// A custom string parameter on Patient: given names other than `excluded`.
    fn given_except(excluded: &str) -> SearchParameter {
        SearchParameter {
            url: "http://example.org/SearchParameter/given-except".to_owned(),
            code: "given-except".to_owned(),
            kind: SearchParamType::String,
            base: vec!["Patient".to_owned()],
            expression: Some(format!("Patient.name.given.where($this != '{excluded}')")),
            target: Vec::new(),
            description: String::new(),
            components: Vec::new(),
        }
    }

    /// The custom definition and compiled expression of `code` on Patient in `registry`.
    fn custom_parts(
        registry: &Registry,
        code: &str,
    ) -> (std::sync::Weak<SearchParameter>, std::sync::Weak<Expression>) {
        let Some(Parameter::Custom(parameter)) = registry.find_param("Patient", code) else {
            panic!("{code} is not a custom parameter of Patient")
        };
        let indexed = registry.indexing("Patient").iter().find(|indexed| indexed.parameter.code == code);
        let Some(expression) = indexed.and_then(|indexed| indexed.expression.as_ref()) else {
            panic!("{code} has no compiled expression")
        };
        (Arc::downgrade(parameter), Arc::downgrade(expression))
    }

    /// Every edit of a custom parameter makes a new definition and expression; each is freed
    /// once no registry (or parsed query) uses it, and the process-wide caches keep official
    /// expressions only.
    #[test]
    fn edited_custom_parameters_do_not_accumulate() {
        let definitions = Definitions::get();
        let official_bound: usize = definitions
            .resource_types()
            .flat_map(|name| definitions.search_parameters(name))
            .map(|parameter| 1 + parameter.components.len())
            .sum();
        let patient = serde_json::json!({"resourceType": "Patient", "name": [{"given": ["7"]}]});
        let rows_id = param_id("http://example.org/SearchParameter/given-except");
        let mut registry = Registry::official();
        let mut previous = None;
        for n in 0..10_000 {
            registry = Registry::with_custom(vec![given_except(&n.to_string())]);
            // The write path: indexing with the partition's registry.
            let rows = crate::search::index_rows(&registry, "Patient", &patient);
            let indexed: Vec<&str> =
                rows.strings.iter().filter(|row| row.param == rows_id).map(|row| row.exact.as_str()).collect();
            let expected: &[&str] = if n == 7 { &[] } else { &["7"] };
            assert_eq!(indexed, expected, "edit {n} in effect");
            let parts = custom_parts(&registry, "given-except");
            if let Some((definition, expression)) = previous.replace(parts) {
                assert!(definition.upgrade().is_none(), "edit {n}: the previous definition is still alive");
                assert!(expression.upgrade().is_none(), "edit {n}: the previous expression is still alive");
            }
        }
        let cached = crate::search::nodes::cached_texts();
        assert!(
            cached.len() <= official_bound,
            "{} cached expressions, official ones number {official_bound}",
            cached.len()
        );
        assert!(!cached.iter().any(|text| text.contains("$this != '")), "a custom expression is cached process-wide");
        let Some((definition, expression)) = previous else { panic!("no registry built") };
        drop(registry);
        assert!(
            definition.upgrade().is_none() && expression.upgrade().is_none(),
            "the last edit outlives its registry"
        );
    }

    /// A parsed query keeps the custom definitions it uses, and lets them go with it.
    #[test]
    fn parsed_queries_own_their_custom_parameters() {
        let registry = Registry::with_custom(vec![given_except("x")]);
        let pairs = [("given-except".to_owned(), "y".to_owned())];
        let query = crate::search::SearchQuery::parse(&registry, "Patient", &pairs, crate::search::Handling::Strict);
        let (definition, _) = custom_parts(&registry, "given-except");
        drop(registry);
        assert!(definition.upgrade().is_some(), "the query still needs the definition");
        drop(query);
        assert!(definition.upgrade().is_none(), "freed with the query");
    }

    /// An edit (same url, new expression) takes effect in the next registry; types no custom
    /// parameter applies to share the official indexing plans.
    #[test]
    fn edits_take_effect_and_official_plans_are_shared() {
        let patient = serde_json::json!({"resourceType": "Patient", "name": [{"given": ["a", "b"]}]});
        let rows_id = param_id("http://example.org/SearchParameter/given-except");
        let given = |registry: &Registry| -> Vec<String> {
            let rows = crate::search::index_rows(registry, "Patient", &patient);
            rows.strings.iter().filter(|row| row.param == rows_id).map(|row| row.exact.clone()).collect()
        };
        let before = Registry::with_custom(vec![given_except("a")]);
        let after = Registry::with_custom(vec![given_except("b")]);
        assert_eq!(given(&before), ["b"]);
        assert_eq!(given(&after), ["a"]);
        let official = Registry::official();
        let shared = |registry: &Registry, name: &str| match (registry.by_type.get(name), official.by_type.get(name)) {
            (Some(custom), Some(official)) => Arc::ptr_eq(custom, official),
            _ => false,
        };
        assert!(shared(&after, "Observation"));
        assert!(!shared(&after, "Patient"));
        assert_eq!(after.find_param("Patient", "name"), official.find_param("Patient", "name"));
    }

    #[test]
    fn param_ids_are_stable_and_positive() {
        let id = param_id("http://hl7.org/fhir/SearchParameter/Patient-identifier");
        assert!(id > 0);
        assert_eq!(id, param_id("http://hl7.org/fhir/SearchParameter/Patient-identifier"));
    }
}
