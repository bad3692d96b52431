//! boto3 against the bench: the same wire format works for botocore as for the Rust SDK.

use prepull_bench::bench::Bench;
use prepull_bench::emulator::Service;
use prepull_bench::moto::{venv_python, workspace_root};

#[tokio::test]
async fn boto3_drives_every_emulated_service() {
    let bench = Bench::start().await.unwrap();
    let script = workspace_root()
        .join("tests")
        .join("boto3")
        .join("check_emulator.py");
    let output = tokio::process::Command::new(venv_python())
        .arg(&script)
        .envs(bench.env())
        .env_remove("AWS_PROFILE")
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
        .output()
        .await
        .expect("the venv's python runs (make setup installs it)");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "boto3 checks failed:\n{stdout}\n{stderr}"
    );
    assert_eq!(
        stdout.lines().filter(|l| l.starts_with("ok: ")).count(),
        3,
        "{stdout}"
    );

    let log = bench.emulator.requests();
    let by_service = |service: Service| log.iter().filter(|r| r.service == service).count();
    assert!(
        by_service(Service::Imagebuilder) >= 12 && by_service(Service::Autoscaling) == 6,
        "{log:#?}"
    );
    assert_eq!(
        (
            by_service(Service::Ssm),
            by_service(Service::Ecr),
            by_service(Service::Ec2)
        ),
        (4, 2, 1),
        "two writes and two reads of the parameter, the repository, the registered AMI"
    );
    let mismatch = log
        .iter()
        .find(|r| r.error_code.as_deref() == Some("IdempotentParameterMismatchException"))
        .expect("boto3 saw the mismatch");
    assert_eq!(mismatch.params["clientToken"], "boto-build-1");
    let refresh = log
        .iter()
        .find(|r| r.operation == "StartInstanceRefresh")
        .unwrap();
    assert_eq!(refresh.params["Preferences"]["SkipMatching"], "false");
}
