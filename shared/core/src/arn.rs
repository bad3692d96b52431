//! Image Builder ARNs: one parser for every shape prepull meets.
//!
//! `arn:PARTITION:imagebuilder:REGION:ACCOUNT:TYPE/NAME[/VERSION[/BUILD]]`, where `TYPE` is
//! `image-pipeline`, `image`, `image-recipe`, `component` and the like, `VERSION` is
//! `major.minor.patch` with `x` wildcards allowed from the right (`1.0.x`, `x.x.x`), and
//! `BUILD` is a build number. AWS-owned components carry `aws` as their account. A value that
//! is not one of these is an error, never a default.

use std::fmt;
use std::str::FromStr;
use std::sync::LazyLock;

use regex_lite::Regex;

use crate::image::quote;

#[expect(
    clippy::expect_used,
    reason = "a constant pattern, checked by the tests below"
)]
static ARN: LazyLock<Regex> = LazyLock::new(|| {
    Regex::new(concat!(
        r"^arn:(?P<partition>aws(?:-[a-z]+)*):imagebuilder:",
        r"(?P<region>[a-z]{2}(?:-[a-z]+)+-[0-9]):(?P<account>[0-9]{12}|aws):",
        r"(?P<kind>[a-z-]+)/(?P<name>[a-z0-9_-]{1,128})",
        r"(?:/(?P<version>(?:[0-9]{1,10}|x)\.(?:[0-9]{1,10}|x)\.(?:[0-9]{1,10}|x))",
        r"(?:/(?P<build>[0-9]{1,9}))?)?$",
    ))
    .expect("a valid built-in pattern")
});

/// The resource types prepull reads or writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ResourceKind {
    ImagePipeline,
    Image,
    ImageRecipe,
    Component,
    DistributionConfiguration,
    InfrastructureConfiguration,
}

impl ResourceKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ResourceKind::ImagePipeline => "image-pipeline",
            ResourceKind::Image => "image",
            ResourceKind::ImageRecipe => "image-recipe",
            ResourceKind::Component => "component",
            ResourceKind::DistributionConfiguration => "distribution-configuration",
            ResourceKind::InfrastructureConfiguration => "infrastructure-configuration",
        }
    }

    fn parse(value: &str) -> Option<Self> {
        [
            ResourceKind::ImagePipeline,
            ResourceKind::Image,
            ResourceKind::ImageRecipe,
            ResourceKind::Component,
            ResourceKind::DistributionConfiguration,
            ResourceKind::InfrastructureConfiguration,
        ]
        .into_iter()
        .find(|kind| kind.as_str() == value)
    }

    /// Whether ARNs of this type carry a semantic version.
    fn is_versioned(self) -> bool {
        matches!(
            self,
            ResourceKind::Image | ResourceKind::ImageRecipe | ResourceKind::Component
        )
    }
}

/// One part of a resource version: a number, or `x` for "the newest".
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum VersionPart {
    Number(u64),
    Wildcard,
}

/// `major.minor.patch`, each a number or `x`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ResourceVersion {
    pub major: VersionPart,
    pub minor: VersionPart,
    pub patch: VersionPart,
}

impl ResourceVersion {
    /// The exact version, or `None` when any part is `x`.
    pub fn exact(&self) -> Option<semver::Version> {
        match (self.major, self.minor, self.patch) {
            (
                VersionPart::Number(major),
                VersionPart::Number(minor),
                VersionPart::Number(patch),
            ) => Some(semver::Version::new(major, minor, patch)),
            _ => None,
        }
    }

    pub fn is_wildcard(&self) -> bool {
        self.exact().is_none()
    }
}

impl fmt::Display for VersionPart {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VersionPart::Number(n) => write!(f, "{n}"),
            VersionPart::Wildcard => f.write_str("x"),
        }
    }
}

impl fmt::Display for ResourceVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

/// Why a value is not an Image Builder ARN of the expected shape. The value is escaped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{value} is not {expected}")]
pub struct InvalidArn {
    pub value: String,
    pub expected: &'static str,
}

/// A parsed Image Builder ARN.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ImageBuilderArn {
    text: String,
    partition: String,
    region: String,
    account: String,
    kind: ResourceKind,
    name: String,
    version: Option<ResourceVersion>,
    build: Option<u32>,
}

/// The largest value of a version node: "an upper limit of 2^30-1, or 1073741823 for each
/// node" (Image Builder User Guide, "Semantic versioning").
pub const VERSION_NODE_LIMIT: u64 = (1 << 30) - 1;

fn version_part(text: &str) -> Option<VersionPart> {
    if text == "x" {
        Some(VersionPart::Wildcard)
    } else {
        text.parse()
            .ok()
            .filter(|n| *n <= VERSION_NODE_LIMIT)
            .map(VersionPart::Number)
    }
}

impl ImageBuilderArn {
    /// Parses any Image Builder ARN prepull knows.
    pub fn parse(value: &str) -> Result<Self, InvalidArn> {
        Self::parse_as(
            value,
            "an Image Builder ARN (arn:aws:imagebuilder:REGION:ACCOUNT:TYPE/NAME…)",
        )
    }

    fn parse_as(value: &str, expected: &'static str) -> Result<Self, InvalidArn> {
        let invalid = || InvalidArn {
            value: quote(value),
            expected,
        };
        let captures = ARN.captures(value).ok_or_else(invalid)?;
        let kind = ResourceKind::parse(&captures["kind"]).ok_or_else(invalid)?;
        let version = match captures.name("version") {
            None => None,
            Some(text) => {
                let mut parts = text.as_str().split('.').map(version_part);
                let (Some(Some(major)), Some(Some(minor)), Some(Some(patch))) =
                    (parts.next(), parts.next(), parts.next())
                else {
                    return Err(invalid());
                };
                // A wildcard stands for "any" from its position on: `1.x.8` means nothing.
                let wildcard_then_number = (major == VersionPart::Wildcard
                    && minor != VersionPart::Wildcard)
                    || (minor == VersionPart::Wildcard && patch != VersionPart::Wildcard);
                if wildcard_then_number {
                    return Err(invalid());
                }
                Some(ResourceVersion {
                    major,
                    minor,
                    patch,
                })
            }
        };
        let build = captures
            .name("build")
            .map(|b| b.as_str().parse().map_err(|_| invalid()))
            .transpose()?;
        if version.is_some() && !kind.is_versioned() {
            return Err(invalid());
        }
        if build.is_some() && version.is_some_and(|v| v.is_wildcard()) {
            return Err(invalid());
        }
        Ok(Self {
            text: value.to_owned(),
            partition: captures["partition"].to_owned(),
            region: captures["region"].to_owned(),
            account: captures["account"].to_owned(),
            kind,
            name: captures["name"].to_owned(),
            version,
            build,
        })
    }

    /// An image pipeline's ARN, and nothing else.
    pub fn pipeline(value: &str) -> Result<Self, InvalidArn> {
        let expected =
            "an image pipeline ARN (arn:aws:imagebuilder:REGION:ACCOUNT:image-pipeline/NAME)";
        let arn = Self::parse_as(value, expected)?;
        if arn.kind == ResourceKind::ImagePipeline && arn.account != "aws" {
            Ok(arn)
        } else {
            Err(InvalidArn {
                value: quote(value),
                expected,
            })
        }
    }

    /// An image build version's ARN (`…:image/NAME/1.2.3/4`), as events and builds carry.
    pub fn image_build_version(value: &str) -> Result<Self, InvalidArn> {
        let expected = "an image build version ARN (…:image/NAME/VERSION/BUILD)";
        let arn = Self::parse_as(value, expected)?;
        let exact = arn.version.is_some_and(|v| !v.is_wildcard());
        if arn.kind == ResourceKind::Image && exact && arn.build.is_some() {
            Ok(arn)
        } else {
            Err(InvalidArn {
                value: quote(value),
                expected,
            })
        }
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    pub fn partition(&self) -> &str {
        &self.partition
    }

    pub fn region(&self) -> &str {
        &self.region
    }

    /// The 12-digit account, or `aws` for resources AWS owns.
    pub fn account(&self) -> &str {
        &self.account
    }

    pub fn kind(&self) -> ResourceKind {
        self.kind
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn version(&self) -> Option<ResourceVersion> {
        self.version
    }

    pub fn build(&self) -> Option<u32> {
        self.build
    }

    /// The same resource at another exact version, without a build number: the version ARN
    /// `ListComponentBuildVersions` and `GetImageRecipe` take.
    pub fn at_version(&self, version: &semver::Version) -> Self {
        let text = format!(
            "arn:{}:imagebuilder:{}:{}:{}/{}/{version}",
            self.partition,
            self.region,
            self.account,
            self.kind.as_str(),
            self.name
        );
        Self {
            text,
            version: Some(ResourceVersion {
                major: VersionPart::Number(version.major),
                minor: VersionPart::Number(version.minor),
                patch: VersionPart::Number(version.patch),
            }),
            build: None,
            ..self.clone()
        }
    }

    /// The order Image Builder made versions and builds of one resource in: the version, then
    /// the build number (it numbers a version's builds as it makes them).
    pub fn creation_order(&self) -> (Option<semver::Version>, Option<u32>) {
        (self.version.and_then(|v| v.exact()), self.build)
    }

    /// Whether `other` names a resource in the same partition, region and account.
    pub fn same_home(&self, other: &ImageBuilderArn) -> bool {
        self.partition == other.partition
            && self.region == other.region
            && self.account == other.account
    }

    /// Why `other` is none of this resource's business: it lives in another partition, region
    /// or account. `None` when it shares this one's home.
    pub fn foreign(&self, other: &ImageBuilderArn) -> Option<String> {
        let differs = [
            ("partition", self.partition(), other.partition()),
            ("region", self.region(), other.region()),
            ("account", self.account(), other.account()),
        ]
        .into_iter()
        .filter(|(_, ours, theirs)| ours != theirs)
        .map(|(what, ours, theirs)| format!("{what} {theirs}, not {ours}"))
        .collect::<Vec<_>>();
        (!differs.is_empty()).then(|| format!("{other} is in {}", differs.join(", ")))
    }
}

impl fmt::Display for ImageBuilderArn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// An ARN is text AWS takes as it is: it reads as a `&str` wherever one is wanted.
impl std::ops::Deref for ImageBuilderArn {
    type Target = str;
    fn deref(&self) -> &str {
        &self.text
    }
}

impl AsRef<str> for ImageBuilderArn {
    fn as_ref(&self) -> &str {
        &self.text
    }
}

impl PartialEq<&str> for ImageBuilderArn {
    fn eq(&self, other: &&str) -> bool {
        self.text == *other
    }
}

impl FromStr for ImageBuilderArn {
    type Err = InvalidArn;
    fn from_str(value: &str) -> Result<Self, Self::Err> {
        Self::parse(value)
    }
}

impl serde::Serialize for ImageBuilderArn {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.text)
    }
}

/// Reads an exact `major.minor.patch` as Image Builder writes versions: leading zeros are
/// allowed (`2021.01.01`), wildcards and anything else are not.
pub fn parse_exact_version(text: &str) -> Option<semver::Version> {
    let mut parts = text.split('.');
    let mut next = || -> Option<u64> {
        let part = parts.next()?;
        if part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        part.parse().ok().filter(|n| *n <= VERSION_NODE_LIMIT)
    };
    let version = semver::Version::new(next()?, next()?, next()?);
    parts.next().is_none().then_some(version)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_shape_prepull_meets_parses() {
        type Case = (
            &'static str,
            ResourceKind,
            &'static str,
            Option<&'static str>,
            Option<u32>,
        );
        let cases: [Case; 6] = [
            (
                "arn:aws:imagebuilder:eu-west-1:123456789012:image-pipeline/prepull-windows-cache",
                ResourceKind::ImagePipeline,
                "prepull-windows-cache",
                None,
                None,
            ),
            (
                "arn:aws:imagebuilder:us-east-1:123456789012:image/prepull-recipe/1.0.0/3",
                ResourceKind::Image,
                "prepull-recipe",
                Some("1.0.0"),
                Some(3),
            ),
            (
                "arn:aws:imagebuilder:us-east-1:123456789012:component/prepull-cache/1.0.12/2",
                ResourceKind::Component,
                "prepull-cache",
                Some("1.0.12"),
                Some(2),
            ),
            (
                "arn:aws:imagebuilder:us-east-1:aws:component/update-windows/x.x.x",
                ResourceKind::Component,
                "update-windows",
                Some("x.x.x"),
                None,
            ),
            (
                "arn:aws:imagebuilder:us-east-1:123456789012:image-recipe/prepull-recipe/2021.01.01",
                ResourceKind::ImageRecipe,
                "prepull-recipe",
                Some("2021.1.1"),
                None,
            ),
            (
                "arn:aws-cn:imagebuilder:cn-north-1:123456789012:component/c/1.x.x",
                ResourceKind::Component,
                "c",
                Some("1.x.x"),
                None,
            ),
        ];
        for (text, kind, name, version, build) in cases {
            let arn = ImageBuilderArn::parse(text).unwrap();
            assert_eq!(arn.kind(), kind, "{text}");
            assert_eq!(arn.name(), name, "{text}");
            assert_eq!(arn.version().map(|v| v.to_string()).as_deref(), version);
            assert_eq!(arn.build(), build);
            assert_eq!(arn.to_string(), text, "displays as it came");
        }
    }

    #[test]
    fn malformed_arns_are_errors_never_defaults() {
        for text in [
            "",
            "arn:aws:s3:::bucket",
            "arn:aws:imagebuilder:us-east-1:123456789012:image/x'; calc/1.0.0/1",
            "arn:aws:imagebuilder:us-east-1:123456789012:image/prepull/1.0.0/abc",
            "arn:aws:imagebuilder:us-east-1:123456789012:image/prepull/x.2.x",
            "arn:aws:imagebuilder:us-east-1:123456789012:component/c/1.x.8",
            "arn:aws:imagebuilder:us-east-1:123456789012:component/c/1.0.x/1",
            "arn:aws:imagebuilder:us-east-1:123456789012:image-pipeline/p/1.0.0",
            "arn:aws:imagebuilder:us-east-1:123456789012:teapot/p",
            "arn:aws:imagebuilder:us-east-1:12345:image-pipeline/p",
            "arn:aws:imagebuilder:us-east-1:123456789012:image-pipeline/p\n",
        ] {
            assert!(ImageBuilderArn::parse(text).is_err(), "{text:?}");
        }
        let error = ImageBuilderArn::pipeline(
            "arn:aws:imagebuilder:eu-west-1:123456789012:image-recipe/x/1.0.0",
        )
        .unwrap_err();
        assert!(
            error.to_string().contains("not an image pipeline ARN"),
            "{error}"
        );
        assert!(
            ImageBuilderArn::image_build_version(
                "arn:aws:imagebuilder:us-east-1:123456789012:image/prepull/1.0.0"
            )
            .is_err(),
            "a build version has a build number"
        );
    }

    #[test]
    fn exact_versions_allow_leading_zeros_and_nothing_else() {
        let cases = [
            ("1.0.0", Some((1, 0, 0))),
            ("2021.01.01", Some((2021, 1, 1))),
            ("1.0", None),
            ("1.0.0.0", None),
            ("1.x.0", None),
            ("-1.0.0", None),
            ("1.0.0-rc1", None),
            ("1073741823.0.0", Some((1_073_741_823, 0, 0))),
            ("1073741824.0.0", None),
        ];
        for (text, expected) in cases {
            assert_eq!(
                parse_exact_version(text).map(|v| (v.major, v.minor, v.patch)),
                expected,
                "{text}"
            );
        }
    }

    #[test]
    fn a_version_arn_is_derived_from_a_build_arn() {
        let build = ImageBuilderArn::parse(
            "arn:aws:imagebuilder:us-east-1:123456789012:component/c/1.0.3/2",
        )
        .unwrap();
        let next = build.at_version(&semver::Version::new(1, 0, 4));
        assert_eq!(
            next.as_str(),
            "arn:aws:imagebuilder:us-east-1:123456789012:component/c/1.0.4"
        );
        assert_eq!(next.build(), None);
        assert!(next.same_home(&build));
        assert_eq!(build.foreign(&next), None);
        let pipeline = ImageBuilderArn::pipeline(
            "arn:aws:imagebuilder:us-east-1:123456789012:image-pipeline/prepull",
        )
        .unwrap();
        for (image, expected) in [
            (
                "arn:aws:imagebuilder:us-east-1:123456789012:image/r/1.0.0/1",
                None,
            ),
            (
                "arn:aws:imagebuilder:eu-west-1:123456789012:image/r/1.0.0/1",
                Some("region eu-west-1, not us-east-1"),
            ),
            (
                "arn:aws:imagebuilder:us-east-1:210987654321:image/r/1.0.0/1",
                Some("account 210987654321, not 123456789012"),
            ),
            (
                "arn:aws-cn:imagebuilder:cn-north-1:123456789012:image/r/1.0.0/1",
                Some("partition aws-cn, not aws, region cn-north-1, not us-east-1"),
            ),
        ] {
            let reason = pipeline.foreign(&ImageBuilderArn::parse(image).unwrap());
            assert_eq!(
                reason
                    .as_deref()
                    .map(|r| r.rsplit(" is in ").next().unwrap()),
                expected,
                "{image}"
            );
        }
    }
}
