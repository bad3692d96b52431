//! The cache component's AWSTOE document, rendered from a manifest and read back from it.
//!
//! The document carries its manifest on a comment line, so the latest component version is
//! the record of what is cached and nothing else has to be stored. Every value that reaches
//! PowerShell is a validated [`crate::image`] type, placed inside single quotes; the grammar
//! allows no quote, so nothing can break out.

use std::collections::BTreeMap;
use std::str::FromStr;

use crate::image::{Registry, quote};
use crate::manifest::Manifest;

/// Image Builder's limit on inline component data, in characters.
pub const DOCUMENT_LIMIT: usize = 16_000;

/// The comment line that carries the manifest.
pub const MANIFEST_MARKER: &str = "# prepull-manifest: ";
const RUNTIME_MARKER: &str = "# prepull-runtime: ";

/// The container runtime whose image store the cache fills.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Runtime {
    /// EKS Windows nodes, Kubernetes 1.24 and later: containerd, namespace `k8s.io`.
    #[default]
    Containerd,
    /// ECS Windows container instances: Docker.
    Docker,
}

impl Runtime {
    pub fn as_str(self) -> &'static str {
        match self {
            Runtime::Containerd => "containerd",
            Runtime::Docker => "docker",
        }
    }
}

impl FromStr for Runtime {
    type Err = String;
    fn from_str(value: &str) -> Result<Self, Self::Err> {
        match value {
            "containerd" => Ok(Runtime::Containerd),
            "docker" => Ok(Runtime::Docker),
            other => Err(format!(
                "{} is not a runtime: use containerd or docker",
                quote(other)
            )),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DocumentError {
    #[error(
        "the cache document for {images} images is {characters} characters, over Image Builder's {DOCUMENT_LIMIT}-character limit; at most {fit} of these images fit in one component"
    )]
    TooLarge {
        images: usize,
        characters: usize,
        fit: usize,
    },
    #[error("the component document's manifest line cannot be read: {0}")]
    UnreadableManifest(String),
}

/// Renders the AWSTOE document that pulls, tags and verifies every image of the manifest.
pub fn render(
    manifest: &Manifest,
    runtime: Runtime,
    component_name: &str,
) -> Result<String, DocumentError> {
    let document = render_unchecked(manifest, runtime, component_name);
    let characters = document.chars().count();
    if characters <= DOCUMENT_LIMIT {
        return Ok(document);
    }
    let fits = |count: usize| {
        render_unchecked(&manifest.first(count), runtime, component_name)
            .chars()
            .count()
            <= DOCUMENT_LIMIT
    };
    let (mut low, mut high) = (0, manifest.len());
    while low < high {
        let middle = (low + high).div_ceil(2);
        if fits(middle) {
            low = middle;
        } else {
            high = middle - 1;
        }
    }
    Err(DocumentError::TooLarge {
        images: manifest.len(),
        characters,
        fit: low,
    })
}

/// Reads the manifest and runtime back from a document prepull rendered. A document without
/// a manifest line (the bootstrap version) holds no images.
pub fn read_manifest(document: &str) -> Result<(Manifest, Option<Runtime>), DocumentError> {
    let mut manifest = Manifest::new();
    let mut runtime = None;
    for line in document.lines() {
        if let Some(json) = line.strip_prefix(MANIFEST_MARKER) {
            manifest = Manifest::from_json(json)
                .map_err(|e| DocumentError::UnreadableManifest(e.to_string()))?;
        } else if let Some(name) = line.strip_prefix(RUNTIME_MARKER) {
            runtime = Some(Runtime::from_str(name).map_err(DocumentError::UnreadableManifest)?);
        } else if !line.starts_with('#') {
            break;
        }
    }
    Ok((manifest, runtime))
}

fn render_unchecked(manifest: &Manifest, runtime: Runtime, component_name: &str) -> String {
    let mut by_registry: BTreeMap<Registry, Vec<_>> = BTreeMap::new();
    for pinned in manifest.images() {
        by_registry
            .entry(pinned.image.registry.clone())
            .or_default()
            .push(pinned);
    }
    let (store, pull_functions, verify_functions) = match runtime {
        Runtime::Containerd => (
            "containerd (namespace k8s.io)",
            CONTAINERD_PULL,
            CONTAINERD_VERIFY,
        ),
        Runtime::Docker => ("Docker", DOCKER_PULL, DOCKER_VERIFY),
    };

    // Each value below is a validated image type inside single quotes; the functions pass
    // them to native commands as arguments, never through another round of parsing.
    let mut pull = String::from(pull_functions);
    let mut verify = String::from(verify_functions);
    for (registry, images) in &by_registry {
        pull.push_str(&format!(
            "Connect-Registry '{}' '{}' '{registry}'\n",
            registry.region(),
            registry.account_id()
        ));
        for pinned in images {
            let call = format!(
                "'{}' '{}' '{}'",
                pinned.image.name(),
                pinned.digest,
                pinned.image.tag
            );
            pull.push_str(&format!("Save-CachedImage {call}\n"));
            verify.push_str(&format!("Test-CachedImage {call}\n"));
        }
    }
    pull.push_str("$script:password = $null\n");
    verify.push_str("Write-Output 'prepull: every cached image is present with its digest'\n");

    let mut document =
        String::from("# Generated by prepull from the manifest below; do not edit by hand.\n");
    document.push_str(&format!("{RUNTIME_MARKER}{}\n", runtime.as_str()));
    document.push_str(&format!("{MANIFEST_MARKER}{}\n", manifest.to_json()));
    document.push_str(&format!("name: {}\n", yaml_plain(component_name)));
    document.push_str(&format!(
        "description: Pre-pulls {} container images by digest into {store}.\n",
        manifest.len()
    ));
    document.push_str("schemaVersion: 1.0\nphases:\n");
    document.push_str("  - name: build\n    steps:\n      - name: PullCachedImages\n        action: ExecutePowerShell\n        timeoutSeconds: 7200\n        onFailure: Abort\n        maxAttempts: 3\n        inputs:\n          commands:\n            - |\n");
    indent_into(&mut document, &pull, 14);
    document.push_str("  - name: validate\n    steps:\n      - name: VerifyCachedImages\n        action: ExecutePowerShell\n        onFailure: Abort\n        inputs:\n          commands:\n            - |\n");
    indent_into(&mut document, &verify, 14);
    document
}

// The ECR password is held in a script variable and handed to the runtime directly; it is
// never part of a command line that AWSTOE echoes or logs.
const CONTAINERD_PULL: &str = include_str!("containerd_pull.ps1");

const CONTAINERD_VERIFY: &str = include_str!("containerd_verify.ps1");

const DOCKER_PULL: &str = include_str!("docker_pull.ps1");

const DOCKER_VERIFY: &str = include_str!("docker_verify.ps1");

fn indent_into(document: &mut String, text: &str, spaces: usize) {
    for line in text.lines() {
        document.push_str(&format!("{:spaces$}{line}\n", ""));
    }
}

/// Component names are `[-_A-Za-z0-9 ]`; quote anything else so YAML reads it as text.
fn yaml_plain(value: &str) -> String {
    if value
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        value.to_owned()
    } else {
        format!("'{}'", value.replace('\'', "''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::{Digest, ImageRef};
    use crate::manifest::PinnedImage;

    fn manifest(count: usize) -> Manifest {
        let registry = Registry::parse("123456789012.dkr.ecr.us-east-1.amazonaws.com").unwrap();
        let other = Registry::parse("210987654321.dkr.ecr.eu-west-1.amazonaws.com").unwrap();
        (0..count)
            .map(|n| PinnedImage {
                image: ImageRef::parse(
                    &format!("team/service-{n:03}:v{n}"),
                    if n % 3 == 0 { &other } else { &registry },
                )
                .unwrap(),
                digest: Digest::parse(&format!("sha256:{:064x}", n + 1)).unwrap(),
                pushed_at: None,
            })
            .collect()
    }

    #[test]
    fn rendering_is_deterministic_and_reads_back_exactly() {
        for runtime in [Runtime::Containerd, Runtime::Docker] {
            let manifest = manifest(5);
            let first = render(&manifest, runtime, "prepull-cache").unwrap();
            assert_eq!(
                first,
                render(&manifest.clone(), runtime, "prepull-cache").unwrap()
            );
            assert_eq!(read_manifest(&first).unwrap(), (manifest, Some(runtime)));
        }
        assert_eq!(
            read_manifest("name: x\nphases: []\n").unwrap(),
            (Manifest::new(), None)
        );
    }

    #[test]
    fn documents_have_awstoe_structure() {
        for runtime in [Runtime::Containerd, Runtime::Docker] {
            let document = render(&manifest(3), runtime, "prepull-cache").unwrap();
            let parsed: serde_norway::Value = serde_norway::from_str(&document).unwrap();
            assert_eq!(parsed["name"].as_str(), Some("prepull-cache"));
            let phases = parsed["phases"].as_sequence().unwrap();
            let names: Vec<&str> = phases.iter().map(|p| p["name"].as_str().unwrap()).collect();
            assert_eq!(names, ["build", "validate"]);
            for phase in phases {
                for step in phase["steps"].as_sequence().unwrap() {
                    assert_eq!(step["action"].as_str(), Some("ExecutePowerShell"));
                    let script = step["inputs"]["commands"][0].as_str().unwrap();
                    assert!(script.starts_with("$ErrorActionPreference = 'Stop'\n"));
                    assert!(
                        !script.contains("{{"),
                        "AWSTOE would read {{ }} as a variable"
                    );
                }
            }
        }
    }

    #[test]
    fn one_login_per_registry_and_every_image_by_digest() {
        let manifest = manifest(6);
        let containerd = render(&manifest, Runtime::Containerd, "prepull-cache").unwrap();
        let docker = render(&manifest, Runtime::Docker, "prepull-cache").unwrap();
        for document in [&containerd, &docker] {
            assert_eq!(
                document.matches("\nConnect-Registry '").count(),
                0,
                "calls are indented in the block"
            );
            assert_eq!(
                document.matches(" Connect-Registry '").count(),
                2,
                "one login per registry"
            );
            assert!(document.contains(" Connect-Registry 'eu-west-1' '210987654321' '210987654321.dkr.ecr.eu-west-1.amazonaws.com'\n"));
            assert_eq!(document.matches(" Save-CachedImage '").count(), 6);
            assert_eq!(document.matches(" Test-CachedImage '").count(), 6);
            assert!(document.contains(" Save-CachedImage '123456789012.dkr.ecr.us-east-1.amazonaws.com/team/service-001' 'sha256:0000000000000000000000000000000000000000000000000000000000000002' 'v1'\n"));
            assert!(
                !document.contains("echo") && !document.contains("Write-Output $script:password")
            );
            assert!(
                document.contains("$script:password = $null"),
                "the password does not outlive the pulls"
            );
        }
        assert!(
            containerd.contains("-n k8s.io images pull")
                && containerd.contains("-n k8s.io images tag --force")
        );
        assert!(docker.contains("--password-stdin") && !docker.contains("k8s.io"));
    }

    #[test]
    fn an_oversized_document_says_how_many_images_fit() {
        let error = render(&manifest(200), Runtime::Containerd, "prepull-cache").unwrap_err();
        let DocumentError::TooLarge {
            images,
            characters,
            fit,
        } = error.clone()
        else {
            panic!("{error}")
        };
        assert_eq!(images, 200);
        assert!(characters > DOCUMENT_LIMIT);
        assert!(fit > 0 && fit < 200);
        assert!(
            render(
                &manifest(200).first(fit),
                Runtime::Containerd,
                "prepull-cache"
            )
            .is_ok()
        );
        assert!(
            render(
                &manifest(200).first(fit + 1),
                Runtime::Containerd,
                "prepull-cache"
            )
            .is_err()
        );
        assert!(
            error
                .to_string()
                .contains(&format!("at most {fit} of these images fit"))
        );
    }

    #[test]
    fn a_tampered_manifest_line_is_refused() {
        let document = render(&manifest(1), Runtime::Docker, "prepull-cache").unwrap();
        let tampered = document.replace("team/service-000", "team/x';calc;'");
        assert!(matches!(
            read_manifest(&tampered),
            Err(DocumentError::UnreadableManifest(_))
        ));
    }
}
