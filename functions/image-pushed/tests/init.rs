#![expect(
    clippy::unwrap_used,
    reason = "a test: a failure to run the binary is the failure to report"
)]
//! A bad setting stops the function at init, with a message naming the variable, before
//! it asks the Lambda Runtime API for any event.

use std::process::Command;

const PIPELINE: &str =
    "arn:aws:imagebuilder:us-east-1:123456789012:image-pipeline/prepull-windows-cache";

fn run(env: &[(&str, &str)]) -> (bool, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_image-pushed"))
        .env_clear()
        .env("AWS_REGION", "us-east-1")
        // Nothing listens here: reaching the Runtime API would fail differently.
        .env("AWS_LAMBDA_RUNTIME_API", "127.0.0.1:9")
        .envs(env.iter().copied())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&output.stdout).into_owned()
        + &String::from_utf8_lossy(&output.stderr);
    (output.status.success(), text)
}

#[test]
fn each_bad_setting_stops_init_naming_the_variable() {
    let cases: [(&[(&str, &str)], &str); 4] = [
        (
            &[
                ("PREPULL_COMPONENT_NAME", "prepull-cache"),
                ("PREPULL_IMAGES", "team/web:v1"),
            ],
            "PREPULL_PIPELINE_ARN: is not set",
        ),
        (
            &[
                ("PREPULL_PIPELINE_ARN", PIPELINE),
                ("PREPULL_COMPONENT_NAME", "prepull-cache"),
            ],
            "PREPULL_IMAGES: is not set",
        ),
        (
            &[
                ("PREPULL_PIPELINE_ARN", PIPELINE),
                ("PREPULL_COMPONENT_NAME", "prepull-cache"),
                ("PREPULL_IMAGES", "team/web:$(calc)"),
            ],
            "PREPULL_IMAGES: tag",
        ),
        (
            &[
                ("PREPULL_PIPELINE_ARN", PIPELINE),
                ("PREPULL_COMPONENT_NAME", "prepull-cache"),
                ("PREPULL_IMAGES", "team/web:v1"),
                ("PREPULL_RUNTIME", "podman"),
            ],
            "PREPULL_RUNTIME:",
        ),
    ];
    for (env, expected) in cases {
        let (succeeded, output) = run(env);
        assert!(!succeeded, "{expected}: init must fail");
        assert!(
            output.contains(expected),
            "expected {expected:?} in:\n{output}"
        );
        let logged = output
            .lines()
            .find(|l| l.contains("init failed"))
            .expect("a JSON log line");
        let json: serde_json::Value = serde_json::from_str(logged).expect("logs are JSON");
        assert_eq!(json["level"], "ERROR");
    }
}
