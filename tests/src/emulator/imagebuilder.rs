//! EC2 Image Builder, emulated: the operations prepull uses and those a user needs to set up a
//! pipeline, with the behaviour of the real service where prepull depends on it.
//!
//! Resources are kept in the exact JSON shape the API returns them in, so what a client writes
//! is what it reads back.

use std::collections::HashMap;

use axum::http::StatusCode;
use chrono::{DateTime, Utc};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use prepull::core::build::BuildStatus;

use super::wire::{ApiError, timestamp};

/// Whether an image in this status can still move on (prepull's own reading of the statuses).
fn is_running(status: &str) -> bool {
    status
        .parse::<BuildStatus>()
        .is_ok_and(BuildStatus::is_running)
}

/// The maximum length of a component's inline `data`, in characters.
pub const COMPONENT_DATA_LIMIT: usize = 16_000;

/// The maximum number of components in one recipe.
pub const RECIPE_COMPONENT_LIMIT: usize = 20;

/// Image Builder's page sizes: "If you don't specify a value, Image Builder returns up to 25
/// items. The largest page size that you can request is 100 items" (botocore's model,
/// `maxResults` of the List operations).
const DEFAULT_PAGE: usize = 25;
const LARGEST_PAGE: usize = 100;

/// Where a request runs: the account and region its ARNs are made in, and the time.
#[derive(Debug, Clone)]
pub struct Context {
    pub account_id: String,
    pub region: String,
    pub now: DateTime<Utc>,
}

impl Context {
    fn arn(&self, account: &str, resource: &str) -> String {
        format!("arn:aws:imagebuilder:{}:{account}:{resource}", self.region)
    }
}

/// The parts of an Image Builder ARN: `arn:aws:imagebuilder:REGION:ACCOUNT:KIND/NAME[/VERSION[/BUILD]]`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Arn {
    account: String,
    kind: String,
    name: String,
    version: Option<String>,
    build: Option<u64>,
}

fn parse_arn(arn: &str) -> Option<Arn> {
    let fields: Vec<&str> = arn.splitn(6, ':').collect();
    let [prefix, partition, service, _region, account, resource] = fields.as_slice() else {
        return None;
    };
    if *prefix != "arn" || !partition.starts_with("aws") || *service != "imagebuilder" {
        return None;
    }
    let mut parts = resource.split('/');
    let kind = parts.next()?.to_owned();
    let name = parts.next().filter(|n| !n.is_empty())?.to_owned();
    let version = parts.next().map(str::to_owned);
    let build = match parts.next() {
        Some(b) => Some(b.parse().ok()?),
        None => None,
    };
    if parts.next().is_some() {
        return None;
    }
    Some(Arn {
        account: (*account).to_owned(),
        kind,
        name,
        version,
        build,
    })
}

/// The largest value of a version node: "any positive integer value, or zero, with an upper
/// limit of 2^30-1, or 1073741823 for each node" (Image Builder User Guide, "Semantic
/// versioning").
const VERSION_NODE_LIMIT: u64 = (1 << 30) - 1;

/// A `major.minor.patch` version of digits only, compared numerically. Leading zeros are
/// allowed: the same guide gives `2021.01.01` as an example.
fn parse_version(text: &str) -> Option<semver::Version> {
    let nodes: Vec<u64> = text
        .split('.')
        .map(|p| {
            (!p.is_empty() && p.chars().all(|c| c.is_ascii_digit()))
                .then(|| p.parse::<u64>().ok())
                .flatten()
                .filter(|n| *n <= VERSION_NODE_LIMIT)
        })
        .collect::<Option<_>>()?;
    match nodes.as_slice() {
        [major, minor, patch] => Some(semver::Version::new(*major, *minor, *patch)),
        _ => None,
    }
}

/// Whether a version matches a pattern whose parts are numbers or `x`.
fn version_matches(pattern: &str, version: &str) -> bool {
    let pattern: Vec<&str> = pattern.split('.').collect();
    let version: Vec<&str> = version.split('.').collect();
    pattern.len() == 3
        && version.len() == 3
        && pattern.iter().zip(&version).all(|(p, v)| {
            *p == "x"
                || (p.parse::<u64>().ok().is_some() && p.parse::<u64>().ok() == v.parse().ok())
        })
}

fn is_version_pattern(text: &str) -> bool {
    text.split('.').count() == 3
        && text
            .split('.')
            .all(|p| p == "x" || (!p.is_empty() && p.chars().all(|c| c.is_ascii_digit())))
}

/// A version selector in an ARN: numbers, then `x` from some node on. "When you use a
/// wildcard in any node, all nodes to the right of the first wildcard must also be
/// wildcards" (Image Builder User Guide, "Semantic versioning"): `1.x.x` selects, `x.2.x` and
/// `1.x.8` do not.
fn is_version_selector(text: &str) -> bool {
    is_version_pattern(text) && text.split('.').skip_while(|p| *p != "x").all(|p| p == "x")
}

fn str_field<'a>(params: &'a Value, field: &str) -> Option<&'a str> {
    params.get(field).and_then(Value::as_str)
}

fn required<'a>(params: &'a Value, field: &str) -> Result<&'a str, ApiError> {
    str_field(params, field)
        .filter(|v| !v.is_empty())
        .ok_or_else(|| {
            ApiError::bad_request(
                "InvalidRequestException",
                format!("The value supplied for parameter '{field}' is not valid. It is required."),
            )
        })
}

fn not_found(what: &str, arn: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "ResourceNotFoundException",
        format!("The {what} '{arn}' does not exist."),
    )
}

fn invalid(message: impl Into<String>) -> ApiError {
    ApiError::bad_request("InvalidRequestException", message)
}

fn validate_name(name: &str) -> Result<(), ApiError> {
    let ok = (3..=128).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == ' ')
        && !name.starts_with(' ')
        && !name.ends_with(' ');
    if ok {
        Ok(())
    } else {
        Err(invalid(format!(
            "The value supplied for parameter 'name' is not valid: '{name}'."
        )))
    }
}

/// Recipe and component versions are sorted by their numeric version and build number.
fn version_key(resource: &Value) -> (semver::Version, u64) {
    let version = resource
        .get("version")
        .and_then(Value::as_str)
        .and_then(parse_version);
    let build = resource
        .get("arn")
        .and_then(Value::as_str)
        .and_then(parse_arn)
        .and_then(|a| a.build)
        .unwrap_or(0);
    (
        version.unwrap_or_else(|| semver::Version::new(0, 0, 0)),
        build,
    )
}

/// Copies the listed fields that are present in `params` into `into`.
/// A resource as the Get calls return it: "tags" is `{}` for an untagged resource, never
/// missing (GetComponent, GetImageRecipe, GetImagePipeline and GetImage answer so, and the
/// SDKs read it as an empty map).
fn as_got(resource: &Value) -> Value {
    let mut resource = resource.clone();
    if let Value::Object(map) = &mut resource {
        map.entry("tags").or_insert_with(|| json!({}));
    }
    resource
}

fn copy_fields(params: &Value, into: &mut Map<String, Value>, fields: &[&str]) {
    for field in fields {
        if let Some(value) = params.get(*field).filter(|v| !v.is_null()) {
            into.insert((*field).to_owned(), value.clone());
        }
    }
}

fn paginate(items: Vec<Value>, params: &Value) -> Result<(Vec<Value>, Option<String>), ApiError> {
    let limit = params
        .get("maxResults")
        .and_then(Value::as_u64)
        .map_or(DEFAULT_PAGE, |n| (n as usize).clamp(1, LARGEST_PAGE));
    let start = match str_field(params, "nextToken") {
        None => 0,
        Some(token) => token
            .strip_prefix("page-")
            .and_then(|n| n.parse::<usize>().ok())
            .filter(|n| *n <= items.len())
            .ok_or_else(|| {
                ApiError::bad_request(
                    "InvalidPaginationTokenException",
                    "The pagination token is not valid.",
                )
            })?,
    };
    let end = (start + limit).min(items.len());
    let next = (end < items.len()).then(|| format!("page-{end}"));
    Ok((items[start..end].to_vec(), next))
}

/// The pipeline's images keep the id of the AMI in each distribution region.
fn ami_id(image_arn: &str, region: &str, account: &str) -> String {
    let digest = Sha256::digest(format!("{image_arn}|{region}|{account}").as_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("ami-{}", &hex[..17])
}

/// Everything the emulated Image Builder holds.
#[derive(Debug, Default)]
pub struct ImageBuilder {
    /// Every component build version, in creation order.
    components: Vec<Value>,
    recipes: Vec<Value>,
    infrastructure_configurations: Vec<Value>,
    distribution_configurations: Vec<Value>,
    pipelines: Vec<Value>,
    images: Vec<Value>,
    /// `(operation, clientToken)` → (request, response), for idempotent retries.
    idempotency: HashMap<(String, String), (Value, Value)>,
    /// Every "EC2 Image Builder Image State Change" event the service would have emitted.
    events: Vec<Value>,
    /// How many of the newest component builds ListComponents does not show yet: AWS
    /// documents that new components can take a while to appear there.
    pub list_lag: usize,
    /// AMIs deregistered since their image distributed them.
    deregistered: Vec<String>,
    /// What a second CreateComponent of an existing name and version gets.
    pub second_writer: SecondWriter,
    /// How long a new component build stays invisible to every read but ListComponents (which
    /// has `list_lag`): ListComponentBuildVersions, GetComponent, and the resolution of a
    /// recipe's `x.x.x` when a build starts. Image Builder is eventually consistent; a build
    /// started right after CreateComponent can take the previous version.
    pub read_lag: std::time::Duration,
    /// How long a new image stays out of ListImagePipelineImages.
    pub image_list_lag: std::time::Duration,
}

/// When the emulated AWS-managed components were published: Image Builder's launch.
const MANAGED_COMPONENTS_CREATED: &str = "2019-12-02T00:00:00.000Z";

/// Whether a resource created at its `dateCreated` is visible `lag` later, at `now`.
fn visible(resource: &Value, lag: std::time::Duration, now: DateTime<Utc>) -> bool {
    // Without a lag everything written is visible, even to a test whose clock was set before
    // the moment it was written.
    if lag.is_zero() {
        return true;
    }
    let created = resource["dateCreated"]
        .as_str()
        .and_then(|d| DateTime::parse_from_rfc3339(d).ok())
        .map(|d| d.with_timezone(&Utc));
    created.is_none_or(|at| now - at >= chrono::Duration::from_std(lag).unwrap_or_default())
}

/// What Image Builder answers a second writer of a component version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SecondWriter {
    /// Since November 2025: the create makes the next build of that version (`/2`).
    #[default]
    NextBuild,
    /// The create is refused with `ResourceInUseException`, as it was before, and as it is
    /// where the newer behaviour has not reached.
    ResourceInUse,
}

impl ImageBuilder {
    /// Whether an image of this service distributed `ami` to `account` in `region`, and it
    /// still exists.
    pub fn distributed_ami(&self, account: &str, region: &str, ami: &str) -> bool {
        !self.deregistered.iter().any(|d| d == ami)
            && self.images.iter().any(|image| {
                image["outputResources"]["amis"]
                    .as_array()
                    .is_some_and(|amis| {
                        amis.iter().any(|a| {
                            a["region"] == region && a["image"] == ami && a["accountId"] == account
                        })
                    })
            })
    }

    /// Deregisters an AMI one of this service's images distributed.
    pub fn deregister_ami(&mut self, ami: &str) {
        self.deregistered.push(ami.to_owned());
    }

    /// A fresh service, holding only the AWS-managed components a recipe may reference.
    pub fn new(context: &Context) -> Self {
        let mut service = Self::default();
        for name in ["update-windows", "update-linux"] {
            let arn = context.arn("aws", &format!("component/{name}/1.0.0/1"));
            let platform = if name.ends_with("windows") {
                "Windows"
            } else {
                "Linux"
            };
            service.components.push(json!({
                "arn": arn, "name": name, "version": "1.0.0", "type": "BUILD",
                "platform": platform, "owner": "Amazon", "state": {"status": "ACTIVE"},
                "description": format!("AWS-managed {name}"), "encrypted": true,
                // AWS's own components long predate any account's resources (and any
                // clock a test sets).
                "dateCreated": MANAGED_COMPONENTS_CREATED,
                "data": "name: managed\nschemaVersion: 1.0\nphases: []\n",
            }));
        }
        service
    }

    pub fn events(&self) -> &[Value] {
        &self.events
    }

    /// Handles one API operation. Returns the response body or the service's error.
    pub fn handle(
        &mut self,
        context: &Context,
        operation: &str,
        params: &Value,
    ) -> Result<Value, ApiError> {
        let token_operation = matches!(
            operation,
            "CreateComponent"
                | "CreateImageRecipe"
                | "CreateInfrastructureConfiguration"
                | "CreateDistributionConfiguration"
                | "CreateImagePipeline"
                | "UpdateImagePipeline"
                | "StartImagePipelineExecution"
                | "CancelImageCreation"
        );
        if !token_operation {
            return self.dispatch(context, operation, params);
        }
        let token = required(params, "clientToken")?.to_owned();
        if token.len() > 36 {
            return Err(invalid(
                "The value supplied for parameter 'clientToken' is longer than 36 characters.",
            ));
        }
        let key = (operation.to_owned(), token.clone());
        if let Some((earlier_request, earlier_response)) = self.idempotency.get(&key) {
            return if earlier_request == params {
                Ok(earlier_response.clone())
            } else {
                Err(ApiError::bad_request(
                    "IdempotentParameterMismatchException",
                    format!(
                        "The client token '{token}' was already used with different parameters."
                    ),
                ))
            };
        }
        if params.get("dryRun").and_then(Value::as_bool) == Some(true) {
            self.dispatch_dry_run(context, operation, params)?;
            return Err(ApiError::new(
                StatusCode::PRECONDITION_FAILED,
                "DryRunOperationException",
                "The request would have succeeded, but dryRun was set.",
            ));
        }
        let mut response = self.dispatch(context, operation, params)?;
        if let Value::Object(map) = &mut response {
            map.insert("clientToken".to_owned(), Value::String(token));
        }
        self.idempotency
            .insert(key, (params.clone(), response.clone()));
        Ok(response)
    }

    fn dispatch_dry_run(
        &self,
        context: &Context,
        operation: &str,
        params: &Value,
    ) -> Result<(), ApiError> {
        let mut scratch = Self {
            components: self.components.clone(),
            recipes: self.recipes.clone(),
            infrastructure_configurations: self.infrastructure_configurations.clone(),
            distribution_configurations: self.distribution_configurations.clone(),
            pipelines: self.pipelines.clone(),
            images: self.images.clone(),
            idempotency: HashMap::new(),
            events: Vec::new(),
            list_lag: 0,
            deregistered: Vec::new(),
            second_writer: self.second_writer,
            read_lag: self.read_lag,
            image_list_lag: self.image_list_lag,
        };
        scratch.dispatch(context, operation, params).map(|_| ())
    }

    fn dispatch(
        &mut self,
        context: &Context,
        operation: &str,
        params: &Value,
    ) -> Result<Value, ApiError> {
        match operation {
            "CreateComponent" => self.create_component(context, params),
            "GetComponent" => self.get_component(context, params),
            "ListComponents" => self.list_components(context, params),
            "ListComponentBuildVersions" => self.list_component_build_versions(context, params),
            "CreateImageRecipe" => self.create_image_recipe(context, params),
            "GetImageRecipe" => self.get_image_recipe(params),
            "CreateInfrastructureConfiguration" => {
                self.create_infrastructure_configuration(context, params)
            }
            "CreateDistributionConfiguration" => {
                self.create_distribution_configuration(context, params)
            }
            "CreateImagePipeline" => self.create_image_pipeline(context, params),
            "GetImagePipeline" => self.get_image_pipeline(params),
            "UpdateImagePipeline" => self.update_image_pipeline(context, params),
            "StartImagePipelineExecution" => self.start_image_pipeline_execution(context, params),
            "ListImagePipelineImages" => self.list_image_pipeline_images(context, params),
            "GetImage" => self.get_image(params),
            "CancelImageCreation" => self.cancel_image_creation(context, params),
            other => Err(ApiError::new(
                StatusCode::NOT_FOUND,
                "UnknownOperationException",
                format!("The emulator does not implement Image Builder operation '{other}'."),
            )),
        }
    }

    // ---- components -------------------------------------------------------------------------

    fn create_component(&mut self, context: &Context, params: &Value) -> Result<Value, ApiError> {
        let name = required(params, "name")?;
        validate_name(name)?;
        let version = required(params, "semanticVersion")?;
        if parse_version(version).is_none() {
            return Err(ApiError::bad_request(
                "InvalidVersionNumberException",
                format!(
                    "The semantic version '{version}' is not valid: use <major>.<minor>.<patch> with digits only."
                ),
            ));
        }
        let platform = required(params, "platform")?;
        if !["Windows", "Linux", "macOS"].contains(&platform) {
            return Err(invalid(format!("The platform '{platform}' is not valid.")));
        }
        let data = str_field(params, "data");
        let uri = str_field(params, "uri");
        let data = match (data, uri) {
            (Some(_), Some(_)) => {
                return Err(ApiError::bad_request(
                    "InvalidParameterCombinationException",
                    "You must specify either 'data' or 'uri', not both.",
                ));
            }
            (None, None) => {
                return Err(ApiError::bad_request(
                    "InvalidParameterCombinationException",
                    "You must specify either 'data' or 'uri'.",
                ));
            }
            (None, Some(uri)) => {
                if !uri.starts_with("s3://") {
                    return Err(invalid(format!("The uri '{uri}' is not an S3 URI.")));
                }
                format!("# fetched from {uri}\n")
            }
            (Some(data), None) => {
                let length = data.chars().count();
                if length > COMPONENT_DATA_LIMIT {
                    return Err(invalid(format!(
                        "The value supplied for parameter 'data' is {length} characters long; the maximum is {COMPONENT_DATA_LIMIT}."
                    )));
                }
                validate_document(data)?;
                data.to_owned()
            }
        };
        let build = 1 + self
            .components
            .iter()
            .filter(|c| {
                c["name"] == name
                    && c["version"] == version
                    && c["owner"] == context.account_id.as_str()
            })
            .count();
        if build > 1 && self.second_writer == SecondWriter::ResourceInUse {
            return Err(ApiError::bad_request(
                "ResourceInUseException",
                format!("The component '{name}' version '{version}' already exists."),
            ));
        }
        let arn = context.arn(
            &context.account_id,
            &format!("component/{}/{version}/{build}", name.to_lowercase()),
        );
        let mut component = Map::new();
        component.insert("arn".into(), json!(arn));
        component.insert("name".into(), json!(name));
        component.insert("version".into(), json!(version));
        component.insert("type".into(), json!("BUILD"));
        component.insert("platform".into(), json!(platform));
        component.insert("owner".into(), json!(context.account_id));
        component.insert("state".into(), json!({"status": "ACTIVE"}));
        component.insert("encrypted".into(), json!(true));
        component.insert("dateCreated".into(), json!(timestamp(context.now)));
        component.insert("data".into(), json!(data));
        copy_fields(
            params,
            &mut component,
            &[
                "description",
                "changeDescription",
                "supportedOsVersions",
                "kmsKeyId",
                "tags",
            ],
        );
        self.components.push(Value::Object(component));
        Ok(json!({"componentBuildVersionArn": arn}))
    }

    /// Finds a component by build-version ARN, version ARN (latest build) or wildcard ARN
    /// such as `.../x.x.x` (latest matching version).
    fn resolve_component(&self, arn: &str, now: DateTime<Utc>) -> Result<&Value, ApiError> {
        let parsed = parse_arn(arn)
            .filter(|a| a.kind == "component")
            .ok_or_else(|| invalid(format!("The ARN '{arn}' is not a valid component ARN.")))?;
        let pattern = parsed.version.clone().unwrap_or_else(|| "x.x.x".to_owned());
        if !is_version_selector(&pattern) {
            return Err(invalid(format!(
                "The ARN '{arn}' is not a valid component ARN."
            )));
        }
        self.components
            .iter()
            .filter(|c| {
                c["name"]
                    .as_str()
                    .is_some_and(|n| n.to_lowercase() == parsed.name)
            })
            .filter(|c| owned_by(c, &parsed.account))
            .filter(|c| visible(c, self.read_lag, now))
            .filter(|c| {
                c["version"]
                    .as_str()
                    .is_some_and(|v| version_matches(&pattern, v))
            })
            .filter(|c| parsed.build.is_none() || version_key(c).1 == parsed.build.unwrap_or(0))
            .max_by_key(|c| version_key(c))
            .ok_or_else(|| not_found("component", arn))
    }

    fn get_component(&self, context: &Context, params: &Value) -> Result<Value, ApiError> {
        let arn = required(params, "componentBuildVersionArn")?;
        let component = self.resolve_component(arn, context.now)?;
        Ok(json!({"component": as_got(component)}))
    }

    fn list_components(&self, context: &Context, params: &Value) -> Result<Value, ApiError> {
        let owner = str_field(params, "owner").unwrap_or("Self");
        let filters = filters(params)?;
        let mut versions: Vec<Value> = Vec::new();
        let visible = self.components.len().saturating_sub(self.list_lag);
        for component in &self.components[..visible] {
            let owned = match owner {
                "Self" => component["owner"] == context.account_id.as_str(),
                "Amazon" => component["owner"] == "Amazon",
                _ => false,
            };
            if !owned || !matches_filters(component, &filters) {
                continue;
            }
            let version_arn = version_arn_of(component);
            if let Some(existing) = versions
                .iter_mut()
                .find(|v| v["arn"] == version_arn.as_str())
            {
                existing["dateCreated"] = component["dateCreated"].clone();
                continue;
            }
            let mut summary = Map::new();
            summary.insert("arn".into(), json!(version_arn));
            copy_fields(
                component,
                &mut summary,
                &[
                    "name",
                    "version",
                    "description",
                    "platform",
                    "supportedOsVersions",
                    "type",
                    "owner",
                    "dateCreated",
                ],
            );
            versions.push(Value::Object(summary));
        }
        let (page, next) = paginate(versions, params)?;
        Ok(json!({"componentVersionList": page, "nextToken": next}))
    }

    fn list_component_build_versions(
        &self,
        context: &Context,
        params: &Value,
    ) -> Result<Value, ApiError> {
        let version_arn = required(params, "componentVersionArn")?;
        let parsed = parse_arn(version_arn)
            .filter(|a| a.kind == "component" && a.build.is_none())
            .filter(|a| a.version.as_deref().and_then(parse_version).is_some())
            .ok_or_else(|| {
                invalid(format!(
                    "The ARN '{version_arn}' is not a valid component version ARN."
                ))
            })?;
        let builds: Vec<Value> = self
            .components
            .iter()
            .filter(|c| {
                c["name"]
                    .as_str()
                    .is_some_and(|n| n.to_lowercase() == parsed.name)
            })
            .filter(|c| {
                owned_by(c, &parsed.account) && c["version"].as_str() == parsed.version.as_deref()
            })
            .filter(|c| visible(c, self.read_lag, context.now))
            .map(|c| {
                let mut summary = Map::new();
                copy_fields(
                    c,
                    &mut summary,
                    &[
                        "arn",
                        "name",
                        "version",
                        "platform",
                        "supportedOsVersions",
                        "state",
                        "type",
                        "owner",
                        "description",
                        "changeDescription",
                        "dateCreated",
                        "tags",
                    ],
                );
                Value::Object(summary)
            })
            .collect();
        let (page, next) = paginate(builds, params)?;
        Ok(json!({"componentSummaryList": page, "nextToken": next}))
    }

    // ---- recipes ----------------------------------------------------------------------------

    fn create_image_recipe(
        &mut self,
        context: &Context,
        params: &Value,
    ) -> Result<Value, ApiError> {
        let name = required(params, "name")?;
        validate_name(name)?;
        let requested_version = required(params, "semanticVersion")?;
        let parent_image = required(params, "parentImage")?;
        let components = params
            .get("components")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        if components.is_empty() {
            return Err(invalid("An image recipe needs at least one component."));
        }
        if components.len() > RECIPE_COMPONENT_LIMIT {
            return Err(ApiError::new(
                StatusCode::PAYMENT_REQUIRED,
                "ServiceQuotaExceededException",
                format!(
                    "A recipe may have at most {RECIPE_COMPONENT_LIMIT} components; {} were given.",
                    components.len()
                ),
            ));
        }
        let mut platform = None;
        for component in &components {
            let arn = component
                .get("componentArn")
                .and_then(Value::as_str)
                .unwrap_or_default();
            // Creating a recipe checks the component exists; the read lag covers the reads
            // prepull makes and the resolution at build start, not this check.
            let resolved = self
                .resolve_component(arn, DateTime::<Utc>::MAX_UTC)
                .map_err(|e| {
                    invalid(format!(
                        "The component '{arn}' cannot be used: {}",
                        e.message
                    ))
                })?;
            platform = platform.or_else(|| resolved["platform"].as_str().map(str::to_owned));
        }
        let version = self.assign_recipe_version(name, requested_version)?;
        if self
            .recipes
            .iter()
            .any(|r| r["name"] == name && r["version"] == version.as_str())
        {
            return Err(ApiError::bad_request(
                "ResourceAlreadyExistsException",
                format!(
                    "The image recipe '{name}' version {version} already exists; versions are immutable."
                ),
            ));
        }
        let arn = context.arn(
            &context.account_id,
            &format!("image-recipe/{}/{version}", name.to_lowercase()),
        );
        let mut recipe = Map::new();
        recipe.insert("arn".into(), json!(arn));
        recipe.insert("type".into(), json!("AMI"));
        recipe.insert("name".into(), json!(name));
        recipe.insert(
            "platform".into(),
            json!(platform.unwrap_or_else(|| "Windows".to_owned())),
        );
        recipe.insert("owner".into(), json!(context.account_id));
        recipe.insert("version".into(), json!(version));
        recipe.insert("components".into(), Value::Array(components));
        recipe.insert("parentImage".into(), json!(parent_image));
        recipe.insert("dateCreated".into(), json!(timestamp(context.now)));
        copy_fields(
            params,
            &mut recipe,
            &[
                "description",
                "blockDeviceMappings",
                "tags",
                "workingDirectory",
                "additionalInstanceConfiguration",
                "amiTags",
            ],
        );
        self.recipes.push(Value::Object(recipe));
        Ok(json!({"imageRecipeArn": arn}))
    }

    /// A recipe version may carry one `x`, which the service replaces with the next free number.
    fn assign_recipe_version(&self, name: &str, requested: &str) -> Result<String, ApiError> {
        let bad = || {
            ApiError::bad_request(
                "InvalidVersionNumberException",
                format!(
                    "The semantic version '{requested}' is not valid: use <major>.<minor>.<patch>, with at most one 'x'."
                ),
            )
        };
        if !is_version_pattern(requested) {
            return Err(bad());
        }
        let parts: Vec<&str> = requested.split('.').collect();
        let wildcard_positions: Vec<usize> = (0..3).filter(|i| parts[*i] == "x").collect();
        match wildcard_positions.as_slice() {
            [] => Ok(requested.to_owned()),
            [position] => {
                let next = self
                    .recipes
                    .iter()
                    .filter(|r| r["name"] == name)
                    .filter_map(|r| r["version"].as_str())
                    .filter(|v| version_matches(requested, v))
                    .filter_map(|v| v.split('.').nth(*position)?.parse::<u64>().ok())
                    .max()
                    .map_or(0, |n| n + 1);
                let mut assigned: Vec<String> = parts.iter().map(|p| (*p).to_owned()).collect();
                assigned[*position] = next.to_string();
                Ok(assigned.join("."))
            }
            _ => Err(bad()),
        }
    }

    fn resolve_recipe(&self, arn: &str) -> Result<&Value, ApiError> {
        let parsed = parse_arn(arn)
            .filter(|a| a.kind == "image-recipe" && a.build.is_none())
            .ok_or_else(|| invalid(format!("The ARN '{arn}' is not a valid image recipe ARN.")))?;
        let pattern = parsed.version.clone().unwrap_or_else(|| "x.x.x".to_owned());
        if !is_version_selector(&pattern) {
            return Err(invalid(format!(
                "The ARN '{arn}' is not a valid image recipe ARN."
            )));
        }
        self.recipes
            .iter()
            .filter(|r| {
                r["name"]
                    .as_str()
                    .is_some_and(|n| n.to_lowercase() == parsed.name)
            })
            .filter(|r| owned_by(r, &parsed.account))
            .filter(|r| {
                r["version"]
                    .as_str()
                    .is_some_and(|v| version_matches(&pattern, v))
            })
            .max_by_key(|r| version_key(r))
            .ok_or_else(|| not_found("image recipe", arn))
    }

    fn get_image_recipe(&self, params: &Value) -> Result<Value, ApiError> {
        let arn = required(params, "imageRecipeArn")?;
        Ok(json!({"imageRecipe": as_got(self.resolve_recipe(arn)?)}))
    }

    // ---- infrastructure and distribution ----------------------------------------------------

    fn create_infrastructure_configuration(
        &mut self,
        context: &Context,
        params: &Value,
    ) -> Result<Value, ApiError> {
        let name = required(params, "name")?;
        validate_name(name)?;
        required(params, "instanceProfileName")?;
        let arn = context.arn(
            &context.account_id,
            &format!("infrastructure-configuration/{}", name.to_lowercase()),
        );
        if self
            .infrastructure_configurations
            .iter()
            .any(|c| c["arn"] == arn.as_str())
        {
            return Err(ApiError::bad_request(
                "ResourceAlreadyExistsException",
                format!("The infrastructure configuration '{arn}' already exists."),
            ));
        }
        let mut configuration = params_without_request_fields(params);
        configuration.insert("arn".into(), json!(arn));
        configuration.insert("dateCreated".into(), json!(timestamp(context.now)));
        configuration
            .entry("terminateInstanceOnFailure")
            .or_insert(json!(true));
        self.infrastructure_configurations
            .push(Value::Object(configuration));
        Ok(json!({"infrastructureConfigurationArn": arn}))
    }

    fn create_distribution_configuration(
        &mut self,
        context: &Context,
        params: &Value,
    ) -> Result<Value, ApiError> {
        let name = required(params, "name")?;
        validate_name(name)?;
        let distributions = params
            .get("distributions")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        if distributions.is_empty() {
            return Err(invalid(
                "The value supplied for parameter 'distributions' is not valid. It needs at least one region.",
            ));
        }
        if distributions.iter().any(|d| {
            d.get("region")
                .and_then(Value::as_str)
                .is_none_or(str::is_empty)
        }) {
            return Err(invalid("Every distribution needs a 'region'."));
        }
        let arn = context.arn(
            &context.account_id,
            &format!("distribution-configuration/{}", name.to_lowercase()),
        );
        if self
            .distribution_configurations
            .iter()
            .any(|c| c["arn"] == arn.as_str())
        {
            return Err(ApiError::bad_request(
                "ResourceAlreadyExistsException",
                format!("The distribution configuration '{arn}' already exists."),
            ));
        }
        let mut configuration = params_without_request_fields(params);
        configuration.insert("arn".into(), json!(arn));
        configuration.insert("dateCreated".into(), json!(timestamp(context.now)));
        self.distribution_configurations
            .push(Value::Object(configuration));
        Ok(json!({"distributionConfigurationArn": arn}))
    }

    fn find_by_arn<'a>(
        collection: &'a [Value],
        arn: &str,
        what: &str,
    ) -> Result<&'a Value, ApiError> {
        collection
            .iter()
            .find(|c| c["arn"] == arn)
            .ok_or_else(|| not_found(what, arn))
    }

    // ---- pipelines --------------------------------------------------------------------------

    /// Checks the references of a pipeline definition and returns the recipe's platform.
    fn validate_pipeline_references(&self, params: &Value) -> Result<String, ApiError> {
        if str_field(params, "containerRecipeArn").is_some() {
            return Err(invalid(
                "Container recipes are not emulated; use 'imageRecipeArn'.",
            ));
        }
        let recipe_arn = str_field(params, "imageRecipeArn")
            .ok_or_else(|| invalid("The value supplied for parameter 'imageRecipeArn' is not valid. An image pipeline needs a recipe."))?;
        let recipe = self.resolve_recipe(recipe_arn)?;
        let infrastructure = required(params, "infrastructureConfigurationArn")?;
        Self::find_by_arn(
            &self.infrastructure_configurations,
            infrastructure,
            "infrastructure configuration",
        )?;
        if let Some(distribution) = str_field(params, "distributionConfigurationArn") {
            Self::find_by_arn(
                &self.distribution_configurations,
                distribution,
                "distribution configuration",
            )?;
        }
        if let Some(status) =
            str_field(params, "status").filter(|s| !["ENABLED", "DISABLED"].contains(s))
        {
            return Err(invalid(format!(
                "The pipeline status '{status}' is not valid."
            )));
        }
        Ok(recipe["platform"].as_str().unwrap_or("Windows").to_owned())
    }

    fn create_image_pipeline(
        &mut self,
        context: &Context,
        params: &Value,
    ) -> Result<Value, ApiError> {
        let name = required(params, "name")?;
        validate_name(name)?;
        required(params, "infrastructureConfigurationArn")?;
        let platform = self.validate_pipeline_references(params)?;
        let arn = context.arn(
            &context.account_id,
            &format!("image-pipeline/{}", name.to_lowercase()),
        );
        if self.pipelines.iter().any(|p| p["arn"] == arn.as_str()) {
            return Err(ApiError::bad_request(
                "ResourceAlreadyExistsException",
                format!("The image pipeline '{arn}' already exists."),
            ));
        }
        let mut pipeline = Map::new();
        pipeline.insert("arn".into(), json!(arn));
        pipeline.insert("name".into(), json!(name));
        pipeline.insert("platform".into(), json!(platform));
        pipeline.insert("dateCreated".into(), json!(timestamp(context.now)));
        copy_fields(params, &mut pipeline, &["tags"]);
        apply_pipeline_definition(&mut pipeline, params);
        self.pipelines.push(Value::Object(pipeline));
        Ok(json!({"imagePipelineArn": arn}))
    }

    fn get_image_pipeline(&self, params: &Value) -> Result<Value, ApiError> {
        let arn = required(params, "imagePipelineArn")?;
        Ok(
            json!({"imagePipeline": as_got(Self::find_by_arn(&self.pipelines, arn, "image pipeline")?)}),
        )
    }

    /// UpdateImagePipeline replaces the whole definition: a field left out is cleared.
    fn update_image_pipeline(
        &mut self,
        context: &Context,
        params: &Value,
    ) -> Result<Value, ApiError> {
        let arn = required(params, "imagePipelineArn")?.to_owned();
        required(params, "infrastructureConfigurationArn")?;
        let platform = self.validate_pipeline_references(params)?;
        let pipeline = self
            .pipelines
            .iter_mut()
            .find(|p| p["arn"] == arn.as_str())
            .ok_or_else(|| not_found("image pipeline", &arn))?;
        let Value::Object(pipeline) = pipeline else {
            return Err(ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "ServiceException",
                "corrupt pipeline",
            ));
        };
        let mut replaced = Map::new();
        copy_fields(
            &Value::Object(pipeline.clone()),
            &mut replaced,
            &[
                "arn",
                "name",
                "dateCreated",
                "dateLastRun",
                "lastRunStatus",
                "tags",
            ],
        );
        replaced.insert("platform".into(), json!(platform));
        replaced.insert("dateUpdated".into(), json!(timestamp(context.now)));
        apply_pipeline_definition(&mut replaced, params);
        *pipeline = replaced;
        Ok(json!({"imagePipelineArn": arn}))
    }

    fn start_image_pipeline_execution(
        &mut self,
        context: &Context,
        params: &Value,
    ) -> Result<Value, ApiError> {
        let pipeline_arn = required(params, "imagePipelineArn")?;
        let pipeline = Self::find_by_arn(&self.pipelines, pipeline_arn, "image pipeline")?.clone();
        let recipe_arn = pipeline["imageRecipeArn"].as_str().unwrap_or_default();
        let mut recipe = self.resolve_recipe(recipe_arn)?.clone();
        // Each component is resolved now, as the build starts: a wildcard takes the newest
        // build visible at this moment. The image keeps the recipe it was built from with the
        // builds it resolved ("the image recipe that Image Builder used to create the image",
        // the model's description of Image.imageRecipe), so what a build really cached can be
        // read back with GetImage.
        let mut resolved = Vec::new();
        for component in recipe["components"].as_array().into_iter().flatten() {
            let arn = component["componentArn"].as_str().unwrap_or_default();
            let build = self.resolve_component(arn, context.now)?;
            let mut used = component.clone();
            used["componentArn"] = build["arn"].clone();
            resolved.push(used);
        }
        recipe["components"] = Value::Array(resolved);
        let infrastructure = Self::find_by_arn(
            &self.infrastructure_configurations,
            pipeline["infrastructureConfigurationArn"]
                .as_str()
                .unwrap_or_default(),
            "infrastructure configuration",
        )?
        .clone();
        let distribution = match pipeline["distributionConfigurationArn"].as_str() {
            Some(arn) => Some(
                Self::find_by_arn(
                    &self.distribution_configurations,
                    arn,
                    "distribution configuration",
                )?
                .clone(),
            ),
            None => None,
        };
        let (recipe_name, recipe_version) = (
            recipe["name"].as_str().unwrap_or_default().to_lowercase(),
            recipe["version"].as_str().unwrap_or_default().to_owned(),
        );
        let build = 1 + self
            .images
            .iter()
            .filter(|i| {
                i["name"]
                    .as_str()
                    .is_some_and(|n| n.to_lowercase() == recipe_name)
                    && i["version"] == recipe_version.as_str()
            })
            .count();
        let arn = context.arn(
            &context.account_id,
            &format!("image/{recipe_name}/{recipe_version}/{build}"),
        );
        let mut image = Map::new();
        image.insert("arn".into(), json!(arn));
        image.insert("type".into(), json!("AMI"));
        image.insert("name".into(), recipe["name"].clone());
        image.insert("version".into(), json!(recipe_version));
        image.insert("platform".into(), recipe["platform"].clone());
        image.insert(
            "osVersion".into(),
            json!(if recipe["platform"] == "Windows" {
                "Microsoft Windows Server 2022"
            } else {
                "Amazon Linux 2023"
            }),
        );
        image.insert("state".into(), json!({"status": "BUILDING"}));
        image.insert("imageRecipe".into(), recipe);
        image.insert("sourcePipelineName".into(), pipeline["name"].clone());
        image.insert("sourcePipelineArn".into(), pipeline["arn"].clone());
        image.insert("infrastructureConfiguration".into(), infrastructure);
        if let Some(distribution) = distribution {
            image.insert("distributionConfiguration".into(), distribution);
        }
        copy_fields(
            &pipeline,
            &mut image,
            &[
                "enhancedImageMetadataEnabled",
                "imageTestsConfiguration",
                "imageScanningConfiguration",
                "workflows",
                "executionRole",
                "loggingConfiguration",
            ],
        );
        image.insert("dateCreated".into(), json!(timestamp(context.now)));
        image.insert("outputResources".into(), json!({"amis": []}));
        image.insert("buildType".into(), json!("USER_INITIATED"));
        image.insert("imageSource".into(), json!("CUSTOM"));
        let mut tags = pipeline
            .get("imageTags")
            .cloned()
            .unwrap_or_else(|| json!({}));
        if let (Value::Object(tags), Some(Value::Object(extra))) = (&mut tags, params.get("tags")) {
            tags.extend(extra.clone());
        }
        image.insert("tags".into(), tags);
        self.images.push(Value::Object(image));
        self.emit_event(context, &arn, "PENDING", None);
        self.emit_event(context, &arn, "BUILDING", None);
        if let Some(p) = self.pipelines.iter_mut().find(|p| p["arn"] == pipeline_arn) {
            p["dateLastRun"] = json!(timestamp(context.now));
        }
        Ok(json!({"imageBuildVersionArn": arn}))
    }

    // ---- images -----------------------------------------------------------------------------

    fn image_index(&self, arn: &str) -> Result<usize, ApiError> {
        let parsed = parse_arn(arn)
            .filter(|a| a.kind == "image")
            .ok_or_else(|| invalid(format!("The ARN '{arn}' is not a valid image ARN.")))?;
        let version = parsed.version.clone().unwrap_or_else(|| "x.x.x".to_owned());
        self.images
            .iter()
            .enumerate()
            .filter(|(_, i)| {
                i["name"]
                    .as_str()
                    .is_some_and(|n| n.to_lowercase() == parsed.name)
            })
            .filter(|(_, i)| {
                i["version"]
                    .as_str()
                    .is_some_and(|v| version_matches(&version, v))
            })
            .filter(|(_, i)| {
                parsed.build.is_none() || version_key(i).1 == parsed.build.unwrap_or(0)
            })
            .max_by_key(|(_, i)| version_key(i))
            .map(|(index, _)| index)
            .ok_or_else(|| not_found("image", arn))
    }

    fn get_image(&self, params: &Value) -> Result<Value, ApiError> {
        let arn = required(params, "imageBuildVersionArn")?;
        Ok(json!({"image": as_got(&self.images[self.image_index(arn)?])}))
    }

    fn list_image_pipeline_images(
        &self,
        context: &Context,
        params: &Value,
    ) -> Result<Value, ApiError> {
        let pipeline_arn = required(params, "imagePipelineArn")?;
        Self::find_by_arn(&self.pipelines, pipeline_arn, "image pipeline")?;
        let filters = filters(params)?;
        let summaries: Vec<Value> = self
            .images
            .iter()
            .filter(|i| i["sourcePipelineArn"] == pipeline_arn && matches_filters(i, &filters))
            .filter(|i| visible(i, self.image_list_lag, context.now))
            .map(|i| {
                let mut summary = Map::new();
                copy_fields(
                    i,
                    &mut summary,
                    &[
                        "arn",
                        "name",
                        "type",
                        "version",
                        "platform",
                        "osVersion",
                        "state",
                        "dateCreated",
                        "outputResources",
                        "tags",
                        "buildType",
                        "imageSource",
                    ],
                );
                summary.insert("owner".into(), i["imageRecipe"]["owner"].clone());
                Value::Object(summary)
            })
            .collect();
        let (page, next) = paginate(summaries, params)?;
        Ok(json!({"imageSummaryList": page, "nextToken": next}))
    }

    fn cancel_image_creation(
        &mut self,
        context: &Context,
        params: &Value,
    ) -> Result<Value, ApiError> {
        let arn = required(params, "imageBuildVersionArn")?;
        let index = self.image_index(arn)?;
        let status = self.images[index]["state"]["status"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        if !is_running(&status) {
            return Err(ApiError::bad_request(
                "ResourceInUseException",
                format!("The image '{arn}' cannot be cancelled because it is in state {status}."),
            ));
        }
        let image_arn = self.images[index]["arn"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        self.images[index]["state"] =
            json!({"status": "CANCELLED", "reason": "Image creation was cancelled by a user."});
        self.emit_event(
            context,
            &image_arn,
            "CANCELLED",
            Some("Image creation was cancelled by a user."),
        );
        Ok(json!({"imageBuildVersionArn": image_arn}))
    }

    /// Moves a running image to a terminal state, as a real build would, and returns the
    /// EventBridge event AWS emits for that final transition. AVAILABLE creates one AMI in each
    /// distribution region.
    pub fn finish_image(
        &mut self,
        context: &Context,
        arn: &str,
        status: &str,
        reason: Option<&str>,
    ) -> Result<Value, ApiError> {
        let index = self.image_index(arn)?;
        let current = self.images[index]["state"]["status"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        if !is_running(&current) {
            return Err(ApiError::bad_request(
                "ResourceInUseException",
                format!("The image '{arn}' already finished with status {current}."),
            ));
        }
        let image_arn = self.images[index]["arn"]
            .as_str()
            .unwrap_or_default()
            .to_owned();
        match status {
            "AVAILABLE" => {
                for step in ["TESTING", "DISTRIBUTING", "INTEGRATING"] {
                    self.images[index]["state"] = json!({"status": step});
                    self.emit_event(context, &image_arn, step, None);
                }
                let image = &self.images[index];
                let distributions = image["distributionConfiguration"]["distributions"]
                    .as_array()
                    .cloned()
                    .unwrap_or_else(|| vec![json!({"region": context.region})]);
                // One AMI per region and account: with `targetAccountIds`, GetImage lists the
                // copy each target account gets, each with its `accountId` (Image.outputResources
                // in the API Reference); the other accounts' come first here, so a reader that
                // takes the first AMI of a region takes the wrong one.
                let targets: Vec<(Value, String)> = distributions
                    .iter()
                    .flat_map(|d| {
                        let others: Vec<String> =
                            d["amiDistributionConfiguration"]["targetAccountIds"]
                                .as_array()
                                .into_iter()
                                .flatten()
                                .filter_map(Value::as_str)
                                .filter(|a| *a != context.account_id)
                                .map(str::to_owned)
                                .collect();
                        others
                            .into_iter()
                            .chain(std::iter::once(context.account_id.clone()))
                            .map(|account| (d.clone(), account))
                            .collect::<Vec<_>>()
                    })
                    .collect();
                let amis: Vec<Value> = targets
                    .iter()
                    .map(|(d, account)| {
                        let region = d["region"].as_str().unwrap_or(&context.region);
                        let name_template = d["amiDistributionConfiguration"]["name"]
                            .as_str()
                            .unwrap_or("prepull {{imagebuilder:buildDate}}");
                        let name = name_template
                            .replace(
                                "{{imagebuilder:buildDate}}",
                                &context.now.format("%Y-%m-%dT%H-%M-%SZ").to_string(),
                            )
                            .replace(
                                "{{ imagebuilder:buildDate }}",
                                &context.now.format("%Y-%m-%dT%H-%M-%SZ").to_string(),
                            );
                        json!({
                            "region": region,
                            "image": ami_id(&image_arn, region, account),
                            "name": name,
                            "description": d["amiDistributionConfiguration"]["description"].clone(),
                            "state": {"status": "AVAILABLE"},
                            "accountId": account,
                        })
                    })
                    .collect();
                self.images[index]["outputResources"] = json!({"amis": amis});
                self.images[index]["state"] = json!({"status": "AVAILABLE"});
                Ok(self.emit_event(context, &image_arn, "AVAILABLE", None))
            }
            "FAILED" | "CANCELLED" => {
                let reason = reason.unwrap_or(if status == "FAILED" {
                    "Image build failed."
                } else {
                    "Image creation was cancelled by a user."
                });
                self.images[index]["state"] = json!({"status": status, "reason": reason});
                Ok(self.emit_event(context, &image_arn, status, Some(reason)))
            }
            other => Err(invalid(format!(
                "A build can be finished as AVAILABLE, FAILED or CANCELLED, not '{other}'."
            ))),
        }
    }

    /// Records the state change event AWS emits on every transition and returns it.
    fn emit_event(
        &mut self,
        context: &Context,
        image_arn: &str,
        status: &str,
        reason: Option<&str>,
    ) -> Value {
        let previous = self
            .events
            .iter()
            .rev()
            .find(|e| e["resources"][0] == image_arn)
            .map(|e| e["detail"]["state"]["status"].clone());
        let mut state = json!({"status": status});
        if let Some(reason) = reason {
            state["reason"] = json!(reason);
        }
        let mut detail = Map::new();
        if let Some(previous) = previous {
            detail.insert("previous-state".into(), json!({"status": previous}));
        }
        detail.insert("state".into(), state);
        let event = json!({
            "version": "0",
            "id": uuid::Uuid::new_v4().to_string(),
            "detail-type": "EC2 Image Builder Image State Change",
            "source": "aws.imagebuilder",
            "account": context.account_id,
            "time": context.now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            "region": context.region,
            "resources": [image_arn],
            "detail": detail,
        });
        self.events.push(event.clone());
        event
    }
}

fn owned_by(resource: &Value, account: &str) -> bool {
    if account == "aws" {
        resource["owner"] == "Amazon"
    } else {
        resource["owner"] == account
    }
}

fn version_arn_of(component: &Value) -> String {
    let arn = component["arn"].as_str().unwrap_or_default();
    match arn.rsplit_once('/') {
        Some((version_arn, build)) if build.chars().all(|c| c.is_ascii_digit()) => {
            version_arn.to_owned()
        }
        _ => arn.to_owned(),
    }
}

fn params_without_request_fields(params: &Value) -> Map<String, Value> {
    let mut map = params.as_object().cloned().unwrap_or_default();
    map.remove("clientToken");
    map.remove("dryRun");
    map
}

/// The fields an UpdateImagePipeline request defines; anything absent is cleared.
const PIPELINE_DEFINITION_FIELDS: [&str; 13] = [
    "description",
    "imageRecipeArn",
    "infrastructureConfigurationArn",
    "distributionConfigurationArn",
    "imageTestsConfiguration",
    "enhancedImageMetadataEnabled",
    "schedule",
    "status",
    "imageScanningConfiguration",
    "workflows",
    "loggingConfiguration",
    "executionRole",
    "imageTags",
];

fn apply_pipeline_definition(pipeline: &mut Map<String, Value>, params: &Value) {
    copy_fields(params, pipeline, &PIPELINE_DEFINITION_FIELDS);
    pipeline.entry("status").or_insert(json!("ENABLED"));
    pipeline
        .entry("enhancedImageMetadataEnabled")
        .or_insert(json!(true));
    pipeline
        .entry("imageTestsConfiguration")
        .or_insert(json!({"imageTestsEnabled": true, "timeoutMinutes": 720}));
}

type Filters = Vec<(String, Vec<String>)>;

fn filters(params: &Value) -> Result<Filters, ApiError> {
    let mut parsed = Vec::new();
    for filter in params
        .get("filters")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let name = filter
            .get("name")
            .and_then(Value::as_str)
            .ok_or_else(|| invalid("Every filter needs a 'name'."))?;
        if !["name", "platform", "type", "version", "supportedOsVersion"].contains(&name) {
            return Err(invalid(format!("The filter name '{name}' is not valid.")));
        }
        let values = filter
            .get("values")
            .and_then(Value::as_array)
            .map(|v| {
                v.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default();
        parsed.push((name.to_owned(), values));
    }
    Ok(parsed)
}

fn matches_filters(resource: &Value, filters: &Filters) -> bool {
    filters.iter().all(|(name, values)| {
        let field = if name == "supportedOsVersion" {
            "supportedOsVersions"
        } else {
            name.as_str()
        };
        match &resource[field] {
            Value::String(actual) => values.iter().any(|v| v == actual),
            Value::Array(actual) => actual
                .iter()
                .any(|a| values.iter().any(|v| a == v.as_str())),
            _ => false,
        }
    })
}

/// Image Builder refuses documents that are not YAML mappings with a `phases` list.
fn validate_document(data: &str) -> Result<(), ApiError> {
    super::awstoe::check_document(data)
        .map_err(|refusal| invalid(format!("The component document is not valid: {refusal}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arns_parse_into_their_parts() {
        let arn = parse_arn("arn:aws:imagebuilder:us-east-1:123456789012:component/cache/1.2.10/3")
            .unwrap();
        assert_eq!(
            (arn.kind.as_str(), arn.name.as_str()),
            ("component", "cache")
        );
        assert_eq!(
            (arn.version.as_deref(), arn.build),
            (Some("1.2.10"), Some(3))
        );
        assert!(parse_arn("arn:aws:s3:::bucket").is_none());
        assert!(parse_arn("arn:aws:imagebuilder:r:a:component/x/1.0.0/notanumber").is_none());
    }

    #[test]
    fn versions_compare_numerically_and_match_wildcards() {
        assert!(parse_version("1.0.10").unwrap() > parse_version("1.0.9").unwrap());
        assert!(parse_version("1.0").is_none() && parse_version("1.0.x").is_none());
        assert!(version_matches("x.x.x", "3.2.1") && version_matches("1.x.x", "1.9.0"));
        assert!(!version_matches("1.x.x", "2.0.0") && !version_matches("1.0.1", "1.0.10"));
    }
}
