//! The emulated Image Builder, driven through the real Rust SDK client.

use aws_sdk_imagebuilder::Client;
use aws_sdk_imagebuilder::types::{ComponentConfiguration, Filter, Platform};
use prepull_bench::bench::sdk_config_for;
use prepull_bench::emulator::{Emulator, EmulatorConfig};
use prepull_bench::seed::{ComponentReference, EMPTY_CACHE_DOCUMENT, PipelineSeed, seed_pipeline};
use serde_json::{Value, json};

async fn emulator_and_client() -> (Emulator, Client) {
    let emulator = Emulator::start(EmulatorConfig::default())
        .await
        .expect("emulator starts");
    let config = sdk_config_for(&emulator.url(), "us-east-1").await;
    (emulator, Client::new(&config))
}

async fn create_component(client: &Client, version: &str) -> String {
    client
        .create_component()
        .name("prepull-cache")
        .semantic_version(version)
        .platform(Platform::Windows)
        .data(EMPTY_CACHE_DOCUMENT)
        .send()
        .await
        .expect("CreateComponent succeeds")
        .component_build_version_arn()
        .expect("has an ARN")
        .to_owned()
}

const COMPONENT_PREFIX: &str =
    "arn:aws:imagebuilder:us-east-1:123456789012:component/prepull-cache";

#[tokio::test]
async fn versions_compare_numerically_wildcards_resolve_and_repeats_get_build_numbers() {
    let (_emulator, client) = emulator_and_client().await;
    for version in ["1.0.9", "1.0.10", "1.0.2", "0.9.99"] {
        create_component(&client, version).await;
    }

    let latest = client
        .get_component()
        .component_build_version_arn(format!("{COMPONENT_PREFIX}/x.x.x"))
        .send()
        .await
        .unwrap();
    let latest = latest.component().unwrap();
    assert_eq!(
        latest.version(),
        Some("1.0.10"),
        "1.0.10 is newer than 1.0.9 numerically"
    );
    assert_eq!(
        latest.arn(),
        Some(format!("{COMPONENT_PREFIX}/1.0.10/1").as_str())
    );
    assert_eq!(latest.data(), Some(EMPTY_CACHE_DOCUMENT));
    assert_eq!(latest.platform(), Some(&Platform::Windows));

    let zero_line = client
        .get_component()
        .component_build_version_arn(format!("{COMPONENT_PREFIX}/0.x.x"))
        .send()
        .await
        .unwrap();
    assert_eq!(zero_line.component().unwrap().version(), Some("0.9.99"));

    // Since November 2025 a repeated name and version gets the next build number.
    let rebuilt = create_component(&client, "1.0.10").await;
    assert_eq!(rebuilt, format!("{COMPONENT_PREFIX}/1.0.10/2"));
    let by_version = client
        .get_component()
        .component_build_version_arn(format!("{COMPONENT_PREFIX}/1.0.10"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        by_version.component().unwrap().arn(),
        Some(rebuilt.as_str())
    );
    let builds = client
        .list_component_build_versions()
        .component_version_arn(format!("{COMPONENT_PREFIX}/1.0.10"))
        .send()
        .await
        .unwrap();
    let build_arns: Vec<&str> = builds
        .component_summary_list()
        .iter()
        .filter_map(|c| c.arn())
        .collect();
    assert_eq!(
        build_arns,
        [
            format!("{COMPONENT_PREFIX}/1.0.10/1"),
            format!("{COMPONENT_PREFIX}/1.0.10/2")
        ]
    );

    let missing = client
        .get_component()
        .component_build_version_arn(format!("{COMPONENT_PREFIX}/2.x.x"))
        .send()
        .await
        .unwrap_err();
    assert_eq!(
        missing.into_service_error().meta().code(),
        Some("ResourceNotFoundException")
    );
}

#[tokio::test]
async fn list_components_pages_and_filters_by_name() {
    let (_emulator, client) = emulator_and_client().await;
    for version in ["1.0.0", "1.0.1", "1.0.2"] {
        create_component(&client, version).await;
    }
    let pages = client
        .list_components()
        .filters(
            Filter::builder()
                .name("name")
                .values("prepull-cache")
                .build(),
        )
        .max_results(2)
        .into_paginator()
        .send()
        .collect::<Result<Vec<_>, _>>()
        .await
        .unwrap();
    assert_eq!(pages.len(), 2, "three versions in pages of two");
    let versions: Vec<&str> = pages
        .iter()
        .flat_map(|p| p.component_version_list())
        .filter_map(|c| c.version())
        .collect();
    assert_eq!(versions, ["1.0.0", "1.0.1", "1.0.2"]);
    let arns: Vec<&str> = pages
        .iter()
        .flat_map(|p| p.component_version_list())
        .filter_map(|c| c.arn())
        .collect();
    assert!(
        arns.iter()
            .all(|a| a.ends_with(".0") || a.ends_with(".1") || a.ends_with(".2")),
        "version ARNs carry no build: {arns:?}"
    );

    let other = client
        .list_components()
        .filters(
            Filter::builder()
                .name("name")
                .values("something-else")
                .build(),
        )
        .send()
        .await
        .unwrap();
    assert!(other.component_version_list().is_empty());
    let amazon = client
        .list_components()
        .owner(aws_sdk_imagebuilder::types::Ownership::Amazon)
        .send()
        .await
        .unwrap();
    assert!(
        amazon
            .component_version_list()
            .iter()
            .any(|c| c.name() == Some("update-windows"))
    );

    let bad_token = client
        .list_components()
        .next_token("not-a-token")
        .send()
        .await
        .unwrap_err();
    assert!(
        bad_token
            .into_service_error()
            .is_invalid_pagination_token_exception()
    );
}

/// Image Builder's List operations answer 25 items a page unless asked for more, and up to
/// 100 (botocore's model, `maxResults`).
#[tokio::test]
async fn list_pages_hold_25_by_default_and_up_to_100_on_request() {
    let (_emulator, client) = emulator_and_client().await;
    for patch in 0..30 {
        create_component(&client, &format!("1.0.{patch}")).await;
    }
    let page_sizes = |max: Option<i32>| {
        let client = client.clone();
        async move {
            client
                .list_components()
                .set_max_results(max)
                .into_paginator()
                .send()
                .collect::<Result<Vec<_>, _>>()
                .await
                .unwrap()
                .iter()
                .map(|p| p.component_version_list().len())
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(page_sizes(None).await, [25, 5]);
    assert_eq!(page_sizes(Some(100)).await, [30]);
    let too_many = client
        .list_components()
        .max_results(101)
        .send()
        .await
        .unwrap_err();
    // The emulator's answer to any request its model refuses (see docs/bench.md).
    assert_eq!(
        too_many.into_service_error().meta().code(),
        Some("InvalidRequestException")
    );
}

#[tokio::test]
async fn component_data_is_limited_to_16000_characters_and_must_be_a_document() {
    let (emulator, client) = emulator_and_client().await;
    let document = |length: usize| {
        let mut data = EMPTY_CACHE_DOCUMENT.to_owned() + "# ";
        while data.chars().count() < length {
            data.push('é');
        }
        data
    };
    let at_limit = document(16_000);
    assert_eq!(at_limit.chars().count(), 16_000);
    assert!(
        at_limit.len() > 16_000,
        "the limit counts characters, not bytes"
    );
    client
        .create_component()
        .name("prepull-cache")
        .semantic_version("1.0.0")
        .platform(Platform::Windows)
        .data(at_limit)
        .send()
        .await
        .unwrap();

    let too_long = client
        .create_component()
        .name("prepull-cache")
        .semantic_version("1.0.1")
        .platform(Platform::Windows)
        .data(document(16_001))
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(
        too_long.is_invalid_request_exception(),
        "the model's limit, checked first: {too_long:?}"
    );
    assert!(too_long.meta().message().unwrap().contains("16000"));
    assert!(too_long.meta().message().unwrap().contains("'data'"));

    let not_yaml = client
        .create_component()
        .name("prepull-cache")
        .semantic_version("1.0.2")
        .platform(Platform::Windows)
        .data("phases: [unclosed")
        .send()
        .await
        .unwrap_err();
    assert!(not_yaml.into_service_error().is_invalid_request_exception());

    let both = client
        .create_component()
        .name("prepull-cache")
        .semantic_version("1.0.3")
        .platform(Platform::Windows)
        .data(EMPTY_CACHE_DOCUMENT)
        .uri("s3://bucket/doc.yaml")
        .send()
        .await
        .unwrap_err();
    assert!(
        both.into_service_error()
            .is_invalid_parameter_combination_exception()
    );

    for bad_version in ["1.0", "1.0.x", "v1.0.0", "1.0.0-beta"] {
        let error = client
            .create_component()
            .name("prepull-cache")
            .semantic_version(bad_version)
            .platform(Platform::Windows)
            .data(EMPTY_CACHE_DOCUMENT)
            .send()
            .await
            .unwrap_err();
        assert!(
            error
                .into_service_error()
                .is_invalid_version_number_exception(),
            "{bad_version} is refused"
        );
    }

    let created: Vec<_> = emulator
        .requests_of("CreateComponent")
        .into_iter()
        .filter(|r| r.succeeded())
        .collect();
    assert_eq!(
        created.len(),
        1,
        "only the document at the limit was created"
    );
}

#[tokio::test]
async fn a_client_token_replays_its_result_and_refuses_a_different_request() {
    let (emulator, client) = emulator_and_client().await;
    let create = |version: &str, description: &str| {
        client
            .create_component()
            .name("prepull-cache")
            .semantic_version(version)
            .platform(Platform::Windows)
            .description(description)
            .data(EMPTY_CACHE_DOCUMENT)
            .client_token("manifest-3f1c9a")
            .send()
    };
    let first = create("1.0.0", "push of team/web:v42").await.unwrap();
    let again = create("1.0.0", "push of team/web:v42").await.unwrap();
    assert_eq!(
        first.component_build_version_arn(),
        again.component_build_version_arn()
    );
    assert_eq!(again.client_token(), Some("manifest-3f1c9a"));

    let mismatch = create("1.0.1", "push of team/web:v43")
        .await
        .unwrap_err()
        .into_service_error();
    assert!(
        mismatch.is_idempotent_parameter_mismatch_exception(),
        "{mismatch:?}"
    );

    let builds = client
        .list_component_build_versions()
        .component_version_arn(format!("{COMPONENT_PREFIX}/1.0.0"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        builds.component_summary_list().len(),
        1,
        "the replay created nothing"
    );
    let outcomes: Vec<(u16, Option<String>)> = emulator
        .requests_of("CreateComponent")
        .into_iter()
        .map(|r| (r.status, r.error_code))
        .collect();
    assert_eq!(
        outcomes,
        [
            (200, None),
            (200, None),
            (400, Some("IdempotentParameterMismatchException".to_owned()))
        ]
    );
}

#[tokio::test]
async fn recipes_are_immutable_resolve_components_and_auto_increment_one_x() {
    let (_emulator, client) = emulator_and_client().await;
    let component = create_component(&client, "1.0.0").await;
    let recipe = |version: &str, components: Vec<String>| {
        let mut request = client
            .create_image_recipe()
            .name("cache-recipe")
            .semantic_version(version)
            .parent_image("ami-0123456789abcdef0");
        for arn in components {
            request = request.components(
                ComponentConfiguration::builder()
                    .component_arn(arn)
                    .build()
                    .unwrap(),
            );
        }
        request.send()
    };
    let first = recipe("1.0.0", vec![format!("{COMPONENT_PREFIX}/x.x.x")])
        .await
        .unwrap();
    let recipe_arn = first.image_recipe_arn().unwrap().to_owned();
    assert_eq!(
        recipe_arn,
        "arn:aws:imagebuilder:us-east-1:123456789012:image-recipe/cache-recipe/1.0.0"
    );

    let duplicate = recipe("1.0.0", vec![component.clone()])
        .await
        .unwrap_err()
        .into_service_error();
    assert!(duplicate.is_resource_already_exists_exception());

    let next = recipe("1.0.x", vec![component.clone()]).await.unwrap();
    assert_eq!(
        next.image_recipe_arn(),
        Some("arn:aws:imagebuilder:us-east-1:123456789012:image-recipe/cache-recipe/1.0.1")
    );

    let got = client
        .get_image_recipe()
        .image_recipe_arn(&recipe_arn)
        .send()
        .await
        .unwrap();
    let got = got.image_recipe().unwrap();
    assert_eq!(got.parent_image(), Some("ami-0123456789abcdef0"));
    assert_eq!(
        got.components()[0].component_arn(),
        format!("{COMPONENT_PREFIX}/x.x.x")
    );
    let latest = client
        .get_image_recipe()
        .image_recipe_arn(
            "arn:aws:imagebuilder:us-east-1:123456789012:image-recipe/cache-recipe/x.x.x",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(latest.image_recipe().unwrap().version(), Some("1.0.1"));

    let unknown = recipe("2.0.0", vec![format!("{COMPONENT_PREFIX}/9.x.x")])
        .await
        .unwrap_err()
        .into_service_error();
    assert!(unknown.is_invalid_request_exception());
    let too_many = recipe("3.0.0", vec![component; 21])
        .await
        .unwrap_err()
        .into_service_error();
    assert!(too_many.is_service_quota_exceeded_exception());
}

#[tokio::test]
async fn update_image_pipeline_replaces_the_whole_definition() {
    let (emulator, client) = emulator_and_client().await;
    let seeded = seed_pipeline(
        &client,
        &PipelineSeed {
            reference: ComponentReference::Pinned,
            ..PipelineSeed::default()
        },
    )
    .await
    .unwrap();
    let before = client
        .get_image_pipeline()
        .image_pipeline_arn(&seeded.pipeline_arn)
        .send()
        .await
        .unwrap();
    let before = before.image_pipeline().unwrap();
    assert_eq!(
        before.description(),
        Some("Driven by prepull; no schedule of its own")
    );
    assert_eq!(
        before.distribution_configuration_arn(),
        Some(seeded.distribution_arn.as_str())
    );

    // Sending only the required fields and the recipe clears everything else.
    client
        .update_image_pipeline()
        .image_pipeline_arn(&seeded.pipeline_arn)
        .image_recipe_arn(&seeded.recipe_arn)
        .infrastructure_configuration_arn(&seeded.infrastructure_arn)
        .send()
        .await
        .unwrap();
    let after = client
        .get_image_pipeline()
        .image_pipeline_arn(&seeded.pipeline_arn)
        .send()
        .await
        .unwrap();
    let after = after.image_pipeline().unwrap();
    assert_eq!(after.description(), None, "a field left out is cleared");
    assert_eq!(after.distribution_configuration_arn(), None);
    assert_eq!(after.name(), before.name());
    assert_eq!(after.date_created(), before.date_created());
    assert!(after.date_updated().is_some());

    // A request without its required fields is refused by the model check, naming the field.
    let http = reqwest::Client::new();
    for (missing, body) in [
        (
            "infrastructureConfigurationArn",
            json!({"imagePipelineArn": seeded.pipeline_arn, "imageRecipeArn": seeded.recipe_arn, "clientToken": "t-1"}),
        ),
        (
            "imagePipelineArn",
            json!({"infrastructureConfigurationArn": seeded.infrastructure_arn, "imageRecipeArn": seeded.recipe_arn, "clientToken": "t-2"}),
        ),
        (
            "clientToken",
            json!({"imagePipelineArn": seeded.pipeline_arn, "infrastructureConfigurationArn": seeded.infrastructure_arn, "imageRecipeArn": seeded.recipe_arn}),
        ),
    ] {
        let response = http
            .put(format!("{}/UpdateImagePipeline", emulator.url()))
            .header("authorization", "AWS4-HMAC-SHA256 Credential=testing/20261129/us-east-1/imagebuilder/aws4_request, SignedHeaders=host, Signature=0")
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 400);
        assert_eq!(
            response.headers()["x-amzn-errortype"],
            "InvalidRequestException"
        );
        let error: Value = response.json().await.unwrap();
        assert!(
            error["message"].as_str().unwrap().contains(missing),
            "{error}"
        );
    }
    let unchanged = client
        .get_image_pipeline()
        .image_pipeline_arn(&seeded.pipeline_arn)
        .send()
        .await
        .unwrap();
    assert_eq!(
        unchanged.image_pipeline().unwrap().date_updated(),
        after.date_updated()
    );
}

#[tokio::test]
async fn images_build_until_told_and_emit_the_eventbridge_events_aws_would() {
    let (emulator, client) = emulator_and_client().await;
    let seed = PipelineSeed {
        regions: vec!["us-east-1".to_owned(), "eu-west-1".to_owned()],
        ..PipelineSeed::default()
    };
    let seeded = seed_pipeline(&client, &seed).await.unwrap();
    let start = |token: &str| {
        client
            .start_image_pipeline_execution()
            .image_pipeline_arn(&seeded.pipeline_arn)
            .client_token(token)
            .tags("prepull:manifest", "3f1c9a")
            .tags("prepull:trigger", "push")
            .send()
    };
    let image_arn = start("build-1")
        .await
        .unwrap()
        .image_build_version_arn()
        .unwrap()
        .to_owned();
    assert_eq!(
        image_arn,
        "arn:aws:imagebuilder:us-east-1:123456789012:image/prepull-windows-cache-recipe/1.0.0/1"
    );
    assert_eq!(
        start("build-1").await.unwrap().image_build_version_arn(),
        Some(image_arn.as_str()),
        "same token, same image"
    );

    let image = client
        .get_image()
        .image_build_version_arn(&image_arn)
        .send()
        .await
        .unwrap();
    let image = image.image().unwrap();
    assert_eq!(
        image.state().unwrap().status().unwrap().as_str(),
        "BUILDING"
    );
    assert_eq!(
        image.source_pipeline_arn(),
        Some(seeded.pipeline_arn.as_str())
    );
    assert_eq!(image.tags().unwrap()["prepull:manifest"], "3f1c9a");
    assert!(image.output_resources().unwrap().amis().is_empty());

    let listed = client
        .list_image_pipeline_images()
        .image_pipeline_arn(&seeded.pipeline_arn)
        .send()
        .await
        .unwrap();
    assert_eq!(listed.image_summary_list().len(), 1);

    let event = emulator
        .finish_image(&image_arn, "AVAILABLE", None)
        .unwrap();
    assert_eq!(event["detail-type"], "EC2 Image Builder Image State Change");
    assert_eq!(event["source"], "aws.imagebuilder");
    assert_eq!(event["resources"], json!([image_arn]));
    assert_eq!(
        event["detail"],
        json!({"previous-state": {"status": "INTEGRATING"}, "state": {"status": "AVAILABLE"}})
    );
    let fixture = prepull_bench::fixtures::load("imagebuilder-available.json").unwrap();
    let keys = |v: &Value| v.as_object().unwrap().keys().cloned().collect::<Vec<_>>();
    assert_eq!(
        keys(&event),
        keys(&fixture),
        "the emitted event has the fixture's shape"
    );

    let image = client
        .get_image()
        .image_build_version_arn(&image_arn)
        .send()
        .await
        .unwrap();
    let amis = image.image().unwrap().output_resources().unwrap().amis();
    let regions: Vec<&str> = amis.iter().filter_map(|a| a.region()).collect();
    assert_eq!(
        regions,
        ["us-east-1", "eu-west-1"],
        "one AMI per distribution region"
    );
    assert!(amis.iter().all(|a| {
        a.image()
            .is_some_and(|id| id.starts_with("ami-") && id.len() == 21)
    }));
    assert!(
        amis[0].name().unwrap().starts_with("prepull-windows-")
            && !amis[0].name().unwrap().contains("{{")
    );

    let statuses: Vec<String> = emulator
        .image_events()
        .iter()
        .map(|e| e["detail"]["state"]["status"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        statuses,
        [
            "PENDING",
            "BUILDING",
            "TESTING",
            "DISTRIBUTING",
            "INTEGRATING",
            "AVAILABLE"
        ],
        "an event on every transition"
    );

    let second = start("build-2")
        .await
        .unwrap()
        .image_build_version_arn()
        .unwrap()
        .to_owned();
    assert!(
        second.ends_with("/1.0.0/2"),
        "the next build of the same recipe version"
    );
    let failed = emulator
        .finish_image(&second, "FAILED", Some("Step PullCachedImages failed"))
        .unwrap();
    assert_eq!(
        failed["detail"]["state"],
        json!({"status": "FAILED", "reason": "Step PullCachedImages failed"})
    );
    let refinish = emulator
        .finish_image(&second, "AVAILABLE", None)
        .unwrap_err();
    assert_eq!(refinish.code, "ResourceInUseException");
}

#[tokio::test]
async fn cancelling_a_build_works_once_then_reports_the_resource_in_use() {
    let (emulator, client) = emulator_and_client().await;
    let seeded = seed_pipeline(&client, &PipelineSeed::default())
        .await
        .unwrap();
    let image_arn = client
        .start_image_pipeline_execution()
        .image_pipeline_arn(&seeded.pipeline_arn)
        .send()
        .await
        .unwrap()
        .image_build_version_arn()
        .unwrap()
        .to_owned();

    let cancelled = client
        .cancel_image_creation()
        .image_build_version_arn(&image_arn)
        .send()
        .await
        .unwrap();
    assert_eq!(
        cancelled.image_build_version_arn(),
        Some(image_arn.as_str())
    );
    let image = client
        .get_image()
        .image_build_version_arn(&image_arn)
        .send()
        .await
        .unwrap();
    assert_eq!(
        image
            .image()
            .unwrap()
            .state()
            .unwrap()
            .status()
            .unwrap()
            .as_str(),
        "CANCELLED"
    );
    assert_eq!(
        emulator.image_events().last().unwrap()["detail"]["state"]["status"],
        "CANCELLED"
    );

    let again = client
        .cancel_image_creation()
        .image_build_version_arn(&image_arn)
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(again.is_resource_in_use_exception(), "{again:?}");

    let missing_pipeline = client
        .start_image_pipeline_execution()
        .image_pipeline_arn("arn:aws:imagebuilder:us-east-1:123456789012:image-pipeline/nope")
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(missing_pipeline.is_resource_not_found_exception());
}

#[tokio::test]
async fn the_control_endpoint_finishes_a_build_over_http() {
    let (emulator, client) = emulator_and_client().await;
    let seeded = seed_pipeline(&client, &PipelineSeed::default())
        .await
        .unwrap();
    let image_arn = client
        .start_image_pipeline_execution()
        .image_pipeline_arn(&seeded.pipeline_arn)
        .send()
        .await
        .unwrap()
        .image_build_version_arn()
        .unwrap()
        .to_owned();
    let http = reqwest::Client::new();
    let finish = |status: &str| {
        http.post(format!("{}/_bench/imagebuilder/images/finish", emulator.url()))
            .json(&json!({"imageBuildVersionArn": image_arn, "status": status, "reason": "AWSTOE exited 1"}))
            .send()
    };
    let response = finish("FAILED").await.unwrap();
    assert_eq!(response.status(), 200);
    let event: Value = response.json().await.unwrap();
    assert_eq!(event["detail"]["state"]["reason"], "AWSTOE exited 1");
    let events: Value = http
        .get(format!("{}/_bench/imagebuilder/events", emulator.url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(events.as_array().unwrap().last().unwrap(), &event);
    let refused = finish("AVAILABLE").await.unwrap();
    assert_eq!(refused.status(), 400);
}

#[tokio::test]
async fn the_clock_can_be_fixed_so_tests_pick_the_day() {
    let (emulator, client) = emulator_and_client().await;
    let seeded = seed_pipeline(&client, &PipelineSeed::default())
        .await
        .unwrap();
    let response = reqwest::Client::new()
        .post(format!("{}/_bench/clock", emulator.url()))
        .json(&json!({"now": "2026-12-09T06:00:00Z"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let arn = client
        .start_image_pipeline_execution()
        .image_pipeline_arn(&seeded.pipeline_arn)
        .send()
        .await
        .unwrap()
        .image_build_version_arn
        .unwrap();
    let listed = client
        .list_image_pipeline_images()
        .image_pipeline_arn(&seeded.pipeline_arn)
        .send()
        .await
        .unwrap();
    assert_eq!(
        listed.image_summary_list()[0].date_created(),
        Some("2026-12-09T06:00:00.000Z")
    );
    assert_eq!(
        emulator.finish_image(&arn, "AVAILABLE", None).unwrap()["time"],
        "2026-12-09T06:00:00Z"
    );
    emulator.set_clock(None);
    let later = client
        .start_image_pipeline_execution()
        .image_pipeline_arn(&seeded.pipeline_arn)
        .send()
        .await
        .unwrap()
        .image_build_version_arn
        .unwrap();
    let image = client
        .get_image()
        .image_build_version_arn(&later)
        .send()
        .await
        .unwrap();
    assert_ne!(
        image.image().unwrap().date_created(),
        Some("2026-12-09T06:00:00.000Z"),
        "real time again"
    );
}

/// What botocore's model and the API Reference refuse, the emulator refuses, naming the member;
/// what AWS accepts (`2021.01.01`), it accepts.
#[tokio::test]
async fn requests_are_refused_as_the_model_and_the_api_reference_refuse_them() {
    let (emulator, client) = emulator_and_client().await;
    let dated = create_component(&client, "2021.01.01").await;
    assert!(dated.ends_with("/prepull-cache/2021.01.01/1"), "{dated}");
    let got = client
        .get_component()
        .component_build_version_arn(&dated)
        .send()
        .await
        .unwrap();
    assert_eq!(
        got.component().and_then(|c| c.tags()).map(|t| t.len()),
        Some(0),
        "an untagged resource comes back with \"tags\": {{}}"
    );

    let base = || {
        client
            .create_component()
            .name("prepull-cache")
            .semantic_version("1.0.0")
            .platform(Platform::Windows)
            .data(EMPTY_CACHE_DOCUMENT)
    };
    let refused = [
        (
            "clientToken",
            base().client_token("t".repeat(37)).send().await,
        ),
        (
            "tags",
            base()
                .set_tags(Some(std::collections::HashMap::new()))
                .send()
                .await,
        ),
        (
            "tags",
            base()
                .set_tags(Some(
                    (0..51).map(|n| (format!("k{n}"), "v".to_owned())).collect(),
                ))
                .send()
                .await,
        ),
        (
            "description",
            base().description("d".repeat(1025)).send().await,
        ),
        ("tags.key", base().tags("aws:reserved", "x").send().await),
    ];
    for (member, result) in refused {
        let error = result.unwrap_err().into_service_error();
        assert!(error.is_invalid_request_exception(), "{member}: {error:?}");
        let message = error.meta().message().unwrap_or_default().to_owned();
        assert!(
            message.contains(&format!("'{member}'")),
            "{member}: {message}"
        );
    }
    let accepted = base().client_token("t".repeat(36)).send().await;
    assert!(accepted.is_ok(), "36 characters is the limit: {accepted:?}");

    for selector in ["x.2.x", "1.x.8"] {
        let error = client
            .get_component()
            .component_build_version_arn(format!("{COMPONENT_PREFIX}/{selector}"))
            .send()
            .await
            .unwrap_err()
            .into_service_error();
        assert!(
            error.is_invalid_request_exception(),
            "{selector} selects nothing: {error:?}"
        );
    }
    let refusals: Vec<(String, Option<String>)> = emulator
        .requests()
        .into_iter()
        .filter(|r| !r.succeeded())
        .map(|r| (r.operation, r.error_code))
        .collect();
    assert_eq!(refusals.len(), 7, "{refusals:?}");
}

/// The second writer of a component version gets build `/2` (Image Builder since November
/// 2025), or, with the knob, `ResourceInUseException` as before.
#[tokio::test]
async fn a_second_writer_gets_the_next_build_or_resource_in_use() {
    let (emulator, client) = emulator_and_client().await;
    let create = |data: &str| {
        client
            .create_component()
            .name("prepull-cache")
            .semantic_version("1.0.0")
            .platform(Platform::Windows)
            .data(data)
            .send()
    };
    let first = create(EMPTY_CACHE_DOCUMENT).await.unwrap();
    assert!(
        first
            .component_build_version_arn()
            .unwrap()
            .ends_with("/1.0.0/1")
    );
    let second = create(&EMPTY_CACHE_DOCUMENT.replace("no images", "second"))
        .await
        .unwrap();
    assert!(
        second
            .component_build_version_arn()
            .unwrap()
            .ends_with("/1.0.0/2")
    );

    emulator.set_component_second_writer(
        prepull_bench::emulator::imagebuilder::SecondWriter::ResourceInUse,
    );
    let refused = create(&EMPTY_CACHE_DOCUMENT.replace("no images", "third"))
        .await
        .unwrap_err()
        .into_service_error();
    assert!(refused.is_resource_in_use_exception(), "{refused:?}");
}

/// Eventual consistency: a new component build stays out of ListComponentBuildVersions,
/// GetComponent and a wildcard's resolution for the read lag, and a new image out of
/// ListImagePipelineImages for the image list lag.
#[tokio::test]
async fn new_resources_appear_after_the_read_lags() {
    let (emulator, client) = emulator_and_client().await;
    let first = create_component(&client, "1.0.0").await;
    emulator.set_component_read_lag(std::time::Duration::from_millis(400));
    tokio::time::sleep(std::time::Duration::from_millis(450)).await;
    let second = create_component(&client, "1.0.1").await;
    let resolve = || async {
        client
            .get_component()
            .component_build_version_arn(format!("{COMPONENT_PREFIX}/x.x.x"))
            .send()
            .await
            .unwrap()
            .component()
            .and_then(|c| c.arn())
            .map(str::to_owned)
    };
    assert_eq!(resolve().await.as_deref(), Some(first.as_str()), "not yet");
    let listed = client
        .list_component_build_versions()
        .component_version_arn(format!("{COMPONENT_PREFIX}/1.0.1"))
        .send()
        .await
        .unwrap();
    assert!(listed.component_summary_list().is_empty());
    tokio::time::sleep(std::time::Duration::from_millis(450)).await;
    assert_eq!(
        resolve().await.as_deref(),
        Some(second.as_str()),
        "visible now"
    );

    let seeded = seed_pipeline(&client, &PipelineSeed::default())
        .await
        .unwrap();
    emulator.set_image_list_lag(std::time::Duration::from_millis(400));
    let started = client
        .start_image_pipeline_execution()
        .image_pipeline_arn(&seeded.pipeline_arn)
        .client_token("lag-1")
        .send()
        .await
        .unwrap();
    let listed = || async {
        client
            .list_image_pipeline_images()
            .image_pipeline_arn(&seeded.pipeline_arn)
            .send()
            .await
            .unwrap()
            .image_summary_list()
            .len()
    };
    assert_eq!(listed().await, 0, "not listed yet");
    let got = client
        .get_image()
        .image_build_version_arn(started.image_build_version_arn().unwrap())
        .send()
        .await
        .unwrap();
    let used: Vec<&str> = got
        .image()
        .and_then(|i| i.image_recipe())
        .map(|r| r.components().iter().map(|c| c.component_arn()).collect())
        .unwrap_or_default();
    assert!(
        used.iter().all(|arn| !arn.contains("x.x.x")),
        "the image records the builds its wildcards resolved to: {used:?}"
    );
    tokio::time::sleep(std::time::Duration::from_millis(450)).await;
    assert_eq!(listed().await, 1);
}
