//! Configuration from environment variables, validated once at init.
//!
//! A bad value stops the function before it handles anything, with a message that names the
//! variable.

use std::sync::LazyLock;
use std::time::Duration;

use regex_lite::Regex;
use serde::Serialize;

use crate::arn::ImageBuilderArn;
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

#[expect(
    clippy::expect_used,
    reason = "a constant pattern, checked by the tests below"
)]
static COMPONENT_NAME: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^[A-Za-z0-9][-_A-Za-z0-9]{1,125}[A-Za-z0-9]$").expect("a valid built-in pattern")
});

#[expect(
    clippy::expect_used,
    reason = "a constant pattern, checked by the tests below"
)]
static PARAMETER_NAME: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(r"^/[A-Za-z0-9_.-]+(?:/[A-Za-z0-9_.-]+)*$").expect("a valid built-in pattern")
});

/// What every function needs to know about the cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheConfig {
    /// The image pipeline prepull drives; its partition, region and account are prepull's.
    pub pipeline: ImageBuilderArn,
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
        let pipeline = ImageBuilderArn::pipeline(required("PREPULL_PIPELINE_ARN")?.trim())
            .map_err(|p| ConfigError::new("PREPULL_PIPELINE_ARN", p.to_string()))?;
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
        let local = Registry::for_account(pipeline.account(), pipeline.region())
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

fn optional(lookup: &impl Fn(&str) -> Option<String>, variable: &str) -> Option<String> {
    lookup(variable)
        .map(|v| v.trim().to_owned())
        .filter(|v| !v.is_empty())
}

/// patch-day's own settings, read at init like the rest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PatchDaySettings {
    pub offset_days: u32,
    pub max_image_age_days: u32,
}

impl PatchDaySettings {
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let number = |variable: &'static str, default: u32, max: u32| -> Result<u32, ConfigError> {
            match optional(&lookup, variable) {
                None => Ok(default),
                Some(text) => text
                    .parse::<u32>()
                    .ok()
                    .filter(|n| *n <= max)
                    .ok_or_else(|| {
                        ConfigError::new(
                            variable,
                            format!(
                                "{} is not a whole number of days from 0 to {max}",
                                quote(&text)
                            ),
                        )
                    }),
            }
        };
        Ok(Self {
            offset_days: number("PREPULL_PATCH_DAY_OFFSET_DAYS", 1, 14)?,
            max_image_age_days: number("PREPULL_MAX_IMAGE_AGE_DAYS", 35, 3650)?,
        })
    }
}

/// What to do about a refresh that is already running on a group.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum InProgress {
    /// Cancel it and start one that rolls out the new AMI.
    Replace,
    /// Leave it, and report the group as skipped.
    Skip,
}

/// Auto Scaling's `ScaleInProtectedInstances` refresh preference.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScaleInProtected {
    Refresh,
    Ignore,
    Wait,
}

impl ScaleInProtected {
    pub fn as_str(self) -> &'static str {
        match self {
            ScaleInProtected::Refresh => "Refresh",
            ScaleInProtected::Ignore => "Ignore",
            ScaleInProtected::Wait => "Wait",
        }
    }
}

/// build-finished's own settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FleetSettings {
    pub parameter: String,
    pub asg_names: Vec<String>,
    pub min_healthy_percent: i32,
    pub warmup_seconds: i32,
    pub in_progress: InProgress,
    pub scale_in_protected: Option<ScaleInProtected>,
    /// How often a cancelled refresh is checked while waiting for it to end.
    pub poll_interval: Duration,
    /// How long a written `aws:ec2:image` version may take to appear: Parameter Store
    /// validates the value after `PutParameter` answers, and never writes one it refuses.
    pub confirm_timeout: Duration,
    /// How often the written version is looked for meanwhile.
    pub confirm_interval: Duration,
}

impl FleetSettings {
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let get = |name: &str| optional(&lookup, name);
        let parameter =
            get("PREPULL_AMI_PARAMETER").unwrap_or_else(|| "/prepull/ami-id".to_owned());
        let reserved = ["/aws", "/ssm"]
            .iter()
            .any(|p| parameter.to_lowercase().starts_with(p));
        if parameter.len() > 1011 || !PARAMETER_NAME.is_match(&parameter) || reserved {
            return Err(ConfigError::new(
                "PREPULL_AMI_PARAMETER",
                format!(
                    "{} is not a parameter name of your own (/a/b, not under /aws or /ssm)",
                    quote(&parameter)
                ),
            ));
        }
        let mut asg_names = Vec::new();
        for name in get("PREPULL_ASG_NAMES")
            .unwrap_or_default()
            .split(',')
            .map(str::trim)
            .filter(|n| !n.is_empty())
        {
            let ok = name.len() <= 255 && name.chars().all(|c| c.is_ascii_graphic() || c == ' ');
            if !ok {
                return Err(ConfigError::new(
                    "PREPULL_ASG_NAMES",
                    format!("{} is not an Auto Scaling group name", quote(name)),
                ));
            }
            asg_names.push(name.to_owned());
        }
        let number = |variable: &'static str, default: i32, max: i32| match get(variable) {
            None => Ok(default),
            Some(text) => text
                .parse::<i32>()
                .ok()
                .filter(|n| (0..=max).contains(n))
                .ok_or_else(|| {
                    ConfigError::new(
                        variable,
                        format!("{} is not a number from 0 to {max}", quote(&text)),
                    )
                }),
        };
        let in_progress = match get("PREPULL_REFRESH_IN_PROGRESS").as_deref() {
            None | Some("replace") => InProgress::Replace,
            Some("skip") => InProgress::Skip,
            Some(other) => {
                return Err(ConfigError::new(
                    "PREPULL_REFRESH_IN_PROGRESS",
                    format!("{} is not replace or skip", quote(other)),
                ));
            }
        };
        let scale_in_protected = match get("PREPULL_REFRESH_SCALE_IN_PROTECTED").as_deref() {
            None => None,
            Some("Refresh") => Some(ScaleInProtected::Refresh),
            Some("Ignore") => Some(ScaleInProtected::Ignore),
            Some("Wait") => Some(ScaleInProtected::Wait),
            Some(other) => {
                return Err(ConfigError::new(
                    "PREPULL_REFRESH_SCALE_IN_PROTECTED",
                    format!("{} is not Refresh, Ignore or Wait", quote(other)),
                ));
            }
        };
        Ok(Self {
            parameter,
            asg_names,
            min_healthy_percent: number("PREPULL_REFRESH_MIN_HEALTHY_PERCENT", 90, 100)?,
            warmup_seconds: number("PREPULL_REFRESH_WARMUP_SECONDS", 300, 3600)?,
            in_progress,
            scale_in_protected,
            poll_interval: Duration::from_secs(5),
            confirm_timeout: Duration::from_secs(20),
            confirm_interval: Duration::from_secs(1),
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
            (config.pipeline.account(), config.pipeline.region()),
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

    #[test]
    fn patch_day_settings_default_and_name_bad_values() {
        assert_eq!(
            PatchDaySettings::from_lookup(|_| None).unwrap(),
            PatchDaySettings {
                offset_days: 1,
                max_image_age_days: 35
            }
        );
        for (variable, value) in [
            ("PREPULL_MAX_IMAGE_AGE_DAYS", "-3"),
            ("PREPULL_PATCH_DAY_OFFSET_DAYS", "30"),
        ] {
            let error =
                PatchDaySettings::from_lookup(|n| (n == variable).then(|| value.to_owned()))
                    .unwrap_err();
            assert_eq!(error.variable, variable, "{value}");
        }
    }

    #[test]
    fn fleet_settings_default_and_name_bad_values() {
        let settings = FleetSettings::from_lookup(|_| None).unwrap();
        assert_eq!(
            (
                settings.parameter.as_str(),
                settings.min_healthy_percent,
                settings.warmup_seconds,
                settings.in_progress
            ),
            ("/prepull/ami-id", 90, 300, InProgress::Replace)
        );
        assert!(settings.asg_names.is_empty());
        for (variable, value) in [
            ("PREPULL_AMI_PARAMETER", "/aws/service/x"),
            ("PREPULL_AMI_PARAMETER", "no-slash"),
            ("PREPULL_REFRESH_MIN_HEALTHY_PERCENT", "101"),
            ("PREPULL_REFRESH_IN_PROGRESS", "cancel"),
            ("PREPULL_REFRESH_SCALE_IN_PROTECTED", "refresh"),
            ("PREPULL_ASG_NAMES", "a,b\nc"),
        ] {
            let error = FleetSettings::from_lookup(|n| (n == variable).then(|| value.to_owned()))
                .unwrap_err();
            assert_eq!(error.variable, variable, "{value}");
        }
    }
}
