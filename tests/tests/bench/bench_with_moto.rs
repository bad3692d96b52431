//! The whole bench: moto behind the emulator for SSM, ECR and EC2, one request log for all.

use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_sdk_ssm::types::ParameterType;
use prepull_bench::bench::Bench;
use prepull_bench::emulator::{Fault, FaultKind, Service};

/// Parameter Store validates an `aws:ec2:image` value after it answers: a value EC2 does not
/// know gets a version number, and that version is never written.
#[tokio::test]
async fn an_ami_ec2_does_not_know_is_answered_and_never_written() {
    let bench = Bench::start().await.unwrap();
    let ssm = aws_sdk_ssm::Client::new(&bench.sdk_config().await);
    let known = bench
        .emulator
        .register_ami("us-east-1", "windows-node")
        .await
        .unwrap();
    let put = |value: String| {
        ssm.put_parameter()
            .name("/prepull/ami-id")
            .value(value)
            .r#type(ParameterType::String)
            .data_type("aws:ec2:image")
            .overwrite(true)
            .send()
    };
    assert_eq!(put(known.clone()).await.unwrap().version(), 1);
    let unknown = put("ami-0123456789abcdef0".to_owned()).await.unwrap();
    assert_eq!(unknown.version(), 2, "HTTP 200 and a version number");
    let current = ssm
        .get_parameter()
        .name("/prepull/ami-id")
        .send()
        .await
        .unwrap();
    assert_eq!(
        (
            current.parameter().unwrap().value(),
            current.parameter().unwrap().version()
        ),
        (Some(known.as_str()), 1),
        "the version was never written"
    );
    let missing = ssm
        .get_parameter()
        .name("/prepull/ami-id:2")
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(missing.is_parameter_version_not_found(), "{missing:?}");
    // A String parameter without the data type is not checked.
    ssm.put_parameter()
        .name("/prepull/plain")
        .value("ami-0123456789abcdef0")
        .r#type(ParameterType::String)
        .send()
        .await
        .unwrap();
    assert!(
        ssm.get_parameter()
            .name("/prepull/plain")
            .send()
            .await
            .is_ok()
    );
}

#[tokio::test]
async fn ssm_goes_through_to_moto_and_is_logged_and_faultable() {
    let bench = Bench::start().await.unwrap();
    let config = bench.sdk_config().await;
    let retry = RetryConfig::standard()
        .with_max_attempts(3)
        .with_initial_backoff(Duration::from_millis(10));
    let ssm = aws_sdk_ssm::Client::from_conf(
        aws_sdk_ssm::config::Builder::from(&config)
            .retry_config(retry)
            .build(),
    );

    let ami = bench
        .emulator
        .register_ami("us-east-1", "windows-node")
        .await
        .unwrap();
    bench
        .emulator
        .inject(Fault::new("PutParameter", FaultKind::Throttle, 1));
    let put = ssm
        .put_parameter()
        .name("/prepull/ami-id")
        .value(&ami)
        .r#type(ParameterType::String)
        .data_type("aws:ec2:image")
        .overwrite(true)
        .send()
        .await
        .expect("retried past the throttle");
    assert_eq!(put.version(), 1);
    ssm.label_parameter_version()
        .name("/prepull/ami-id")
        .parameter_version(1)
        .labels("build-1-0-0-1")
        .send()
        .await
        .unwrap();
    let got = ssm
        .get_parameter()
        .name("/prepull/ami-id")
        .send()
        .await
        .unwrap();
    assert_eq!(got.parameter().unwrap().value(), Some(ami.as_str()));
    let history = ssm
        .get_parameter_history()
        .name("/prepull/ami-id")
        .send()
        .await
        .unwrap();
    assert_eq!(history.parameters()[0].labels(), ["build-1-0-0-1"]);

    let log = bench.emulator.requests();
    let seen: Vec<(Service, &str, Option<&str>)> = log
        .iter()
        .map(|r| (r.service, r.operation.as_str(), r.error_code.as_deref()))
        .collect();
    assert_eq!(
        seen,
        [
            (Service::Ssm, "PutParameter", Some("ThrottlingException")),
            (Service::Ssm, "PutParameter", None),
            (Service::Ssm, "LabelParameterVersion", None),
            (Service::Ssm, "GetParameter", None),
            (Service::Ssm, "GetParameterHistory", None),
        ]
    );
    assert_eq!(log[1].params["DataType"], "aws:ec2:image");
    assert!(log[2].is_mutating() && !log[3].is_mutating());

    let missing = ssm
        .get_parameter()
        .name("/not/there")
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(
        missing.is_parameter_not_found(),
        "moto's typed errors pass through: {missing:?}"
    );
}

#[tokio::test]
async fn ecr_images_pushed_to_moto_have_real_digests() {
    let bench = Bench::start().await.unwrap();
    let ecr = aws_sdk_ecr::Client::new(&bench.sdk_config().await);
    ecr.create_repository()
        .repository_name("team/web")
        .send()
        .await
        .unwrap();
    let manifest = r#"{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json","config":{"mediaType":"application/vnd.docker.container.image.v1+json","size":1,"digest":"sha256:1111111111111111111111111111111111111111111111111111111111111111"},"layers":[]}"#;
    let pushed = ecr
        .put_image()
        .repository_name("team/web")
        .image_tag("v42")
        .image_manifest(manifest)
        .send()
        .await
        .unwrap();
    let digest = pushed
        .image()
        .unwrap()
        .image_id()
        .unwrap()
        .image_digest()
        .unwrap()
        .to_owned();
    assert!(
        digest.starts_with("sha256:") && digest.len() == 71,
        "{digest}"
    );

    let described = ecr
        .describe_images()
        .repository_name("team/web")
        .image_ids(
            aws_sdk_ecr::types::ImageIdentifier::builder()
                .image_tag("v42")
                .build(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(
        described.image_details()[0].image_digest(),
        Some(digest.as_str())
    );
    let operations: Vec<String> = bench
        .emulator
        .requests()
        .into_iter()
        .map(|r| r.operation)
        .collect();
    assert_eq!(
        operations,
        ["CreateRepository", "PutImage", "DescribeImages"]
    );
}

#[tokio::test]
async fn each_bench_starts_from_a_clean_moto_and_emulator() {
    let bench = Bench::start().await.unwrap();
    let ssm = aws_sdk_ssm::Client::new(&bench.sdk_config().await);
    ssm.put_parameter()
        .name("/prepull/leftover")
        .value("x")
        .r#type(ParameterType::String)
        .send()
        .await
        .unwrap();
    let moto_pid = bench.moto.pid();
    drop(bench);

    let bench = Bench::start().await.unwrap();
    assert_eq!(bench.moto.pid(), moto_pid, "one moto per test process");
    assert!(bench.emulator.requests().is_empty());
    let ssm = aws_sdk_ssm::Client::new(&bench.sdk_config().await);
    let gone = ssm
        .get_parameter()
        .name("/prepull/leftover")
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(gone.is_parameter_not_found(), "moto was reset");
}

/// EC2 reaches moto through the emulator, and a launch template keeps `resolve:ssm:` verbatim,
/// as EC2 stores it. moto does not resolve the parameter at launch (nothing in moto reads
/// `resolve:ssm:`), so what the fleet launches from is proved on the parameter itself, in the
/// build-finished tests; this test proves only that the template round-trips.
#[tokio::test]
async fn ec2_launch_templates_keep_resolve_ssm_through_moto() {
    let bench = Bench::start().await.unwrap();
    // EC2 is reached through the emulator too; its calls are awsQuery like Auto Scaling's but
    // signed for "ec2", which is how the emulator tells them apart.
    let response = reqwest::Client::new()
        .post(bench.url())
        .header("authorization", "AWS4-HMAC-SHA256 Credential=testing/20261129/us-east-1/ec2/aws4_request, SignedHeaders=host, Signature=0")
        .header("content-type", "application/x-www-form-urlencoded")
        .body("Action=CreateLaunchTemplate&Version=2016-11-15&LaunchTemplateName=windows-nodes&LaunchTemplateData.ImageId=resolve%3Assm%3A%2Fprepull%2Fami-id&LaunchTemplateData.InstanceType=m5.large")
        .send()
        .await
        .unwrap();
    let status = response.status();
    let body = response.text().await.unwrap();
    assert!(status.is_success(), "{status}: {body}");
    assert!(
        body.contains("<launchTemplateName>windows-nodes</launchTemplateName>"),
        "{body}"
    );
    let recorded = bench.emulator.requests();
    assert_eq!(
        (recorded[0].service, recorded[0].operation.as_str()),
        (Service::Ec2, "CreateLaunchTemplate")
    );
    assert_eq!(
        recorded[0].params["LaunchTemplateData"]["ImageId"],
        "resolve:ssm:/prepull/ami-id"
    );
    let described = reqwest::Client::new()
        .post(bench.url())
        .header("authorization", "AWS4-HMAC-SHA256 Credential=testing/20261129/us-east-1/ec2/aws4_request, SignedHeaders=host, Signature=0")
        .header("content-type", "application/x-www-form-urlencoded")
        .body("Action=DescribeLaunchTemplateVersions&Version=2016-11-15&LaunchTemplateName=windows-nodes")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        described.contains("<imageId>resolve:ssm:/prepull/ami-id</imageId>"),
        "moto stores the template's ImageId as sent: {described}"
    );
}

/// moto answers EC2 and accepts parameter names EC2 refuses; the bench checks each name
/// against botocore's EC2 model first, so a misspelled Query parameter fails as on AWS.
#[tokio::test]
async fn ec2_parameter_names_are_checked_against_the_model() {
    let bench = Bench::start().await.unwrap();
    prepull_bench::seed::seed_launch_template(
        &bench,
        "nodes",
        "resolve:ssm:/prepull/ami-id",
        Some(100),
    )
    .await
    .unwrap();
    let read = |versions: &'static str| {
        let bench = &bench;
        async move {
            prepull_bench::seed::ec2_query(
                bench,
                &[
                    ("Action", "DescribeLaunchTemplateVersions"),
                    ("LaunchTemplateName", "nodes"),
                    (versions, "$Latest"),
                ],
            )
            .await
        }
    };
    // The model's wire name for `Versions` is its locationName, `LaunchTemplateVersion`.
    let body = read("LaunchTemplateVersion.1").await.unwrap();
    assert!(
        body.contains("<imageId>resolve:ssm:/prepull/ami-id</imageId>"),
        "{body}"
    );
    assert!(body.contains("<volumeSize>100</volumeSize>"), "{body}");
    let refused = read("Versions.1").await.unwrap_err().to_string();
    assert!(
        refused.contains("UnknownParameter") && refused.contains("Versions"),
        "{refused}"
    );
    let missing = prepull_bench::seed::ec2_query(&bench, &[("Action", "CreateLaunchTemplate")])
        .await
        .unwrap_err()
        .to_string();
    assert!(missing.contains("MissingParameter"), "{missing}");
    let log = bench.emulator.requests_of("DescribeLaunchTemplateVersions");
    assert_eq!(
        log.iter().map(|r| r.status).collect::<Vec<_>>(),
        [200, 400],
        "{log:#?}"
    );
}

/// ECR keeps the image a tag moved away from, untagged, and BatchGetImage answers each ID as
/// asked (the tag it was asked by, and a failure naming a missing digest); moto does neither,
/// so the emulator does. ECR checks the request's shape too: at most 100 image IDs a call.
#[tokio::test]
async fn ecr_keeps_retagged_images_and_answers_batch_get_image_as_aws() {
    use aws_sdk_ecr::types::{ImageFailureCode, ImageIdentifier};
    use prepull_bench::scenario::{ensure_repository, push_image};
    let bench = Bench::start().await.unwrap();
    let ecr = aws_sdk_ecr::Client::new(&bench.sdk_config().await);
    ensure_repository(&ecr, "team/web").await.unwrap();
    let first = push_image(&ecr, "team/web", "v1", "web 1").await.unwrap();
    let second = push_image(&ecr, "team/web", "v1", "web 2").await.unwrap();
    // A second tag on the newest image: moto would name that one, not the one asked for.
    push_image(&ecr, "team/web", "v2", "web 2").await.unwrap();
    let missing = format!("sha256:{}", "0".repeat(64));
    let tag = |t: &str| ImageIdentifier::builder().image_tag(t).build();
    let digest = |d: &str| ImageIdentifier::builder().image_digest(d).build();

    let answer = ecr
        .batch_get_image()
        .repository_name("team/web")
        .image_ids(tag("v1"))
        .image_ids(digest(&first))
        .image_ids(digest(&missing))
        .image_ids(tag("gone"))
        .send()
        .await
        .unwrap();
    let images: Vec<(Option<&str>, Option<&str>)> = answer
        .images()
        .iter()
        .map(|i| {
            let id = i.image_id().unwrap();
            (id.image_tag(), id.image_digest())
        })
        .collect();
    assert_eq!(
        images,
        [
            (Some("v1"), Some(second.as_str())),
            (None, Some(first.as_str()))
        ],
        "the tag moved on; the image it left is still there, untagged"
    );
    let failures: Vec<(Option<&str>, Option<&str>, Option<&ImageFailureCode>)> = answer
        .failures()
        .iter()
        .map(|f| {
            let id = f.image_id().unwrap();
            (id.image_tag(), id.image_digest(), f.failure_code())
        })
        .collect();
    assert_eq!(
        failures,
        [
            (
                None,
                Some(missing.as_str()),
                Some(&ImageFailureCode::ImageNotFound)
            ),
            (Some("gone"), None, Some(&ImageFailureCode::ImageNotFound)),
        ]
    );

    let too_many = ecr
        .batch_get_image()
        .repository_name("team/web")
        .set_image_ids(Some((0..101).map(|n| tag(&format!("t{n}"))).collect()))
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        too_many.into_service_error().meta().code(),
        Some("InvalidParameterException"),
        "botocore's ImageIdentifierList has max 100"
    );
}

/// The answer delay holds what moto answers too: "as AWS answers" delays every service.
#[tokio::test]
async fn the_answer_delay_holds_calls_passed_to_moto() {
    let bench = Bench::start().await.unwrap();
    let config = bench.sdk_config().await;
    let ssm = aws_sdk_ssm::Client::new(&config);
    let ecr = aws_sdk_ecr::Client::new(&config);
    let delay = Duration::from_millis(40);
    bench.emulator.set_answer_delay(delay);
    let start = std::time::Instant::now();
    ssm.describe_parameters().send().await.unwrap();
    ecr.describe_repositories().send().await.unwrap();
    assert!(start.elapsed() >= 2 * delay);
    let log = bench.emulator.requests();
    let seen: Vec<(Service, u16, u64)> = log
        .iter()
        .map(|r| (r.service, r.status, r.answer_delay_us))
        .collect();
    assert_eq!(
        seen,
        [(Service::Ssm, 200, 40_000), (Service::Ecr, 200, 40_000)]
    );
    assert!(log.iter().all(|r| r.answered_us - r.received_us >= 40_000));
}
