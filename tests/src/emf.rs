//! A reader for CloudWatch Embedded Metric Format lines that is as strict as CloudWatch Logs'
//! extraction ("Specification: Embedded metric format", CloudWatch User Guide): the root is an
//! object with an `_aws` metadata object; `Timestamp` is a number of milliseconds;
//! `CloudWatchMetrics` is an array of directives, each with a `Namespace`, `Dimensions` (sets
//! of at most 30 keys, each naming a string member of the root) and at most 100 `Metrics`,
//! each naming a member of the root whose value is a number or an array of at most 100
//! numbers, with a `Unit` among CloudWatch's `StandardUnit` values.

use std::collections::BTreeMap;

use anyhow::{Context as _, bail, ensure};
use serde_json::{Map, Value};

/// CloudWatch's `StandardUnit` (`MetricDatum.Unit`, CloudWatch API Reference).
pub const STANDARD_UNITS: [&str; 27] = [
    "Seconds",
    "Microseconds",
    "Milliseconds",
    "Bytes",
    "Kilobytes",
    "Megabytes",
    "Gigabytes",
    "Terabytes",
    "Bits",
    "Kilobits",
    "Megabits",
    "Gigabits",
    "Terabits",
    "Percent",
    "Count",
    "Bytes/Second",
    "Kilobytes/Second",
    "Megabytes/Second",
    "Gigabytes/Second",
    "Terabytes/Second",
    "Bits/Second",
    "Kilobits/Second",
    "Megabits/Second",
    "Gigabits/Second",
    "Terabits/Second",
    "Count/Second",
    "None",
];

/// One metric value extracted from an EMF line.
#[derive(Debug, Clone, PartialEq)]
pub struct Datum {
    pub namespace: String,
    pub name: String,
    pub unit: Option<String>,
    /// Dimension name → value, for each dimension set of the directive.
    pub dimensions: Vec<BTreeMap<String, String>>,
    pub values: Vec<f64>,
}

/// Whether a log line is meant as EMF (a JSON object with `_aws`).
pub fn is_emf(line: &str) -> bool {
    serde_json::from_str::<Value>(line).is_ok_and(|v| v.get("_aws").is_some())
}

/// Reads one EMF line strictly, returning every metric it defines.
pub fn read_line(line: &str) -> anyhow::Result<Vec<Datum>> {
    let root: Value = serde_json::from_str(line).context("an EMF line is one JSON object")?;
    let root = root.as_object().context("the root is a JSON object")?;
    let aws = root
        .get("_aws")
        .and_then(Value::as_object)
        .context("_aws is an object")?;
    let timestamp = aws
        .get("Timestamp")
        .and_then(Value::as_u64)
        .context("_aws.Timestamp is a whole number of milliseconds")?;
    ensure!(
        timestamp > 1_000_000_000_000,
        "_aws.Timestamp {timestamp} is milliseconds since the epoch"
    );
    let directives = aws
        .get("CloudWatchMetrics")
        .and_then(Value::as_array)
        .context("_aws.CloudWatchMetrics is an array")?;
    let mut data = Vec::new();
    for directive in directives {
        data.extend(read_directive(root, directive)?);
    }
    Ok(data)
}

fn read_directive(root: &Map<String, Value>, directive: &Value) -> anyhow::Result<Vec<Datum>> {
    let namespace = directive
        .get("Namespace")
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty() && n.len() <= 1024)
        .context("Namespace is a string of 1 to 1024 characters")?;
    let sets = directive
        .get("Dimensions")
        .and_then(Value::as_array)
        .context("Dimensions is an array of dimension sets")?;
    let mut dimensions = Vec::new();
    for set in sets {
        let keys = set.as_array().context("a dimension set is an array")?;
        ensure!(keys.len() <= 30, "a dimension set has at most 30 keys");
        let mut resolved = BTreeMap::new();
        for key in keys {
            let key = key.as_str().context("a dimension key is a string")?;
            let value = root
                .get(key)
                .and_then(Value::as_str)
                .with_context(|| format!("dimension {key} names a string member of the root"))?;
            resolved.insert(key.to_owned(), value.to_owned());
        }
        dimensions.push(resolved);
    }
    let metrics = directive
        .get("Metrics")
        .and_then(Value::as_array)
        .context("Metrics is an array")?;
    ensure!(metrics.len() <= 100, "at most 100 metrics per directive");
    let mut data = Vec::new();
    for metric in metrics {
        let name = metric
            .get("Name")
            .and_then(Value::as_str)
            .filter(|n| !n.is_empty() && n.len() <= 1024)
            .context("a metric's Name is a string of 1 to 1024 characters")?;
        let unit = match metric.get("Unit") {
            None => None,
            Some(unit) => {
                let unit = unit.as_str().context("Unit is a string")?;
                if !STANDARD_UNITS.contains(&unit) {
                    bail!("{name}: unit {unit} is not a CloudWatch StandardUnit");
                }
                Some(unit.to_owned())
            }
        };
        let values = match root.get(name) {
            Some(Value::Number(n)) => vec![n.as_f64().context("a finite number")?],
            Some(Value::Array(values)) => {
                ensure!(values.len() <= 100, "{name}: at most 100 values");
                values
                    .iter()
                    .map(|v| {
                        v.as_f64()
                            .with_context(|| format!("{name}: {v} is a number"))
                    })
                    .collect::<anyhow::Result<_>>()?
            }
            other => bail!("{name} names a member holding a number or numbers, not {other:?}"),
        };
        data.push(Datum {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            unit,
            dimensions: dimensions.clone(),
            values,
        });
    }
    Ok(data)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_valid_line_reads_and_broken_ones_are_refused() {
        let good = r#"{"_aws":{"Timestamp":1764583200000,"CloudWatchMetrics":[{"Namespace":"prepull","Dimensions":[["Function"]],"Metrics":[{"Name":"Latency","Unit":"Seconds"}]}]},"Function":"f","Latency":[1.5,2]}"#;
        let data = read_line(good).unwrap();
        assert_eq!(data[0].values, [1.5, 2.0]);
        assert_eq!(data[0].dimensions[0]["Function"], "f");
        let broken = [
            good.replace("1764583200000", "\"now\""),
            good.replace("\"Seconds\"", "\"Secs\""),
            good.replace("\"Function\":\"f\",", ""),
            good.replace("[1.5,2]", "\"fast\""),
            good.replace("\"Namespace\":\"prepull\",", ""),
            "{}".to_owned(),
        ];
        for line in broken {
            assert!(read_line(&line).is_err(), "{line}");
        }
    }
}
