//! SMART App Launch scopes: parsing (v2 `patient/Observation.rs?category=…` and v1
//! `patient/Observation.read`), the granted scope string, and what a set of scopes allows.
//!
//! A scope string is a space-separated list. Resource scopes name a context (`patient`,
//! `user`, `system`), a resource type or `*`, and permissions: v2 spells them as a subset of
//! `cruds` in that order, v1 as `read` (read and search), `write` (create, update, delete) or
//! `*`. A v2 scope may end in a query that narrows it to the resources matching it (a
//! granular scope). Everything else is a launch or identity scope; unknown scopes are kept
//! and passed through untouched, as the spec asks of servers that do not grant them.

use std::fmt;

/// Whose data a resource scope reaches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Context {
    /// The patient in context: the patient's compartment only.
    Patient,
    /// What the signed-in user may see.
    User,
    /// A backend service, with no user.
    System,
}

impl Context {
    fn parse(text: &str) -> Option<Context> {
        match text {
            "patient" => Some(Context::Patient),
            "user" => Some(Context::User),
            "system" => Some(Context::System),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Context::Patient => "patient",
            Context::User => "user",
            Context::System => "system",
        }
    }
}

/// One of the five SMART v2 permissions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Permission {
    Create,
    Read,
    Update,
    Delete,
    Search,
}

impl Permission {
    const ALL: [Permission; 5] =
        [Permission::Create, Permission::Read, Permission::Update, Permission::Delete, Permission::Search];

    fn letter(self) -> char {
        match self {
            Permission::Create => 'c',
            Permission::Read => 'r',
            Permission::Update => 'u',
            Permission::Delete => 'd',
            Permission::Search => 's',
        }
    }

    fn bit(self) -> u8 {
        match self {
            Permission::Create => 1,
            Permission::Read => 2,
            Permission::Update => 4,
            Permission::Delete => 8,
            Permission::Search => 16,
        }
    }
}

/// A set of permissions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Permissions(u8);

impl Permissions {
    /// Every permission (`cruds`, v1 `*`).
    pub const ALL: Permissions = Permissions(31);
    /// v1 `read`: read and search.
    pub const READ: Permissions = Permissions(2 | 16);
    /// v1 `write`: create, update and delete.
    pub const WRITE: Permissions = Permissions(1 | 4 | 8);

    pub fn contains(self, permission: Permission) -> bool {
        self.0 & permission.bit() != 0
    }

    /// True when every permission of `other` is in `self`.
    pub fn covers(self, other: Permissions) -> bool {
        self.0 & other.0 == other.0
    }

    /// The v2 spelling, letters in `cruds` order.
    fn letters(self) -> String {
        Permission::ALL.iter().filter(|permission| self.contains(**permission)).map(|p| p.letter()).collect()
    }

    /// Parses v2 letters, which must come in `cruds` order, each at most once.
    fn parse_v2(text: &str) -> Option<Permissions> {
        let mut bits = 0u8;
        let mut next = 0;
        for letter in text.chars() {
            let position = Permission::ALL[next..].iter().position(|permission| permission.letter() == letter)?;
            bits |= Permission::ALL[next + position].bit();
            next += position + 1;
        }
        (bits != 0).then_some(Permissions(bits))
    }
}

/// How a resource scope was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Version {
    /// `.read`, `.write` or `.*`.
    V1,
    /// `.cruds` letters, maybe with a query.
    V2,
}

/// A scope on resources: `context/type.permissions[?query]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ResourceScope {
    pub context: Context,
    /// The resource type; `None` for `*`.
    pub resource_type: Option<String>,
    pub permissions: Permissions,
    /// A granular scope's query (`category=http://…|laboratory`), as written, without `?`.
    pub query: Option<String>,
    pub version: Version,
}

impl ResourceScope {
    fn parse(text: &str) -> Option<ResourceScope> {
        let (context, rest) = text.split_once('/')?;
        let context = Context::parse(context)?;
        let (target, rest) = rest.split_once('.')?;
        let resource_type = match target {
            "*" => None,
            name if is_type_name(name) => Some(name.to_owned()),
            _ => return None,
        };
        let (permissions, query) = match rest.split_once('?') {
            Some((permissions, query)) if !query.is_empty() => (permissions, Some(query.to_owned())),
            Some(_) => return None,
            None => (rest, None),
        };
        let (permissions, version) = match permissions {
            "read" => (Permissions::READ, Version::V1),
            "write" => (Permissions::WRITE, Version::V1),
            "*" => (Permissions::ALL, Version::V1),
            letters => (Permissions::parse_v2(letters)?, Version::V2),
        };
        if version == Version::V1 && query.is_some() {
            return None;
        }
        Some(ResourceScope { context, resource_type, permissions, query, version })
    }

    /// True when this scope reaches resources of `resource_type`.
    pub fn reaches(&self, resource_type: &str) -> bool {
        self.resource_type.as_deref().is_none_or(|name| name == resource_type)
    }

    /// True when everything `other` allows, this scope allows too (for narrowing a grant on
    /// refresh): same context, same or wider type, its permissions, and no query or the same.
    pub fn covers(&self, other: &ResourceScope) -> bool {
        self.context == other.context
            && (self.resource_type.is_none() || self.resource_type == other.resource_type)
            && self.permissions.covers(other.permissions)
            && (self.query.is_none() || self.query == other.query)
    }
}

impl fmt::Display for ResourceScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}.", self.context.as_str(), self.resource_type.as_deref().unwrap_or("*"))?;
        match self.version {
            Version::V1 if self.permissions == Permissions::READ => f.write_str("read")?,
            Version::V1 if self.permissions == Permissions::WRITE => f.write_str("write")?,
            Version::V1 => f.write_str("*")?,
            Version::V2 => f.write_str(&self.permissions.letters())?,
        }
        match &self.query {
            Some(query) => write!(f, "?{query}"),
            None => Ok(()),
        }
    }
}

/// `A-Z` then letters: the shape of a FHIR resource type name (whether the type exists is
/// for the caller, who has the definitions).
fn is_type_name(name: &str) -> bool {
    name.starts_with(|c: char| c.is_ascii_uppercase()) && name.chars().all(|c| c.is_ascii_alphanumeric())
}

/// One scope of a scope string.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Scope {
    Resource(ResourceScope),
    /// `openid`: an `id_token` is wanted.
    OpenId,
    /// `fhirUser`: the `id_token` names the user's FHIR resource.
    FhirUser,
    /// `launch`: an EHR launch's context.
    Launch,
    /// `launch/patient`: a standalone launch wants a patient chosen.
    LaunchPatient,
    /// `launch/encounter`: a standalone launch wants an encounter chosen.
    LaunchEncounter,
    /// `offline_access`: a refresh token that outlives the session.
    OfflineAccess,
    /// `online_access`: a refresh token for as long as the user is signed in.
    OnlineAccess,
    /// Anything else, kept as written.
    Other(String),
}

impl Scope {
    /// Parses one scope; a word that is no SMART scope is [`Scope::Other`], and a resource
    /// scope that is malformed is an error (a client asking for `patient/Observation.x`
    /// made a mistake worth telling it about).
    pub fn parse(text: &str) -> Result<Scope, ScopeError> {
        Ok(match text {
            "openid" => Scope::OpenId,
            "fhirUser" => Scope::FhirUser,
            "launch" => Scope::Launch,
            "launch/patient" => Scope::LaunchPatient,
            "launch/encounter" => Scope::LaunchEncounter,
            "offline_access" => Scope::OfflineAccess,
            "online_access" => Scope::OnlineAccess,
            _ if looks_like_resource_scope(text) => {
                Scope::Resource(ResourceScope::parse(text).ok_or_else(|| ScopeError::Malformed(text.to_owned()))?)
            }
            _ => Scope::Other(text.to_owned()),
        })
    }
}

fn looks_like_resource_scope(text: &str) -> bool {
    ["patient/", "user/", "system/"].iter().any(|prefix| text.starts_with(prefix))
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scope::Resource(scope) => scope.fmt(f),
            Scope::OpenId => f.write_str("openid"),
            Scope::FhirUser => f.write_str("fhirUser"),
            Scope::Launch => f.write_str("launch"),
            Scope::LaunchPatient => f.write_str("launch/patient"),
            Scope::LaunchEncounter => f.write_str("launch/encounter"),
            Scope::OfflineAccess => f.write_str("offline_access"),
            Scope::OnlineAccess => f.write_str("online_access"),
            Scope::Other(text) => f.write_str(text),
        }
    }
}

/// Why a scope string was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScopeError {
    #[error("'{0}' is not a valid SMART resource scope (context/Type.permissions, e.g. patient/Observation.rs)")]
    Malformed(String),
    #[error("the scope string is empty")]
    Empty,
}

/// A set of scopes, in the order first written, without duplicates.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Scopes(Vec<Scope>);

impl Scopes {
    /// Parses a space-separated scope string (RFC 6749 §3.3).
    pub fn parse(text: &str) -> Result<Scopes, ScopeError> {
        let mut scopes = Scopes::default();
        for word in text.split(' ').filter(|word| !word.is_empty()) {
            scopes.insert(Scope::parse(word)?);
        }
        if scopes.0.is_empty() {
            return Err(ScopeError::Empty);
        }
        Ok(scopes)
    }

    /// Adds `scope` unless it is already there.
    pub fn insert(&mut self, scope: Scope) {
        if !self.0.contains(&scope) {
            self.0.push(scope);
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = &Scope> {
        self.0.iter()
    }

    pub fn contains(&self, scope: &Scope) -> bool {
        self.0.contains(scope)
    }

    /// The resource scopes.
    pub fn resources(&self) -> impl Iterator<Item = &ResourceScope> {
        self.0.iter().filter_map(|scope| match scope {
            Scope::Resource(scope) => Some(scope),
            _ => None,
        })
    }

    /// Only the scopes `keep` accepts.
    pub fn retain(&mut self, keep: impl FnMut(&Scope) -> bool) {
        self.0.retain(keep);
    }

    /// True when every scope of `narrower` is granted here: the same scope, or a resource
    /// scope this set covers. A refresh may ask for less than was granted, never more.
    pub fn covers(&self, narrower: &Scopes) -> bool {
        narrower.iter().all(|wanted| self.covers_one(wanted))
    }

    /// True when `wanted` is granted here: the same scope, or a resource scope this set covers.
    pub fn covers_one(&self, wanted: &Scope) -> bool {
        match wanted {
            Scope::Resource(wanted) => self.resources().any(|granted| granted.covers(wanted)),
            other => self.contains(other),
        }
    }

    /// What these scopes allow on resources of `resource_type` in `context`-level access:
    /// [`Access::Denied`], [`Access::All`], or only the resources matching one of the
    /// granular queries.
    pub fn access(&self, context: Context, resource_type: &str, permission: Permission) -> Access {
        let mut queries = Vec::new();
        for scope in self.resources() {
            if scope.context == context && scope.reaches(resource_type) && scope.permissions.contains(permission) {
                match &scope.query {
                    None => return Access::All,
                    Some(query) => queries.push(query.clone()),
                }
            }
        }
        if queries.is_empty() { Access::Denied } else { Access::Matching(queries) }
    }
}

impl fmt::Display for Scopes {
    /// The scope string: scopes as written, space-separated.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, scope) in self.0.iter().enumerate() {
            if index > 0 {
                f.write_str(" ")?;
            }
            scope.fmt(f)?;
        }
        Ok(())
    }
}

/// What a set of scopes allows for one resource type and permission.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Access {
    Denied,
    All,
    /// Only resources that match at least one of these granular queries.
    Matching(Vec<String>),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resource(text: &str) -> ResourceScope {
        match Scope::parse(text) {
            Ok(Scope::Resource(scope)) => scope,
            other => panic!("{text}: {other:?}"),
        }
    }

    #[test]
    fn v2_permissions_in_cruds_order() {
        assert_eq!(resource("patient/Observation.rs").permissions, Permissions::READ);
        assert_eq!(resource("user/*.cruds").permissions, Permissions::ALL);
        assert_eq!(resource("system/Patient.cud").permissions, Permissions::WRITE);
        for bad in ["patient/Observation.sr", "patient/Observation.rr", "patient/Observation.", "patient/Observation.x"]
        {
            assert_eq!(Scope::parse(bad), Err(ScopeError::Malformed(bad.to_owned())), "{bad}");
        }
    }

    #[test]
    fn v1_scopes_map_to_v2_permissions_and_keep_their_spelling() {
        let read = resource("patient/Observation.read");
        assert_eq!((read.permissions, read.version), (Permissions::READ, Version::V1));
        assert_eq!(resource("patient/*.write").permissions, Permissions::WRITE);
        assert_eq!(resource("user/Patient.*").permissions, Permissions::ALL);
        assert_eq!(read.to_string(), "patient/Observation.read");
        assert!(Scope::parse("patient/Observation.read?category=x").is_err());
    }

    #[test]
    fn contexts_and_types() {
        assert_eq!(resource("system/*.rs").resource_type, None);
        assert_eq!(resource("user/Encounter.r").context, Context::User);
        assert!(matches!(Scope::parse("doctor/Patient.r"), Ok(Scope::Other(_))));
        for bad in ["patient/observation.r", "patient/Obs-ervation.r", "patient/.r", "patient/Patient"] {
            assert!(Scope::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn granular_scopes_keep_their_query() {
        let text =
            "patient/Observation.rs?category=http://terminology.hl7.org/CodeSystem/observation-category|laboratory";
        let scope = resource(text);
        assert_eq!(
            scope.query.as_deref(),
            Some("category=http://terminology.hl7.org/CodeSystem/observation-category|laboratory")
        );
        assert_eq!(scope.to_string(), text);
        assert!(Scope::parse("patient/Observation.rs?").is_err());
    }

    #[test]
    fn the_scope_string_round_trips_without_duplicates() {
        let text = "launch/patient openid fhirUser offline_access patient/Patient.rs patient/Patient.rs foo";
        let scopes = Scopes::parse(text).unwrap();
        assert_eq!(scopes.to_string(), "launch/patient openid fhirUser offline_access patient/Patient.rs foo");
        assert!(scopes.contains(&Scope::Other("foo".into())));
        assert_eq!(Scopes::parse("  "), Err(ScopeError::Empty));
    }

    #[test]
    fn access_by_context_type_and_permission() {
        let scopes = Scopes::parse(
            "patient/Patient.rs patient/Observation.rs?category=a|b patient/Observation.s?category=c|d user/*.r",
        )
        .unwrap();
        assert_eq!(scopes.access(Context::Patient, "Patient", Permission::Read), Access::All);
        assert_eq!(scopes.access(Context::Patient, "Patient", Permission::Create), Access::Denied);
        assert_eq!(
            scopes.access(Context::Patient, "Observation", Permission::Search),
            Access::Matching(vec!["category=a|b".into(), "category=c|d".into()])
        );
        assert_eq!(
            scopes.access(Context::Patient, "Observation", Permission::Read),
            Access::Matching(vec!["category=a|b".into()])
        );
        assert_eq!(scopes.access(Context::Patient, "Condition", Permission::Read), Access::Denied);
        assert_eq!(scopes.access(Context::User, "Condition", Permission::Read), Access::All);
        assert_eq!(scopes.access(Context::User, "Condition", Permission::Search), Access::Denied);
    }

    #[test]
    fn a_refresh_may_narrow_but_not_widen() {
        let granted = Scopes::parse("openid offline_access patient/*.rs patient/Observation.cruds").unwrap();
        assert!(granted.covers(&Scopes::parse("patient/Patient.r openid").unwrap()));
        assert!(granted.covers(&Scopes::parse("patient/Observation.rs?category=a|b").unwrap()));
        assert!(!granted.covers(&Scopes::parse("patient/Patient.c").unwrap()));
        assert!(!granted.covers(&Scopes::parse("user/Patient.r").unwrap()));
        assert!(!granted.covers(&Scopes::parse("fhirUser").unwrap()));
        let granular = Scopes::parse("patient/Observation.rs?category=a|b").unwrap();
        assert!(!granular.covers(&Scopes::parse("patient/Observation.rs").unwrap()));
    }
}
