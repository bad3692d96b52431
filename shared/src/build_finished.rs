//! build-finished: a finished build's AMIs go to the SSM parameter (in every distribution
//! region), the fleet is refreshed, and a change that arrived mid-build gets its follow-up
//! build. Operators use the same path to roll back or republish.

use std::sync::LazyLock;
use std::time::{Duration, Instant};

use aws_sdk_autoscaling::types::{RefreshPreferences, ScaleInProtectedInstances};
use aws_sdk_ssm::types::ParameterType;
use regex::Regex;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::common::Common;
use crate::config::ConfigError;
use crate::error::{PrepullError, aws_error};
use crate::image::quote;
use crate::imagebuilder;
use crate::plan::{self, BuildDecision, StartedBuild};
use crate::reconcile::{BuildToken, build_request, current_parent_image, start_build};

static IMAGE_ARN: LazyLock<Regex> = LazyLock::new(|| {
    // A constant pattern, checked by the tests below.
    #[allow(clippy::expect_used)]
    Regex::new(r"^arn:aws[a-z-]*:imagebuilder:[a-z]{2}(?:-[a-z]+)+-[0-9]:[0-9]{12}:image/[a-z0-9_-]{1,128}/[0-9]{1,9}\.[0-9]{1,9}\.[0-9]{1,9}/[0-9]{1,9}$")
        .expect("a valid built-in pattern")
});

static PARAMETER_NAME: LazyLock<Regex> = LazyLock::new(|| {
    #[allow(clippy::expect_used)]
    Regex::new(r"^/[A-Za-z0-9_.-]+(?:/[A-Za-z0-9_.-]+)*$").expect("a valid built-in pattern")
});

/// The start of the label on a parameter version a build published (see [`build_label`]).
const BUILD_LABEL_PREFIX: &str = "image-";
/// The label on a parameter version written by a rollback.
const ROLLBACK_LABEL_PREFIX: &str = "rollback-from-v";
/// The start of the description of a parameter version written by a rollback.
const ROLLBACK_DESCRIPTION_PREFIX: &str = "prepull rollback: ";

const TERMINAL: [&str; 3] = ["AVAILABLE", "FAILED", "CANCELLED"];
const KNOWN_STATUSES: [&str; 12] = [
    "PENDING",
    "CREATING",
    "BUILDING",
    "TESTING",
    "DISTRIBUTING",
    "INTEGRATING",
    "AVAILABLE",
    "CANCELLED",
    "FAILED",
    "DEPRECATED",
    "DELETED",
    "DISABLED",
];
const ACTIVE_REFRESH: [&str; 5] = [
    "Pending",
    "InProgress",
    "Cancelling",
    "RollbackInProgress",
    "Baking",
];

/// What to do about a refresh that is already running on a group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum InProgress {
    Replace,
    Skip,
}

/// build-finished's own settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FleetSettings {
    pub parameter: String,
    pub asg_names: Vec<String>,
    pub min_healthy_percent: i32,
    pub warmup_seconds: i32,
    pub in_progress: InProgress,
    pub scale_in_protected: Option<ScaleInProtectedInstances>,
    /// How often a cancelled refresh is checked while waiting for it to end.
    pub poll_interval: Duration,
}

impl FleetSettings {
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let get = |name: &str| {
            lookup(name)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        let bad = |variable: &'static str, problem: String| ConfigError { variable, problem };
        let parameter =
            get("PREPULL_AMI_PARAMETER").unwrap_or_else(|| "/prepull/ami-id".to_owned());
        let reserved = ["/aws", "/ssm"]
            .iter()
            .any(|p| parameter.to_lowercase().starts_with(p));
        if parameter.len() > 1011 || !PARAMETER_NAME.is_match(&parameter) || reserved {
            return Err(bad(
                "PREPULL_AMI_PARAMETER",
                format!(
                    "{} is not a parameter name of your own (/a/b, not under /aws or /ssm)",
                    quote(&parameter)
                ),
            ));
        }
        let mut asg_names = Vec::new();
        for name in get("PREPULL_ASG_NAMES")
            .unwrap_or_default()
            .split(',')
            .map(str::trim)
            .filter(|n| !n.is_empty())
        {
            let ok = name.len() <= 255 && name.chars().all(|c| c.is_ascii_graphic() || c == ' ');
            if !ok {
                return Err(bad(
                    "PREPULL_ASG_NAMES",
                    format!("{} is not an Auto Scaling group name", quote(name)),
                ));
            }
            asg_names.push(name.to_owned());
        }
        let number = |variable: &'static str, default: i32, max: i32| match get(variable) {
            None => Ok(default),
            Some(text) => text
                .parse::<i32>()
                .ok()
                .filter(|n| (0..=max).contains(n))
                .ok_or_else(|| {
                    bad(
                        variable,
                        format!("{} is not a number from 0 to {max}", quote(&text)),
                    )
                }),
        };
        let in_progress = match get("PREPULL_REFRESH_IN_PROGRESS").as_deref() {
            None | Some("replace") => InProgress::Replace,
            Some("skip") => InProgress::Skip,
            Some(other) => {
                return Err(bad(
                    "PREPULL_REFRESH_IN_PROGRESS",
                    format!("{} is not replace or skip", quote(other)),
                ));
            }
        };
        let scale_in_protected = match get("PREPULL_REFRESH_SCALE_IN_PROTECTED").as_deref() {
            None => None,
            Some(value @ ("Refresh" | "Ignore" | "Wait")) => {
                Some(ScaleInProtectedInstances::from(value))
            }
            Some(other) => {
                return Err(bad(
                    "PREPULL_REFRESH_SCALE_IN_PROTECTED",
                    format!("{} is not Refresh, Ignore or Wait", quote(other)),
                ));
            }
        };
        Ok(Self {
            parameter,
            asg_names,
            min_healthy_percent: number("PREPULL_REFRESH_MIN_HEALTHY_PERCENT", 90, 100)?,
            warmup_seconds: number("PREPULL_REFRESH_WARMUP_SECONDS", 300, 3600)?,
            in_progress,
            scale_in_protected,
            poll_interval: Duration::from_secs(5),
        })
    }

    fn preferences(&self) -> RefreshPreferences {
        RefreshPreferences::builder()
            .min_healthy_percentage(self.min_healthy_percent)
            .instance_warmup(self.warmup_seconds)
            // With no configuration change, skip-matching would replace nothing.
            .skip_matching(false)
            .set_scale_in_protected_instances(self.scale_in_protected.clone())
            .build()
    }
}

/// What the function was asked to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    StateChange {
        image_arn: String,
        status: String,
        reason: Option<String>,
    },
    Rollback {
        dry_run: bool,
    },
    Republish {
        image_arn: String,
        dry_run: bool,
    },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Manual {
    action: String,
    image: Option<String>,
    #[serde(default)]
    dry_run: bool,
}

fn image_arn(value: &str, field: &str) -> Result<String, PrepullError> {
    if IMAGE_ARN.is_match(value) {
        Ok(value.to_owned())
    } else {
        Err(PrepullError::InvalidInput(format!(
            "field `{field}` is {}, not an image build version ARN",
            quote(value)
        )))
    }
}

/// Reads an "EC2 Image Builder Image State Change" event or an operator's payload.
pub fn read_request(input: &Value) -> Result<Request, PrepullError> {
    let invalid = |m: String| PrepullError::InvalidInput(m);
    if input.get("action").is_some() {
        let manual: Manual = serde_json::from_value(input.clone()).map_err(|e| invalid(format!("an operator payload is {{\"action\":\"rollback\"}} or {{\"action\":\"republish\",\"image\":\"…\"}}: {e}")))?;
        return match (manual.action.as_str(), manual.image) {
            ("rollback", None) => Ok(Request::Rollback {
                dry_run: manual.dry_run,
            }),
            ("republish", Some(image)) => Ok(Request::Republish {
                image_arn: image_arn(&image, "image")?,
                dry_run: manual.dry_run,
            }),
            ("republish", None) => Err(invalid(
                "field `image` is required for republish".to_owned(),
            )),
            ("rollback", Some(_)) => {
                Err(invalid("field `image` is not used by rollback".to_owned()))
            }
            (other, _) => Err(invalid(format!(
                "field `action` is {}, expected rollback or republish",
                quote(other)
            ))),
        };
    }
    let text = |pointer: &str, field: &str| {
        input
            .pointer(pointer)
            .and_then(Value::as_str)
            .ok_or_else(|| invalid(format!("field `{field}` is missing or not a string")))
    };
    if text("/source", "source")? != "aws.imagebuilder" {
        return Err(invalid(format!(
            "field `source` is {}, expected aws.imagebuilder",
            quote(text("/source", "source")?)
        )));
    }
    let detail_type = text("/detail-type", "detail-type")?;
    if detail_type != "EC2 Image Builder Image State Change" {
        return Err(invalid(format!(
            "field `detail-type` is {}",
            quote(detail_type)
        )));
    }
    let arn = image_arn(text("/resources/0", "resources[0]")?, "resources[0]")?;
    let status = text("/detail/state/status", "detail.state.status")?;
    if !KNOWN_STATUSES.contains(&status) {
        return Err(invalid(format!(
            "field `detail.state.status` is {}, not an image status",
            quote(status)
        )));
    }
    let reason = input
        .pointer("/detail/state/reason")
        .and_then(Value::as_str)
        .map(|r| r.chars().take(1000).collect());
    Ok(Request::StateChange {
        image_arn: arn,
        status: status.to_owned(),
        reason,
    })
}

/// An SSM label for the build that made an AMI: `image-<recipe>-<version>-<build>`, within
/// SSM's rules (letters, digits, `.`, `-`, `_`; not starting with a digit, `aws` or `ssm`;
/// at most 100 characters).
pub fn build_label(image_arn: &str) -> String {
    let resource = image_arn.rsplit(":image/").next().unwrap_or_default();
    let label: String = format!("{BUILD_LABEL_PREFIX}{}", resource.replace('/', "-"))
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || "._-".contains(*c))
        .collect();
    label.chars().take(100).collect()
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    Published,
    AlreadyPublished,
    BuildFailed,
    Ignored,
    RolledBack,
    Republished,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ParameterUpdate {
    pub region: String,
    pub ami: String,
    /// `written`, `already-current`, `superseded`, in a dry run `would-write`, or for a
    /// rollback outside the home region `failed`.
    pub action: &'static str,
    pub version: Option<i64>,
    pub label: Option<String>,
    /// Why a `failed` region was not written.
    pub error: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RefreshOutcome {
    pub asg: String,
    /// `started`, `replaced`, `already-rolling-out`, `skipped-refresh-in-progress`, `failed`,
    /// or in a dry run `would-start`, `would-replace`.
    pub outcome: &'static str,
    pub refresh_id: Option<String>,
    pub cancelled_refresh_id: Option<String>,
    pub error: Option<String>,
    #[serde(skip)]
    pub retryable: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Summary {
    pub outcome: Outcome,
    pub dry_run: bool,
    pub image: Option<String>,
    pub reason: Option<String>,
    pub parameters: Vec<ParameterUpdate>,
    pub refreshes: Vec<RefreshOutcome>,
    /// `started <arn>`, `running <arn>`, `not-needed`, `already-attempted <arn> (<status>)` when
    /// the same follow-up was requested before and failed, or absent when not checked.
    pub follow_up: Option<String>,
}

impl Summary {
    fn new(outcome: Outcome, dry_run: bool, image: Option<String>) -> Self {
        Self {
            outcome,
            dry_run,
            image,
            reason: None,
            parameters: Vec::new(),
            refreshes: Vec::new(),
            follow_up: None,
        }
    }
}

fn ssm_in(common: &Common, region: &str) -> aws_sdk_ssm::Client {
    let config = aws_sdk_ssm::config::Builder::from(&common.clients.config)
        .region(aws_config::Region::new(region.to_owned()))
        .build();
    aws_sdk_ssm::Client::from_conf(config)
}

fn home_region(common: &Common) -> String {
    common.config.pipeline.region.clone()
}

/// Handles one invocation. `deadline` bounds the wait for a cancelled refresh to end.
pub async fn handle(
    common: &Common,
    settings: &FleetSettings,
    input: Value,
    deadline: Instant,
) -> Result<Summary, PrepullError> {
    match read_request(&input)? {
        Request::StateChange {
            image_arn,
            status,
            reason,
        } => state_change(common, settings, image_arn, status, reason, deadline).await,
        Request::Republish { image_arn, dry_run } => {
            let image = get_image(common, &image_arn).await?;
            if image.status != "AVAILABLE" {
                return Err(PrepullError::InvalidInput(format!(
                    "image {image_arn} is {}, not AVAILABLE: there is nothing to republish",
                    image.status
                )));
            }
            if image.pipeline.as_deref() != Some(common.config.pipeline.as_str()) {
                return Err(PrepullError::InvalidInput(format!(
                    "image {image_arn} was not built by {}: prepull publishes only its own pipeline's images",
                    common.config.pipeline.as_str()
                )));
            }
            require_amis(&image_arn, &image.amis)?;
            let mut summary = Summary::new(Outcome::Republished, dry_run, Some(image_arn.clone()));
            publish_and_refresh(
                common,
                settings,
                &image.amis,
                Some(&build_label(&image_arn)),
                Supersede::Publish,
                OtherRegions::FailTheRun,
                dry_run,
                deadline,
                &mut summary,
            )
            .await?;
            finish(summary)
        }
        Request::Rollback { dry_run } => {
            let region = home_region(common);
            let ssm = ssm_in(common, &region);
            let history = read_history(&ssm, &settings.parameter).await?;
            let Some(current) = history.last().cloned() else {
                return Err(PrepullError::InvalidInput(format!(
                    "cannot roll back: parameter {} has no history",
                    settings.parameter
                )));
            };
            let current_version = current.version;
            // A retried or repeated rollback finds the version it wrote (by its label, or by
            // its description if it stopped before labelling), and only finishes it: every
            // region, the label, the refresh. Going further back is a republish of a chosen
            // image.
            if let Some(done) = current.rollback_label() {
                let (image, amis) = rollback_targets(
                    common,
                    &region,
                    &current.value,
                    &build_labels_of(&history, &current.value),
                )
                .await?;
                let mut summary = Summary::new(Outcome::RolledBack, dry_run, image);
                summary.reason = Some(format!(
                    "already rolled back: version {current_version} ({done}) holds {}",
                    current.value
                ));
                publish_and_refresh(
                    common,
                    settings,
                    &amis,
                    Some(&done),
                    Supersede::Publish,
                    OtherRegions::RecordFailures,
                    dry_run,
                    deadline,
                    &mut summary,
                )
                .await?;
                return finish(summary);
            }
            let current = current.value;
            let previous = history.iter().rev().find(|v| v.value != current).map(|v| v.value.clone()).ok_or_else(|| {
                PrepullError::InvalidInput(format!("cannot roll back: parameter {} has held only {current} (version {current_version} and before)", settings.parameter))
            })?;
            let (previous_image, amis) = rollback_targets(
                common,
                &region,
                &previous,
                &build_labels_of(&history, &previous),
            )
            .await?;
            let mut summary = Summary::new(Outcome::RolledBack, dry_run, previous_image);
            summary.reason = Some(format!("from {current} back to {previous}"));
            let label = format!("{ROLLBACK_LABEL_PREFIX}{current_version}");
            publish_and_refresh(
                common,
                settings,
                &amis,
                Some(&label),
                Supersede::Publish,
                OtherRegions::RecordFailures,
                dry_run,
                deadline,
                &mut summary,
            )
            .await?;
            finish(summary)
        }
    }
}

/// One version of the parameter, as its history reports it.
#[derive(Debug, Clone)]
struct ParameterVersion {
    version: i64,
    value: String,
    labels: Vec<String>,
    description: String,
}

/// Every version the parameter holds, oldest first.
async fn read_history(
    ssm: &aws_sdk_ssm::Client,
    parameter: &str,
) -> Result<Vec<ParameterVersion>, PrepullError> {
    let mut history = Vec::new();
    let mut pages = ssm
        .get_parameter_history()
        .name(parameter)
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| aws_error("GetParameterHistory", e))?;
        history.extend(page.parameters().iter().map(|p| ParameterVersion {
            version: p.version(),
            value: p.value().unwrap_or_default().to_owned(),
            labels: p.labels().to_vec(),
            description: p.description().unwrap_or_default().to_owned(),
        }));
    }
    history.sort_by_key(|v| v.version);
    Ok(history)
}

impl ParameterVersion {
    /// The rollback label of a version a rollback wrote, from its label or, when the rollback
    /// stopped before labelling it, from its description.
    fn rollback_label(&self) -> Option<String> {
        self.labels
            .iter()
            .find(|l| l.starts_with(ROLLBACK_LABEL_PREFIX))
            .cloned()
            .or_else(|| {
                self.description
                    .strip_prefix(ROLLBACK_DESCRIPTION_PREFIX)
                    .filter(|label| label.starts_with(ROLLBACK_LABEL_PREFIX))
                    .map(str::to_owned)
            })
    }
}

/// The build labels of every version that held `value`, newest first: a rollback's version
/// carries only its rollback label, the build's label stays on the version the build wrote.
fn build_labels_of(history: &[ParameterVersion], value: &str) -> Vec<String> {
    history
        .iter()
        .rev()
        .filter(|v| v.value == value)
        .flat_map(|v| v.labels.iter())
        .filter(|l| l.starts_with(BUILD_LABEL_PREFIX))
        .cloned()
        .collect()
}

/// Where a rollback writes: the build that published `previous` in the home region, found by
/// a build label on a version that held it, goes back in every region it was distributed to.
/// Without such a build (the value came from elsewhere, or the image is gone) only the home
/// region goes back.
async fn rollback_targets(
    common: &Common,
    home: &str,
    previous: &str,
    build_labels: &[String],
) -> Result<(Option<String>, Vec<(String, String)>), PrepullError> {
    let home_only = vec![(home.to_owned(), previous.to_owned())];
    if build_labels.is_empty() {
        return Ok((None, home_only));
    }
    let builds = imagebuilder::list_builds(
        &common.clients.imagebuilder,
        common.config.pipeline.as_str(),
    )
    .await?;
    // DEPRECATED images (a lifecycle policy's doing) still have their AMIs.
    let Some(build) = build_labels.iter().find_map(|label| {
        builds.iter().find(|b| {
            matches!(b.status.as_str(), "AVAILABLE" | "DEPRECATED") && build_label(&b.arn) == *label
        })
    }) else {
        tracing::warn!(labels = ?build_labels, "the build behind the previous AMI is gone; rolling back the home region only");
        return Ok((None, home_only));
    };
    let image = get_image(common, &build.arn).await?;
    match home_last(home, previous, image.amis) {
        Some(amis) => Ok((Some(build.arn.clone()), amis)),
        None => Ok((None, home_only)),
    }
}

/// The build's AMIs with the home region's last, so that a rollback stopped halfway is
/// finished by its retry: the retry sees the home region rolled back only once every other
/// region is. `None` when the build's home-region AMI is not `previous`.
fn home_last(
    home: &str,
    previous: &str,
    amis: Vec<(String, String)>,
) -> Option<Vec<(String, String)>> {
    if !amis
        .iter()
        .any(|(region, ami)| region == home && ami == previous)
    {
        return None;
    }
    let (mut ordered, home_ami): (Vec<_>, Vec<_>) =
        amis.into_iter().partition(|(region, _)| region != home);
    ordered.extend(home_ami);
    Some(ordered)
}

/// Fails the invocation, so Lambda retries it, only when something retryable failed.
fn finish(summary: Summary) -> Result<Summary, PrepullError> {
    if let Some(failed) = summary.refreshes.iter().find(|r| r.retryable) {
        return Err(PrepullError::Aws {
            operation: "instance refresh",
            code: None,
            message: format!(
                "{}: {}",
                failed.asg,
                failed.error.clone().unwrap_or_default()
            ),
            retryable: true,
        });
    }
    Ok(summary)
}

struct ImageFacts {
    status: String,
    pipeline: Option<String>,
    amis: Vec<(String, String)>,
    manifest_hash: Option<String>,
    reason: Option<String>,
}

async fn get_image(common: &Common, arn: &str) -> Result<ImageFacts, PrepullError> {
    let response = common
        .clients
        .imagebuilder
        .get_image()
        .image_build_version_arn(arn)
        .send()
        .await
        .map_err(|e| aws_error("GetImage", e))?;
    let image = response.image.ok_or_else(|| PrepullError::Unexpected {
        what: "GetImage",
        detail: "no image in the response".to_owned(),
    })?;
    Ok(ImageFacts {
        status: image
            .state()
            .and_then(|s| s.status())
            .map(|s| s.as_str().to_owned())
            .unwrap_or_default(),
        pipeline: image.source_pipeline_arn().map(str::to_owned),
        amis: image
            .output_resources()
            .map(|o| {
                o.amis()
                    .iter()
                    .filter_map(|a| Some((a.region()?.to_owned(), a.image()?.to_owned())))
                    .collect()
            })
            .unwrap_or_default(),
        manifest_hash: image
            .tags()
            .and_then(|t| t.get(plan::MANIFEST_TAG))
            .cloned(),
        reason: image.state().and_then(|s| s.reason()).map(str::to_owned),
    })
}

async fn state_change(
    common: &Common,
    settings: &FleetSettings,
    image_arn: String,
    status: String,
    reason: Option<String>,
    deadline: Instant,
) -> Result<Summary, PrepullError> {
    if !TERMINAL.contains(&status.as_str()) {
        tracing::info!(image = %image_arn, status = %status, "not a terminal state; ignored");
        let mut summary = Summary::new(Outcome::Ignored, false, Some(image_arn));
        summary.reason = Some(format!("status {status} is not terminal"));
        return Ok(summary);
    }
    let image = get_image(common, &image_arn).await?;
    if image.pipeline.as_deref() != Some(common.config.pipeline.as_str()) {
        tracing::info!(image = %image_arn, pipeline = image.pipeline.as_deref(), "an image of another pipeline; ignored");
        let mut summary = Summary::new(Outcome::Ignored, false, Some(image_arn));
        summary.reason = Some(format!(
            "built by {}, not by {}",
            image.pipeline.as_deref().unwrap_or("no pipeline"),
            common.config.pipeline.as_str()
        ));
        return Ok(summary);
    }
    let mut summary = if status == "AVAILABLE" {
        let mut summary = Summary::new(Outcome::Published, false, Some(image_arn.clone()));
        require_amis(&image_arn, &image.amis)?;
        publish_and_refresh(
            common,
            settings,
            &image.amis,
            Some(&build_label(&image_arn)),
            Supersede::Skip,
            OtherRegions::FailTheRun,
            false,
            deadline,
            &mut summary,
        )
        .await?;
        if summary.parameters.iter().all(|p| p.action != "written") {
            summary.outcome = Outcome::AlreadyPublished;
        }
        summary
    } else {
        let why = reason
            .or(image.reason)
            .unwrap_or_else(|| "no reason given".to_owned());
        tracing::error!(image = %image_arn, status = %status, reason = %why, "the build did not produce an image; nothing published");
        let mut summary = Summary::new(Outcome::BuildFailed, false, Some(image_arn.clone()));
        summary.reason = Some(format!("{status}: {why}"));
        summary
    };
    summary.follow_up = Some(follow_up(common, image.manifest_hash.as_deref()).await?);
    finish(summary)
}

/// Starts one more build when the cache component moved on during the one that ended.
async fn follow_up(common: &Common, built_manifest: Option<&str>) -> Result<String, PrepullError> {
    let client = &common.clients.imagebuilder;
    let state = imagebuilder::read_component_state(client, &common.config.component_name).await?;
    let latest = state.latest_manifest.hash();
    if built_manifest == Some(latest.as_str()) {
        return Ok("not-needed".to_owned());
    }
    let builds = imagebuilder::list_builds(client, common.config.pipeline.as_str()).await?;
    let version = state
        .latest_version
        .map(|v| v.to_string())
        .unwrap_or_default();
    match plan::decide_build(&builds, &latest, &version, "follow-up") {
        BuildDecision::Start { token_prefix, tags } => {
            let view = imagebuilder::read_pipeline(client, common.config.pipeline.as_str()).await?;
            let parent = current_parent_image(common, &view).await?;
            let (token, tags) =
                build_request(BuildToken::Derived(token_prefix), tags, parent.as_deref());
            Ok(match start_build(common, &token, &tags, &builds).await? {
                StartedBuild::New { arn } => format!("started {arn}"),
                StartedBuild::Earlier { arn, status } => {
                    format!("already-attempted {arn} ({status})")
                }
            })
        }
        BuildDecision::QueuedBehind { image_arn } => Ok(format!("running {image_arn}")),
        BuildDecision::AlreadyStarted { .. } => Ok("not-needed".to_owned()),
    }
}

/// Whether an image whose label already sits on an older parameter version is published
/// again: an operator's republish does; a late or repeated event does not, so it cannot put
/// back an AMI a newer build replaced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OtherRegions {
    FailTheRun,
    RecordFailures,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Supersede {
    Publish,
    Skip,
}

fn require_amis(image_arn: &str, amis: &[(String, String)]) -> Result<(), PrepullError> {
    if amis.is_empty() {
        return Err(PrepullError::Unexpected {
            what: "GetImage",
            detail: format!("image {image_arn} is AVAILABLE but lists no AMIs"),
        });
    }
    Ok(())
}

/// Writes one region's AMI to the parameter and labels it; returns what it did and when the
/// parameter took the AMI.
async fn publish_in_region(
    common: &Common,
    settings: &FleetSettings,
    region: &str,
    ami: &str,
    label: Option<&str>,
    supersede: Supersede,
    dry_run: bool,
) -> Result<(ParameterUpdate, Option<aws_smithy_types::DateTime>), PrepullError> {
    let ssm = ssm_in(common, region);
    let current = match ssm.get_parameter().name(&settings.parameter).send().await {
        Ok(response) => response.parameter,
        Err(error)
            if error
                .as_service_error()
                .is_some_and(|e| e.is_parameter_not_found()) =>
        {
            None
        }
        Err(error) => return Err(aws_error("GetParameter", error)),
    };
    let labelled_version = match label {
        Some(label) => match ssm
            .get_parameter()
            .name(format!("{}:{label}", settings.parameter))
            .send()
            .await
        {
            Ok(response) => response.parameter.map(|p| p.version()),
            Err(error)
                if error.as_service_error().is_some_and(|e| {
                    e.is_parameter_version_not_found() || e.is_parameter_not_found()
                }) =>
            {
                None
            }
            Err(error) => return Err(aws_error("GetParameter", error)),
        },
        None => None,
    };
    let holds = current.as_ref().is_some_and(|p| p.value() == Some(ami));
    let superseded = supersede == Supersede::Skip && !holds && labelled_version.is_some();
    let (action, version) = if holds {
        ("already-current", current.as_ref().map(|p| p.version()))
    } else if superseded {
        tracing::warn!(region = %region, ami = %ami, "this build was published before and has since been replaced; not publishing it again");
        ("superseded", labelled_version)
    } else if dry_run {
        ("would-write", None)
    } else {
        let description = describe_version(label);
        let put = match put_ami(&ssm, &settings.parameter, ami, &description).await {
            Err(error)
                if error
                    .as_service_error()
                    .is_some_and(|e| e.is_parameter_max_version_limit_exceeded()) =>
            {
                release_oldest_version(&ssm, &settings.parameter).await?;
                put_ami(&ssm, &settings.parameter, ami, &description).await
            }
            result => result,
        }
        .map_err(|e| aws_error("PutParameter", e))?;
        ("written", Some(put.version()))
    };
    if let (Some(label), Some(version), false, false) = (label, version, dry_run, superseded)
        && labelled_version != Some(version)
    {
        let labelled = ssm
            .label_parameter_version()
            .name(&settings.parameter)
            .parameter_version(version)
            .labels(label)
            .send()
            .await
            .map_err(|e| aws_error("LabelParameterVersion", e))?;
        // SSM reports a refused label in the response, not as an error.
        if !labelled.invalid_labels().is_empty() {
            return Err(PrepullError::Unexpected {
                what: "LabelParameterVersion",
                detail: format!("SSM refused the label {label}"),
            });
        }
    }
    let published_at = match action {
        "written" | "would-write" => Some(aws_smithy_types_now()),
        _ => current
            .as_ref()
            .and_then(|p| p.last_modified_date().copied()),
    };
    let update = ParameterUpdate {
        region: region.to_owned(),
        ami: ami.to_owned(),
        action,
        version,
        label: label.map(str::to_owned),
        error: None,
    };
    Ok((update, published_at))
}

/// Writes each region's AMI to the parameter (skipping a region that already holds it), then
/// refreshes every configured group.
/// `other_regions` says what a failure outside the home region does: a publish fails the
/// invocation (Lambda retries it whole), a rollback records it and still rolls the home
/// region back, which is what the fleet launches from.
#[allow(clippy::too_many_arguments)]
async fn publish_and_refresh(
    common: &Common,
    settings: &FleetSettings,
    amis: &[(String, String)],
    label: Option<&str>,
    supersede: Supersede,
    other_regions: OtherRegions,
    dry_run: bool,
    deadline: Instant,
    summary: &mut Summary,
) -> Result<(), PrepullError> {
    let home = home_region(common);
    let mut published_at = None;
    for (region, ami) in amis {
        let published =
            publish_in_region(common, settings, region, ami, label, supersede, dry_run).await;
        match published {
            Ok((update, at)) => {
                if region == &home {
                    published_at = at;
                }
                summary.parameters.push(update);
            }
            Err(error) if region != &home && other_regions == OtherRegions::RecordFailures => {
                tracing::error!(region = %region, error = %error, "the parameter in this region was not written; carrying on to the home region");
                summary.parameters.push(ParameterUpdate {
                    region: region.clone(),
                    ami: ami.clone(),
                    action: "failed",
                    version: None,
                    label: label.map(str::to_owned),
                    error: Some(error.to_string()),
                });
            }
            Err(error) => return Err(error),
        }
    }
    if summary.parameters.iter().all(|p| p.action == "superseded") {
        return Ok(());
    }
    for group in &settings.asg_names {
        summary
            .refreshes
            .push(refresh_group(common, settings, group, published_at, dry_run, deadline).await);
    }
    Ok(())
}

async fn put_ami(
    ssm: &aws_sdk_ssm::Client,
    parameter: &str,
    ami: &str,
    description: &str,
) -> Result<
    aws_sdk_ssm::operation::put_parameter::PutParameterOutput,
    aws_sdk_ssm::error::SdkError<aws_sdk_ssm::operation::put_parameter::PutParameterError>,
> {
    ssm.put_parameter()
        .name(parameter)
        .value(ami)
        .r#type(ParameterType::String)
        .data_type("aws:ec2:image")
        .overwrite(true)
        .description(description)
        .send()
        .await
}

/// The description of a version prepull writes. A rollback's names the rollback in the write
/// itself, so a retry that finds the version unlabelled (stopped between `PutParameter` and
/// `LabelParameterVersion`) still knows it as a rollback and does not roll back again.
fn describe_version(label: Option<&str>) -> String {
    match label {
        Some(label) if label.starts_with(ROLLBACK_LABEL_PREFIX) => {
            format!("{ROLLBACK_DESCRIPTION_PREFIX}{label}")
        }
        _ => "The newest AMI with prepull's image cache".to_owned(),
    }
}

/// Parameter Store keeps 100 versions and drops the oldest on a write, but refuses to drop a
/// labelled one (`ParameterMaxVersionLimitExceeded`). prepull labels every version it writes,
/// so the 101st publish would fail forever: the oldest version's labels are removed instead,
/// which lets Parameter Store drop it as it would any other.
async fn release_oldest_version(
    ssm: &aws_sdk_ssm::Client,
    parameter: &str,
) -> Result<(), PrepullError> {
    let history = read_history(ssm, parameter).await?;
    let Some(ParameterVersion {
        version, labels, ..
    }) = history.into_iter().next().filter(|v| !v.labels.is_empty())
    else {
        return Ok(());
    };
    tracing::warn!(parameter, version, labels = ?labels, "the parameter holds 100 versions; unlabelling the oldest so Parameter Store can drop it");
    ssm.unlabel_parameter_version()
        .name(parameter)
        .parameter_version(version)
        .set_labels(Some(labels))
        .send()
        .await
        .map_err(|e| aws_error("UnlabelParameterVersion", e))?;
    Ok(())
}

fn aws_smithy_types_now() -> aws_smithy_types::DateTime {
    aws_smithy_types::DateTime::from(std::time::SystemTime::now())
}

fn failed(group: &str, error: PrepullError) -> RefreshOutcome {
    tracing::error!(asg = group, error = %error, "instance refresh failed");
    RefreshOutcome {
        asg: group.to_owned(),
        outcome: "failed",
        refresh_id: None,
        cancelled_refresh_id: None,
        retryable: error.is_retryable(),
        error: Some(error.to_string()),
    }
}

/// Refreshes one group, deciding deliberately about a refresh already running: one that
/// began after the parameter took this AMI already rolls it out and is never cancelled (a
/// retried invocation finds its own refresh that way); an older one is replaced or left,
/// as configured.
async fn refresh_group(
    common: &Common,
    settings: &FleetSettings,
    group: &str,
    published_at: Option<aws_smithy_types::DateTime>,
    dry_run: bool,
    deadline: Instant,
) -> RefreshOutcome {
    let client = &common.clients.autoscaling;
    let outcome = |outcome: &'static str, refresh_id: Option<String>, cancelled: Option<String>| {
        RefreshOutcome {
            asg: group.to_owned(),
            outcome,
            refresh_id,
            cancelled_refresh_id: cancelled,
            error: None,
            retryable: false,
        }
    };
    let refreshes = match recent_refreshes(client, group).await {
        Ok(refreshes) => refreshes,
        Err(error) => return failed(group, error),
    };
    // A refresh that began after the parameter took this AMI rolls it out (or has): never
    // cancel it, never start another. A retried or repeated invocation ends here.
    let since_publish = published_at.and_then(|published| {
        refreshes
            .iter()
            .find(|r| r.started.is_some_and(|started| started >= published))
    });
    if let Some(refresh) = since_publish {
        if ACTIVE_REFRESH.contains(&refresh.status.as_str()) {
            return outcome("already-rolling-out", Some(refresh.id.clone()), None);
        }
        if refresh.status == "Successful" {
            return outcome("already-rolled-out", Some(refresh.id.clone()), None);
        }
    }
    let active = refreshes
        .iter()
        .find(|r| ACTIVE_REFRESH.contains(&r.status.as_str()))
        .map(|r| r.id.clone());
    let mut cancelled = None;
    if let Some(id) = active {
        match (settings.in_progress, dry_run) {
            (InProgress::Skip, _) => return outcome("skipped-refresh-in-progress", Some(id), None),
            (InProgress::Replace, true) => return outcome("would-replace", None, Some(id)),
            (InProgress::Replace, false) => {}
        }
        if let Err(error) = client
            .cancel_instance_refresh()
            .auto_scaling_group_name(group)
            .send()
            .await
        {
            let still_active = !error
                .as_service_error()
                .is_some_and(|e| e.is_active_instance_refresh_not_found_fault());
            if still_active {
                return failed(group, aws_error("CancelInstanceRefresh", error));
            }
        }
        cancelled = Some(id);
    } else if dry_run {
        return outcome("would-start", None, None);
    }
    loop {
        let started = client
            .start_instance_refresh()
            .auto_scaling_group_name(group)
            .preferences(settings.preferences())
            .send()
            .await;
        match started {
            Ok(response) => {
                let id = response.instance_refresh_id().map(str::to_owned);
                tracing::info!(
                    asg = group,
                    refresh = id.as_deref(),
                    "instance refresh started"
                );
                return outcome(
                    if cancelled.is_some() {
                        "replaced"
                    } else {
                        "started"
                    },
                    id,
                    cancelled,
                );
            }
            // The cancelled refresh is still winding down: wait for it, within the budget.
            Err(error)
                if cancelled.is_some()
                    && error
                        .as_service_error()
                        .is_some_and(|e| e.is_instance_refresh_in_progress_fault()) =>
            {
                if Instant::now() + settings.poll_interval >= deadline {
                    let mut result = failed(group, aws_error("StartInstanceRefresh", error));
                    result.retryable = true;
                    return result;
                }
                tokio::time::sleep(settings.poll_interval).await;
            }
            Err(error) => return failed(group, aws_error("StartInstanceRefresh", error)),
        }
    }
}

struct RecentRefresh {
    id: String,
    status: String,
    started: Option<aws_smithy_types::DateTime>,
}

/// The group's refreshes, newest first, as DescribeInstanceRefreshes lists them.
async fn recent_refreshes(
    client: &aws_sdk_autoscaling::Client,
    group: &str,
) -> Result<Vec<RecentRefresh>, PrepullError> {
    let response = client
        .describe_instance_refreshes()
        .auto_scaling_group_name(group)
        .send()
        .await
        .map_err(|e| aws_error("DescribeInstanceRefreshes", e))?;
    Ok(response
        .instance_refreshes()
        .iter()
        .map(|r| RecentRefresh {
            id: r.instance_refresh_id().unwrap_or_default().to_owned(),
            status: r
                .status()
                .map(|s| s.as_str().to_owned())
                .unwrap_or_default(),
            started: r.start_time().copied(),
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn event(status: &str, arn: &str) -> Value {
        json!({
            "version": "0", "id": "x", "detail-type": "EC2 Image Builder Image State Change", "source": "aws.imagebuilder",
            "account": "123456789012", "time": "2026-11-11T09:41:07Z", "region": "us-east-1", "resources": [arn],
            "detail": {"previous-state": {"status": "INTEGRATING"}, "state": {"status": status}},
        })
    }

    const ARN: &str =
        "arn:aws:imagebuilder:us-east-1:123456789012:image/prepull-windows-cache-recipe/1.0.0/3";

    #[test]
    fn requests_are_read_strictly() {
        assert_eq!(
            read_request(&event("AVAILABLE", ARN)).unwrap(),
            Request::StateChange {
                image_arn: ARN.into(),
                status: "AVAILABLE".into(),
                reason: None
            }
        );
        assert_eq!(
            read_request(&json!({"action": "rollback"})).unwrap(),
            Request::Rollback { dry_run: false }
        );
        assert_eq!(
            read_request(&json!({"action": "republish", "image": ARN, "dry_run": true})).unwrap(),
            Request::Republish {
                image_arn: ARN.into(),
                dry_run: true
            }
        );
        for (input, needle) in [
            (
                event(
                    "AVAILABLE",
                    "arn:aws:imagebuilder:us-east-1:123456789012:image/x'; calc/1.0.0/1",
                ),
                "resources[0]",
            ),
            (event("AVAILABLE", "arn:aws:s3:::bucket"), "resources[0]"),
            (event("EXPLODED", ARN), "detail.state.status"),
            (json!({"source": "aws.ecr"}), "source"),
            (json!({"action": "delete-everything"}), "action"),
            (json!({"action": "republish"}), "image"),
            (
                json!({"action": "rollback", "force": true}),
                "unknown field",
            ),
        ] {
            let error = read_request(&input).unwrap_err().to_string();
            assert!(error.contains(needle), "{input}: {error}");
        }
    }

    #[test]
    fn a_rollback_writes_the_home_region_last_and_only_a_build_that_made_the_previous_ami() {
        let amis = vec![
            ("us-east-1".to_owned(), "ami-1".to_owned()),
            ("eu-west-1".to_owned(), "ami-2".to_owned()),
            ("ap-south-1".to_owned(), "ami-3".to_owned()),
        ];
        let regions: Vec<String> = home_last("us-east-1", "ami-1", amis.clone())
            .unwrap()
            .into_iter()
            .map(|(region, _)| region)
            .collect();
        assert_eq!(regions, ["eu-west-1", "ap-south-1", "us-east-1"]);
        assert_eq!(home_last("us-east-1", "ami-9", amis.clone()), None);
        assert_eq!(home_last("sa-east-1", "ami-1", amis), None);
    }

    #[test]
    fn labels_follow_ssm_rules() {
        assert_eq!(
            build_label(ARN),
            "image-prepull-windows-cache-recipe-1.0.0-3"
        );
        let long = format!(
            "arn:aws:imagebuilder:us-east-1:123456789012:image/{}/1.0.0/3",
            "a".repeat(128)
        );
        assert_eq!(build_label(&long).len(), 100);
    }

    #[test]
    fn settings_default_and_name_bad_values() {
        let settings = FleetSettings::from_lookup(|_| None).unwrap();
        assert_eq!(
            (
                settings.parameter.as_str(),
                settings.min_healthy_percent,
                settings.warmup_seconds,
                settings.in_progress
            ),
            ("/prepull/ami-id", 90, 300, InProgress::Replace)
        );
        assert!(settings.asg_names.is_empty());
        for (variable, value) in [
            ("PREPULL_AMI_PARAMETER", "/aws/service/x"),
            ("PREPULL_AMI_PARAMETER", "no-slash"),
            ("PREPULL_REFRESH_MIN_HEALTHY_PERCENT", "101"),
            ("PREPULL_REFRESH_IN_PROGRESS", "cancel"),
            ("PREPULL_REFRESH_SCALE_IN_PROTECTED", "refresh"),
            ("PREPULL_ASG_NAMES", "a,b\nc"),
        ] {
            let error = FleetSettings::from_lookup(|n| (n == variable).then(|| value.to_owned()))
                .unwrap_err();
            assert_eq!(error.variable, variable, "{value}");
        }
    }
}
