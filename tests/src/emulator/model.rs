//! Requests checked against AWS's own service models, the ones botocore ships.
//!
//! The model is read at start from the bench venv's botocore install
//! (`botocore/data/<service>/<version>/service-2.json.gz`), never copied into the repository.
//! Every request is checked for what the model says of its shape: required members, unknown
//! members, string lengths, patterns and enums, number ranges, and list and map sizes. A
//! request that breaks it gets the error its operation declares, naming the member (see
//! [`ServiceModel::validation_error_code`]): Image Builder's `InvalidRequestException` (or
//! `InvalidVersionNumberException` for a version), Auto Scaling's `ValidationError`. Unknown
//! members are refused too, as the issue that asked for this check requires: stricter than a
//! restJson service may be, and never something prepull should send.
//!
//! Patterns are ECMAScript regular expressions matched anywhere in the value, as Smithy defines
//! `@pattern`; some use look-ahead (`^(?!aws:)…` for tag keys), so they run on `fancy-regex`.

use std::collections::HashMap;
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use anyhow::Context as _;
use serde_json::{Map, Value};

/// How the request's values arrived: JSON keeps types; awsQuery sends every value as text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wire {
    Json,
    Query,
}

/// One way a request breaks the model: the member's path and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub member: String,
    pub problem: String,
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "1 validation error detected: Value at '{}' failed to satisfy constraint: {}",
            self.member, self.problem
        )
    }
}

/// One service's model: its operations and shapes.
#[derive(Debug)]
pub struct ServiceModel {
    operations: Map<String, Value>,
    shapes: Map<String, Value>,
    patterns: Mutex<HashMap<String, Option<fancy_regex::Regex>>>,
}

/// Where botocore's data lives in the bench venv.
pub fn botocore_data(workspace: &Path) -> anyhow::Result<PathBuf> {
    let lib = workspace.join(".venv").join("lib");
    let entries = std::fs::read_dir(&lib).with_context(|| {
        format!(
            "{} is missing: `make setup` installs the bench venv, whose botocore holds the AWS service models",
            lib.display()
        )
    })?;
    for entry in entries {
        let data = entry?
            .path()
            .join("site-packages")
            .join("botocore")
            .join("data");
        if data.is_dir() {
            return Ok(data);
        }
    }
    anyhow::bail!("no botocore under {}: run `make setup`", lib.display())
}

impl ServiceModel {
    /// Loads `service`'s model (the newest API version botocore has) from `data`.
    pub fn load(data: &Path, service: &str) -> anyhow::Result<Self> {
        let dir = data.join(service);
        let mut versions: Vec<PathBuf> = std::fs::read_dir(&dir)
            .with_context(|| format!("botocore has no model for {service} in {}", dir.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_dir())
            .collect();
        versions.sort();
        let version = versions
            .pop()
            .with_context(|| format!("no API version of {service}"))?;
        let plain = version.join("service-2.json");
        let text = if plain.is_file() {
            std::fs::read_to_string(&plain)?
        } else {
            let compressed = std::fs::File::open(version.join("service-2.json.gz"))?;
            let mut text = String::new();
            flate2::read::GzDecoder::new(compressed).read_to_string(&mut text)?;
            text
        };
        let mut model: Value = serde_json::from_str(&text)?;
        for (shape, constraint, value) in stricter_than_the_model(service) {
            model["shapes"][shape][constraint] = Value::from(value);
        }
        let object = |key: &str| -> anyhow::Result<Map<String, Value>> {
            model
                .get(key)
                .and_then(Value::as_object)
                .cloned()
                .with_context(|| format!("the {service} model has no {key}"))
        };
        Ok(Self {
            operations: object("operations")?,
            shapes: object("shapes")?,
            patterns: Mutex::default(),
        })
    }

    /// The error code a request that breaks the model gets: the first of
    /// `InvalidParameterValueException`, `ValidationException` and `InvalidRequestException`
    /// the operation itself declares (so the SDKs type it), else `fallback` (Auto Scaling's
    /// `ValidationError`, the awsQuery services' common error, declared by no operation).
    ///
    /// A version that breaks its pattern is Image Builder's `InvalidVersionNumberException`
    /// where the operation declares it ("Your version number is out of bounds or does not
    /// follow the required syntax", the model's own description of that error).
    pub fn validation_error_code(
        &self,
        operation: &str,
        violation: &Violation,
        fallback: &'static str,
    ) -> String {
        let declared: Vec<&str> = self.operations[operation]
            .get("errors")
            .and_then(Value::as_array)
            .map(|errors| errors.iter().filter_map(|e| e["shape"].as_str()).collect())
            .unwrap_or_default();
        if violation.member == "semanticVersion"
            && declared.contains(&"InvalidVersionNumberException")
        {
            return "InvalidVersionNumberException".to_owned();
        }
        [
            "InvalidParameterValueException",
            "ValidationException",
            "InvalidRequestException",
        ]
        .into_iter()
        .find(|code| declared.contains(code))
        .unwrap_or(fallback)
        .to_owned()
    }

    /// Whether the model knows the operation.
    pub fn has_operation(&self, operation: &str) -> bool {
        self.operations.contains_key(operation)
    }

    /// Checks an EC2 Query request's parameter names against the operation's input shape, as
    /// EC2 does: an unknown name is `UnknownParameter`, a missing required one
    /// `MissingParameter` (EC2 API Reference, "Common client error codes"). EC2's Query
    /// protocol names a member by its `queryName`, else its `locationName` with the first letter
    /// capitalized, else the member's own name, and flattens lists as `Name.N` (Smithy's
    /// ec2Query protocol, `ec2QueryName`).
    pub fn check_ec2_query(
        &self,
        operation: &str,
        params: &Value,
    ) -> Result<(), (&'static str, String)> {
        let Some(input) = self.operations[operation]
            .get("input")
            .and_then(|i| i.get("shape"))
            .and_then(Value::as_str)
        else {
            return Ok(());
        };
        let shape = self.shape(input);
        let members = shape["members"].as_object().cloned().unwrap_or_default();
        let wire_name = |name: &str, member: &Value| -> String {
            if let Some(query) = member["queryName"].as_str() {
                return query.to_owned();
            }
            let location = member["locationName"].as_str().unwrap_or(name);
            let mut chars = location.chars();
            chars
                .next()
                .map(|first| first.to_uppercase().chain(chars).collect())
                .unwrap_or_default()
        };
        let known: Vec<(String, &str)> = members
            .iter()
            .map(|(name, member)| (wire_name(name, member), name.as_str()))
            .collect();
        let given: Vec<&String> = params
            .as_object()
            .map(|p| p.keys().collect())
            .unwrap_or_default();
        if let Some(unknown) = given
            .iter()
            .find(|g| !known.iter().any(|(wire, _)| wire == g.as_str()))
        {
            return Err((
                "UnknownParameter",
                format!("The parameter {unknown} is not recognized"),
            ));
        }
        for required in shape["required"].as_array().into_iter().flatten() {
            let required = required.as_str().unwrap_or_default();
            if let Some((wire, _)) = known.iter().find(|(_, name)| *name == required)
                && !given.contains(&wire)
            {
                return Err((
                    "MissingParameter",
                    format!("The request must contain the parameter {wire}"),
                ));
            }
        }
        Ok(())
    }

    /// Checks a request's parameters against the operation's input shape.
    pub fn validate(&self, operation: &str, params: &Value, wire: Wire) -> Result<(), Violation> {
        let Some(input) = self.operations[operation]
            .get("input")
            .and_then(|i| i.get("shape"))
            .and_then(Value::as_str)
        else {
            return Ok(());
        };
        let empty = Value::Object(Map::new());
        let params = if params.is_null() { &empty } else { params };
        self.check(input, params, "", wire)
    }

    fn shape(&self, name: &str) -> &Value {
        &self.shapes[name]
    }

    /// A string shape's rule: its pattern (Java escapes made code points, as the checks read
    /// it) and its length bounds.
    pub fn string_rule(&self, name: &str) -> Option<(String, Option<i64>, Option<i64>)> {
        let shape = self.shapes.get(name)?;
        let pattern = shape.get("pattern")?.as_str()?;
        Some((
            code_point_escapes(pattern),
            shape.get("min").and_then(Value::as_i64),
            shape.get("max").and_then(Value::as_i64),
        ))
    }

    fn check(
        &self,
        shape_name: &str,
        value: &Value,
        path: &str,
        wire: Wire,
    ) -> Result<(), Violation> {
        let shape = self.shape(shape_name);
        let violation = |problem: String| {
            Err(Violation {
                member: if path.is_empty() {
                    shape_name.to_owned()
                } else {
                    path.to_owned()
                },
                problem,
            })
        };
        let kind = shape["type"].as_str().unwrap_or_default();
        match kind {
            "structure" => {
                // awsQuery sends an empty structure as nothing at all, or as an empty value.
                if wire == Wire::Query && value.as_str() == Some("") {
                    return Ok(());
                }
                let Some(object) = value.as_object() else {
                    return violation(format!("must be a structure ({shape_name})"));
                };
                let members = shape["members"].as_object().cloned().unwrap_or_default();
                let wire_name = |name: &str, member: &Value| -> Option<String> {
                    match member.get("location").and_then(Value::as_str) {
                        // Path labels and headers do not reach the parameters.
                        Some("uri" | "header" | "headers") => None,
                        Some(_) => Some(
                            member
                                .get("locationName")
                                .and_then(Value::as_str)
                                .unwrap_or(name)
                                .to_owned(),
                        ),
                        None if wire == Wire::Query => Some(name.to_owned()),
                        None => Some(
                            member
                                .get("locationName")
                                .and_then(Value::as_str)
                                .unwrap_or(name)
                                .to_owned(),
                        ),
                    }
                };
                let mut known: Vec<String> = Vec::new();
                for (name, member) in &members {
                    let Some(key) = wire_name(name, member) else {
                        continue;
                    };
                    known.push(key.clone());
                    let member_path = join(path, &key);
                    let required = shape["required"]
                        .as_array()
                        .is_some_and(|r| r.iter().any(|m| m == name.as_str()));
                    match object.get(&key) {
                        None | Some(Value::Null) if required => {
                            return Err(Violation {
                                member: member_path,
                                problem: "Member must not be null".to_owned(),
                            });
                        }
                        None | Some(Value::Null) => {}
                        Some(inner) => {
                            let target = member["shape"].as_str().unwrap_or_default();
                            self.check(target, inner, &member_path, wire)?;
                        }
                    }
                }
                if let Some(unknown) = object.keys().find(|k| !known.contains(k)) {
                    return Err(Violation {
                        member: join(path, unknown),
                        problem: format!("is not a member of {shape_name}"),
                    });
                }
                Ok(())
            }
            "list" => {
                let items: Vec<Value> = match (value, wire) {
                    (Value::Array(items), _) => items.clone(),
                    // awsQuery sends an empty list as an empty value.
                    (Value::String(s), Wire::Query) if s.is_empty() => Vec::new(),
                    _ => return violation(format!("must be a list ({shape_name})")),
                };
                self.check_size(shape, items.len(), path, shape_name)?;
                let member = shape["member"]["shape"].as_str().unwrap_or_default();
                for (index, item) in items.iter().enumerate() {
                    self.check(member, item, &format!("{path}.{}", index + 1), wire)?;
                }
                Ok(())
            }
            "map" => {
                let Some(object) = value.as_object() else {
                    return violation(format!("must be a map ({shape_name})"));
                };
                self.check_size(shape, object.len(), path, shape_name)?;
                let key_shape = shape["key"]["shape"].as_str().unwrap_or_default();
                let value_shape = shape["value"]["shape"].as_str().unwrap_or_default();
                for (key, item) in object {
                    self.check(
                        key_shape,
                        &Value::String(key.clone()),
                        &format!("{path}.key"),
                        wire,
                    )?;
                    self.check(value_shape, item, &format!("{path}.{key}"), wire)?;
                }
                Ok(())
            }
            "string" => {
                let Some(text) = value.as_str() else {
                    return violation(format!("must be a string ({shape_name})"));
                };
                let length = text.chars().count();
                self.check_size(shape, length, path, shape_name)?;
                if let Some(allowed) = shape.get("enum").and_then(Value::as_array)
                    && !allowed.iter().any(|a| a == text)
                {
                    return violation(format!(
                        "Member must satisfy enum value set: {}",
                        allowed
                            .iter()
                            .filter_map(Value::as_str)
                            .collect::<Vec<_>>()
                            .join(", ")
                    ));
                }
                if let Some(pattern) = shape.get("pattern").and_then(Value::as_str)
                    && !self.matches(pattern, text)
                {
                    return violation(format!(
                        "Member must satisfy regular expression pattern: {pattern}"
                    ));
                }
                Ok(())
            }
            "integer" | "long" => {
                let number = match (value, wire) {
                    (Value::Number(n), _) => n.as_i64(),
                    (Value::String(s), Wire::Query) => s.parse::<i64>().ok(),
                    _ => None,
                };
                let Some(number) = number else {
                    return violation(format!("must be a whole number ({shape_name})"));
                };
                if let Some(min) = shape.get("min").and_then(Value::as_i64)
                    && number < min
                {
                    return violation(format!(
                        "Member must have value greater than or equal to {min}"
                    ));
                }
                if let Some(max) = shape.get("max").and_then(Value::as_i64)
                    && number > max
                {
                    return violation(format!(
                        "Member must have value less than or equal to {max}"
                    ));
                }
                Ok(())
            }
            "double" | "float" => match (value, wire) {
                (Value::Number(_), _) => Ok(()),
                (Value::String(s), Wire::Query) if s.parse::<f64>().is_ok() => Ok(()),
                _ => violation(format!("must be a number ({shape_name})")),
            },
            "boolean" => match (value, wire) {
                (Value::Bool(_), _) => Ok(()),
                (Value::String(s), Wire::Query) if s == "true" || s == "false" => Ok(()),
                _ => violation(format!("must be true or false ({shape_name})")),
            },
            // Timestamps and blobs: the SDK's own serialisation; nothing prepull chooses.
            _ => Ok(()),
        }
    }

    fn check_size(
        &self,
        shape: &Value,
        size: usize,
        path: &str,
        shape_name: &str,
    ) -> Result<(), Violation> {
        let member = if path.is_empty() {
            shape_name.to_owned()
        } else {
            path.to_owned()
        };
        let size = i64::try_from(size).unwrap_or(i64::MAX);
        if let Some(min) = shape.get("min").and_then(Value::as_i64)
            && size < min
        {
            return Err(Violation {
                member,
                problem: format!("Member must have length greater than or equal to {min}"),
            });
        }
        if let Some(max) = shape.get("max").and_then(Value::as_i64)
            && size > max
        {
            return Err(Violation {
                member,
                problem: format!("Member must have length less than or equal to {max}"),
            });
        }
        Ok(())
    }

    /// A model pattern that this regex engine cannot read is not enforced, and says so once.
    fn matches(&self, pattern: &str, text: &str) -> bool {
        let mut patterns = self
            .patterns
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let compiled = patterns.entry(pattern.to_owned()).or_insert_with(|| {
            fancy_regex::Regex::new(&code_point_escapes(pattern))
                .inspect_err(|error| {
                    tracing::warn!(pattern, %error, "a model pattern the emulator cannot compile is not enforced");
                })
                .ok()
        });
        compiled
            .as_ref()
            .is_none_or(|regex| regex.is_match(text).unwrap_or(true))
    }
}

/// Where AWS's API reference is stricter than botocore's model, the reference wins.
fn stricter_than_the_model(service: &str) -> Vec<(&'static str, &'static str, i64)> {
    match service {
        // botocore's `ClientToken` allows 64 characters; the Image Builder API Reference
        // (CreateComponent, CreateImageRecipe, UpdateImagePipeline,
        // StartImagePipelineExecution: "clientToken … Length Constraints: Minimum length of 1.
        // Maximum length of 36.") allows 36.
        "imagebuilder" => vec![("ClientToken", "max", 36)],
        _ => Vec::new(),
    }
}

/// botocore writes the Auto Scaling XML-character patterns in Java's UTF-16 escapes
/// (`\uD800\uDC00-\uDBFF\uDFFF` for every supplementary character); the Rust engines read
/// code points (`\x{10000}-\x{10FFFF}`).
fn code_point_escapes(pattern: &str) -> String {
    let supplementary = pattern.replace(r"\uD800\uDC00-\uDBFF\uDFFF", r"\x{10000}-\x{10FFFF}");
    let mut out = String::with_capacity(supplementary.len());
    let mut rest = supplementary.as_str();
    while let Some(index) = rest.find(r"\u") {
        let hex = rest.get(index + 2..index + 6).unwrap_or_default();
        if hex.len() == 4 && hex.chars().all(|c| c.is_ascii_hexdigit()) {
            out.push_str(&rest[..index]);
            out.push_str(&format!("\\x{{{hex}}}"));
            rest = &rest[index + 6..];
        } else {
            out.push_str(&rest[..index + 2]);
            rest = &rest[index + 2..];
        }
    }
    out.push_str(rest);
    out
}

fn join(path: &str, member: &str) -> String {
    if path.is_empty() {
        member.to_owned()
    } else {
        format!("{path}.{member}")
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::moto::workspace_root;

    fn model(service: &str) -> ServiceModel {
        ServiceModel::load(&botocore_data(&workspace_root()).unwrap(), service).unwrap()
    }

    #[test]
    fn every_pattern_of_the_models_prepull_uses_compiles() {
        for service in ["imagebuilder", "autoscaling"] {
            let model = model(service);
            for (name, shape) in &model.shapes {
                if let Some(pattern) = shape.get("pattern").and_then(Value::as_str) {
                    assert!(
                        fancy_regex::Regex::new(&code_point_escapes(pattern)).is_ok(),
                        "{service} {name}: {pattern}"
                    );
                }
            }
        }
    }

    #[test]
    fn java_escapes_become_code_points() {
        let model = model("autoscaling");
        let xml = "[\\u0020-\\uD7FF\\uE000-\\uFFFD\\uD800\\uDC00-\\uDBFF\\uDFFF\\r\\n\\t]*";
        assert_eq!(
            code_point_escapes(xml),
            "[\\x{0020}-\\x{D7FF}\\x{E000}-\\x{FFFD}\\x{10000}-\\x{10FFFF}\\r\\n\\t]*"
        );
        assert!(model.matches(&format!("^{xml}$"), "eks-windows-a 🚀"));
        assert!(!model.matches(&format!("^{xml}$"), "nul\u{0}"));
    }

    #[test]
    fn image_builder_requests_are_checked_member_by_member() {
        let model = model("imagebuilder");
        let good = json!({"name": "prepull-cache", "semanticVersion": "2021.01.01", "platform": "Windows",
                          "clientToken": "c1.0.4-abc", "data": "name: x"});
        assert_eq!(model.validate("CreateComponent", &good, Wire::Json), Ok(()));
        let cases = [
            (json!({"clientToken": "x".repeat(37)}), "clientToken"),
            (json!({"tags": {}}), "tags"),
            (json!({"description": "d".repeat(1025)}), "description"),
            (json!({"semanticVersion": "1.x.0"}), "semanticVersion"),
            (json!({"platform": "Plan9"}), "platform"),
            (json!({"colour": "blue"}), "colour"),
            (json!({"tags": {"aws:reserved": "x"}}), "tags.key"),
        ];
        for (change, member) in cases {
            let mut request = good.clone();
            for (key, value) in change.as_object().unwrap() {
                request[key] = value.clone();
            }
            let violation = model
                .validate("CreateComponent", &request, Wire::Json)
                .unwrap_err();
            assert_eq!(violation.member, member, "{violation}");
        }
        let mut missing = good.clone();
        missing.as_object_mut().unwrap().remove("name");
        assert_eq!(
            model
                .validate("CreateComponent", &missing, Wire::Json)
                .unwrap_err()
                .member,
            "name"
        );
        let wildcard = |version: &str| json!({"imageRecipeArn": format!("arn:aws:imagebuilder:us-east-1:123456789012:image-recipe/r/{version}")});
        assert!(
            model
                .validate("GetImageRecipe", &wildcard("1.0.0"), Wire::Json)
                .is_ok()
        );
        assert!(
            model
                .validate("GetImageRecipe", &wildcard("2021.01.01"), Wire::Json)
                .is_ok()
        );
    }

    #[test]
    fn auto_scaling_query_values_are_read_as_their_types() {
        let model = model("autoscaling");
        let good = json!({"AutoScalingGroupName": "eks-windows-a",
                          "Preferences": {"MinHealthyPercentage": "90", "InstanceWarmup": "300", "SkipMatching": "false"}});
        assert_eq!(
            model.validate("StartInstanceRefresh", &good, Wire::Query),
            Ok(())
        );
        let mut bad = good.clone();
        bad["Preferences"]["MinHealthyPercentage"] = json!("101");
        assert_eq!(
            model
                .validate("StartInstanceRefresh", &bad, Wire::Query)
                .unwrap_err()
                .member,
            "Preferences.MinHealthyPercentage"
        );
        let mut bad = good.clone();
        bad["Preferences"]["SkipMatching"] = json!("maybe");
        assert!(
            model
                .validate("StartInstanceRefresh", &bad, Wire::Query)
                .is_err()
        );
        assert!(
            model
                .validate("StartInstanceRefresh", &json!({}), Wire::Query)
                .is_err()
        );
    }
}
