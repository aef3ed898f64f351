//! The searches an export job runs: one pass per type, each a store search narrowed to the
//! job's level, `_since`, `transactionTime`, `_typeFilter`s and the caller's scope filters.

use std::collections::BTreeSet;

use fhir::search::{Clause, Handling, Registry, SearchQuery, Total};

use crate::job::{ExportJob, Level};

/// The types a patient-level export adds when the compartments reference them.
pub const REFERENCED_TYPES: [&str; 4] = ["Organization", "Practitioner", "Location", "Medication"];

/// What one pass over a type exports.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Pass {
    /// Every resource of the type matching the job's filters.
    All,
    /// The type's resources in the compartments of the job's patients.
    Compartment(Clause),
    /// The referenced resources collected from the compartments (patient level).
    Referenced,
    /// Nothing: the type cannot be in the export.
    Empty,
}

/// The pass for `resource_type` of `job`.
pub(crate) fn pass(registry: &Registry, job: &ExportJob, resource_type: &str) -> Pass {
    match &job.level {
        Level::System => Pass::All,
        Level::Patients { patients } => {
            if let Some(clause) = patient_clause(registry, resource_type, patients.clone()) {
                Pass::Compartment(clause)
            } else if REFERENCED_TYPES.contains(&resource_type) {
                Pass::Referenced
            } else {
                Pass::Empty
            }
        }
    }
}

/// The clause confining `resource_type` to the data of `patients` (of every patient when
/// `None`): their compartments, or, for a type outside the Patient compartment that names its
/// patient (`Device.patient`), that reference. `None` when the type holds no patient's data.
pub fn patient_clause(registry: &Registry, resource_type: &str, patients: Option<Vec<String>>) -> Option<Clause> {
    if fhir::Definitions::get().compartment_params("Patient", resource_type).is_empty() && resource_type != "Patient" {
        return Clause::linked(registry, resource_type, &["patient".to_owned()], "Patient", patients);
    }
    Clause::compartments(registry, "Patient", patients, resource_type)
}

/// The types a patient-level export may hold, in the order they are written: those with
/// patients' data, then those their resources reference ([`REFERENCED_TYPES`]).
pub fn patient_types(registry: &Registry) -> Vec<&'static str> {
    let definitions = fhir::Definitions::get();
    let mut types: Vec<&'static str> = definitions
        .resource_types()
        .filter(|resource_type| patient_clause(registry, resource_type, None).is_some())
        .collect();
    types.extend(REFERENCED_TYPES);
    types
}

/// The patients of the Group `id` in `env` ([`group_members`]); `None` when there is no such
/// Group.
pub async fn read_group(
    store: &dyn store::Store,
    env: store::Environment,
    id: &fhir::id::LogicalId,
) -> Result<Option<Vec<String>>, store::Error> {
    let Some(group_type) = fhir::id::ResourceType::parse("Group") else { return Ok(None) };
    let Some(group) = store.read(env, &group_type, id).await?.filter(|group| !group.deleted) else { return Ok(None) };
    let group: serde_json::Value = serde_json::from_str(&group.body).map_err(|error| store::Error::InvalidRecord {
        kind: "Group".to_owned(),
        id: id.to_string(),
        reason: error.to_string(),
    })?;
    Ok(Some(group_members(&group)))
}

/// The patients a Group export covers: the ids of its active `Patient` members.
pub fn group_members(group: &serde_json::Value) -> Vec<String> {
    group["member"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|member| member["inactive"] != serde_json::Value::Bool(true))
        .filter_map(|member| patient_id(member["entity"]["reference"].as_str()?))
        .collect()
}

/// `Patient/123`, or an absolute URL ending so, as `123`.
pub fn patient_id(reference: &str) -> Option<String> {
    let mut segments = reference.rsplit('/');
    let id = segments.next()?;
    (segments.next()? == "Patient" && fhir::id::is_valid_id(id)).then(|| id.to_owned())
}

/// The types a system export may hold, in order (every resource type).
pub fn all_types() -> Vec<&'static str> {
    fhir::Definitions::get().resource_types().collect()
}

/// The types an export may hold, in the order they are written: those `asked` for (every type
/// when none), at patient level only those that hold patients' data or that it references.
pub fn candidate_types(registry: &Registry, asked: Option<&[String]>, patient_level: bool) -> Vec<String> {
    let wanted = |resource_type: &&str| asked.is_none_or(|asked| asked.iter().any(|name| name == resource_type));
    let types = if patient_level { patient_types(registry) } else { all_types() };
    types.into_iter().filter(wanted).map(str::to_owned).collect()
}

/// The most patients a patient-level export may name: each is bound into every page's query,
/// and databases bound the parameters of a statement (SQLite: 32,766).
pub const MAX_PATIENTS: usize = 10_000;

/// Refuses an export of more patients than [`MAX_PATIENTS`], saying so.
pub fn check_patients(count: usize) -> Result<(), String> {
    if count > MAX_PATIENTS {
        return Err(format!("an export names at most {MAX_PATIENTS} patients; this one names {count}"));
    }
    Ok(())
}

/// `_since` as the job keeps it: a FHIR instant (with a time), normalized.
pub fn since(text: &str) -> Result<String, String> {
    fhir::instant::parse_lower_bound(text)
        .filter(|_| text.contains('T'))
        .map(fhir::instant::format)
        .ok_or_else(|| format!("'{text}' is not a FHIR instant (2024-01-31T10:00:00Z)"))
}

/// A `_typeFilter` (`Type?query`) split and checked: the type exists and the query is a
/// search the export can run.
pub fn type_filter(registry: &Registry, filter: &str) -> Result<(String, String), String> {
    let (resource_type, query) =
        filter.split_once('?').ok_or_else(|| format!("'{filter}' is not of the form Type?query"))?;
    if !fhir::Definitions::get().is_resource_type(resource_type) {
        return Err(format!("'{resource_type}' is not a resource type"));
    }
    any_of(registry, resource_type, &[query.to_owned()])?;
    Ok((resource_type.to_owned(), query.to_owned()))
}

/// Whether a patient-level export collects references to `resource_type`.
pub(crate) fn collects(job: &ExportJob, resource_type: &str) -> bool {
    matches!(job.level, Level::Patients { .. })
        && REFERENCED_TYPES.contains(&resource_type)
        && job.types.iter().any(|wanted| wanted == resource_type)
}

/// The query of one page of `resource_type`: the job's instant bounds, its filters, and
/// `extra` (the compartment, or the ids of a referenced chunk), continuing at `cursor`.
pub(crate) fn query(
    registry: &Registry,
    job: &ExportJob,
    resource_type: &str,
    extra: Option<Clause>,
    cursor: Option<String>,
) -> Result<SearchQuery, String> {
    let mut pairs = vec![("_lastUpdated".to_owned(), format!("le{}", job.transaction_time))];
    if let Some(since) = &job.since {
        pairs.push(("_lastUpdated".to_owned(), format!("ge{since}")));
    }
    let mut query = SearchQuery::parse(registry, resource_type, &pairs, Handling::Strict)
        .map_err(|issue| format!("the export's time bounds cannot be searched: {}", issue.diagnostics))?;
    for filters in [job.type_filters.get(resource_type), job.scope_filters.get(resource_type)].into_iter().flatten() {
        query.clauses.push(any_of(registry, resource_type, filters)?);
    }
    query.clauses.extend(extra);
    query.total = Total::None;
    query.cursor = cursor;
    Ok(query)
}

/// One clause matching any of `queries` (each a search query string on `resource_type`).
pub fn any_of(registry: &Registry, resource_type: &str, queries: &[String]) -> Result<Clause, String> {
    let mut alternatives = Vec::new();
    for text in queries {
        let pairs: Vec<(String, String)> =
            serde_urlencoded::from_str(text).map_err(|_| format!("'{text}' is not a query string"))?;
        let parsed = SearchQuery::parse(registry, resource_type, &pairs, Handling::Strict)
            .map_err(|issue| format!("{resource_type}?{text}: {}", issue.diagnostics))?;
        if !parsed.includes.is_empty() || !parsed.revincludes.is_empty() || !parsed.sort.is_empty() {
            return Err(format!("{resource_type}?{text}: a filter holds search criteria only"));
        }
        alternatives.push(Clause::AllOf(parsed.clauses));
    }
    Ok(Clause::AnyOf(alternatives))
}

/// The next chunk of referenced ids after `after`, at most `page` of them.
pub(crate) fn referenced_chunk(ids: &BTreeSet<String>, after: Option<&str>, page: usize) -> Vec<String> {
    let rest = match after {
        Some(after) => ids.range::<str, _>((std::ops::Bound::Excluded(after), std::ops::Bound::Unbounded)),
        None => ids.range::<str, _>(..),
    };
    rest.take(page).cloned().collect()
}
