//! What a run asks ECR, and what ECR answered: watched tags (where each points now) and
//! pinned digests (whether ECR still has them), read with one `BatchGetImage` per repository.
//!
//! ECR's `BatchGetImage` takes up to 100 image IDs of one repository per call, tags and digests
//! mixed, and reports each ID it lacks in `failures` instead of failing the call (ECR API
//! Reference, BatchGetImage; botocore's `ImageIdentifierList` has `max: 100`). So a run costs
//! one call per repository, however many images of it are watched, where `DescribeImages`
//! (which fails the whole call on one missing ID) cost one per image.

use std::collections::{BTreeMap, BTreeSet};

use crate::image::{Digest, ImageRef, Registry, Repository, Tag};
use crate::manifest::Manifest;

/// The most image IDs one `BatchGetImage` call takes.
pub const IDS_PER_CALL: usize = 100;

/// One image ID in a `BatchGetImage` request.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ImageId {
    Tag(Tag),
    Digest(Digest),
}

/// A repository in a registry (an account in a region): what one call can read.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RepositoryKey {
    pub registry: Registry,
    pub repository: Repository,
}

impl RepositoryKey {
    pub fn of(image: &ImageRef) -> Self {
        Self {
            registry: image.registry.clone(),
            repository: image.repository.clone(),
        }
    }
}

impl std::fmt::Display for RepositoryKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)
    }
}

/// One `BatchGetImage` call: a repository and at most [`IDS_PER_CALL`] distinct IDs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchRead {
    pub repository: RepositoryKey,
    pub ids: Vec<ImageId>,
}

/// What ECR answered for one repository: the tags it has (and their digest) and the digests
/// it has, among those asked. An ID asked and absent here is one ECR does not have.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RepositoryAnswer {
    pub tags: BTreeMap<Tag, Digest>,
    pub digests: BTreeSet<Digest>,
}

/// Everything ECR answered in a run, kept so nothing is asked twice.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EcrState {
    /// Each tag asked: its digest, or `None` when ECR has no such tag or repository.
    tags: BTreeMap<ImageRef, Option<Digest>>,
    /// Each digest asked, and whether ECR has it.
    digests: BTreeMap<(RepositoryKey, Digest), bool>,
}

impl EcrState {
    /// The calls that read what `tags` and `digests` ask and this state does not know yet:
    /// one per repository (more only past 100 IDs), in a stable order.
    pub fn reads_for(&self, tags: &[ImageRef], digests: &[(ImageRef, Digest)]) -> Vec<BatchRead> {
        let mut wanted: BTreeMap<RepositoryKey, BTreeSet<ImageId>> = BTreeMap::new();
        for image in tags.iter().filter(|image| !self.tags.contains_key(*image)) {
            wanted
                .entry(RepositoryKey::of(image))
                .or_default()
                .insert(ImageId::Tag(image.tag.clone()));
        }
        for (image, digest) in digests {
            let key = RepositoryKey::of(image);
            // A tag read that names the digest already proves ECR has it.
            if !self.digests.contains_key(&(key.clone(), digest.clone()))
                && self.digest_of(image) != Some(digest)
            {
                wanted
                    .entry(key)
                    .or_default()
                    .insert(ImageId::Digest(digest.clone()));
            }
        }
        wanted
            .into_iter()
            .flat_map(|(repository, ids)| {
                let ids: Vec<ImageId> = ids.into_iter().collect();
                ids.chunks(IDS_PER_CALL)
                    .map(|chunk| BatchRead {
                        repository: repository.clone(),
                        ids: chunk.to_vec(),
                    })
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    /// Records what ECR answered to `read`: each ID asked and not in `answer` is absent. A
    /// repository ECR does not have answers with an empty `answer`.
    pub fn record(&mut self, read: &BatchRead, answer: &RepositoryAnswer) {
        for id in &read.ids {
            match id {
                ImageId::Tag(tag) => {
                    let image = ImageRef {
                        registry: read.repository.registry.clone(),
                        repository: read.repository.repository.clone(),
                        tag: tag.clone(),
                    };
                    self.tags.insert(image, answer.tags.get(tag).cloned());
                }
                ImageId::Digest(digest) => {
                    // A digest asked for is found either as asked or under a tag asked in the
                    // same call (ECR may answer one image once for both IDs).
                    let found = answer.digests.contains(digest)
                        || answer.tags.values().any(|d| d == digest);
                    self.digests
                        .insert((read.repository.clone(), digest.clone()), found);
                }
            }
        }
    }

    /// Where `image`'s tag points; `None` when ECR lacks it or it was not asked.
    pub fn digest_of(&self, image: &ImageRef) -> Option<&Digest> {
        self.tags.get(image).and_then(Option::as_ref)
    }

    /// Whether ECR was asked for `image`'s tag and has no such tag (or repository).
    pub fn lacks_tag(&self, image: &ImageRef) -> bool {
        matches!(self.tags.get(image), Some(None))
    }

    /// Whether ECR was asked for `digest` in `image`'s repository and does not have it. A
    /// digest `image`'s tag names is there.
    pub fn lacks_digest(&self, image: &ImageRef, digest: &Digest) -> bool {
        self.digest_of(image) != Some(digest)
            && self
                .digests
                .get(&(RepositoryKey::of(image), digest.clone()))
                == Some(&false)
    }

    /// The tags of `images` ECR has, pinned with the time they were read: the time they were
    /// known to be current (`imagePushedAt` is when a digest was first pushed, not when the
    /// tag moved to it), and the ones it lacks.
    pub fn resolve(
        &self,
        images: &[ImageRef],
        read_at: chrono::DateTime<chrono::Utc>,
    ) -> (Manifest, Vec<ImageRef>) {
        let mut found = Manifest::new();
        let mut missing = Vec::new();
        for image in images {
            match self.digest_of(image) {
                Some(digest) => {
                    found.pin(image.clone(), digest.clone(), Some(read_at));
                }
                None if self.lacks_tag(image) => missing.push(image.clone()),
                None => {}
            }
        }
        (found, missing)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registry(region: &str) -> Registry {
        Registry::for_account("123456789012", region).unwrap()
    }

    fn image(repository: &str, tag: &str) -> ImageRef {
        ImageRef {
            registry: registry("us-east-1"),
            repository: Repository::parse(repository).unwrap(),
            tag: Tag::parse(tag).unwrap(),
        }
    }

    fn digest(n: u32) -> Digest {
        Digest::parse(&format!("sha256:{n:064x}")).unwrap()
    }

    #[test]
    fn one_call_per_repository_whatever_the_number_of_images() {
        // (watched tags, pinned digests to confirm) → calls, and IDs per call.
        type Case = (Vec<ImageRef>, Vec<(ImageRef, Digest)>, Vec<usize>);
        let cases: Vec<Case> = vec![
            (vec![], vec![], vec![]),
            (vec![image("team/web", "v1")], vec![], vec![1]),
            (
                (0..10)
                    .map(|n| image("team/web", &format!("v{n}")))
                    .collect(),
                (0..10)
                    .map(|n| (image("team/web", &format!("v{n}")), digest(n)))
                    .collect(),
                vec![20],
            ),
            (
                (0..100)
                    .map(|n| image(&format!("team/svc{}", n % 10), &format!("v{n}")))
                    .collect(),
                vec![],
                vec![10; 10],
            ),
            // Past 100 IDs in one repository: a second call.
            (
                (0..150)
                    .map(|n| image("team/web", &format!("v{n}")))
                    .collect(),
                vec![],
                vec![100, 50],
            ),
            // The same tag or digest asked twice is one ID.
            (
                vec![image("team/web", "v1"), image("team/web", "v1")],
                vec![
                    (image("team/web", "v1"), digest(1)),
                    (image("team/web", "v2"), digest(1)),
                ],
                vec![2],
            ),
        ];
        for (tags, digests, calls) in cases {
            let reads = EcrState::default().reads_for(&tags, &digests);
            let sizes: Vec<usize> = reads.iter().map(|r| r.ids.len()).collect();
            assert_eq!(sizes, calls, "{tags:?} {digests:?}");
        }
    }

    #[test]
    fn a_pin_its_tag_still_names_needs_no_read() {
        let web = image("team/web", "v1");
        let api = image("team/api", "v7");
        let mut state = EcrState::default();
        for read in state.reads_for(&[web.clone(), api.clone()], &[]) {
            let mut answer = RepositoryAnswer::default();
            if read.repository.repository.as_str() == "team/web" {
                answer.tags.insert(web.tag.clone(), digest(1));
            } else {
                answer.tags.insert(api.tag.clone(), digest(8));
            }
            state.record(&read, &answer);
        }
        // web's pin is what its tag names; api's tag moved on from the pin: only that is read.
        let pins = [(web.clone(), digest(1)), (api.clone(), digest(7))];
        let reads = state.reads_for(&[web.clone(), api.clone()], &pins);
        assert_eq!(
            reads,
            [BatchRead {
                repository: RepositoryKey::of(&api),
                ids: vec![ImageId::Digest(digest(7))],
            }]
        );
        assert!(!state.lacks_digest(&web, &digest(1)));
        assert!(!state.lacks_digest(&api, &digest(7)), "not asked yet");
    }

    #[test]
    fn repositories_in_other_registries_are_read_apart() {
        let mut other = image("team/web", "v1");
        other.registry = registry("eu-west-1");
        let reads = EcrState::default().reads_for(&[image("team/web", "v1"), other], &[]);
        assert_eq!(reads.len(), 2);
    }

    #[test]
    fn answers_are_kept_and_never_asked_again() {
        let web = image("team/web", "v1");
        let api = image("team/api", "v7");
        let gone = image("team/api", "old");
        let mut state = EcrState::default();
        let digests = [(api.clone(), digest(7)), (api.clone(), digest(6))];
        let reads = state.reads_for(&[web.clone(), api.clone(), gone.clone()], &digests);
        assert_eq!(reads.len(), 2);
        for read in &reads {
            let mut answer = RepositoryAnswer::default();
            if read.repository.repository.as_str() == "team/web" {
                answer.tags.insert(web.tag.clone(), digest(1));
            } else {
                // The tag and the digest asked are one image: ECR may answer it once.
                answer.tags.insert(api.tag.clone(), digest(7));
            }
            state.record(read, &answer);
        }
        assert_eq!(state.digest_of(&web), Some(&digest(1)));
        assert_eq!(state.digest_of(&api), Some(&digest(7)));
        assert!(state.lacks_tag(&gone));
        assert!(!state.lacks_tag(&image("team/web", "never-asked")));
        assert!(!state.lacks_digest(&api, &digest(7)));
        assert!(state.lacks_digest(&api, &digest(6)));
        assert!(!state.lacks_digest(&api, &digest(5)), "never asked");
        assert!(
            state
                .reads_for(&[web, api, gone.clone()], &digests)
                .is_empty()
        );

        let now = chrono::DateTime::parse_from_rfc3339("2026-12-01T00:00:00Z")
            .unwrap()
            .to_utc();
        let (found, missing) = state.resolve(&[image("team/web", "v1"), gone.clone()], now);
        assert_eq!(found.digest_of(&image("team/web", "v1")), Some(&digest(1)));
        assert_eq!(found.pushed_at(&image("team/web", "v1")), Some(now));
        assert_eq!(missing, [gone]);
    }
}
