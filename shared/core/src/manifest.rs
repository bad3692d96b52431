//! The cache manifest: the exact set of images to pre-pull, each pinned by digest.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::image::{Digest, ImageRef};

/// One watched image, the digest it is pinned to, and when that digest was pushed (if known).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PinnedImage {
    #[serde(flatten)]
    pub image: ImageRef,
    pub digest: Digest,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pushed_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Eq)]
struct Pin {
    digest: Digest,
    pushed_at: Option<DateTime<Utc>>,
}

impl PartialEq for Pin {
    /// Two pins are the same cache content when their digests are; push times are metadata.
    fn eq(&self, other: &Self) -> bool {
        self.digest == other.digest
    }
}

/// The images to pre-pull, sorted by reference so equal sets compare, hash and render
/// identically.
///
/// Equality and [`Manifest::hash`] look at digests only. Push times are kept so that two
/// manifests written concurrently can be merged, newest push winning per image.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Manifest {
    images: BTreeMap<ImageRef, Pin>,
}

#[derive(Serialize, Deserialize)]
struct ManifestWire {
    images: Vec<PinnedImage>,
}

impl Manifest {
    pub fn new() -> Self {
        Self::default()
    }

    /// Pins an image to a digest, returning the digest it had before.
    pub fn pin(
        &mut self,
        image: ImageRef,
        digest: Digest,
        pushed_at: Option<DateTime<Utc>>,
    ) -> Option<Digest> {
        self.images
            .insert(image, Pin { digest, pushed_at })
            .map(|p| p.digest)
    }

    /// Takes each of `other`'s pins that is newer than this manifest's pin for the same image
    /// (or for an image this one lacks). The result does not depend on the order of merging.
    pub fn merge_newest(&mut self, other: &Manifest) {
        for (image, theirs) in &other.images {
            let take = match self.images.get(image) {
                None => true,
                Some(ours) => (theirs.pushed_at, &theirs.digest) > (ours.pushed_at, &ours.digest),
            };
            if take {
                self.images.insert(image.clone(), theirs.clone());
            }
        }
    }

    /// Unpins an image, returning the digest it had.
    pub fn remove(&mut self, image: &ImageRef) -> Option<Digest> {
        self.images.remove(image).map(|p| p.digest)
    }

    /// Keeps only the listed images.
    pub fn retain_images(&mut self, keep: &[ImageRef]) {
        self.images.retain(|image, _| keep.contains(image));
    }

    pub fn digest_of(&self, image: &ImageRef) -> Option<&Digest> {
        self.images.get(image).map(|p| &p.digest)
    }

    pub fn pushed_at(&self, image: &ImageRef) -> Option<DateTime<Utc>> {
        self.images.get(image).and_then(|p| p.pushed_at)
    }

    pub fn len(&self) -> usize {
        self.images.len()
    }

    pub fn is_empty(&self) -> bool {
        self.images.is_empty()
    }

    /// The pinned images in their canonical order.
    pub fn images(&self) -> impl Iterator<Item = PinnedImage> + '_ {
        self.images.iter().map(|(image, pin)| PinnedImage {
            image: image.clone(),
            digest: pin.digest.clone(),
            pushed_at: pin.pushed_at,
        })
    }

    /// The first `count` images, in canonical order.
    pub fn first(&self, count: usize) -> Manifest {
        Manifest {
            images: self
                .images
                .iter()
                .take(count)
                .map(|(i, p)| (i.clone(), p.clone()))
                .collect(),
        }
    }

    /// A compact, canonical JSON form, push times included.
    pub fn to_json(&self) -> String {
        let wire = ManifestWire {
            images: self.images().collect(),
        };
        // Serialising validated strings and timestamps into a String cannot fail.
        serde_json::to_string(&wire).unwrap_or_default()
    }

    pub fn from_json(text: &str) -> Result<Self, serde_json::Error> {
        let wire: ManifestWire = serde_json::from_str(text)?;
        Ok(wire.images.into_iter().collect())
    }

    /// The SHA-256, in hex, of the images and digests alone: the manifest's identity in
    /// client tokens and image tags.
    pub fn hash(&self) -> String {
        let mut canonical = String::new();
        for (image, pin) in &self.images {
            canonical.push_str(&format!("{image}@{}\n", pin.digest));
        }
        Sha256::digest(canonical.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }
}

/// The SHA-256 of some bytes, in lowercase hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

impl FromIterator<PinnedImage> for Manifest {
    fn from_iter<I: IntoIterator<Item = PinnedImage>>(iter: I) -> Self {
        Self {
            images: iter
                .into_iter()
                .map(|p| {
                    (
                        p.image,
                        Pin {
                            digest: p.digest,
                            pushed_at: p.pushed_at,
                        },
                    )
                })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::Registry;

    pub(crate) fn pinned(reference: &str, seed: char) -> PinnedImage {
        let registry = Registry::parse("123456789012.dkr.ecr.us-east-1.amazonaws.com").unwrap();
        PinnedImage {
            image: ImageRef::parse(reference, &registry).unwrap(),
            digest: Digest::parse(&format!("sha256:{}", seed.to_string().repeat(64))).unwrap(),
            pushed_at: None,
        }
    }

    #[test]
    fn order_of_insertion_does_not_matter() {
        let a: Manifest = [pinned("team/web:v1", 'a'), pinned("team/api:v2", 'b')]
            .into_iter()
            .collect();
        let b: Manifest = [pinned("team/api:v2", 'b'), pinned("team/web:v1", 'a')]
            .into_iter()
            .collect();
        assert_eq!(a, b);
        assert_eq!(a.to_json(), b.to_json());
        assert_eq!(a.hash(), b.hash());
        assert_eq!(
            a.images().next().unwrap().image.repository.as_str(),
            "team/api"
        );
    }

    #[test]
    fn json_round_trips_and_a_new_digest_changes_the_hash() {
        let mut manifest: Manifest = [pinned("team/web:v1", 'a')].into_iter().collect();
        assert_eq!(Manifest::from_json(&manifest.to_json()).unwrap(), manifest);
        let before = manifest.hash();
        let previous = manifest.pin(
            pinned("team/web:v1", 'c').image,
            pinned("x/y:z", 'c').digest,
            None,
        );
        assert_eq!(previous, Some(pinned("x/y:z", 'a').digest));
        assert_ne!(manifest.hash(), before);
        assert_eq!(manifest.hash().len(), 64);
    }

    #[test]
    fn merging_takes_the_newest_push_per_image_in_any_order() {
        let at = |s: &str| Some(DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc));
        let with_time = |reference: &str, seed: char, time: &str| PinnedImage {
            pushed_at: at(time),
            ..pinned(reference, seed)
        };
        let ours: Manifest = [
            with_time("team/web:v1", 'a', "2026-11-10T10:00:00Z"),
            with_time("team/api:v1", 'b', "2026-11-10T12:00:00Z"),
        ]
        .into_iter()
        .collect();
        let theirs: Manifest = [
            with_time("team/web:v1", 'c', "2026-11-10T11:00:00Z"),
            with_time("team/api:v1", 'd', "2026-11-10T09:00:00Z"),
            with_time("team/db:v1", 'e', "2026-11-10T08:00:00Z"),
        ]
        .into_iter()
        .collect();
        let mut left = ours.clone();
        left.merge_newest(&theirs);
        let mut right = theirs.clone();
        right.merge_newest(&ours);
        assert_eq!(left.to_json(), right.to_json());
        let digests: Vec<char> = left
            .images()
            .map(|p| p.digest.as_str().chars().last().unwrap())
            .collect();
        assert_eq!(
            digests,
            ['b', 'e', 'c'],
            "api keeps ours (newer), db is added, web takes theirs (newer)"
        );
        let mut same = ours.clone();
        same.pin(
            pinned("team/web:v1", 'a').image,
            pinned("team/web:v1", 'a').digest,
            at("2026-12-01T00:00:00Z"),
        );
        assert_eq!(
            same, ours,
            "a newer push of the same digest is the same manifest"
        );
        assert_eq!(same.hash(), ours.hash());
    }

    #[test]
    fn parsing_revalidates_every_field() {
        let hostile = r#"{"images":[{"registry":"123456789012.dkr.ecr.us-east-1.amazonaws.com","repository":"web'; calc","tag":"v1","digest":"sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"}]}"#;
        let error = Manifest::from_json(hostile).unwrap_err().to_string();
        assert!(error.contains("repository name"), "{error}");
    }
}
