//! The cache component's AWSTOE document, rendered from a manifest and read back from it.
//!
//! The manifest is written once, as data: a PowerShell single-quoted here-string at the top of
//! the build step, one line per image, which the build step loops over and saves on the
//! instance (`%ProgramData%\prepull\cache-manifest.txt`, in the AMI too) and the validate step
//! reads back. The latest component version is therefore the record of what is cached, and
//! nothing else has to be stored. Every value in the data is a validated [`crate::image`]
//! type; the grammar allows no quote, so nothing can end the here-string, and the scripts only
//! ever use the values as strings, never as code.

use std::str::FromStr;

use chrono::{DateTime, Utc};

use crate::image::{Digest, ImageRef, Registry, Repository, Tag, quote};
use crate::manifest::{Manifest, PinnedImage};

/// Image Builder's limit on inline component data, in characters.
pub const DOCUMENT_LIMIT: usize = 16_000;

/// Earlier documents carried the manifest as JSON on this comment line; they still read.
pub const MANIFEST_MARKER: &str = "# prepull-manifest: ";
const RUNTIME_MARKER: &str = "# prepull-runtime: ";
/// The lines that open and close the manifest's here-string.
const DATA_OPEN: &str = "$manifest = @'";
const DATA_CLOSE: &str = "'@";
/// The first line of the data, for whoever reads the file on a node.
const DATA_HEADER: &str = "# prepull cache manifest: `registry <host>`, then its images as `<repository> <tag> <sha256 digest, hex> <pushed at, Unix seconds, or ->`";
/// The label containerd's CRI plugin reads as "pinned": kubelet's image garbage collection
/// never deletes a pinned image (see docs/node.md, "The cache on the node").
pub const CONTAINERD_PINNED_LABEL: &str = "io.cri-containerd.pinned=pinned";

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
    #[error("the component document's manifest cannot be read: {0}")]
    UnreadableManifest(String),
}

/// Renders the AWSTOE document that pulls, tags, pins and verifies every image of the
/// manifest.
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

/// Reads the manifest and runtime back from a document prepull rendered (this one's data
/// lines, or an earlier one's JSON comment line). A document without either (the bootstrap
/// version) holds no images.
pub fn read_manifest(document: &str) -> Result<(Manifest, Option<Runtime>), DocumentError> {
    let mut runtime = None;
    for line in document.lines() {
        if let Some(json) = line.strip_prefix(MANIFEST_MARKER) {
            let manifest = Manifest::from_json(json)
                .map_err(|e| DocumentError::UnreadableManifest(e.to_string()))?;
            return Ok((manifest, runtime));
        } else if let Some(name) = line.strip_prefix(RUNTIME_MARKER) {
            runtime = Some(Runtime::from_str(name).map_err(DocumentError::UnreadableManifest)?);
        } else if !line.starts_with('#') {
            break;
        }
    }
    let mut lines = document.lines().map(str::trim);
    if !lines.any(|line| line == DATA_OPEN) {
        return Ok((Manifest::new(), runtime));
    }
    let mut manifest = Manifest::new();
    let mut registry: Option<Registry> = None;
    for line in lines {
        if line == DATA_CLOSE {
            return Ok((manifest, runtime));
        }
        let pinned = read_data_line(line, &mut registry).map_err(|problem| {
            DocumentError::UnreadableManifest(format!("{problem} in {}", quote(line)))
        })?;
        if let Some(pinned) = pinned {
            manifest.pin(pinned.image, pinned.digest, pinned.pushed_at);
        }
    }
    Err(DocumentError::UnreadableManifest(format!(
        "the manifest's here-string has no closing {DATA_CLOSE}"
    )))
}

/// One data line: a comment, `registry <host>` (which the image lines after it belong to), or
/// `<repository> <tag> <digest hex> <pushed>`.
fn read_data_line(
    line: &str,
    registry: &mut Option<Registry>,
) -> Result<Option<PinnedImage>, String> {
    let fields: Vec<&str> = line.split_whitespace().collect();
    match fields.as_slice() {
        [] => Ok(None),
        [first, ..] if first.starts_with('#') => Ok(None),
        ["registry", host] => {
            *registry = Some(Registry::parse(host).map_err(|e| e.to_string())?);
            Ok(None)
        }
        [repository, tag, digest, pushed] => {
            let registry = registry
                .clone()
                .ok_or_else(|| "an image line before any registry line".to_owned())?;
            let pushed_at = match *pushed {
                "-" => None,
                seconds => Some(
                    seconds
                        .parse::<i64>()
                        .ok()
                        .and_then(|s| DateTime::<Utc>::from_timestamp(s, 0))
                        .ok_or_else(|| {
                            format!("{} is not a time in Unix seconds", quote(seconds))
                        })?,
                ),
            };
            Ok(Some(PinnedImage {
                image: ImageRef {
                    registry,
                    repository: Repository::parse(repository).map_err(|e| e.to_string())?,
                    tag: Tag::parse(tag).map_err(|e| e.to_string())?,
                },
                digest: Digest::parse(&format!("sha256:{digest}")).map_err(|e| e.to_string())?,
                pushed_at,
            }))
        }
        _ => Err("expected `registry <host>` or `<repository> <tag> <digest> <pushed>`".to_owned()),
    }
}

/// The manifest as the here-string's lines: each registry once, then its images.
fn data_lines(manifest: &Manifest) -> String {
    let mut data = format!("{DATA_HEADER}\n");
    let mut current: Option<Registry> = None;
    for pinned in manifest.images() {
        if current.as_ref() != Some(&pinned.image.registry) {
            data.push_str(&format!("registry {}\n", pinned.image.registry));
            current = Some(pinned.image.registry.clone());
        }
        let digest = pinned.digest.as_str();
        let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
        let pushed = pinned
            .pushed_at
            .map_or_else(|| "-".to_owned(), |at| at.timestamp().to_string());
        data.push_str(&format!(
            "{} {} {hex} {pushed}\n",
            pinned.image.repository, pinned.image.tag
        ));
    }
    data
}

fn render_unchecked(manifest: &Manifest, runtime: Runtime, component_name: &str) -> String {
    let (store, pull_script, verify_script) = match runtime {
        Runtime::Containerd => (
            "containerd (namespace k8s.io), pinned against kubelet's image garbage collection",
            CONTAINERD_PULL,
            CONTAINERD_VERIFY,
        ),
        Runtime::Docker => ("Docker", DOCKER_PULL, DOCKER_VERIFY),
    };
    let pull = format!(
        "{DATA_OPEN}\n{}{DATA_CLOSE}\n{pull_script}",
        data_lines(manifest)
    );

    let mut document = String::from(
        "# Generated by prepull from its manifest (the build step's data); do not edit by hand.\n",
    );
    document.push_str(&format!("{RUNTIME_MARKER}{}\n", runtime.as_str()));
    document.push_str(&format!("name: {}\n", yaml_plain(component_name)));
    document.push_str(&format!(
        "description: Pre-pulls {} container images by digest into {store}.\n",
        manifest.len()
    ));
    // Sequences are written without indentation (valid YAML), and the scripts at the least
    // indentation a block scalar there takes: every character counts against the limit.
    document.push_str("schemaVersion: 1.0\nphases:\n");
    document.push_str("- name: build\n  steps:\n  - name: PullCachedImages\n    action: ExecutePowerShell\n    timeoutSeconds: 7200\n    onFailure: Abort\n    maxAttempts: 3\n    inputs:\n      commands:\n      - |\n");
    indent_into(&mut document, &pull, 8);
    document.push_str("- name: validate\n  steps:\n  - name: VerifyCachedImages\n    action: ExecutePowerShell\n    onFailure: Abort\n    inputs:\n      commands:\n      - |\n");
    indent_into(&mut document, verify_script, 8);
    document
}

// The ECR password is held in a script variable and handed to the runtime directly (Docker
// reads it from stdin; ctr takes it as an argument of the process it starts): it is never part
// of the script text, which is what AWSTOE records of a step, and never printed.
const CONTAINERD_PULL: &str = include_str!("containerd_pull.ps1");

const CONTAINERD_VERIFY: &str = include_str!("containerd_verify.ps1");

const DOCKER_PULL: &str = include_str!("docker_pull.ps1");

const DOCKER_VERIFY: &str = include_str!("docker_verify.ps1");

fn indent_into(document: &mut String, text: &str, spaces: usize) {
    for line in text.lines() {
        if line.is_empty() {
            document.push('\n');
        } else {
            document.push_str(&format!("{:spaces$}{line}\n", ""));
        }
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
            let scripts: Vec<&str> = phases
                .iter()
                .map(|p| p["steps"][0]["inputs"]["commands"][0].as_str().unwrap())
                .collect();
            assert!(scripts[0].starts_with("$manifest = @'\n# prepull cache manifest"));
            assert!(scripts[0].contains("'@\n$ErrorActionPreference = 'Stop'\n"));
            assert!(scripts[1].starts_with("$ErrorActionPreference = 'Stop'\n"));
            for script in scripts {
                assert!(
                    !script.contains("{{"),
                    "AWSTOE would read {{ }} as a variable"
                );
            }
        }
    }

    #[test]
    fn the_manifest_is_written_once_as_data_each_registry_once() {
        let manifest = manifest(6);
        for runtime in [Runtime::Containerd, Runtime::Docker] {
            let document = render(&manifest, runtime, "prepull-cache").unwrap();
            assert_eq!(
                document.matches("\n        registry ").count(),
                2,
                "two registries"
            );
            for pinned in manifest.images() {
                let digest = pinned.digest.as_str().trim_start_matches("sha256:");
                assert_eq!(document.matches(digest).count(), 1, "each digest once");
                assert_eq!(
                    document
                        .matches(&format!(
                            "\n        {} {} {digest} -\n",
                            pinned.image.repository, pinned.image.tag
                        ))
                        .count(),
                    1
                );
            }
            assert!(!document.contains(MANIFEST_MARKER), "no second copy");
            assert!(
                document.contains("$script:password = $null"),
                "the password does not outlive the pulls"
            );
            assert!(!document.contains("Write-Output $script:password"));
            assert!(document.contains("cache-manifest.txt"));
            assert!(
                document.contains("Start-Service")
                    && document.contains("did not answer within 5 minutes"),
                "the runtime is started and waited for"
            );
        }
        let containerd = render(&manifest, Runtime::Containerd, "prepull-cache").unwrap();
        assert!(containerd.contains("-n k8s.io images pull --label $pinned"));
        assert!(containerd.contains("images label \"${name}:$tag\" $pinned"));
        assert!(containerd.contains(&format!("$pinned = '{CONTAINERD_PINNED_LABEL}'")));
        assert!(
            containerd.contains("not pinned, so kubelet's image garbage collection may delete it")
        );
        let docker = render(&manifest, Runtime::Docker, "prepull-cache").unwrap();
        assert!(docker.contains("--password-stdin") && !docker.contains("k8s.io"));
    }

    #[test]
    fn a_hundred_typical_images_fit() {
        // A 20-character repository and a 12-character tag, in one registry.
        let registry = Registry::parse("123456789012.dkr.ecr.us-east-1.amazonaws.com").unwrap();
        let manifest: Manifest = (0..100)
            .map(|n| PinnedImage {
                image: ImageRef::parse(
                    &format!("platform/service-{n:03}:v1.2.3-lts{n:02}"),
                    &registry,
                )
                .unwrap(),
                digest: Digest::parse(&format!("sha256:{:064x}", n + 1)).unwrap(),
                pushed_at: DateTime::<Utc>::from_timestamp(1_790_000_000 + i64::from(n), 0),
            })
            .collect();
        for image in manifest.images() {
            assert_eq!(image.image.repository.as_str().len(), 20);
            assert_eq!(image.image.tag.as_str().len(), 12);
        }
        for runtime in [Runtime::Containerd, Runtime::Docker] {
            let document = render(&manifest, runtime, "prepull-cache").unwrap();
            assert_eq!(
                read_manifest(&document).unwrap(),
                (manifest.clone(), Some(runtime))
            );
        }
    }

    #[test]
    fn an_earlier_documents_json_line_still_reads() {
        let manifest = manifest(2);
        let earlier = format!(
            "# Generated by prepull from the manifest below; do not edit by hand.\n{RUNTIME_MARKER}docker\n{MANIFEST_MARKER}{}\nname: prepull-cache\n",
            manifest.to_json()
        );
        assert_eq!(
            read_manifest(&earlier).unwrap(),
            (manifest, Some(Runtime::Docker))
        );
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
        for tampered in [
            document.replace("team/service-000", "team/x';calc;'"),
            document.replace(" v0 ", " v0 extra "),
            document.replace("registry 210987654321", "registry evil.example.com"),
            document.replace("\n        '@\n", "\n"),
        ] {
            assert!(
                matches!(
                    read_manifest(&tampered),
                    Err(DocumentError::UnreadableManifest(_))
                ),
                "{tampered}"
            );
        }
    }
}
