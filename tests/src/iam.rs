//! The IAM check: what each function's role grants in `template.yaml`, against what the
//! function really calls on the bench (its calls are signed with its own access key ID, as
//! in Lambda, so the request log tells the functions apart).

use std::collections::{BTreeMap, BTreeSet};

use anyhow::Context as _;
use serde_norway::Value;

use crate::emulator::{RecordedRequest, Service};

/// The services whose calls prepull makes itself (Lambda makes the SQS and logs calls).
const CHECKED_PREFIXES: [&str; 5] = ["imagebuilder", "autoscaling", "ssm", "ecr", "ec2"];

/// One statement as the template writes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Statement {
    pub sid: Option<String>,
    pub actions: Vec<String>,
    /// The resource is `*`.
    pub wildcard: bool,
}

/// What the template grants each function (by its role's `Description`, the function's name).
#[derive(Debug, Default)]
pub struct Grants {
    pub by_function: BTreeMap<String, Vec<Statement>>,
}

impl Grants {
    /// The actions granted to `function` in the services prepull calls itself.
    pub fn actions(&self, function: &str) -> BTreeSet<String> {
        self.by_function
            .get(function)
            .into_iter()
            .flatten()
            .flat_map(|s| s.actions.iter())
            .filter(|a| {
                CHECKED_PREFIXES
                    .iter()
                    .any(|p| a.starts_with(&format!("{p}:")))
            })
            .cloned()
            .collect()
    }

    /// Whether `function` may call `action`, through an exact grant or a wildcard one.
    pub fn allows(&self, function: &str, action: &str) -> bool {
        self.actions(function).iter().any(|granted| {
            granted == action
                || granted
                    .strip_suffix('*')
                    .is_some_and(|prefix| action.starts_with(prefix))
        })
    }
}

/// A CloudFormation value with its short-form tags: `!If [c, a, b]` contributes both branches,
/// `!Ref AWS::NoValue` nothing.
fn statements_in(value: &Value, out: &mut Vec<Statement>) {
    match value {
        Value::Sequence(items) => {
            for item in items {
                statements_in(item, out);
            }
        }
        Value::Tagged(tagged) if tagged.tag == "If" => {
            if let Value::Sequence(parts) = &tagged.value {
                for branch in parts.iter().skip(1) {
                    statements_in(branch, out);
                }
            }
        }
        Value::Mapping(map) if map.contains_key("Action") => {
            let actions = match &map["Action"] {
                Value::String(action) => vec![action.clone()],
                Value::Sequence(actions) => actions
                    .iter()
                    .filter_map(|a| a.as_str().map(str::to_owned))
                    .collect(),
                _ => Vec::new(),
            };
            let wildcard = match map.get("Resource") {
                Some(Value::String(resource)) => resource == "*",
                Some(Value::Sequence(resources)) => {
                    resources.iter().any(|r| r.as_str() == Some("*"))
                }
                _ => false,
            };
            out.push(Statement {
                sid: map.get("Sid").and_then(Value::as_str).map(str::to_owned),
                actions,
                wildcard,
            });
        }
        _ => {}
    }
}

fn policy_statements(document: &Value) -> Vec<Statement> {
    let mut out = Vec::new();
    if let Some(statement) = document.get("Statement") {
        statements_in(statement, &mut out);
    }
    out
}

/// Reads every function role's grants from the template text.
pub fn grants(template: &str) -> anyhow::Result<Grants> {
    let template: Value = serde_norway::from_str(template).context("template.yaml")?;
    let resources = template
        .get("Resources")
        .and_then(Value::as_mapping)
        .context("the template has Resources")?;
    let mut grants = Grants::default();
    for (_, resource) in resources {
        if resource.get("Type").and_then(Value::as_str) != Some("AWS::IAM::Role") {
            continue;
        }
        let properties = &resource["Properties"];
        let trusted = serde_norway::to_string(&properties["AssumeRolePolicyDocument"])?;
        if !trusted.contains("lambda.amazonaws.com") {
            continue;
        }
        let function = properties["Description"]
            .as_str()
            .context("a function role names its function in Description")?
            .to_owned();
        let mut statements = Vec::new();
        for policy in properties["Policies"].as_sequence().into_iter().flatten() {
            statements.extend(policy_statements(&policy["PolicyDocument"]));
        }
        for managed in properties["ManagedPolicyArns"]
            .as_sequence()
            .into_iter()
            .flatten()
        {
            if let Value::Tagged(tagged) = managed
                && tagged.tag == "Ref"
                && let Some(name) = tagged.value.as_str()
                && let Some(policy) = resources.get(name)
            {
                statements.extend(policy_statements(&policy["Properties"]["PolicyDocument"]));
            }
        }
        grants.by_function.insert(function, statements);
    }
    Ok(grants)
}

/// The IAM action a recorded call needs: `<service prefix>:<operation>` for the services
/// prepull calls (each of their operations is an action of the same name).
pub fn action_of(request: &RecordedRequest) -> String {
    let prefix = match request.service {
        Service::Imagebuilder => "imagebuilder",
        Service::Autoscaling => "autoscaling",
        Service::Ssm => "ssm",
        Service::Ecr => "ecr",
        Service::Ec2 => "ec2",
    };
    format!("{prefix}:{}", request.operation)
}

/// The actions each caller (access key ID) made, successful or not: a call AWS refused for a
/// missing permission is still a call the function needs.
pub fn calls_by_caller(requests: &[RecordedRequest]) -> BTreeMap<String, BTreeSet<String>> {
    let mut calls: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for request in requests {
        if let Some(caller) = &request.caller {
            calls
                .entry(caller.clone())
                .or_default()
                .insert(action_of(request));
        }
    }
    calls
}
