//! A component document checked as AWSTOE reads it, before CreateComponent accepts it.
//!
//! Sources (Image Builder User Guide): "Use documents in EC2 Image Builder" for the document,
//! phase and step fields, their types, unique phase and step names, `timeoutSeconds` ("-1 …
//! indicates infinite timeout. 0 and other negative values are not allowed"), `onFailure` and
//! `maxAttempts`, and chaining expressions `{{ phase.step.inputs/outputs.variable }}`;
//! "Component manager supported action modules" for the action names and `ExecutePowerShell`'s
//! inputs ("Must specify `commands` or `file`, not both"; `file` "must point to a .ps1 file").

use std::sync::LazyLock;

use regex::Regex;
use serde_norway::{Mapping, Value};

/// The action modules AWSTOE runs.
const ACTIONS: [&str; 29] = [
    "ExecuteBash",
    "ExecuteBinary",
    "ExecutePowerShell",
    "ExecuteDocument",
    "S3Download",
    "S3Upload",
    "WebDownload",
    "AppendFile",
    "CopyFile",
    "CopyFolder",
    "CreateFile",
    "CreateFolder",
    "CreateSymlink",
    "DeleteFile",
    "DeleteFolder",
    "ListFiles",
    "MoveFile",
    "MoveFolder",
    "ReadFile",
    "SetFileEncoding",
    "SetFileOwner",
    "SetFolderOwner",
    "SetFilePermissions",
    "SetFolderPermissions",
    "InstallMSI",
    "UninstallMSI",
    "Reboot",
    "SetRegistry",
    "UpdateOS",
];

/// Actions that need no inputs.
const NO_INPUTS: [&str; 2] = ["Reboot", "UpdateOS"];

const PHASES: [&str; 4] = ["build", "validate", "test", "container-host-test"];
const ON_FAILURE: [&str; 3] = ["Abort", "Continue", "Ignore"];
const DOCUMENT_FIELDS: [&str; 6] = [
    "name",
    "description",
    "schemaVersion",
    "phases",
    "parameters",
    "constants",
];
const STEP_FIELDS: [&str; 8] = [
    "name",
    "action",
    "timeoutSeconds",
    "onFailure",
    "maxAttempts",
    "inputs",
    "if",
    "loop",
];

#[expect(clippy::expect_used, reason = "a constant pattern")]
static EXPRESSION: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^\s*[A-Za-z_][A-Za-z0-9_\-]*(?:\.[A-Za-z_][A-Za-z0-9_\-]*(?:\[[0-9]+\])?)*\s*$")
        .expect("a valid built-in pattern")
});

/// Why AWSTOE would refuse the document.
pub type Refusal = String;

fn field<'a>(map: &'a Mapping, key: &str) -> Option<&'a Value> {
    map.get(Value::String(key.to_owned()))
}

fn text<'a>(map: &'a Mapping, key: &str, at: &str) -> Result<&'a str, Refusal> {
    match field(map, key) {
        Some(Value::String(s)) if !s.is_empty() => Ok(s),
        Some(_) => Err(format!("{at}.{key} must be a non-empty string")),
        None => Err(format!("{at}.{key} is required")),
    }
}

fn known_fields(map: &Mapping, allowed: &[&str], at: &str) -> Result<(), Refusal> {
    for key in map.keys() {
        let name = key.as_str().unwrap_or_default();
        if !allowed.contains(&name) {
            return Err(format!("{at} has an unknown field {key:?}"));
        }
    }
    Ok(())
}

/// Every `{{ … }}` in a string is a well-formed expression, and every `{{` is closed.
fn check_expressions(value: &str, at: &str) -> Result<(), Refusal> {
    let mut rest = value;
    while let Some(open) = rest.find("{{") {
        let after = &rest[open + 2..];
        let close = after
            .find("}}")
            .ok_or_else(|| format!("{at} has a '{{{{' that is never closed"))?;
        let expression = &after[..close];
        if !EXPRESSION.is_match(expression) {
            return Err(format!(
                "{at} has a malformed expression {{{{{expression}}}}}, which AWSTOE would try to substitute"
            ));
        }
        rest = &after[close + 2..];
    }
    Ok(())
}

fn check_strings(value: &Value, at: &str) -> Result<(), Refusal> {
    match value {
        Value::String(s) => check_expressions(s, at),
        Value::Sequence(items) => items
            .iter()
            .enumerate()
            .try_for_each(|(i, item)| check_strings(item, &format!("{at}[{i}]"))),
        Value::Mapping(map) => map.iter().try_for_each(|(k, v)| {
            check_strings(v, &format!("{at}.{}", k.as_str().unwrap_or("?")))
        }),
        _ => Ok(()),
    }
}

fn check_power_shell(inputs: &Value, at: &str) -> Result<(), Refusal> {
    let Value::Mapping(inputs) = inputs else {
        return Err(format!(
            "{at}.inputs must be a mapping for ExecutePowerShell"
        ));
    };
    known_fields(inputs, &["commands", "file"], &format!("{at}.inputs"))?;
    match (field(inputs, "commands"), field(inputs, "file")) {
        (Some(_), Some(_)) | (None, None) => Err(format!(
            "{at}.inputs must specify commands or file, not both or neither"
        )),
        (Some(Value::Sequence(commands)), None) if !commands.is_empty() => {
            if commands.iter().all(Value::is_string) {
                Ok(())
            } else {
                Err(format!("{at}.inputs.commands must be a list of strings"))
            }
        }
        (Some(_), None) => Err(format!("{at}.inputs.commands must be a non-empty list")),
        (None, Some(Value::String(file))) if file.ends_with(".ps1") => Ok(()),
        (None, Some(_)) => Err(format!("{at}.inputs.file must be the path of a .ps1 file")),
    }
}

fn check_step(step: &Value, at: &str) -> Result<String, Refusal> {
    let Value::Mapping(step) = step else {
        return Err(format!("{at} must be a mapping"));
    };
    known_fields(step, &STEP_FIELDS, at)?;
    let name = text(step, "name", at)?.to_owned();
    let action = text(step, "action", at)?;
    if !ACTIONS.contains(&action) {
        return Err(format!(
            "{at}.action {action:?} is not an AWSTOE action module"
        ));
    }
    match field(step, "timeoutSeconds") {
        None => {}
        Some(Value::Number(n)) if n.as_i64().is_some_and(|t| t == -1 || t > 0) => {}
        Some(other) => {
            return Err(format!(
                "{at}.timeoutSeconds is {other:?}: a whole number of seconds, or -1 for none"
            ));
        }
    }
    match field(step, "maxAttempts") {
        None => {}
        Some(Value::Number(n)) if n.as_i64().is_some_and(|m| m >= 1) => {}
        Some(other) => return Err(format!("{at}.maxAttempts is {other:?}: at least 1")),
    }
    match field(step, "onFailure") {
        None => {}
        Some(Value::String(s)) if ON_FAILURE.contains(&s.as_str()) => {}
        Some(other) => {
            return Err(format!(
                "{at}.onFailure is {other:?}: one of Abort, Continue, Ignore"
            ));
        }
    }
    match (field(step, "inputs"), action) {
        (None, action) if NO_INPUTS.contains(&action) => {}
        (None, _) => return Err(format!("{at}.inputs is required for {action}")),
        (Some(inputs), "ExecutePowerShell") => check_power_shell(inputs, at)?,
        (Some(_), _) => {}
    }
    if let Some(inputs) = field(step, "inputs") {
        check_strings(inputs, &format!("{at}.inputs"))?;
    }
    Ok(name)
}

/// Checks a component document as AWSTOE would read it.
pub fn check_document(data: &str) -> Result<(), Refusal> {
    let document: Value = serde_norway::from_str(data)
        .map_err(|e| format!("the component document is not valid YAML: {e}"))?;
    let Value::Mapping(document) = document else {
        return Err("the component document must be a mapping".to_owned());
    };
    known_fields(&document, &DOCUMENT_FIELDS, "the document")?;
    match field(&document, "schemaVersion") {
        Some(Value::String(v)) if v == "1.0" => {}
        Some(Value::Number(v)) if v.as_f64() == Some(1.0) => {}
        Some(other) => return Err(format!("schemaVersion is {other:?}, not 1.0")),
        None => return Err("schemaVersion is required".to_owned()),
    }
    let Some(Value::Sequence(phases)) = field(&document, "phases") else {
        return Err("phases is required, as a list".to_owned());
    };
    if phases.is_empty() {
        return Err("phases must hold at least one phase".to_owned());
    }
    let mut phase_names: Vec<String> = Vec::new();
    for (index, phase) in phases.iter().enumerate() {
        let at = format!("phases[{index}]");
        let Value::Mapping(phase) = phase else {
            return Err(format!("{at} must be a mapping"));
        };
        known_fields(phase, &["name", "steps"], &at)?;
        let name = text(phase, "name", &at)?;
        if !PHASES.contains(&name) {
            return Err(format!(
                "{at}.name {name:?} is not a phase Image Builder runs"
            ));
        }
        if phase_names.iter().any(|n| n == name) {
            return Err(format!("{at}.name {name:?} is not unique in the document"));
        }
        phase_names.push(name.to_owned());
        let Some(Value::Sequence(steps)) = field(phase, "steps") else {
            return Err(format!("{at}.steps is required, as a list"));
        };
        if steps.is_empty() {
            return Err(format!("{at}.steps must hold at least one step"));
        }
        let mut step_names: Vec<String> = Vec::new();
        for (step_index, step) in steps.iter().enumerate() {
            let step_at = format!("{at}.steps[{step_index}]");
            let step_name = check_step(step, &step_at)?;
            if step_names.contains(&step_name) {
                return Err(format!(
                    "{step_at}.name {step_name:?} is not unique in phase {name}"
                ));
            }
            step_names.push(step_name);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "name: c\nschemaVersion: 1.0\nphases:\n  - name: build\n    steps:\n      - name: Pull\n        action: ExecutePowerShell\n        timeoutSeconds: 7200\n        onFailure: Abort\n        maxAttempts: 3\n        inputs:\n          commands:\n            - |\n              Write-Output 'hello'\n  - name: validate\n    steps:\n      - name: Check\n        action: ExecutePowerShell\n        inputs:\n          file: 'C:\\check.ps1'\n      - name: Update\n        action: UpdateOS\n";

    #[test]
    fn a_well_formed_document_passes() {
        assert_eq!(check_document(GOOD), Ok(()));
    }

    #[test]
    fn what_awstoe_refuses_is_refused_naming_the_place() {
        let cases = [
            (GOOD.replace("schemaVersion: 1.0\n", ""), "schemaVersion"),
            (
                GOOD.replace("name: validate", "name: build"),
                "not unique in the document",
            ),
            (
                GOOD.replace("name: validate", "name: deploy"),
                "not a phase",
            ),
            (
                GOOD.replace("name: Check", "name: Update"),
                "not unique in phase",
            ),
            (
                GOOD.replace("action: UpdateOS", "action: RunEverything"),
                "not an AWSTOE action",
            ),
            (
                GOOD.replace("timeoutSeconds: 7200", "timeoutSeconds: 0"),
                "timeoutSeconds",
            ),
            (
                GOOD.replace("timeoutSeconds: 7200", "timeoutSeconds: '7200'"),
                "timeoutSeconds",
            ),
            (
                GOOD.replace("maxAttempts: 3", "maxAttempts: 0"),
                "maxAttempts",
            ),
            (
                GOOD.replace("onFailure: Abort", "onFailure: Retry"),
                "onFailure",
            ),
            (
                GOOD.replace("file: 'C:\\check.ps1'", "file: 'C:\\check.sh'"),
                ".ps1",
            ),
            (
                GOOD.replace(
                    "          file: 'C:\\check.ps1'",
                    "          file: 'C:\\check.ps1'\n          commands: ['x']",
                ),
                "not both",
            ),
            (
                GOOD.replace("Write-Output 'hello'", "Write-Output '{{ build.Pull'"),
                "never closed",
            ),
            (
                GOOD.replace("Write-Output 'hello'", "Write-Output '{{ $(calc) }}'"),
                "malformed expression",
            ),
            (
                GOOD.replace(
                    "        onFailure: Abort\n",
                    "        onFailure: Abort\n        retries: 3\n",
                ),
                "unknown field",
            ),
        ];
        for (document, needle) in cases {
            let refusal = check_document(&document).unwrap_err();
            assert!(refusal.contains(needle), "{needle}: {refusal}");
        }
        assert!(
            check_document(&GOOD.replace(
                "Write-Output 'hello'",
                "Write-Output '{{ build.Pull.outputs.stdout }}'"
            ))
            .is_ok()
        );
    }
}
