//! Stamping a resource body with the server-owned fields before it is stored.

use serde_json::{Map, Value};

use crate::Error;

/// A resource body serialized once, as stored: `resourceType`, `id` and `meta` first, then
/// the rest as sent; the two server-owned slots (`meta.versionId` and `meta.lastUpdated`)
/// are left open, other `meta` fields kept. Imports prepare bodies on worker threads, so the single
/// writer only splices in the version and time it assigns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreparedBody {
    /// `{"resourceType":…,"id":…,"meta":{"versionId":"`
    head: String,
    /// `"` + the other `meta` fields + `}` + the rest of the resource + `}`
    tail: String,
}

impl PreparedBody {
    /// Serializes `resource` as it will be stored at `resource_type`/`id`.
    pub fn new(resource: Value, resource_type: &str, id: &str) -> Result<PreparedBody, Error> {
        let Value::Object(fields) = resource else {
            return Err(Error::InvalidResource("a resource must be a JSON object".into()));
        };
        let mut meta = Map::new();
        let mut rest = Map::with_capacity(fields.len());
        for (key, value) in fields {
            match (key.as_str(), value) {
                ("resourceType" | "id", _) => {}
                ("meta", Value::Object(old_meta)) => {
                    meta = old_meta;
                    meta.retain(|key, _| key != "versionId" && key != "lastUpdated");
                }
                (_, value) => {
                    rest.insert(key, value);
                }
            }
        }
        let head = format!(r#"{{"resourceType":{},"id":{},"meta":{{"versionId":""#, json(resource_type)?, json(id)?);
        let mut tail = String::from("\"");
        push_members(&mut tail, &meta)?;
        tail.push('}');
        push_members(&mut tail, &rest)?;
        tail.push('}');
        Ok(PreparedBody { head, tail })
    }

    /// The stored text of this body at `version`, last updated at `last_updated`.
    pub fn stamp(&self, version: u64, last_updated: &str) -> String {
        let mut text = String::with_capacity(self.head.len() + self.tail.len() + last_updated.len() + 40);
        text.push_str(&self.head);
        text.push_str(&version.to_string());
        text.push_str(r#"","lastUpdated":""#);
        text.push_str(last_updated);
        text.push_str(&self.tail);
        text
    }
}
/// `value` as a JSON string literal.
fn json(value: &str) -> Result<String, Error> {
    serde_json::to_string(value).map_err(|error| Error::InvalidResource(error.to_string()))
}

/// Appends `,"key":value` for each member of `members`.
fn push_members(out: &mut String, members: &Map<String, Value>) -> Result<(), Error> {
    if members.is_empty() {
        return Ok(());
    }
    let object = serde_json::to_string(members).map_err(|error| Error::InvalidResource(error.to_string()))?;
    // `{…}` without its braces: the members, already separated by commas.
    out.push(',');
    out.push_str(&object[1..object.len() - 1]);
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn server_fields_replace_client_ones_and_come_first() {
        let body = json!({"name": [{"family": "Doe"}], "id": "wrong", "meta": {"versionId": "9", "profile": ["p"]}, "resourceType": "Patient"});
        let text = PreparedBody::new(body, "Patient", "p1").unwrap().stamp(2, "2024-01-01T00:00:00.000000Z");
        assert_eq!(
            text,
            r#"{"resourceType":"Patient","id":"p1","meta":{"versionId":"2","lastUpdated":"2024-01-01T00:00:00.000000Z","profile":["p"]},"name":[{"family":"Doe"}]}"#
        );
    }

    #[test]
    fn decimals_keep_their_text() {
        let body: Value =
            serde_json::from_str(r#"{"resourceType":"Observation","valueQuantity":{"value":1.50}}"#).unwrap();
        let text = PreparedBody::new(body, "Observation", "o").unwrap().stamp(1, "t");
        assert!(text.contains(r#""value":1.50"#), "{text}");
    }
}
