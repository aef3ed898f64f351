//! The compact definitions model: what validation, search and the CapabilityStatement need from
//! the official packages, and nothing more.
//!
//! `build.rs` fills it from the StructureDefinitions, ValueSets, CodeSystems, SearchParameters and
//! CompartmentDefinitions of R4 core and US Core, and writes it with postcard; the library decodes
//! it once at start. The same file is compiled into both (build.rs includes it with `#[path]`), so
//! writer and reader can never disagree on the layout.

use serde::{Deserialize, Serialize};

/// Upper cardinality standing for `*`.
pub(crate) const MANY: u32 = u32::MAX;

/// Everything compiled from the packages.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Model {
    /// Resources, complex datatypes and primitive types (specializations only), sorted by name.
    pub(crate) types: Vec<TypeDef>,
    /// Value sets bound with strength `required`, in the order bindings first refer to them
    /// ([`Element::binding`] and [`ProfileConstraint::binding`] index this list).
    pub(crate) value_sets: Vec<ValueSet>,
    /// US Core resource profiles, sorted by URL (6.1.0 and 7.0.0 share URLs; 7.0.0 wins).
    pub(crate) profiles: Vec<Profile>,
    /// R4 core and US Core search parameters, one per URL.
    pub(crate) search_parameters: Vec<SearchParameter>,
    /// The R4 CompartmentDefinitions.
    pub(crate) compartments: Vec<Compartment>,
    /// Extension definitions of R4 core and US Core, sorted by URL.
    pub(crate) extensions: Vec<ExtensionDef>,
}

/// An extension definition: where the extension may be used and what it holds.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct ExtensionDef {
    pub(crate) url: String,
    /// The `element` contexts it may be used in: a type (`Patient`, `Address`, `Element` for
    /// anywhere) or an element path (`Patient.contact`).
    pub(crate) contexts: Vec<String>,
    /// Cardinality and types of `value[x]` (`value_max` 0 for a complex extension).
    pub(crate) value_min: u32,
    pub(crate) value_max: u32,
    pub(crate) value_types: Vec<String>,
    /// Upper cardinality of nested extensions (0 for a simple extension).
    pub(crate) extensions_max: u32,
    /// The parts of a complex extension (its `extension` slices by `url`).
    pub(crate) parts: Vec<ExtensionPart>,
}

/// One part of a complex extension: a nested extension with its own `url`.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct ExtensionPart {
    pub(crate) url: String,
    pub(crate) min: u32,
    pub(crate) max: u32,
    pub(crate) value_min: u32,
    pub(crate) value_max: u32,
    pub(crate) value_types: Vec<String>,
}

/// What kind of type a [`TypeDef`] describes (`StructureDefinition.kind`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum TypeKind {
    Primitive,
    Complex,
    Resource,
}

/// How a primitive type's value is written in JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum JsonKind {
    /// A JSON `true` or `false` (FHIRPath `System.Boolean`).
    Boolean,
    /// A JSON number without fraction or exponent, 32-bit (FHIRPath `System.Integer`).
    Integer,
    /// A JSON number (FHIRPath `System.Decimal`).
    Decimal,
    /// A JSON string (every other FHIRPath system type).
    String,
}

/// One type and its element tree, from the StructureDefinition snapshot.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct TypeDef {
    pub(crate) name: String,
    pub(crate) kind: TypeKind,
    pub(crate) is_abstract: bool,
    /// The type this one specializes (`DomainResource` for most resources).
    pub(crate) base: Option<String>,
    /// For primitive types: the JSON shape of the value.
    pub(crate) json: JsonKind,
    /// For primitive types: the value regex (`http://hl7.org/fhir/StructureDefinition/regex`).
    pub(crate) regex: Option<String>,
    /// The snapshot elements; index 0 is the root. Primitive types leave out their `value`
    /// element, so that the list holds exactly what a `_name` object may carry.
    pub(crate) elements: Vec<Element>,
}

/// A FHIRPath invariant an element must satisfy.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Invariant {
    /// The constraint's key (`dom-3`, `obs-6`).
    pub(crate) key: String,
    /// `error` severity rejects a write; otherwise it is a warning.
    pub(crate) error: bool,
    /// The constraint's human text.
    pub(crate) human: String,
    /// The FHIRPath expression that must evaluate to true, with the element as context.
    pub(crate) expression: String,
}

/// One element of a type's snapshot.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Element {
    /// Last path segment without the `[x]` suffix.
    pub(crate) name: String,
    /// True for choice elements (`value[x]`).
    pub(crate) choice: bool,
    pub(crate) min: u32,
    /// Upper cardinality, [`MANY`] for `*`.
    pub(crate) max: u32,
    /// Type codes (`string`, `CodeableConcept`, `Resource`, …); FHIRPath system types are
    /// replaced by the FHIR type their `structuredefinition-fhir-type` extension names.
    pub(crate) types: Vec<String>,
    /// Indexes (into the type's `elements`) of the child elements defined inline.
    pub(crate) children: Vec<u32>,
    /// For `contentReference` elements: index of the element whose children are reused.
    pub(crate) content_reference: Option<u32>,
    /// Index into [`Model::value_sets`] of a `required` binding.
    pub(crate) binding: Option<u32>,
    /// `isSummary`: part of the `_summary=true` view.
    pub(crate) summary: bool,
    /// The invariants (`ElementDefinition.constraint`) that hold on each value of the element.
    /// The root of a resource or complex type has all its snapshot lists (inherited `dom-*`
    /// included); any other element has only those written for it (`obs-3` on
    /// `Observation.referenceRange`), not those of its type (which its type's root has), nor
    /// `ele-1`, which every element repeats.
    pub(crate) invariants: Vec<Invariant>,
}

/// A value set, expanded at build time when the packages allow it.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct ValueSet {
    pub(crate) url: String,
    /// The codes per system, or `None` when the value set cannot be expanded from the packages
    /// (filters, external code systems such as UCUM or BCP-47): such value sets are not checked.
    pub(crate) expansion: Option<Vec<SystemCodes>>,
}

/// The codes a value set takes from one code system.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct SystemCodes {
    pub(crate) system: String,
    /// Sorted, without duplicates.
    pub(crate) codes: Vec<String>,
}

/// A US Core profile on a resource type: the constraints it adds to the base type.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Profile {
    pub(crate) url: String,
    pub(crate) type_name: String,
    pub(crate) constraints: Vec<ProfileConstraint>,
    /// The elements it slices.
    pub(crate) slicings: Vec<Slicing>,
    /// The invariants it adds (`us-core-6`…), by path segments below the resource (empty for
    /// the resource itself; a choice keeps its `[x]`).
    pub(crate) invariants: Vec<(Vec<String>, Invariant)>,
}

/// A fixed or pattern value (`fixed[x]`, `pattern[x]`), as JSON text.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Fixed {
    /// A pattern: the value must hold at least what it holds; otherwise exactly it.
    pub(crate) pattern: bool,
    pub(crate) json: String,
}

/// An element a profile slices (`Observation.category`, `Patient.extension`).
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Slicing {
    /// Path segments below the resource; a choice keeps its `[x]`.
    pub(crate) path: Vec<String>,
    /// Closed slicing: every value belongs to one of the slices.
    pub(crate) closed: bool,
    pub(crate) slices: Vec<Slice>,
}

/// One slice: what puts a value in it (every discriminator), how many it takes, and the fixed
/// and pattern values below it.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Slice {
    pub(crate) name: String,
    pub(crate) min: u32,
    pub(crate) max: u32,
    pub(crate) discriminators: Vec<Discriminator>,
    /// Fixed and pattern values of the slice's elements, by path segments below the slice
    /// (empty for the slice's own value).
    pub(crate) values: Vec<(Vec<String>, Fixed)>,
    /// The invariants the profile adds to the slice's values (`us-core-16` on an NPI).
    pub(crate) invariants: Vec<Invariant>,
}

/// What a value of a slice has.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) enum Discriminator {
    /// At the path below the value (empty for the value itself), a value that matches.
    Value { path: Vec<String>, value: Fixed },
    /// The value is of this type (`valueQuantity` for `Quantity`).
    Type(String),
}

/// One element the profile constrains beyond the base type (slices are left out).
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct ProfileConstraint {
    /// Path segments below the resource (`["name", "family"]`); a choice keeps its `[x]`.
    pub(crate) path: Vec<String>,
    pub(crate) min: u32,
    pub(crate) max: u32,
    pub(crate) types: Vec<String>,
    /// Index into [`Model::value_sets`] of a `required` binding.
    pub(crate) binding: Option<u32>,
    /// A fixed or pattern value the profile gives the element.
    pub(crate) value: Option<Fixed>,
}

/// A CompartmentDefinition: for each resource type, the search parameters that link a resource
/// to the compartment.
#[derive(Debug, Serialize, Deserialize)]
pub(crate) struct Compartment {
    /// The compartment type (`Patient`, `Encounter`, …).
    pub(crate) code: String,
    /// `(resource type, parameter codes)`, sorted by resource type.
    pub(crate) resources: Vec<(String, Vec<String>)>,
}

/// Kind of a search parameter (`SearchParameter.type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SearchParamType {
    Number,
    Date,
    String,
    Token,
    Reference,
    Composite,
    Quantity,
    Uri,
    Special,
}

/// One search parameter from the official definitions.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SearchParameter {
    /// Canonical URL of the SearchParameter.
    pub url: String,
    /// The name used in queries (`SearchParameter.code`).
    pub code: String,
    pub kind: SearchParamType,
    /// Resource types this parameter applies to.
    pub base: Vec<String>,
    /// FHIRPath expression, when the definition has one.
    pub expression: Option<String>,
    /// Target resource types for reference parameters.
    pub target: Vec<String>,
    /// Documentation, shown in the CapabilityStatement.
    pub description: String,
    /// For composite parameters: the component parameters' canonical URLs and the FHIRPath
    /// expressions (relative to the composite's expression) that select their values.
    pub components: Vec<SearchParamComponent>,
}

/// One part of a composite search parameter (`SearchParameter.component`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct SearchParamComponent {
    /// Canonical URL of the component's SearchParameter.
    pub definition: String,
    /// FHIRPath expression relative to the composite parameter's expression.
    pub expression: String,
}
