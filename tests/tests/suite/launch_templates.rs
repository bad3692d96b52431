//! build-finished checks each group's launch template before it refreshes the group: a
//! refresh must be able to launch the AMI it just published. The templates live in moto's
//! EC2; the groups in the emulated Auto Scaling.

use aws_sdk_autoscaling::types::{
    LaunchTemplate, LaunchTemplateOverrides, LaunchTemplateSpecification, MixedInstancesPolicy,
};
use prepull::build_finished::Outcome;
use prepull::core::launch_template::Misconfiguration;
use prepull::core::parameter::build_label;
use prepull_bench::emulator::{Fault, FaultKind, Service};
use prepull_bench::seed::{
    FLEET_TEMPLATE, ROOT_VOLUME_GIB, seed_group_with_template, seed_launch_template,
};

use super::build_finished::{Fleet, GROUPS, build, fleet, refreshed_groups, run, settings};

const PARAMETER: &str = "/prepull/ami-id";

async fn template_and_group(f: &Fleet, name: &str, image_id: &str, root: Option<i32>) {
    seed_launch_template(&f.s.bench, name, image_id, root)
        .await
        .unwrap();
    seed_group_with_template(&f.autoscaling, name, name)
        .await
        .unwrap();
}

fn kinds(f: &prepull::build_finished::Summary, group: &str) -> Vec<&'static str> {
    let refresh = f.refreshes.iter().find(|r| r.asg == group).unwrap();
    refresh
        .misconfigured
        .iter()
        .map(Misconfiguration::kind)
        .collect()
}

/// Finishes `image` AVAILABLE and runs build-finished on its event, with the log cleared.
async fn publish(f: &Fleet, image: &str) -> prepull::build_finished::Summary {
    let event =
        f.s.bench
            .emulator
            .finish_image(image, "AVAILABLE", None)
            .unwrap();
    f.s.bench.emulator.clear_requests();
    run(f, event).await
}

#[tokio::test]
async fn every_launch_template_that_cannot_take_the_ami_is_reported_and_not_refreshed() {
    let mut f = fleet("replace").await;
    let follows = format!("resolve:ssm:{PARAMETER}");
    template_and_group(&f, "fixed-ami", "ami-0123456789abcdef0", None).await;
    template_and_group(&f, "other-parameter", "resolve:ssm:/team/other-ami", None).await;
    template_and_group(&f, "small-root", &follows, Some(ROOT_VOLUME_GIB - 20)).await;
    template_and_group(&f, "roomy-root", &follows, Some(ROOT_VOLUME_GIB + 50)).await;
    template_and_group(&f, "unlabelled", &format!("{follows}:prod"), None).await;
    // The template is gone: the group still names it.
    seed_group_with_template(&f.autoscaling, "template-gone", "no-such-template")
        .await
        .unwrap();
    f.autoscaling
        .create_auto_scaling_group()
        .auto_scaling_group_name("mixed")
        .mixed_instances_policy(
            MixedInstancesPolicy::builder()
                .launch_template(
                    LaunchTemplate::builder()
                        .launch_template_specification(
                            LaunchTemplateSpecification::builder()
                                .launch_template_name(FLEET_TEMPLATE)
                                .version("$Latest")
                                .build(),
                        )
                        .overrides(
                            LaunchTemplateOverrides::builder()
                                .instance_type("m5.xlarge")
                                .build(),
                        )
                        .overrides(
                            LaunchTemplateOverrides::builder()
                                .instance_type("m6i.xlarge")
                                .build(),
                        )
                        .build(),
                )
                .build(),
        )
        .min_size(1)
        .max_size(2)
        .send()
        .await
        .unwrap();
    let groups = [
        GROUPS[0],
        "fixed-ami",
        "other-parameter",
        "small-root",
        "roomy-root",
        "unlabelled",
        "template-gone",
        "mixed",
    ];
    f.settings = settings(&groups, "replace");
    let image = build(&f, "web 2").await;
    let summary = publish(&f, &image).await;

    assert_eq!(summary.outcome, Outcome::Published);
    let outcomes: Vec<(&str, &str)> = summary
        .refreshes
        .iter()
        .map(|r| (r.asg.as_str(), r.outcome.as_str()))
        .collect();
    assert_eq!(
        outcomes,
        [
            (GROUPS[0], "started"),
            ("fixed-ami", "misconfigured"),
            ("other-parameter", "misconfigured"),
            ("small-root", "misconfigured"),
            ("roomy-root", "started"),
            ("unlabelled", "misconfigured"),
            ("template-gone", "misconfigured"),
            ("mixed", "misconfigured"),
        ]
    );
    assert_eq!(kinds(&summary, "fixed-ami"), ["image-not-from-parameter"]);
    assert_eq!(kinds(&summary, "other-parameter"), ["other-parameter"]);
    assert_eq!(kinds(&summary, "small-root"), ["root-volume-too-small"]);
    assert_eq!(kinds(&summary, "unlabelled"), ["pinned-elsewhere"]);
    assert_eq!(
        kinds(&summary, "template-gone"),
        ["launch-template-not-found"]
    );
    assert_eq!(kinds(&summary, "mixed"), ["mixed-instances-policy"]);
    let small = &summary.refreshes[3].misconfigured[0];
    assert!(
        small.to_string().contains("80 GiB") && small.to_string().contains("100 GiB"),
        "{small}"
    );

    // Only the groups that can take the AMI were refreshed; nothing else changed anywhere.
    assert_eq!(refreshed_groups(&f), [GROUPS[0], "roomy-root"]);
    let mutating: Vec<String> =
        f.s.bench
            .emulator
            .mutating_operations()
            .into_iter()
            .filter(|op| op != "PutParameter" && op != "LabelParameterVersion")
            .collect();
    assert_eq!(mutating, ["StartInstanceRefresh", "StartInstanceRefresh"]);
    // One DescribeAutoScalingGroups for all groups; one template read per group that has one
    // (not the mixed, the missing-group or the gone-template's read after its NotFound).
    assert_eq!(
        f.s.bench
            .emulator
            .requests_of("DescribeAutoScalingGroups")
            .len(),
        1
    );
    let reads =
        f.s.bench
            .emulator
            .requests_of("DescribeLaunchTemplateVersions");
    assert_eq!(reads.len(), 7, "{reads:#?}");
    assert!(reads.iter().all(|r| r.service == Service::Ec2));
    // The JSON summary an operator reads.
    let json = serde_json::to_value(&summary).unwrap();
    assert_eq!(
        json["refreshes"][7]["misconfigured"][0]["problem"],
        "mixed-instances-policy"
    );
    assert!(json["refreshes"][0].get("misconfigured").is_none());
}

#[tokio::test]
async fn a_template_pinned_to_the_builds_own_label_follows_it() {
    let mut f = fleet("replace").await;
    let image = build(&f, "web 2").await;
    let label = build_label(&image);
    template_and_group(
        &f,
        "pinned",
        &format!("resolve:ssm:{PARAMETER}:{label}"),
        None,
    )
    .await;
    template_and_group(
        &f,
        "pinned-v99",
        &format!("resolve:ssm:{PARAMETER}:99"),
        None,
    )
    .await;
    f.settings = settings(&["pinned", "pinned-v99"], "replace");
    let summary = publish(&f, &image).await;
    assert_eq!(summary.refreshes[0].outcome, "started");
    assert_eq!(summary.refreshes[1].outcome, "misconfigured");
    assert_eq!(
        summary.refreshes[1].misconfigured[0].to_string(),
        format!(
            "the launch template reads the parameter at \"99\", which holds nothing, not the AMI just published"
        )
    );
    // The label was read once, after the publish had put it on the AMI's version.
    let label_reads =
        f.s.bench
            .emulator
            .requests_of("GetParameter")
            .into_iter()
            .filter(|r| r.params["Name"] == format!("{PARAMETER}:{label}"))
            .count();
    assert!(label_reads >= 1);
    assert_eq!(refreshed_groups(&f), ["pinned"]);
}

#[tokio::test]
async fn a_throttled_template_read_is_retried_and_an_exhausted_one_retries_the_invocation() {
    let f = fleet("replace").await;
    // Two throttles: the SDK's standard retry (three attempts) gets through.
    let image = build(&f, "web 2").await;
    f.s.bench.emulator.inject(Fault {
        service: Some(Service::Ec2),
        ..Fault::new("DescribeLaunchTemplateVersions", FaultKind::Throttle, 2)
    });
    let summary = publish(&f, &image).await;
    assert!(
        summary.refreshes.iter().all(|r| r.outcome == "started"),
        "{:?}",
        summary.refreshes
    );
    let throttled =
        f.s.bench
            .emulator
            .requests_of("DescribeLaunchTemplateVersions")
            .iter()
            .filter(|r| r.error_code.as_deref() == Some("RequestLimitExceeded"))
            .count();
    assert_eq!(throttled, 2);

    // EC2 keeps failing with 5xx: no group is refreshed, and the invocation fails so Lambda
    // retries it (the parameter write is already done and is not repeated). The refreshes
    // above started in an earlier second than this publish (Auto Scaling's precision).
    prepull_bench::bench::until_next_second().await;
    let image = build(&f, "web 3").await;
    f.s.bench.emulator.inject(Fault {
        service: Some(Service::Ec2),
        ..Fault::new(
            "DescribeLaunchTemplateVersions",
            FaultKind::ServerError,
            100,
        )
    });
    let event =
        f.s.bench
            .emulator
            .finish_image(&image, "AVAILABLE", None)
            .unwrap();
    f.s.bench.emulator.clear_requests();
    let error = prepull::build_finished::handle(
        &f.s.common,
        &f.settings,
        event.clone(),
        std::time::Instant::now() + std::time::Duration::from_secs(20),
    )
    .await
    .unwrap_err();
    assert!(error.is_retryable(), "{error}");
    assert!(
        error.to_string().contains("DescribeLaunchTemplateVersions"),
        "{error}"
    );
    assert!(refreshed_groups(&f).is_empty());
    f.s.bench.emulator.clear_faults();
    f.s.bench.emulator.clear_requests();
    let summary = run(&f, event).await;
    assert_eq!(summary.outcome, Outcome::AlreadyPublished);
    assert!(
        summary.refreshes.iter().all(|r| r.outcome == "replaced"),
        "{:?}",
        summary.refreshes
    );
    assert!(f.s.bench.emulator.requests_of("PutParameter").is_empty());
}
