//! build-finished's fleet settings are checked at init too, before any event is read.

use std::process::Command;

#[test]
fn a_bad_in_progress_policy_stops_init_naming_the_variable() {
    let output = Command::new(env!("CARGO_BIN_EXE_build-finished"))
        .env_clear()
        .env("AWS_REGION", "us-east-1")
        .env("AWS_LAMBDA_RUNTIME_API", "127.0.0.1:9")
        .env(
            "PREPULL_PIPELINE_ARN",
            "arn:aws:imagebuilder:us-east-1:123456789012:image-pipeline/prepull-windows-cache",
        )
        .env("PREPULL_COMPONENT_NAME", "prepull-cache")
        .env("PREPULL_IMAGES", "team/web:v42")
        .env("PREPULL_REFRESH_IN_PROGRESS", "cancel")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let logged = String::from_utf8_lossy(&output.stdout);
    let line = logged
        .lines()
        .find(|l| l.contains("init failed"))
        .expect("a JSON log line");
    let json: serde_json::Value = serde_json::from_str(line).unwrap();
    let error = json["fields"]["error"].as_str().unwrap();
    assert!(
        error.contains("PREPULL_REFRESH_IN_PROGRESS: \"cancel\" is not replace or skip"),
        "{error}"
    );
}
