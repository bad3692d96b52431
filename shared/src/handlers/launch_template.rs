//! Whether a group's launch template can take an AMI: the reads behind
//! [`prepull_core::launch_template`]'s verdict. build-finished asks before each refresh; the
//! status report asks about the AMI the parameter holds now.

use std::sync::Arc;

use prepull_core::config::FleetSettings;
use prepull_core::launch_template::{
    Expected, GroupLaunch, Misconfiguration, TemplateCheck, check_selector, check_template,
    template_of,
};

use crate::aws::ssm;
use crate::common::Common;
use crate::error::PrepullError;

/// What each group's launch template is checked against.
#[derive(Debug, Clone, Copy)]
pub struct LaunchCheck<'a> {
    pub expected: Expected<'a>,
    /// The AMI the home region's parameter now holds (the fleet's region); `None` when this
    /// build did not reach it.
    pub ami: Option<&'a str>,
}

/// Why the group cannot take the AMI, if it cannot: its launch template (the version the
/// group really uses) must read the parameter, and launch the AMI's root volume.
async fn launch_problems(
    common: &Common,
    settings: &FleetSettings,
    launch: &GroupLaunch,
    check: LaunchCheck<'_>,
) -> Result<Vec<Misconfiguration>, PrepullError> {
    let template = match template_of(launch) {
        Ok(template) => template,
        Err(problem) => return Ok(vec![problem]),
    };
    let Some(version) = common
        .clients
        .ec2()
        .launch_template_version(template)
        .await?
    else {
        return Ok(vec![Misconfiguration::TemplateNotFound {
            template: template.to_string(),
        }]);
    };
    match (check_template(&version, check.expected), check.ami) {
        (TemplateCheck::Misconfigured(problems), _) => Ok(problems),
        (TemplateCheck::Follows, _) | (TemplateCheck::FollowsIf(_), None) => Ok(Vec::new()),
        (TemplateCheck::FollowsIf(selector), Some(ami)) => {
            let pinned = format!("{}:{selector}", settings.parameter);
            let value = ssm::get(common.clients.ssm(), &pinned).await?;
            Ok(check_selector(selector, value.map(|v| v.value), ami)
                .err()
                .into_iter()
                .collect())
        }
    }
}

/// A group's problems, or the read that failed (shared by the groups of one template).
pub type GroupProblems = Result<Vec<Misconfiguration>, Arc<PrepullError>>;

/// Each group's problems. The groups of one fleet usually share a launch template version, so
/// each distinct one is read once, and the distinct ones side by side.
pub async fn problems_by_group(
    common: &Common,
    settings: &FleetSettings,
    launches: &[(String, GroupLaunch)],
    check: LaunchCheck<'_>,
) -> Vec<(String, GroupProblems)> {
    let mut distinct: Vec<&GroupLaunch> = Vec::new();
    let mut index_of_group = Vec::with_capacity(launches.len());
    for (_, launch) in launches {
        let index = distinct
            .iter()
            .position(|d| *d == launch)
            .unwrap_or_else(|| {
                distinct.push(launch);
                distinct.len() - 1
            });
        index_of_group.push(index);
    }
    let results: Vec<GroupProblems> = futures_util::future::join_all(
        distinct
            .iter()
            .map(|launch| launch_problems(common, settings, launch, check)),
    )
    .await
    .into_iter()
    .map(|result| result.map_err(Arc::new))
    .collect();
    launches
        .iter()
        .zip(index_of_group)
        .map(|((group, _), index)| (group.clone(), results[index].clone()))
        .collect()
}
