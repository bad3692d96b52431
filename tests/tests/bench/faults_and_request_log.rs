//! Fault injection and the request log, seen through the real SDK clients and their retries.

use std::time::{Duration, Instant};

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_sdk_imagebuilder::types::Platform;
use prepull_bench::bench::sdk_config_for;
use prepull_bench::emulator::{
    Emulator, EmulatorConfig, Fault, FaultKind, RecordedRequest, Service,
};
use prepull_bench::seed::{EMPTY_CACHE_DOCUMENT, PipelineSeed, seed_pipeline};
use serde_json::{Value, json};

async fn emulator() -> Emulator {
    Emulator::start(EmulatorConfig::default())
        .await
        .expect("emulator starts")
}

async fn imagebuilder(emulator: &Emulator, retry: RetryConfig) -> aws_sdk_imagebuilder::Client {
    let config = sdk_config_for(&emulator.url(), "us-east-1").await;
    // Fast backoff keeps the test quick; the retry decision is still the SDK's own.
    let retry = retry
        .with_initial_backoff(Duration::from_millis(10))
        .with_max_backoff(Duration::from_millis(50));
    let config = aws_sdk_imagebuilder::config::Builder::from(&config)
        .retry_config(retry)
        .build();
    aws_sdk_imagebuilder::Client::from_conf(config)
}

fn outcomes(requests: &[RecordedRequest]) -> Vec<(u16, Option<&str>, bool)> {
    requests
        .iter()
        .map(|r| (r.status, r.error_code.as_deref(), r.injected))
        .collect()
}

#[tokio::test]
async fn throttling_and_server_errors_are_retried_by_the_sdk_until_they_pass() {
    let emulator = emulator().await;
    let client = imagebuilder(&emulator, RetryConfig::standard().with_max_attempts(3)).await;
    let seeded = seed_pipeline(&client, &PipelineSeed::default())
        .await
        .unwrap();
    emulator.clear_requests();

    emulator.inject(Fault::new("CreateComponent", FaultKind::Throttle, 2));
    client
        .create_component()
        .name("prepull-cache")
        .semantic_version("1.0.1")
        .platform(Platform::Windows)
        .data(EMPTY_CACHE_DOCUMENT)
        .client_token("manifest-abc")
        .send()
        .await
        .expect("the third attempt succeeds");
    let creates = emulator.requests_of("CreateComponent");
    assert_eq!(
        outcomes(&creates),
        [
            (400, Some("ThrottlingException"), true),
            (400, Some("ThrottlingException"), true),
            (200, None, false)
        ]
    );
    assert!(
        creates
            .iter()
            .all(|r| r.params["clientToken"] == "manifest-abc"),
        "retries resend the same token"
    );

    for kind in [FaultKind::ServerError, FaultKind::Unavailable] {
        emulator.inject(Fault::new("StartImagePipelineExecution", kind, 2));
    }
    let error = client
        .start_image_pipeline_execution()
        .image_pipeline_arn(&seeded.pipeline_arn)
        .client_token("build-1")
        .send()
        .await
        .unwrap_err();
    assert!(
        error
            .into_service_error()
            .is_service_unavailable_exception(),
        "three attempts, all faulted: the SDK gives up with the last error"
    );
    let image = client
        .start_image_pipeline_execution()
        .image_pipeline_arn(&seeded.pipeline_arn)
        .client_token("build-1")
        .send()
        .await
        .unwrap();
    assert!(image.image_build_version_arn().is_some());
    let starts = emulator.requests_of("StartImagePipelineExecution");
    assert_eq!(
        outcomes(&starts),
        [
            (500, Some("ServiceException"), true),
            (500, Some("ServiceException"), true),
            (503, Some("ServiceUnavailableException"), true),
            (503, Some("ServiceUnavailableException"), true),
            (200, None, false),
        ]
    );
}

#[tokio::test]
async fn without_retries_each_fault_surfaces_as_its_typed_error() {
    let emulator = emulator().await;
    let client = imagebuilder(&emulator, RetryConfig::disabled()).await;
    emulator.inject(Fault::new("ListComponents", FaultKind::RateLimit, 1));
    let rate_limited = client
        .list_components()
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(
        rate_limited.is_call_rate_limit_exceeded_exception(),
        "{rate_limited:?}"
    );
    emulator.inject(Fault {
        service: Some(Service::Autoscaling),
        ..Fault::new("ListComponents", FaultKind::Throttle, 1)
    });
    client
        .list_components()
        .send()
        .await
        .expect("a fault for another service leaves this one alone");
    assert_eq!(emulator.requests_of("ListComponents").len(), 2);
}

#[tokio::test]
async fn auto_scaling_throttling_is_retried_and_a_slow_call_trips_a_timeout() {
    let emulator = emulator().await;
    let config = sdk_config_for(&emulator.url(), "us-east-1").await;
    let retry = RetryConfig::standard()
        .with_max_attempts(3)
        .with_initial_backoff(Duration::from_millis(10));
    let client = aws_sdk_autoscaling::Client::from_conf(
        aws_sdk_autoscaling::config::Builder::from(&config)
            .retry_config(retry)
            .build(),
    );
    client
        .create_auto_scaling_group()
        .auto_scaling_group_name("nodes")
        .launch_template(
            aws_sdk_autoscaling::types::LaunchTemplateSpecification::builder()
                .launch_template_name("nodes")
                .build(),
        )
        .min_size(1)
        .max_size(2)
        .send()
        .await
        .unwrap();
    emulator.inject(Fault::new("StartInstanceRefresh", FaultKind::Throttle, 1));
    emulator.inject(Fault::new(
        "StartInstanceRefresh",
        FaultKind::ServerError,
        1,
    ));
    client
        .start_instance_refresh()
        .auto_scaling_group_name("nodes")
        .send()
        .await
        .expect("retried past both faults");
    let codes: Vec<Option<String>> = emulator
        .requests_of("StartInstanceRefresh")
        .into_iter()
        .map(|r| r.error_code)
        .collect();
    assert_eq!(
        codes,
        [
            Some("Throttling".to_owned()),
            Some("InternalFailure".to_owned()),
            None
        ]
    );

    emulator.inject(Fault::slow(
        "DescribeInstanceRefreshes",
        Duration::from_millis(1_500),
        1,
    ));
    let impatient = aws_sdk_autoscaling::Client::from_conf(
        aws_sdk_autoscaling::config::Builder::from(&config)
            .retry_config(RetryConfig::disabled())
            .timeout_config(
                TimeoutConfig::builder()
                    .operation_attempt_timeout(Duration::from_millis(100))
                    .build(),
            )
            .build(),
    );
    let timed_out = impatient
        .describe_instance_refreshes()
        .auto_scaling_group_name("nodes")
        .send()
        .await
        .unwrap_err();
    assert!(
        matches!(
            timed_out,
            aws_sdk_autoscaling::error::SdkError::TimeoutError(_)
        ),
        "{timed_out:?}"
    );
    impatient
        .describe_instance_refreshes()
        .auto_scaling_group_name("nodes")
        .send()
        .await
        .expect("the fault was used up");
}

#[tokio::test]
async fn the_log_and_faults_are_reachable_over_http_and_tell_reads_from_writes() {
    let emulator = emulator().await;
    let http = reqwest::Client::new();
    let url = emulator.url();
    let added = http
        .post(format!("{url}/_bench/faults"))
        .json(&json!({"service": "imagebuilder", "operation": "GetComponent", "kind": "throttle", "count": 1}))
        .send()
        .await
        .unwrap();
    assert_eq!(added.status(), 200);
    let bad = http
        .post(format!("{url}/_bench/faults"))
        .json(&json!({"operation": "GetComponent", "kind": "explode"}))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);

    let client = imagebuilder(&emulator, RetryConfig::disabled()).await;
    let throttled = client
        .get_component()
        .component_build_version_arn(
            "arn:aws:imagebuilder:us-east-1:123456789012:component/c/x.x.x",
        )
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        throttled.into_service_error().meta().code(),
        Some("ThrottlingException")
    );
    seed_pipeline(&client, &PipelineSeed::default())
        .await
        .unwrap();

    let log: Vec<RecordedRequest> = http
        .get(format!("{url}/_bench/requests"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(log, emulator.requests());
    let operations: Vec<(&str, bool)> = log
        .iter()
        .map(|r| (r.operation.as_str(), r.is_mutating()))
        .collect();
    assert_eq!(
        operations,
        [
            ("GetComponent", false),
            ("CreateComponent", true),
            ("CreateImageRecipe", true),
            ("CreateInfrastructureConfiguration", true),
            ("CreateDistributionConfiguration", true),
            ("CreateImagePipeline", true),
        ]
    );
    assert_eq!(log[1].params["name"], "prepull-cache");
    assert!(log.iter().all(|r| r.service == Service::Imagebuilder));
    assert_eq!(
        log.iter().map(|r| r.seq).collect::<Vec<_>>(),
        (1..=6).collect::<Vec<_>>()
    );

    http.delete(format!("{url}/_bench/requests"))
        .send()
        .await
        .unwrap();
    assert!(emulator.requests().is_empty());
    let reset: Value = http
        .post(format!("{url}/_bench/reset"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(reset, json!({}));
    let components = client.list_components().send().await.unwrap();
    assert!(
        components.component_version_list().is_empty(),
        "reset forgets every resource"
    );
}

#[tokio::test]
async fn prepull_clients_retry_image_builders_own_rate_limit_error() {
    let emulator = emulator().await;
    let config = sdk_config_for(&emulator.url(), "us-east-1").await;
    let retry = RetryConfig::standard()
        .with_max_attempts(3)
        .with_initial_backoff(Duration::from_millis(10));
    let config = config.into_builder().retry_config(retry).build();
    let clients = prepull::aws::AwsClients::from_config(&config);
    emulator.inject(Fault::new("ListComponents", FaultKind::RateLimit, 2));
    clients
        .imagebuilder()
        .list_components()
        .send()
        .await
        .expect("retried past CallRateLimitExceededException");
    let codes: Vec<Option<String>> = emulator
        .requests_of("ListComponents")
        .into_iter()
        .map(|r| r.error_code)
        .collect();
    assert_eq!(
        codes,
        [
            Some("CallRateLimitExceededException".to_owned()),
            Some("CallRateLimitExceededException".to_owned()),
            None
        ]
    );
}

/// "As AWS answers": every answer waits the delay, and calls made side by side wait it out
/// together, as on AWS. Asserted on the request log's spans and on lower bounds only: an upper
/// bound on wall-clock time would fail on a busy machine.
#[tokio::test]
async fn an_answer_delay_holds_every_answer_and_calls_side_by_side_wait_it_out_together() {
    let emulator = emulator().await;
    let client = imagebuilder(&emulator, RetryConfig::disabled()).await;
    let config = sdk_config_for(&emulator.url(), "us-east-1").await;
    let autoscaling = aws_sdk_autoscaling::Client::new(&config);
    let delay = Duration::from_millis(50);
    emulator.set_answer_delay(delay);

    let start = Instant::now();
    client.list_components().send().await.unwrap();
    autoscaling
        .describe_auto_scaling_groups()
        .send()
        .await
        .unwrap();
    assert!(
        start.elapsed() >= 2 * delay,
        "two calls in sequence wait two delays"
    );
    let sequential = emulator.requests();
    assert_eq!(sequential.len(), 2);
    for request in &sequential {
        assert_eq!(request.answer_delay_us, 50_000, "{request:?}");
        assert!(
            request.answered_us - request.received_us >= 50_000,
            "{request:?}"
        );
    }
    assert!(
        sequential[1].received_us >= sequential[0].answered_us,
        "the second call was sent once the first was answered"
    );

    // Long enough that the calls are all in before the first answer, however slow the machine.
    let delay = Duration::from_millis(300);
    emulator.set_answer_delay(delay);
    emulator.clear_requests();
    let start = Instant::now();
    let calls = (0..4).map(|_| client.list_components().send());
    for answer in futures_util::future::join_all(calls).await {
        answer.unwrap();
    }
    assert!(start.elapsed() >= delay);
    let side_by_side = emulator.requests();
    assert_eq!(side_by_side.len(), 4);
    assert!(side_by_side.iter().all(|r| r.answer_delay_us == 300_000));
    let last_in = side_by_side.iter().map(|r| r.received_us).max().unwrap();
    let first_out = side_by_side.iter().map(|r| r.answered_us).min().unwrap();
    assert!(
        last_in < first_out,
        "each call waited on its own, not in turn: {side_by_side:#?}"
    );
}

#[tokio::test]
async fn the_answer_delay_is_set_over_http_and_outlives_a_reset() {
    let emulator = emulator().await;
    let http = reqwest::Client::new();
    let url = emulator.url();
    let set: Value = http
        .post(format!("{url}/_bench/answer-delay"))
        .json(&json!({"milliseconds": 25}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(set, json!({"milliseconds": 25}));
    assert_eq!(emulator.answer_delay(), Duration::from_millis(25));
    http.post(format!("{url}/_bench/reset"))
        .send()
        .await
        .unwrap()
        .error_for_status()
        .unwrap();
    let read: Value = http
        .get(format!("{url}/_bench/answer-delay"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        read,
        json!({"milliseconds": 25}),
        "the network's, not the account's"
    );

    let client = imagebuilder(&emulator, RetryConfig::disabled()).await;
    // A call refused for its shape waits too: AWS answers it from as far away.
    let refused = client
        .get_component()
        .component_build_version_arn("not an ARN")
        .send()
        .await;
    assert!(refused.is_err());
    emulator.set_answer_delay(Duration::ZERO);
    client.list_components().send().await.unwrap();
    let delays: Vec<(u16, u64)> = emulator
        .requests()
        .iter()
        .map(|r| (r.status, r.answer_delay_us))
        .collect();
    assert_eq!(delays, [(400, 25_000), (200, 0)]);
}
