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

/// The scripts of a rendered document: the build step's, then the validate step's.
fn scripts(document: &str) -> Vec<String> {
    let parsed: serde_norway::Value = serde_norway::from_str(document).unwrap();
    parsed["phases"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|phase| {
            phase["steps"][0]["inputs"]["commands"][0]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect()
}

fn powershell(script: &str) -> tree_sitter::Tree {
    let mut parser = tree_sitter::Parser::new();
    parser
        .set_language(&tree_sitter_powershell::LANGUAGE.into())
        .unwrap();
    parser.parse(script, None).unwrap()
}

/// The kinds of the named nodes, in order: the script's structure without its text.
fn shape(tree: &tree_sitter::Tree) -> Vec<&'static str> {
    let mut kinds = Vec::new();
    let mut cursor = tree.walk();
    let mut descending = true;
    loop {
        if descending {
            if cursor.node().is_named() {
                kinds.push(cursor.node().kind());
            }
            if cursor.goto_first_child() {
                continue;
            }
        }
        if cursor.goto_next_sibling() {
            descending = true;
            continue;
        }
        if !cursor.goto_parent() {
            return kinds;
        }
        descending = false;
    }
}

/// Every script parses as PowerShell with no error or missing node, and its structure is the
/// same as the empty manifest's: the names, tags and digests are data inside one literal, and
/// cannot become code whatever they are.
fn assert_scripts_inert(manifest: &Manifest, runtime: Runtime) {
    let document = render(manifest, runtime, "prepull-cache").unwrap();
    let empty = render(&Manifest::new(), runtime, "prepull-cache").unwrap();
    for (script, reference) in scripts(&document).iter().zip(scripts(&empty)) {
        let tree = powershell(script);
        assert!(
            !tree.root_node().has_error(),
            "the script does not parse as PowerShell:\n{script}\n{}",
            tree.root_node().to_sexp()
        );
        assert_eq!(
            shape(&tree),
            shape(&powershell(&reference)),
            "the manifest changed the script's structure:\n{script}"
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn every_script_parses_as_powershell_and_the_data_never_changes_its_structure(
        manifest in manifest(),
        docker in any::<bool>(),
    ) {
        let runtime = if docker { Runtime::Docker } else { Runtime::Containerd };
        if render(&manifest, runtime, "prepull-cache").is_ok() {
            assert_scripts_inert(&manifest, runtime);
        }
    }
}

#[test]
fn names_that_look_like_powershell_or_yaml_stay_data() {
    let registry = Registry::for_account("123456789012", "us-east-1").unwrap();
    let looks_like_code = [
        "iex:Invoke-Expression",
        "remove-item/c:Remove-Item",
        "start-process:Start-Process",
        "write-output/password:_",
        "foreach/if/else:_---",
        "registry:registry",
        "a_b/c.d-e:a.-b",
        "powershell:0x1",
    ];
    let manifest: Manifest = looks_like_code
        .iter()
        .enumerate()
        .map(|(n, reference)| PinnedImage {
            image: ImageRef::parse(reference, &registry).unwrap(),
            digest: Digest::parse(&format!("sha256:{:064x}", n + 1)).unwrap(),
            pushed_at: None,
        })
        .collect();
    assert_eq!(manifest.len(), looks_like_code.len());
    // The checks can fail: a broken script has an error node, and a line that closed the
    // here-string early would change the structure.
    assert!(
        powershell("if ($x) { Write-Output 1")
            .root_node()
            .has_error()
    );
    let build = &scripts(&render(&manifest, Runtime::Docker, "prepull-cache").unwrap())[0];
    let escaped = build.replacen(
        "\nregistry ",
        "\n'@\nRemove-Item -Recurse C:\\\n$rest = @'\nregistry ",
        1,
    );
    let empty = &scripts(&render(&Manifest::new(), Runtime::Docker, "prepull-cache").unwrap())[0];
    assert_ne!(shape(&powershell(&escaped)), shape(&powershell(empty)));
    for runtime in [Runtime::Containerd, Runtime::Docker] {
        assert_scripts_inert(&manifest, runtime);
        let document = render(&manifest, runtime, "prepull-cache").unwrap();
        assert_eq!(read_manifest(&document).unwrap().0, manifest);
    }
}
