//! Container image references, validated against ECR's own grammar.
//!
//! Repository names, tags, digests and registry hosts come from events and configuration and
//! end up inside PowerShell in the cache component. Only values of these types can reach the
//! document, and they can only be built through the grammar checks here, so nothing with a
//! quote, `;`, `$`, backtick, whitespace or non-ASCII character can get that far.

use std::fmt;
use std::sync::LazyLock;

use regex_lite::Regex;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Why a value is not a valid image reference part. The value is quoted with `{:?}`, which
/// escapes control characters, and cut short, so a hostile value cannot forge log lines.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidImage {
    #[error("repository name {value} is not a valid ECR repository name ({rule})")]
    Repository { value: String, rule: &'static str },
    #[error("tag {value} is not a valid image tag ({rule})")]
    Tag { value: String, rule: &'static str },
    #[error("digest {value} is not a valid image digest ({rule})")]
    Digest { value: String, rule: &'static str },
    #[error("registry {value} is not an ECR registry host ({rule})")]
    Registry { value: String, rule: &'static str },
    #[error("image {value} is not `repository:tag` or `REGISTRY/repository:tag`")]
    Reference { value: String },
}

/// Quotes a value for an error message: escaped and at most 80 characters.
pub fn quote(value: &str) -> String {
    const LIMIT: usize = 80;
    if value.chars().count() > LIMIT {
        let head: String = value.chars().take(LIMIT).collect();
        format!("{head:?}… ({} characters)", value.chars().count())
    } else {
        format!("{value:?}")
    }
}

#[expect(
    clippy::expect_used,
    reason = "the patterns are constants, checked by the tests below"
)]
fn anchored(pattern: &str) -> Regex {
    Regex::new(&format!("^(?:{pattern})$")).expect("a valid built-in pattern")
}

static REPOSITORY: LazyLock<Regex> =
    LazyLock::new(|| anchored(r"(?:[a-z0-9]+(?:[._-][a-z0-9]+)*/)*[a-z0-9]+(?:[._-][a-z0-9]+)*"));
static TAG: LazyLock<Regex> = LazyLock::new(|| anchored(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}"));
static DIGEST: LazyLock<Regex> = LazyLock::new(|| anchored(r"sha256:[a-f0-9]{64}"));
static REGISTRY: LazyLock<Regex> = LazyLock::new(|| {
    anchored(
        r"(?P<account>[0-9]{12})\.dkr\.ecr\.(?P<region>[a-z]{2}(?:-[a-z]+)+-[0-9])\.amazonaws\.com(?:\.cn)?",
    )
});

/// The longest repository name ECR accepts.
pub const REPOSITORY_MAX_LEN: usize = 256;

macro_rules! validated_string {
    ($name:ident) => {
        impl $name {
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl std::str::FromStr for $name {
            type Err = InvalidImage;
            fn from_str(value: &str) -> Result<Self, Self::Err> {
                Self::parse(value)
            }
        }

        impl Serialize for $name {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.serialize_str(&self.0)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let value = String::deserialize(deserializer)?;
                Self::parse(&value).map_err(serde::de::Error::custom)
            }
        }
    };
}

/// An ECR repository name, such as `team/web`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Repository(String);
validated_string!(Repository);

impl Repository {
    pub fn parse(value: &str) -> Result<Self, InvalidImage> {
        let error = |rule| InvalidImage::Repository {
            value: quote(value),
            rule,
        };
        if value.len() < 2 || value.len() > REPOSITORY_MAX_LEN {
            return Err(error("2 to 256 characters"));
        }
        if !REPOSITORY.is_match(value) {
            return Err(error(
                "lowercase letters, digits and single . _ - / between them",
            ));
        }
        Ok(Self(value.to_owned()))
    }
}

/// An image tag, such as `v42` or `ltsc2022`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Tag(String);
validated_string!(Tag);

impl Tag {
    pub fn parse(value: &str) -> Result<Self, InvalidImage> {
        if TAG.is_match(value) {
            Ok(Self(value.to_owned()))
        } else {
            Err(InvalidImage::Tag {
                value: quote(value),
                rule: "1 to 128 of A-Z a-z 0-9 _ . -, not starting with . or -",
            })
        }
    }
}

/// A content digest, `sha256:` and 64 lowercase hex digits.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Digest(String);
validated_string!(Digest);

impl Digest {
    pub fn parse(value: &str) -> Result<Self, InvalidImage> {
        if DIGEST.is_match(value) {
            Ok(Self(value.to_owned()))
        } else {
            Err(InvalidImage::Digest {
                value: quote(value),
                rule: "sha256: and 64 lowercase hex digits",
            })
        }
    }
}

/// A private ECR registry host: `ACCOUNT.dkr.ecr.REGION.amazonaws.com` (or `.com.cn`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Registry(String);
validated_string!(Registry);

impl Registry {
    pub fn parse(value: &str) -> Result<Self, InvalidImage> {
        if REGISTRY.is_match(value) {
            Ok(Self(value.to_owned()))
        } else {
            Err(InvalidImage::Registry {
                value: quote(value),
                rule: "<12-digit account>.dkr.ecr.<region>.amazonaws.com",
            })
        }
    }

    /// The registry of an account in a region; `.com.cn` for the China regions.
    pub fn for_account(account_id: &str, region: &str) -> Result<Self, InvalidImage> {
        let suffix = if region.starts_with("cn-") {
            "amazonaws.com.cn"
        } else {
            "amazonaws.com"
        };
        Self::parse(&format!("{account_id}.dkr.ecr.{region}.{suffix}"))
    }

    pub fn account_id(&self) -> &str {
        self.0.split('.').next().unwrap_or_default()
    }

    pub fn region(&self) -> &str {
        self.0.split('.').nth(3).unwrap_or_default()
    }
}

/// A watched image: a registry, a repository and a tag.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct ImageRef {
    pub registry: Registry,
    pub repository: Repository,
    pub tag: Tag,
}

impl ImageRef {
    /// Parses `repository:tag` (in `default_registry`) or `REGISTRY/repository:tag`.
    pub fn parse(value: &str, default_registry: &Registry) -> Result<Self, InvalidImage> {
        let (name, tag) = value
            .rsplit_once(':')
            .ok_or_else(|| InvalidImage::Reference {
                value: quote(value),
            })?;
        let (registry, repository) = match name.split_once('/') {
            Some((host, rest)) if host.contains('.') => (Registry::parse(host)?, rest),
            _ => (default_registry.clone(), name),
        };
        Ok(Self {
            registry,
            repository: Repository::parse(repository)?,
            tag: Tag::parse(tag)?,
        })
    }

    /// `REGISTRY/repository`, the name images are pulled and tagged under.
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }
}

impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}:{}", self.registry, self.repository, self.tag)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn registry() -> Registry {
        Registry::parse("123456789012.dkr.ecr.us-east-1.amazonaws.com").unwrap()
    }

    #[test]
    fn ecr_grammar_accepts_real_names() {
        for repository in ["web", "team/web", "a.b-c_d/e-f", "x1/y2/z3"] {
            Repository::parse(repository).unwrap();
        }
        for tag in [
            "v42",
            "latest",
            "ltsc2022",
            "1.2.3-rc.1",
            "_x",
            "A".repeat(128).as_str(),
        ] {
            Tag::parse(tag).unwrap();
        }
        Digest::parse(&format!("sha256:{}", "a1".repeat(32))).unwrap();
        let china = Registry::parse("123456789012.dkr.ecr.cn-north-1.amazonaws.com.cn").unwrap();
        assert_eq!(
            (china.account_id(), china.region()),
            ("123456789012", "cn-north-1")
        );
        assert_eq!(
            Registry::for_account("123456789012", "cn-north-1").unwrap(),
            china
        );
    }

    #[test]
    fn hostile_values_are_refused() {
        let hostile = [
            "web'; Remove-Item C:\\ -Recurse; '",
            "web\"",
            "web;calc",
            "$(calc)",
            "`calc`",
            "web\nsteps:",
            "wéb",
            "web ",
            "Web",
            "web//x",
            "-web",
            "web/",
            "",
        ];
        for value in hostile {
            assert!(Repository::parse(value).is_err(), "repository {value:?}");
            assert!(
                Tag::parse(value).is_err() || value == "Web",
                "tag {value:?}"
            );
        }
        assert!(Repository::parse(&"a".repeat(257)).is_err());
        assert!(Tag::parse(&"a".repeat(129)).is_err());
        assert!(Tag::parse(".hidden").is_err() && Tag::parse("-x").is_err());
        for digest in [
            "sha256:ABC".to_owned(),
            "sha512:".to_owned() + &"a".repeat(128),
            format!("sha256:{}", "a".repeat(63)),
            format!("sha256:{}\n", "a".repeat(64)),
        ] {
            assert!(Digest::parse(&digest).is_err(), "{digest:?}");
        }
        for host in [
            "evil.com",
            "123456789012.dkr.ecr.us-east-1.amazonaws.com.evil.com",
            "12345678901.dkr.ecr.us-east-1.amazonaws.com",
            "public.ecr.aws",
        ] {
            assert!(Registry::parse(host).is_err(), "{host}");
        }
    }

    #[test]
    fn errors_name_the_field_and_escape_the_value() {
        let error = Tag::parse("v1\n[ERROR] forged").unwrap_err().to_string();
        assert!(error.starts_with("tag \"v1\\n[ERROR] forged\""), "{error}");
        assert!(!error.contains('\n'));
        let long = Repository::parse(&"a".repeat(10_000))
            .unwrap_err()
            .to_string();
        assert!(
            long.len() < 300 && long.contains("10000 characters"),
            "{long}"
        );
    }

    #[test]
    fn references_default_to_this_account_and_region() {
        let local = ImageRef::parse("team/web:v42", &registry()).unwrap();
        assert_eq!(
            local.to_string(),
            "123456789012.dkr.ecr.us-east-1.amazonaws.com/team/web:v42"
        );
        let other = ImageRef::parse(
            "210987654321.dkr.ecr.eu-west-1.amazonaws.com/sidecar/fluent-bit:3.1",
            &registry(),
        )
        .unwrap();
        assert_eq!(
            (
                other.registry.account_id(),
                other.repository.as_str(),
                other.tag.as_str()
            ),
            ("210987654321", "sidecar/fluent-bit", "3.1")
        );
        assert!(ImageRef::parse("team/web", &registry()).is_err());
        assert!(ImageRef::parse("docker.io/library/nginx:1", &registry()).is_err());
        assert!(ImageRef::parse("team/web@sha256:abc", &registry()).is_err());
    }
}
