//! The rendered cache documents, pinned byte for byte, and checked for AWSTOE's structure.
//! After an intended change to the document, regenerate with
//! `PREPULL_UPDATE_GOLDEN=1 cargo test -p prepull-tests --test suite golden_documents`.

use std::path::PathBuf;

use prepull::core::document::{Runtime, read_manifest, render};
use prepull::core::image::{Digest, ImageRef, Registry};
use prepull::core::manifest::{Manifest, PinnedImage};

fn manifest() -> Manifest {
    let home = Registry::parse("123456789012.dkr.ecr.us-east-1.amazonaws.com").unwrap();
    let entries = [
        ("team/web:v42", "2026-11-10T18:22:05Z"),
        ("team/api:v7", "2026-11-09T08:00:00Z"),
        (
            "210987654321.dkr.ecr.eu-west-1.amazonaws.com/sidecar/fluent-bit:3.1-ltsc2022",
            "2026-10-01T00:00:00Z",
        ),
    ];
    entries
        .iter()
        .enumerate()
        .map(|(n, (reference, time))| PinnedImage {
            image: ImageRef::parse(reference, &home).unwrap(),
            digest: Digest::parse(&format!("sha256:{:064x}", 0xabc0 + n)).unwrap(),
            pushed_at: Some(
                chrono::DateTime::parse_from_rfc3339(time)
                    .unwrap()
                    .with_timezone(&chrono::Utc),
            ),
        })
        .collect()
}

fn golden(runtime: Runtime) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("golden")
        .join(format!("{}.yaml", runtime.as_str()))
}

#[test]
fn documents_match_their_golden_files() {
    for runtime in [Runtime::Containerd, Runtime::Docker] {
        let rendered = render(&manifest(), runtime, "prepull-cache").unwrap();
        let path = golden(runtime);
        if std::env::var_os("PREPULL_UPDATE_GOLDEN").is_some() {
            std::fs::write(&path, &rendered).unwrap();
        }
        let expected = std::fs::read_to_string(&path).unwrap();
        assert_eq!(
            rendered,
            expected,
            "{} changed; regenerate it if that was intended",
            path.display()
        );
        assert_eq!(
            read_manifest(&expected).unwrap(),
            (manifest(), Some(runtime))
        );
    }
}

#[test]
fn golden_documents_have_awstoe_structure() {
    for runtime in [Runtime::Containerd, Runtime::Docker] {
        let text = std::fs::read_to_string(golden(runtime)).unwrap();
        let document: serde_norway::Value = serde_norway::from_str(&text).unwrap();
        assert_eq!(document["name"].as_str(), Some("prepull-cache"));
        assert_eq!(document["schemaVersion"].as_f64(), Some(1.0));
        assert!(
            document["description"]
                .as_str()
                .unwrap()
                .contains("3 container images")
        );
        let phases = document["phases"].as_sequence().unwrap();
        assert_eq!(
            phases
                .iter()
                .map(|p| p["name"].as_str().unwrap())
                .collect::<Vec<_>>(),
            ["build", "validate"]
        );
        for phase in phases {
            let steps = phase["steps"].as_sequence().unwrap();
            assert_eq!(steps.len(), 1);
            for step in steps {
                assert_eq!(step["action"].as_str(), Some("ExecutePowerShell"));
                assert!(
                    step["name"]
                        .as_str()
                        .unwrap()
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric())
                );
                let commands = step["inputs"]["commands"].as_sequence().unwrap();
                assert_eq!(commands.len(), 1);
            }
        }
        // The manifest is in the document once, as the build step's data: three images, each
        // registry named once, and every digest written once.
        let build = document["phases"][0]["steps"][0]["inputs"]["commands"][0]
            .as_str()
            .unwrap();
        assert_eq!(build.matches("\nregistry ").count(), 2);
        for pinned in manifest().images() {
            let hex = pinned.digest.as_str().trim_start_matches("sha256:");
            assert_eq!(text.matches(hex).count(), 1);
        }
        assert!(
            document["phases"][1]["steps"][0]["inputs"]["commands"][0]
                .as_str()
                .unwrap()
                .contains("cache-manifest.txt"),
            "validate reads what build recorded"
        );
    }
}
