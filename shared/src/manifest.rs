//! The cache manifest: the exact set of images to pre-pull, each pinned by digest.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::image::{Digest, ImageRef};

/// One watched image and the digest it is pinned to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PinnedImage {
    #[serde(flatten)]
    pub image: ImageRef,
    pub digest: Digest,
}

/// The images to pre-pull, sorted by reference so equal sets compare, hash and render
/// identically.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Manifest {
    images: BTreeMap<ImageRef, Digest>,
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
    pub fn pin(&mut self, image: ImageRef, digest: Digest) -> Option<Digest> {
        self.images.insert(image, digest)
    }

    pub fn digest_of(&self, image: &ImageRef) -> Option<&Digest> {
        self.images.get(image)
    }

    pub fn len(&self) -> usize {
        self.images.len()
    }

    pub fn is_empty(&self) -> bool {
        self.images.is_empty()
    }

    /// The pinned images in their canonical order.
    pub fn images(&self) -> impl Iterator<Item = PinnedImage> + '_ {
        self.images.iter().map(|(image, digest)| PinnedImage {
            image: image.clone(),
            digest: digest.clone(),
        })
    }

    /// The first `count` images, in canonical order.
    pub fn first(&self, count: usize) -> Manifest {
        Manifest {
            images: self
                .images
                .iter()
                .take(count)
                .map(|(i, d)| (i.clone(), d.clone()))
                .collect(),
        }
    }

    /// A compact, canonical JSON form: the same manifest always gives the same text.
    pub fn to_json(&self) -> String {
        let wire = ManifestWire {
            images: self.images().collect(),
        };
        // Serialising plain strings into a String cannot fail.
        serde_json::to_string(&wire).unwrap_or_default()
    }

    pub fn from_json(text: &str) -> Result<Self, serde_json::Error> {
        let wire: ManifestWire = serde_json::from_str(text)?;
        Ok(Self {
            images: wire
                .images
                .into_iter()
                .map(|p| (p.image, p.digest))
                .collect(),
        })
    }

    /// The SHA-256 of the canonical JSON, in hex: the manifest's identity in tokens and tags.
    pub fn hash(&self) -> String {
        Sha256::digest(self.to_json().as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }
}

impl FromIterator<PinnedImage> for Manifest {
    fn from_iter<I: IntoIterator<Item = PinnedImage>>(iter: I) -> Self {
        Self {
            images: iter.into_iter().map(|p| (p.image, p.digest)).collect(),
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
        );
        assert_eq!(previous, Some(pinned("x/y:z", 'a').digest));
        assert_ne!(manifest.hash(), before);
        assert_eq!(manifest.hash().len(), 64);
    }

    #[test]
    fn parsing_revalidates_every_field() {
        let hostile = r#"{"images":[{"registry":"123456789012.dkr.ecr.us-east-1.amazonaws.com","repository":"web'; calc","tag":"v1","digest":"sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"}]}"#;
        let error = Manifest::from_json(hostile).unwrap_err().to_string();
        assert!(error.contains("repository name"), "{error}");
    }
}
