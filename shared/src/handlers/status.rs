//! The status report (`{"action":"status"}` to build-finished): what is true now, read from
//! AWS with no mutating call. Each fact names the read it came from; a read that fails makes
//! that fact unknown, not the whole report an error.

use chrono::{DateTime, Utc};
use prepull_core::arn::ImageBuilderArn;
use prepull_core::build::{BuildStatus, BuildSummary, newest_available, running_build};
use prepull_core::component::ComponentState;
use prepull_core::config::FleetSettings;
use prepull_core::image::Digest;
use prepull_core::launch_template::{Expected, Misconfiguration};
use prepull_core::parameter::own_amis;
use prepull_core::refresh::RefreshStatus;
use prepull_core::status::{
    DigestInEcr, ExpectedFollowUp, Fact, age_seconds, build_of, compare_with_ecr,
    expected_follow_up,
};
use serde::Serialize;

use crate::aws::{autoscaling, ecr, imagebuilder, ssm};
use crate::common::Common;
use crate::error::PrepullError;
use crate::handlers::launch_template::{LaunchCheck, problems_by_group};

#[derive(Debug, Clone, Serialize)]
pub struct StatusReport {
    /// When the reads were made.
    pub checked_at: DateTime<Utc>,
    pub pipeline: String,
    /// Every watched image: the digest the cache pins and what ECR says now.
    pub manifest: Fact<Vec<WatchedImage>>,
    /// The latest cache component version, and the build that carries it.
    pub component: Fact<Option<ComponentVersion>>,
    pub running_build: Fact<Option<RunningBuild>>,
    /// The newest AVAILABLE image and its AMI in each region.
    pub last_image: Fact<Option<LastImage>>,
    /// The AMI parameter in the home region and every region the last image reached.
    pub parameters: Vec<InRegion<Option<ParameterState>>>,
    /// Each configured group's most recent instance refresh.
    pub refreshes: Vec<InGroup<Option<RefreshState>>>,
    /// For each configured group, why its launch template could not launch the AMI the home
    /// parameter holds now (empty: it can), as build-finished checks before a refresh.
    pub launch_templates: Vec<InGroup<Vec<Misconfiguration>>>,
}

#[derive(Debug, Clone, Serialize)]
pub struct WatchedImage {
    pub image: String,
    /// `None`: the cache does not hold this image (ECR had no such tag when it was written).
    pub cached_digest: Option<Digest>,
    /// When the cached digest was pushed, or read from ECR as current.
    pub pushed_at: Option<DateTime<Utc>>,
    pub ecr: Fact<DigestInEcr>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ComponentVersion {
    pub version: String,
    pub build_arn: Option<ImageBuilderArn>,
    pub manifest_hash: String,
    /// The image built (or building) from this version's manifest, if any.
    pub build: Fact<Option<BuildRef>>,
}

#[derive(Debug, Clone, Serialize)]
pub struct BuildRef {
    pub arn: ImageBuilderArn,
    pub status: BuildStatus,
}

#[derive(Debug, Clone, Serialize)]
pub struct RunningBuild {
    pub arn: ImageBuilderArn,
    pub status: BuildStatus,
    pub age_seconds: Option<i64>,
    /// What build-finished will do when it ends.
    pub follow_up: Fact<ExpectedFollowUp>,
}

#[derive(Debug, Clone, Serialize)]
pub struct LastImage {
    pub arn: ImageBuilderArn,
    pub created: Option<DateTime<Utc>>,
    pub amis: Vec<RegionalAmiStatus>,
}

#[derive(Debug, Clone, Serialize)]
pub struct RegionalAmiStatus {
    pub region: String,
    pub ami: String,
    /// Whether the region's parameter holds this AMI now; `None` when that read failed.
    pub in_parameter: Option<bool>,
}

#[derive(Debug, Clone, Serialize)]
pub struct ParameterState {
    pub value: String,
    pub version: i64,
    pub labels: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct RefreshState {
    pub id: String,
    pub status: RefreshStatus,
    pub percentage_complete: Option<i32>,
    pub started: Option<DateTime<Utc>>,
    pub age_seconds: Option<i64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct InRegion<T> {
    pub region: String,
    #[serde(flatten)]
    pub fact: Fact<T>,
}

#[derive(Debug, Clone, Serialize)]
pub struct InGroup<T> {
    pub group: String,
    #[serde(flatten)]
    pub fact: Fact<T>,
}

/// Reads everything the report shows. The component, the builds, the ECR digests and the
/// refreshes are independent reads and run side by side; the last image's AMIs decide which
/// regions' parameters are read.
pub async fn report(common: &Common, settings: &FleetSettings, now: DateTime<Utc>) -> StatusReport {
    let config = &common.config;
    let client = common.clients.imagebuilder();
    let pipeline = config.pipeline.as_str();
    let (state, builds, digests, refreshes) = tokio::join!(
        imagebuilder::read_component_state(client, &config.component_name),
        imagebuilder::list_builds(client, pipeline),
        ecr::current_digests(&common.clients, &config.images),
        read_refreshes(common, settings, now),
    );
    let component_source = format!(
        "imagebuilder:ListComponents, ListComponentBuildVersions and GetComponent {}",
        config.component_name
    );
    let builds_source = format!("imagebuilder:ListImagePipelineImages {pipeline}");

    let manifest = match &state {
        Ok(state) => Fact::known(
            component_source.clone(),
            watched_images(common, state, digests),
        ),
        Err(error) => Fact::unknown(component_source.clone(), error),
    };
    let component = Fact::read(
        component_source.clone(),
        state.as_ref().map(|state| {
            state
                .latest_version
                .as_ref()
                .map(|version| ComponentVersion {
                    version: version.to_string(),
                    build_arn: state.latest_build_arn.clone(),
                    manifest_hash: state.latest_manifest.hash(),
                    build: Fact::read(
                        builds_source.clone(),
                        builds.as_ref().map(|builds| {
                            build_of(builds, &state.latest_manifest.hash()).map(|b| BuildRef {
                                arn: b.arn.clone(),
                                status: b.status,
                            })
                        }),
                    ),
                })
        }),
    );
    let running = Fact::read(
        builds_source.clone(),
        builds.as_ref().map(|builds| {
            running_build(builds).map(|b| running_now(b, &state, &component_source, now))
        }),
    );

    let (last_image, regions, ami_root_gib) = read_last_image(common, &builds, builds_source).await;
    let parameters = read_parameters(common, settings, regions).await;
    let home_value = parameters
        .iter()
        .find(|p| p.region == config.pipeline.region())
        .and_then(|p| p.fact.value().cloned().flatten())
        .map(|p| p.value);
    let check = LaunchCheck {
        expected: Expected {
            parameter: &settings.parameter,
            ami_root_gib,
        },
        ami: home_value.as_deref(),
    };
    let launch_templates = read_launch_templates(common, settings, check).await;
    let mut report = StatusReport {
        checked_at: now,
        pipeline: pipeline.to_owned(),
        manifest,
        component,
        running_build: running,
        last_image,
        parameters,
        refreshes,
        launch_templates,
    };
    mark_published(&mut report);
    tracing::info!("status reported");
    report
}

/// Each configured group's most recent instance refresh.
async fn read_refreshes(
    common: &Common,
    settings: &FleetSettings,
    now: DateTime<Utc>,
) -> Vec<InGroup<Option<RefreshState>>> {
    let mut refreshes = Vec::new();
    for group in &settings.asg_names {
        let read = autoscaling::recent_refreshes(common.clients.autoscaling(), group).await;
        refreshes.push(InGroup {
            group: group.clone(),
            fact: Fact::read(
                format!("autoscaling:DescribeInstanceRefreshes {group}"),
                read.map(|r| {
                    r.into_iter().next().map(|r| RefreshState {
                        age_seconds: age_seconds(now, r.started),
                        id: r.id,
                        status: r.status,
                        percentage_complete: r.percentage_complete,
                        started: r.started,
                    })
                }),
            ),
        });
    }
    refreshes
}

/// The newest AVAILABLE image, its AMI in each region, the regions, and its root volume's size.
async fn read_last_image(
    common: &Common,
    builds: &Result<Vec<BuildSummary>, PrepullError>,
    builds_source: String,
) -> (Fact<Option<LastImage>>, Vec<String>, Option<i32>) {
    let client = common.clients.imagebuilder();
    let last = builds
        .as_ref()
        .ok()
        .and_then(|b| newest_available(b).map(|(_, b)| b.clone()));
    match (builds, last) {
        (Err(error), _) => (Fact::unknown(builds_source, error), Vec::new(), None),
        (Ok(_), None) => (Fact::known(builds_source, None), Vec::new(), None),
        (Ok(_), Some(last)) => {
            let source = format!("{builds_source} and imagebuilder:GetImage {}", last.arn);
            match imagebuilder::get_image(client, &last.arn).await {
                Ok(image) => {
                    let root_gib = image.root_volume_gib;
                    let amis = own_amis(&image.amis, common.config.pipeline.account());
                    let regions = amis.iter().map(|a| a.region.clone()).collect();
                    let image = LastImage {
                        arn: last.arn.clone(),
                        created: last.date_created,
                        amis: amis
                            .into_iter()
                            .map(|a| RegionalAmiStatus {
                                region: a.region,
                                ami: a.ami,
                                in_parameter: None,
                            })
                            .collect(),
                    };
                    (Fact::known(source, Some(image)), regions, root_gib)
                }
                Err(error) => (Fact::unknown(source, error), Vec::new(), None),
            }
        }
    }
}

fn watched_images(
    common: &Common,
    state: &ComponentState,
    digests: Vec<Result<Option<Digest>, String>>,
) -> Vec<WatchedImage> {
    common
        .config
        .images
        .iter()
        .zip(digests)
        .map(|(image, in_ecr)| {
            let cached = state.latest_manifest.digest_of(image);
            WatchedImage {
                image: image.to_string(),
                cached_digest: cached.cloned(),
                pushed_at: state.latest_manifest.pushed_at(image),
                ecr: Fact::read(
                    format!("ecr:BatchGetImage {image}"),
                    in_ecr.map(|digest| compare_with_ecr(cached, digest.as_ref())),
                ),
            }
        })
        .collect()
}

fn running_now(
    build: &BuildSummary,
    state: &Result<ComponentState, PrepullError>,
    component_source: &str,
    now: DateTime<Utc>,
) -> RunningBuild {
    let follow_up = match state {
        Ok(state) => Fact::known(
            component_source,
            expected_follow_up(
                build,
                &state.latest_manifest.hash(),
                &state
                    .latest_version
                    .as_ref()
                    .map(ToString::to_string)
                    .unwrap_or_default(),
            ),
        ),
        Err(error) => Fact::unknown(component_source, error),
    };
    RunningBuild {
        arn: build.arn.clone(),
        status: build.status,
        age_seconds: age_seconds(now, build.date_created),
        follow_up,
    }
}

/// The parameter in the home region and in each of `regions`, each read on its own.
/// Each group's launch template, checked as build-finished checks it before a refresh: one
/// DescribeAutoScalingGroups, then each distinct launch template version once.
async fn read_launch_templates(
    common: &Common,
    settings: &FleetSettings,
    check: LaunchCheck<'_>,
) -> Vec<InGroup<Vec<Misconfiguration>>> {
    let source = |group: &str| {
        format!(
            "autoscaling:DescribeAutoScalingGroups and ec2:DescribeLaunchTemplateVersions {group}"
        )
    };
    match autoscaling::launches(common.clients.autoscaling(), &settings.asg_names).await {
        Err(error) => settings
            .asg_names
            .iter()
            .map(|group| InGroup {
                group: group.clone(),
                fact: Fact::unknown(source(group), &error),
            })
            .collect(),
        Ok(launches) => problems_by_group(common, settings, &launches, check)
            .await
            .into_iter()
            .map(|(group, problems)| InGroup {
                fact: Fact::read(source(&group), problems),
                group,
            })
            .collect(),
    }
}

async fn read_parameters(
    common: &Common,
    settings: &FleetSettings,
    regions: Vec<String>,
) -> Vec<InRegion<Option<ParameterState>>> {
    let home = common.config.pipeline.region().to_owned();
    let mut wanted = vec![home];
    for region in regions {
        if !wanted.contains(&region) {
            wanted.push(region);
        }
    }
    let parameter = &settings.parameter;
    let reads = wanted.into_iter().map(|region| async move {
        let history = ssm::read_history(&common.clients.ssm_in(&region), parameter).await;
        InRegion {
            fact: Fact::read(
                format!("ssm:GetParameterHistory {parameter} in {region}"),
                history.map(|versions| {
                    versions.into_iter().next_back().map(|v| ParameterState {
                        value: v.value,
                        version: v.version,
                        labels: v.labels,
                    })
                }),
            ),
            region,
        }
    });
    futures_util::future::join_all(reads).await
}

/// Marks each of the last image's AMIs with whether its region's parameter holds it.
fn mark_published(report: &mut StatusReport) {
    let Some(Some(image)) = report.last_image.value_mut() else {
        return;
    };
    for ami in &mut image.amis {
        ami.in_parameter = report
            .parameters
            .iter()
            .find(|p| p.region == ami.region)
            .and_then(|p| p.fact.value())
            .map(|held| held.as_ref().is_some_and(|p| p.value == ami.ami));
    }
}
