//! Whether a group's launch template can pick up the AMI prepull just published. A refresh
//! replaces every instance with what the launch template launches: when that is not the
//! parameter's new value, or cannot launch from it, the refresh would churn the fleet for
//! nothing (or fail), so the group is reported as misconfigured instead.

use std::fmt;

use serde::{Serialize, Serializer};

use crate::image::quote;

/// The root device of a Windows AMI. EC2 names it `/dev/sda1` on every Windows instance
/// ("Device names for volumes on Amazon EC2 instances", EC2 User Guide), and prepull's recipe
/// sizes that device (`RootVolumeSize`).
pub const WINDOWS_ROOT_DEVICE: &str = "/dev/sda1";

/// What `ImageId` prefix makes EC2 read the AMI from a Systems Manager parameter at launch.
const RESOLVE_SSM: &str = "resolve:ssm:";

/// A launch template and version as an Auto Scaling group names them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateRef {
    pub id: Option<String>,
    pub name: Option<String>,
    /// `$Latest`, `$Default` or a version number, exactly as the group holds it. Auto Scaling
    /// uses `$Default` when the group was created without one.
    pub version: String,
}

impl fmt::Display for TemplateRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let template = self
            .id
            .as_deref()
            .or(self.name.as_deref())
            .unwrap_or("(unnamed)");
        write!(f, "{template} version {}", self.version)
    }
}

/// How an Auto Scaling group launches instances, from `DescribeAutoScalingGroups`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GroupLaunch {
    LaunchTemplate(TemplateRef),
    /// A mixed instances policy, with the launch template it names.
    MixedInstances(Option<TemplateRef>),
    LaunchConfiguration(String),
    /// The group does not exist (or `DescribeAutoScalingGroups` does not list it).
    GroupNotFound,
}

/// A block device mapping of a launch template version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceMapping {
    pub device: String,
    /// `Ebs.VolumeSize` in GiB; `None` takes the AMI's snapshot size.
    pub size_gib: Option<i32>,
}

/// What a launch template version says about the image, from `DescribeLaunchTemplateVersions`
/// (without `ResolveAlias`, so `ImageId` is the text the template holds).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateVersion {
    pub version_number: Option<i64>,
    pub image_id: Option<String>,
    pub block_devices: Vec<DeviceMapping>,
}

/// Which version of a parameter a `resolve:ssm:` reference reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selector {
    Version(u64),
    Label(String),
}

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Selector::Version(version) => write!(f, "{version}"),
            Selector::Label(label) => f.write_str(label),
        }
    }
}

/// A launch template's `ImageId`, read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageSource {
    /// `resolve:ssm:<name or ARN>[:<version or label>]`
    Parameter {
        name: String,
        selector: Option<Selector>,
    },
    /// Anything else: an AMI ID, which no publish changes.
    Fixed(String),
}

impl ImageSource {
    /// Reads an `ImageId` in the forms EC2 accepts: `resolve:ssm:parameter-name`,
    /// `…:version-number`, `…:label`, or the parameter's ARN in place of its name ("Use AWS
    /// Systems Manager parameters instead of AMI IDs in launch templates", EC2 Auto Scaling User
    /// Guide). A parameter name never holds a colon, so the selector is what follows the name.
    pub fn parse(image_id: &str) -> Self {
        let Some(reference) = image_id.strip_prefix(RESOLVE_SSM) else {
            return ImageSource::Fixed(image_id.to_owned());
        };
        let (name, selector) = if reference.starts_with("arn:") {
            // arn:<partition>:ssm:<region>:<account>:parameter/<name>[:<selector>]
            let mut parts = reference.splitn(7, ':');
            let resource = parts.nth(5).unwrap_or_default();
            let name = resource.strip_prefix("parameter").unwrap_or(resource);
            // An ARN spells `/a/b` as `parameter/a/b` and a flat `x` as `parameter/x`.
            let name = match name.strip_prefix('/') {
                Some(flat) if !flat.contains('/') => flat.to_owned(),
                _ => name.to_owned(),
            };
            (name, parts.next())
        } else {
            match reference.split_once(':') {
                Some((name, selector)) => (name.to_owned(), Some(selector)),
                None => (reference.to_owned(), None),
            }
        };
        let selector = selector.map(|s| {
            s.parse::<u64>()
                .map_or_else(|_| Selector::Label(s.to_owned()), Selector::Version)
        });
        ImageSource::Parameter { name, selector }
    }
}

/// Why a group gets no refresh.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Misconfiguration {
    GroupNotFound,
    LaunchConfiguration {
        name: String,
    },
    /// Auto Scaling cannot use a `resolve:ssm:` launch template in a group with a mixed
    /// instances policy ("Limitations", "Use AWS Systems Manager parameters instead of AMI IDs
    /// in launch templates", EC2 Auto Scaling User Guide).
    MixedInstancesPolicy,
    TemplateNotFound {
        template: String,
    },
    /// The template launches a fixed AMI (or none): a refresh would relaunch it.
    ImageNotFromParameter {
        image_id: Option<String>,
    },
    OtherParameter {
        parameter: String,
    },
    /// The template reads a version or label of the parameter that does not hold the AMI.
    PinnedElsewhere {
        selector: Selector,
        resolves_to: Option<String>,
    },
    /// EC2 refuses a root volume smaller than the AMI's snapshot (`InvalidBlockDeviceMapping`).
    RootVolumeTooSmall {
        template_gib: i32,
        ami_gib: i32,
    },
}

impl Misconfiguration {
    pub fn kind(&self) -> &'static str {
        match self {
            Misconfiguration::GroupNotFound => "group-not-found",
            Misconfiguration::LaunchConfiguration { .. } => "launch-configuration",
            Misconfiguration::MixedInstancesPolicy => "mixed-instances-policy",
            Misconfiguration::TemplateNotFound { .. } => "launch-template-not-found",
            Misconfiguration::ImageNotFromParameter { .. } => "image-not-from-parameter",
            Misconfiguration::OtherParameter { .. } => "other-parameter",
            Misconfiguration::PinnedElsewhere { .. } => "pinned-elsewhere",
            Misconfiguration::RootVolumeTooSmall { .. } => "root-volume-too-small",
        }
    }
}

impl fmt::Display for Misconfiguration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Misconfiguration::GroupNotFound => {
                f.write_str("DescribeAutoScalingGroups does not list this group")
            }
            Misconfiguration::LaunchConfiguration { name } => write!(
                f,
                "the group launches from launch configuration {}, which cannot read the AMI from the parameter: use a launch template with ImageId resolve:ssm:<parameter>",
                quote(name)
            ),
            Misconfiguration::MixedInstancesPolicy => f.write_str(
                "the group has a mixed instances policy, and Auto Scaling cannot use a resolve:ssm: launch template with one",
            ),
            Misconfiguration::TemplateNotFound { template } => {
                write!(f, "launch template {} does not exist", quote(template))
            }
            Misconfiguration::ImageNotFromParameter { image_id } => match image_id {
                Some(image) => write!(
                    f,
                    "the launch template's ImageId is {}, not resolve:ssm:<parameter>: a refresh would relaunch the same AMI",
                    quote(image)
                ),
                None => f.write_str(
                    "the launch template names no ImageId: set it to resolve:ssm:<parameter>",
                ),
            },
            Misconfiguration::OtherParameter { parameter } => write!(
                f,
                "the launch template reads parameter {}, not the one prepull publishes to",
                quote(parameter)
            ),
            Misconfiguration::PinnedElsewhere {
                selector,
                resolves_to,
            } => write!(
                f,
                "the launch template reads the parameter at {}, which holds {}, not the AMI just published",
                quote(&selector.to_string()),
                resolves_to.as_deref().map_or_else(|| "nothing".to_owned(), quote)
            ),
            Misconfiguration::RootVolumeTooSmall {
                template_gib,
                ami_gib,
            } => write!(
                f,
                "the launch template's root volume ({WINDOWS_ROOT_DEVICE}) is {template_gib} GiB, smaller than the AMI's {ami_gib} GiB: EC2 would refuse every launch (InvalidBlockDeviceMapping)"
            ),
        }
    }
}

/// In a summary: `{"problem": "<kind>", "detail": "<what was found>"}`.
impl Serialize for Misconfiguration {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Reported<'a> {
            problem: &'a str,
            detail: String,
        }
        Reported {
            problem: self.kind(),
            detail: self.to_string(),
        }
        .serialize(serializer)
    }
}

/// The launch template version to read, or why the group cannot take the AMI at all.
pub fn template_of(launch: &GroupLaunch) -> Result<&TemplateRef, Misconfiguration> {
    match launch {
        GroupLaunch::LaunchTemplate(template) => Ok(template),
        GroupLaunch::MixedInstances(_) => Err(Misconfiguration::MixedInstancesPolicy),
        GroupLaunch::LaunchConfiguration(name) => {
            Err(Misconfiguration::LaunchConfiguration { name: name.clone() })
        }
        GroupLaunch::GroupNotFound => Err(Misconfiguration::GroupNotFound),
    }
}

/// What a launch template version is checked against.
#[derive(Debug, Clone, Copy)]
pub struct Expected<'a> {
    /// The parameter prepull publishes to.
    pub parameter: &'a str,
    /// The AMI's root volume in GiB, when the image's recipe says (else not checked).
    pub ami_root_gib: Option<i32>,
}

/// The verdict on one launch template version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TemplateCheck {
    /// It launches the parameter's latest value, with room for the AMI.
    Follows,
    /// It reads this version or label of the parameter: it launches the new AMI only if that
    /// resolves to it, which the caller checks with one read.
    FollowsIf(Selector),
    Misconfigured(Vec<Misconfiguration>),
}

/// Checks a launch template version against the parameter and the AMI.
pub fn check_template(version: &TemplateVersion, expected: Expected<'_>) -> TemplateCheck {
    let mut problems = Vec::new();
    let mut selector = None;
    match version.image_id.as_deref().map(ImageSource::parse) {
        Some(ImageSource::Parameter { name, selector: s }) => {
            if name != expected.parameter {
                problems.push(Misconfiguration::OtherParameter { parameter: name });
            } else {
                selector = s;
            }
        }
        Some(ImageSource::Fixed(image)) => {
            problems.push(Misconfiguration::ImageNotFromParameter {
                image_id: Some(image),
            });
        }
        None => problems.push(Misconfiguration::ImageNotFromParameter { image_id: None }),
    }
    let root = version
        .block_devices
        .iter()
        .find(|d| d.device == WINDOWS_ROOT_DEVICE)
        .and_then(|d| d.size_gib);
    if let (Some(template_gib), Some(ami_gib)) = (root, expected.ami_root_gib)
        && template_gib < ami_gib
    {
        problems.push(Misconfiguration::RootVolumeTooSmall {
            template_gib,
            ami_gib,
        });
    }
    match (problems.is_empty(), selector) {
        (false, _) => TemplateCheck::Misconfigured(problems),
        (true, Some(selector)) => TemplateCheck::FollowsIf(selector),
        (true, None) => TemplateCheck::Follows,
    }
}

/// The verdict once the pinned version or label was read: `resolves_to` is its value (`None`
/// when the parameter has no such version or label).
pub fn check_selector(
    selector: Selector,
    resolves_to: Option<String>,
    ami: &str,
) -> Result<(), Misconfiguration> {
    if resolves_to.as_deref() == Some(ami) {
        Ok(())
    } else {
        Err(Misconfiguration::PinnedElsewhere {
            selector,
            resolves_to,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PARAMETER: &str = "/prepull/windows-ami";

    fn parameter(name: &str, selector: Option<Selector>) -> ImageSource {
        ImageSource::Parameter {
            name: name.to_owned(),
            selector,
        }
    }

    #[test]
    fn image_ids_read_as_ec2_reads_them() {
        let label = |l: &str| Some(Selector::Label(l.to_owned()));
        let table = [
            (
                "resolve:ssm:/prepull/windows-ami",
                parameter(PARAMETER, None),
            ),
            (
                "resolve:ssm:/prepull/windows-ami:7",
                parameter(PARAMETER, Some(Selector::Version(7))),
            ),
            (
                "resolve:ssm:/prepull/windows-ami:prod",
                parameter(PARAMETER, label("prod")),
            ),
            ("resolve:ssm:golden-ami", parameter("golden-ami", None)),
            (
                "resolve:ssm:arn:aws:ssm:us-east-1:123456789012:parameter/prepull/windows-ami",
                parameter(PARAMETER, None),
            ),
            (
                "resolve:ssm:arn:aws-cn:ssm:cn-north-1:123456789012:parameter/prepull/windows-ami:3",
                parameter(PARAMETER, Some(Selector::Version(3))),
            ),
            (
                "resolve:ssm:arn:aws:ssm:us-east-1:123456789012:parameter/golden-ami:blue",
                parameter("golden-ami", label("blue")),
            ),
            (
                "ami-0123456789abcdef0",
                ImageSource::Fixed("ami-0123456789abcdef0".into()),
            ),
            (
                "Resolve:SSM:/x",
                ImageSource::Fixed("Resolve:SSM:/x".into()),
            ),
            ("", ImageSource::Fixed(String::new())),
        ];
        for (image_id, expected) in table {
            assert_eq!(ImageSource::parse(image_id), expected, "{image_id}");
        }
    }

    fn version(image_id: Option<&str>, root_gib: Option<i32>) -> TemplateVersion {
        TemplateVersion {
            version_number: Some(1),
            image_id: image_id.map(str::to_owned),
            block_devices: vec![
                DeviceMapping {
                    device: "xvdb".into(),
                    size_gib: Some(1),
                },
                DeviceMapping {
                    device: WINDOWS_ROOT_DEVICE.into(),
                    size_gib: root_gib,
                },
            ],
        }
    }

    #[test]
    fn a_template_is_checked_against_the_parameter_and_the_amis_root_volume() {
        let expected = Expected {
            parameter: PARAMETER,
            ami_root_gib: Some(100),
        };
        let follows = "resolve:ssm:/prepull/windows-ami";
        // The template's ImageId and root volume, the AMI's root volume, the verdict.
        type Row<'a> = (Option<&'a str>, Option<i32>, Option<i32>, TemplateCheck);
        let table: [Row<'_>; 10] = [
            (Some(follows), None, Some(100), TemplateCheck::Follows),
            (Some(follows), Some(100), Some(100), TemplateCheck::Follows),
            (Some(follows), Some(200), Some(100), TemplateCheck::Follows),
            // Unknown AMI size: nothing to compare with.
            (Some(follows), Some(30), None, TemplateCheck::Follows),
            (
                Some(follows),
                Some(80),
                Some(100),
                TemplateCheck::Misconfigured(vec![Misconfiguration::RootVolumeTooSmall {
                    template_gib: 80,
                    ami_gib: 100,
                }]),
            ),
            (
                Some("resolve:ssm:/prepull/windows-ami:prod"),
                None,
                Some(100),
                TemplateCheck::FollowsIf(Selector::Label("prod".into())),
            ),
            (
                Some("ami-0123456789abcdef0"),
                Some(80),
                Some(100),
                TemplateCheck::Misconfigured(vec![
                    Misconfiguration::ImageNotFromParameter {
                        image_id: Some("ami-0123456789abcdef0".into()),
                    },
                    Misconfiguration::RootVolumeTooSmall {
                        template_gib: 80,
                        ami_gib: 100,
                    },
                ]),
            ),
            (
                None,
                None,
                Some(100),
                TemplateCheck::Misconfigured(vec![Misconfiguration::ImageNotFromParameter {
                    image_id: None,
                }]),
            ),
            (
                Some("resolve:ssm:/prepull/other-ami"),
                None,
                Some(100),
                TemplateCheck::Misconfigured(vec![Misconfiguration::OtherParameter {
                    parameter: "/prepull/other-ami".into(),
                }]),
            ),
            // A pinned selector on a template that cannot launch anyway is not worth a read.
            (
                Some("resolve:ssm:/prepull/windows-ami:4"),
                Some(50),
                Some(100),
                TemplateCheck::Misconfigured(vec![Misconfiguration::RootVolumeTooSmall {
                    template_gib: 50,
                    ami_gib: 100,
                }]),
            ),
        ];
        for (image_id, template_gib, ami_gib, verdict) in table {
            let expected = Expected {
                ami_root_gib: ami_gib,
                ..expected
            };
            assert_eq!(
                check_template(&version(image_id, template_gib), expected),
                verdict,
                "{image_id:?} {template_gib:?} {ami_gib:?}"
            );
        }
    }

    #[test]
    fn a_group_without_a_plain_launch_template_cannot_take_the_ami() {
        let template = TemplateRef {
            id: Some("lt-0abc".into()),
            name: None,
            version: "$Latest".into(),
        };
        let table = [
            (
                GroupLaunch::LaunchTemplate(template.clone()),
                Ok(template.clone()),
            ),
            (
                GroupLaunch::MixedInstances(Some(template.clone())),
                Err(Misconfiguration::MixedInstancesPolicy),
            ),
            (
                GroupLaunch::LaunchConfiguration("old".into()),
                Err(Misconfiguration::LaunchConfiguration { name: "old".into() }),
            ),
            (
                GroupLaunch::GroupNotFound,
                Err(Misconfiguration::GroupNotFound),
            ),
        ];
        for (launch, expected) in table {
            assert_eq!(template_of(&launch).cloned(), expected, "{launch:?}");
        }
        assert_eq!(template.to_string(), "lt-0abc version $Latest");
    }

    #[test]
    fn a_pinned_selector_follows_only_when_it_holds_the_ami() {
        let ami = "ami-0new";
        let prod = || Selector::Label("prod".into());
        assert_eq!(check_selector(prod(), Some(ami.into()), ami), Ok(()));
        assert_eq!(
            check_selector(prod(), Some("ami-0old".into()), ami),
            Err(Misconfiguration::PinnedElsewhere {
                selector: prod(),
                resolves_to: Some("ami-0old".into())
            })
        );
        assert_eq!(
            check_selector(Selector::Version(9), None, ami),
            Err(Misconfiguration::PinnedElsewhere {
                selector: Selector::Version(9),
                resolves_to: None
            })
        );
    }

    #[test]
    fn every_problem_is_reported_with_its_kind_and_what_was_found() {
        let problem = Misconfiguration::RootVolumeTooSmall {
            template_gib: 80,
            ami_gib: 100,
        };
        let json = serde_json::to_value(&problem).unwrap();
        assert_eq!(json["problem"], "root-volume-too-small");
        assert!(
            json["detail"].as_str().unwrap().contains("80 GiB")
                && json["detail"].as_str().unwrap().contains("100 GiB"),
            "{json}"
        );
        // A hostile value is quoted, never echoed raw.
        let hostile = Misconfiguration::ImageNotFromParameter {
            image_id: Some("ami-1\n$(rm -rf /)".into()),
        };
        assert!(!hostile.to_string().contains('\n'), "{hostile}");
    }
}
