//! What the consent page offers and what the user's ticks grant.
//!
//! Every requested scope the user's role may hold is offered, ticked; for Condition,
//! Observation and DocumentReference scopes without a query, the US Core granular sub-scopes
//! (categories, from `data/smart/scope_parameters.json`) are offered unticked beneath, so a
//! user can grant categories instead of the whole type (ONC attestation 11.03, Inferno's
//! granular scope selection). Nothing that was not offered can be granted.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use crate::scope::{Context, Permission, ResourceScope, Scope, Scopes};
use crate::user::Role;

/// The granular scope queries per resource type, as Inferno's reference server lists them.
const SCOPE_PARAMETERS: &str = include_str!("../../../data/smart/scope_parameters.json");

/// Clinical Test observations (ONC attestations 11.18–11.21) are not in the reference list.
const CLINICAL_TEST: &str = "category=http://terminology.hl7.org/CodeSystem/observation-category|procedure";

/// One choice on the consent page.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Offer {
    /// The scope string the checkbox grants.
    pub scope: String,
    pub label: String,
    /// Ticked when the page opens: what the app asked for. Sub-scopes start unticked.
    pub ticked: bool,
    /// A narrower choice under the scope before it.
    pub nested: bool,
}

/// The choices for `requested`, as a user of `role` may grant them: patients hold no `user/`
/// scopes (they would reach every patient's data), and no one grants `system/` scopes here.
pub fn offers(requested: &Scopes, role: Role) -> Vec<Offer> {
    let mut offers = Vec::new();
    for scope in requested.iter() {
        match scope {
            Scope::Resource(resource) => {
                let allowed = match resource.context {
                    Context::Patient => true,
                    Context::User => role != Role::Patient,
                    Context::System => false,
                };
                if !allowed {
                    continue;
                }
                offers.push(Offer { scope: scope.to_string(), label: describe(resource), ticked: true, nested: false });
                offers.extend(sub_scopes(resource));
            }
            other => offers.push(Offer {
                scope: other.to_string(),
                label: describe_other(&other.to_string()),
                ticked: true,
                nested: false,
            }),
        }
    }
    offers
}

/// The scopes granted by the ticked `choices`, among `offers`; `None` when nothing was.
pub fn granted<'a>(offers: &[Offer], choices: impl IntoIterator<Item = &'a str>) -> Option<Scopes> {
    let mut granted = Scopes::default();
    for choice in choices {
        if offers.iter().any(|offer| offer.scope == choice)
            && let Ok(scope) = Scope::parse(choice)
        {
            granted.insert(scope);
        }
    }
    let empty = granted.iter().next().is_none();
    (!empty).then_some(granted)
}

/// The category sub-scopes of a whole-type v2 scope that reads or searches.
fn sub_scopes(resource: &ResourceScope) -> Vec<Offer> {
    let Some(resource_type) = &resource.resource_type else { return Vec::new() };
    let readable = resource.permissions.contains(Permission::Read) || resource.permissions.contains(Permission::Search);
    if resource.query.is_some() || !readable {
        return Vec::new();
    }
    let Some(queries) = scope_parameters().get(resource_type.as_str()) else { return Vec::new() };
    // Categories narrow reading: the sub-scopes read and search (a v1 `.read` is both).
    let permissions: String = [(Permission::Read, 'r'), (Permission::Search, 's')]
        .iter()
        .filter(|(permission, _)| resource.permissions.contains(*permission))
        .map(|(_, letter)| *letter)
        .collect();
    queries
        .iter()
        .map(|query| Offer {
            scope: format!("{}/{resource_type}.{permissions}?{query}", resource.context.as_str()),
            label: format!("only {}", category_label(query)),
            ticked: false,
            nested: true,
        })
        .collect()
}

fn scope_parameters() -> &'static BTreeMap<String, Vec<String>> {
    static PARAMETERS: OnceLock<BTreeMap<String, Vec<String>>> = OnceLock::new();
    PARAMETERS.get_or_init(|| {
        let mut parameters: BTreeMap<String, Vec<String>> = serde_json::from_str(SCOPE_PARAMETERS).unwrap_or_default();
        if let Some(observation) = parameters.get_mut("Observation") {
            observation.push(CLINICAL_TEST.to_owned());
        }
        parameters
    })
}

/// `category=…|health-concern` → "health concern".
fn category_label(query: &str) -> String {
    let code = query.rsplit(['|', '=']).next().unwrap_or(query);
    match code {
        "sdoh" => "social determinants of health (SDOH)".to_owned(),
        "procedure" => "clinical tests".to_owned(),
        code => code.replace('-', " "),
    }
}

fn describe(resource: &ResourceScope) -> String {
    let what = resource.resource_type.as_deref().unwrap_or("all resource types");
    let mut verbs = Vec::new();
    for (permission, verb) in [
        (Permission::Create, "create"),
        (Permission::Read, "read"),
        (Permission::Update, "update"),
        (Permission::Delete, "delete"),
        (Permission::Search, "search"),
    ] {
        if resource.permissions.contains(permission) {
            verbs.push(verb);
        }
    }
    let whose = match resource.context {
        Context::Patient => "of the patient",
        Context::User => "you can see",
        Context::System => "of everyone",
    };
    format!("{} {what} {whose}", capitalised(&verbs.join(", ")))
}

fn describe_other(scope: &str) -> String {
    match scope {
        "openid" | "fhirUser" => "Know who you are".to_owned(),
        "launch" | "launch/patient" => "Know which patient is open".to_owned(),
        "launch/encounter" => "Know which encounter is open".to_owned(),
        "offline_access" => "Keep access after you close the app (until you revoke it)".to_owned(),
        "online_access" => "Keep access while you are signed in".to_owned(),
        other => other.to_owned(),
    }
}

fn capitalised(text: &str) -> String {
    let mut chars = text.chars();
    chars.next().map(|first| first.to_uppercase().chain(chars).collect()).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scopes(text: &str) -> Scopes {
        Scopes::parse(text).unwrap()
    }

    #[test]
    fn patients_are_offered_their_own_data_and_categories() {
        let requested = scopes("launch/patient openid patient/Condition.rs user/Observation.rs system/Patient.rs");
        let offered = offers(&requested, Role::Patient);
        let names: Vec<&str> = offered.iter().map(|offer| offer.scope.as_str()).collect();
        assert!(names.contains(&"patient/Condition.rs"));
        assert!(
            names.contains(&"patient/Condition.rs?category=http://terminology.hl7.org/CodeSystem/condition-category|encounter-diagnosis")
        );
        assert!(!names.iter().any(|name| name.starts_with("user/") || name.starts_with("system/")), "{names:?}");
        let practitioner = offers(&requested, Role::Practitioner);
        assert!(practitioner.iter().any(|offer| offer.scope == "user/Observation.rs"));
        assert!(practitioner.iter().any(|offer| offer.scope.ends_with("observation-category|procedure")));
        assert!(offered.iter().filter(|offer| offer.nested).all(|offer| !offer.ticked));
    }

    #[test]
    fn only_offered_scopes_are_granted() {
        let offered = offers(&scopes("launch/patient patient/Condition.rs patient/Patient.rs"), Role::Patient);
        let sub =
            "patient/Condition.rs?category=http://hl7.org/fhir/us/core/CodeSystem/condition-category|health-concern";
        let granted = granted(&offered, ["launch/patient", sub, "patient/Patient.rs", "patient/*.cruds"]).unwrap();
        assert_eq!(granted.to_string(), format!("launch/patient {sub} patient/Patient.rs"));
        assert!(super::granted(&offered, ["user/*.cruds"]).is_none());
    }

    #[test]
    fn v1_scopes_get_v2_sub_scopes() {
        let offered = offers(&scopes("patient/Observation.read"), Role::Patient);
        assert_eq!(offered[0].scope, "patient/Observation.read");
        assert!(offered[1].scope.starts_with("patient/Observation.rs?category="), "{offered:?}");
    }
}
