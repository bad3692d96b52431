//! Builds of the image pipeline: their statuses, the tags prepull puts on them, and the one
//! decision every trigger shares: start a build now, or not.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::arn::ImageBuilderArn;
use crate::image::quote;
use crate::manifest::sha256_hex;
use crate::token::{TOKEN_LIMIT, client_token};

/// The image tag that records which manifest a build was started for.
pub const MANIFEST_TAG: &str = "prepull:manifest";
/// The image tag that records what started a build.
pub const TRIGGER_TAG: &str = "prepull:trigger";
/// The image tag that records the cache component version current when a build started.
pub const COMPONENT_VERSION_TAG: &str = "prepull:component-version";
/// The image tag that records the parent image's value (an AMI ID, for an `ssm:` parent)
/// when the build started.
pub const PARENT_IMAGE_TAG: &str = "prepull:parent-image";
/// The image tag that carries an operator's reason for a forced build.
pub const REASON_TAG: &str = "prepull:reason";
/// The oldest push in the build's manifest that the AMI published before it lacks: where the
/// push-to-AMI latency starts (see [`crate::metrics::oldest_new_push`]).
pub const OLDEST_NEW_PUSH_TAG: &str = "prepull:oldest-new-push";

/// An image's status, as Image Builder's `ImageStatus` lists them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum BuildStatus {
    Pending,
    Creating,
    Building,
    Testing,
    Distributing,
    Integrating,
    Available,
    Cancelled,
    Failed,
    Deprecated,
    Deleted,
    Disabled,
}

impl BuildStatus {
    pub const ALL: [BuildStatus; 12] = [
        BuildStatus::Pending,
        BuildStatus::Creating,
        BuildStatus::Building,
        BuildStatus::Testing,
        BuildStatus::Distributing,
        BuildStatus::Integrating,
        BuildStatus::Available,
        BuildStatus::Cancelled,
        BuildStatus::Failed,
        BuildStatus::Deprecated,
        BuildStatus::Deleted,
        BuildStatus::Disabled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            BuildStatus::Pending => "PENDING",
            BuildStatus::Creating => "CREATING",
            BuildStatus::Building => "BUILDING",
            BuildStatus::Testing => "TESTING",
            BuildStatus::Distributing => "DISTRIBUTING",
            BuildStatus::Integrating => "INTEGRATING",
            BuildStatus::Available => "AVAILABLE",
            BuildStatus::Cancelled => "CANCELLED",
            BuildStatus::Failed => "FAILED",
            BuildStatus::Deprecated => "DEPRECATED",
            BuildStatus::Deleted => "DELETED",
            BuildStatus::Disabled => "DISABLED",
        }
    }

    /// A build that can still move on: while one exists, no other starts.
    pub fn is_running(self) -> bool {
        matches!(
            self,
            BuildStatus::Pending
                | BuildStatus::Creating
                | BuildStatus::Building
                | BuildStatus::Testing
                | BuildStatus::Distributing
                | BuildStatus::Integrating
        )
    }

    /// A build that has just ended, one way or the other: what build-finished acts on.
    pub fn is_finished(self) -> bool {
        matches!(
            self,
            BuildStatus::Available | BuildStatus::Failed | BuildStatus::Cancelled
        )
    }

    /// An image whose AMIs still exist (a lifecycle policy deprecates, it does not delete).
    pub fn has_amis(self) -> bool {
        matches!(self, BuildStatus::Available | BuildStatus::Deprecated)
    }
}

impl fmt::Display for BuildStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

crate::eq_text!(BuildStatus);

/// A status Image Builder does not list.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0} is not an image status")]
pub struct UnknownStatus(pub String);

impl FromStr for BuildStatus {
    type Err = UnknownStatus;
    fn from_str(value: &str) -> Result<Self, Self::Err> {
        BuildStatus::ALL
            .into_iter()
            .find(|s| s.as_str() == value)
            .ok_or_else(|| UnknownStatus(quote(value)))
    }
}

/// One image of the pipeline, as the build decisions need it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildSummary {
    pub arn: ImageBuilderArn,
    pub status: BuildStatus,
    pub manifest_hash: Option<String>,
    pub parent_image: Option<String>,
    pub date_created: Option<DateTime<Utc>>,
    /// The cache component version it was started for (its `prepull:component-version` tag).
    pub component_version: Option<String>,
}

/// A build one of the three triggers (a push, patch day, a follow-up) found due: how its
/// client token is made, and its tags before the parent image is added (see [`DueBuild::request`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DueBuild {
    pub token: BuildToken,
    pub tags: Vec<(String, String)>,
}

/// A build request as sent: its client token and every tag. A dry run prints it; the real run
/// sends exactly it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BuildRequest {
    pub client_token: String,
    pub tags: Vec<(String, String)>,
}

impl DueBuild {
    /// The request, with the push-to-AMI latency tag (when there is one) and the parent
    /// image's current value: both are part of the build's identity.
    pub fn request(
        mut self,
        latency: Option<(String, String)>,
        parent_image: Option<&str>,
    ) -> BuildRequest {
        self.tags.extend(latency);
        let (client_token, tags) = build_request(self.token, self.tags, parent_image);
        BuildRequest { client_token, tags }
    }
}

/// Where a wanted build ended up: the one vocabulary of image-pushed, patch-day and
/// build-finished's follow-up, whether it was decided from the listing or by a start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BuildOutcome {
    /// This request started the build.
    Started(ImageBuilderArn),
    /// The same request was made before and that build ended without an image;
    /// `StartImagePipelineExecution` returned it and started nothing.
    AlreadyAttempted {
        arn: ImageBuilderArn,
        status: BuildStatus,
    },
    /// Another build is running (found in the listing, or started at the same moment, when
    /// this one yielded): build-finished starts the follow-up when it ends. `same_manifest`:
    /// that build already caches the wanted manifest.
    Queued {
        running: ImageBuilderArn,
        same_manifest: bool,
    },
    /// An AVAILABLE image already caches this manifest.
    AlreadyBuilt(ImageBuilderArn),
    /// A concurrent writer's newer component version carries this change; its writer builds it.
    Superseded(ImageBuilderArn),
    /// Nothing to build: the build that ended carried the latest manifest.
    NotNeeded,
    /// Due, but not started: the manifest is empty, or pins a digest ECR no longer has. The
    /// next reconcile (a push, a deletion's event, the daily run) fixes the manifest and builds.
    Withheld(String),
}

/// Whether to start a build: due, or settled without one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BuildDecision {
    Start(DueBuild),
    Settled(BuildOutcome),
}

/// One build at a time: never start while another runs, never build a manifest twice.
pub fn decide_build(
    images: &[BuildSummary],
    manifest_hash: &str,
    component_version: &str,
    trigger: &str,
) -> BuildDecision {
    if let Some(running) = images.iter().find(|i| i.status.is_running()) {
        return BuildDecision::Settled(BuildOutcome::Queued {
            running: running.arn.clone(),
            same_manifest: running.manifest_hash.as_deref() == Some(manifest_hash),
        });
    }
    if let Some(built) = images.iter().find(|i| {
        i.manifest_hash.as_deref() == Some(manifest_hash) && i.status == BuildStatus::Available
    }) {
        return BuildDecision::Settled(BuildOutcome::AlreadyBuilt(built.arn.clone()));
    }
    BuildDecision::Start(DueBuild {
        token: BuildToken::Derived(format!("b{component_version}")),
        tags: vec![
            (MANIFEST_TAG.to_owned(), manifest_hash.to_owned()),
            (TRIGGER_TAG.to_owned(), trigger.to_owned()),
            (
                COMPONENT_VERSION_TAG.to_owned(),
                component_version.to_owned(),
            ),
        ],
    })
}

/// Whether some image already carries (or is building) `manifest_hash`. A version written by
/// an earlier run that failed before starting its build is not built.
pub fn is_built(images: &[BuildSummary], manifest_hash: &str) -> bool {
    images.iter().any(|b| {
        b.manifest_hash.as_deref() == Some(manifest_hash)
            && (b.status == BuildStatus::Available || b.status.is_running())
    })
}

/// The running build, if any.
pub fn running_build(images: &[BuildSummary]) -> Option<&BuildSummary> {
    images.iter().find(|b| b.status.is_running())
}

/// The newest AVAILABLE image that says when it was made.
pub fn newest_available(images: &[BuildSummary]) -> Option<(DateTime<Utc>, &BuildSummary)> {
    images
        .iter()
        .filter(|b| b.status == BuildStatus::Available)
        .filter_map(|b| Some((b.date_created?, b)))
        .max_by_key(|(at, _)| *at)
}

fn start_order(
    a: &ImageBuilderArn,
    a_created: Option<DateTime<Utc>>,
    b: &ImageBuilderArn,
    b_created: Option<DateTime<Utc>>,
) -> Option<std::cmp::Ordering> {
    if a.name() == b.name() {
        Some(a.creation_order().cmp(&b.creation_order()))
    } else {
        Some(a_created?.cmp(&b_created?))
    }
}

fn created(arn: &ImageBuilderArn, listed: &[BuildSummary]) -> Option<DateTime<Utc>> {
    listed.iter().find(|b| b.arn == *arn)?.date_created
}

/// The builds in `listed` other than `ours`, in `status`, that started on `side` of it.
fn started_on<'a>(
    ours: &'a ImageBuilderArn,
    listed: &'a [BuildSummary],
    status: impl Fn(BuildStatus) -> bool + 'a,
    side: std::cmp::Ordering,
) -> impl Iterator<Item = &'a BuildSummary> + 'a {
    let ours_created = created(ours, listed);
    listed.iter().filter(move |b| {
        status(b.status)
            && b.arn != *ours
            && start_order(&b.arn, b.date_created, ours, ours_created) == Some(side)
    })
}

/// Orders builds by when they started, as far as [`start_order`] can tell.
fn by_start(x: &&BuildSummary, y: &&BuildSummary) -> std::cmp::Ordering {
    start_order(&x.arn, x.date_created, &y.arn, y.date_created).unwrap_or(std::cmp::Ordering::Equal)
}

/// One build at a time, even when two invocations started one each at the same moment: the
/// check before a start and the start are not one step. Read again after starting, every
/// running build other than ours that started first wins, and ours yields to the first of
/// them. Both racers read the same facts, so exactly one build goes on.
pub fn yields_to<'a>(
    ours: &'a ImageBuilderArn,
    listed: &'a [BuildSummary],
) -> Option<&'a BuildSummary> {
    started_on(
        ours,
        listed,
        BuildStatus::is_running,
        std::cmp::Ordering::Less,
    )
    .min_by(by_start)
}

/// The newest AVAILABLE build that started after `ours`, if any: an AVAILABLE event for `ours`
/// then comes late (events arrive in any order, and a failed invocation is retried minutes
/// later), and publishing it would put an older AMI over a newer one. Decided from Image
/// Builder's own facts, whether or not the newer one was published yet.
pub fn newer_available<'a>(
    ours: &'a ImageBuilderArn,
    listed: &'a [BuildSummary],
) -> Option<&'a BuildSummary> {
    started_on(
        ours,
        listed,
        |s| s == BuildStatus::Available,
        std::cmp::Ordering::Greater,
    )
    .max_by(by_start)
}

/// The builds of `ours`'s image version that started just before it and the listing does not
/// show yet. Image Builder numbers a version's builds as it starts them, so build 5 means builds
/// 1 to 4 were started; ListImagePipelineImages is eventually consistent, and one started a
/// moment ago may be missing from it. Only the numbers above the highest one listed count: an
/// older build missing from the listing was deleted (a lifecycle policy's doing), not delayed.
pub fn unlisted_predecessors(ours: &ImageBuilderArn, listed: &[BuildSummary]) -> Vec<u32> {
    let Some(build) = ours.build() else {
        return Vec::new();
    };
    let newest_listed = listed
        .iter()
        .filter(|b| b.arn.name() == ours.name() && b.arn.version() == ours.version())
        .filter_map(|b| b.arn.build())
        .filter(|n| *n < build)
        .max()
        .unwrap_or(0);
    (newest_listed + 1..build).collect()
}

/// Reads the ARN `StartImagePipelineExecution` returned against the builds listed before it.
pub fn started_build(arn: ImageBuilderArn, listed: &[BuildSummary]) -> BuildOutcome {
    match listed.iter().find(|build| build.arn == arn) {
        Some(earlier) => BuildOutcome::AlreadyAttempted {
            status: earlier.status,
            arn,
        },
        None => BuildOutcome::Started(arn),
    }
}

/// How a build's client token is made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BuildToken {
    /// Exactly this token: a forced build uses its invocation's request id.
    Exact(String),
    /// This prefix and a hash of every tag: the same request converges on one build, and a
    /// request that differs in anything (trigger, manifest, parent image) is a new one
    /// rather than an `IdempotentParameterMismatchException`.
    Derived(String),
}

/// The final token and tags of a build: the parent image's current value is recorded too.
pub fn build_request(
    token: BuildToken,
    mut tags: Vec<(String, String)>,
    parent_image: Option<&str>,
) -> (String, Vec<(String, String)>) {
    if let Some(parent) = parent_image {
        tags.push((PARENT_IMAGE_TAG.to_owned(), parent.to_owned()));
    }
    let token = match token {
        BuildToken::Exact(token) => token.chars().take(TOKEN_LIMIT).collect(),
        BuildToken::Derived(prefix) => {
            let mut sorted = tags.clone();
            sorted.sort();
            let joined: Vec<String> = sorted.iter().map(|(k, v)| format!("{k}={v}")).collect();
            client_token(&prefix, "", &sha256_hex(joined.join("\n").as_bytes()))
        }
    };
    (token, tags)
}

impl fmt::Display for BuildOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BuildOutcome::NotNeeded => f.write_str("not-needed"),
            BuildOutcome::Queued { running, .. } => write!(f, "running {running}"),
            BuildOutcome::Started(arn) => write!(f, "started {arn}"),
            BuildOutcome::AlreadyAttempted { arn, status } => {
                write!(f, "already-attempted {arn} ({status})")
            }
            BuildOutcome::AlreadyBuilt(arn) => write!(f, "already-built {arn}"),
            BuildOutcome::Superseded(arn) => write!(f, "superseded by {arn}"),
            BuildOutcome::Withheld(reason) => write!(f, "withheld: {reason}"),
        }
    }
}

/// build-finished's `follow_up` is a string operators read and match on.
impl Serialize for BuildOutcome {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

/// Whether a build that ended needs a follow-up: only when the component moved on from the
/// manifest it built, and then by the same one-at-a-time rule as every other build. An image
/// that already caches the latest manifest means none is needed.
pub fn decide_follow_up(
    built_manifest: Option<&str>,
    latest_manifest: &str,
    images: &[BuildSummary],
    latest_version: &str,
) -> BuildDecision {
    if built_manifest == Some(latest_manifest) {
        return BuildDecision::Settled(BuildOutcome::NotNeeded);
    }
    match decide_build(images, latest_manifest, latest_version, "follow-up") {
        BuildDecision::Settled(BuildOutcome::AlreadyBuilt(_)) => {
            BuildDecision::Settled(BuildOutcome::NotNeeded)
        }
        decision => decision,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn arn(build: u32) -> ImageBuilderArn {
        ImageBuilderArn::parse(&format!(
            "arn:aws:imagebuilder:us-east-1:123456789012:image/prepull/1.0.0/{build}"
        ))
        .unwrap()
    }

    fn image(build: u32, status: BuildStatus, hash: Option<&str>) -> BuildSummary {
        BuildSummary {
            arn: arn(build),
            status,
            manifest_hash: hash.map(str::to_owned),
            parent_image: None,
            date_created: None,
            component_version: None,
        }
    }

    #[test]
    fn statuses_read_and_print_as_image_builder_spells_them() {
        for status in BuildStatus::ALL {
            assert_eq!(status.as_str().parse::<BuildStatus>(), Ok(status));
            assert_eq!(
                serde_json::to_value(status).unwrap(),
                serde_json::json!(status.as_str())
            );
        }
        assert!("available".parse::<BuildStatus>().is_err());
        let running: Vec<_> = BuildStatus::ALL
            .into_iter()
            .filter(|s| s.is_running())
            .collect();
        assert_eq!(running.len(), 6);
        assert!(!running.iter().any(|s| s.is_finished()));
    }

    #[test]
    fn one_build_at_a_time_and_never_the_same_manifest_twice() {
        use BuildStatus::{Available, Building, Failed};
        let cases: [(Vec<BuildSummary>, BuildDecision); 4] = [
            (
                vec![
                    image(1, Available, Some("h1")),
                    image(2, Building, Some("h2")),
                ],
                BuildDecision::Settled(BuildOutcome::Queued {
                    running: arn(2),
                    same_manifest: false,
                }),
            ),
            (
                vec![image(2, Building, Some("h3"))],
                BuildDecision::Settled(BuildOutcome::Queued {
                    running: arn(2),
                    same_manifest: true,
                }),
            ),
            (
                vec![image(1, Available, Some("h3"))],
                BuildDecision::Settled(BuildOutcome::AlreadyBuilt(arn(1))),
            ),
            (
                vec![image(1, Failed, Some("h3"))],
                decide_build(&[], "h3", "1.0.4", "push"),
            ),
        ];
        for (images, expected) in cases {
            assert_eq!(decide_build(&images, "h3", "1.0.4", "push"), expected);
        }
        let BuildDecision::Start(DueBuild { token, tags }) =
            decide_build(&[], "h3", "1.0.4", "push")
        else {
            panic!()
        };
        assert_eq!(token, BuildToken::Derived("b1.0.4".to_owned()));
        assert!(tags.contains(&(MANIFEST_TAG.to_owned(), "h3".to_owned())));
    }

    #[test]
    fn built_means_available_or_running_with_the_manifest() {
        use BuildStatus::{Available, Building, Cancelled, Failed};
        let cases = [
            (vec![image(1, Available, Some("h"))], true),
            (vec![image(1, Building, Some("h"))], true),
            (
                vec![image(1, Failed, Some("h")), image(2, Cancelled, Some("h"))],
                false,
            ),
            (vec![image(1, Available, Some("other"))], false),
            (vec![], false),
        ];
        for (images, expected) in cases {
            assert_eq!(is_built(&images, "h"), expected, "{images:?}");
        }
    }

    #[test]
    fn a_returned_arn_the_listing_already_held_is_an_earlier_build_not_a_new_one() {
        let failed = image(1, BuildStatus::Failed, Some("m"));
        assert_eq!(
            started_build(arn(1), std::slice::from_ref(&failed)),
            BuildOutcome::AlreadyAttempted {
                arn: arn(1),
                status: BuildStatus::Failed
            }
        );
        assert_eq!(
            started_build(arn(2), &[failed]),
            BuildOutcome::Started(arn(2))
        );
    }

    #[test]
    fn derived_tokens_follow_every_tag_and_exact_ones_are_cut_to_36() {
        let tags = || {
            vec![
                ("a".to_owned(), "1".to_owned()),
                ("b".to_owned(), "2".to_owned()),
            ]
        };
        let (first, with_parent) =
            build_request(BuildToken::Derived("b1.0.0".into()), tags(), Some("ami-1"));
        let (again, _) = build_request(BuildToken::Derived("b1.0.0".into()), tags(), Some("ami-1"));
        let (other, _) = build_request(BuildToken::Derived("b1.0.0".into()), tags(), Some("ami-2"));
        assert_eq!(first, again);
        assert_ne!(first, other, "a new parent image is a new build");
        assert!(first.len() <= TOKEN_LIMIT && first.starts_with("b1.0.0-"));
        assert!(with_parent.contains(&(PARENT_IMAGE_TAG.to_owned(), "ami-1".to_owned())));
        let (exact, _) = build_request(BuildToken::Exact("r".repeat(50)), tags(), None);
        assert_eq!(exact.len(), TOKEN_LIMIT);
    }

    #[test]
    fn a_follow_up_only_when_the_component_moved_on() {
        use BuildStatus::{Available, Building};
        let done = BuildDecision::Settled;
        assert_eq!(
            decide_follow_up(Some("h"), "h", &[], "1.0.1"),
            done(BuildOutcome::NotNeeded)
        );
        assert_eq!(
            decide_follow_up(Some("h"), "h2", &[image(2, Building, Some("h3"))], "1.0.2"),
            done(BuildOutcome::Queued {
                running: arn(2),
                same_manifest: false
            })
        );
        assert_eq!(
            decide_follow_up(Some("h"), "h2", &[image(2, Available, Some("h2"))], "1.0.2"),
            done(BuildOutcome::NotNeeded)
        );
        assert!(matches!(
            decide_follow_up(Some("h"), "h2", &[image(1, Available, Some("h"))], "1.0.2"),
            BuildDecision::Start(_)
        ));
        let texts = [
            (BuildOutcome::NotNeeded, "not-needed".to_owned()),
            (
                BuildOutcome::Queued {
                    running: arn(2),
                    same_manifest: true,
                },
                format!("running {}", arn(2)),
            ),
            (BuildOutcome::Started(arn(2)), format!("started {}", arn(2))),
            (
                BuildOutcome::AlreadyAttempted {
                    arn: arn(2),
                    status: BuildStatus::Failed,
                },
                format!("already-attempted {} (FAILED)", arn(2)),
            ),
        ];
        for (follow_up, text) in texts {
            assert_eq!(
                serde_json::to_value(&follow_up).unwrap(),
                serde_json::json!(text)
            );
        }
    }

    #[test]
    fn of_two_builds_started_at_once_the_later_yields() {
        use BuildStatus::{Available, Building, Cancelled};
        let recipe = |version: &str, build: u32| {
            ImageBuilderArn::parse(&format!(
                "arn:aws:imagebuilder:us-east-1:123456789012:image/prepull/{version}/{build}"
            ))
            .unwrap()
        };
        let listed = |builds: &[(ImageBuilderArn, BuildStatus)]| -> Vec<BuildSummary> {
            builds
                .iter()
                .map(|(arn, status)| BuildSummary {
                    arn: arn.clone(),
                    status: *status,
                    manifest_hash: None,
                    parent_image: None,
                    date_created: None,
                    component_version: None,
                })
                .collect()
        };
        let both = listed(&[
            (recipe("1.0.0", 4), Building),
            (recipe("1.0.0", 5), Building),
        ]);
        assert_eq!(
            yields_to(&recipe("1.0.0", 5), &both).map(|b| b.arn.clone()),
            Some(recipe("1.0.0", 4))
        );
        assert_eq!(
            yields_to(&recipe("1.0.0", 4), &both),
            None,
            "the first goes on"
        );
        let newer_recipe = listed(&[
            (recipe("1.0.0", 9), Building),
            (recipe("1.0.1", 1), Building),
        ]);
        assert_eq!(
            yields_to(&recipe("1.0.1", 1), &newer_recipe).map(|b| b.arn.clone()),
            Some(recipe("1.0.0", 9)),
            "a newer recipe version started later"
        );
        let ended = listed(&[
            (recipe("1.0.0", 3), Available),
            (recipe("1.0.0", 4), Cancelled),
        ]);
        assert_eq!(
            yields_to(&recipe("1.0.0", 5), &ended),
            None,
            "only running builds count"
        );
    }

    #[test]
    fn a_build_is_superseded_only_by_a_newer_available_one() {
        use BuildStatus::{Available, Building, Failed};
        let summary = |build: u32, status: BuildStatus| image(build, status, None);
        let listed = [
            summary(3, Available),
            summary(4, Failed),
            summary(5, Available),
            summary(6, Building),
        ];
        let newer = |ours: u32| newer_available(&arn(ours), &listed).map(|b| b.arn.clone());
        assert_eq!(newer(3), Some(arn(5)), "the newest of the newer ones");
        assert_eq!(newer(4), Some(arn(5)));
        assert_eq!(
            newer(5),
            None,
            "a failed or running later build supersedes nothing"
        );
        assert_eq!(newer(7), None);
    }

    #[test]
    fn builds_numbered_before_ours_that_the_listing_lacks_are_found() {
        use BuildStatus::{Available, Building};
        let listed = [image(1, Available, None), image(3, Building, None)];
        assert_eq!(
            unlisted_predecessors(&arn(5), &listed),
            [4],
            "2 is older than a listed build: deleted, not delayed"
        );
        assert!(unlisted_predecessors(&arn(2), &listed).is_empty());
        assert!(unlisted_predecessors(&arn(4), &listed).is_empty());
        let other_version = ImageBuilderArn::parse(
            "arn:aws:imagebuilder:us-east-1:123456789012:image/prepull/1.0.1/2",
        )
        .unwrap();
        assert_eq!(unlisted_predecessors(&other_version, &listed), [1]);
    }

    #[test]
    fn builds_of_another_recipe_are_ordered_by_date_not_by_version() {
        let at = |t: &str| Some(DateTime::parse_from_rfc3339(t).unwrap().with_timezone(&Utc));
        let build = |recipe: &str, version: &str, created: &str| BuildSummary {
            arn: ImageBuilderArn::parse(&format!(
                "arn:aws:imagebuilder:us-east-1:123456789012:image/{recipe}/{version}/1"
            ))
            .unwrap(),
            status: BuildStatus::Available,
            manifest_hash: None,
            parent_image: None,
            date_created: at(created),
            component_version: None,
        };
        // The pipeline moved from recipe `old` at 1.0.7 to recipe `new` at 1.0.0.
        let listed = [
            build("old", "1.0.7", "2026-11-01T00:00:00Z"),
            build("new", "1.0.0", "2026-11-20T00:00:00Z"),
        ];
        assert_eq!(
            newer_available(&listed[1].arn, &listed),
            None,
            "the new recipe's is newest"
        );
        assert_eq!(
            newer_available(&listed[0].arn, &listed).map(|b| b.arn.clone()),
            Some(listed[1].arn.clone())
        );
    }
}
