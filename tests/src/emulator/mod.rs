//! The local AWS emulator: one HTTP server on loopback that answers Image Builder (restJson1)
//! and Auto Scaling (awsQuery) itself and passes SSM, ECR and EC2 calls through to moto.
//!
//! Because every call goes through it, one request log records what a handler did across all
//! four services, and faults can be injected into any operation. Control endpoints under
//! `/_bench/` let a test (or a person with curl) finish builds and refreshes, inject faults
//! and read the log; they are listed in docs/bench.md.

pub mod autoscaling;
pub mod awstoe;
pub mod ecr;
pub mod imagebuilder;
pub mod model;
pub mod wire;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use wire::ApiError;

/// Where the emulator lives and what it passes on.
#[derive(Debug, Clone)]
pub struct EmulatorConfig {
    pub account_id: String,
    pub region: String,
    /// The moto server SSM, ECR and EC2 calls are passed to. Without one they fail with 501.
    pub moto_url: Option<String>,
}

impl Default for EmulatorConfig {
    fn default() -> Self {
        Self {
            account_id: "123456789012".to_owned(),
            region: "us-east-1".to_owned(),
            moto_url: None,
        }
    }
}

/// The AWS services the emulator answers for, named by their SigV4 signing names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Service {
    Imagebuilder,
    Autoscaling,
    Ssm,
    Ecr,
    Ec2,
}

impl Service {
    pub fn signing_name(self) -> &'static str {
        match self {
            Service::Imagebuilder => "imagebuilder",
            Service::Autoscaling => "autoscaling",
            Service::Ssm => "ssm",
            Service::Ecr => "ecr",
            Service::Ec2 => "ec2",
        }
    }

    fn from_signing_name(name: &str) -> Option<Self> {
        [
            Service::Imagebuilder,
            Service::Autoscaling,
            Service::Ssm,
            Service::Ecr,
            Service::Ec2,
        ]
        .into_iter()
        .find(|s| s.signing_name() == name)
    }
}

/// One API call as the emulator saw it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct RecordedRequest {
    pub seq: u64,
    pub service: Service,
    pub operation: String,
    /// The request's parameters as JSON (awsQuery values stay strings).
    pub params: Value,
    pub status: u16,
    /// The error code returned, if the call failed.
    pub error_code: Option<String>,
    /// Set when the response came from an injected fault.
    pub injected: bool,
    /// The access key ID the request was signed with: in Lambda, each function's role has
    /// its own, so this tells which function made the call.
    #[serde(default)]
    pub caller: Option<String>,
    /// The answer delay the call waited ([`Emulator::set_answer_delay`]), in microseconds.
    #[serde(default)]
    pub answer_delay_us: u64,
    /// When the request arrived, in microseconds since the emulator started.
    #[serde(default)]
    pub received_us: u64,
    /// When its answer was ready, delay included, on the same clock: the spans of calls made
    /// side by side overlap, those made one after another do not.
    #[serde(default)]
    pub answered_us: u64,
}

impl RecordedRequest {
    /// Whether the operation can change anything: everything but reads.
    pub fn is_mutating(&self) -> bool {
        !["Get", "List", "Describe", "BatchGet", "BatchCheck"]
            .iter()
            .any(|p| self.operation.starts_with(p))
    }

    pub fn succeeded(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

/// What an injected fault does to a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FaultKind {
    /// The SDKs' throttling error: `ThrottlingException` (JSON services) or `Throttling`
    /// (Auto Scaling), which they retry with backoff.
    Throttle,
    /// Image Builder's own rate-limit error, `CallRateLimitExceededException` (HTTP 429).
    RateLimit,
    /// An internal error with HTTP 500.
    ServerError,
    /// `ServiceUnavailable` with HTTP 503.
    Unavailable,
    /// The call succeeds after `delay_ms`.
    Slow,
    /// The call is carried out, and its answer never comes: what a caller sees when Lambda
    /// stops its process mid-call (a timeout, a crash). [`Emulator::answer_lost`] says when.
    LoseAnswer,
}

/// Makes the next `count` calls of an operation fail or slow down.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Fault {
    /// Limits the fault to one service; any service when absent.
    #[serde(default)]
    pub service: Option<Service>,
    pub operation: String,
    pub kind: FaultKind,
    #[serde(default = "one")]
    pub count: u32,
    #[serde(default)]
    pub delay_ms: u64,
    /// Lets this many matching calls through first: the fault hits the next ones.
    #[serde(default)]
    pub skip: u32,
}

fn one() -> u32 {
    1
}

impl Fault {
    pub fn new(operation: &str, kind: FaultKind, count: u32) -> Self {
        Self {
            service: None,
            operation: operation.to_owned(),
            kind,
            count,
            delay_ms: 0,
            skip: 0,
        }
    }

    /// The same fault, after `skip` matching calls went through.
    pub fn after(self, skip: u32) -> Self {
        Self { skip, ..self }
    }

    pub fn slow(operation: &str, delay: Duration, count: u32) -> Self {
        Self {
            delay_ms: delay.as_millis() as u64,
            ..Self::new(operation, FaultKind::Slow, count)
        }
    }

    fn error(&self, service: Service) -> ApiError {
        let json_protocol = !matches!(service, Service::Autoscaling | Service::Ec2);
        match self.kind {
            FaultKind::Throttle if json_protocol => ApiError::new(
                StatusCode::BAD_REQUEST,
                "ThrottlingException",
                "Rate exceeded",
            ),
            FaultKind::Throttle if service == Service::Ec2 => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "RequestLimitExceeded",
                "Request limit exceeded.",
            ),
            FaultKind::Throttle => {
                ApiError::new(StatusCode::BAD_REQUEST, "Throttling", "Rate exceeded")
            }
            FaultKind::RateLimit => ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "CallRateLimitExceededException",
                "You have exceeded the permitted request rate for the specific operation.",
            ),
            FaultKind::ServerError if service == Service::Imagebuilder => ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "ServiceException",
                "An internal error occurred.",
            ),
            FaultKind::ServerError if json_protocol => ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "InternalServerError",
                "An internal error occurred.",
            ),
            FaultKind::ServerError => ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "InternalFailure",
                "An internal error occurred.",
            ),
            FaultKind::Unavailable if service == Service::Imagebuilder => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "ServiceUnavailableException",
                "The service is unavailable.",
            ),
            FaultKind::Unavailable => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "ServiceUnavailable",
                "The service is unavailable.",
            ),
            FaultKind::Slow | FaultKind::LoseAnswer => ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "InternalFailure",
                "slow and lost answers are not errors",
            ),
        }
    }
}

#[derive(Debug)]
struct ServiceState {
    imagebuilder: imagebuilder::ImageBuilder,
    autoscaling: autoscaling::AutoScaling,
}

#[derive(Debug)]
struct Inner {
    config: EmulatorConfig,
    services: Mutex<ServiceState>,
    log: Mutex<Vec<RecordedRequest>>,
    /// Every request since the last reset: `clear_requests` leaves it.
    history: Mutex<Vec<RecordedRequest>>,
    faults: Mutex<Vec<Fault>>,
    /// A fixed time for the emulated services, when a test travels in time.
    clock: Mutex<Option<chrono::DateTime<chrono::Utc>>>,
    http: reqwest::Client,
    models: Arc<Models>,
    /// The wall-clock time during which at least one request was being answered (moto's share
    /// included), and the requests in flight with the moment the first of them arrived.
    busy: Mutex<Busy>,
    /// Told each time a [`FaultKind::LoseAnswer`] call has been carried out.
    answer_lost: tokio::sync::Notify,
    /// Added to every AWS answer (see [`Emulator::set_answer_delay`]).
    answer_delay: Mutex<Duration>,
    /// The origin of [`RecordedRequest::received_us`] and [`RecordedRequest::answered_us`].
    started: Instant,
}

/// The service models every request is checked against (see [`model`]).
#[derive(Debug)]
struct Models {
    imagebuilder: model::ServiceModel,
    autoscaling: model::ServiceModel,
    ec2: model::ServiceModel,
    ecr: model::ServiceModel,
}

/// Loaded once per process: every emulator checks against the same models.
fn models() -> std::io::Result<Arc<Models>> {
    static MODELS: std::sync::OnceLock<Result<Arc<Models>, String>> = std::sync::OnceLock::new();
    MODELS
        .get_or_init(|| {
            let load = || -> anyhow::Result<Models> {
                let data = model::botocore_data(&crate::moto::workspace_root())?;
                Ok(Models {
                    imagebuilder: model::ServiceModel::load(&data, "imagebuilder")?,
                    autoscaling: model::ServiceModel::load(&data, "autoscaling")?,
                    ec2: model::ServiceModel::load(&data, "ec2")?,
                    ecr: model::ServiceModel::load(&data, "ecr")?,
                })
            };
            load().map(Arc::new).map_err(|e| format!("{e:#}"))
        })
        .clone()
        .map_err(std::io::Error::other)
}

impl Models {
    /// Checks a request against its service's model: every member of the services emulated
    /// here and of ECR (moto answers ECR, and takes more than the 100 image IDs per call ECR
    /// does), and EC2's parameter names (moto answers EC2, and accepts names EC2 refuses);
    /// `None` for SSM, which moto checks.
    fn violation(&self, service: Service, operation: &str, params: &Value) -> Option<ApiError> {
        let (model, wire, fallback) = match service {
            Service::Imagebuilder => (&self.imagebuilder, model::Wire::Json, "ClientException"),
            Service::Autoscaling => (&self.autoscaling, model::Wire::Query, "ValidationError"),
            Service::Ecr => (&self.ecr, model::Wire::Json, "InvalidParameterException"),
            Service::Ec2 if self.ec2.has_operation(operation) => {
                return self
                    .ec2
                    .check_ec2_query(operation, params)
                    .err()
                    .map(|(code, message)| ApiError::bad_request(code, message));
            }
            _ => return None,
        };
        if !model.has_operation(operation) {
            return None;
        }
        model
            .validate(operation, params, wire)
            .err()
            .map(|violation| {
                ApiError::bad_request(
                    &model.validation_error_code(operation, &violation, fallback),
                    violation.to_string(),
                )
            })
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panicking test must not wedge every later call; the state itself stays consistent
    // because each operation mutates it only after validating.
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Inner {
    fn now(&self) -> chrono::DateTime<chrono::Utc> {
        lock(&self.clock).unwrap_or_else(chrono::Utc::now)
    }

    fn imagebuilder_context(&self) -> imagebuilder::Context {
        imagebuilder::Context {
            account_id: self.config.account_id.clone(),
            region: self.config.region.clone(),
            now: self.now(),
        }
    }

    fn autoscaling_context(&self) -> autoscaling::Context {
        autoscaling::Context {
            account_id: self.config.account_id.clone(),
            region: self.config.region.clone(),
            now: self.now(),
        }
    }

    fn fresh_services(&self) -> ServiceState {
        ServiceState {
            imagebuilder: imagebuilder::ImageBuilder::new(&self.imagebuilder_context()),
            autoscaling: autoscaling::AutoScaling::default(),
        }
    }

    fn take_fault(&self, service: Service, operation: &str) -> Option<Fault> {
        let mut faults = lock(&self.faults);
        let position = faults.iter().position(|f| {
            f.operation == operation && f.count > 0 && f.service.is_none_or(|s| s == service)
        })?;
        if faults[position].skip > 0 {
            faults[position].skip -= 1;
            return None;
        }
        let fault = faults[position].clone();
        faults[position].count -= 1;
        if faults[position].count == 0 {
            faults.remove(position);
        }
        Some(fault)
    }

    fn record(
        &self,
        service: Service,
        operation: &str,
        params: Value,
        status: StatusCode,
        error_code: Option<String>,
        injected: bool,
    ) {
        let arrival = ARRIVAL.try_with(Clone::clone).ok();
        let since_start = |at: Instant| micros(at.saturating_duration_since(self.started));
        let answered_us = since_start(Instant::now());
        let mut log = lock(&self.log);
        let seq = log.len() as u64 + 1;
        log.push(RecordedRequest {
            seq,
            service,
            operation: operation.to_owned(),
            params,
            status: status.as_u16(),
            error_code,
            injected,
            caller: arrival.as_ref().and_then(|a| a.caller.clone()),
            answer_delay_us: arrival.as_ref().map_or(0, |a| micros(a.answer_delay)),
            received_us: arrival
                .as_ref()
                .map_or(answered_us, |a| since_start(a.received)),
            answered_us,
        });
        if let Some(request) = log.last() {
            lock(&self.history).push(request.clone());
        }
    }
}

/// A running emulator. Dropping it stops the server.
#[derive(Debug)]
pub struct Emulator {
    inner: Arc<Inner>,
    address: SocketAddr,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<()>>,
}

impl Emulator {
    /// Starts on a free loopback port.
    pub async fn start(config: EmulatorConfig) -> std::io::Result<Self> {
        Self::start_on(SocketAddr::from(([127, 0, 0, 1], 0)), config).await
    }

    pub async fn start_on(address: SocketAddr, config: EmulatorConfig) -> std::io::Result<Self> {
        let listener = TcpListener::bind(address).await?;
        let address = listener.local_addr()?;
        let http = reqwest::Client::builder()
            .build()
            .map_err(std::io::Error::other)?;
        let mut inner = Inner {
            config,
            services: Mutex::new(ServiceState {
                imagebuilder: Default::default(),
                autoscaling: Default::default(),
            }),
            log: Mutex::new(Vec::new()),
            history: Mutex::new(Vec::new()),
            faults: Mutex::new(Vec::new()),
            clock: Mutex::new(None),
            http,
            models: models()?,
            busy: Mutex::new(Busy::default()),
            answer_lost: tokio::sync::Notify::new(),
            answer_delay: Mutex::new(Duration::ZERO),
            started: Instant::now(),
        };
        inner.services = Mutex::new(inner.fresh_services());
        let inner = Arc::new(inner);
        let router = Router::new()
            .fallback(timed_handle)
            .with_state(inner.clone());
        let (shutdown, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let server = axum::serve(listener, router).with_graceful_shutdown(async {
                let _ = stopped.await;
            });
            if let Err(error) = server.await {
                tracing::error!(%error, "emulator server stopped");
            }
        });
        Ok(Self {
            inner,
            address,
            shutdown: Some(shutdown),
            task: Some(task),
        })
    }

    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// The endpoint URL every SDK client of the bench points at.
    pub fn url(&self) -> String {
        format!("http://{}", self.address)
    }

    pub fn config(&self) -> &EmulatorConfig {
        &self.inner.config
    }

    /// Every call so far, in arrival order.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        lock(&self.inner.log).clone()
    }

    /// The calls of one operation.
    pub fn requests_of(&self, operation: &str) -> Vec<RecordedRequest> {
        self.requests()
            .into_iter()
            .filter(|r| r.operation == operation)
            .collect()
    }

    /// The calls that could have changed something, failed ones included.
    pub fn mutating_requests(&self) -> Vec<RecordedRequest> {
        self.requests()
            .into_iter()
            .filter(RecordedRequest::is_mutating)
            .collect()
    }

    /// The operation names of [`Emulator::mutating_requests`], in order.
    pub fn mutating_operations(&self) -> Vec<String> {
        self.mutating_requests()
            .into_iter()
            .map(|r| r.operation)
            .collect()
    }

    /// The wall-clock time the bench has spent answering requests so far (its own work and
    /// moto's; concurrent requests count once): what a caller spent waiting on "AWS".
    pub fn busy(&self) -> Duration {
        lock(&self.inner.busy).total
    }

    /// Every request since the emulator started or was reset, whatever `clear_requests` cleared.
    pub fn history(&self) -> Vec<RecordedRequest> {
        lock(&self.inner.history).clone()
    }

    pub fn clear_requests(&self) {
        lock(&self.inner.log).clear();
    }

    pub fn inject(&self, fault: Fault) {
        lock(&self.inner.faults).push(fault);
    }

    /// Waits until a [`FaultKind::LoseAnswer`] call has been carried out (at once if one was
    /// since the last wait).
    pub async fn answer_lost(&self) {
        self.inner.answer_lost.notified().await;
    }

    /// Drops the faults not yet used up: the services recover.
    pub fn clear_faults(&self) {
        lock(&self.inner.faults).clear();
    }

    /// Forgets every resource, request and fault of the emulated services.
    pub fn reset(&self) {
        reset_emulator(&self.inner);
    }

    /// Ends a running build (AVAILABLE, FAILED or CANCELLED) and returns the EventBridge event.
    pub fn finish_image(
        &self,
        image_arn: &str,
        status: &str,
        reason: Option<&str>,
    ) -> Result<Value, ApiError> {
        let context = self.inner.imagebuilder_context();
        lock(&self.inner.services)
            .imagebuilder
            .finish_image(&context, image_arn, status, reason)
    }

    /// Every "EC2 Image Builder Image State Change" event emitted so far.
    pub fn image_events(&self) -> Vec<Value> {
        lock(&self.inner.services).imagebuilder.events().to_vec()
    }

    /// Ends a group's running refresh as `Successful` or `Failed`.
    pub fn finish_refresh(
        &self,
        group: &str,
        status: &str,
        reason: Option<&str>,
    ) -> Result<Value, ApiError> {
        let context = self.inner.autoscaling_context();
        lock(&self.inner.services)
            .autoscaling
            .finish_refresh(&context, group, status, reason)
    }

    /// Fixes the emulated services' clock (resource dates, refresh times), or with `None`
    /// lets it follow real time again. moto keeps real time.
    pub fn set_clock(&self, now: Option<chrono::DateTime<chrono::Utc>>) {
        *lock(&self.inner.clock) = now;
    }

    /// Hides the newest `builds` component builds from ListComponents, as its eventual
    /// consistency would.
    pub fn set_component_list_lag(&self, builds: usize) {
        lock(&self.inner.services).imagebuilder.list_lag = builds;
    }

    /// How long a cancelled refresh stays `Cancelling`.
    pub fn set_refresh_cancel_delay(&self, delay: Duration) {
        lock(&self.inner.services).autoscaling.cancel_delay = delay;
    }

    /// How long a new component build stays invisible to ListComponentBuildVersions,
    /// GetComponent and a build's `x.x.x` resolution (none unless set).
    pub fn set_component_read_lag(&self, lag: Duration) {
        lock(&self.inner.services).imagebuilder.read_lag = lag;
    }

    /// How long a new image stays out of ListImagePipelineImages (none unless set).
    pub fn set_image_list_lag(&self, lag: Duration) {
        lock(&self.inner.services).imagebuilder.image_list_lag = lag;
    }

    /// What a second writer of a component version gets (build `/2` unless set).
    pub fn set_component_second_writer(&self, answer: imagebuilder::SecondWriter) {
        lock(&self.inner.services).imagebuilder.second_writer = answer;
    }

    /// Deregisters an AMI the emulated Image Builder distributed: EC2 no longer knows it, so
    /// Parameter Store's `aws:ec2:image` validation drops a write of it.
    pub fn deregister_ami(&self, ami: &str) {
        lock(&self.inner.services).imagebuilder.deregister_ami(ami);
    }

    /// Registers an AMI in moto's EC2 in `region` and returns its ID: a value Parameter
    /// Store's `aws:ec2:image` validation accepts.
    pub async fn register_ami(&self, region: &str, name: &str) -> anyhow::Result<String> {
        let moto_url = self
            .inner
            .config
            .moto_url
            .as_deref()
            .ok_or_else(|| anyhow::anyhow!("registering an AMI needs moto"))?;
        let body = self
            .inner
            .http
            .post(format!("{moto_url}/"))
            .header(header::AUTHORIZATION, moto_authorization("ec2", region))
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(format!(
                "Action=RegisterImage&Version=2016-11-15&Name={name}&RootDeviceName=%2Fdev%2Fsda1&Architecture=x86_64"
            ))
            .send()
            .await?
            .error_for_status()?
            .text()
            .await?;
        body.split("<imageId>")
            .nth(1)
            .and_then(|rest| rest.split("</imageId>").next())
            .map(str::to_owned)
            .ok_or_else(|| {
                anyhow::anyhow!("moto's RegisterImage answered without an imageId: {body}")
            })
    }

    /// How long a new refresh stays `Pending` (1 s unless set).
    pub fn set_refresh_pending_delay(&self, delay: Duration) {
        lock(&self.inner.services).autoscaling.pending_delay = delay;
    }

    /// A delay added to every answer of every service, moto's included (none unless set), so
    /// that a call costs a round trip as on AWS, where it takes tens of milliseconds against
    /// about one here. Each call waits on its own: calls made side by side overlap. Control
    /// endpoints are not delayed, and `reset` keeps it: it is the network's, not the account's.
    pub fn set_answer_delay(&self, delay: Duration) {
        *lock(&self.inner.answer_delay) = delay;
    }

    pub fn answer_delay(&self) -> Duration {
        *lock(&self.inner.answer_delay)
    }

    /// Stops the server and waits for it.
    pub async fn stop(mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
    }
}

fn reset_emulator(inner: &Inner) {
    *lock(&inner.clock) = None;
    let fresh = inner.fresh_services();
    *lock(&inner.services) = fresh;
    lock(&inner.log).clear();
    lock(&inner.history).clear();
    lock(&inner.faults).clear();
}

/// Which service a request is for: the SigV4 credential scope names it. Unsigned requests are
/// recognised by their shape instead.
fn identify_service(
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    form: Option<&[(String, String)]>,
) -> Option<Service> {
    let signed = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|auth| auth.split("Credential=").nth(1))
        .and_then(|credential| credential.split('/').nth(3))
        .and_then(Service::from_signing_name);
    if signed.is_some() {
        return signed;
    }
    if let Some(target) = headers.get("x-amz-target").and_then(|v| v.to_str().ok()) {
        if target.starts_with("AmazonSSM.") {
            return Some(Service::Ssm);
        }
        if target.starts_with("AmazonEC2ContainerRegistry") {
            return Some(Service::Ecr);
        }
    }
    if uri.path() != "/" {
        return Some(Service::Imagebuilder);
    }
    let version = form?
        .iter()
        .find(|(k, _)| k == "Version")
        .map(|(_, v)| v.as_str());
    match (method, version) {
        (&Method::POST, Some("2011-01-01")) => Some(Service::Autoscaling),
        (&Method::POST, Some(_)) => Some(Service::Ec2),
        _ => None,
    }
}

fn is_form(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"))
}

/// What the request log needs to know of the request being answered.
#[derive(Debug, Clone)]
struct Arrival {
    /// The access key ID (see [`RecordedRequest::caller`]).
    caller: Option<String>,
    received: Instant,
    answer_delay: Duration,
}

tokio::task_local! {
    static ARRIVAL: Arrival;
}

fn micros(duration: Duration) -> u64 {
    u64::try_from(duration.as_micros()).unwrap_or(u64::MAX)
}

/// The access key ID in a SigV4 `Authorization` header's credential scope.
fn access_key(headers: &HeaderMap) -> Option<String> {
    let authorization = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let credential = authorization.split("Credential=").nth(1)?;
    Some(credential.split('/').next()?.to_owned())
}

/// Wall-clock time with at least one request in flight: concurrent requests count once.
#[derive(Debug, Default)]
struct Busy {
    total: Duration,
    in_flight: usize,
    since: Option<Instant>,
}

/// [`handle`], with its time added to [`Emulator::busy`].
async fn timed_handle(
    State(inner): State<Arc<Inner>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    {
        let mut busy = lock(&inner.busy);
        if busy.in_flight == 0 {
            busy.since = Some(Instant::now());
        }
        busy.in_flight += 1;
    }
    let answer_delay = if uri.path().starts_with("/_bench/") {
        Duration::ZERO
    } else {
        *lock(&inner.answer_delay)
    };
    let arrival = Arrival {
        caller: access_key(&headers),
        received: Instant::now(),
        answer_delay,
    };
    let response = ARRIVAL
        .scope(arrival, async {
            // Slept before the call is carried out, so calls made side by side are still
            // carried out in the order they arrived; a sleep, not a blocking wait, so that
            // they wait side by side as they would on AWS.
            if !answer_delay.is_zero() {
                tokio::time::sleep(answer_delay).await;
            }
            handle(State(inner.clone()), method, uri, headers, body).await
        })
        .await;
    let mut busy = lock(&inner.busy);
    busy.in_flight = busy.in_flight.saturating_sub(1);
    if busy.in_flight == 0
        && let Some(since) = busy.since.take()
    {
        busy.total += since.elapsed();
    }
    response
}

async fn handle(
    State(inner): State<Arc<Inner>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Some(control_path) = uri.path().strip_prefix("/_bench/") {
        return control(&inner, &method, control_path, &body).await;
    }
    let form: Option<Vec<(String, String)>> =
        is_form(&headers).then(|| serde_urlencoded::from_bytes(&body).unwrap_or_default());
    let Some(service) = identify_service(&method, &uri, &headers, form.as_deref()) else {
        return (
            StatusCode::BAD_REQUEST,
            "the emulator could not tell which AWS service this request is for",
        )
            .into_response();
    };
    let (operation, params) = match service {
        Service::Imagebuilder => {
            let operation = uri.path().trim_start_matches('/').to_owned();
            let params = if method == Method::GET {
                let query: Vec<(String, String)> =
                    serde_urlencoded::from_str(uri.query().unwrap_or_default()).unwrap_or_default();
                Value::Object(
                    query
                        .into_iter()
                        .map(|(k, v)| (k, Value::String(v)))
                        .collect(),
                )
            } else if body.is_empty() {
                json!({})
            } else {
                match serde_json::from_slice(&body) {
                    Ok(params) => params,
                    Err(error) => {
                        let error = ApiError::bad_request(
                            "InvalidRequestException",
                            format!("The request body is not valid JSON: {error}"),
                        );
                        inner.record(
                            service,
                            &operation,
                            Value::Null,
                            error.status,
                            Some(error.code.clone()),
                            false,
                        );
                        return json_error(&error);
                    }
                }
            };
            (operation, params)
        }
        Service::Autoscaling | Service::Ec2 => {
            let pairs = form.clone().unwrap_or_default();
            let operation = pairs
                .iter()
                .find(|(k, _)| k == "Action")
                .map(|(_, v)| v.clone())
                .unwrap_or_default();
            let mut params = wire::query_to_json(&pairs);
            if let Value::Object(map) = &mut params {
                map.remove("Action");
                map.remove("Version");
            }
            (operation, params)
        }
        Service::Ssm | Service::Ecr => {
            let operation = headers
                .get("x-amz-target")
                .and_then(|v| v.to_str().ok())
                .and_then(|t| t.rsplit('.').next())
                .unwrap_or_default()
                .to_owned();
            (
                operation,
                serde_json::from_slice(&body).unwrap_or(Value::Null),
            )
        }
    };

    // AWS checks a request's shape before anything else looks at it.
    if let Some(error) = inner.models.violation(service, &operation, &params) {
        return inner.refuse(service, &operation, params, &error);
    }

    let mut lose_answer = false;
    if let Some(fault) = inner.take_fault(service, &operation) {
        if fault.kind == FaultKind::LoseAnswer {
            lose_answer = true;
        } else if fault.kind == FaultKind::Slow {
            tokio::time::sleep(Duration::from_millis(fault.delay_ms)).await;
        } else {
            let error = fault.error(service);
            inner.record(
                service,
                &operation,
                params,
                error.status,
                Some(error.code.clone()),
                true,
            );
            return error_response(service, &error);
        }
    }

    let response = async {
        match service {
            Service::Imagebuilder => {
                let context = inner.imagebuilder_context();
                let result = lock(&inner.services)
                    .imagebuilder
                    .handle(&context, &operation, &params);
                match result {
                    Ok(mut body) => {
                        if let Value::Object(map) = &mut body {
                            map.insert(
                                "requestId".to_owned(),
                                json!(uuid::Uuid::new_v4().to_string()),
                            );
                            map.retain(|_, v| !v.is_null());
                        }
                        inner.record(service, &operation, params, StatusCode::OK, None, false);
                        (
                            [(header::CONTENT_TYPE, "application/json")],
                            body.to_string(),
                        )
                            .into_response()
                    }
                    Err(error) => {
                        inner.record(
                            service,
                            &operation,
                            params,
                            error.status,
                            Some(error.code.clone()),
                            false,
                        );
                        json_error(&error)
                    }
                }
            }
            Service::Autoscaling => {
                let context = inner.autoscaling_context();
                let result = lock(&inner.services)
                    .autoscaling
                    .handle(&context, &operation, &params);
                let request_id = uuid::Uuid::new_v4().to_string();
                match result {
                    Ok(result) => {
                        inner.record(service, &operation, params, StatusCode::OK, None, false);
                        let xml = wire::query_response(
                            &operation,
                            autoscaling::NAMESPACE,
                            &result,
                            &request_id,
                        );
                        ([(header::CONTENT_TYPE, "text/xml")], xml).into_response()
                    }
                    Err(error) => {
                        inner.record(
                            service,
                            &operation,
                            params,
                            error.status,
                            Some(error.code.clone()),
                            false,
                        );
                        error_response(service, &error)
                    }
                }
            }
            Service::Ssm
                if operation == "PutParameter" && params["DataType"] == "aws:ec2:image" =>
            {
                let region =
                    signing_region(&headers).unwrap_or_else(|| inner.config.region.clone());
                let ami = params["Value"].as_str().unwrap_or_default().to_owned();
                if inner.ami_exists(&region, &ami).await {
                    return proxy_to_moto(
                        &inner, service, operation, params, method, uri, headers, body,
                    )
                    .await;
                }
                // "Parameter Store validates the parameter value asynchronously … If the AMI ID
                // isn't valid, the parameter isn't created or updated" (Systems Manager User Guide,
                // "Native parameter support for Amazon Machine Image IDs"): the call answers 200 with
                // the version it would have been, and that version never appears.
                let name = params["Name"].as_str().unwrap_or_default();
                let version = inner.moto_parameter_version(&region, name).await + 1;
                inner.record(service, &operation, params, StatusCode::OK, None, false);
                (
                    [(header::CONTENT_TYPE, "application/x-amz-json-1.1")],
                    json!({"Version": version, "Tier": "Standard"}).to_string(),
                )
                    .into_response()
            }
            Service::Ecr if operation == "PutImage" && params["imageTag"].is_string() => {
                // ECR moves a tag and keeps the image it left, untagged, until someone deletes
                // it ("Amazon ECR User Guide", *Untagged images*: a lifecycle policy expires
                // them); moto deletes that image. Put it back without a tag, as ECR keeps it.
                let region =
                    signing_region(&headers).unwrap_or_else(|| inner.config.region.clone());
                let before = inner.moto_tagged_image(&region, &params).await;
                let request = params.clone();
                let response = proxy_to_moto(
                    &inner, service, operation, params, method, uri, headers, body,
                )
                .await;
                if let Some((digest, image)) = before
                    && response.status().is_success()
                    && inner
                        .moto_tagged_image(&region, &request)
                        .await
                        .map(|(d, _)| d)
                        != Some(digest.clone())
                    && !inner.moto_has_digest(&region, &request, &digest).await
                {
                    let mut untagged = json!({
                        "repositoryName": request["repositoryName"],
                        "imageManifest": image["imageManifest"],
                    });
                    if let Some(media_type) = image["imageManifestMediaType"].as_str() {
                        untagged["imageManifestMediaType"] = json!(media_type);
                    }
                    inner.moto_ecr(&region, "PutImage", &untagged).await;
                }
                response
            }
            Service::Ssm | Service::Ecr | Service::Ec2 => {
                proxy_to_moto(
                    &inner, service, operation, params, method, uri, headers, body,
                )
                .await
            }
        }
    }
    .await;
    if lose_answer {
        // Carried out; the caller is gone before the answer reaches it.
        inner.answer_lost.notify_one();
        std::future::pending::<()>().await;
    }
    response
}

/// The region a request was signed for.
fn signing_region(headers: &HeaderMap) -> Option<String> {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|auth| auth.split("Credential=").nth(1))
        .and_then(|credential| credential.split('/').nth(2))
        .map(str::to_owned)
}

/// An Authorization header moto accepts for `service` in `region` (moto reads only the scope).
fn moto_authorization(service: &str, region: &str) -> String {
    format!(
        "AWS4-HMAC-SHA256 Credential=testing/20261130/{region}/{service}/aws4_request, SignedHeaders=host, Signature=0"
    )
}

impl Inner {
    /// Records a refused request and answers it with the error, in the service's shape.
    fn refuse(
        &self,
        service: Service,
        operation: &str,
        params: Value,
        error: &ApiError,
    ) -> Response {
        self.record(
            service,
            operation,
            params,
            error.status,
            Some(error.code.clone()),
            false,
        );
        error_response(service, error)
    }

    /// Whether EC2 knows the AMI in `region`: one the emulated Image Builder distributed and
    /// nobody deregistered, or one moto's EC2 describes.
    async fn ami_exists(&self, region: &str, ami: &str) -> bool {
        if lock(&self.services)
            .imagebuilder
            .distributed_ami(&self.config.account_id, region, ami)
        {
            return true;
        }
        let Some(moto_url) = &self.config.moto_url else {
            return false;
        };
        let response = self
            .http
            .post(format!("{moto_url}/"))
            .header(header::AUTHORIZATION, moto_authorization("ec2", region))
            .header(header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(format!(
                "Action=DescribeImages&Version=2016-11-15&ImageId.1={ami}"
            ))
            .send()
            .await;
        match response {
            Ok(response) if response.status().is_success() => response
                .text()
                .await
                .is_ok_and(|body| body.contains(&format!("<imageId>{ami}</imageId>"))),
            _ => false,
        }
    }

    /// One ECR call straight to moto, unrecorded: the emulator's own reads and writes.
    async fn moto_ecr(&self, region: &str, operation: &str, params: &Value) -> Option<Value> {
        let moto_url = self.config.moto_url.as_ref()?;
        let response = self
            .http
            .post(format!("{moto_url}/"))
            .header(header::AUTHORIZATION, moto_authorization("ecr", region))
            .header(
                "x-amz-target",
                format!("AmazonEC2ContainerRegistry_V20150921.{operation}"),
            )
            .header(header::CONTENT_TYPE, "application/x-amz-json-1.1")
            .body(params.to_string())
            .send()
            .await
            .ok()?;
        if !response.status().is_success() {
            return None;
        }
        response.json::<Value>().await.ok()
    }

    /// Whether moto still has an image with `digest` (under another tag, say) in the
    /// request's repository: then nothing was lost, and a put would only retag it.
    async fn moto_has_digest(&self, region: &str, params: &Value, digest: &str) -> bool {
        let mut ask = json!({
            "repositoryName": params["repositoryName"],
            "imageIds": [{"imageDigest": digest}],
        });
        if let Some(registry) = params["registryId"].as_str() {
            ask["registryId"] = json!(registry);
        }
        self.moto_ecr(region, "BatchGetImage", &ask)
            .await
            .is_some_and(|answer| answer["images"].as_array().is_some_and(|i| !i.is_empty()))
    }

    /// The image a tag names now: its digest and manifest.
    async fn moto_tagged_image(&self, region: &str, params: &Value) -> Option<(String, Value)> {
        let tag = params["imageTag"].as_str()?;
        let mut ask = json!({
            "repositoryName": params["repositoryName"],
            "imageIds": [{"imageTag": tag}],
        });
        if let Some(registry) = params["registryId"].as_str() {
            ask["registryId"] = json!(registry);
        }
        let answer = self.moto_ecr(region, "BatchGetImage", &ask).await?;
        let image = answer["images"].get(0)?;
        let digest = image["imageId"]["imageDigest"].as_str()?.to_owned();
        Some((digest, image.clone()))
    }

    /// The parameter's current version in moto, 0 when it does not exist.
    async fn moto_parameter_version(&self, region: &str, name: &str) -> i64 {
        let Some(moto_url) = &self.config.moto_url else {
            return 0;
        };
        let response = self
            .http
            .post(format!("{moto_url}/"))
            .header(header::AUTHORIZATION, moto_authorization("ssm", region))
            .header("x-amz-target", "AmazonSSM.GetParameter")
            .header(header::CONTENT_TYPE, "application/x-amz-json-1.1")
            .body(json!({"Name": name}).to_string())
            .send()
            .await;
        match response {
            Ok(response) if response.status().is_success() => response
                .json::<Value>()
                .await
                .ok()
                .and_then(|body| body["Parameter"]["Version"].as_i64())
                .unwrap_or(0),
            _ => 0,
        }
    }
}

#[allow(clippy::too_many_arguments)]
async fn proxy_to_moto(
    inner: &Inner,
    service: Service,
    operation: String,
    params: Value,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(moto_url) = &inner.config.moto_url else {
        let error = ApiError::new(
            StatusCode::NOT_IMPLEMENTED,
            "NotImplemented",
            format!(
                "{} is served by moto, and this emulator runs without it",
                service.signing_name()
            ),
        );
        return inner.refuse(service, &operation, params, &error);
    };
    let path_and_query = uri.path_and_query().map_or("/", |p| p.as_str());
    let mut request = inner
        .http
        .request(method, format!("{moto_url}{path_and_query}"));
    for (name, value) in &headers {
        if name != header::HOST && name != header::CONTENT_LENGTH {
            request = request.header(name, value);
        }
    }
    let upstream = match request.body(body).send().await {
        Ok(upstream) => upstream,
        Err(error) => {
            let error = ApiError::new(
                StatusCode::BAD_GATEWAY,
                "BadGateway",
                format!("moto did not answer: {error}"),
            );
            inner.record(
                service,
                &operation,
                params,
                error.status,
                Some(error.code.clone()),
                false,
            );
            return error_response(service, &error);
        }
    };
    let status = upstream.status();
    let content_type = upstream.headers().get(header::CONTENT_TYPE).cloned();
    let amzn_error = upstream.headers().get("x-amzn-errortype").cloned();
    let mut bytes = upstream.bytes().await.unwrap_or_default();
    if status.is_success() && service == Service::Ecr && operation == "BatchGetImage" {
        let moto: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        bytes = Bytes::from(ecr::batch_get_image_as_aws(&params, &moto).to_string());
    }
    let error_code = (!status.is_success()).then(|| moto_error_code(amzn_error.as_ref(), &bytes));
    inner.record(service, &operation, params, status, error_code, false);
    let mut response = Response::new(Body::from(bytes));
    *response.status_mut() = status;
    if let Some(content_type) = content_type {
        response
            .headers_mut()
            .insert(header::CONTENT_TYPE, content_type);
    }
    if let Some(amzn_error) = amzn_error {
        response
            .headers_mut()
            .insert("x-amzn-errortype", amzn_error);
    }
    response
}

fn moto_error_code(header: Option<&HeaderValue>, body: &[u8]) -> String {
    if let Some(code) = header.and_then(|h| h.to_str().ok()) {
        return code.split(':').next().unwrap_or(code).to_owned();
    }
    if let Ok(json) = serde_json::from_slice::<Value>(body)
        && let Some(code) = json.get("__type").and_then(Value::as_str)
    {
        return code.rsplit('#').next().unwrap_or(code).to_owned();
    }
    let text = String::from_utf8_lossy(body);
    text.split("<Code>")
        .nth(1)
        .and_then(|rest| rest.split("</Code>").next())
        .unwrap_or("Unknown")
        .to_owned()
}

fn json_error(error: &ApiError) -> Response {
    let body = json!({"__type": error.code, "message": error.message}).to_string();
    let mut response = (
        error.status,
        [(header::CONTENT_TYPE, "application/json")],
        body,
    )
        .into_response();
    if let Ok(code) = HeaderValue::from_str(&error.code) {
        response.headers_mut().insert("x-amzn-errortype", code);
    }
    response
}

fn error_response(service: Service, error: &ApiError) -> Response {
    let request_id = uuid::Uuid::new_v4().to_string();
    match service {
        Service::Autoscaling => (
            error.status,
            [(header::CONTENT_TYPE, "text/xml")],
            wire::query_error(error, autoscaling::NAMESPACE, &request_id),
        )
            .into_response(),
        Service::Ec2 => {
            let body = format!(
                "<Response><Errors><Error><Code>{}</Code><Message>{}</Message></Error></Errors><RequestID>{request_id}</RequestID></Response>",
                quick_xml::escape::escape(error.code.as_str()),
                quick_xml::escape::escape(error.message.as_str())
            );
            (error.status, [(header::CONTENT_TYPE, "text/xml")], body).into_response()
        }
        Service::Imagebuilder | Service::Ssm | Service::Ecr => json_error(error),
    }
}

#[derive(Deserialize)]
struct FinishImage {
    #[serde(rename = "imageBuildVersionArn")]
    image_build_version_arn: String,
    status: String,
    reason: Option<String>,
}

#[derive(Deserialize)]
struct FinishRefresh {
    #[serde(rename = "AutoScalingGroupName")]
    group: String,
    status: String,
    reason: Option<String>,
}

#[derive(Deserialize)]
struct Clock {
    now: Option<chrono::DateTime<chrono::Utc>>,
}

#[derive(Deserialize)]
struct Milliseconds {
    milliseconds: u64,
}

fn control_json(status: StatusCode, body: Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

fn parse_control<T: for<'de> Deserialize<'de>>(body: &Bytes) -> Result<T, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request("BadControlRequest", e.to_string()))
}

/// The control endpoints; see docs/bench.md, "Control endpoints".
async fn control(inner: &Arc<Inner>, method: &Method, path: &str, body: &Bytes) -> Response {
    match control_result(inner, method, path, body).await {
        Ok(body) => control_json(StatusCode::OK, body),
        Err(error) => control_json(
            error.status,
            json!({"error": error.code, "message": error.message}),
        ),
    }
}

async fn control_result(
    inner: &Arc<Inner>,
    method: &Method,
    path: &str,
    body: &Bytes,
) -> Result<Value, ApiError> {
    match (method, path) {
        (&Method::GET, "health") => Ok(json!({"status": "ok"})),
        (&Method::GET, "requests") => Ok(json!(lock(&inner.log).clone())),
        (&Method::DELETE, "requests") => {
            lock(&inner.log).clear();
            Ok(json!({}))
        }
        (&Method::POST, "faults") => {
            let fault: Fault = parse_control(body)?;
            lock(&inner.faults).push(fault.clone());
            Ok(json!(fault))
        }
        (&Method::GET, "faults") => Ok(json!(lock(&inner.faults).clone())),
        (&Method::DELETE, "faults") => {
            lock(&inner.faults).clear();
            Ok(json!({}))
        }
        (&Method::POST, "reset") => {
            reset_emulator(inner);
            if let Some(moto_url) = &inner.config.moto_url {
                inner
                    .http
                    .post(format!("{moto_url}/moto-api/reset"))
                    .send()
                    .await
                    .map_err(|e| {
                        ApiError::new(StatusCode::BAD_GATEWAY, "MotoResetFailed", e.to_string())
                    })?;
            }
            Ok(json!({}))
        }
        (&Method::GET, "imagebuilder/events") => {
            Ok(json!(lock(&inner.services).imagebuilder.events()))
        }
        (&Method::POST, "imagebuilder/images/finish") => {
            let request: FinishImage = parse_control(body)?;
            let context = inner.imagebuilder_context();
            lock(&inner.services).imagebuilder.finish_image(
                &context,
                &request.image_build_version_arn,
                &request.status,
                request.reason.as_deref(),
            )
        }
        (&Method::POST, "autoscaling/refreshes/finish") => {
            let request: FinishRefresh = parse_control(body)?;
            let context = inner.autoscaling_context();
            lock(&inner.services).autoscaling.finish_refresh(
                &context,
                &request.group,
                &request.status,
                request.reason.as_deref(),
            )
        }
        (&Method::POST, "clock") => {
            let request: Clock = parse_control(body)?;
            *lock(&inner.clock) = request.now;
            Ok(json!({"now": request.now}))
        }
        (&Method::POST, "autoscaling/cancel-delay") => {
            let request: Milliseconds = parse_control(body)?;
            lock(&inner.services).autoscaling.cancel_delay =
                Duration::from_millis(request.milliseconds);
            Ok(json!({"milliseconds": request.milliseconds}))
        }
        (&Method::POST, "answer-delay") => {
            let request: Milliseconds = parse_control(body)?;
            *lock(&inner.answer_delay) = Duration::from_millis(request.milliseconds);
            Ok(json!({"milliseconds": request.milliseconds}))
        }
        (&Method::GET, "answer-delay") => {
            let delay = *lock(&inner.answer_delay);
            Ok(json!({"milliseconds": delay.as_millis()}))
        }
        _ => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "UnknownControlEndpoint",
            format!("{method} /_bench/{path} is not a control endpoint"),
        )),
    }
}
