//! Pure decisions: from what Image Builder holds and what happened, what to do. Nothing here
//! calls AWS; the executor reads the state, asks these functions, and carries out the answer.

use semver::Version;
use serde::Serialize;

use crate::document::{self, DocumentError, Runtime};
use crate::events::Push;
use crate::image::ImageRef;
use crate::manifest::{Manifest, sha256_hex};

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

/// Image Builder's longest client token.
const TOKEN_LIMIT: usize = 36;

/// Image statuses from which a build can still move on: while one exists, no other starts.
pub const RUNNING_STATUSES: [&str; 6] = [
    "PENDING",
    "CREATING",
    "BUILDING",
    "TESTING",
    "DISTRIBUTING",
    "INTEGRATING",
];

/// The cache component as Image Builder holds it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ComponentState {
    /// The highest semantic version, if any exists.
    pub latest_version: Option<Version>,
    /// The build that `x.x.x` resolves to, and its manifest: what the next image will cache.
    pub latest_build_arn: Option<String>,
    pub latest_manifest: Manifest,
    /// Every build of the latest version merged, newest push winning: concurrent writers'
    /// work that the next version must keep.
    pub merged_manifest: Manifest,
    /// The runtime the latest document was rendered for.
    pub latest_runtime: Option<Runtime>,
}

/// The manifest this run wants, and how it got there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ManifestChange {
    pub desired: Manifest,
    /// Pushes that moved a digest, as `image@digest`.
    pub applied: Vec<String>,
}

/// The watched images the state and the pushes say nothing about: they need ECR.
pub fn images_to_resolve(
    state: &ComponentState,
    watched: &[ImageRef],
    pushes: &[Push],
) -> Vec<ImageRef> {
    watched
        .iter()
        .filter(|image| state.merged_manifest.digest_of(image).is_none())
        .filter(|image| !pushes.iter().any(|p| &p.image == *image))
        .cloned()
        .collect()
}

/// Applies the digests read from ECR, then the pushes (newest event per image wins), to the
/// merged manifest of the latest version, keeping only watched images.
pub fn desired_manifest(
    state: &ComponentState,
    watched: &[ImageRef],
    pushes: &[Push],
    resolved: &Manifest,
) -> ManifestChange {
    let mut desired = state.merged_manifest.clone();
    desired.retain_images(watched);
    // What ECR says now is the truth for the images it was asked about, even a tag moved back
    // to an older image.
    for pinned in resolved.images() {
        desired.pin(pinned.image, pinned.digest, pinned.pushed_at);
    }
    let mut newest: Vec<&Push> = Vec::new();
    for push in pushes {
        // Later in the batch wins a tie on time: SQS keeps the order EventBridge sent.
        match newest.iter_mut().find(|p| p.image == push.image) {
            Some(existing) if existing.time <= push.time => *existing = push,
            Some(_) => {}
            None => newest.push(push),
        }
    }
    let mut applied = Vec::new();
    for push in newest {
        let stale = desired
            .pushed_at(&push.image)
            .is_some_and(|known| known > push.time);
        if stale {
            continue;
        }
        if desired.digest_of(&push.image) != Some(&push.digest) {
            applied.push(format!("{}@{}", push.image, push.digest));
        }
        desired.pin(push.image.clone(), push.digest.clone(), Some(push.time));
    }
    desired.retain_images(watched);
    ManifestChange { desired, applied }
}

/// A new cache component version to create.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ComponentPlan {
    pub version: String,
    pub client_token: String,
    pub description: String,
    #[serde(skip)]
    pub document: String,
    pub manifest_hash: String,
}

/// The version after `latest`: the next patch, or 1.0.0 for the first.
pub fn next_version(latest: Option<&Version>) -> Version {
    latest.map_or_else(
        || Version::new(1, 0, 0),
        |v| Version::new(v.major, v.minor, v.patch + 1),
    )
}

/// A client token from a prefix, a version and the manifest hash, within Image Builder's
/// 36 characters. Equal inputs give equal tokens, so retries and concurrent writers of the
/// same content converge on one resource.
pub fn client_token(prefix: &str, version: &str, manifest_hash: &str) -> String {
    let mut token = format!("{prefix}{version}-{manifest_hash}");
    token.truncate(TOKEN_LIMIT);
    token
}

/// Decides whether the cache component needs a new version, and renders it.
pub fn plan_component(
    state: &ComponentState,
    change: &ManifestChange,
    runtime: Runtime,
    component_name: &str,
    trigger: &str,
) -> Result<Option<ComponentPlan>, DocumentError> {
    let unchanged =
        change.desired == state.latest_manifest && state.latest_runtime == Some(runtime);
    if unchanged {
        return Ok(None);
    }
    let version = next_version(state.latest_version.as_ref()).to_string();
    let manifest_hash = change.desired.hash();
    let document = document::render(&change.desired, runtime, component_name)?;
    let description = truncate(
        &format!("prepull: {trigger}; {} images", change.desired.len()),
        1024,
    );
    // The token follows the whole document, push times included: two writers that render the
    // same text converge on one version, and two that differ both write and are merged later.
    let client_token = client_token("c", &version, &sha256_hex(document.as_bytes()));
    Ok(Some(ComponentPlan {
        client_token,
        version,
        description,
        document,
        manifest_hash,
    }))
}

fn truncate(text: &str, limit: usize) -> String {
    text.chars().take(limit).collect()
}

/// How the pipeline's recipe refers to the cache component.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecipeReference {
    /// By a wildcard version such as `x.x.x`: every build takes the latest; nothing to do.
    Wildcard,
    /// By a fixed version: a new component version needs a new recipe version.
    Pinned { index: usize },
}

/// Finds the cache component among a recipe's component ARNs.
pub fn recipe_reference(component_arns: &[&str], component_name: &str) -> Option<RecipeReference> {
    let needle = format!(":component/{}/", component_name.to_lowercase());
    let index = component_arns
        .iter()
        .position(|arn| arn.contains(&needle))?;
    let version = component_arns[index]
        .split(&needle)
        .nth(1)
        .unwrap_or_default();
    if version
        .split('/')
        .next()
        .is_some_and(|v| v.split('.').any(|part| part == "x"))
    {
        Some(RecipeReference::Wildcard)
    } else {
        Some(RecipeReference::Pinned { index })
    }
}

/// A summary of one image of the pipeline, as the build decision needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildSummary {
    pub arn: String,
    pub status: String,
    pub manifest_hash: Option<String>,
    pub parent_image: Option<String>,
    pub date_created: Option<chrono::DateTime<chrono::Utc>>,
}

/// Whether to start a build.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "decision", rename_all = "kebab-case")]
pub enum BuildDecision {
    /// Start one, with this token and these tags.
    Start {
        token_prefix: String,
        tags: Vec<(String, String)>,
    },
    /// A build is running; the build-finished function starts the follow-up when it ends.
    QueuedBehind { image_arn: String },
    /// A build for this manifest was already started; nothing is missing.
    AlreadyStarted { image_arn: String },
}

/// One build at a time: never start while another runs, never start a manifest twice.
pub fn decide_build(
    images: &[BuildSummary],
    manifest_hash: &str,
    component_version: &str,
    trigger: &str,
) -> BuildDecision {
    if let Some(running) = images
        .iter()
        .find(|i| RUNNING_STATUSES.contains(&i.status.as_str()))
    {
        return BuildDecision::QueuedBehind {
            image_arn: running.arn.clone(),
        };
    }
    if let Some(built) = images
        .iter()
        .find(|i| i.manifest_hash.as_deref() == Some(manifest_hash) && i.status == "AVAILABLE")
    {
        return BuildDecision::AlreadyStarted {
            image_arn: built.arn.clone(),
        };
    }
    BuildDecision::Start {
        token_prefix: format!("b{component_version}"),
        tags: vec![
            (MANIFEST_TAG.to_owned(), manifest_hash.to_owned()),
            (TRIGGER_TAG.to_owned(), trigger.to_owned()),
            (
                COMPONENT_VERSION_TAG.to_owned(),
                component_version.to_owned(),
            ),
        ],
    }
}

/// What `StartImagePipelineExecution` returned, read against the listing taken just before it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartedBuild {
    /// A build the listing did not hold: this call started it.
    New { arn: String },
    /// A build the listing already held. The client token matched an earlier request, so
    /// Image Builder returned that request's build and started nothing. The planner starts a
    /// build only when none with this manifest is running or available, so this one ended
    /// without an image (FAILED or CANCELLED) and the same request will not build again
    /// while Image Builder remembers the token.
    Earlier { arn: String, status: String },
}

/// Reads the ARN `StartImagePipelineExecution` returned against the builds listed before it.
pub fn started_build(arn: String, listed: &[BuildSummary]) -> StartedBuild {
    match listed.iter().find(|build| build.arn == arn) {
        Some(earlier) => StartedBuild::Earlier {
            status: earlier.status.clone(),
            arn,
        },
        None => StartedBuild::New { arn },
    }
}

#[cfg(test)]
mod tests {
    use chrono::{DateTime, Utc};

    use super::*;
    use crate::image::{Digest, Registry};
    use crate::manifest::PinnedImage;

    fn image(reference: &str) -> ImageRef {
        ImageRef::parse(
            reference,
            &Registry::parse("123456789012.dkr.ecr.us-east-1.amazonaws.com").unwrap(),
        )
        .unwrap()
    }

    fn digest(seed: char) -> Digest {
        Digest::parse(&format!("sha256:{}", seed.to_string().repeat(64))).unwrap()
    }

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .unwrap()
            .with_timezone(&Utc)
    }

    fn push(reference: &str, seed: char, time: &str) -> Push {
        Push {
            image: image(reference),
            digest: digest(seed),
            time: at(time),
            event_id: format!("e-{seed}"),
        }
    }

    fn state(pins: &[(&str, char, &str)]) -> ComponentState {
        let manifest: Manifest = pins
            .iter()
            .map(|(r, s, t)| PinnedImage {
                image: image(r),
                digest: digest(*s),
                pushed_at: Some(at(t)),
            })
            .collect();
        ComponentState {
            latest_version: Some(Version::new(1, 0, 3)),
            latest_build_arn: Some(
                "arn:aws:imagebuilder:us-east-1:123456789012:component/prepull-cache/1.0.3/1"
                    .to_owned(),
            ),
            latest_manifest: manifest.clone(),
            merged_manifest: manifest,
            latest_runtime: Some(Runtime::Containerd),
        }
    }

    #[test]
    fn the_newest_push_per_image_wins_and_unwatched_images_drop_out() {
        let watched = [image("team/web:v1"), image("team/api:v1")];
        let current = state(&[
            ("team/web:v1", 'a', "2026-11-10T10:00:00Z"),
            ("team/old:v1", 'f', "2026-11-01T00:00:00Z"),
        ]);
        let pushes = [
            push("team/web:v1", 'c', "2026-11-10T12:00:00Z"),
            push("team/web:v1", 'b', "2026-11-10T11:00:00Z"),
            push("team/api:v1", 'd', "2026-11-10T11:00:00Z"),
        ];
        let change = desired_manifest(&current, &watched, &pushes, &Manifest::new());
        assert_eq!(
            change.desired.digest_of(&image("team/web:v1")),
            Some(&digest('c'))
        );
        assert_eq!(
            change.desired.digest_of(&image("team/api:v1")),
            Some(&digest('d'))
        );
        assert_eq!(change.desired.len(), 2, "team/old is no longer watched");
        assert_eq!(change.applied.len(), 2);
        let stale = desired_manifest(
            &current,
            &watched,
            &[push("team/web:v1", '9', "2026-11-09T00:00:00Z")],
            &Manifest::new(),
        );
        assert_eq!(
            stale.desired.digest_of(&image("team/web:v1")),
            Some(&digest('a')),
            "an older event does not roll back"
        );
    }

    #[test]
    fn an_unchanged_manifest_plans_no_component_and_a_change_plans_the_next_patch() {
        let watched = [image("team/web:v1")];
        let current = state(&[("team/web:v1", 'a', "2026-11-10T10:00:00Z")]);
        let duplicate = desired_manifest(
            &current,
            &watched,
            &[push("team/web:v1", 'a', "2026-11-10T10:00:00Z")],
            &Manifest::new(),
        );
        assert_eq!(
            plan_component(
                &current,
                &duplicate,
                Runtime::Containerd,
                "prepull-cache",
                "push"
            )
            .unwrap(),
            None
        );
        let repushed = desired_manifest(
            &current,
            &watched,
            &[push("team/web:v1", 'a', "2026-11-11T10:00:00Z")],
            &Manifest::new(),
        );
        assert_eq!(
            plan_component(
                &current,
                &repushed,
                Runtime::Containerd,
                "prepull-cache",
                "push"
            )
            .unwrap(),
            None,
            "same digest, later push"
        );
        let runtime_switch = plan_component(
            &current,
            &duplicate,
            Runtime::Docker,
            "prepull-cache",
            "push",
        )
        .unwrap();
        assert!(
            runtime_switch.is_some(),
            "a new runtime needs a new document"
        );

        let changed = desired_manifest(
            &current,
            &watched,
            &[push("team/web:v1", 'b', "2026-11-11T10:00:00Z")],
            &Manifest::new(),
        );
        let plan = plan_component(
            &current,
            &changed,
            Runtime::Containerd,
            "prepull-cache",
            "push of team/web:v1",
        )
        .unwrap()
        .unwrap();
        assert_eq!(plan.version, "1.0.4");
        assert!(
            plan.client_token.starts_with("c1.0.4-") && plan.client_token.len() == 36,
            "{}",
            plan.client_token
        );
        assert_eq!(plan.manifest_hash, changed.desired.hash());
        assert_eq!(
            crate::document::read_manifest(&plan.document).unwrap().0,
            changed.desired
        );
        assert_eq!(next_version(None), Version::new(1, 0, 0));
        assert_eq!(
            next_version(Some(&Version::new(1, 0, 9))),
            Version::new(1, 0, 10)
        );
    }

    #[test]
    fn images_without_a_digest_are_resolved() {
        let watched = [
            image("team/web:v1"),
            image("team/api:v1"),
            image("team/db:v1"),
        ];
        let current = state(&[("team/web:v1", 'a', "2026-11-10T10:00:00Z")]);
        let to_resolve = images_to_resolve(
            &current,
            &watched,
            &[push("team/api:v1", 'b', "2026-11-10T10:00:00Z")],
        );
        assert_eq!(to_resolve, [image("team/db:v1")]);
    }

    #[test]
    fn recipes_refer_by_wildcard_or_pin() {
        let wildcard = [
            "arn:aws:imagebuilder:us-east-1:aws:component/update-windows/x.x.x",
            "arn:aws:imagebuilder:us-east-1:123456789012:component/prepull-cache/x.x.x",
        ];
        assert_eq!(
            recipe_reference(&wildcard, "prepull-cache"),
            Some(RecipeReference::Wildcard)
        );
        let pinned =
            ["arn:aws:imagebuilder:us-east-1:123456789012:component/prepull-cache/1.0.3/1"];
        assert_eq!(
            recipe_reference(&pinned, "Prepull-Cache"),
            Some(RecipeReference::Pinned { index: 0 })
        );
        assert_eq!(recipe_reference(&wildcard[..1], "prepull-cache"), None);
        assert_eq!(
            recipe_reference(
                &[
                    "arn:aws:imagebuilder:us-east-1:123456789012:component/prepull-cache-other/1.0.0/1"
                ],
                "prepull-cache"
            ),
            None
        );
    }

    #[test]
    fn one_build_at_a_time_and_never_the_same_manifest_twice() {
        let image = |status: &str, hash: Option<&str>| BuildSummary {
            arn: format!("arn:{status}"),
            status: status.to_owned(),
            manifest_hash: hash.map(str::to_owned),
            parent_image: None,
            date_created: None,
        };
        assert_eq!(
            decide_build(
                &[
                    image("AVAILABLE", Some("h1")),
                    image("BUILDING", Some("h2"))
                ],
                "h3",
                "1.0.4",
                "push"
            ),
            BuildDecision::QueuedBehind {
                image_arn: "arn:BUILDING".into()
            }
        );
        assert_eq!(
            decide_build(&[image("AVAILABLE", Some("h3"))], "h3", "1.0.4", "push"),
            BuildDecision::AlreadyStarted {
                image_arn: "arn:AVAILABLE".into()
            }
        );
        let BuildDecision::Start { token_prefix, tags } =
            decide_build(&[image("FAILED", Some("h3"))], "h3", "1.0.4", "push")
        else {
            panic!()
        };
        assert_eq!(token_prefix, "b1.0.4");
        assert!(tags.contains(&(MANIFEST_TAG.to_owned(), "h3".to_owned())));
    }

    #[test]
    fn a_returned_arn_the_listing_already_held_is_an_earlier_build_not_a_new_one() {
        let failed = BuildSummary {
            arn: "arn:aws:imagebuilder:us-east-1:123456789012:image/prepull/1.0.0/1".to_owned(),
            status: "FAILED".to_owned(),
            manifest_hash: Some("m".to_owned()),
            parent_image: None,
            date_created: None,
        };
        assert_eq!(
            started_build(failed.arn.clone(), std::slice::from_ref(&failed)),
            StartedBuild::Earlier {
                arn: failed.arn.clone(),
                status: "FAILED".to_owned()
            }
        );
        let new_arn = "arn:aws:imagebuilder:us-east-1:123456789012:image/prepull/1.0.0/2";
        assert_eq!(
            started_build(new_arn.to_owned(), &[failed]),
            StartedBuild::New {
                arn: new_arn.to_owned()
            }
        );
    }
}
