//! build-finished end to end on the bench: Image Builder and Auto Scaling emulated, SSM in
//! two regions in moto. Every test asserts the request log.

use std::time::{Duration, Instant};

use prepull::build_finished::{FleetSettings, Outcome, Summary, handle};
use prepull::core::build::BuildOutcome;
use prepull::core::launch_template::Misconfiguration;
use prepull::core::parameter::ParameterAction;
use prepull::core::refresh::RefreshResult;
use prepull_bench::emulator::{Fault, FaultKind, Service};
use prepull_bench::scenario::{Scenario, push_event, sqs_batch};
use prepull_bench::seed::PipelineSeed;
use serde_json::{Value, json};

pub(super) const GROUPS: [&str; 2] = ["eks-windows-a", "eks-windows-b"];

pub(super) struct Fleet {
    pub(super) s: Scenario,
    pub(super) settings: FleetSettings,
    pub(super) autoscaling: aws_sdk_autoscaling::Client,
}

pub(super) fn settings(groups: &[&str], in_progress: &str) -> FleetSettings {
    let names = groups.join(",");
    let mut settings = FleetSettings::from_lookup(|name| match name {
        "PREPULL_ASG_NAMES" => Some(names.clone()),
        "PREPULL_REFRESH_IN_PROGRESS" => Some(in_progress.to_owned()),
        "PREPULL_REFRESH_SCALE_IN_PROTECTED" => Some("Refresh".to_owned()),
        _ => None,
    })
    .unwrap();
    settings.poll_interval = Duration::from_millis(50);
    settings.confirm_timeout = Duration::from_millis(600);
    settings.confirm_interval = Duration::from_millis(50);
    settings
}

pub(super) async fn fleet(in_progress: &str) -> Fleet {
    fleet_in(in_progress, &["us-east-1", "eu-west-1"]).await
}

async fn fleet_in(in_progress: &str, regions: &[&str]) -> Fleet {
    let seed = PipelineSeed {
        regions: regions.iter().map(|r| (*r).to_owned()).collect(),
        ..PipelineSeed::default()
    };
    let s = Scenario::start(&["team/web:v42"], seed, &[]).await.unwrap();
    let autoscaling = aws_sdk_autoscaling::Client::new(&s.bench.sdk_config().await);
    prepull_bench::seed::seed_fleet_template(&s.bench, "/prepull/ami-id")
        .await
        .unwrap();
    for group in GROUPS {
        prepull_bench::seed::seed_group(&autoscaling, group)
            .await
            .unwrap();
    }
    s.bench
        .emulator
        .set_refresh_cancel_delay(Duration::from_millis(200));
    s.bench.emulator.clear_requests();
    Fleet {
        s,
        settings: settings(&GROUPS, in_progress),
        autoscaling,
    }
}

/// A push builds an image (through image-pushed); returns its ARN, still BUILDING.
pub(super) async fn build(f: &Fleet, content: &str) -> String {
    let digest = f.s.push("team/web", "v42", content).await.unwrap();
    let time = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let summary = prepull::image_pushed::handle(
        &f.s.common,
        sqs_batch(&[push_event(
            &content.replace(' ', "-"),
            "team/web",
            "v42",
            &digest,
            &time,
        )]),
    )
    .await
    .unwrap();
    summary.image_build_version_arn.unwrap().to_string()
}

pub(super) async fn finished(f: &Fleet, content: &str, status: &str) -> (String, Value) {
    let image = build(f, content).await;
    let event =
        f.s.bench
            .emulator
            .finish_image(
                &image,
                status,
                (status == "FAILED").then_some("AWSTOE step PullCachedImages failed"),
            )
            .unwrap();
    f.s.bench.emulator.clear_requests();
    (image, event)
}

/// The groups StartInstanceRefresh was called for, in order.
pub(super) fn refreshed_groups(f: &Fleet) -> Vec<String> {
    f.s.bench
        .emulator
        .requests_of("StartInstanceRefresh")
        .iter()
        .map(|r| {
            r.params["AutoScalingGroupName"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect()
}

pub(super) async fn run(f: &Fleet, input: Value) -> Summary {
    handle(
        &f.s.common,
        &f.settings,
        input,
        Instant::now() + Duration::from_secs(20),
    )
    .await
    .expect("the run succeeds")
}

async fn parameter_in(f: &Fleet, region: &str) -> aws_sdk_ssm::types::Parameter {
    let config = aws_sdk_ssm::config::Builder::from(&f.s.bench.sdk_config().await)
        .region(aws_config::Region::new(region.to_owned()))
        .build();
    aws_sdk_ssm::Client::from_conf(config)
        .get_parameter()
        .name("/prepull/ami-id")
        .send()
        .await
        .unwrap()
        .parameter
        .unwrap()
}

async fn refreshes(f: &Fleet, group: &str) -> Vec<aws_sdk_autoscaling::types::InstanceRefresh> {
    f.autoscaling
        .describe_instance_refreshes()
        .auto_scaling_group_name(group)
        .send()
        .await
        .unwrap()
        .instance_refreshes()
        .to_vec()
}

fn mutating(f: &Fleet) -> Vec<String> {
    f.s.bench.emulator.mutating_operations()
}

/// Ends every group's refresh, as the fleet would once it rolled the AMI out.
/// Ends every group's refresh, as the fleet would once it rolled the AMI out, then waits for
/// the next whole second (see `prepull_bench::bench::until_next_second`).
pub(super) async fn refreshes_succeed(f: &Fleet) {
    for group in GROUPS {
        f.s.bench
            .emulator
            .finish_refresh(group, "Successful", None)
            .unwrap();
    }
    let into_second = chrono::Utc::now().timestamp_subsec_millis();
    tokio::time::sleep(Duration::from_millis(u64::from(
        1000 - into_second.min(999),
    )))
    .await;
}

/// A build made and published; returns build-finished's summary.
pub(super) async fn published(f: &Fleet, content: &str) -> Summary {
    let (_, event) = finished(f, content, "AVAILABLE").await;
    let summary = run(f, event).await;
    refreshes_succeed(f).await;
    summary
}

/// Each region's parameter action, in the order they were taken.
fn actions(summary: &Summary) -> Vec<(&str, &str)> {
    summary
        .parameters
        .iter()
        .map(|p| (p.region.as_str(), p.action.as_str()))
        .collect()
}

/// Each group's refresh outcome, in the configured order.
fn refresh_outcomes(summary: &Summary) -> Vec<&str> {
    summary
        .refreshes
        .iter()
        .map(|r| r.outcome.as_str())
        .collect()
}

fn assert_already_rolled_back(summary: &Summary) {
    assert!(
        summary
            .reason
            .as_deref()
            .is_some_and(|r| r.starts_with("already rolled back")),
        "{:?}",
        summary.reason
    );
}

fn ami_in<'a>(summary: &'a Summary, region: &str) -> &'a str {
    summary
        .parameters
        .iter()
        .find(|p| p.region == region)
        .map(|p| p.ami.as_str())
        .unwrap()
}

#[tokio::test]
async fn an_available_build_is_published_in_every_region_and_refreshes_every_group() {
    let f = fleet("replace").await;
    let (image, event) = finished(&f, "web 2", "AVAILABLE").await;
    let summary = run(&f, event).await;
    assert_eq!(summary.outcome, Outcome::Published);
    let regions = actions(&summary);
    assert_eq!(
        regions,
        [("us-east-1", "written"), ("eu-west-1", "written")]
    );
    for update in &summary.parameters {
        let parameter = parameter_in(&f, &update.region).await;
        assert_eq!(parameter.value(), Some(update.ami.as_str()));
        assert_eq!(parameter.data_type(), Some("aws:ec2:image"));
    }
    assert_ne!(
        summary.parameters[0].ami, summary.parameters[1].ami,
        "one AMI per region"
    );
    let labels: Vec<String> =
        f.s.bench
            .emulator
            .requests_of("LabelParameterVersion")
            .iter()
            .map(|r| r.params["Labels"][0].as_str().unwrap().to_owned())
            .collect();
    let expected = prepull::build_finished::build_label(&image);
    assert_eq!(labels, [expected.clone(), expected]);

    assert_eq!(refresh_outcomes(&summary), ["started", "started"]);
    for group in GROUPS {
        let refresh = &refreshes(&f, group).await[0];
        assert!(
            refresh.desired_configuration().is_none(),
            "the launch template resolves resolve:ssm: itself"
        );
        let preferences = refresh.preferences().unwrap();
        assert_eq!(
            (
                preferences.min_healthy_percentage(),
                preferences.instance_warmup(),
                preferences.skip_matching()
            ),
            (Some(90), Some(300), Some(false))
        );
        assert_eq!(
            preferences
                .scale_in_protected_instances()
                .map(|p| p.as_str()),
            Some("Refresh")
        );
    }
    assert_eq!(summary.follow_up, Some(BuildOutcome::NotNeeded));
    let mut written: Vec<String> =
        f.s.bench
            .emulator
            .requests_of("PutParameter")
            .iter()
            .map(|r| r.params["Value"].as_str().unwrap().to_owned())
            .collect();
    written.sort();
    let mut amis: Vec<String> = summary.parameters.iter().map(|p| p.ami.clone()).collect();
    amis.sort();
    assert_eq!(
        written, amis,
        "one PutParameter per region, each writing that region's AMI"
    );
}

#[tokio::test]
async fn the_same_event_twice_makes_no_second_version_and_no_second_refresh() {
    let f = fleet("replace").await;
    let (_, event) = finished(&f, "web 2", "AVAILABLE").await;
    run(&f, event.clone()).await;
    let version = parameter_in(&f, "us-east-1").await.version();
    f.s.bench.emulator.clear_requests();

    let again_event = event.clone();
    let again = run(&f, event).await;
    assert_eq!(again.outcome, Outcome::AlreadyPublished);
    assert_eq!(
        refresh_outcomes(&again),
        ["already-rolling-out", "already-rolling-out"],
        "our own refresh is never cancelled"
    );
    assert!(mutating(&f).is_empty(), "{:?}", mutating(&f));
    assert_eq!(parameter_in(&f, "us-east-1").await.version(), version);
    assert_eq!(refreshes(&f, GROUPS[0]).await.len(), 1);

    // Redelivered after the rollout finished: still nothing to do.
    for group in GROUPS {
        f.s.bench
            .emulator
            .finish_refresh(group, "Successful", None)
            .unwrap();
    }
    f.s.bench.emulator.clear_requests();
    let late = run(&f, again_event).await;
    assert_eq!(
        late.refreshes.iter().map(|r| r.outcome).collect::<Vec<_>>(),
        ["already-rolled-out", "already-rolled-out"]
    );
    assert!(mutating(&f).is_empty());
}

#[tokio::test]
async fn a_late_event_for_a_replaced_build_publishes_nothing() {
    let f = fleet("replace").await;
    let (_, older) = finished(&f, "web 2", "AVAILABLE").await;
    run(&f, older.clone()).await;
    let (_, newer) = finished(&f, "web 3", "AVAILABLE").await;
    let newest = run(&f, newer).await;
    f.s.bench.emulator.clear_requests();
    let late = run(&f, older).await;
    assert_eq!(
        late.outcome,
        Outcome::Superseded,
        "a newer build is AVAILABLE"
    );
    assert!(late.parameters.is_empty());
    assert!(late.refreshes.is_empty());
    assert!(mutating(&f).is_empty(), "{:?}", mutating(&f));
    assert_eq!(
        parameter_in(&f, "us-east-1").await.value(),
        Some(newest.parameters[0].ami.as_str())
    );
}

#[tokio::test]
async fn a_foreign_refresh_is_replaced_or_skipped_as_configured() {
    for mode in ["replace", "skip"] {
        let f = fleet(mode).await;
        let (_, event) = finished(&f, "web 2", "AVAILABLE").await;
        let foreign = f
            .autoscaling
            .start_instance_refresh()
            .auto_scaling_group_name(GROUPS[0])
            .send()
            .await
            .unwrap()
            .instance_refresh_id
            .unwrap();
        // The foreign refresh began before the parameter took the new AMI.
        tokio::time::sleep(Duration::from_millis(1100)).await;
        f.s.bench.emulator.clear_requests();
        let summary = run(&f, event).await;
        let first = &summary.refreshes[0];
        let refreshes = refreshes(&f, GROUPS[0]).await;
        if mode == "replace" {
            assert_eq!(
                (first.outcome, first.cancelled_refresh_id.as_deref()),
                (RefreshResult::Replaced, Some(foreign.as_str()))
            );
            assert_eq!(refreshes.len(), 2);
            assert_eq!(refreshes[1].status().unwrap().as_str(), "Cancelled");
            assert_eq!(
                refreshes[0].instance_refresh_id(),
                first.refresh_id.as_deref()
            );
            let starts: Vec<Option<String>> =
                f.s.bench
                    .emulator
                    .requests_of("StartInstanceRefresh")
                    .into_iter()
                    .filter(|r| r.params["AutoScalingGroupName"] == GROUPS[0])
                    .map(|r| r.error_code)
                    .collect();
            assert!(
                starts.len() >= 2
                    && starts[..starts.len() - 1]
                        .iter()
                        .all(|c| c.as_deref() == Some("InstanceRefreshInProgress")),
                "waited out the cancellation: {starts:?}"
            );
        } else {
            assert_eq!(
                (first.outcome, first.refresh_id.as_deref()),
                (
                    RefreshResult::SkippedRefreshInProgress,
                    Some(foreign.as_str())
                )
            );
            assert_eq!(refreshes.len(), 1);
            assert!(
                f.s.bench
                    .emulator
                    .requests_of("CancelInstanceRefresh")
                    .is_empty()
            );
        }
        assert_eq!(
            summary.refreshes[1].outcome, "started",
            "the other group is refreshed either way"
        );
    }
}

#[tokio::test]
async fn a_refresh_that_began_after_the_parameter_update_is_never_cancelled() {
    let f = fleet("replace").await;
    let (_, event) = finished(&f, "web 2", "AVAILABLE").await;
    run(&f, event.clone()).await;
    // Someone else restarts a refresh on the new AMI; a redelivered event must leave it be.
    f.s.bench
        .emulator
        .finish_refresh(GROUPS[0], "Successful", None)
        .unwrap();
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let theirs = f
        .autoscaling
        .start_instance_refresh()
        .auto_scaling_group_name(GROUPS[0])
        .send()
        .await
        .unwrap()
        .instance_refresh_id
        .unwrap();
    f.s.bench.emulator.clear_requests();
    let summary = run(&f, event).await;
    assert_eq!(
        (
            summary.refreshes[0].outcome,
            summary.refreshes[0].refresh_id.as_deref()
        ),
        (RefreshResult::AlreadyRollingOut, Some(theirs.as_str()))
    );
    assert!(
        f.s.bench
            .emulator
            .requests_of("CancelInstanceRefresh")
            .is_empty()
    );
    assert!(mutating(&f).is_empty());
}

#[tokio::test]
async fn failed_and_cancelled_builds_publish_nothing_and_say_why() {
    let f = fleet("replace").await;
    let (_, event) = finished(&f, "web 2", "FAILED").await;
    let summary = run(&f, event).await;
    assert_eq!(summary.outcome, Outcome::BuildFailed);
    assert!(
        summary
            .reason
            .as_deref()
            .unwrap()
            .contains("PullCachedImages")
    );
    assert!(summary.parameters.is_empty() && summary.refreshes.is_empty());
    assert!(mutating(&f).is_empty());

    let image = build(&f, "web 3").await;
    f.s.imagebuilder
        .cancel_image_creation()
        .image_build_version_arn(&image)
        .send()
        .await
        .unwrap();
    let event = f.s.bench.emulator.image_events().last().unwrap().clone();
    f.s.bench.emulator.clear_requests();
    let summary = run(&f, event).await;
    assert_eq!(summary.outcome, Outcome::BuildFailed);
    assert!(summary.reason.as_deref().unwrap().starts_with("CANCELLED"));
    assert!(mutating(&f).is_empty());
}

#[tokio::test]
async fn images_of_other_pipelines_and_unfinished_states_are_ignored() {
    let f = fleet("replace").await;
    let building = prepull_bench::fixtures::load("imagebuilder-building.json").unwrap();
    let summary = run(&f, building).await;
    assert_eq!(summary.outcome, Outcome::Ignored);
    assert!(
        f.s.bench.emulator.requests().is_empty(),
        "a non-terminal state needs no call at all"
    );

    // Another pipeline in the same account.
    let other = prepull_bench::seed::seed_pipeline(
        &f.s.imagebuilder,
        &PipelineSeed {
            name: "someone-else".to_owned(),
            component_name: "other-cache".to_owned(),
            ..PipelineSeed::default()
        },
    )
    .await
    .unwrap();
    let image =
        f.s.imagebuilder
            .start_image_pipeline_execution()
            .image_pipeline_arn(&other.pipeline_arn)
            .send()
            .await
            .unwrap()
            .image_build_version_arn
            .unwrap();
    let event =
        f.s.bench
            .emulator
            .finish_image(&image, "AVAILABLE", None)
            .unwrap();
    f.s.bench.emulator.clear_requests();
    let summary = run(&f, event).await;
    assert_eq!(summary.outcome, Outcome::Ignored);
    assert!(mutating(&f).is_empty());
}

#[tokio::test]
async fn a_manifest_that_moved_during_the_build_gets_exactly_one_follow_up() {
    let f = fleet("replace").await;
    let first = build(&f, "web 2").await;
    // Two more pushes while it builds: each makes a version, neither a build.
    build(&f, "web 3").await;
    build(&f, "web 4").await;
    let event =
        f.s.bench
            .emulator
            .finish_image(&first, "AVAILABLE", None)
            .unwrap();
    f.s.bench.emulator.clear_requests();
    let summary = run(&f, event.clone()).await;
    let Some(BuildOutcome::Started(follow_up_arn)) = summary.follow_up.clone() else {
        panic!("{:?}", summary.follow_up)
    };
    let starts =
        f.s.bench
            .emulator
            .requests_of("StartImagePipelineExecution");
    assert_eq!(starts.len(), 1);
    assert_eq!(
        starts[0].params["tags"]["prepull:component-version"], "1.0.3",
        "latest wins"
    );
    assert_eq!(starts[0].params["tags"]["prepull:trigger"], "follow-up");

    f.s.bench.emulator.clear_requests();
    let again = run(&f, event.clone()).await;
    assert_eq!(
        again.follow_up,
        Some(BuildOutcome::Queued {
            running: follow_up_arn.clone(),
            same_manifest: true
        }),
        "a duplicate event starts no second follow-up"
    );
    assert!(
        f.s.bench
            .emulator
            .requests_of("StartImagePipelineExecution")
            .is_empty()
    );

    // The follow-up fails; one more copy of the first event repeats the follow-up request,
    // and Image Builder returns the failed build: reported as such, not as started.
    f.s.bench
        .emulator
        .finish_image(&follow_up_arn, "FAILED", Some("update-windows failed"))
        .unwrap();
    let late = run(&f, event).await;
    assert_eq!(
        late.follow_up.map(|f| f.to_string()),
        Some(format!("already-attempted {follow_up_arn} (FAILED)"))
    );
}

#[tokio::test]
async fn a_failed_publish_still_checks_the_follow_up_and_the_retry_finishes_both() {
    let f = fleet("replace").await;
    let first = build(&f, "web 2").await;
    // A push while it builds: the follow-up is due when it ends.
    build(&f, "web 3").await;
    let event =
        f.s.bench
            .emulator
            .finish_image(&first, "AVAILABLE", None)
            .unwrap();
    // Every region's write fails past the SDK's retries.
    f.s.bench.emulator.inject(Fault {
        service: Some(Service::Ssm),
        ..Fault::new("PutParameter", FaultKind::ServerError, 100)
    });
    f.s.bench.emulator.clear_requests();
    let error = handle(
        &f.s.common,
        &f.settings,
        event.clone(),
        Instant::now() + Duration::from_secs(20),
    )
    .await
    .expect_err("the publish fails");
    // The publish's error is the one reported, so Lambda retries; the follow-up, which runs
    // beside the publish, started its build all the same, and no group was refreshed.
    assert!(error.is_retryable(), "{error}");
    assert!(error.to_string().contains("PutParameter"), "{error}");
    let starts =
        f.s.bench
            .emulator
            .requests_of("StartImagePipelineExecution");
    assert_eq!(starts.len(), 1);
    assert_eq!(starts[0].params["tags"]["prepull:trigger"], "follow-up");
    assert!(
        f.s.bench
            .emulator
            .requests_of("StartInstanceRefresh")
            .is_empty()
    );

    // Lambda's retry publishes and refreshes, and finds the follow-up already running.
    f.s.bench.emulator.clear_faults();
    f.s.bench.emulator.clear_requests();
    let retried = run(&f, event).await;
    assert_eq!(retried.outcome, Outcome::Published);
    assert_eq!(refresh_outcomes(&retried), ["started", "started"]);
    assert!(
        matches!(retried.follow_up, Some(BuildOutcome::Queued { .. })),
        "{:?}",
        retried.follow_up
    );
    assert!(
        f.s.bench
            .emulator
            .requests_of("StartImagePipelineExecution")
            .is_empty(),
        "one follow-up build, not two"
    );
}

#[tokio::test]
async fn rollback_publishes_the_previous_ami_and_refreshes() {
    let f = fleet("replace").await;
    let error = handle(
        &f.s.common,
        &f.settings,
        json!({"action": "rollback"}),
        Instant::now() + Duration::from_secs(5),
    )
    .await
    .unwrap_err();
    assert!(
        error.to_string().contains("no history") || error.to_string().contains("ParameterNotFound"),
        "{error}"
    );

    let (_, first) = finished(&f, "web 2", "AVAILABLE").await;
    let published = run(&f, first).await;
    let error = handle(
        &f.s.common,
        &f.settings,
        json!({"action": "rollback"}),
        Instant::now() + Duration::from_secs(5),
    )
    .await
    .unwrap_err();
    assert!(error.to_string().contains("cannot roll back"), "{error}");
    refreshes_succeed(&f).await;
    let (_, second) = finished(&f, "web 3", "AVAILABLE").await;
    run(&f, second).await;
    refreshes_succeed(&f).await;
    f.s.bench.emulator.clear_requests();

    let dry = run(&f, json!({"action": "rollback", "dry_run": true})).await;
    assert_eq!(dry.image, published.image);
    assert_eq!(
        actions(&dry),
        [("eu-west-1", "would-write"), ("us-east-1", "would-write")]
    );
    assert_eq!(
        dry.refreshes.iter().map(|r| r.outcome).collect::<Vec<_>>(),
        ["would-start", "would-start"]
    );
    assert!(mutating(&f).is_empty(), "a dry run makes no mutating call");

    let rolled = run(&f, json!({"action": "rollback"})).await;
    assert_eq!(rolled.outcome, Outcome::RolledBack);
    assert_eq!(
        rolled.image, published.image,
        "found through the build label"
    );
    // Every region the first build went to goes back, the home region last.
    assert_eq!(
        actions(&rolled),
        [("eu-west-1", "written"), ("us-east-1", "written")]
    );
    for region in ["us-east-1", "eu-west-1"] {
        let first_ami = published
            .parameters
            .iter()
            .find(|p| p.region == region)
            .map(|p| p.ami.as_str());
        assert_eq!(
            parameter_in(&f, region).await.value(),
            first_ami,
            "{region}"
        );
    }
    assert_eq!(refresh_outcomes(&rolled), ["started", "started"]);
    assert_eq!(
        mutating(&f),
        [
            "PutParameter",
            "LabelParameterVersion",
            "PutParameter",
            "LabelParameterVersion",
            "StartInstanceRefresh",
            "StartInstanceRefresh"
        ]
    );

    // Retried, the rollback finds its own version and changes nothing.
    f.s.bench.emulator.clear_requests();
    let retried = run(&f, json!({"action": "rollback"})).await;
    assert_already_rolled_back(&retried);
    assert_eq!(retried.parameters[0].action, "already-current");
    assert!(mutating(&f).is_empty(), "{:?}", mutating(&f));
}

#[tokio::test]
async fn a_value_no_build_published_is_rolled_back_in_the_home_region_only() {
    let f = fleet("replace").await;
    // The template initialises the parameter with the parent AMI, in the home region.
    let home = aws_sdk_ssm::Client::new(&f.s.bench.sdk_config().await);
    let parent =
        f.s.bench
            .emulator
            .register_ami("us-east-1", "windows-parent")
            .await
            .unwrap();
    home.put_parameter()
        .name("/prepull/ami-id")
        .value(&parent)
        .r#type(aws_sdk_ssm::types::ParameterType::String)
        .data_type("aws:ec2:image")
        .send()
        .await
        .unwrap();
    let (_, event) = finished(&f, "web 2", "AVAILABLE").await;
    let published = run(&f, event).await;
    let eu_ami = published
        .parameters
        .iter()
        .find(|p| p.region == "eu-west-1")
        .map(|p| p.ami.clone())
        .unwrap();
    refreshes_succeed(&f).await;
    f.s.bench.emulator.clear_requests();

    let rolled = run(&f, json!({"action": "rollback"})).await;
    assert_eq!(rolled.outcome, Outcome::RolledBack);
    assert_eq!(rolled.image, None, "no build made the parent AMI");
    assert_eq!(
        rolled
            .parameters
            .iter()
            .map(|p| (p.region.as_str(), p.ami.as_str(), p.action))
            .collect::<Vec<_>>(),
        [("us-east-1", parent.as_str(), ParameterAction::Written)]
    );
    assert_eq!(
        parameter_in(&f, "eu-west-1").await.value(),
        Some(eu_ami.as_str()),
        "a region with no earlier value keeps the one it has"
    );
}

#[tokio::test]
async fn a_second_rollback_finds_the_build_through_its_own_version_and_covers_every_region() {
    let f = fleet("replace").await;
    let a = published(&f, "web 2").await;
    published(&f, "web 3").await;
    let first = run(&f, json!({"action": "rollback"})).await;
    assert_eq!(first.image, a.image);
    refreshes_succeed(&f).await;
    published(&f, "web 4").await;
    f.s.bench.emulator.clear_requests();

    // Back from the newest build to A again: the version holding A now is the first
    // rollback's, which carries only its rollback label; A's build label is on an older one.
    let second = run(&f, json!({"action": "rollback"})).await;
    assert_eq!(second.image, a.image);
    for region in ["us-east-1", "eu-west-1"] {
        assert_eq!(
            parameter_in(&f, region).await.value(),
            Some(ami_in(&a, region)),
            "{region}"
        );
    }
}

#[tokio::test]
async fn a_region_that_cannot_be_written_does_not_keep_the_home_region_from_rolling_back() {
    let f = fleet("replace").await;
    let a = published(&f, "web 2").await;
    let b = published(&f, "web 3").await;
    // eu-west-1 comes first and fails every attempt the SDK makes.
    f.s.bench.emulator.inject(Fault {
        service: Some(Service::Ssm),
        ..Fault::new("PutParameter", FaultKind::ServerError, 3)
    });
    let rolled = run(&f, json!({"action": "rollback"})).await;
    let parameters = actions(&rolled);
    assert_eq!(
        parameters,
        [("eu-west-1", "failed"), ("us-east-1", "written")]
    );
    assert!(
        rolled.parameters[0]
            .error
            .as_deref()
            .is_some_and(|e| e.contains("PutParameter")),
        "{:?}",
        rolled.parameters[0].error
    );
    assert_eq!(
        parameter_in(&f, "us-east-1").await.value(),
        Some(ami_in(&a, "us-east-1"))
    );
    assert_eq!(
        parameter_in(&f, "eu-west-1").await.value(),
        Some(ami_in(&b, "eu-west-1"))
    );
    assert_eq!(
        refresh_outcomes(&rolled),
        ["started", "started"],
        "the fleet launches from the home region"
    );
    refreshes_succeed(&f).await;

    // Run again, the rollback is finished where it failed, and nothing flips back.
    let finished_run = run(&f, json!({"action": "rollback"})).await;
    assert_already_rolled_back(&finished_run);
    assert_eq!(
        parameter_in(&f, "eu-west-1").await.value(),
        Some(ami_in(&a, "eu-west-1"))
    );
    assert_eq!(
        parameter_in(&f, "us-east-1").await.value(),
        Some(ami_in(&a, "us-east-1"))
    );
}

#[tokio::test]
async fn a_rollback_stopped_before_its_label_is_finished_by_the_retry_not_undone() {
    let f = fleet_in("replace", &["us-east-1"]).await;
    let a = published(&f, "web 2").await;
    let b = published(&f, "web 3").await;
    f.s.bench.emulator.inject(Fault {
        service: Some(Service::Ssm),
        ..Fault::new("LabelParameterVersion", FaultKind::ServerError, 3)
    });
    handle(
        &f.s.common,
        &f.settings,
        json!({"action": "rollback"}),
        Instant::now() + Duration::from_secs(20),
    )
    .await
    .expect_err("the label never lands");
    assert_eq!(
        parameter_in(&f, "us-east-1").await.value(),
        Some(ami_in(&a, "us-east-1")),
        "the write itself landed"
    );
    f.s.bench.emulator.clear_requests();

    // Lambda's retry: the unlabelled version is known as the rollback by its description.
    let retried = run(&f, json!({"action": "rollback"})).await;
    assert_already_rolled_back(&retried);
    assert_eq!(
        parameter_in(&f, "us-east-1").await.value(),
        Some(ami_in(&a, "us-east-1")),
        "not flipped forward to {}",
        ami_in(&b, "us-east-1")
    );
    let operations = mutating(&f);
    assert!(
        !operations.iter().any(|o| o == "PutParameter"),
        "{operations:?}"
    );
    assert!(
        operations.iter().any(|o| o == "LabelParameterVersion"),
        "the retry adds the missing label: {operations:?}"
    );
}

#[tokio::test]
async fn a_parameter_at_ssms_hundred_versions_keeps_taking_new_amis() {
    let f = fleet_in("replace", &["us-east-1"]).await;
    let ssm = aws_sdk_ssm::Client::new(&f.s.bench.sdk_config().await);
    // 100 labelled versions, as a hundred earlier builds would leave them.
    let earlier =
        f.s.bench
            .emulator
            .register_ami("us-east-1", "windows-earlier")
            .await
            .unwrap();
    for n in 1..=100 {
        let version = ssm
            .put_parameter()
            .name("/prepull/ami-id")
            .value(&earlier)
            .r#type(aws_sdk_ssm::types::ParameterType::String)
            .data_type("aws:ec2:image")
            .overwrite(true)
            .send()
            .await
            .unwrap()
            .version();
        ssm.label_parameter_version()
            .name("/prepull/ami-id")
            .parameter_version(version)
            .labels(format!("image-prepull-windows-cache-1.0.0-{n}"))
            .send()
            .await
            .unwrap();
    }
    f.s.bench.emulator.clear_requests();

    let summary = published(&f, "web 2").await;
    assert_eq!(summary.outcome, Outcome::Published);
    assert_eq!(summary.parameters[0].action, "written");
    assert_eq!(summary.parameters[0].version, Some(101));
    let operations = mutating(&f);
    let publishing: Vec<&str> = operations
        .iter()
        .map(String::as_str)
        .filter(|o| o.contains("Parameter"))
        .collect();
    assert_eq!(
        publishing,
        [
            "PutParameter",
            "UnlabelParameterVersion",
            "PutParameter",
            "LabelParameterVersion"
        ],
        "refused once, the oldest version's label removed, written"
    );
    let history = ssm
        .get_parameter_history()
        .name("/prepull/ami-id")
        .max_results(50)
        .send()
        .await
        .unwrap();
    assert!(
        history.parameters().iter().all(|p| p.version() > 1),
        "Parameter Store dropped version 1"
    );
}

#[tokio::test]
async fn republish_dry_run_makes_no_mutating_call() {
    let f = fleet("replace").await;
    let (image, _) = finished(&f, "web 2", "AVAILABLE").await;
    let dry = run(
        &f,
        json!({"action": "republish", "image": image, "dry_run": true}),
    )
    .await;
    assert_eq!(dry.outcome, Outcome::Republished);
    assert_eq!(
        dry.parameters.iter().map(|p| p.action).collect::<Vec<_>>(),
        ["would-write", "would-write"]
    );
    assert!(mutating(&f).is_empty());
    let real = run(&f, json!({"action": "republish", "image": image})).await;
    assert_eq!(
        real.parameters.iter().map(|p| p.action).collect::<Vec<_>>(),
        ["written", "written"]
    );
}

/// A build that reached more regions than the one before it: a rollback restores the home
/// region and every region the earlier build reached, and reports the rest.
#[tokio::test]
async fn a_rollback_reports_the_regions_that_keep_the_rolled_back_ami() {
    let f = fleet_in("replace", &["us-east-1"]).await;
    let first = published(&f, "web 1").await;
    let first_ami = ami_in(&first, "us-east-1").to_owned();
    // The pipeline starts distributing to eu-west-1 too.
    let client = &f.s.imagebuilder;
    let wider = client
        .create_distribution_configuration()
        .name("wider-distribution")
        .distributions(
            aws_sdk_imagebuilder::types::Distribution::builder()
                .region("us-east-1")
                .build()
                .unwrap(),
        )
        .distributions(
            aws_sdk_imagebuilder::types::Distribution::builder()
                .region("eu-west-1")
                .build()
                .unwrap(),
        )
        .client_token("wider")
        .send()
        .await
        .unwrap();
    let pipeline = client
        .get_image_pipeline()
        .image_pipeline_arn(&f.s.pipeline.pipeline_arn)
        .send()
        .await
        .unwrap()
        .image_pipeline
        .unwrap();
    client
        .update_image_pipeline()
        .image_pipeline_arn(&f.s.pipeline.pipeline_arn)
        .set_image_recipe_arn(pipeline.image_recipe_arn().map(str::to_owned))
        .set_infrastructure_configuration_arn(
            pipeline
                .infrastructure_configuration_arn()
                .map(str::to_owned),
        )
        .set_distribution_configuration_arn(
            wider.distribution_configuration_arn().map(str::to_owned),
        )
        .client_token("wider")
        .send()
        .await
        .unwrap();
    let second = published(&f, "web 2").await;
    assert_eq!(actions(&second).len(), 2, "{:?}", actions(&second));
    let bad_in_europe = ami_in(&second, "eu-west-1").to_owned();

    let rollback = run(&f, json!({"action": "rollback"})).await;
    assert_eq!(rollback.outcome, Outcome::RolledBack);
    assert_eq!(actions(&rollback), [("us-east-1", "written")]);
    assert_eq!(ami_in(&rollback, "us-east-1"), first_ami);
    let left: Vec<(&str, &str)> = rollback
        .not_rolled_back
        .iter()
        .map(|r| (r.region.as_str(), r.ami.as_str()))
        .collect();
    assert_eq!(left, [("eu-west-1", bad_in_europe.as_str())]);
    assert_eq!(
        parameter_in(&f, "eu-west-1").await.value.unwrap(),
        bad_in_europe,
        "the rollback wrote no region the earlier build never reached"
    );
}

/// SSM allows ten labels on a version ("A version of a parameter can have a maximum of 10
/// labels", LabelParameterVersion): a republish onto a full version publishes all the same.
#[tokio::test]
async fn a_version_at_ssms_ten_labels_is_published_onto_without_exceeding_them() {
    let f = fleet_in("replace", &["us-east-1"]).await;
    let first = published(&f, "web 1").await;
    let image = first.image.clone().unwrap().to_string();
    let label = prepull::build_finished::build_label(&image);
    let ami = parameter_in(&f, "us-east-1").await.value.unwrap();
    // An operator wrote the same AMI again and labelled that version ten times.
    let ssm = aws_sdk_ssm::Client::new(&f.s.bench.sdk_config().await);
    ssm.put_parameter()
        .name("/prepull/ami-id")
        .value(&ami)
        .data_type("aws:ec2:image")
        .r#type(aws_sdk_ssm::types::ParameterType::String)
        .overwrite(true)
        .send()
        .await
        .unwrap();
    let ten: Vec<String> = (1..=10).map(|n| format!("ops-{n}")).collect();
    ssm.label_parameter_version()
        .name("/prepull/ami-id")
        .parameter_version(2)
        .set_labels(Some(ten.clone()))
        .send()
        .await
        .unwrap();
    f.s.bench.emulator.clear_requests();

    let summary = run(&f, json!({"action": "republish", "image": image})).await;
    assert_eq!(summary.outcome, Outcome::Republished);
    let region = &summary.parameters[0];
    assert_eq!(
        (region.action.as_str(), region.version),
        ("already-current", Some(2))
    );
    let note = region.note.as_deref().unwrap();
    assert!(
        note.contains("10 labels") && note.contains("stays on version 1"),
        "{note}"
    );
    assert!(
        !mutating(&f).contains(&"PutParameter".to_owned()),
        "{:?}",
        mutating(&f)
    );
    let history = ssm
        .get_parameter_history()
        .name("/prepull/ami-id")
        .send()
        .await
        .unwrap();
    let labels: Vec<Vec<String>> = history
        .parameters()
        .iter()
        .map(|v| v.labels().to_vec())
        .collect();
    assert_eq!(labels, [vec![label], ten], "nothing exceeds ten labels");
    assert_eq!(refresh_outcomes(&summary), ["started", "started"]);
}

#[tokio::test]
async fn throttling_and_5xx_on_put_parameter_and_start_instance_refresh_are_retried() {
    let f = fleet("replace").await;
    let (_, event) = finished(&f, "web 2", "AVAILABLE").await;
    f.s.bench.emulator.inject(Fault {
        service: Some(Service::Ssm),
        ..Fault::new("PutParameter", FaultKind::Throttle, 1)
    });
    f.s.bench
        .emulator
        .inject(Fault::new("PutParameter", FaultKind::ServerError, 1));
    f.s.bench
        .emulator
        .inject(Fault::new("StartInstanceRefresh", FaultKind::Throttle, 1));
    f.s.bench.emulator.inject(Fault::new(
        "StartInstanceRefresh",
        FaultKind::ServerError,
        1,
    ));
    let summary = run(&f, event).await;
    assert_eq!(summary.outcome, Outcome::Published);
    assert_eq!(refresh_outcomes(&summary), ["started", "started"]);
    let puts: Vec<u16> =
        f.s.bench
            .emulator
            .requests_of("PutParameter")
            .iter()
            .map(|r| r.status)
            .collect();
    assert_eq!(puts, [400, 500, 200, 200]);
    let starts: Vec<u16> =
        f.s.bench
            .emulator
            .requests_of("StartInstanceRefresh")
            .iter()
            .map(|r| r.status)
            .collect();
    assert_eq!(starts, [400, 500, 200, 200]);
}

#[tokio::test]
async fn a_missing_group_is_reported_and_the_others_proceed() {
    let mut f = fleet("replace").await;
    f.settings = settings(&["no-such-group", GROUPS[0]], "replace");
    let (_, event) = finished(&f, "web 2", "AVAILABLE").await;
    let summary = run(&f, event).await;
    // DescribeAutoScalingGroups does not list it: reported, and no refresh call made for it.
    assert_eq!(summary.refreshes[0].outcome, "misconfigured");
    assert_eq!(
        summary.refreshes[0].misconfigured,
        [Misconfiguration::GroupNotFound]
    );
    assert_eq!(summary.refreshes[1].outcome, "started");
    assert_eq!(summary.parameters.len(), 2);
    let refreshed = refreshed_groups(&f);
    assert_eq!(refreshed, [GROUPS[0]]);
}

#[tokio::test]
async fn malformed_and_hostile_events_are_refused_with_no_call() {
    let f = fleet("replace").await;
    let mut hostile = prepull_bench::fixtures::load("imagebuilder-available.json").unwrap();
    hostile["resources"][0] =
        json!("arn:aws:imagebuilder:us-east-1:123456789012:image/x';Remove-Item C:\\/1.0.0/1");
    let mut unknown_status = prepull_bench::fixtures::load("imagebuilder-available.json").unwrap();
    unknown_status["detail"]["state"]["status"] = json!("AVAILABLE\n");
    for input in [
        hostile,
        unknown_status,
        json!({"action": "rollback", "image": "x"}),
        json!("AVAILABLE"),
        json!({"detail": {}}),
    ] {
        let error = handle(
            &f.s.common,
            &f.settings,
            input.clone(),
            Instant::now() + Duration::from_secs(5),
        )
        .await
        .unwrap_err();
        assert!(
            matches!(error, prepull::PrepullError::InvalidInput(_)),
            "{input}: {error}"
        );
        assert!(!error.to_string().contains('\n'));
    }
    assert!(f.s.bench.emulator.requests().is_empty());
}

/// An event or a republish about an image of another account, region or partition is none of
/// this pipeline's business: ignored with the reason (or, from an operator, refused), and it
/// costs no AWS call.
#[tokio::test]
async fn an_image_outside_this_pipelines_home_costs_no_call() {
    let f = fleet("replace").await;
    let (image, event) = finished(&f, "web 2", "AVAILABLE").await;
    f.s.bench.emulator.clear_requests();
    let homes = [
        (
            "us-east-1:123456789012",
            "us-east-1:210987654321",
            "account 210987654321",
        ),
        (
            "us-east-1:123456789012",
            "eu-west-1:123456789012",
            "region eu-west-1",
        ),
        (
            "aws:imagebuilder:us-east-1",
            "aws-cn:imagebuilder:cn-north-1",
            "partition aws-cn",
        ),
    ];
    for (ours, theirs, why) in homes {
        let foreign = image.replace(ours, theirs);
        let mut elsewhere = event.clone();
        elsewhere["resources"][0] = json!(foreign);
        let summary = run(&f, elsewhere).await;
        assert_eq!(summary.outcome, Outcome::Ignored, "{foreign}");
        assert!(
            summary.reason.as_deref().unwrap_or_default().contains(why),
            "{:?}",
            summary.reason
        );
        let error = handle(
            &f.s.common,
            &f.settings,
            json!({"action": "republish", "image": foreign}),
            Instant::now() + Duration::from_secs(30),
        )
        .await
        .unwrap_err();
        assert!(
            matches!(error, prepull::PrepullError::InvalidInput(_))
                && error.to_string().contains(why),
            "{error}"
        );
    }
    assert!(
        f.s.bench.emulator.requests().is_empty(),
        "no AWS call at all"
    );
}

/// Events arrive in any order: the newer build's AVAILABLE first, the older one's later (a
/// retried invocation, a redriven failure). The older build never replaces the newer, whether
/// or not it was ever published; a BUILDING event after AVAILABLE changes nothing.
#[tokio::test]
async fn an_older_build_never_replaces_a_newer_one() {
    let f = fleet("replace").await;
    let (older, older_event) = finished(&f, "web 2", "AVAILABLE").await;
    let (newer, newer_event) = finished(&f, "web 3", "AVAILABLE").await;

    let published = run(&f, newer_event).await;
    assert_eq!(published.outcome, Outcome::Published);
    let newest_ami = ami_in(&published, "us-east-1").to_owned();
    let version = parameter_in(&f, "us-east-1").await.version();

    f.s.bench.emulator.clear_requests();
    let late = run(&f, older_event.clone()).await;
    assert_eq!(late.outcome, Outcome::Superseded);
    assert_eq!(late.image.as_deref(), Some(older.as_str()));
    assert!(
        late.reason.as_deref().unwrap_or_default().contains(&newer),
        "{:?}",
        late.reason
    );
    assert!(late.parameters.is_empty() && late.refreshes.is_empty());
    assert!(
        !mutating(&f)
            .iter()
            .any(|op| op != "StartImagePipelineExecution"),
        "nothing published, no refresh started or cancelled: {:?}",
        mutating(&f)
    );
    let parameter = parameter_in(&f, "us-east-1").await;
    assert_eq!(parameter.value(), Some(newest_ami.as_str()));
    assert_eq!(parameter.version(), version);

    // The same late event again, and a BUILDING event for the newer build after its AVAILABLE.
    assert_eq!(run(&f, older_event).await.outcome, Outcome::Superseded);
    // `previous-state` may be missing, too.
    let mut stale = state_change_event(&newer);
    stale["detail"]["state"]["status"] = json!("BUILDING");
    stale["detail"]
        .as_object_mut()
        .unwrap()
        .remove("previous-state");
    assert_eq!(run(&f, stale).await.outcome, Outcome::Ignored);
    assert_eq!(
        parameter_in(&f, "us-east-1").await.value(),
        Some(newest_ami.as_str())
    );
}

/// An "EC2 Image Builder Image State Change" event for `image`, as EventBridge delivers it.
fn state_change_event(image: &str) -> Value {
    json!({
        "version": "0", "id": "a1b2c3d4-0000-0000-0000-000000000000",
        "detail-type": "EC2 Image Builder Image State Change", "source": "aws.imagebuilder",
        "account": "123456789012", "time": "2026-11-11T09:41:07Z", "region": "us-east-1",
        "resources": [image],
        "detail": {"previous-state": {"status": "INTEGRATING"}, "state": {"status": "AVAILABLE"}},
    })
}

/// A rollback to an AMI EC2 no longer has: Parameter Store answers the write and never writes
/// it. prepull confirms each version before it labels it or refreshes onto it, so the rollback
/// is a reported failure: nothing labelled, no refresh, the parameter still on the newer AMI.
#[tokio::test]
async fn a_rollback_to_a_deregistered_ami_is_a_failure_not_a_rollout() {
    let f = fleet("replace").await;
    let older = published(&f, "web 2").await;
    let newer = published(&f, "web 3").await;
    for update in &older.parameters {
        f.s.bench.emulator.deregister_ami(&update.ami);
    }
    f.s.bench.emulator.clear_requests();

    let error = handle(
        &f.s.common,
        &f.settings,
        json!({"action": "rollback"}),
        Instant::now() + Duration::from_secs(20),
    )
    .await
    .unwrap_err();
    assert_eq!(error.kind(), "prepull.ValueNotAccepted", "{error}");
    assert!(error.to_string().contains("us-east-1"), "{error}");
    let operations = mutating(&f);
    assert_eq!(
        operations,
        ["PutParameter", "PutParameter"],
        "each region's write was tried; nothing labelled, no refresh started or cancelled"
    );
    for update in &newer.parameters {
        assert_eq!(
            parameter_in(&f, &update.region).await.value(),
            Some(update.ami.as_str()),
            "{} still holds the newer AMI",
            update.region
        );
    }
}

/// A distribution with `targetAccountIds` makes one AMI for each region and account, and
/// GetImage lists them all with their `accountId`: prepull publishes this account's in each
/// region, never another account's copy.
#[tokio::test]
async fn only_this_accounts_ami_is_published_when_others_get_copies() {
    let seed = PipelineSeed {
        regions: vec!["us-east-1".to_owned(), "eu-west-1".to_owned()],
        target_accounts: vec!["210987654321".to_owned()],
        ..PipelineSeed::default()
    };
    let s = Scenario::start(&["team/web:v42"], seed, &[]).await.unwrap();
    let f = Fleet {
        settings: settings(&[], "replace"),
        autoscaling: aws_sdk_autoscaling::Client::new(&s.bench.sdk_config().await),
        s,
    };
    let (image, event) = finished(&f, "web 2", "AVAILABLE").await;
    let listed =
        f.s.imagebuilder
            .get_image()
            .image_build_version_arn(&image)
            .send()
            .await
            .unwrap();
    let amis = listed
        .image()
        .and_then(|i| i.output_resources())
        .map(|o| o.amis().to_vec())
        .unwrap();
    assert_eq!(amis.len(), 4, "two regions, two accounts");
    let summary = run(&f, event).await;
    assert_eq!(summary.outcome, Outcome::Published);
    for update in &summary.parameters {
        let ours = amis
            .iter()
            .find(|a| {
                a.region() == Some(update.region.as_str()) && a.account_id() == Some("123456789012")
            })
            .unwrap();
        assert_eq!(Some(update.ami.as_str()), ours.image(), "{}", update.region);
        assert_eq!(parameter_in(&f, &update.region).await.value(), ours.image());
    }
    assert_eq!(summary.parameters.len(), 2);
}

#[tokio::test]
async fn a_follow_up_that_would_pin_a_digest_ecr_lost_is_withheld() {
    let f = fleet("replace").await;
    let running = build(&f, "web 2").await;
    let digest = f.s.push("team/web", "v42", "web 3").await.unwrap();
    let time = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let queued = prepull::image_pushed::handle(
        &f.s.common,
        sqs_batch(&[push_event("web-3", "team/web", "v42", &digest, &time)]),
    )
    .await
    .unwrap();
    assert_eq!(
        queued.outcome,
        prepull::image_pushed::Outcome::QueuedBehindRunningBuild
    );
    // The image is deleted before the running build ends, and its event is lost.
    f.s.ecr
        .batch_delete_image()
        .repository_name("team/web")
        .image_ids(
            aws_sdk_ecr::types::ImageIdentifier::builder()
                .image_digest(&digest)
                .build(),
        )
        .send()
        .await
        .unwrap();
    let event =
        f.s.bench
            .emulator
            .finish_image(&running, "AVAILABLE", None)
            .unwrap();
    f.s.bench.emulator.clear_requests();
    let summary = run(&f, event).await;
    assert_eq!(
        summary.outcome,
        Outcome::Published,
        "the finished build is fine"
    );
    let Some(BuildOutcome::Withheld(why)) = &summary.follow_up else {
        panic!("{:?}", summary.follow_up)
    };
    assert!(
        why.contains("ECR no longer has") && why.contains("team/web:v42"),
        "{why}"
    );
    assert!(
        !mutating(&f).contains(&"StartImagePipelineExecution".to_owned()),
        "{:?}",
        mutating(&f)
    );
}
