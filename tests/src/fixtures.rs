//! The JSON events under `tests/fixtures/`, in the shapes AWS delivers them.

use std::path::PathBuf;

use anyhow::Context;
use serde_json::Value;

pub fn fixtures_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures")
}

/// Reads and parses one fixture by file name, e.g. `ecr-push.json`.
pub fn load(name: &str) -> anyhow::Result<Value> {
    let path = fixtures_dir().join(name);
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))
}
