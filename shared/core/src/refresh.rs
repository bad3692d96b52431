//! Auto Scaling instance refreshes: their statuses, and the decision about a group's refresh
//! once the parameter holds a new AMI.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, SubsecRound, Utc};
use serde::{Deserialize, Serialize};

use crate::config::InProgress;
use crate::image::quote;

/// An instance refresh's status, as Auto Scaling's `InstanceRefreshStatus` lists them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum RefreshStatus {
    Pending,
    InProgress,
    Successful,
    Failed,
    Cancelling,
    Cancelled,
    RollbackInProgress,
    RollbackFailed,
    RollbackSuccessful,
    Baking,
}

impl RefreshStatus {
    pub const ALL: [RefreshStatus; 10] = [
        RefreshStatus::Pending,
        RefreshStatus::InProgress,
        RefreshStatus::Successful,
        RefreshStatus::Failed,
        RefreshStatus::Cancelling,
        RefreshStatus::Cancelled,
        RefreshStatus::RollbackInProgress,
        RefreshStatus::RollbackFailed,
        RefreshStatus::RollbackSuccessful,
        RefreshStatus::Baking,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            RefreshStatus::Pending => "Pending",
            RefreshStatus::InProgress => "InProgress",
            RefreshStatus::Successful => "Successful",
            RefreshStatus::Failed => "Failed",
            RefreshStatus::Cancelling => "Cancelling",
            RefreshStatus::Cancelled => "Cancelled",
            RefreshStatus::RollbackInProgress => "RollbackInProgress",
            RefreshStatus::RollbackFailed => "RollbackFailed",
            RefreshStatus::RollbackSuccessful => "RollbackSuccessful",
            RefreshStatus::Baking => "Baking",
        }
    }

    /// A refresh that still holds the group: Auto Scaling refuses another while one exists
    /// (`InstanceRefreshInProgress`).
    pub fn is_active(self) -> bool {
        matches!(
            self,
            RefreshStatus::Pending
                | RefreshStatus::InProgress
                | RefreshStatus::Cancelling
                | RefreshStatus::RollbackInProgress
                | RefreshStatus::Baking
        )
    }
}

impl fmt::Display for RefreshStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A status Auto Scaling does not list.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0} is not an instance refresh status")]
pub struct UnknownRefreshStatus(pub String);

impl FromStr for RefreshStatus {
    type Err = UnknownRefreshStatus;
    fn from_str(value: &str) -> Result<Self, Self::Err> {
        RefreshStatus::ALL
            .into_iter()
            .find(|s| s.as_str() == value)
            .ok_or_else(|| UnknownRefreshStatus(quote(value)))
    }
}

/// One of a group's refreshes, as `DescribeInstanceRefreshes` lists them (newest first).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecentRefresh {
    pub id: String,
    pub status: RefreshStatus,
    pub started: Option<DateTime<Utc>>,
    /// How far it got, as Auto Scaling reports it.
    pub percentage_complete: Option<i32>,
}

/// What happened to one group, as the summary reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RefreshResult {
    Started,
    Replaced,
    AlreadyRollingOut,
    AlreadyRolledOut,
    SkippedRefreshInProgress,
    Failed,
    /// The group's launch template cannot take the AMI (see
    /// [`crate::launch_template::Misconfiguration`]): no refresh was started.
    Misconfigured,
    WouldStart,
    WouldReplace,
}

impl RefreshResult {
    pub fn as_str(self) -> &'static str {
        match self {
            RefreshResult::Started => "started",
            RefreshResult::Replaced => "replaced",
            RefreshResult::AlreadyRollingOut => "already-rolling-out",
            RefreshResult::AlreadyRolledOut => "already-rolled-out",
            RefreshResult::SkippedRefreshInProgress => "skipped-refresh-in-progress",
            RefreshResult::Failed => "failed",
            RefreshResult::Misconfigured => "misconfigured",
            RefreshResult::WouldStart => "would-start",
            RefreshResult::WouldReplace => "would-replace",
        }
    }
}

impl fmt::Display for RefreshResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

crate::eq_text!(RefreshResult, RefreshStatus);

/// What to do about one group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefreshDecision {
    /// Nothing to do: a refresh that began after the publish rolls the AMI out (or has), or a
    /// running refresh is left alone as configured.
    Leave {
        result: RefreshResult,
        refresh_id: String,
    },
    /// A dry run: this refresh would be cancelled and a new one started.
    WouldReplace { cancel: String },
    /// A dry run: a refresh would start.
    WouldStart,
    /// Start a refresh.
    Start,
    /// Cancel this refresh, wait for it to end, then start one.
    Replace { cancel: String },
    /// This refresh is already `Cancelling` (an earlier attempt of this publish cancelled it
    /// and was lost before it started the new one): wait for it to end, then start one,
    /// without cancelling it again.
    AwaitCancelled { cancelled: String },
}

/// Decides deliberately about a group's refreshes. One that began after the parameter took
/// this AMI already rolls it out and is never cancelled (a retried invocation finds its own
/// refresh that way); an older running one is replaced or left, as configured.
pub fn decide_refresh(
    refreshes: &[RecentRefresh],
    published_at: Option<DateTime<Utc>>,
    in_progress: InProgress,
    dry_run: bool,
) -> RefreshDecision {
    // Auto Scaling reports `StartTime` in whole seconds (DescribeInstanceRefreshes, Auto Scaling
    // API Reference), so a refresh started in the same second as the publish, after it, reads
    // as earlier than a publish time with its fraction: compare at Auto Scaling's precision.
    let since_publish = published_at
        .map(|p| p.trunc_subsecs(0))
        .and_then(|published| {
            refreshes
                .iter()
                .find(|r| r.started.is_some_and(|started| started >= published))
        });
    if let Some(refresh) = since_publish {
        let result = match refresh.status {
            status if status.is_active() => Some(RefreshResult::AlreadyRollingOut),
            RefreshStatus::Successful => Some(RefreshResult::AlreadyRolledOut),
            _ => None,
        };
        if let Some(result) = result {
            return RefreshDecision::Leave {
                result,
                refresh_id: refresh.id.clone(),
            };
        }
    }
    let active = refreshes.iter().find(|r| r.status.is_active());
    match (active, in_progress, dry_run) {
        (Some(active), InProgress::Skip, _) => RefreshDecision::Leave {
            result: RefreshResult::SkippedRefreshInProgress,
            refresh_id: active.id.clone(),
        },
        (Some(active), InProgress::Replace, true) => RefreshDecision::WouldReplace {
            cancel: active.id.clone(),
        },
        (Some(active), InProgress::Replace, false)
            if active.status == RefreshStatus::Cancelling =>
        {
            RefreshDecision::AwaitCancelled {
                cancelled: active.id.clone(),
            }
        }
        (Some(active), InProgress::Replace, false) => RefreshDecision::Replace {
            cancel: active.id.clone(),
        },
        (None, _, true) => RefreshDecision::WouldStart,
        (None, _, false) => RefreshDecision::Start,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .unwrap()
            .with_timezone(&Utc)
    }

    fn refresh(id: &str, status: RefreshStatus, started: &str) -> RecentRefresh {
        RecentRefresh {
            id: id.to_owned(),
            status,
            started: Some(at(started)),
            percentage_complete: None,
        }
    }

    #[test]
    fn statuses_read_as_auto_scaling_spells_them() {
        for status in RefreshStatus::ALL {
            assert_eq!(status.as_str().parse::<RefreshStatus>(), Ok(status));
        }
        assert!("pending".parse::<RefreshStatus>().is_err());
        assert_eq!(
            RefreshStatus::ALL.iter().filter(|s| s.is_active()).count(),
            5
        );
    }

    #[test]
    fn a_refresh_since_the_publish_is_ours_and_an_older_one_is_replaced_or_left() {
        use RefreshStatus::{Cancelled, InProgress as Running, Successful};
        let published = Some(at("2026-11-11T10:00:00Z"));
        let leave = |result, id: &str| RefreshDecision::Leave {
            result,
            refresh_id: id.to_owned(),
        };
        let cases = [
            (vec![], InProgress::Replace, false, RefreshDecision::Start),
            (
                vec![],
                InProgress::Replace,
                true,
                RefreshDecision::WouldStart,
            ),
            (
                vec![refresh("new", Running, "2026-11-11T10:00:00Z")],
                InProgress::Replace,
                false,
                leave(RefreshResult::AlreadyRollingOut, "new"),
            ),
            (
                vec![refresh("new", Successful, "2026-11-11T10:05:00Z")],
                InProgress::Replace,
                false,
                leave(RefreshResult::AlreadyRolledOut, "new"),
            ),
            (
                vec![refresh("new", Cancelled, "2026-11-11T10:05:00Z")],
                InProgress::Replace,
                false,
                RefreshDecision::Start,
            ),
            (
                vec![refresh("old", Running, "2026-11-11T09:59:59Z")],
                InProgress::Replace,
                false,
                RefreshDecision::Replace {
                    cancel: "old".into(),
                },
            ),
            (
                vec![refresh("old", Running, "2026-11-11T09:00:00Z")],
                InProgress::Replace,
                true,
                RefreshDecision::WouldReplace {
                    cancel: "old".into(),
                },
            ),
            (
                vec![refresh("old", Running, "2026-11-11T09:00:00Z")],
                InProgress::Skip,
                false,
                leave(RefreshResult::SkippedRefreshInProgress, "old"),
            ),
            (
                vec![refresh("old", Successful, "2026-11-11T09:00:00Z")],
                InProgress::Skip,
                false,
                RefreshDecision::Start,
            ),
        ];
        for (refreshes, in_progress, dry_run, expected) in cases {
            assert_eq!(
                decide_refresh(&refreshes, published, in_progress, dry_run),
                expected,
                "{refreshes:?} {in_progress:?} dry_run={dry_run}"
            );
        }
        assert_eq!(
            decide_refresh(
                &[refresh(
                    "ours",
                    RefreshStatus::Pending,
                    "2026-11-11T10:00:00Z"
                )],
                Some(at("2026-11-11T10:00:00.734Z")),
                InProgress::Replace,
                false
            ),
            leave(RefreshResult::AlreadyRollingOut, "ours"),
            "started in the publish's second: Auto Scaling drops the fraction, the refresh is ours"
        );
        assert_eq!(
            decide_refresh(
                &[refresh("any", Running, "2026-11-11T10:00:00Z")],
                None,
                InProgress::Replace,
                false
            ),
            RefreshDecision::Replace {
                cancel: "any".into()
            },
            "without a publish time no refresh is known to be ours"
        );
    }

    #[test]
    fn a_refresh_already_cancelling_is_awaited_not_cancelled_again() {
        let cancelling = [refresh(
            "old",
            RefreshStatus::Cancelling,
            "2026-11-11T09:00:00Z",
        )];
        let published = Some(at("2026-11-11T10:00:00Z"));
        let table = [
            (
                InProgress::Replace,
                false,
                RefreshDecision::AwaitCancelled {
                    cancelled: "old".into(),
                },
            ),
            (
                InProgress::Replace,
                true,
                RefreshDecision::WouldReplace {
                    cancel: "old".into(),
                },
            ),
            (
                InProgress::Skip,
                false,
                RefreshDecision::Leave {
                    result: RefreshResult::SkippedRefreshInProgress,
                    refresh_id: "old".into(),
                },
            ),
        ];
        for (in_progress, dry_run, decision) in table {
            assert_eq!(
                decide_refresh(&cancelling, published, in_progress, dry_run),
                decision,
                "{in_progress:?} {dry_run}"
            );
        }
    }
}
