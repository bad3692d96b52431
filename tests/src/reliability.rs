//! Crash at every step: each scenario runs once uninterrupted and its calls are recorded;
//! then, for every position N, it runs again on a fresh bench with the N-th call interrupted,
//! and is re-run with the same input until it succeeds, as Lambda and SQS retry it. The final
//! state must equal the uninterrupted run's.
//!
//! An interruption is one of:
//! - the N-th mutating call fails, its retries exhausted (`fails`);
//! - the N-th mutating call is carried out and its answer never arrives: the process is gone
//!   mid-invocation, as when Lambda times out or the host is lost (`answer-lost`);
//! - the N-th read fails, its retries exhausted (`read-fails`);
//! - for image-pushed and build-finished, the N-th mutating call is carried out and the
//!   function's real binary, under the local Runtime API host, is killed before the answer
//!   arrives; a new process gets the same event, as Lambda retries it (`process-killed`).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use chrono::{DateTime, Utc};
use prepull::build_finished::FleetSettings;
use prepull::patch_day::PatchDaySettings;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

use crate::emulator::{Fault, FaultKind, RecordedRequest};
use crate::runtime_api::{FunctionHost, FunctionSpec, Outcome, binary_dir};
use crate::scenario::{Scenario, push_event, sqs_batch};
use crate::seed::{PipelineSeed, seed_fleet_template, seed_group};

const PARAMETER: &str = "/prepull/ami-id";
const PARENT_PARAMETER: &str = "/prepull/reliability/windows-parent";
const GROUPS: [&str; 2] = ["nodes-a", "nodes-b"];
const REGIONS: [&str; 2] = ["us-east-1", "eu-west-1"];
/// More failures than any retry absorbs: the SDK's standard three attempts, and prepull's own
/// waits. The faults left over are cleared before the re-run.
const EXHAUSTED: u32 = 12;
/// Re-runs after the interrupted one, at most: one should do.
const RERUNS: usize = 3;

/// What the scenarios do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum CrashScenario {
    /// image-pushed: a batch with two changed images.
    ImagePushed,
    /// image-pushed: a watched tag deleted from ECR after a build cached it.
    ImageDeleted,
    /// patch-day: a new install's first scheduled run.
    PatchDay,
    /// build-finished: an AVAILABLE build, two regions, two groups.
    BuildFinished,
    /// build-finished: an operator's rollback after two publishes.
    Rollback,
}

impl CrashScenario {
    pub const ALL: [CrashScenario; 5] = [
        CrashScenario::ImagePushed,
        CrashScenario::ImageDeleted,
        CrashScenario::PatchDay,
        CrashScenario::BuildFinished,
        CrashScenario::Rollback,
    ];

    pub fn name(self) -> &'static str {
        match self {
            CrashScenario::ImagePushed => "image-pushed: two changed pushes",
            CrashScenario::ImageDeleted => "image-pushed: a cached tag deleted",
            CrashScenario::PatchDay => "patch-day: a new install's first run",
            CrashScenario::BuildFinished => "build-finished: AVAILABLE, 2 regions, 2 groups",
            CrashScenario::Rollback => "build-finished: rollback",
        }
    }
}

/// How the N-th call is interrupted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Interruption {
    Fails,
    AnswerLost,
    ReadFails,
    ProcessKilled,
}

/// A scenario on a fresh bench, ready to be invoked.
pub struct Prepared {
    pub scenario: Scenario,
    pub input: Value,
    settings: FleetSettings,
    now: DateTime<Utc>,
}

fn fleet_settings() -> anyhow::Result<FleetSettings> {
    let names = GROUPS.join(",");
    let mut settings = FleetSettings::from_lookup(|name| match name {
        "PREPULL_ASG_NAMES" => Some(names.clone()),
        "PREPULL_REFRESH_IN_PROGRESS" => Some("replace".to_owned()),
        _ => None,
    })?;
    settings.poll_interval = Duration::from_millis(50);
    settings.confirm_timeout = Duration::from_millis(600);
    settings.confirm_interval = Duration::from_millis(50);
    Ok(settings)
}

fn at(text: &str) -> anyhow::Result<DateTime<Utc>> {
    Ok(DateTime::parse_from_rfc3339(text)?.with_timezone(&Utc))
}

/// The pushes' event times: fixed, so every fresh bench writes the same documents (they record
/// push times) and a crashed run's state compares equal to the uninterrupted one's. A second
/// push of an image is a later second (in one second, ECR's real push time would order them).
const PUSHED_AT: [&str; 2] = ["2026-12-01T05:00:00Z", "2026-12-01T05:10:00Z"];

async fn push_batch(
    s: &Scenario,
    pushes: &[(&str, &str, &str)],
    time: &str,
) -> anyhow::Result<Value> {
    let mut events = Vec::new();
    for (repository, tag, content) in pushes {
        let digest = s.push(repository, tag, content).await?;
        events.push(push_event(
            &content.replace(' ', "-"),
            repository,
            tag,
            &digest,
            time,
        ));
    }
    Ok(sqs_batch(&events))
}

/// Runs image-pushed on `batch` and finishes the build it started AVAILABLE; returns the
/// EventBridge event.
async fn build_and_finish(s: &Scenario, batch: Value) -> anyhow::Result<Value> {
    let summary = prepull::image_pushed::handle(&s.common, batch).await?;
    let image = summary
        .image_build_version_arn
        .context("the push started no build")?;
    s.bench
        .emulator
        .finish_image(image.as_str(), "AVAILABLE", None)
        .map_err(|e| anyhow::anyhow!("finishing {image}: {} {}", e.code, e.message))
}

/// The SDK's standard retry (three attempts), with a short backoff: a run whose call fails
/// every attempt gives up in milliseconds rather than seconds, and the outcome is the same.
async fn with_quick_retries(mut s: Scenario) -> Scenario {
    let sdk = s
        .bench
        .sdk_config()
        .await
        .into_builder()
        .retry_config(
            aws_config::retry::RetryConfig::standard()
                .with_max_attempts(3)
                .with_initial_backoff(Duration::from_millis(5)),
        )
        .build();
    s.common = prepull::Common::new(
        prepull::aws::AwsClients::from_config(&sdk),
        s.common.config.clone(),
    );
    s
}

impl CrashScenario {
    /// The scenario's account on a fresh bench, and the input its invocation gets.
    pub async fn prepare(self) -> anyhow::Result<Prepared> {
        let mut prepared = self.prepare_account().await?;
        prepared.scenario = with_quick_retries(prepared.scenario).await;
        Ok(prepared)
    }

    async fn prepare_account(self) -> anyhow::Result<Prepared> {
        let images = ["team/web:v42", "team/api:v7"];
        let settings = fleet_settings()?;
        let now = Utc::now();
        match self {
            CrashScenario::ImagePushed => {
                let s = Scenario::start(&images, PipelineSeed::default(), &[]).await?;
                let input = push_batch(
                    &s,
                    &[("team/web", "v42", "web 1"), ("team/api", "v7", "api 1")],
                    PUSHED_AT[0],
                )
                .await?;
                s.bench.emulator.clear_requests();
                Ok(Prepared {
                    scenario: s,
                    input,
                    settings,
                    now,
                })
            }
            CrashScenario::ImageDeleted => {
                let s = Scenario::start(&images, PipelineSeed::default(), &[]).await?;
                let pushes = push_batch(
                    &s,
                    &[("team/web", "v42", "web 1"), ("team/api", "v7", "api 1")],
                    PUSHED_AT[0],
                )
                .await?;
                build_and_finish(&s, pushes).await?;
                let api = s
                    .common
                    .config
                    .images
                    .iter()
                    .find(|i| i.repository.as_str() == "team/api")
                    .context("team/api is watched")?
                    .clone();
                let digest = ecr_digest(&s, &api).await?;
                s.delete("team/api", "v7").await?;
                let input = sqs_batch(&[crate::scenario::ecr_event(
                    "deleted-1",
                    "DELETE",
                    "SUCCESS",
                    "team/api",
                    "v7",
                    &digest,
                    PUSHED_AT[1],
                )]);
                s.bench.emulator.clear_requests();
                Ok(Prepared {
                    scenario: s,
                    input,
                    settings,
                    now,
                })
            }
            CrashScenario::PatchDay => {
                let seed = PipelineSeed {
                    parent_image: format!("ssm:{PARENT_PARAMETER}"),
                    ..PipelineSeed::default()
                };
                let s = Scenario::start(&images, seed, &[]).await?;
                let ssm = aws_sdk_ssm::Client::new(&s.bench.sdk_config().await);
                ssm.put_parameter()
                    .name(PARENT_PARAMETER)
                    .value("ami-0aaaaaaaaaaaaaaa1")
                    .r#type(aws_sdk_ssm::types::ParameterType::String)
                    .send()
                    .await?;
                let now = at("2026-12-01T06:00:00Z")?;
                s.bench.emulator.set_clock(Some(now));
                s.bench.emulator.clear_requests();
                Ok(Prepared {
                    scenario: s,
                    input: json!({"source": "schedule"}),
                    settings,
                    now,
                })
            }
            CrashScenario::BuildFinished | CrashScenario::Rollback => {
                let seed = PipelineSeed {
                    regions: REGIONS.iter().map(|r| (*r).to_owned()).collect(),
                    ..PipelineSeed::default()
                };
                let s = Scenario::start(&images[..1], seed, &[]).await?;
                // A cancelled refresh settles in 200 ms rather than AWS's minutes: the order of
                // events is the same, and each crash point costs less waiting.
                s.bench
                    .emulator
                    .set_refresh_cancel_delay(Duration::from_millis(200));
                let autoscaling = aws_sdk_autoscaling::Client::new(&s.bench.sdk_config().await);
                seed_fleet_template(&s.bench, PARAMETER).await?;
                for group in GROUPS {
                    seed_group(&autoscaling, group).await?;
                }
                let first = build_and_finish(
                    &s,
                    push_batch(&s, &[("team/web", "v42", "web 1")], PUSHED_AT[0]).await?,
                )
                .await?;
                let input = if self == CrashScenario::Rollback {
                    invoke_build_finished(&s, &settings, first).await?;
                    crate::bench::until_next_second().await;
                    let second = build_and_finish(
                        &s,
                        push_batch(&s, &[("team/web", "v42", "web 2")], PUSHED_AT[1]).await?,
                    )
                    .await?;
                    invoke_build_finished(&s, &settings, second).await?;
                    crate::bench::until_next_second().await;
                    json!({"action": "rollback"})
                } else {
                    first
                };
                s.bench.emulator.clear_requests();
                Ok(Prepared {
                    scenario: s,
                    input,
                    settings,
                    now,
                })
            }
        }
    }

    /// One invocation, as Lambda would make it: `Err` when it failed (and would be retried).
    pub async fn invoke(self, p: &Prepared) -> anyhow::Result<()> {
        self.invoke_on(&p.scenario, &p.input, &p.settings, p.now)
            .await
    }

    /// One invocation of this scenario's function on `s` with `input`.
    async fn invoke_on(
        self,
        s: &Scenario,
        input: &Value,
        settings: &FleetSettings,
        now: DateTime<Utc>,
    ) -> anyhow::Result<()> {
        match self {
            CrashScenario::ImagePushed | CrashScenario::ImageDeleted => {
                let summary = prepull::image_pushed::handle(&s.common, input.clone()).await?;
                if !summary.batch_item_failures.is_empty() {
                    bail!(
                        "{} records go back to the queue",
                        summary.batch_item_failures.len()
                    );
                }
                Ok(())
            }
            CrashScenario::PatchDay => {
                let settings = PatchDaySettings {
                    offset_days: 1,
                    max_image_age_days: 35,
                };
                // An EventBridge retry of an asynchronous invocation keeps its request ID.
                prepull::patch_day::handle(&s.common, settings, input.clone(), "patch-day-1", now)
                    .await?;
                Ok(())
            }
            CrashScenario::BuildFinished | CrashScenario::Rollback => {
                invoke_build_finished(s, settings, input.clone()).await
            }
        }
    }
}

async fn invoke_build_finished(
    s: &Scenario,
    settings: &FleetSettings,
    input: Value,
) -> anyhow::Result<()> {
    prepull::build_finished::handle(
        &s.common,
        settings,
        input,
        Instant::now() + Duration::from_secs(20),
    )
    .await?;
    Ok(())
}

/// What a scenario leaves behind, in the terms a second run must reproduce.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Snapshot {
    /// Each cache component version and the hash of its document.
    pub component_versions: Vec<(String, String)>,
    /// Each image the pipeline built: its version and status.
    pub builds: Vec<(String, String)>,
    /// Per region, every parameter version: its value and labels.
    pub parameters: BTreeMap<String, Vec<(i64, String, Vec<String>)>>,
    /// Per group, each refresh: running (`active`) or how it ended.
    pub refreshes: BTreeMap<String, Vec<String>>,
}

pub async fn snapshot(s: &Scenario) -> anyhow::Result<Snapshot> {
    let sdk = s.bench.sdk_config().await;
    let imagebuilder = &s.imagebuilder;
    let mut component_versions = Vec::new();
    let components = imagebuilder
        .list_components()
        .owner(aws_sdk_imagebuilder::types::Ownership::SelfValue)
        .send()
        .await?;
    for component in components.component_version_list() {
        let Some(version_arn) = component.arn() else {
            continue;
        };
        let builds = imagebuilder
            .list_component_build_versions()
            .component_version_arn(version_arn)
            .send()
            .await?;
        for build in builds.component_summary_list() {
            let arn = build.arn().unwrap_or_default();
            let document = imagebuilder
                .get_component()
                .component_build_version_arn(arn)
                .send()
                .await?;
            let data = document
                .component()
                .and_then(|c| c.data())
                .unwrap_or_default();
            let hash: String = Sha256::digest(data.as_bytes())
                .iter()
                .take(8)
                .map(|b| format!("{b:02x}"))
                .collect();
            component_versions.push((
                arn.rsplit("component/").next().unwrap_or(arn).to_owned(),
                hash,
            ));
        }
    }
    component_versions.sort();
    let images = imagebuilder
        .list_image_pipeline_images()
        .image_pipeline_arn(&s.pipeline.pipeline_arn)
        .send()
        .await?;
    let mut builds: Vec<(String, String)> = images
        .image_summary_list()
        .iter()
        .map(|i| {
            (
                i.arn()
                    .unwrap_or_default()
                    .rsplit("image/")
                    .next()
                    .unwrap_or_default()
                    .to_owned(),
                i.state()
                    .and_then(|st| st.status())
                    .map(|st| st.as_str().to_owned())
                    .unwrap_or_default(),
            )
        })
        .collect();
    builds.sort();
    let mut parameters = BTreeMap::new();
    for region in REGIONS {
        let ssm = aws_sdk_ssm::Client::from_conf(
            aws_sdk_ssm::config::Builder::from(&sdk)
                .region(aws_config::Region::new(region))
                .build(),
        );
        let mut versions = Vec::new();
        if let Ok(history) = ssm.get_parameter_history().name(PARAMETER).send().await {
            for v in history.parameters() {
                let mut labels = v.labels().to_vec();
                labels.sort();
                versions.push((
                    v.version(),
                    v.value().unwrap_or_default().to_owned(),
                    labels,
                ));
            }
        }
        if !versions.is_empty() {
            parameters.insert(region.to_owned(), versions);
        }
    }
    let autoscaling = aws_sdk_autoscaling::Client::new(&sdk);
    let mut refreshes = BTreeMap::new();
    for group in GROUPS {
        let Ok(described) = autoscaling
            .describe_instance_refreshes()
            .auto_scaling_group_name(group)
            .send()
            .await
        else {
            continue;
        };
        let statuses: Vec<String> = described
            .instance_refreshes()
            .iter()
            .map(|r| match r.status().map(|st| st.as_str()) {
                // Pending turns InProgress with time: both are one running refresh.
                Some("Pending" | "InProgress") => "active".to_owned(),
                other => other.unwrap_or_default().to_owned(),
            })
            .collect();
        if !statuses.is_empty() {
            refreshes.insert(group.to_owned(), statuses);
        }
    }
    Ok(Snapshot {
        component_versions,
        builds,
        parameters,
        refreshes,
    })
}

/// One crash point's result.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CrashCase {
    pub scenario: CrashScenario,
    pub interruption: Interruption,
    /// 1-based position among the scenario's mutating calls (or reads).
    pub step: usize,
    pub operation: String,
    /// Whether the interrupted invocation failed (an answer-lost one never finishes).
    pub interrupted_run_failed: bool,
    /// Re-runs it took to succeed.
    pub reruns: usize,
    /// The final state equals the uninterrupted run's.
    pub state_kept: bool,
    /// A resource cancelled twice: none may be.
    pub cancelled_twice: bool,
    /// What differed, when anything did.
    pub difference: Option<String>,
}

/// The uninterrupted run: its calls, and the state it leaves.
pub struct Baseline {
    pub requests: Vec<RecordedRequest>,
    pub snapshot: Snapshot,
}

pub async fn baseline(scenario: CrashScenario) -> anyhow::Result<Baseline> {
    let p = scenario.prepare().await?;
    scenario
        .invoke(&p)
        .await
        .with_context(|| format!("{} runs uninterrupted", scenario.name()))?;
    Ok(Baseline {
        requests: p.scenario.bench.emulator.requests(),
        snapshot: snapshot(&p.scenario).await?,
    })
}

/// The steps to interrupt: the baseline's mutating calls or its reads, each with how many
/// calls of the same operation came before it.
pub fn steps(baseline: &Baseline, reads: bool) -> Vec<(String, u32)> {
    let mut seen: BTreeMap<String, u32> = BTreeMap::new();
    let mut steps = Vec::new();
    for request in &baseline.requests {
        let before = seen.entry(request.operation.clone()).or_default();
        if request.is_mutating() != reads && request.succeeded() {
            steps.push((request.operation.clone(), *before));
        }
        *before += 1;
    }
    steps
}

fn cancelled_twice(requests: &[RecordedRequest]) -> bool {
    let mut cancelled = BTreeMap::new();
    for request in requests.iter().filter(|r| {
        r.succeeded()
            && matches!(
                r.operation.as_str(),
                "CancelInstanceRefresh" | "CancelImageCreation"
            )
    }) {
        let target = request.params.to_string();
        *cancelled.entry(target).or_insert(0) += 1;
    }
    cancelled.values().any(|n| *n > 1)
}

/// Interrupts `step` of the scenario as `interruption` says, re-runs it until it succeeds and
/// compares the state with the baseline's.
pub async fn crash(
    scenario: CrashScenario,
    baseline: &Baseline,
    interruption: Interruption,
    step: usize,
    (operation, before): (String, u32),
) -> anyhow::Result<CrashCase> {
    let p = scenario.prepare().await?;
    if interruption == Interruption::ProcessKilled {
        return crash_the_process(scenario, &p, baseline, step, (operation, before)).await;
    }
    let emulator = &p.scenario.bench.emulator;
    let kind = match interruption {
        Interruption::AnswerLost | Interruption::ProcessKilled => FaultKind::LoseAnswer,
        Interruption::Fails | Interruption::ReadFails => FaultKind::ServerError,
    };
    let count = if kind == FaultKind::LoseAnswer {
        1
    } else {
        EXHAUSTED
    };
    emulator.inject(Fault::new(&operation, kind, count).after(before));
    let interrupted_run_failed = if kind == FaultKind::LoseAnswer {
        tokio::select! {
            result = scenario.invoke(&p) => result.is_err(),
            () = emulator.answer_lost() => true,
        }
    } else {
        scenario.invoke(&p).await.is_err()
    };
    emulator.clear_faults();
    let mut reruns = 0;
    while reruns < RERUNS {
        reruns += 1;
        if scenario.invoke(&p).await.is_ok() {
            break;
        }
    }
    compared(
        &p,
        baseline,
        CrashCase {
            scenario,
            interruption,
            step,
            operation,
            interrupted_run_failed,
            reruns,
            state_kept: false,
            cancelled_twice: false,
            difference: None,
        },
    )
    .await
}

/// Fills in how the state after the re-runs compares with the baseline's.
async fn compared(
    p: &Prepared,
    baseline: &Baseline,
    mut case: CrashCase,
) -> anyhow::Result<CrashCase> {
    let after = snapshot(&p.scenario).await?;
    case.state_kept = after == baseline.snapshot;
    case.difference = (!case.state_kept).then(|| {
        format!(
            "expected {}\nfound {}",
            serde_json::to_string(&baseline.snapshot).unwrap_or_default(),
            serde_json::to_string(&after).unwrap_or_default()
        )
    });
    case.cancelled_twice = cancelled_twice(&p.scenario.bench.emulator.requests());
    Ok(case)
}

impl CrashScenario {
    /// The function whose real binary runs this scenario's invocation for `process-killed`:
    /// one whose settings the template's environment gives exactly (the rollback and patch-day
    /// scenarios tune waits and clocks in-process).
    pub fn binary(self) -> Option<&'static str> {
        match self {
            CrashScenario::ImagePushed | CrashScenario::ImageDeleted => Some("image-pushed"),
            CrashScenario::BuildFinished => Some("build-finished"),
            CrashScenario::PatchDay | CrashScenario::Rollback => None,
        }
    }
}

/// The scenario's function as its real binary under the local Runtime API host, with the
/// environment the template would give it on this bench.
async fn function_host(name: &str, p: &Prepared) -> anyhow::Result<FunctionHost> {
    let s = &p.scenario;
    let images: Vec<String> = s
        .common
        .config
        .images
        .iter()
        .map(|i| format!("{}:{}", i.repository, i.tag))
        .collect();
    let environment = crate::demo::template_environment(
        &s.bench,
        &crate::demo::TemplateSettings {
            pipeline_arn: &s.pipeline.pipeline_arn,
            component_name: &s.common.config.component_name,
            images: &images.join(","),
            runtime: s.common.config.runtime.as_str(),
            parameter: PARAMETER,
            groups: &GROUPS.join(","),
        },
    );
    let config = s.bench.emulator.config();
    FunctionHost::start(FunctionSpec {
        name: name.to_owned(),
        binary: binary_dir()?.join(name),
        args: Vec::new(),
        environment,
        memory_mb: 256,
        timeout: Duration::from_secs(120),
        region: config.region.clone(),
        account_id: config.account_id.clone(),
    })
    .await
}

/// Whether the binary's answer is a success Lambda would not retry.
fn succeeded(outcome: &Outcome) -> bool {
    match outcome {
        Outcome::Response(summary) => summary
            .get("batchItemFailures")
            .and_then(Value::as_array)
            .is_none_or(Vec::is_empty),
        _ => false,
    }
}

/// The N-th mutating call is carried out, and the function's process is killed before the
/// answer reaches it; a new process gets the same event until one succeeds.
async fn crash_the_process(
    scenario: CrashScenario,
    p: &Prepared,
    baseline: &Baseline,
    step: usize,
    (operation, before): (String, u32),
) -> anyhow::Result<CrashCase> {
    let name = scenario
        .binary()
        .with_context(|| format!("{} has no binary scenario", scenario.name()))?;
    let emulator = &p.scenario.bench.emulator;
    emulator.inject(Fault::new(&operation, FaultKind::LoseAnswer, 1).after(before));
    let mut host = function_host(name, p).await?;
    let killed = tokio::select! {
        outcome = host.invoke(&p.input) => !succeeded(&outcome?),
        () = emulator.answer_lost() => true,
    };
    // Dropping the host kills the process (and its Runtime API), mid-invocation.
    drop(host);
    emulator.clear_faults();
    let mut reruns = 0;
    while reruns < RERUNS {
        reruns += 1;
        let mut host = function_host(name, p).await?;
        if succeeded(&host.invoke(&p.input).await?) {
            break;
        }
    }
    compared(
        p,
        baseline,
        CrashCase {
            scenario,
            interruption: Interruption::ProcessKilled,
            step,
            operation,
            interrupted_run_failed: killed,
            reruns,
            state_kept: false,
            cancelled_twice: false,
            difference: None,
        },
    )
    .await
}

/// Which calls of a scenario are interrupted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Calls {
    /// Each mutating call fails, and separately is carried out with its answer lost.
    Mutating,
    /// Each read fails.
    Reads,
}

/// Every crash point of `scenario` among `calls`.
pub async fn crash_everywhere(
    scenario: CrashScenario,
    calls: Calls,
) -> anyhow::Result<Vec<CrashCase>> {
    let baseline = baseline(scenario).await?;
    let mut cases = Vec::new();
    let steps = steps(&baseline, calls == Calls::Reads);
    for (index, step) in steps.into_iter().enumerate() {
        let interruptions: &[Interruption] = match (calls, scenario.binary()) {
            (Calls::Mutating, Some(_)) => &[
                Interruption::Fails,
                Interruption::AnswerLost,
                Interruption::ProcessKilled,
            ],
            (Calls::Mutating, None) => &[Interruption::Fails, Interruption::AnswerLost],
            (Calls::Reads, _) => &[Interruption::ReadFails],
        };
        for interruption in interruptions {
            cases.push(crash(scenario, &baseline, *interruption, index + 1, step.clone()).await?);
        }
    }
    Ok(cases)
}

/// One concurrency case's result.
#[derive(Debug, Clone, Serialize)]
pub struct ConcurrencyCase {
    pub case: &'static str,
    /// Invocations run at once.
    pub runs: usize,
    pub state_kept: bool,
    pub difference: Option<String>,
}

fn case(case: &'static str, runs: usize, problem: Option<String>) -> ConcurrencyCase {
    ConcurrencyCase {
        case,
        runs,
        state_kept: problem.is_none(),
        difference: problem,
    }
}

/// Re-runs `scenario` until it succeeds (as Lambda and SQS would), at most [`RERUNS`] times.
async fn settle(scenario: CrashScenario, p: &Prepared) -> anyhow::Result<()> {
    let mut last = Ok(());
    for _ in 0..RERUNS {
        last = scenario.invoke(p).await;
        if last.is_ok() {
            return Ok(());
        }
    }
    last
}

/// At most one build running, and no two component versions with one document.
fn one_build_no_duplicate_versions(snapshot: &Snapshot) -> Option<String> {
    let running = snapshot
        .builds
        .iter()
        .filter(|(_, status)| !matches!(status.as_str(), "AVAILABLE" | "FAILED" | "CANCELLED"))
        .count();
    let mut hashes: Vec<&String> = snapshot.component_versions.iter().map(|(_, h)| h).collect();
    hashes.sort();
    let versions = hashes.len();
    hashes.dedup();
    if running > 1 {
        Some(format!(
            "{running} builds run at once: {:?}",
            snapshot.builds
        ))
    } else if hashes.len() != versions {
        Some(format!(
            "two component versions carry one document: {:?}",
            snapshot.component_versions
        ))
    } else {
        None
    }
}

/// patch-day's forced run and image-pushed's batch at the same moment, on an account whose
/// images both would cache: at most one build, no duplicate version, and the newest version
/// holds every pushed digest.
pub async fn patch_day_beside_image_pushed() -> anyhow::Result<ConcurrencyCase> {
    let pushed = CrashScenario::ImagePushed.prepare().await?;
    let s = &pushed.scenario;
    let force = json!({"force": true, "reason": "concurrency"});
    let patch_day = || CrashScenario::PatchDay.invoke_on(s, &force, &pushed.settings, Utc::now());
    let (a, b) = tokio::join!(CrashScenario::ImagePushed.invoke(&pushed), patch_day());
    if a.is_err() {
        settle(CrashScenario::ImagePushed, &pushed).await?;
    }
    if b.is_err() {
        patch_day().await?;
    }
    let after = snapshot(s).await?;
    let mut problem = one_build_no_duplicate_versions(&after);
    let newest = prepull::aws::imagebuilder::read_component_state(
        &s.imagebuilder,
        &s.common.config.component_name,
    )
    .await?;
    for image in &s.common.config.images {
        let current = ecr_digest(s, image).await?;
        if newest.latest_manifest.digest_of(image).map(|d| d.as_str()) != Some(current.as_str()) {
            problem.get_or_insert_with(|| {
                format!("{image} at {current} is not in the newest version")
            });
        }
    }
    Ok(case("patch-day and image-pushed at once", 2, problem))
}

/// The parameter history with each run of versions holding one value folded into one, and
/// each label kept with the value its version holds.
fn folded(versions: &[(i64, String, Vec<String>)]) -> Vec<(String, Vec<String>)> {
    let mut out: Vec<(String, Vec<String>)> = Vec::new();
    for (_, value, labels) in versions {
        match out.last_mut() {
            Some((last, kept)) if last == value => {
                kept.extend(labels.iter().cloned());
                kept.sort();
            }
            _ => out.push((value.clone(), labels.clone())),
        }
    }
    out
}

/// The same AVAILABLE event delivered twice at once (EventBridge delivers at least once, and
/// with `ReservedConcurrency=false` nothing serialises build-finished). Parameter Store has no
/// conditional write, so both deliveries may write the same AMI: the state must be what one
/// delivery leaves, except that a region may hold that AMI in two consecutive versions (the
/// build's label on one of them).
pub async fn same_build_event_twice(baseline: &Snapshot) -> anyhow::Result<ConcurrencyCase> {
    let p = CrashScenario::BuildFinished.prepare().await?;
    let (a, b) = tokio::join!(
        CrashScenario::BuildFinished.invoke(&p),
        CrashScenario::BuildFinished.invoke(&p),
    );
    if a.is_err() || b.is_err() {
        settle(CrashScenario::BuildFinished, &p).await?;
    }
    let after = snapshot(&p.scenario).await?;
    let fold = |s: &Snapshot| -> BTreeMap<String, Vec<(String, Vec<String>)>> {
        s.parameters
            .iter()
            .map(|(region, versions)| (region.clone(), folded(versions)))
            .collect()
    };
    let same = after.component_versions == baseline.component_versions
        && after.builds == baseline.builds
        && after.refreshes == baseline.refreshes
        && fold(&after) == fold(baseline);
    let problem = (!same).then(|| {
        format!(
            "expected {}\nfound {}",
            serde_json::to_string(baseline).unwrap_or_default(),
            serde_json::to_string(&after).unwrap_or_default()
        )
    });
    Ok(case("build-finished: one event twice at once", 2, problem))
}

/// A rollback and a late redelivery of the newest build's event at once: whichever wins, every
/// region holds one build's AMI, and each group has at most one refresh running.
pub async fn rollback_beside_a_late_event() -> anyhow::Result<ConcurrencyCase> {
    let p = CrashScenario::Rollback.prepare().await?;
    let s = &p.scenario;
    let images = s
        .imagebuilder
        .list_image_pipeline_images()
        .image_pipeline_arn(&s.pipeline.pipeline_arn)
        .send()
        .await?;
    let newest = images
        .image_summary_list()
        .iter()
        .filter_map(|i| i.arn())
        .max()
        .context("two builds")?
        .to_owned();
    let mut late = crate::fixtures::load("imagebuilder-available.json")?;
    late["resources"][0] = json!(newest);
    late["detail"]["state"]["status"] = json!("AVAILABLE");
    let (a, b) = tokio::join!(
        CrashScenario::Rollback.invoke(&p),
        invoke_build_finished(s, &p.settings, late.clone()),
    );
    if a.is_err() {
        settle(CrashScenario::Rollback, &p).await?;
    }
    if b.is_err() {
        invoke_build_finished(s, &p.settings, late).await?;
    }
    let after = snapshot(s).await?;
    let mut problem = None;
    let builds = final_builds(s, &after).await?;
    let values: Vec<&Option<String>> = builds.values().collect();
    if values.iter().any(|b| b.is_none()) || values.windows(2).any(|w| w[0] != w[1]) {
        problem = Some(format!(
            "the regions hold different builds' AMIs: {builds:?}"
        ));
    }
    if problem.is_none() {
        problem = two_refreshes_running(&after);
    }
    Ok(case(
        "build-finished: a rollback and a late event at once",
        2,
        problem,
    ))
}

/// A group with more than one refresh running: Auto Scaling allows one, so this would mean a
/// start that should have been refused, or state read wrong.
fn two_refreshes_running(snapshot: &Snapshot) -> Option<String> {
    snapshot
        .refreshes
        .iter()
        .find(|(_, refreshes)| refreshes.iter().filter(|r| *r == "active").count() > 1)
        .map(|(group, _)| format!("{group} has two refreshes running"))
}

/// Per region, the image whose AMI the parameter holds last (`None`: an AMI no image made).
async fn final_builds(
    s: &Scenario,
    after: &Snapshot,
) -> anyhow::Result<BTreeMap<String, Option<String>>> {
    let amis = images_by_ami(s).await?;
    Ok(after
        .parameters
        .iter()
        .map(|(region, versions)| {
            let last = versions.last().map(|(_, value, _)| value);
            (region.clone(), last.and_then(|ami| amis.get(ami)).cloned())
        })
        .collect())
}

/// Every AMI the pipeline's images distributed, with the image's version.
async fn images_by_ami(s: &Scenario) -> anyhow::Result<BTreeMap<String, String>> {
    let mut amis = BTreeMap::new();
    let images = s
        .imagebuilder
        .list_image_pipeline_images()
        .image_pipeline_arn(&s.pipeline.pipeline_arn)
        .send()
        .await?;
    for image in images.image_summary_list() {
        let arn = image.arn().unwrap_or_default();
        let detail = s
            .imagebuilder
            .get_image()
            .image_build_version_arn(arn)
            .send()
            .await?;
        for ami in detail
            .image()
            .and_then(|i| i.output_resources())
            .map(|o| o.amis())
            .unwrap_or_default()
        {
            if let Some(id) = ami.image() {
                amis.insert(id.to_owned(), arn.to_owned());
            }
        }
    }
    Ok(amis)
}

/// The digest ECR holds for `image` now.
async fn ecr_digest(
    s: &Scenario,
    image: &prepull::core::image::ImageRef,
) -> anyhow::Result<String> {
    let described = s
        .ecr
        .describe_images()
        .repository_name(image.repository.as_str())
        .image_ids(
            aws_sdk_ecr::types::ImageIdentifier::builder()
                .image_tag(image.tag.as_str())
                .build(),
        )
        .send()
        .await?;
    described
        .image_details()
        .first()
        .and_then(|d| d.image_digest())
        .map(str::to_owned)
        .with_context(|| format!("ECR has no {image}"))
}

/// Two builds' AVAILABLE events at once (the older one late): whichever runs first, every
/// region ends on the newer build's AMI and each group has at most one refresh running.
pub async fn two_builds_at_once() -> anyhow::Result<ConcurrencyCase> {
    let p = CrashScenario::BuildFinished.prepare().await?;
    let s = &p.scenario;
    crate::bench::until_next_second().await;
    let newer = build_and_finish(
        s,
        push_batch(s, &[("team/web", "v42", "web 2")], PUSHED_AT[1]).await?,
    )
    .await?;
    let newer_image = newer["resources"][0]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let (a, b) = tokio::join!(
        invoke_build_finished(s, &p.settings, p.input.clone()),
        invoke_build_finished(s, &p.settings, newer.clone()),
    );
    if a.is_err() {
        invoke_build_finished(s, &p.settings, p.input.clone()).await?;
    }
    if b.is_err() {
        invoke_build_finished(s, &p.settings, newer).await?;
    }
    let after = snapshot(s).await?;
    let mut problem = None;
    for (region, build) in final_builds(s, &after).await? {
        if build.as_ref() != Some(&newer_image) {
            problem = Some(format!(
                "{region} ends on {build:?}'s AMI, not {newer_image}'s"
            ));
        }
    }
    if problem.is_none() {
        problem = two_refreshes_running(&after);
    }
    Ok(case(
        "build-finished: two builds' events at once",
        2,
        problem,
    ))
}
