//! The cache component: what Image Builder holds, the manifest a run wants, and whether that
//! takes a new component version. Pure: the adapters read the state, these functions decide.

use chrono::SubsecRound;
use semver::Version;
use serde::Serialize;

use crate::arn::ImageBuilderArn;
use crate::document::{self, DocumentError, Runtime};
use crate::events::ecr::Push;
use crate::image::{Digest, ImageRef};
use crate::manifest::{Manifest, sha256_hex};
use crate::token::client_token;

/// The cache component as Image Builder holds it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ComponentState {
    /// The highest semantic version, if any exists.
    pub latest_version: Option<Version>,
    /// The build that `x.x.x` resolves to, and its manifest: what the next image will cache.
    pub latest_build_arn: Option<ImageBuilderArn>,
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
    /// Images the manifest pinned that ECR no longer has, as `image@digest`: they leave it.
    pub removed: Vec<String>,
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

/// The pins a run keeps without reading their tag (`wanted`) or seeing them pushed: the
/// watched images of the latest version (every build merged) that no push of this run
/// replaces. ECR must confirm each digest still exists before a build pins it.
pub fn pins_to_confirm(
    state: &ComponentState,
    watched: &[ImageRef],
    wanted: &[ImageRef],
    pushes: &[Push],
) -> Vec<(ImageRef, Digest)> {
    state
        .merged_manifest
        .images()
        .filter(|pin| watched.contains(&pin.image) && !wanted.contains(&pin.image))
        .filter(|pin| {
            // A push wins unless the pin is from a strictly later second (as in
            // `desired_manifest`); then the pin stays and needs confirming.
            !pushes.iter().any(|push| {
                push.image == pin.image
                    && (push.digest == pin.digest
                        || pin
                            .pushed_at
                            .is_none_or(|at| push.time.trunc_subsecs(0) >= at.trunc_subsecs(0)))
            })
        })
        .map(|pin| (pin.image, pin.digest))
        .collect()
}

/// Images a push cannot decide against what the component already holds: the push has the
/// same time as the pinned digest's push and another digest. The two came in different batches
/// in the same second (event times are whole seconds), so nothing says which was last: ECR's
/// current digest for the tag does.
pub fn tied_with_known(state: &ComponentState, pushes: &[Push]) -> Vec<ImageRef> {
    let mut tied: Vec<ImageRef> = Vec::new();
    for push in pushes {
        let same_second = state
            .merged_manifest
            .pushed_at(&push.image)
            .is_some_and(|at| at.trunc_subsecs(0) == push.time.trunc_subsecs(0));
        let known = same_second
            && state
                .merged_manifest
                .digest_of(&push.image)
                .is_some_and(|d| *d != push.digest);
        if known && !tied.contains(&push.image) {
            tied.push(push.image.clone());
        }
    }
    tied
}

/// Applies the digests read from ECR, then the pushes (newest event per image wins), to the
/// merged manifest of the latest version, keeping only watched images. Images ECR was asked
/// about and does not have (`gone`: no such repository or tag) leave the manifest, and a push
/// of one in this batch does not bring it back: ECR was read after the push happened.
pub fn desired_manifest(
    state: &ComponentState,
    watched: &[ImageRef],
    pushes: &[Push],
    resolved: &Manifest,
    gone: &[ImageRef],
) -> ManifestChange {
    let mut desired = state.merged_manifest.clone();
    desired.retain_images(watched);
    let mut removed = Vec::new();
    for image in gone {
        if let Some(digest) = desired.remove(image) {
            removed.push(format!("{image}@{digest}"));
        }
    }
    // What ECR says now is the truth for the images it was asked about, even a tag moved back
    // to an older image.
    for pinned in resolved.images() {
        desired.pin(pinned.image, pinned.digest, pinned.pushed_at);
    }
    let mut newest: Vec<&Push> = Vec::new();
    for push in pushes.iter().filter(|p| !gone.contains(&p.image)) {
        // A tie on time between different digests never reaches here: `untie` and
        // `tied_with_known` hand those images to ECR. Equal digests are the same pin.
        match newest.iter_mut().find(|p| p.image == push.image) {
            Some(existing) if existing.time <= push.time => *existing = push,
            Some(_) => {}
            None => newest.push(push),
        }
    }
    let mut applied = Vec::new();
    for push in newest {
        // Event times are whole seconds; a digest read from ECR carries the read's fraction.
        // Only a strictly later second makes a push stale: the same second is a tie, which ECR
        // decides (`tied_with_known`).
        let stale = desired
            .pushed_at(&push.image)
            .is_some_and(|known| known.trunc_subsecs(0) > push.time.trunc_subsecs(0));
        if stale {
            continue;
        }
        if desired.digest_of(&push.image) != Some(&push.digest) {
            applied.push(format!("{}@{}", push.image, push.digest));
        }
        desired.pin(push.image.clone(), push.digest.clone(), Some(push.time));
    }
    desired.retain_images(watched);
    ManifestChange {
        desired,
        applied,
        removed,
    }
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
    // The token follows everything the request sends that can differ, the whole document
    // (push times included) and the description (which names the trigger): two writers of the
    // same request converge on one version, and two that differ in anything both write and are
    // merged later, rather than one of them getting IdempotentParameterMismatchException.
    let client_token = client_token(
        "c",
        &version,
        &sha256_hex(format!("{description}\n{document}").as_bytes()),
    );
    Ok(Some(ComponentPlan {
        client_token,
        version,
        description,
        document,
        manifest_hash,
    }))
}

/// Whether a version this run created is the first build of that version. Image Builder
/// answers a second writer of the same name and version with build `/2`: another writer got
/// there first, and the next pass must merge its work.
pub fn written_first(created: &ImageBuilderArn) -> bool {
    created.build() == Some(1)
}

/// What a recipe's wildcard reference resolves to, against the build this run wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolution {
    /// The written build: a build started now caches what was written.
    Written,
    /// An older build, or nothing yet: the written one is not visible yet. Image Builder
    /// resolves `x.x.x` when the build starts and is eventually consistent.
    NotYet,
    /// A newer build than the written one: another writer's document, which may lack this
    /// run's pushes; that writer's invocation builds it, and this one must not label it.
    Newer,
}

/// Reads a wildcard's resolution against the build this run wrote. A newer build that holds
/// the same manifest (another writer of the same content) is as good as the written one.
pub fn resolution(
    resolved: Option<(&ImageBuilderArn, &str)>,
    written: (&ImageBuilderArn, &str),
) -> Resolution {
    let (written, written_manifest) = written;
    match resolved {
        Some((resolved, _)) if resolved == written => Resolution::Written,
        Some((resolved, manifest))
            if resolved.name() == written.name()
                && resolved.creation_order() > written.creation_order() =>
        {
            if manifest == written_manifest {
                Resolution::Written
            } else {
                Resolution::Newer
            }
        }
        _ => Resolution::NotYet,
    }
}

fn truncate(text: &str, limit: usize) -> String {
    text.chars().take(limit).collect()
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
                ImageBuilderArn::parse(
                    "arn:aws:imagebuilder:us-east-1:123456789012:component/prepull-cache/1.0.3/1",
                )
                .unwrap(),
            ),
            latest_manifest: manifest.clone(),
            merged_manifest: manifest,
            latest_runtime: Some(Runtime::Containerd),
        }
    }

    #[test]
    fn pins_to_confirm_are_the_kept_pins_nobody_pushed_or_reads() {
        let state = state(&[
            ("web:v1", 'a', "2026-12-01T10:00:00Z"),
            ("api:v1", 'b', "2026-12-01T10:00:00Z"),
            ("job:v1", 'c', "2026-12-01T10:00:05Z"),
            ("old:v1", 'd', "2026-12-01T10:00:00Z"),
        ]);
        let watched = [
            image("web:v1"),
            image("api:v1"),
            image("job:v1"),
            image("new:v1"),
        ];
        // (tags read, pushes) → pins to confirm
        let cases: Vec<(Vec<ImageRef>, Vec<Push>, Vec<&str>)> = vec![
            (vec![], vec![], vec!["api:v1", "job:v1", "web:v1"]),
            // Read by tag: ECR's answer decides, nothing to confirm.
            (vec![image("web:v1")], vec![], vec!["api:v1", "job:v1"]),
            // Pushed with the same digest, or a newer one: the push is the pin.
            (
                vec![],
                vec![
                    push("web:v1", 'a', "2026-12-01T09:00:00Z"),
                    push("api:v1", 'e', "2026-12-01T10:00:01Z"),
                ],
                vec!["job:v1"],
            ),
            // A push from an earlier second than the pin does not replace it.
            (
                vec![],
                vec![push("job:v1", 'f', "2026-12-01T10:00:04Z")],
                vec!["api:v1", "job:v1", "web:v1"],
            ),
        ];
        for (wanted, pushes, expected) in cases {
            let confirmed: Vec<ImageRef> = pins_to_confirm(&state, &watched, &wanted, &pushes)
                .into_iter()
                .map(|(image, _)| image)
                .collect();
            let expected: Vec<ImageRef> = expected.into_iter().map(image).collect();
            assert_eq!(confirmed, expected, "{wanted:?} {pushes:?}");
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
        let change = desired_manifest(&current, &watched, &pushes, &Manifest::new(), &[]);
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
            &[],
        );
        assert_eq!(
            stale.desired.digest_of(&image("team/web:v1")),
            Some(&digest('a')),
            "an older event does not roll back"
        );
    }

    #[test]
    fn images_ecr_no_longer_has_leave_the_manifest_and_a_push_does_not_bring_them_back() {
        let watched = [image("team/web:v1"), image("team/api:v1")];
        let current = state(&[
            ("team/web:v1", 'a', "2026-11-10T10:00:00Z"),
            ("team/api:v1", 'b', "2026-11-10T10:00:00Z"),
        ]);
        let table = [
            // The tag was deleted: the image leaves, the other stays.
            (vec![], vec![image("team/api:v1")], vec!["team/web:v1"]),
            // Pushed, then deleted, in one batch: ECR, read after both, decides.
            (
                vec![push("team/api:v1", 'c', "2026-11-11T10:00:00Z")],
                vec![image("team/api:v1")],
                vec!["team/web:v1"],
            ),
            // Every image gone: an empty manifest.
            (
                vec![],
                vec![image("team/api:v1"), image("team/web:v1")],
                vec![],
            ),
            // An image the manifest never held: nothing to remove.
            (
                vec![],
                vec![image("team/new:v1")],
                vec!["team/api:v1", "team/web:v1"],
            ),
        ];
        for (pushes, gone, left) in table {
            let change = desired_manifest(&current, &watched, &pushes, &Manifest::new(), &gone);
            let names: Vec<String> = change
                .desired
                .images()
                .map(|p| format!("{}:{}", p.image.repository, p.image.tag))
                .collect();
            assert_eq!(names, left, "{gone:?}");
            let expected_removed: Vec<String> = gone
                .iter()
                .filter_map(|g| {
                    current
                        .merged_manifest
                        .digest_of(g)
                        .map(|d| format!("{g}@{d}"))
                })
                .collect();
            assert_eq!(change.removed, expected_removed);
        }
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
            &[],
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
            &[],
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
            &[],
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
            document::read_manifest(&plan.document).unwrap().0,
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
    fn a_wildcard_serves_the_written_build_only_once_it_resolves_to_exactly_it() {
        let arn = |text: &str| {
            ImageBuilderArn::parse(&format!(
                "arn:aws:imagebuilder:us-east-1:123456789012:component/{text}"
            ))
            .unwrap()
        };
        let written = arn("prepull-cache/1.0.4/1");
        let cases = [
            (None, "m", Resolution::NotYet),
            (Some("prepull-cache/1.0.3/1"), "old", Resolution::NotYet),
            (Some("prepull-cache/1.0.4/1"), "m", Resolution::Written),
            (Some("prepull-cache/1.0.4/2"), "theirs", Resolution::Newer),
            (Some("prepull-cache/1.0.4/2"), "m", Resolution::Written),
            (Some("prepull-cache/1.0.10/1"), "theirs", Resolution::Newer),
            (Some("other/1.0.9/1"), "theirs", Resolution::NotYet),
        ];
        for (resolved, manifest, expected) in cases {
            let resolved = resolved.map(arn);
            assert_eq!(
                resolution(resolved.as_ref().map(|r| (r, manifest)), (&written, "m")),
                expected,
                "{resolved:?} {manifest}"
            );
        }
    }

    #[test]
    fn a_push_in_the_same_second_as_the_pinned_one_is_left_to_ecr() {
        let current = state(&[("team/web:v1", 'a', "2026-11-10T10:00:00Z")]);
        let cases = [
            (
                push("team/web:v1", 'b', "2026-11-10T10:00:00Z"),
                vec![image("team/web:v1")],
            ),
            (push("team/web:v1", 'a', "2026-11-10T10:00:00Z"), vec![]),
            (push("team/web:v1", 'b', "2026-11-10T10:00:01Z"), vec![]),
            (push("team/api:v1", 'b', "2026-11-10T10:00:00Z"), vec![]),
        ];
        let read_from_ecr = state(&[("team/web:v1", 'a', "2026-11-10T10:00:00.734Z")]);
        assert_eq!(
            tied_with_known(
                &read_from_ecr,
                &[push("team/web:v1", 'b', "2026-11-10T10:00:00Z")]
            ),
            [image("team/web:v1")],
            "a digest read from ECR at 10:00:00.734 and a push event at 10:00:00: a tie"
        );
        for (push, expected) in cases {
            assert_eq!(
                tied_with_known(&current, std::slice::from_ref(&push)),
                expected,
                "{push:?}"
            );
        }
    }
}
