//! Every document prepull writes is one AWSTOE accepts: the renderer for any manifest that
//! fits, and the template's bootstrap version.

use chrono::SubsecRound as _;
use prepull::core::document::{DOCUMENT_LIMIT, Runtime, read_manifest, render};
use prepull::core::image::{Digest, ImageRef, Registry};
use prepull::core::manifest::{Manifest, PinnedImage};
use prepull_bench::emulator::awstoe::check_document;
use proptest::prelude::*;

/// An ECR repository name: lowercase words joined by single separators, in 1 to 3 segments.
fn repository() -> impl Strategy<Value = String> {
    let word = "[a-z0-9]{1,8}([._-][a-z0-9]{1,8}){0,2}";
    proptest::collection::vec(word, 1..=3).prop_map(|segments| segments.join("/"))
}

fn tag() -> impl Strategy<Value = String> {
    "[A-Za-z0-9_][A-Za-z0-9_.-]{0,30}"
}

fn registry() -> impl Strategy<Value = Registry> {
    (
        prop_oneof![Just("123456789012"), Just("210987654321")],
        prop_oneof![Just("us-east-1"), Just("eu-west-1"), Just("cn-north-1")],
    )
        .prop_map(|(account, region)| Registry::for_account(account, region).unwrap())
}

/// When the digest was pushed: unknown, or any second (with a fraction, as an ECR read gives).
fn pushed_at() -> impl Strategy<Value = Option<chrono::DateTime<chrono::Utc>>> {
    proptest::option::of((1_600_000_000_i64..2_000_000_000, 0_u32..1_000_000_000))
        .prop_map(|at| at.and_then(|(secs, nanos)| chrono::DateTime::from_timestamp(secs, nanos)))
}

fn pinned() -> impl Strategy<Value = Option<PinnedImage>> {
    (registry(), repository(), tag(), "[a-f0-9]{64}", pushed_at()).prop_map(
        |(registry, repository, tag, hex, pushed_at)| {
            let image = ImageRef::parse(&format!("{repository}:{tag}"), &registry).ok()?;
            Some(PinnedImage {
                image,
                digest: Digest::parse(&format!("sha256:{hex}")).ok()?,
                pushed_at,
            })
        },
    )
}

/// A component name as the configuration accepts it.
fn component_name() -> impl Strategy<Value = String> {
    "[A-Za-z0-9][-_A-Za-z0-9]{1,40}[A-Za-z0-9]"
}

fn manifest() -> impl Strategy<Value = Manifest> {
    proptest::collection::vec(pinned(), 0..40)
        .prop_map(|images| images.into_iter().flatten().collect())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn any_manifest_that_fits_renders_a_document_awstoe_accepts(
        manifest in manifest(),
        docker in any::<bool>(),
        name in component_name(),
    ) {
        let runtime = if docker { Runtime::Docker } else { Runtime::Containerd };
        match render(&manifest, runtime, &name) {
            Ok(document) => {
                prop_assert!(document.chars().count() <= DOCUMENT_LIMIT);
                prop_assert_eq!(check_document(&document), Ok(()));
                let (read, read_runtime) = read_manifest(&document).unwrap();
                prop_assert_eq!(read_runtime, Some(runtime));
                // Push times are kept to the second (the staleness and tie rules compare whole
                // seconds, as ECR's event times are).
                let to_the_second: Manifest = manifest
                    .images()
                    .map(|mut pin| {
                        pin.pushed_at = pin.pushed_at.map(|at| at.trunc_subsecs(0));
                        pin
                    })
                    .collect();
                prop_assert_eq!(read.to_json(), to_the_second.to_json(), "push times read back too");
                prop_assert_eq!(render(&manifest, runtime, &name).unwrap(), document.clone());
                prop_assert_eq!(render(&read, runtime, &name).unwrap(), document);
            }
            Err(error) => prop_assert!(error.to_string().contains("fit"), "{}", error),
        }
    }
}

/// The template writes a bootstrap version before prepull has written one: it must be a
/// document AWSTOE accepts too.
#[test]
fn the_templates_bootstrap_version_is_a_document_awstoe_accepts() {
    let template = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .unwrap()
            .join("template.yaml"),
    )
    .unwrap();
    let start = template
        .find("# Bootstrap version written by the prepull template")
        .expect("the template writes a bootstrap version");
    let indent = template[..start].rsplit('\n').next().unwrap().len();
    let block: Vec<&str> = template[start - indent..]
        .lines()
        .take_while(|line| {
            line.trim().is_empty() || line.len() > indent && line[..indent].trim().is_empty()
        })
        .map(|line| line.get(indent..).unwrap_or_default())
        .collect();
    let document = block
        .join("\n")
        .replace("${ComponentName}", "prepull-cache")
        .replace("${ContainerRuntime}", "containerd");
    assert_eq!(check_document(&document), Ok(()), "{document}");
    assert_eq!(
        read_manifest(&document).unwrap(),
        (Manifest::new(), Some(Runtime::Containerd))
    );
}
