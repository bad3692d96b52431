//! Wire formats shared by the emulated services: errors, awsQuery parameters and XML bodies.

use axum::http::StatusCode;
use quick_xml::escape::escape;
use serde_json::{Map, Value};

/// An error as the service would return it: HTTP status, error code and message.
///
/// The code is what the SDKs match on: it becomes `x-amzn-ErrorType` and `__type` for
/// restJson1 and `<Code>` for awsQuery, so `err.is_resource_in_use_exception()` or
/// `err.is_instance_refresh_in_progress_fault()` work through the real clients.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: String,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &str, message: impl Into<String>) -> Self {
        Self {
            status,
            code: code.to_owned(),
            message: message.into(),
        }
    }

    pub fn bad_request(code: &str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    /// awsQuery errors carry `Sender` for client faults and `Receiver` for server faults.
    pub fn query_fault_type(&self) -> &'static str {
        if self.status.is_server_error() {
            "Receiver"
        } else {
            "Sender"
        }
    }
}

/// Turns awsQuery form parameters into nested JSON.
///
/// `Preferences.MinHealthyPercentage=90` becomes `{"Preferences":{"MinHealthyPercentage":"90"}}`
/// and `Names.member.1=a&Names.member.2=b` becomes `{"Names":["a","b"]}`. Values stay strings,
/// as they are on the wire.
pub fn query_to_json(pairs: &[(String, String)]) -> Value {
    let mut root = Value::Object(Map::new());
    for (key, value) in pairs {
        let mut node = &mut root;
        let parts: Vec<&str> = key.split('.').collect();
        for (index, part) in parts.iter().enumerate() {
            let Value::Object(map) = node else { break };
            if index + 1 == parts.len() {
                map.insert((*part).to_owned(), Value::String(value.clone()));
                break;
            }
            node = map
                .entry((*part).to_owned())
                .or_insert_with(|| Value::Object(Map::new()));
        }
    }
    collapse_member_lists(root)
}

fn collapse_member_lists(value: Value) -> Value {
    match value {
        Value::Object(map) => {
            if map.len() == 1
                && let Some(Value::Object(members)) = map.get("member")
                && members.keys().all(|k| k.parse::<usize>().is_ok())
            {
                let mut indexed: Vec<(usize, Value)> = members
                    .iter()
                    .filter_map(|(k, v)| Some((k.parse().ok()?, collapse_member_lists(v.clone()))))
                    .collect();
                indexed.sort_by_key(|(index, _)| *index);
                return Value::Array(indexed.into_iter().map(|(_, v)| v).collect());
            }
            Value::Object(
                map.into_iter()
                    .map(|(k, v)| (k, collapse_member_lists(v)))
                    .collect(),
            )
        }
        other => other,
    }
}

/// Writes a JSON value as awsQuery XML: objects become elements, arrays become `<member>`
/// lists, scalars become escaped text. Nulls are left out.
pub fn json_to_xml(name: &str, value: &Value, out: &mut String) {
    match value {
        Value::Null => {}
        Value::Object(map) => {
            out.push_str(&format!("<{name}>"));
            for (key, child) in map {
                json_to_xml(key, child, out);
            }
            out.push_str(&format!("</{name}>"));
        }
        Value::Array(items) => {
            out.push_str(&format!("<{name}>"));
            for item in items {
                json_to_xml("member", item, out);
            }
            out.push_str(&format!("</{name}>"));
        }
        Value::String(text) => out.push_str(&format!("<{name}>{}</{name}>", escape(text.as_str()))),
        Value::Bool(flag) => out.push_str(&format!("<{name}>{flag}</{name}>")),
        Value::Number(number) => out.push_str(&format!("<{name}>{number}</{name}>")),
    }
}

/// The awsQuery success envelope: `<OpResponse><OpResult>…</OpResult><ResponseMetadata>`.
pub fn query_response(
    operation: &str,
    namespace: &str,
    result: &Value,
    request_id: &str,
) -> String {
    let mut out = format!("<{operation}Response xmlns=\"{namespace}\">");
    if result.as_object().is_some_and(|m| !m.is_empty()) {
        json_to_xml(&format!("{operation}Result"), result, &mut out);
    }
    out.push_str(&format!(
        "<ResponseMetadata><RequestId>{request_id}</RequestId></ResponseMetadata></{operation}Response>"
    ));
    out
}

/// The awsQuery error envelope.
pub fn query_error(error: &ApiError, namespace: &str, request_id: &str) -> String {
    format!(
        "<ErrorResponse xmlns=\"{namespace}\"><Error><Type>{}</Type><Code>{}</Code><Message>{}</Message></Error><RequestId>{request_id}</RequestId></ErrorResponse>",
        error.query_fault_type(),
        escape(error.code.as_str()),
        escape(error.message.as_str()),
    )
}

/// An ISO 8601 timestamp with milliseconds, as AWS writes them.
pub fn timestamp(at: chrono::DateTime<chrono::Utc>) -> String {
    at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn query_parameters_nest_and_collapse_member_lists() {
        let pairs = vec![
            ("Action".to_owned(), "StartInstanceRefresh".to_owned()),
            (
                "Preferences.MinHealthyPercentage".to_owned(),
                "90".to_owned(),
            ),
            (
                "Preferences.CheckpointPercentages.member.2".to_owned(),
                "100".to_owned(),
            ),
            (
                "Preferences.CheckpointPercentages.member.1".to_owned(),
                "50".to_owned(),
            ),
            ("Names.member.1".to_owned(), "a".to_owned()),
        ];
        assert_eq!(
            query_to_json(&pairs),
            json!({
                "Action": "StartInstanceRefresh",
                "Preferences": {"MinHealthyPercentage": "90", "CheckpointPercentages": ["50", "100"]},
                "Names": ["a"],
            })
        );
    }

    #[test]
    fn xml_escapes_text_and_writes_member_lists() {
        let mut out = String::new();
        json_to_xml(
            "R",
            &json!({"A": ["x<y", "z"], "B": null, "C": true}),
            &mut out,
        );
        assert_eq!(
            out,
            "<R><A><member>x&lt;y</member><member>z</member></A><C>true</C></R>"
        );
    }
}
