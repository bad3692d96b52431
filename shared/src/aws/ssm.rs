//! Parameter Store: the AMI parameter in each region, its history and labels, and the
//! recipe's `ssm:` parent image.

use aws_sdk_ssm::Client;
use aws_sdk_ssm::operation::label_parameter_version::LabelParameterVersionError;
use aws_sdk_ssm::types::ParameterType;
use chrono::{DateTime, Utc};
use prepull_core::parameter::{ParameterVersion, version_to_release};

use crate::aws::errors::aws_error;
use crate::error::PrepullError;

/// The data type that makes Parameter Store check the value is an AMI ID.
const AMI_DATA_TYPE: &str = "aws:ec2:image";

/// The parameter's current value, version and last write, if it exists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CurrentValue {
    pub value: String,
    pub version: i64,
    pub modified: Option<DateTime<Utc>>,
}

/// Reads `name` (or `name:label`); `None` when the parameter or the label does not exist.
pub async fn get(client: &Client, name: &str) -> Result<Option<CurrentValue>, PrepullError> {
    match client.get_parameter().name(name).send().await {
        Ok(response) => Ok(response.parameter.map(|p| CurrentValue {
            value: p.value().unwrap_or_default().to_owned(),
            version: p.version(),
            modified: p.last_modified_date().and_then(to_chrono),
        })),
        Err(error)
            if error.as_service_error().is_some_and(|e| {
                e.is_parameter_not_found() || e.is_parameter_version_not_found()
            }) =>
        {
            Ok(None)
        }
        Err(error) => Err(aws_error("GetParameter", error)),
    }
}

/// Every version the parameter holds, oldest first.
pub async fn read_history(
    client: &Client,
    parameter: &str,
) -> Result<Vec<ParameterVersion>, PrepullError> {
    let mut history = Vec::new();
    let mut pages = client
        .get_parameter_history()
        .name(parameter)
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        let page = page.map_err(|e| aws_error("GetParameterHistory", e))?;
        history.extend(page.parameters().iter().map(|p| ParameterVersion {
            version: p.version(),
            value: p.value().unwrap_or_default().to_owned(),
            labels: p.labels().to_vec(),
            description: p.description().unwrap_or_default().to_owned(),
        }));
    }
    history.sort_by_key(|v| v.version);
    Ok(history)
}

/// Writes the AMI as a new version and returns its number. When Parameter Store refuses a
/// 101st version because the oldest is labelled, the oldest is unlabelled and the write tried
/// once more.
pub async fn put_ami(
    client: &Client,
    parameter: &str,
    ami: &str,
    description: &str,
) -> Result<i64, PrepullError> {
    let put = || {
        client
            .put_parameter()
            .name(parameter)
            .value(ami)
            .r#type(ParameterType::String)
            .data_type(AMI_DATA_TYPE)
            .overwrite(true)
            .description(description)
            .send()
    };
    let written = match put().await {
        Err(error)
            if error
                .as_service_error()
                .is_some_and(aws_sdk_ssm::operation::put_parameter::PutParameterError::is_parameter_max_version_limit_exceeded) =>
        {
            release_oldest_version(client, parameter).await?;
            put().await
        }
        result => result,
    }
    .map_err(|e| aws_error("PutParameter", e))?;
    Ok(written.version())
}

/// Waits until `version` of the parameter holds `value`: Parameter Store validates an
/// `aws:ec2:image` value after `PutParameter` answers ("Parameter Store validates the
/// parameter value asynchronously", Systems Manager User Guide, "Native parameter support for
/// Amazon Machine Image IDs"), and a refused value's version never appears. `Ok(false)` when it
/// has not appeared by `until`.
pub async fn written(
    client: &Client,
    parameter: &str,
    version: i64,
    value: &str,
    until: std::time::Instant,
    every: std::time::Duration,
) -> Result<bool, PrepullError> {
    loop {
        if let Some(found) = get(client, &format!("{parameter}:{version}")).await? {
            return Ok(found.value == value);
        }
        if std::time::Instant::now() + every > until {
            return Ok(false);
        }
        tokio::time::sleep(every).await;
    }
}

/// What a label request came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Labelled {
    /// The label is on the version (moved there if another version had it).
    Attached,
    /// The version already holds SSM's ten labels ("A version of a parameter can have a
    /// maximum of 10 labels", `LabelParameterVersion`, SSM API Reference); nothing changed.
    VersionFull,
}

/// Puts `label` on `version`. SSM reports a refused label in the response, not as an error;
/// a version at the ten-label limit is reported as [`Labelled::VersionFull`].
pub async fn label(
    client: &Client,
    parameter: &str,
    version: i64,
    label: &str,
) -> Result<Labelled, PrepullError> {
    let labelled = match client
        .label_parameter_version()
        .name(parameter)
        .parameter_version(version)
        .labels(label)
        .send()
        .await
    {
        Ok(labelled) => labelled,
        Err(error)
            if error.as_service_error().is_some_and(
                LabelParameterVersionError::is_parameter_version_label_limit_exceeded,
            ) =>
        {
            return Ok(Labelled::VersionFull);
        }
        Err(error) => return Err(aws_error("LabelParameterVersion", error)),
    };
    if labelled.invalid_labels().is_empty() {
        Ok(Labelled::Attached)
    } else {
        Err(PrepullError::Unexpected {
            what: "LabelParameterVersion",
            detail: format!("SSM refused the label {label}"),
        })
    }
}

/// See [`version_to_release`].
async fn release_oldest_version(client: &Client, parameter: &str) -> Result<(), PrepullError> {
    let history = read_history(client, parameter).await?;
    let Some(oldest) = version_to_release(&history) else {
        return Ok(());
    };
    tracing::warn!(parameter, version = oldest.version, labels = ?oldest.labels, "the parameter holds 100 versions; unlabelling the oldest so Parameter Store can drop it");
    client
        .unlabel_parameter_version()
        .name(parameter)
        .parameter_version(oldest.version)
        .set_labels(Some(oldest.labels.clone()))
        .send()
        .await
        .map_err(|e| aws_error("UnlabelParameterVersion", e))?;
    Ok(())
}

/// The recipe's parent image as it resolves now: the `ssm:` parameter's value, or the
/// reference itself for an AMI ID or image ARN. `None` when the parameter does not exist.
pub async fn parent_image_value(
    client: &Client,
    parent: Option<&str>,
) -> Result<Option<String>, PrepullError> {
    let Some(parent) = parent else {
        return Ok(None);
    };
    let Some(parameter) = parent.strip_prefix("ssm:") else {
        return Ok(Some(parent.to_owned()));
    };
    let value = get(client, parameter).await?;
    if value.is_none() {
        tracing::warn!(
            parameter,
            "the recipe's parent image parameter does not exist"
        );
    }
    Ok(value.map(|v| v.value))
}

/// The SDK's timestamps, as the core's decisions read them.
pub fn to_chrono(at: &aws_smithy_types::DateTime) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp(at.secs(), at.subsec_nanos())
}
