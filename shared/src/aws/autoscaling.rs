//! Auto Scaling: a group's recent instance refreshes, and cancelling and starting one.

use aws_sdk_autoscaling::Client;
use aws_sdk_autoscaling::error::SdkError;
use aws_sdk_autoscaling::operation::start_instance_refresh::StartInstanceRefreshError;
use aws_sdk_autoscaling::types::{RefreshPreferences, ScaleInProtectedInstances};
use aws_smithy_runtime_api::http::Response;
use prepull_core::config::FleetSettings;
use prepull_core::launch_template::{GroupLaunch, TemplateRef};
use prepull_core::refresh::{RecentRefresh, UnknownRefreshStatus};

use crate::aws::errors::aws_error;
use crate::aws::ssm::to_chrono;
use crate::error::PrepullError;

/// The group's refreshes, newest first, as `DescribeInstanceRefreshes` lists them.
pub async fn recent_refreshes(
    client: &Client,
    group: &str,
) -> Result<Vec<RecentRefresh>, PrepullError> {
    let response = client
        .describe_instance_refreshes()
        .auto_scaling_group_name(group)
        .send()
        .await
        .map_err(|e| aws_error("DescribeInstanceRefreshes", e))?;
    response
        .instance_refreshes()
        .iter()
        .map(|r| {
            let status = r.status().map_or("", |s| s.as_str());
            Ok(RecentRefresh {
                id: r.instance_refresh_id().unwrap_or_default().to_owned(),
                status: status.parse().map_err(|e: UnknownRefreshStatus| {
                    PrepullError::Unexpected {
                        what: "DescribeInstanceRefreshes",
                        detail: e.to_string(),
                    }
                })?,
                started: r.start_time().and_then(to_chrono),
                percentage_complete: r.percentage_complete(),
            })
        })
        .collect()
}

/// How each group launches instances, from one `DescribeAutoScalingGroups` (its pages
/// followed); a group it does not list is [`GroupLaunch::GroupNotFound`].
pub async fn launches(
    client: &Client,
    groups: &[String],
) -> Result<Vec<(String, GroupLaunch)>, PrepullError> {
    let pages: Vec<_> = client
        .describe_auto_scaling_groups()
        .set_auto_scaling_group_names(Some(groups.to_vec()))
        .into_paginator()
        .send()
        .collect::<Vec<_>>()
        .await;
    let mut described = Vec::new();
    for page in pages {
        let page = page.map_err(|e| aws_error("DescribeAutoScalingGroups", e))?;
        described.extend(page.auto_scaling_groups().iter().cloned());
    }
    Ok(groups
        .iter()
        .map(|name| {
            let launch = described
                .iter()
                .find(|g| g.auto_scaling_group_name() == Some(name.as_str()))
                .map_or(GroupLaunch::GroupNotFound, |group| {
                    let spec =
                        |t: &aws_sdk_autoscaling::types::LaunchTemplateSpecification| TemplateRef {
                            id: t.launch_template_id().map(str::to_owned),
                            name: t.launch_template_name().map(str::to_owned),
                            // A group created without a version uses the default one.
                            version: t.version().unwrap_or("$Default").to_owned(),
                        };
                    if let Some(policy) = group.mixed_instances_policy() {
                        GroupLaunch::MixedInstances(
                            policy
                                .launch_template()
                                .and_then(|t| t.launch_template_specification())
                                .map(spec),
                        )
                    } else if let Some(template) = group.launch_template() {
                        GroupLaunch::LaunchTemplate(spec(template))
                    } else {
                        GroupLaunch::LaunchConfiguration(
                            group
                                .launch_configuration_name()
                                .unwrap_or_default()
                                .to_owned(),
                        )
                    }
                });
            (name.clone(), launch)
        })
        .collect())
}

/// Cancels the group's refresh. One that ended meanwhile is not an error: it is gone.
pub async fn cancel_refresh(client: &Client, group: &str) -> Result<(), PrepullError> {
    match client
        .cancel_instance_refresh()
        .auto_scaling_group_name(group)
        .send()
        .await
    {
        Ok(_) => Ok(()),
        Err(error)
            if error
                .as_service_error()
                .is_some_and(aws_sdk_autoscaling::operation::cancel_instance_refresh::CancelInstanceRefreshError::is_active_instance_refresh_not_found_fault) =>
        {
            Ok(())
        }
        Err(error) => Err(aws_error("CancelInstanceRefresh", error)),
    }
}

/// Starts a refresh with the configured preferences and no `DesiredConfiguration`: the
/// launch template reads the AMI from the parameter (`resolve:ssm:`), so new instances take
/// the new value. The raw SDK error comes back so the caller can tell
/// `InstanceRefreshInProgress` (a cancelled refresh still winding down) from the rest.
pub async fn start_refresh(
    client: &Client,
    group: &str,
    settings: &FleetSettings,
) -> Result<Option<String>, SdkError<StartInstanceRefreshError, Response>> {
    let response = client
        .start_instance_refresh()
        .auto_scaling_group_name(group)
        .preferences(preferences(settings))
        .send()
        .await?;
    Ok(response.instance_refresh_id().map(str::to_owned))
}

fn preferences(settings: &FleetSettings) -> RefreshPreferences {
    RefreshPreferences::builder()
        .min_healthy_percentage(settings.min_healthy_percent)
        .instance_warmup(settings.warmup_seconds)
        // With no configuration change, skip-matching would replace nothing.
        .skip_matching(false)
        .set_scale_in_protected_instances(
            settings
                .scale_in_protected
                .map(|p| ScaleInProtectedInstances::from(p.as_str())),
        )
        .build()
}

/// Whether a start failed because a refresh is still running.
pub fn is_in_progress(error: &SdkError<StartInstanceRefreshError, Response>) -> bool {
    error
        .as_service_error()
        .is_some_and(StartInstanceRefreshError::is_instance_refresh_in_progress_fault)
}
