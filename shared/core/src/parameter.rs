//! The SSM parameter that holds the fleet's AMI: its labels, its history (the rollback record)
//! and the decisions on it: write or not, label or not, roll back to what.

use std::fmt;

use serde::Serialize;

/// The start of the label on a parameter version a build published (see [`build_label`]).
pub const BUILD_LABEL_PREFIX: &str = "image-";
/// The start of the label on a parameter version written by a rollback.
pub const ROLLBACK_LABEL_PREFIX: &str = "rollback-from-v";
/// The start of the description of a parameter version written by a rollback.
pub const ROLLBACK_DESCRIPTION_PREFIX: &str = "prepull rollback: ";
/// The description of a version a build published.
pub const PUBLISH_DESCRIPTION: &str = "The newest AMI with prepull's image cache";
/// SSM's longest label.
const LABEL_LIMIT: usize = 100;

/// One region's AMI of an image.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RegionalAmi {
    pub region: String,
    pub ami: String,
}

impl RegionalAmi {
    pub fn new(region: impl Into<String>, ami: impl Into<String>) -> Self {
        Self {
            region: region.into(),
            ami: ami.into(),
        }
    }
}

/// One AMI an image distributed, as GetImage lists it: with `targetAccountIds`, one for each
/// region and account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DistributedAmi {
    pub region: String,
    pub ami: String,
    pub account: Option<String>,
}

/// The AMIs this account launches from, one per region: another account's copy is that
/// account's to publish. An entry without an account is this account's, as AWS lists it for a
/// distribution without target accounts.
pub fn own_amis(amis: &[DistributedAmi], account: &str) -> Vec<RegionalAmi> {
    let mut own: Vec<RegionalAmi> = Vec::new();
    for ami in amis {
        let ours = ami.account.as_deref().is_none_or(|a| a == account);
        if ours && !own.iter().any(|o| o.region == ami.region) {
            own.push(RegionalAmi::new(ami.region.clone(), ami.ami.clone()));
        }
    }
    own
}

/// What happened to the parameter in one region.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ParameterAction {
    /// A new version holds the AMI.
    Written,
    /// The parameter held the AMI already.
    AlreadyCurrent,
    /// This build was published before and has since been replaced: not published again.
    Superseded,
    /// A dry run: the AMI would be written.
    WouldWrite,
    /// A rollback outside the home region could not write it.
    Failed,
}

impl ParameterAction {
    pub fn as_str(self) -> &'static str {
        match self {
            ParameterAction::Written => "written",
            ParameterAction::AlreadyCurrent => "already-current",
            ParameterAction::Superseded => "superseded",
            ParameterAction::WouldWrite => "would-write",
            ParameterAction::Failed => "failed",
        }
    }
}

impl fmt::Display for ParameterAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

crate::eq_text!(ParameterAction);

/// What a publish of an AVAILABLE build came to, when not a plain `published`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PublishOutcome {
    /// Every region found this build replaced by a newer one.
    Superseded,
    /// No region needed a write.
    AlreadyPublished,
}

/// Reads the regions' actions of a publish; `None` when some region was written.
pub fn publish_outcome(actions: &[ParameterAction]) -> Option<PublishOutcome> {
    if !actions.is_empty() && actions.iter().all(|a| *a == ParameterAction::Superseded) {
        Some(PublishOutcome::Superseded)
    } else if actions.iter().all(|a| *a != ParameterAction::Written) {
        Some(PublishOutcome::AlreadyPublished)
    } else {
        None
    }
}

/// An SSM label for the build that made an AMI: `image-<recipe>-<version>-<build>`, within
/// SSM's rules (letters, digits, `.`, `-`, `_`; not starting with a digit, `aws` or `ssm`;
/// at most 100 characters). A label that would be longer keeps its version and build, shortens
/// the recipe name, and carries ten hex digits of the whole resource's SHA-256, so two builds
/// never share a label whatever the recipe name's length (cut at 100, every build of a recipe
/// named 87 characters or more got the same label).
pub fn build_label(image_arn: &str) -> String {
    let resource = image_arn.rsplit(":image/").next().unwrap_or_default();
    let allowed = |text: &str| -> String {
        text.chars()
            .filter(|c| c.is_ascii_alphanumeric() || "._-".contains(*c))
            .collect()
    };
    let label = format!(
        "{BUILD_LABEL_PREFIX}{}",
        allowed(&resource.replace('/', "-"))
    );
    if label.len() <= LABEL_LIMIT {
        return label;
    }
    let mut parts = resource.splitn(2, '/');
    let recipe = allowed(parts.next().unwrap_or_default());
    let version_and_build = allowed(&parts.next().unwrap_or_default().replace('/', "-"));
    let hash = &crate::manifest::sha256_hex(resource.as_bytes())[..10];
    let room = LABEL_LIMIT
        .saturating_sub(BUILD_LABEL_PREFIX.len() + version_and_build.len() + hash.len() + 2);
    let recipe: String = recipe.chars().take(room).collect();
    format!("{BUILD_LABEL_PREFIX}{recipe}-{hash}-{version_and_build}")
        .chars()
        .take(LABEL_LIMIT)
        .collect()
}

/// The label of a rollback away from version `from_version`.
pub fn rollback_label(from_version: i64) -> String {
    format!("{ROLLBACK_LABEL_PREFIX}{from_version}")
}

/// The description of a version prepull writes. A rollback's names the rollback in the write
/// itself, so a retry that finds the version unlabelled (stopped between `PutParameter` and
/// `LabelParameterVersion`) still knows it as a rollback and does not roll back again.
pub fn describe_version(label: Option<&str>) -> String {
    match label {
        Some(label) if label.starts_with(ROLLBACK_LABEL_PREFIX) => {
            format!("{ROLLBACK_DESCRIPTION_PREFIX}{label}")
        }
        _ => PUBLISH_DESCRIPTION.to_owned(),
    }
}

/// One version of the parameter, as its history reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParameterVersion {
    pub version: i64,
    pub value: String,
    pub labels: Vec<String>,
    pub description: String,
}

impl ParameterVersion {
    /// The rollback label of a version a rollback wrote, from its label or, when the rollback
    /// stopped before labelling it, from its description. A description is trusted only when
    /// it names a rollback label.
    pub fn rollback_label(&self) -> Option<String> {
        self.labels
            .iter()
            .find(|l| l.starts_with(ROLLBACK_LABEL_PREFIX))
            .cloned()
            .or_else(|| {
                self.description
                    .strip_prefix(ROLLBACK_DESCRIPTION_PREFIX)
                    .filter(|label| label.starts_with(ROLLBACK_LABEL_PREFIX))
                    .map(str::to_owned)
            })
    }
}

/// The build labels of every version that held `value`, newest first: a rollback's version
/// carries only its rollback label, the build's label stays on the version the build wrote.
/// `history` is oldest first.
pub fn build_labels_of(history: &[ParameterVersion], value: &str) -> Vec<String> {
    history
        .iter()
        .rev()
        .filter(|v| v.value == value)
        .flat_map(|v| v.labels.iter())
        .filter(|l| l.starts_with(BUILD_LABEL_PREFIX))
        .cloned()
        .collect()
}

/// The oldest version when it is labelled: Parameter Store keeps 100 versions and drops the
/// oldest on a write, but refuses to drop a labelled one (`ParameterMaxVersionLimitExceeded`).
/// Unlabelling it lets Parameter Store drop it as it would any other.
pub fn version_to_release(history: &[ParameterVersion]) -> Option<&ParameterVersion> {
    history.first().filter(|v| !v.labels.is_empty())
}

/// What a rollback does, read from the parameter's history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RollbackChoice {
    /// The newest version was written by a rollback (a retried or repeated rollback): finish
    /// that one (every region, the label, the refresh) rather than go further back. Going
    /// further back is a republish of a chosen image.
    Finish {
        label: String,
        version: i64,
        value: String,
    },
    /// Go back from the newest value to the newest different one before it.
    Back {
        from_version: i64,
        current: String,
        previous: String,
        label: String,
    },
}

/// Why there is nothing to roll back to.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RollbackRefused {
    #[error("cannot roll back: parameter {parameter} has no history")]
    NoHistory { parameter: String },
    #[error(
        "cannot roll back: parameter {parameter} has held only {value} (version {version} and before)"
    )]
    OneValueOnly {
        parameter: String,
        value: String,
        version: i64,
    },
}

/// Chooses what a rollback does; `history` is oldest first.
pub fn choose_rollback(
    parameter: &str,
    history: &[ParameterVersion],
) -> Result<RollbackChoice, RollbackRefused> {
    let current = history.last().ok_or_else(|| RollbackRefused::NoHistory {
        parameter: parameter.to_owned(),
    })?;
    if let Some(label) = current.rollback_label() {
        return Ok(RollbackChoice::Finish {
            label,
            version: current.version,
            value: current.value.clone(),
        });
    }
    let previous = history
        .iter()
        .rev()
        .find(|v| v.value != current.value)
        .ok_or_else(|| RollbackRefused::OneValueOnly {
            parameter: parameter.to_owned(),
            value: current.value.clone(),
            version: current.version,
        })?;
    Ok(RollbackChoice::Back {
        from_version: current.version,
        current: current.value.clone(),
        previous: previous.value.clone(),
        label: rollback_label(current.version),
    })
}

/// A build's AMIs with the home region's last, so that a rollback stopped halfway is finished
/// by its retry: the retry sees the home region rolled back only once every other region is.
/// `None` when the build's home-region AMI is not `previous`.
pub fn home_last(home: &str, previous: &str, amis: Vec<RegionalAmi>) -> Option<Vec<RegionalAmi>> {
    if !amis.iter().any(|a| a.region == home && a.ami == previous) {
        return None;
    }
    let (mut ordered, home_ami): (Vec<_>, Vec<_>) =
        amis.into_iter().partition(|a| a.region != home);
    ordered.extend(home_ami);
    Some(ordered)
}

/// The value a rollback goes back from: the current value for a new rollback; for a rollback
/// being finished, the newest different value before the rollback's own version.
pub fn rolled_back_from(history: &[ParameterVersion], choice: &RollbackChoice) -> Option<String> {
    match choice {
        RollbackChoice::Back { current, .. } => Some(current.clone()),
        RollbackChoice::Finish { version, value, .. } => history
            .iter()
            .rev()
            .filter(|v| v.version < *version)
            .find(|v| v.value != *value)
            .map(|v| v.value.clone()),
    }
}

/// The regions the rolled-back build reached and the restored one did not: a rollback writes
/// none of them, so their parameter keeps the rolled-back AMI.
pub fn left_behind(rolled_back: &[RegionalAmi], restored: &[RegionalAmi]) -> Vec<RegionalAmi> {
    rolled_back
        .iter()
        .filter(|bad| !restored.iter().any(|r| r.region == bad.region))
        .cloned()
        .collect()
}

/// Whether an image whose label already sits on an older parameter version is published
/// again: an operator's republish or rollback does; a late or repeated event does not, so it
/// cannot put back an AMI a newer build replaced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Supersede {
    Publish,
    Skip,
}

/// What the parameter in one region holds, as the publish decision needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RegionState<'a> {
    /// The current value and its version, if the parameter exists.
    pub current: Option<(&'a str, i64)>,
    /// The version that carries this publish's label, if any.
    pub labelled_version: Option<i64>,
}

/// What to do with the parameter in one region.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PublishStep {
    AlreadyCurrent { version: i64 },
    Superseded { version: i64 },
    WouldWrite,
    Write,
}

impl PublishStep {
    pub fn action(self) -> ParameterAction {
        match self {
            PublishStep::AlreadyCurrent { .. } => ParameterAction::AlreadyCurrent,
            PublishStep::Superseded { .. } => ParameterAction::Superseded,
            PublishStep::WouldWrite => ParameterAction::WouldWrite,
            PublishStep::Write => ParameterAction::Written,
        }
    }
}

/// Decides one region's publish of `ami`.
pub fn decide_publish(
    ami: &str,
    state: RegionState<'_>,
    supersede: Supersede,
    dry_run: bool,
) -> PublishStep {
    match (state.current, state.labelled_version) {
        (Some((value, version)), _) if value == ami => PublishStep::AlreadyCurrent { version },
        (_, Some(version)) if supersede == Supersede::Skip => PublishStep::Superseded { version },
        _ if dry_run => PublishStep::WouldWrite,
        _ => PublishStep::Write,
    }
}

/// Whether the version that now holds the AMI still needs this publish's label.
pub fn needs_label(
    step: PublishStep,
    holding_version: Option<i64>,
    labelled_version: Option<i64>,
    dry_run: bool,
) -> bool {
    let labelable = !dry_run && !matches!(step, PublishStep::Superseded { .. });
    labelable && holding_version.is_some() && labelled_version != holding_version
}

#[cfg(test)]
mod tests {
    use super::*;

    const ARN: &str =
        "arn:aws:imagebuilder:us-east-1:123456789012:image/prepull-windows-cache-recipe/1.0.0/3";

    fn version(version: i64, value: &str, labels: &[&str], description: &str) -> ParameterVersion {
        ParameterVersion {
            version,
            value: value.to_owned(),
            labels: labels.iter().map(|l| (*l).to_owned()).collect(),
            description: description.to_owned(),
        }
    }

    #[test]
    fn a_rollback_knows_what_it_goes_back_from_and_what_stays_behind() {
        let history = [
            version(1, "ami-a", &["image-r-1.0.0-1"], ""),
            version(2, "ami-b", &["image-r-1.0.1-1"], ""),
            version(
                3,
                "ami-a",
                &["rollback-from-v2"],
                "prepull rollback: rollback-from-v2",
            ),
        ];
        let back = RollbackChoice::Back {
            from_version: 2,
            current: "ami-b".to_owned(),
            previous: "ami-a".to_owned(),
            label: "rollback-from-v2".to_owned(),
        };
        let finish = RollbackChoice::Finish {
            label: "rollback-from-v2".to_owned(),
            version: 3,
            value: "ami-a".to_owned(),
        };
        assert_eq!(
            rolled_back_from(&history[..2], &back).as_deref(),
            Some("ami-b")
        );
        assert_eq!(
            rolled_back_from(&history, &finish).as_deref(),
            Some("ami-b")
        );
        assert_eq!(rolled_back_from(&history[2..], &finish), None);

        let amis = |pairs: &[(&str, &str)]| -> Vec<RegionalAmi> {
            pairs
                .iter()
                .map(|(r, a)| RegionalAmi::new(*r, *a))
                .collect()
        };
        let table = [
            (
                amis(&[("eu-west-1", "ami-b2"), ("us-east-1", "ami-b")]),
                amis(&[("us-east-1", "ami-a")]),
                amis(&[("eu-west-1", "ami-b2")]),
            ),
            (
                amis(&[("us-east-1", "ami-b")]),
                amis(&[("eu-west-1", "ami-a2"), ("us-east-1", "ami-a")]),
                amis(&[]),
            ),
            (amis(&[]), amis(&[("us-east-1", "ami-a")]), amis(&[])),
        ];
        for (rolled_back, restored, expected) in table {
            assert_eq!(left_behind(&rolled_back, &restored), expected);
        }
    }

    #[test]
    fn labels_follow_ssm_rules() {
        assert_eq!(
            build_label(ARN),
            "image-prepull-windows-cache-recipe-1.0.0-3"
        );
        // Every recipe name length Image Builder allows (1 to 128), and the longest versions
        // and build numbers: at most 100 characters, and each build its own label.
        for length in [1, 40, 86, 87, 93, 94, 100, 128] {
            let name = "a".repeat(length);
            let arn = |version: &str, build: u32| {
                format!(
                    "arn:aws:imagebuilder:us-east-1:123456789012:image/{name}/{version}/{build}"
                )
            };
            let labels: Vec<String> = [
                arn("1.0.0", 3),
                arn("1.0.0", 4),
                arn("1.0.1", 3),
                arn("1073741823.1073741823.1073741823", 999_999_999),
                arn("1073741823.1073741823.1073741823", 999_999_998),
            ]
            .iter()
            .map(|a| build_label(a))
            .collect();
            for label in &labels {
                assert!(label.len() <= 100, "{label}");
                assert!(label.starts_with(BUILD_LABEL_PREFIX), "{label}");
                assert!(
                    label
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c)),
                    "{label}"
                );
            }
            let distinct: std::collections::HashSet<&String> = labels.iter().collect();
            assert_eq!(distinct.len(), labels.len(), "{labels:?}");
            assert!(labels[0].ends_with("-1.0.0-3"), "{}", labels[0]);
        }
        assert_eq!(rollback_label(7), "rollback-from-v7");
        assert_eq!(
            describe_version(Some("rollback-from-v7")),
            "prepull rollback: rollback-from-v7"
        );
        assert_eq!(describe_version(Some("image-x")), PUBLISH_DESCRIPTION);
    }

    #[test]
    fn a_rollback_goes_back_once_and_a_retry_only_finishes_it() {
        let published = [
            version(1, "ami-1", &["image-a"], PUBLISH_DESCRIPTION),
            version(2, "ami-2", &["image-b"], PUBLISH_DESCRIPTION),
        ];
        assert_eq!(
            choose_rollback("/p", &published),
            Ok(RollbackChoice::Back {
                from_version: 2,
                current: "ami-2".into(),
                previous: "ami-1".into(),
                label: "rollback-from-v2".into()
            })
        );
        let labelled = [
            published[0].clone(),
            published[1].clone(),
            version(
                3,
                "ami-1",
                &["rollback-from-v2"],
                "prepull rollback: rollback-from-v2",
            ),
        ];
        let unlabelled = [
            published[0].clone(),
            published[1].clone(),
            version(3, "ami-1", &[], "prepull rollback: rollback-from-v2"),
        ];
        for history in [&labelled[..], &unlabelled[..]] {
            assert_eq!(
                choose_rollback("/p", history),
                Ok(RollbackChoice::Finish {
                    label: "rollback-from-v2".into(),
                    version: 3,
                    value: "ami-1".into()
                })
            );
        }
        let forged = [
            published[0].clone(),
            version(2, "ami-2", &[], "prepull rollback: image-x"),
        ];
        assert!(
            matches!(
                choose_rollback("/p", &forged),
                Ok(RollbackChoice::Back { .. })
            ),
            "a description that names no rollback label is not a rollback"
        );
        assert_eq!(
            choose_rollback("/p", &[]),
            Err(RollbackRefused::NoHistory {
                parameter: "/p".into()
            })
        );
        let same = [published[0].clone(), version(2, "ami-1", &[], "")];
        assert!(matches!(
            choose_rollback("/p", &same),
            Err(RollbackRefused::OneValueOnly { version: 2, .. })
        ));
    }

    #[test]
    fn build_labels_are_found_on_every_version_that_held_the_value() {
        let history = [
            version(1, "ami-1", &["image-a", "other"], ""),
            version(2, "ami-2", &["image-b"], ""),
            version(3, "ami-1", &["rollback-from-v2"], ""),
        ];
        assert_eq!(build_labels_of(&history, "ami-1"), ["image-a"]);
        assert_eq!(version_to_release(&history).map(|v| v.version), Some(1));
        assert_eq!(
            version_to_release(&history[1..2]).map(|v| v.version),
            Some(2)
        );
        assert_eq!(version_to_release(&[version(1, "ami-1", &[], "")]), None);
    }

    #[test]
    fn a_rollback_writes_the_home_region_last_and_only_a_build_that_made_the_previous_ami() {
        let amis = vec![
            RegionalAmi::new("us-east-1", "ami-1"),
            RegionalAmi::new("eu-west-1", "ami-2"),
            RegionalAmi::new("ap-south-1", "ami-3"),
        ];
        let regions: Vec<String> = home_last("us-east-1", "ami-1", amis.clone())
            .unwrap()
            .into_iter()
            .map(|a| a.region)
            .collect();
        assert_eq!(regions, ["eu-west-1", "ap-south-1", "us-east-1"]);
        assert_eq!(home_last("us-east-1", "ami-9", amis.clone()), None);
        assert_eq!(home_last("sa-east-1", "ami-1", amis), None);
    }

    #[test]
    fn publish_decisions_per_region() {
        use PublishStep::{AlreadyCurrent, Superseded, WouldWrite, Write};
        let state = |current: Option<(&'static str, i64)>, labelled: Option<i64>| RegionState {
            current,
            labelled_version: labelled,
        };
        let cases = [
            (state(None, None), Supersede::Skip, false, Write),
            (
                state(Some(("ami-0", 1)), None),
                Supersede::Skip,
                false,
                Write,
            ),
            (
                state(Some(("ami-0", 1)), None),
                Supersede::Skip,
                true,
                WouldWrite,
            ),
            (
                state(Some(("ami-1", 4)), Some(4)),
                Supersede::Skip,
                false,
                AlreadyCurrent { version: 4 },
            ),
            (
                state(Some(("ami-2", 5)), Some(4)),
                Supersede::Skip,
                false,
                Superseded { version: 4 },
            ),
            (
                state(Some(("ami-2", 5)), Some(4)),
                Supersede::Publish,
                false,
                Write,
            ),
        ];
        for (state, supersede, dry_run, expected) in cases {
            assert_eq!(
                decide_publish("ami-1", state, supersede, dry_run),
                expected,
                "{state:?}"
            );
        }
        assert!(needs_label(Write, Some(6), None, false));
        assert!(!needs_label(Write, Some(6), Some(6), false));
        assert!(needs_label(
            AlreadyCurrent { version: 4 },
            Some(4),
            None,
            false
        ));
        assert!(!needs_label(WouldWrite, None, None, true));
        assert!(!needs_label(
            Superseded { version: 4 },
            Some(4),
            Some(4),
            false
        ));
    }

    #[test]
    fn only_this_accounts_ami_is_published_in_each_region() {
        let ami = |region: &str, ami: &str, account: Option<&str>| DistributedAmi {
            region: region.to_owned(),
            ami: ami.to_owned(),
            account: account.map(str::to_owned),
        };
        let amis = [
            ami("us-east-1", "ami-theirs", Some("210987654321")),
            ami("us-east-1", "ami-ours", Some("123456789012")),
            ami("eu-west-1", "ami-eu-theirs", Some("210987654321")),
            ami("eu-west-1", "ami-eu-ours", None),
        ];
        assert_eq!(
            own_amis(&amis, "123456789012"),
            [
                RegionalAmi::new("us-east-1", "ami-ours"),
                RegionalAmi::new("eu-west-1", "ami-eu-ours")
            ]
        );
        assert!(own_amis(&amis[..1], "123456789012").is_empty());
    }

    #[test]
    fn a_publish_is_superseded_only_when_every_region_was() {
        use ParameterAction::{AlreadyCurrent, Superseded, Written};
        let cases = [
            (vec![Written, AlreadyCurrent], None),
            (
                vec![AlreadyCurrent, AlreadyCurrent],
                Some(PublishOutcome::AlreadyPublished),
            ),
            (
                vec![Superseded, Superseded],
                Some(PublishOutcome::Superseded),
            ),
            (
                vec![Superseded, AlreadyCurrent],
                Some(PublishOutcome::AlreadyPublished),
            ),
        ];
        for (actions, expected) in cases {
            assert_eq!(publish_outcome(&actions), expected, "{actions:?}");
        }
    }
}
