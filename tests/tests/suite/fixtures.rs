//! The fixtures are the shapes AWS delivers, as the Lambda event types read them.

use aws_lambda_events::event::eventbridge::EventBridgeEvent;
use aws_lambda_events::event::sqs::SqsEvent;
use prepull_bench::fixtures::{fixtures_dir, load};
use serde_json::Value;

const ECR_EVENTS: [&str; 4] = [
    "ecr-push.json",
    "ecr-push-by-digest.json",
    "ecr-delete.json",
    "ecr-push-failed.json",
];

#[test]
fn ecr_events_have_the_documented_detail_and_an_empty_resources_list() {
    let mut seen = Vec::new();
    for name in ECR_EVENTS {
        let event: EventBridgeEvent<Value> = serde_json::from_value(load(name).unwrap()).unwrap();
        assert_eq!(event.detail_type, "ECR Image Action", "{name}");
        assert_eq!(event.source, "aws.ecr");
        assert!(
            event.resources.as_ref().is_none_or(Vec::is_empty),
            "ECR events carry no resources"
        );
        let detail = &event.detail;
        for field in [
            "result",
            "repository-name",
            "image-digest",
            "action-type",
            "image-tag",
            "manifest-media-type",
            "artifact-media-type",
        ] {
            assert!(detail[field].is_string(), "{name} lacks detail.{field}");
        }
        seen.push((
            detail["action-type"].as_str().unwrap().to_owned(),
            detail["result"].as_str().unwrap().to_owned(),
            detail["image-tag"].as_str().unwrap().is_empty(),
        ));
    }
    assert_eq!(
        seen,
        [
            ("PUSH".to_owned(), "SUCCESS".to_owned(), false),
            ("PUSH".to_owned(), "SUCCESS".to_owned(), true),
            ("DELETE".to_owned(), "SUCCESS".to_owned(), false),
            ("PUSH".to_owned(), "FAILURE".to_owned(), false),
        ]
    );
}

#[test]
fn every_ecr_event_is_also_wrapped_as_eventbridge_delivers_it_to_sqs() {
    for name in ECR_EVENTS {
        let batch: SqsEvent =
            serde_json::from_value(load(&format!("sqs-{name}")).unwrap()).unwrap();
        assert_eq!(batch.records.len(), 1);
        let record = &batch.records[0];
        assert_eq!(record.event_source.as_deref(), Some("aws:sqs"));
        let body: Value = serde_json::from_str(record.body.as_deref().unwrap()).unwrap();
        assert_eq!(
            body,
            load(name).unwrap(),
            "sqs-{name} carries {name} verbatim"
        );
    }
}

#[test]
fn image_builder_events_name_the_image_and_its_transition() {
    for (name, status, reason) in [
        ("imagebuilder-available.json", "AVAILABLE", false),
        ("imagebuilder-failed.json", "FAILED", true),
        ("imagebuilder-building.json", "BUILDING", false),
    ] {
        let event: EventBridgeEvent<Value> = serde_json::from_value(load(name).unwrap()).unwrap();
        assert_eq!(event.detail_type, "EC2 Image Builder Image State Change");
        assert_eq!(event.source, "aws.imagebuilder");
        let resources = event.resources.unwrap();
        assert!(
            resources[0].starts_with("arn:aws:imagebuilder:") && resources[0].contains(":image/")
        );
        assert_eq!(event.detail["state"]["status"], status);
        assert!(event.detail["previous-state"]["status"].is_string());
        assert_eq!(
            event.detail["state"]["reason"].is_string(),
            reason,
            "{name}"
        );
    }
}

#[test]
fn the_scheduler_payload_is_the_configured_input() {
    assert_eq!(
        load("scheduler-patch-day.json").unwrap(),
        serde_json::json!({"source": "schedule"})
    );
    let count = std::fs::read_dir(fixtures_dir())
        .unwrap()
        .filter(|entry| entry.as_ref().unwrap().path().is_file())
        .count();
    assert_eq!(
        count, 12,
        "every fixture is checked here (the hostile corpus, in hostile/, by hostile.rs)"
    );
}
