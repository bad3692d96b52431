//! Whether a group's launch template can take an AMI: the reads behind
//! [`prepull_core::launch_template`]'s verdict. build-finished asks before each refresh (the
//! templates read while it publishes, [`read_templates`]); the status report asks about the
//! AMI the parameter holds now.

use std::sync::Arc;

use prepull_core::config::FleetSettings;
use prepull_core::launch_template::{
    Expected, GroupLaunch, Misconfiguration, TemplateCheck, TemplateVersion, check_selector,
    check_template, template_of,
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

/// What one distinct launch names, before anything is checked against the AMI: why no AMI can
/// reach its groups (not a launch template, or the template is gone), or its template version.
#[derive(Debug)]
enum Launch {
    Problem(Misconfiguration),
    Template(TemplateVersion),
}

/// Reads the launch template version the group really uses. Nothing here depends on the
/// parameter, so it may be read before a publish lands.
async fn read_launch(common: &Common, launch: &GroupLaunch) -> Result<Launch, PrepullError> {
    let template = match template_of(launch) {
        Ok(template) => template,
        Err(problem) => return Ok(Launch::Problem(problem)),
    };
    match common
        .clients
        .ec2()
        .launch_template_version(template)
        .await?
    {
        Some(version) => Ok(Launch::Template(version)),
        None => Ok(Launch::Problem(Misconfiguration::TemplateNotFound {
            template: template.to_string(),
        })),
    }
}

/// Why the group cannot take the AMI, if it cannot: its launch template (the version the
/// group really uses) must read the parameter, and launch the AMI's root volume. A template
/// pinned to a version or label has that read here: build-finished gets here only once its
/// publish has put the label on the AMI's version.
async fn launch_problems(
    common: &Common,
    settings: &FleetSettings,
    launch: &Launch,
    check: LaunchCheck<'_>,
) -> Result<Vec<Misconfiguration>, PrepullError> {
    let version = match launch {
        Launch::Problem(problem) => return Ok(vec![problem.clone()]),
        Launch::Template(version) => version,
    };
    match (check_template(version, check.expected), check.ami) {
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

/// Each group's launch template version, read but not yet checked. The groups of one fleet
/// usually share a launch template version, so each distinct one is read once, and the
/// distinct ones side by side. build-finished reads them while it publishes (they depend on
/// nothing the publish writes) and checks them once the parameter holds the AMI
/// ([`TemplateReads::problems`]).
#[derive(Debug)]
pub struct TemplateReads {
    /// Each group, in the order given, with the index of its launch in `launches`.
    groups: Vec<(String, usize)>,
    /// Each distinct launch's read.
    launches: Vec<Result<Launch, Arc<PrepullError>>>,
}

/// Reads each distinct launch template version of `launches` once, side by side.
pub async fn read_templates(common: &Common, launches: &[(String, GroupLaunch)]) -> TemplateReads {
    let mut distinct: Vec<&GroupLaunch> = Vec::new();
    let mut groups = Vec::with_capacity(launches.len());
    for (group, launch) in launches {
        let index = distinct
            .iter()
            .position(|d| *d == launch)
            .unwrap_or_else(|| {
                distinct.push(launch);
                distinct.len() - 1
            });
        groups.push((group.clone(), index));
    }
    let launches =
        futures_util::future::join_all(distinct.iter().map(|launch| read_launch(common, launch)))
            .await
            .into_iter()
            .map(|result| result.map_err(Arc::new))
            .collect();
    TemplateReads { groups, launches }
}

impl TemplateReads {
    /// Each group's problems with `check`'s AMI, in the order the groups were given; a
    /// pinned template's selector is read here, once per distinct template, side by side.
    pub async fn problems(
        &self,
        common: &Common,
        settings: &FleetSettings,
        check: LaunchCheck<'_>,
    ) -> Vec<(String, GroupProblems)> {
        let results: Vec<GroupProblems> =
            futures_util::future::join_all(self.launches.iter().map(|launch| async move {
                match launch {
                    Ok(launch) => launch_problems(common, settings, launch, check)
                        .await
                        .map_err(Arc::new),
                    Err(error) => Err(Arc::clone(error)),
                }
            }))
            .await;
        self.groups
            .iter()
            .map(|(group, index)| (group.clone(), results[*index].clone()))
            .collect()
    }
}

/// Each group's problems: its launch template read ([`read_templates`]) and checked
/// ([`TemplateReads::problems`]).
pub async fn problems_by_group(
    common: &Common,
    settings: &FleetSettings,
    launches: &[(String, GroupLaunch)],
    check: LaunchCheck<'_>,
) -> Vec<(String, GroupProblems)> {
    read_templates(common, launches)
        .await
        .problems(common, settings, check)
        .await
}
