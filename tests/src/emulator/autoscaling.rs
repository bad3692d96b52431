//! Auto Scaling, emulated: enough of groups to seed a test, and instance refreshes as AWS
//! runs them, including `InstanceRefreshInProgress` and a cancellation that takes time.

use std::time::Duration;

use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde_json::{Map, Value, json};

use prepull::core::refresh::RefreshStatus;

use super::wire::{ApiError, timestamp};

/// The awsQuery XML namespace of Auto Scaling responses.
pub const NAMESPACE: &str = "http://autoscaling.amazonaws.com/doc/2011-01-01/";

const PAGE_LIMIT: usize = 50;

#[derive(Debug, Clone)]
pub struct Context {
    pub account_id: String,
    pub region: String,
    pub now: DateTime<Utc>,
}

#[derive(Debug, Clone)]
struct Refresh {
    id: String,
    group: String,
    status: RefreshStatus,
    status_reason: Option<String>,
    start_time: DateTime<Utc>,
    end_time: Option<DateTime<Utc>>,
    cancel_requested: Option<DateTime<Utc>>,
    instances_to_update: u64,
    strategy: String,
    preferences: Option<Value>,
    desired_configuration: Option<Value>,
}

impl Refresh {
    /// A new refresh is `Pending` for `pending_delay` before it is `InProgress`; a
    /// cancellation takes `cancel_delay` to settle, as in AWS, where in-flight replacements
    /// finish first.
    fn settle(&mut self, now: DateTime<Utc>, pending_delay: Duration, cancel_delay: Duration) {
        if self.status == RefreshStatus::Pending
            && now - self.start_time
                >= chrono::Duration::from_std(pending_delay).unwrap_or_default()
        {
            self.status = RefreshStatus::InProgress;
        }
        if self.status == RefreshStatus::Cancelling
            && let Some(requested) = self.cancel_requested
            && now - requested >= chrono::Duration::from_std(cancel_delay).unwrap_or_default()
        {
            self.status = RefreshStatus::Cancelled;
            self.status_reason = Some("Cancelled due to user request.".to_owned());
            self.end_time = Some(whole_seconds(now));
        }
    }

    fn to_json(&self) -> Value {
        let finished = self.status == RefreshStatus::Successful;
        let mut refresh = json!({
            "InstanceRefreshId": self.id,
            "AutoScalingGroupName": self.group,
            "Status": self.status.as_str(),
            "StartTime": timestamp(self.start_time),
            "PercentageComplete": if finished { 100 } else { 0 },
            "InstancesToUpdate": if finished { 0 } else { self.instances_to_update },
            "Strategy": self.strategy,
        });
        if let Some(reason) = &self.status_reason {
            refresh["StatusReason"] = json!(reason);
        }
        if let Some(end) = self.end_time {
            refresh["EndTime"] = json!(timestamp(end));
        }
        if let Some(preferences) = &self.preferences {
            refresh["Preferences"] = preferences.clone();
        }
        if let Some(desired) = &self.desired_configuration {
            refresh["DesiredConfiguration"] = desired.clone();
        }
        refresh
    }
}

/// Everything the emulated Auto Scaling holds.
#[derive(Debug)]
pub struct AutoScaling {
    groups: Vec<Value>,
    refreshes: Vec<Refresh>,
    /// How long a cancelled refresh stays `Cancelling` before it is `Cancelled`.
    pub cancel_delay: Duration,
    /// How long a new refresh stays `Pending` before it is `InProgress`.
    pub pending_delay: Duration,
}

impl Default for AutoScaling {
    fn default() -> Self {
        Self {
            groups: Vec::new(),
            refreshes: Vec::new(),
            cancel_delay: Duration::from_millis(500),
            pending_delay: Duration::from_secs(1),
        }
    }
}

fn required<'a>(params: &'a Value, field: &str) -> Result<&'a str, ApiError> {
    params.get(field).and_then(Value::as_str).filter(|v| !v.is_empty()).ok_or_else(|| {
        ApiError::bad_request("ValidationError", format!("1 validation error detected: Value null at '{field}' failed to satisfy constraint: Member must not be null"))
    })
}

fn number(params: &Value, field: &str) -> Result<Option<u64>, ApiError> {
    match params.get(field).and_then(Value::as_str) {
        None => Ok(None),
        Some(text) => text.parse().map(Some).map_err(|_| {
            ApiError::bad_request(
                "ValidationError",
                format!("The value '{text}' of '{field}' is not a number."),
            )
        }),
    }
}

/// Auto Scaling's times are whole seconds.
fn whole_seconds(at: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp(at.timestamp(), 0).unwrap_or(at)
}

/// `RefreshPreferences` (Auto Scaling API Reference): "If you specify MaxHealthyPercentage, you
/// must also specify MinHealthyPercentage, and the difference between them cannot be greater
/// than 100." The model checks each value's own range.
fn check_healthy_percentages(preferences: &Value) -> Result<(), ApiError> {
    let min = number(preferences, "MinHealthyPercentage")?;
    let max = number(preferences, "MaxHealthyPercentage")?;
    match (min, max) {
        (None, Some(_)) => Err(ApiError::bad_request(
            "ValidationError",
            "MaxHealthyPercentage requires MinHealthyPercentage.",
        )),
        (Some(min), Some(max)) if max < min || max - min > 100 => Err(ApiError::bad_request(
            "ValidationError",
            format!(
                "MaxHealthyPercentage ({max}) must be at least MinHealthyPercentage ({min}) and at most 100 above it."
            ),
        )),
        _ => Ok(()),
    }
}

fn group_not_found(name: &str) -> ApiError {
    ApiError::bad_request(
        "ValidationError",
        format!("AutoScalingGroup name not found - AutoScalingGroup {name} not found"),
    )
}

fn paginate(items: Vec<Value>, params: &Value) -> Result<(Vec<Value>, Option<String>), ApiError> {
    let limit = number(params, "MaxRecords")?.map_or(PAGE_LIMIT, |n| (n as usize).clamp(1, 100));
    let start = match params.get("NextToken").and_then(Value::as_str) {
        None => 0,
        Some(token) => token
            .strip_prefix("page-")
            .and_then(|n| n.parse::<usize>().ok())
            .filter(|n| *n <= items.len())
            .ok_or_else(|| ApiError::bad_request("InvalidNextToken", "The token is not valid."))?,
    };
    let end = (start + limit).min(items.len());
    Ok((
        items[start..end].to_vec(),
        (end < items.len()).then(|| format!("page-{end}")),
    ))
}

impl AutoScaling {
    pub fn handle(
        &mut self,
        context: &Context,
        operation: &str,
        params: &Value,
    ) -> Result<Value, ApiError> {
        for refresh in &mut self.refreshes {
            refresh.settle(context.now, self.pending_delay, self.cancel_delay);
        }
        match operation {
            "CreateAutoScalingGroup" => self.create_group(context, params),
            "DescribeAutoScalingGroups" => self.describe_groups(params),
            "StartInstanceRefresh" => self.start_refresh(context, params),
            "DescribeInstanceRefreshes" => self.describe_refreshes(params),
            "CancelInstanceRefresh" => self.cancel_refresh(context, params),
            other => Err(ApiError::bad_request(
                "InvalidAction",
                format!("The emulator does not implement Auto Scaling action '{other}'."),
            )),
        }
    }

    fn create_group(&mut self, context: &Context, params: &Value) -> Result<Value, ApiError> {
        let name = required(params, "AutoScalingGroupName")?;
        let min =
            number(params, "MinSize")?.ok_or_else(|| required(params, "MinSize").unwrap_err())?;
        let max =
            number(params, "MaxSize")?.ok_or_else(|| required(params, "MaxSize").unwrap_err())?;
        let desired = number(params, "DesiredCapacity")?.unwrap_or(min);
        if min > max || desired < min || desired > max {
            return Err(ApiError::bad_request(
                "ValidationError",
                "Desired capacity must be between MinSize and MaxSize.",
            ));
        }
        if self
            .groups
            .iter()
            .any(|g| g["AutoScalingGroupName"] == name)
        {
            return Err(ApiError::bad_request(
                "AlreadyExists",
                format!(
                    "AutoScalingGroup by this name already exists - A group with the name {name} already exists"
                ),
            ));
        }
        // AWS needs exactly one way to launch (CreateAutoScalingGroup, Auto Scaling API
        // Reference): "Valid requests must contain either LaunchTemplate,
        // LaunchConfigurationName, InstanceId or MixedInstancesPolicy parameter."
        let ways = [
            "LaunchTemplate",
            "LaunchConfigurationName",
            "InstanceId",
            "MixedInstancesPolicy",
        ];
        if ways.iter().filter(|w| params.get(**w).is_some()).count() != 1 {
            return Err(ApiError::bad_request(
                "ValidationError",
                "Valid requests must contain either LaunchTemplate, LaunchConfigurationName, InstanceId or MixedInstancesPolicy parameter.",
            ));
        }
        // A launch template named without a version launches its default version, and
        // DescribeAutoScalingGroups says so (`Version` is `$Default`).
        let launch_template = params.get("LaunchTemplate").cloned().map(|mut template| {
            if template.get("Version").is_none() {
                template["Version"] = json!("$Default");
            }
            template
        });
        let zones: Vec<Value> = params
            .get("AvailabilityZones")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_else(|| vec![json!(format!("{}a", context.region))]);
        let instances: Vec<Value> = (0..desired)
            .map(|n| {
                json!({
                    "InstanceId": format!("i-{:017x}", (self.groups.len() as u64) << 32 | n),
                    "InstanceType": "m5.large",
                    "AvailabilityZone": zones[0],
                    "LifecycleState": "InService",
                    "HealthStatus": "Healthy",
                    "LaunchTemplate": launch_template,
                    "ProtectedFromScaleIn": false,
                })
            })
            .collect();
        let mut group = Map::new();
        group.insert("AutoScalingGroupName".into(), json!(name));
        group.insert(
            "AutoScalingGroupARN".into(),
            json!(format!(
                "arn:aws:autoscaling:{}:{}:autoScalingGroup:{}:autoScalingGroupName/{name}",
                context.region,
                context.account_id,
                uuid::Uuid::new_v4()
            )),
        );
        if let Some(template) = &launch_template {
            group.insert("LaunchTemplate".into(), template.clone());
        }
        group.insert("MinSize".into(), json!(min));
        group.insert("MaxSize".into(), json!(max));
        group.insert("DesiredCapacity".into(), json!(desired));
        group.insert("DefaultCooldown".into(), json!(300));
        group.insert("AvailabilityZones".into(), json!(zones));
        group.insert(
            "HealthCheckType".into(),
            json!(
                params
                    .get("HealthCheckType")
                    .cloned()
                    .unwrap_or(json!("EC2"))
            ),
        );
        group.insert("Instances".into(), json!(instances));
        group.insert("CreatedTime".into(), json!(timestamp(context.now)));
        group.insert(
            "NewInstancesProtectedFromScaleIn".into(),
            json!(
                params
                    .get("NewInstancesProtectedFromScaleIn")
                    .and_then(Value::as_str)
                    == Some("true")
            ),
        );
        for field in [
            "VPCZoneIdentifier",
            "Tags",
            "DefaultInstanceWarmup",
            "MixedInstancesPolicy",
            "LaunchConfigurationName",
        ] {
            if let Some(value) = params.get(field) {
                group.insert(field.into(), value.clone());
            }
        }
        self.groups.push(Value::Object(group));
        Ok(json!({}))
    }

    fn describe_groups(&self, params: &Value) -> Result<Value, ApiError> {
        let names: Vec<&str> = params
            .get("AutoScalingGroupNames")
            .and_then(Value::as_array)
            .map(|n| n.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let groups: Vec<Value> = self
            .groups
            .iter()
            .filter(|g| names.is_empty() || names.iter().any(|n| g["AutoScalingGroupName"] == *n))
            .cloned()
            .collect();
        let (page, next) = paginate(groups, params)?;
        Ok(json!({"AutoScalingGroups": page, "NextToken": next}))
    }

    fn start_refresh(&mut self, context: &Context, params: &Value) -> Result<Value, ApiError> {
        let name = required(params, "AutoScalingGroupName")?;
        let group = self
            .groups
            .iter()
            .find(|g| g["AutoScalingGroupName"] == name)
            .ok_or_else(|| group_not_found(name))?;
        let strategy = params
            .get("Strategy")
            .and_then(Value::as_str)
            .unwrap_or("Rolling");
        if !["Rolling", "ReplaceRootVolume"].contains(&strategy) {
            return Err(ApiError::bad_request(
                "ValidationError",
                format!("The strategy '{strategy}' is not valid."),
            ));
        }
        if let Some(preferences) = params.get("Preferences") {
            check_healthy_percentages(preferences)?;
        }
        if let Some(active) = self
            .refreshes
            .iter()
            .find(|r| r.group == name && r.status.is_active())
        {
            return Err(ApiError::bad_request(
                "InstanceRefreshInProgress",
                format!(
                    "An Instance Refresh is already in progress and blocks the execution of this Instance Refresh. (Instance refresh {} is {})",
                    active.id, active.status
                ),
            ));
        }
        let refresh = Refresh {
            id: uuid::Uuid::new_v4().to_string(),
            group: name.to_owned(),
            // "StartTime … The date and time at which the instance refresh began" comes in
            // whole seconds, and a new refresh is `Pending` (DescribeInstanceRefreshes, Auto
            // Scaling API Reference).
            status: RefreshStatus::Pending,
            status_reason: None,
            start_time: whole_seconds(context.now),
            end_time: None,
            cancel_requested: None,
            instances_to_update: group["DesiredCapacity"].as_u64().unwrap_or(0),
            strategy: strategy.to_owned(),
            preferences: params.get("Preferences").cloned(),
            desired_configuration: params.get("DesiredConfiguration").cloned(),
        };
        let id = refresh.id.clone();
        self.refreshes.push(refresh);
        Ok(json!({"InstanceRefreshId": id}))
    }

    fn describe_refreshes(&self, params: &Value) -> Result<Value, ApiError> {
        let name = required(params, "AutoScalingGroupName")?;
        let ids: Vec<&str> = params
            .get("InstanceRefreshIds")
            .and_then(Value::as_array)
            .map(|n| n.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let refreshes: Vec<Value> = self
            .refreshes
            .iter()
            .rev()
            .filter(|r| r.group == name && (ids.is_empty() || ids.contains(&r.id.as_str())))
            .map(Refresh::to_json)
            .collect();
        let (page, next) = paginate(refreshes, params)?;
        Ok(json!({"InstanceRefreshes": page, "NextToken": next}))
    }

    fn cancel_refresh(&mut self, context: &Context, params: &Value) -> Result<Value, ApiError> {
        let name = required(params, "AutoScalingGroupName")?;
        if !self
            .groups
            .iter()
            .any(|g| g["AutoScalingGroupName"] == name)
        {
            return Err(group_not_found(name));
        }
        let active = self
            .refreshes
            .iter_mut()
            .find(|r| r.group == name && r.status.is_active() && r.status != RefreshStatus::RollbackInProgress)
            .ok_or_else(|| ApiError::bad_request("ActiveInstanceRefreshNotFound", format!("No in progress or pending Instance Refresh found for Auto Scaling group {name}")))?;
        if active.status != RefreshStatus::Cancelling {
            active.status = RefreshStatus::Cancelling;
            active.cancel_requested = Some(context.now);
        }
        let id = active.id.clone();
        active.settle(context.now, self.pending_delay, self.cancel_delay);
        Ok(json!({"InstanceRefreshId": id}))
    }

    /// Ends the group's active refresh as `Successful` or `Failed`, as the real rollout would.
    pub fn finish_refresh(
        &mut self,
        context: &Context,
        group: &str,
        status: &str,
        reason: Option<&str>,
    ) -> Result<Value, ApiError> {
        let status = match status.parse::<RefreshStatus>() {
            Ok(status @ (RefreshStatus::Successful | RefreshStatus::Failed)) => status,
            _ => {
                return Err(ApiError::bad_request(
                    "ValidationError",
                    format!("A refresh can be finished as Successful or Failed, not '{status}'."),
                ));
            }
        };
        let refresh = self
            .refreshes
            .iter_mut()
            .rev()
            .find(|r| {
                r.group == group
                    && matches!(
                        r.status,
                        RefreshStatus::Pending | RefreshStatus::InProgress | RefreshStatus::Baking
                    )
            })
            .ok_or_else(|| {
                ApiError::new(
                    StatusCode::NOT_FOUND,
                    "ActiveInstanceRefreshNotFound",
                    format!("No in progress Instance Refresh found for Auto Scaling group {group}"),
                )
            })?;
        refresh.status = status;
        refresh.status_reason = reason.map(str::to_owned);
        refresh.end_time = Some(whole_seconds(context.now));
        Ok(refresh.to_json())
    }
}
