//! The template's CloudWatch dashboard reads exactly the metrics the functions emit, under the
//! namespace and dimensions they emit them with, and shows every widget the runbook describes.

use std::collections::BTreeSet;

use prepull::core::metrics::{FUNCTION_DIMENSION, Metric, NAMESPACE, PIPELINE_DIMENSION};
use serde_json::Value;
use serde_norway::Value as Yaml;

fn template() -> Yaml {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .join("template.yaml");
    serde_norway::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// The dashboard's body with each `${…}` replaced by `<…>`, after checking that each names a
/// resource, a parameter, a pseudo parameter or the `!Sub`'s own variable.
fn dashboard_body(template: &Yaml) -> Value {
    let resources = template["Resources"].as_mapping().unwrap();
    let dashboards: Vec<&Yaml> = resources
        .values()
        .filter(|r| r["Type"].as_str() == Some("AWS::CloudWatch::Dashboard"))
        .collect();
    assert_eq!(dashboards.len(), 1, "one dashboard");
    let Yaml::Tagged(sub) = &dashboards[0]["Properties"]["DashboardBody"] else {
        panic!("the body is a !Sub");
    };
    assert_eq!(sub.tag, "Sub");
    let parts = sub.value.as_sequence().unwrap();
    let (text, variables) = (parts[0].as_str().unwrap(), &parts[1]);
    let names: Vec<&str> = text
        .split("${")
        .skip(1)
        .map(|rest| rest.split('}').next().unwrap())
        .collect();
    for name in &names {
        let base = name.split('.').next().unwrap();
        let known = resources.contains_key(base)
            || template["Parameters"].get(base).is_some()
            || base.starts_with("AWS::")
            || variables.get(base).is_some();
        assert!(known, "${{{name}}} names nothing in the template");
    }
    let mut body = text.to_owned();
    for name in names {
        body = body.replace(&format!("${{{name}}}"), &format!("<{name}>"));
    }
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("the body is JSON: {e}\n{body}"))
}

/// Every metric line of every widget: `[namespace, name, dimension, value, …, {options}]` or
/// `[{"expression": …}]`.
fn metric_lines(body: &Value) -> Vec<(String, Vec<Value>)> {
    body["widgets"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|widget| {
            let title = widget["properties"]["title"].as_str().unwrap().to_owned();
            widget["properties"]["metrics"]
                .as_array()
                .unwrap()
                .iter()
                .map(move |line| (title.clone(), line.as_array().unwrap().clone()))
        })
        .collect()
}

#[test]
fn the_dashboard_reads_the_metrics_the_functions_emit() {
    let body = dashboard_body(&template());
    let emitted: BTreeSet<&str> = Metric::ALL.iter().map(|m| m.name()).collect();
    let mut shown: BTreeSet<String> = BTreeSet::new();
    let mut latency_stats = BTreeSet::new();
    for (title, line) in metric_lines(&body) {
        if let Some(expression) = line[0]["expression"].as_str() {
            // SUM(SEARCH('{prepull,Function,Pipeline} MetricName="X" Pipeline="<PipelineName>"', …))
            let schema = format!("{{{NAMESPACE},{FUNCTION_DIMENSION},{PIPELINE_DIMENSION}}}");
            assert!(expression.contains(&schema), "{title}: {expression}");
            assert!(
                expression.contains("Pipeline=\"<PipelineName>\""),
                "{expression}"
            );
            let name = expression
                .split("MetricName=\"")
                .nth(1)
                .and_then(|rest| rest.split('"').next())
                .unwrap();
            shown.insert(name.to_owned());
            continue;
        }
        if line[0] != NAMESPACE {
            continue;
        }
        let name = line[1].as_str().unwrap();
        let dimensions: Vec<&str> = line[2..]
            .iter()
            .filter_map(Value::as_str)
            .step_by(2)
            .collect();
        assert_eq!(
            dimensions,
            [FUNCTION_DIMENSION, PIPELINE_DIMENSION],
            "{title}: {name} with the dimensions the functions emit"
        );
        assert_eq!(line[5], "<PipelineName>");
        if name == Metric::PushToAmiLatency.name() {
            latency_stats.insert(line[6]["stat"].as_str().unwrap().to_owned());
        }
        shown.insert(name.to_owned());
    }
    for name in &shown {
        assert!(
            emitted.contains(name.as_str()),
            "{name} is shown but never emitted"
        );
    }
    let wanted = [
        Metric::PushToAmiLatency,
        Metric::BuildsStarted,
        Metric::BuildsQueued,
        Metric::BuildsAlreadyAttempted,
        Metric::BuildsSucceeded,
        Metric::BuildsFailed,
        Metric::BuildsCancelled,
        Metric::RefreshesStarted,
        Metric::RefreshesReplaced,
        Metric::RefreshesSkipped,
        Metric::RefreshesFailed,
        Metric::RefreshesMisconfigured,
    ];
    for metric in wanted {
        assert!(shown.contains(metric.name()), "{} is shown", metric.name());
    }
    assert_eq!(
        latency_stats,
        BTreeSet::from(["Maximum".to_owned(), "p50".to_owned()])
    );
}

#[test]
fn the_dashboard_shows_every_dead_letter_queue_and_each_functions_errors_and_duration() {
    let template = template();
    let body = dashboard_body(&template);
    let lines = metric_lines(&body);
    let queues: BTreeSet<String> = lines
        .iter()
        .filter(|(_, l)| l[0] == "AWS/SQS" && l[1] == "ApproximateNumberOfMessagesVisible")
        .map(|(_, l)| l[3].as_str().unwrap().to_owned())
        .collect();
    let dead_letter_queues: BTreeSet<String> = template["Resources"]
        .as_mapping()
        .unwrap()
        .iter()
        .filter(|(name, r)| {
            r["Type"].as_str() == Some("AWS::SQS::Queue")
                && name.as_str().unwrap().ends_with("DeadLetterQueue")
        })
        .map(|(name, _)| format!("<{}.QueueName>", name.as_str().unwrap()))
        .collect();
    assert_eq!(dead_letter_queues.len(), 4);
    assert_eq!(queues, dead_letter_queues);
    for function in [
        "ImagePushedFunction",
        "PatchDayFunction",
        "BuildFinishedFunction",
    ] {
        for metric in ["Errors", "Duration"] {
            assert!(
                lines.iter().any(|(_, l)| l[0] == "AWS/Lambda"
                    && l[1] == metric
                    && l[3] == format!("<{function}>")),
                "{function} {metric}"
            );
        }
    }
}
