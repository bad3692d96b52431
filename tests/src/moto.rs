//! moto, run from the project's venv, for the services it emulates well: SSM, ECR and EC2.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::OnceLock;

use anyhow::{Context, bail};

/// A moto server process on a free loopback port.
///
/// It stops when this value is dropped, and also when the process holding it exits in any
/// way: the launcher serves only while its standard input, held here, stays open.
#[derive(Debug)]
pub struct MotoServer {
    child: Child,
    // Held, never written: closing it is the stop signal.
    _stdin: ChildStdin,
    url: String,
}

/// The Python of the project's venv, where `make setup` installs moto.
/// `PREPULL_BENCH_PYTHON` overrides it.
pub fn venv_python() -> PathBuf {
    std::env::var_os("PREPULL_BENCH_PYTHON").map_or_else(
        || workspace_root().join(".venv").join("bin").join("python"),
        PathBuf::from,
    )
}

/// The repository's root directory.
pub fn workspace_root() -> PathBuf {
    let manifest_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest_dir
        .parent()
        .map(PathBuf::from)
        .unwrap_or(manifest_dir)
}

impl MotoServer {
    /// Starts moto and waits until it accepts connections.
    pub fn start() -> anyhow::Result<Self> {
        let python = venv_python();
        if !python.exists() {
            bail!(
                "moto's venv is missing ({} not found): run `make setup` first",
                python.display()
            );
        }
        let launcher = workspace_root()
            .join("tests")
            .join("bench")
            .join("moto_launcher.py");
        let mut child = Command::new(&python)
            .arg(&launcher)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .with_context(|| format!("starting moto with {}", python.display()))?;
        let stdin = child.stdin.take().context("moto's stdin was not piped")?;
        let stdout = child.stdout.take().context("moto's stdout was not piped")?;
        let mut first_line = String::new();
        BufReader::new(stdout)
            .read_line(&mut first_line)
            .context("reading moto's address")?;
        let url = first_line.trim().to_owned();
        if !url.starts_with("http://") {
            let _ = child.kill();
            let _ = child.wait();
            bail!(
                "moto did not start (it printed {first_line:?}); is moto[server] installed in the venv?"
            );
        }
        Ok(Self {
            child,
            _stdin: stdin,
            url,
        })
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Forgets everything moto holds.
    pub async fn reset(&self) -> anyhow::Result<()> {
        reqwest::Client::new()
            .post(format!("{}/moto-api/reset", self.url))
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .context("resetting moto")?;
        Ok(())
    }
}

impl Drop for MotoServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One moto per test process, started on first use. Tests take turns with it through
/// [`crate::bench::Bench`], which resets it for each.
pub fn shared() -> anyhow::Result<&'static MotoServer> {
    static SHARED: OnceLock<Result<MotoServer, String>> = OnceLock::new();
    SHARED
        .get_or_init(|| MotoServer::start().map_err(|e| format!("{e:#}")))
        .as_ref()
        .map_err(|e| anyhow::anyhow!("{e}"))
}
