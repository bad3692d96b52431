//! `cargo lambda watch`: cargo-lambda's own Lambda Runtime API and invoke endpoint, running the
//! workspace's functions with `cargo run`. The demo can use it instead of
//! [`crate::runtime_api`].

use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::moto::workspace_root;
use crate::runtime_api::Outcome;

/// How long the first invocation of a function may take: cargo-lambda builds it then.
const FIRST_BUILD_ALLOWANCE: Duration = Duration::from_secs(600);

/// A running `cargo lambda watch`, serving every function of the workspace.
pub struct CargoLambdaWatch {
    child: Child,
    url: String,
    logs: Arc<Mutex<Vec<String>>>,
    http: reqwest::Client,
}

impl CargoLambdaWatch {
    /// Starts `cargo lambda watch` (from `cargo_lambda_dir`, or `PATH`) on a free port with
    /// `environment` for every function, and waits until it accepts invocations.
    pub async fn start(
        cargo_lambda_dir: Option<&Path>,
        environment: &[(String, String)],
    ) -> anyhow::Result<Self> {
        let port = free_port()?;
        let env_file = std::env::temp_dir().join(format!("prepull-demo-{port}.env"));
        let text: String = environment
            .iter()
            .map(|(k, v)| format!("{k}={v}\n"))
            .collect();
        std::fs::write(&env_file, text)?;
        let mut path = std::env::var_os("PATH").unwrap_or_default();
        if let Some(dir) = cargo_lambda_dir {
            let mut paths = vec![dir.to_path_buf()];
            paths.extend(std::env::split_paths(&path));
            path = std::env::join_paths(paths)?;
        }
        let mut command = Command::new("cargo");
        command
            .args(["lambda", "watch", "--quiet", "--ignore-changes"])
            .args(["--invoke-address", "127.0.0.1"])
            .args(["--invoke-port", &port.to_string()])
            .arg("--env-file")
            .arg(&env_file)
            // `cargo run --bin X` resolves features for one package, not the workspace, so in
            // the shared target directory each build would undo the other's. (The variable,
            // not `--target-dir`: cargo-lambda 1.9 passes that flag on to `cargo metadata`,
            // which refuses it.)
            .env("CARGO_TARGET_DIR", watch_target_dir())
            .current_dir(workspace_root())
            .env("PATH", path)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Its own process group: terminal signals meant for the demo stay with the demo,
            // and cargo-lambda's handling of its children stays within its group.
            .process_group(0)
            .kill_on_drop(true);
        let mut child = command
            .spawn()
            .context("starting `cargo lambda watch` (is cargo-lambda installed? `make setup`)")?;
        let logs = Arc::new(Mutex::new(Vec::new()));
        for stream in [
            child
                .stdout
                .take()
                .map(|s| Box::new(s) as Box<dyn tokio::io::AsyncRead + Send + Unpin>),
            child
                .stderr
                .take()
                .map(|s| Box::new(s) as Box<dyn tokio::io::AsyncRead + Send + Unpin>),
        ]
        .into_iter()
        .flatten()
        {
            let logs = logs.clone();
            tokio::spawn(async move {
                let mut lines = BufReader::new(stream).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    lock(&logs).push(line);
                }
            });
        }
        let started = Instant::now();
        loop {
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
            {
                break;
            }
            if let Some(status) = child.try_wait()? {
                bail!(
                    "`cargo lambda watch` exited with {status}:\n{}",
                    lock(&logs).join("\n")
                );
            }
            if started.elapsed() > Duration::from_secs(60) {
                bail!("`cargo lambda watch` did not listen on port {port} within 60 s");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(Self {
            child,
            url: format!("http://127.0.0.1:{port}"),
            logs,
            http: reqwest::Client::new(),
        })
    }

    /// Invokes `function` through cargo-lambda's invoke endpoint, as `cargo lambda invoke`
    /// does.
    pub async fn invoke(
        &self,
        function: &str,
        payload: &Value,
        timeout: Duration,
    ) -> anyhow::Result<Outcome> {
        let response = self
            .http
            .post(format!(
                "{}/2015-03-31/functions/{function}/invocations",
                self.url
            ))
            .json(payload)
            .timeout(timeout + FIRST_BUILD_ALLOWANCE)
            .send()
            .await;
        let response = match response {
            Ok(response) => response,
            Err(error) if error.is_timeout() => return Ok(Outcome::TimedOut),
            Err(error) => return Err(error).context("invoking through cargo lambda watch"),
        };
        let success = response.status().is_success();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        if success {
            return Ok(Outcome::Response(body));
        }
        let field = |name: &str| body[name].as_str().unwrap_or_default().to_owned();
        Ok(Outcome::Error {
            error_type: field("errorType"),
            error_message: field("errorMessage"),
        })
    }

    /// What cargo-lambda and the functions have printed so far.
    pub fn logs(&self) -> Vec<String> {
        lock(&self.logs).clone()
    }

    /// Stops cargo-lambda, which stops the function processes it started: a function whose
    /// Runtime API is gone exits on its next poll anyway.
    pub async fn stop(mut self) {
        if let Some(pid) = self.child.id() {
            let _ = Command::new("kill")
                .args(["-INT", &pid.to_string()])
                .status()
                .await;
        }
        if tokio::time::timeout(Duration::from_secs(5), self.child.wait())
            .await
            .is_err()
        {
            let _ = self.child.kill().await;
        }
    }
}

fn watch_target_dir() -> std::path::PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| workspace_root().join("target"), std::path::PathBuf::from)
        .join("cargo-lambda-watch")
}

fn free_port() -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind(("127.0.0.1", 0))?;
    Ok(listener.local_addr()?.port())
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}
