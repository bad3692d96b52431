//! The emulated Auto Scaling instance refresh, driven through the real Rust SDK client.

use std::time::Duration;

use aws_sdk_autoscaling::Client;
use aws_sdk_autoscaling::types::{
    DesiredConfiguration, LaunchTemplateSpecification, RefreshPreferences,
    ScaleInProtectedInstances,
};
use prepull_bench::bench::sdk_config_for;
use prepull_bench::emulator::{Emulator, EmulatorConfig};
use serde_json::json;

async fn emulator_with_group(name: &str) -> (Emulator, Client) {
    let emulator = Emulator::start(EmulatorConfig::default())
        .await
        .expect("emulator starts");
    let client = Client::new(&sdk_config_for(&emulator.url(), "us-east-1").await);
    prepull_bench::seed::seed_group(&client, name)
        .await
        .expect("CreateAutoScalingGroup succeeds");
    (emulator, client)
}

fn preferences() -> RefreshPreferences {
    RefreshPreferences::builder()
        .min_healthy_percentage(90)
        .instance_warmup(300)
        .skip_matching(false)
        .checkpoint_percentages(50)
        .checkpoint_percentages(100)
        .scale_in_protected_instances(ScaleInProtectedInstances::Refresh)
        .build()
}

#[tokio::test]
async fn groups_are_created_and_described() {
    let (emulator, client) = emulator_with_group("windows-nodes").await;
    let described = client
        .describe_auto_scaling_groups()
        .auto_scaling_group_names("windows-nodes")
        .send()
        .await
        .unwrap();
    let group = &described.auto_scaling_groups()[0];
    assert_eq!(group.auto_scaling_group_name(), Some("windows-nodes"));
    assert_eq!(
        (group.min_size(), group.max_size(), group.desired_capacity()),
        (Some(1), Some(4), Some(2))
    );
    assert_eq!(group.instances().len(), 2);
    assert_eq!(
        group.launch_template().unwrap().launch_template_name(),
        Some("windows-nodes")
    );
    assert!(
        group
            .auto_scaling_group_arn()
            .unwrap()
            .ends_with(":autoScalingGroupName/windows-nodes")
    );

    let template = aws_sdk_autoscaling::types::LaunchTemplateSpecification::builder()
        .launch_template_name("windows-nodes")
        .build();
    let duplicate = client
        .create_auto_scaling_group()
        .auto_scaling_group_name("windows-nodes")
        .launch_template(template.clone())
        .min_size(0)
        .max_size(1)
        .send()
        .await
        .unwrap_err();
    assert!(duplicate.into_service_error().is_already_exists_fault());
    // No way to launch instances: refused, as AWS refuses it.
    let nothing_to_launch = client
        .create_auto_scaling_group()
        .auto_scaling_group_name("no-template")
        .min_size(0)
        .max_size(1)
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert_eq!(nothing_to_launch.meta().code(), Some("ValidationError"));
    // A template named without a version launches its default version, and says so.
    client
        .create_auto_scaling_group()
        .auto_scaling_group_name("default-version")
        .launch_template(template)
        .min_size(0)
        .max_size(1)
        .send()
        .await
        .unwrap();
    let described = client
        .describe_auto_scaling_groups()
        .auto_scaling_group_names("default-version")
        .send()
        .await
        .unwrap();
    assert_eq!(
        described.auto_scaling_groups()[0]
            .launch_template()
            .and_then(|t| t.version()),
        Some("$Default")
    );
    let none = client
        .describe_auto_scaling_groups()
        .auto_scaling_group_names("other")
        .send()
        .await
        .unwrap();
    assert!(none.auto_scaling_groups().is_empty());
    assert_eq!(
        emulator.requests_of("CreateAutoScalingGroup")[0].params["DesiredCapacity"],
        "2"
    );
}

#[tokio::test]
async fn a_running_refresh_blocks_another_until_cancelled_and_settled() {
    let (emulator, client) = emulator_with_group("windows-nodes").await;
    emulator.set_refresh_cancel_delay(Duration::from_millis(200));
    let first = client
        .start_instance_refresh()
        .auto_scaling_group_name("windows-nodes")
        .preferences(preferences())
        .send()
        .await
        .unwrap();
    let first_id = first.instance_refresh_id().unwrap().to_owned();

    let blocked = client
        .start_instance_refresh()
        .auto_scaling_group_name("windows-nodes")
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(
        blocked.is_instance_refresh_in_progress_fault(),
        "{blocked:?}"
    );

    let refreshes = client
        .describe_instance_refreshes()
        .auto_scaling_group_name("windows-nodes")
        .send()
        .await
        .unwrap();
    let refresh = &refreshes.instance_refreshes()[0];
    assert_eq!(refresh.instance_refresh_id(), Some(first_id.as_str()));
    assert_eq!(
        refresh.status().unwrap().as_str(),
        "Pending",
        "a new refresh starts Pending"
    );
    assert_eq!(
        refresh.start_time().unwrap().subsec_nanos(),
        0,
        "Auto Scaling's times are whole seconds"
    );
    let recorded = refresh.preferences().unwrap();
    assert_eq!(
        (
            recorded.min_healthy_percentage(),
            recorded.instance_warmup(),
            recorded.skip_matching()
        ),
        (Some(90), Some(300), Some(false))
    );
    assert_eq!(recorded.checkpoint_percentages(), [50, 100]);
    assert_eq!(
        recorded.scale_in_protected_instances(),
        Some(&ScaleInProtectedInstances::Refresh)
    );
    assert!(
        refresh.desired_configuration().is_none(),
        "started without a DesiredConfiguration"
    );

    let cancelled = client
        .cancel_instance_refresh()
        .auto_scaling_group_name("windows-nodes")
        .send()
        .await
        .unwrap();
    assert_eq!(cancelled.instance_refresh_id(), Some(first_id.as_str()));
    let status = client
        .describe_instance_refreshes()
        .auto_scaling_group_name("windows-nodes")
        .send()
        .await
        .unwrap();
    assert_eq!(
        status.instance_refreshes()[0].status().unwrap().as_str(),
        "Cancelling"
    );
    let still_blocked = client
        .start_instance_refresh()
        .auto_scaling_group_name("windows-nodes")
        .send()
        .await
        .unwrap_err();
    assert!(
        still_blocked
            .into_service_error()
            .is_instance_refresh_in_progress_fault(),
        "Cancelling still blocks"
    );

    // Waiting out the cancellation the way a handler would: poll until it is no longer active.
    let mut settled = false;
    for _ in 0..100 {
        let status = client
            .describe_instance_refreshes()
            .auto_scaling_group_name("windows-nodes")
            .instance_refresh_ids(&first_id)
            .send()
            .await
            .unwrap();
        if status.instance_refreshes()[0].status().unwrap().as_str() == "Cancelled" {
            settled = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(settled, "the cancellation settles");

    let desired = DesiredConfiguration::builder()
        .launch_template(
            LaunchTemplateSpecification::builder()
                .launch_template_name("windows-nodes")
                .version("7")
                .build(),
        )
        .build();
    let second = client
        .start_instance_refresh()
        .auto_scaling_group_name("windows-nodes")
        .desired_configuration(desired)
        .send()
        .await
        .unwrap();
    let refreshes = client
        .describe_instance_refreshes()
        .auto_scaling_group_name("windows-nodes")
        .send()
        .await
        .unwrap();
    assert_eq!(refreshes.instance_refreshes().len(), 2);
    assert_eq!(
        refreshes.instance_refreshes()[0].instance_refresh_id(),
        second.instance_refresh_id(),
        "newest first"
    );
    let desired = refreshes.instance_refreshes()[0]
        .desired_configuration()
        .unwrap();
    assert_eq!(
        desired.launch_template().unwrap().version(),
        Some("7"),
        "a DesiredConfiguration is recorded when sent"
    );

    let finished = emulator
        .finish_refresh("windows-nodes", "Successful", None)
        .unwrap();
    assert_eq!(finished["Status"], "Successful");
    let nothing = client
        .cancel_instance_refresh()
        .auto_scaling_group_name("windows-nodes")
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert!(
        nothing.is_active_instance_refresh_not_found_fault(),
        "{nothing:?}"
    );

    let starts = emulator.requests_of("StartInstanceRefresh");
    assert_eq!(
        starts[0].params["Preferences"]["MinHealthyPercentage"],
        "90"
    );
    assert_eq!(starts[0].params["Preferences"]["SkipMatching"], "false");
    assert_eq!(starts[0].params.get("DesiredConfiguration"), None);
    let codes: Vec<Option<&str>> = starts.iter().map(|r| r.error_code.as_deref()).collect();
    assert_eq!(
        codes,
        [
            None,
            Some("InstanceRefreshInProgress"),
            Some("InstanceRefreshInProgress"),
            None
        ]
    );
}

#[tokio::test]
async fn refreshes_finish_through_the_control_endpoint_and_unknown_groups_are_refused() {
    let (emulator, client) = emulator_with_group("ecs-windows").await;
    client
        .start_instance_refresh()
        .auto_scaling_group_name("ecs-windows")
        .send()
        .await
        .unwrap();
    let http = reqwest::Client::new();
    let response = http
        .post(format!("{}/_bench/autoscaling/refreshes/finish", emulator.url()))
        .json(&json!({"AutoScalingGroupName": "ecs-windows", "status": "Failed", "reason": "Instances failed health checks"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let refreshes = client
        .describe_instance_refreshes()
        .auto_scaling_group_name("ecs-windows")
        .send()
        .await
        .unwrap();
    let refresh = &refreshes.instance_refreshes()[0];
    assert_eq!(refresh.status().unwrap().as_str(), "Failed");
    assert_eq!(
        refresh.status_reason(),
        Some("Instances failed health checks")
    );
    assert!(refresh.end_time().is_some());

    let unknown = client
        .start_instance_refresh()
        .auto_scaling_group_name("nope")
        .send()
        .await
        .unwrap_err()
        .into_service_error();
    assert_eq!(unknown.meta().code(), Some("ValidationError"));
    assert!(unknown.meta().message().unwrap().contains("nope"));
}

/// Preferences are checked as AWS checks them: each value's range by the service model, and
/// `MaxHealthyPercentage` only beside `MinHealthyPercentage`, at most 100 above it.
#[tokio::test]
async fn refresh_preferences_are_checked_as_aws_checks_them() {
    let (emulator, client) = emulator_with_group("windows-nodes").await;
    let refused = [
        (
            RefreshPreferences::builder()
                .min_healthy_percentage(101)
                .build(),
            "Preferences.MinHealthyPercentage",
        ),
        (
            RefreshPreferences::builder()
                .max_healthy_percentage(150)
                .build(),
            "MaxHealthyPercentage requires MinHealthyPercentage",
        ),
        (
            RefreshPreferences::builder()
                .min_healthy_percentage(90)
                .max_healthy_percentage(200)
                .build(),
            "at most 100 above it",
        ),
        (
            RefreshPreferences::builder()
                .min_healthy_percentage(90)
                .instance_warmup(-1)
                .build(),
            "Preferences.InstanceWarmup",
        ),
    ];
    for (preferences, needle) in refused {
        let error = client
            .start_instance_refresh()
            .auto_scaling_group_name("windows-nodes")
            .preferences(preferences)
            .send()
            .await
            .unwrap_err()
            .into_service_error();
        assert_eq!(error.meta().code(), Some("ValidationError"), "{needle}");
        let message = error.meta().message().unwrap_or_default();
        assert!(message.contains(needle), "{needle}: {message}");
    }
    let accepted = client
        .start_instance_refresh()
        .auto_scaling_group_name("windows-nodes")
        .preferences(
            RefreshPreferences::builder()
                .min_healthy_percentage(90)
                .max_healthy_percentage(190)
                .build(),
        )
        .send()
        .await;
    assert!(accepted.is_ok(), "{accepted:?}");

    emulator.set_refresh_pending_delay(Duration::from_millis(100));
    tokio::time::sleep(Duration::from_millis(150)).await;
    let refreshes = client
        .describe_instance_refreshes()
        .auto_scaling_group_name("windows-nodes")
        .send()
        .await
        .unwrap();
    assert_eq!(
        refreshes.instance_refreshes()[0].status().unwrap().as_str(),
        "InProgress",
        "Pending moves on to InProgress"
    );
}
