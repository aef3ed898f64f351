//! Typed identifiers parsed at the edge: a resource type the definitions know and a logical id
//! in the FHIR `id` format. Once parsed, the store can trust them.

use std::fmt;

use crate::Definitions;

/// A concrete R4 resource type name (`Patient`, `Observation`, …).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ResourceType(String);

impl ResourceType {
    /// Accepts `name` if the R4 definitions have a concrete resource type of that name.
    pub fn parse(name: &str) -> Option<ResourceType> {
        Definitions::get().is_resource_type(name).then(|| ResourceType(name.to_owned()))
    }

    /// The type name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ResourceType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A logical id: 1 to 64 characters from `A-Z a-z 0-9 - .` (the R4 `id` datatype).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LogicalId(String);

impl LogicalId {
    /// Accepts `id` if it has the R4 `id` format.
    pub fn parse(id: &str) -> Option<LogicalId> {
        is_valid_id(id).then(|| LogicalId(id.to_owned()))
    }

    /// A fresh server-assigned id (a random UUID, which fits the format).
    pub fn generate() -> LogicalId {
        LogicalId(uuid_v4())
    }

    /// The id text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for LogicalId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// True if `id` matches `[A-Za-z0-9\-\.]{1,64}`.
pub fn is_valid_id(id: &str) -> bool {
    (1..=64).contains(&id.len()) && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
}

fn uuid_v4() -> String {
    uuid::Uuid::new_v4().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_format() {
        assert!(is_valid_id("abc-1.2"));
        assert!(is_valid_id(&"a".repeat(64)));
        assert!(!is_valid_id(&"a".repeat(65)));
        assert!(!is_valid_id(""));
        assert!(!is_valid_id("a b"));
        assert!(!is_valid_id("a_b"));
        assert!(!is_valid_id("a/b"));
    }

    #[test]
    fn generated_ids_are_valid() {
        assert!(LogicalId::parse(LogicalId::generate().as_str()).is_some());
    }
}
