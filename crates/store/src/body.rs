//! Stamping a resource body with the server-owned fields before it is stored.

use serde_json::{Map, Value};

use crate::Error;

/// Returns the JSON text to store: `resourceType`, `id` and `meta` first (with `versionId`
/// and `lastUpdated` set by the server, other `meta` fields kept), then the rest as sent.
pub(crate) fn stamp(
    resource: Value,
    resource_type: &str,
    id: &str,
    version: u64,
    last_updated: &str,
) -> Result<String, Error> {
    let Value::Object(fields) = resource else {
        return Err(Error::InvalidResource("a resource must be a JSON object".into()));
    };
    let mut stamped = Map::with_capacity(fields.len() + 2);
    stamped.insert("resourceType".into(), Value::String(resource_type.into()));
    stamped.insert("id".into(), Value::String(id.into()));
    let mut meta = Map::new();
    meta.insert("versionId".into(), Value::String(version.to_string()));
    meta.insert("lastUpdated".into(), Value::String(last_updated.into()));
    let mut rest = Map::with_capacity(fields.len());
    for (key, value) in fields {
        match (key.as_str(), value) {
            ("resourceType" | "id", _) => {}
            ("meta", Value::Object(old_meta)) => {
                for (meta_key, meta_value) in old_meta {
                    if meta_key != "versionId" && meta_key != "lastUpdated" {
                        meta.insert(meta_key, meta_value);
                    }
                }
            }
            (_, value) => {
                rest.insert(key, value);
            }
        }
    }
    stamped.insert("meta".into(), Value::Object(meta));
    stamped.extend(rest);
    serde_json::to_string(&Value::Object(stamped)).map_err(|error| Error::InvalidResource(error.to_string()))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn server_fields_replace_client_ones_and_come_first() {
        let body = json!({"name": [{"family": "Doe"}], "id": "wrong", "meta": {"versionId": "9", "profile": ["p"]}, "resourceType": "Patient"});
        let text = stamp(body, "Patient", "p1", 2, "2024-01-01T00:00:00.000000Z").unwrap();
        assert_eq!(
            text,
            r#"{"resourceType":"Patient","id":"p1","meta":{"versionId":"2","lastUpdated":"2024-01-01T00:00:00.000000Z","profile":["p"]},"name":[{"family":"Doe"}]}"#
        );
    }

    #[test]
    fn decimals_keep_their_text() {
        let body: Value =
            serde_json::from_str(r#"{"resourceType":"Observation","valueQuantity":{"value":1.50}}"#).unwrap();
        let text = stamp(body, "Observation", "o", 1, "t").unwrap();
        assert!(text.contains(r#""value":1.50"#), "{text}");
    }
}
