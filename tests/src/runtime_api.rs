//! A local Lambda Runtime API host: runs a function's real binary as Lambda would (a fresh
//! process, `AWS_LAMBDA_*` variables, the 2018-06-01 Runtime API) and invokes it one event at
//! a time.
//!
//! It serves the endpoints `lambda_runtime` uses: `GET /runtime/invocation/next`,
//! `POST /runtime/invocation/{id}/response`, `POST /runtime/invocation/{id}/error` and
//! `POST /runtime/init/error`. Each function gets its own host, as each Lambda sandbox does.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path as UrlPath, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::{mpsc, oneshot};

/// Lines of a function's output kept for the caller; older lines are dropped first.
const KEPT_LOG_LINES: usize = 2_000;

/// What the function did with one invocation.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// The handler returned this JSON.
    Response(Value),
    /// The handler returned an error, as `lambda_runtime` reports it.
    Error {
        error_type: String,
        error_message: String,
    },
    /// The process ended before it answered (a failed init, a panic), with its exit status and
    /// the init error it posted, if any.
    Exited {
        status: String,
        init_error: Option<Value>,
    },
    /// No answer within the function's timeout.
    TimedOut,
}

impl Outcome {
    pub fn response(&self) -> Option<&Value> {
        match self {
            Outcome::Response(value) => Some(value),
            _ => None,
        }
    }
}

/// How to run one function.
#[derive(Debug, Clone)]
pub struct FunctionSpec {
    pub name: String,
    pub binary: PathBuf,
    /// Arguments for the binary: none for a custom runtime's `bootstrap`; the interpreter's
    /// arguments for the Python baseline.
    pub args: Vec<String>,
    /// The function's own variables (its `Environment` in the template) plus whatever points
    /// the SDK at the bench.
    pub environment: Vec<(String, String)>,
    pub memory_mb: u32,
    pub timeout: Duration,
    pub region: String,
    pub account_id: String,
}

struct Invocation {
    request_id: String,
    payload: Bytes,
    deadline_ms: u64,
}

#[derive(Default)]
struct Shared {
    /// When the process first asked for an invocation: the end of its init.
    first_poll: std::sync::OnceLock<Instant>,
    answers: Mutex<HashMap<String, oneshot::Sender<Outcome>>>,
    init_error: Mutex<Option<Value>>,
    logs: Mutex<Vec<String>>,
}

struct HostState {
    shared: Arc<Shared>,
    queue: tokio::sync::Mutex<mpsc::Receiver<Invocation>>,
    function_arn: String,
}

/// One function's process and its Runtime API.
pub struct FunctionHost {
    spec: FunctionSpec,
    child: Child,
    /// Just before the process was started.
    started: Instant,
    shared: Arc<Shared>,
    queue: mpsc::Sender<Invocation>,
    server: tokio::task::JoinHandle<()>,
    exit_status: Option<ExitStatus>,
}

impl FunctionHost {
    /// Starts the Runtime API on a free loopback port, then the function's process against
    /// it. The process starts with a clean environment: only the spec's variables and the
    /// ones Lambda itself sets.
    pub async fn start(spec: FunctionSpec) -> anyhow::Result<Self> {
        if !spec.binary.is_file() {
            anyhow::bail!(
                "{} is not built: {} does not exist (run `cargo build -p {}`)",
                spec.name,
                spec.binary.display(),
                spec.name
            );
        }
        let (queue, receiver) = mpsc::channel(16);
        let shared = Arc::new(Shared::default());
        let state = Arc::new(HostState {
            shared: shared.clone(),
            queue: tokio::sync::Mutex::new(receiver),
            function_arn: format!(
                "arn:aws:lambda:{}:{}:function:{}",
                spec.region, spec.account_id, spec.name
            ),
        });
        let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await?;
        let address = listener.local_addr()?;
        let app = Router::new()
            .route("/2018-06-01/runtime/invocation/next", get(next_invocation))
            .route(
                "/2018-06-01/runtime/invocation/{id}/response",
                post(invocation_response),
            )
            .route(
                "/2018-06-01/runtime/invocation/{id}/error",
                post(invocation_error),
            )
            .route("/2018-06-01/runtime/init/error", post(init_error))
            .with_state(state);
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });

        let mut command = Command::new(&spec.binary);
        command
            .env_clear()
            .envs(
                spec.environment
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_str())),
            )
            .envs(lambda_environment(&spec, address))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        command.args(&spec.args);
        let started = Instant::now();
        let mut child = command
            .spawn()
            .with_context(|| format!("starting {}", spec.binary.display()))?;
        if let Some(stdout) = child.stdout.take() {
            collect_lines(stdout, shared.clone());
        }
        if let Some(stderr) = child.stderr.take() {
            collect_lines(stderr, shared.clone());
        }
        Ok(Self {
            spec,
            child,
            started,
            shared,
            queue,
            server,
            exit_status: None,
        })
    }

    pub fn name(&self) -> &str {
        &self.spec.name
    }

    /// How long the process took from its start to its first request for an invocation
    /// (Lambda's init phase), once it has made that request.
    pub fn init_duration(&self) -> Option<Duration> {
        self.shared
            .first_poll
            .get()
            .map(|polled| polled.duration_since(self.started))
    }

    /// The time since the process was started.
    pub fn since_start(&self) -> Duration {
        self.started.elapsed()
    }

    /// The process's peak resident memory so far (`VmHWM`), while it runs.
    pub fn peak_rss_kib(&self) -> Option<u64> {
        let pid = self.child.id()?;
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        status
            .lines()
            .find_map(|line| line.strip_prefix("VmHWM:"))
            .and_then(|value| value.split_whitespace().next()?.parse().ok())
    }

    /// Sends one event and waits for the function's answer, its exit, or its timeout.
    pub async fn invoke(&mut self, payload: &Value) -> anyhow::Result<Outcome> {
        if let Some(status) = self.exit_status {
            return Ok(self.exited(status));
        }
        let request_id = uuid::Uuid::new_v4().to_string();
        let deadline = SystemTime::now() + self.spec.timeout;
        let deadline_ms = deadline
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let (answer, answered) = oneshot::channel();
        lock(&self.shared.answers).insert(request_id.clone(), answer);
        self.queue
            .send(Invocation {
                request_id: request_id.clone(),
                payload: Bytes::from(serde_json::to_vec(payload)?),
                deadline_ms,
            })
            .await
            .context("the Runtime API host stopped")?;
        let outcome = tokio::select! {
            outcome = answered => outcome.context("the Runtime API dropped the invocation")?,
            status = self.child.wait() => {
                let status = status?;
                self.exit_status = Some(status);
                self.exited(status)
            }
            () = tokio::time::sleep(self.spec.timeout) => Outcome::TimedOut,
        };
        lock(&self.shared.answers).remove(&request_id);
        Ok(outcome)
    }

    fn exited(&self, status: ExitStatus) -> Outcome {
        Outcome::Exited {
            status: status.to_string(),
            init_error: lock(&self.shared.init_error).clone(),
        }
    }

    /// Everything the function has written so far (JSON log lines, one per entry).
    pub fn logs(&self) -> Vec<String> {
        lock(&self.shared.logs).clone()
    }

    /// Stops the process and the Runtime API.
    pub async fn stop(mut self) {
        let _ = self.child.kill().await;
        self.server.abort();
    }
}

impl Drop for FunctionHost {
    fn drop(&mut self) {
        self.server.abort();
    }
}

/// The variables Lambda sets in every sandbox, for this function and this Runtime API.
fn lambda_environment(spec: &FunctionSpec, runtime_api: SocketAddr) -> Vec<(String, String)> {
    [
        ("AWS_LAMBDA_RUNTIME_API", runtime_api.to_string()),
        ("AWS_LAMBDA_FUNCTION_NAME", spec.name.clone()),
        ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST".to_owned()),
        (
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE",
            spec.memory_mb.to_string(),
        ),
        (
            "AWS_LAMBDA_LOG_GROUP_NAME",
            format!("/aws/lambda/{}", spec.name),
        ),
        ("AWS_LAMBDA_LOG_STREAM_NAME", "local".to_owned()),
        ("AWS_LAMBDA_LOG_FORMAT", "JSON".to_owned()),
        ("AWS_EXECUTION_ENV", "AWS_Lambda_provided.al2023".to_owned()),
        ("AWS_REGION", spec.region.clone()),
        ("AWS_DEFAULT_REGION", spec.region.clone()),
        // Lambda gives each function its role's credentials; one access key ID per function
        // lets the request log tell the functions apart (the IAM check in the suite).
        ("AWS_ACCESS_KEY_ID", function_access_key(&spec.name)),
        ("LAMBDA_TASK_ROOT", path_parent(&spec.binary)),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

/// The access key ID a function's calls are signed with on the bench.
pub fn function_access_key(function: &str) -> String {
    format!(
        "ASIA{}",
        function
            .chars()
            .filter(char::is_ascii_alphanumeric)
            .collect::<String>()
            .to_uppercase()
    )
}

fn path_parent(path: &Path) -> String {
    path.parent()
        .map(|p| p.display().to_string())
        .unwrap_or_default()
}

fn collect_lines<R>(reader: R, shared: Arc<Shared>)
where
    R: tokio::io::AsyncRead + Unpin + Send + 'static,
{
    tokio::spawn(async move {
        let mut lines = BufReader::new(reader).lines();
        while let Ok(Some(line)) = lines.next_line().await {
            let mut logs = lock(&shared.logs);
            if logs.len() == KEPT_LOG_LINES {
                logs.remove(0);
            }
            logs.push(line);
        }
    });
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

async fn next_invocation(State(state): State<Arc<HostState>>) -> Response {
    let _first = state.shared.first_poll.get_or_init(Instant::now);
    let Some(invocation) = state.queue.lock().await.recv().await else {
        return StatusCode::GONE.into_response();
    };
    let mut headers = HeaderMap::new();
    let header = |value: &str| {
        HeaderValue::from_str(value).unwrap_or_else(|_| HeaderValue::from_static("invalid"))
    };
    headers.insert(
        "lambda-runtime-aws-request-id",
        header(&invocation.request_id),
    );
    headers.insert(
        "lambda-runtime-deadline-ms",
        header(&invocation.deadline_ms.to_string()),
    );
    headers.insert(
        "lambda-runtime-invoked-function-arn",
        header(&state.function_arn),
    );
    headers.insert(
        "lambda-runtime-trace-id",
        header(&format!(
            "Root=1-00000000-{};Sampled=0",
            &invocation.request_id.replace('-', "")[..24]
        )),
    );
    headers.insert("content-type", HeaderValue::from_static("application/json"));
    (StatusCode::OK, headers, invocation.payload).into_response()
}

async fn invocation_response(
    State(state): State<Arc<HostState>>,
    UrlPath(id): UrlPath<String>,
    body: Bytes,
) -> StatusCode {
    let outcome = match serde_json::from_slice(&body) {
        Ok(value) => Outcome::Response(value),
        Err(error) => Outcome::Error {
            error_type: "Local.InvalidResponse".to_owned(),
            error_message: format!("the response is not JSON: {error}"),
        },
    };
    answer(&state, &id, outcome)
}

async fn invocation_error(
    State(state): State<Arc<HostState>>,
    UrlPath(id): UrlPath<String>,
    body: Bytes,
) -> StatusCode {
    let diagnostic: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let field = |name: &str| {
        diagnostic
            .get(name)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    };
    answer(
        &state,
        &id,
        Outcome::Error {
            error_type: field("errorType"),
            error_message: field("errorMessage"),
        },
    )
}

async fn init_error(State(state): State<Arc<HostState>>, body: Bytes) -> StatusCode {
    *lock(&state.shared.init_error) = Some(serde_json::from_slice(&body).unwrap_or(Value::Null));
    StatusCode::ACCEPTED
}

fn answer(state: &HostState, request_id: &str, outcome: Outcome) -> StatusCode {
    match lock(&state.shared.answers).remove(request_id) {
        Some(sender) => {
            let _ = sender.send(outcome);
            StatusCode::ACCEPTED
        }
        None => StatusCode::NOT_FOUND,
    }
}

/// Where Cargo put the workspace's binaries: beside this process's own executable (a test
/// binary lives one level deeper, in `deps/`).
pub fn binary_dir() -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let mut dir = exe
        .parent()
        .context("no executable directory")?
        .to_path_buf();
    if dir.ends_with("deps") {
        dir.pop();
    }
    Ok(dir)
}
