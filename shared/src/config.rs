//! Configuration from environment variables, validated once at init.
//!
//! A bad value stops the function before it handles anything, with a message that names the
//! variable.

use std::sync::LazyLock;

use regex::Regex;

use crate::document::Runtime;
use crate::image::{ImageRef, Registry, quote};

/// A setting that is missing or wrong, named by its environment variable.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{variable}: {problem}")]
pub struct ConfigError {
    pub variable: &'static str,
    pub problem: String,
}

impl ConfigError {
    fn new(variable: &'static str, problem: impl Into<String>) -> Self {
        Self {
            variable,
            problem: problem.into(),
        }
    }
}

static PIPELINE_ARN: LazyLock<Regex> = LazyLock::new(|| {
    // A constant pattern, checked by the tests below.
    #[allow(clippy::expect_used)]
    Regex::new(r"^arn:(?P<partition>aws[a-z-]*):imagebuilder:(?P<region>[a-z]{2}(?:-[a-z]+)+-[0-9]):(?P<account>[0-9]{12}):image-pipeline/(?P<name>[a-z0-9_-]{1,128})$")
        .expect("a valid built-in pattern")
});

static COMPONENT_NAME: LazyLock<Regex> = LazyLock::new(|| {
    #[allow(clippy::expect_used)]
    Regex::new(r"^[A-Za-z0-9][-_A-Za-z0-9]{1,125}[A-Za-z0-9]$").expect("a valid built-in pattern")
});

/// The image pipeline prepull drives, and where it lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PipelineArn {
    arn: String,
    pub account_id: String,
    pub region: String,
}

impl PipelineArn {
    pub fn parse(value: &str) -> Result<Self, String> {
        let captures = PIPELINE_ARN.captures(value).ok_or_else(|| {
            format!("{} is not an image pipeline ARN (arn:aws:imagebuilder:REGION:ACCOUNT:image-pipeline/NAME)", quote(value))
        })?;
        Ok(Self {
            arn: value.to_owned(),
            account_id: captures["account"].to_owned(),
            region: captures["region"].to_owned(),
        })
    }

    pub fn as_str(&self) -> &str {
        &self.arn
    }
}

/// What every function needs to know about the cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheConfig {
    pub pipeline: PipelineArn,
    pub component_name: String,
    /// The watched images, in the order configured, without duplicates.
    pub images: Vec<ImageRef>,
    pub runtime: Runtime,
}

impl CacheConfig {
    /// Reads the process environment.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads settings through `lookup`, so tests need not touch the process environment.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let required = |variable: &'static str| {
            lookup(variable)
                .filter(|v| !v.trim().is_empty())
                .ok_or_else(|| ConfigError::new(variable, "is not set"))
        };
        let pipeline = PipelineArn::parse(required("PREPULL_PIPELINE_ARN")?.trim())
            .map_err(|p| ConfigError::new("PREPULL_PIPELINE_ARN", p))?;
        let component_name = required("PREPULL_COMPONENT_NAME")?.trim().to_owned();
        if !COMPONENT_NAME.is_match(&component_name) {
            return Err(ConfigError::new(
                "PREPULL_COMPONENT_NAME",
                format!(
                    "{} is not a component name (3 to 127 of A-Z a-z 0-9 - _)",
                    quote(&component_name)
                ),
            ));
        }
        let local = Registry::for_account(&pipeline.account_id, &pipeline.region)
            .map_err(|e| ConfigError::new("PREPULL_PIPELINE_ARN", e.to_string()))?;
        let mut images: Vec<ImageRef> = Vec::new();
        for entry in required("PREPULL_IMAGES")?.split(',').map(str::trim) {
            if entry.is_empty() {
                return Err(ConfigError::new(
                    "PREPULL_IMAGES",
                    "has an empty entry between commas",
                ));
            }
            let image = ImageRef::parse(entry, &local)
                .map_err(|e| ConfigError::new("PREPULL_IMAGES", e.to_string()))?;
            if images.contains(&image) {
                return Err(ConfigError::new(
                    "PREPULL_IMAGES",
                    format!("lists {image} twice"),
                ));
            }
            images.push(image);
        }
        let runtime = match lookup("PREPULL_RUNTIME")
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
        {
            None => Runtime::default(),
            Some(value) => value
                .parse()
                .map_err(|p| ConfigError::new("PREPULL_RUNTIME", p))?,
        };
        Ok(Self {
            pipeline,
            component_name,
            images,
            runtime,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn settings(overrides: &[(&str, Option<&str>)]) -> Result<CacheConfig, ConfigError> {
        let mut env: HashMap<&str, Option<&str>> = HashMap::from([
            (
                "PREPULL_PIPELINE_ARN",
                Some(
                    "arn:aws:imagebuilder:eu-west-1:123456789012:image-pipeline/prepull-windows-cache",
                ),
            ),
            ("PREPULL_COMPONENT_NAME", Some("prepull-cache")),
            (
                "PREPULL_IMAGES",
                Some(
                    "team/web:v42, 210987654321.dkr.ecr.us-east-1.amazonaws.com/sidecar/fluent-bit:3.1",
                ),
            ),
        ]);
        env.extend(overrides.iter().copied());
        CacheConfig::from_lookup(|name| env.get(name).copied().flatten().map(str::to_owned))
    }

    #[test]
    fn a_complete_environment_is_read_with_defaults() {
        let config = settings(&[]).unwrap();
        assert_eq!(
            (
                config.pipeline.account_id.as_str(),
                config.pipeline.region.as_str()
            ),
            ("123456789012", "eu-west-1")
        );
        assert_eq!(
            config.images[0].to_string(),
            "123456789012.dkr.ecr.eu-west-1.amazonaws.com/team/web:v42",
            "repository:tag is this account and region"
        );
        assert_eq!(config.images[1].registry.account_id(), "210987654321");
        assert_eq!(config.runtime, Runtime::Containerd);
        assert_eq!(
            settings(&[("PREPULL_RUNTIME", Some("docker"))])
                .unwrap()
                .runtime,
            Runtime::Docker
        );
    }

    #[test]
    fn each_bad_setting_is_named() {
        let cases = [
            ("PREPULL_PIPELINE_ARN", None, "is not set"),
            (
                "PREPULL_PIPELINE_ARN",
                Some("arn:aws:imagebuilder:eu-west-1:123456789012:image-recipe/x/1.0.0"),
                "not an image pipeline ARN",
            ),
            (
                "PREPULL_COMPONENT_NAME",
                Some("cache'; calc"),
                "not a component name",
            ),
            ("PREPULL_IMAGES", Some(""), "is not set"),
            (
                "PREPULL_IMAGES",
                Some("team/web:v1,,team/api:v2"),
                "empty entry",
            ),
            ("PREPULL_IMAGES", Some("team/web:v1,team/web:v1"), "twice"),
            ("PREPULL_IMAGES", Some("team/web:$(calc)"), "tag"),
            (
                "PREPULL_IMAGES",
                Some("evil.example.com/team/web:v1"),
                "registry",
            ),
            ("PREPULL_RUNTIME", Some("cri-o"), "not a runtime"),
        ];
        for (variable, value, expected) in cases {
            let error = settings(&[(variable, value)]).unwrap_err();
            assert_eq!(error.variable, variable, "{error}");
            assert!(
                error.to_string().starts_with(&format!("{variable}: "))
                    && error.to_string().contains(expected),
                "{error}"
            );
        }
    }
}
