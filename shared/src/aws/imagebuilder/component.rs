//! The cache component: its versions, their builds and documents, and new versions.

use aws_sdk_imagebuilder::Client;
use aws_sdk_imagebuilder::types::{Filter, Ownership, Platform};
use prepull_core::arn::ImageBuilderArn;
use prepull_core::build::MANIFEST_TAG;
use prepull_core::component::{ComponentPlan, ComponentState};
use prepull_core::document;
use semver::Version;

use crate::aws::errors::{aws_error, missing};
use crate::error::PrepullError;

use super::{LARGEST_PAGE, returned_arn};

/// How many versions beyond what ListComponents reports are probed for.
const MAX_PROBED_VERSIONS: usize = 10;

/// Every build-version ARN of one component version; none if the version does not exist.
async fn list_build_arns(
    client: &Client,
    version_arn: &ImageBuilderArn,
) -> Result<Vec<ImageBuilderArn>, PrepullError> {
    let mut arns = Vec::new();
    let mut pages = client
        .list_component_build_versions()
        .component_version_arn(version_arn.as_str())
        .max_results(LARGEST_PAGE)
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        match page {
            Ok(page) => {
                for summary in page.component_summary_list() {
                    if let Some(arn) = summary.arn() {
                        arns.push(returned_arn("ListComponentBuildVersions", arn)?);
                    }
                }
            }
            Err(error)
                if error
                    .as_service_error()
                    .is_some_and(|e| e.meta().code() == Some("ResourceNotFoundException")) =>
            {
                break;
            }
            Err(error) => return Err(aws_error("ListComponentBuildVersions", error)),
        }
    }
    Ok(arns)
}

/// The manifest of one component version's build whose document hashes to `manifest_hash`
/// (a version has more than one build only when concurrent writers raced for it); `None` when
/// no build of the version carries it.
pub async fn manifest_of_version(
    client: &Client,
    version_arn: &ImageBuilderArn,
    manifest_hash: &str,
) -> Result<Option<prepull_core::manifest::Manifest>, PrepullError> {
    // Nearly every version has one build, `/1`: read it straight away, and list the builds
    // only when it is not the one (concurrent writers raced for the version). On AWS that is
    // one round trip instead of two.
    let first = format!("{version_arn}/1");
    if let Some((_, manifest)) = read_component(client, &first).await?
        && manifest.hash() == manifest_hash
    {
        return Ok(Some(manifest));
    }
    let mut builds = list_build_arns(client, version_arn).await?;
    builds.sort_by_key(ImageBuilderArn::build);
    for arn in builds.iter().rev().filter(|arn| arn.build() != Some(1)) {
        if let Some((_, manifest)) = read_component(client, arn.as_str()).await?
            && manifest.hash() == manifest_hash
        {
            return Ok(Some(manifest));
        }
    }
    Ok(None)
}

/// Reads the cache component: its highest version, and every build of that version.
pub async fn read_component_state(
    client: &Client,
    component_name: &str,
) -> Result<ComponentState, PrepullError> {
    let mut versions: Vec<(Version, ImageBuilderArn)> = Vec::new();
    let mut pages = client
        .list_components()
        .owner(Ownership::SelfValue)
        .filters(
            Filter::builder()
                .name("name")
                .values(component_name)
                .build(),
        )
        .max_results(LARGEST_PAGE)
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| aws_error("ListComponents", e))?;
        for summary in page.component_version_list() {
            let (Some(arn), Some(version)) = (summary.arn(), summary.version()) else {
                continue;
            };
            if summary.name() != Some(component_name) {
                continue;
            }
            if let Some(version) = prepull_core::arn::parse_exact_version(version) {
                versions.push((version, returned_arn("ListComponents", arn)?));
            }
        }
    }
    let Some((latest_version, version_arn)) = versions.into_iter().max_by(|a, b| a.0.cmp(&b.0))
    else {
        return Ok(ComponentState::default());
    };

    // ListComponents can lag behind a version created moments ago; the next patch versions
    // are probed directly, so two pushes in quick succession do not plan the same version.
    // The first probe goes beside the listed version's own builds: on AWS, one round trip.
    let (mut latest_version, mut version_arn) = (latest_version, version_arn);
    let mut next = prepull_core::component::next_version(Some(&latest_version));
    let mut next_arn = version_arn.at_version(&next);
    let (build_arns, next_builds) = tokio::join!(
        list_build_arns(client, &version_arn),
        list_build_arns(client, &next_arn),
    );
    let (mut build_arns, mut next_builds) = (build_arns?, next_builds?);
    for _ in 0..MAX_PROBED_VERSIONS {
        if next_builds.is_empty() {
            break;
        }
        (latest_version, version_arn, build_arns) = (next, next_arn, next_builds);
        next = prepull_core::component::next_version(Some(&latest_version));
        next_arn = version_arn.at_version(&next);
        next_builds = list_build_arns(client, &next_arn).await?;
    }
    build_arns.sort_by_key(ImageBuilderArn::build);

    let mut state = ComponentState {
        latest_version: Some(latest_version.clone()),
        ..ComponentState::default()
    };
    for arn in &build_arns {
        let response = client
            .get_component()
            .component_build_version_arn(arn.as_str())
            .send()
            .await
            .map_err(|e| aws_error("GetComponent", e))?;
        let data = response
            .component()
            .and_then(|c| c.data())
            .unwrap_or_default();
        let (manifest, runtime) = document::read_manifest(data)?;
        state.merged_manifest.merge_newest(&manifest);
        state.latest_manifest = manifest;
        state.latest_build_arn = Some(arn.clone());
        state.latest_runtime = runtime;
    }
    Ok(state)
}

/// What a component write came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ComponentWrite {
    /// The new build's ARN: `/1`, or a later build when another writer made the version first
    /// (Image Builder since November 2025).
    Created(ImageBuilderArn),
    /// Another writer made the version first and Image Builder refused a second one
    /// (`ResourceInUseException`).
    VersionTaken,
}

/// Creates a component version.
pub async fn create_component(
    client: &Client,
    component_name: &str,
    plan: &ComponentPlan,
) -> Result<ComponentWrite, PrepullError> {
    let response = client
        .create_component()
        .name(component_name)
        .semantic_version(&plan.version)
        .platform(Platform::Windows)
        .description(&plan.description)
        .change_description(format!(
            "manifest {}",
            &plan.manifest_hash[..16.min(plan.manifest_hash.len())]
        ))
        .data(&plan.document)
        .client_token(&plan.client_token)
        .tags(MANIFEST_TAG, &plan.manifest_hash)
        .send()
        .await;
    let response = match response {
        Ok(response) => response,
        Err(error)
            if error.as_service_error().is_some_and(
                aws_sdk_imagebuilder::operation::create_component::CreateComponentError::is_resource_in_use_exception,
            ) =>
        {
            return Ok(ComponentWrite::VersionTaken);
        }
        Err(error) => return Err(aws_error("CreateComponent", error)),
    };
    let arn = response
        .component_build_version_arn()
        .ok_or_else(|| missing("CreateComponent", "componentBuildVersionArn"))?;
    returned_arn("CreateComponent", arn).map(ComponentWrite::Created)
}

/// The build a component ARN (a build, a version, or a wildcard) resolves to now, and the hash
/// of the manifest its document carries; `None` when nothing matches yet.
pub async fn resolve_component(
    client: &Client,
    arn: &str,
) -> Result<Option<(ImageBuilderArn, String)>, PrepullError> {
    Ok(read_component(client, arn)
        .await?
        .map(|(arn, manifest)| (arn, manifest.hash())))
}

/// The build a component ARN resolves to, and the manifest its document carries; `None` when
/// nothing matches.
async fn read_component(
    client: &Client,
    arn: &str,
) -> Result<Option<(ImageBuilderArn, prepull_core::manifest::Manifest)>, PrepullError> {
    let response = match client
        .get_component()
        .component_build_version_arn(arn)
        .send()
        .await
    {
        Ok(response) => response,
        Err(error)
            if error
                .as_service_error()
                .is_some_and(|e| e.meta().code() == Some("ResourceNotFoundException")) =>
        {
            return Ok(None);
        }
        Err(error) => return Err(aws_error("GetComponent", error)),
    };
    let component = response
        .component()
        .ok_or_else(|| missing("GetComponent", "component"))?;
    let arn = component
        .arn()
        .ok_or_else(|| missing("GetComponent", "component.arn"))?;
    let data = component
        .data()
        .ok_or_else(|| missing("GetComponent", "component.data"))?;
    let (manifest, _) = document::read_manifest(data)?;
    Ok(Some((returned_arn("GetComponent", arn)?, manifest)))
}
