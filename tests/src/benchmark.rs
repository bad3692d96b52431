//! What `make benchmark` measures: each function's cold start under the local Runtime API
//! host beside two baselines, the AWS calls of each scenario beside its floor and, with every
//! answer delayed as AWS's, how many of them it waits for in sequence, and how bursts of
//! pushes coalesce into builds. Times are printed and written to `bench/results/`, never
//! asserted: the machine is noisy. The call counts and build counts are exact.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use serde::Serialize;
use serde_json::{Value, json};

use crate::bench::until_next_second;
use crate::demo::{TemplateSettings, template_environment};
use crate::emulator::{Emulator, RecordedRequest};
use crate::moto::workspace_root;
use crate::runtime_api::{FunctionHost, FunctionSpec};
use crate::scenario::{ACCOUNT, REGION, Scenario, push_event, sqs_batch};
use crate::seed::{PipelineSeed, seed_fleet_template, seed_group};

/// The Auto Scaling groups of the build-finished scenarios.
pub const GROUPS: [&str; 2] = ["eks-windows-a", "eks-windows-b"];
/// The distribution regions of the build-finished scenarios.
pub const REGIONS: [&str; 2] = ["us-east-1", "eu-west-1"];
const PARAMETER: &str = "/prepull/windows/ami";
/// The memory every function gets in `template.yaml`.
const MEMORY_MB: u32 = 256;
const TIMEOUT: Duration = Duration::from_secs(60);

/// One cold process: started, given one event, answered.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct ColdSample {
    /// Process start to its first `GET /runtime/invocation/next`: Lambda's init phase.
    pub init_ms: f64,
    /// Process start to its answer to the first event.
    pub response_ms: f64,
    /// The process's peak resident memory (`VmHWM`) after answering.
    pub peak_rss_kib: u64,
    /// Of `response_ms`, the time the bench spent answering the process's AWS calls.
    pub bench_ms: f64,
}

/// The medians of a subject's cold samples.
#[derive(Debug, Clone, Serialize)]
pub struct ColdStart {
    pub subject: String,
    pub event: String,
    pub samples: usize,
    pub init_ms: f64,
    pub response_ms: f64,
    /// Of `response_ms`, the bench answering the AWS calls (the emulator, and moto behind it).
    pub bench_ms: f64,
    pub peak_rss_kib: u64,
    /// The AWS calls each cold invocation made.
    pub aws_calls: usize,
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    match values.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => values[n / 2],
        n => f64::midpoint(values[n / 2 - 1], values[n / 2]),
    }
}

impl ColdStart {
    fn from_samples(subject: &str, event: &str, samples: &[ColdSample], aws_calls: usize) -> Self {
        let rss = median(samples.iter().map(|s| s.peak_rss_kib as f64).collect());
        Self {
            subject: subject.to_owned(),
            event: event.to_owned(),
            samples: samples.len(),
            init_ms: median(samples.iter().map(|s| s.init_ms).collect()),
            response_ms: median(samples.iter().map(|s| s.response_ms).collect()),
            bench_ms: median(samples.iter().map(|s| s.bench_ms).collect()),
            peak_rss_kib: rss as u64,
            aws_calls,
        }
    }
}

/// Starts `spec` as a fresh process, sends it `payload`, and measures it; the answer must be
/// a response (not an error), and `check` must accept it.
pub async fn cold_sample(
    spec: FunctionSpec,
    bench: &Emulator,
    payload: &Value,
    check: impl Fn(&Value) -> anyhow::Result<()>,
) -> anyhow::Result<ColdSample> {
    let name = spec.name.clone();
    let busy_before = bench.busy();
    let mut host = FunctionHost::start(spec).await?;
    let outcome = host.invoke(payload).await?;
    let response = host.since_start();
    let bench_time = bench.busy().saturating_sub(busy_before);
    let init = host.init_duration();
    let rss = host.peak_rss_kib();
    let logs = host.logs();
    host.stop().await;
    let answer = outcome
        .response()
        .with_context(|| format!("{name} did not answer: {outcome:?}; logs: {logs:?}"))?;
    check(answer).with_context(|| format!("{name} answered {answer}"))?;
    Ok(ColdSample {
        init_ms: init
            .context("the process never asked for an event")?
            .as_secs_f64()
            * 1e3,
        response_ms: response.as_secs_f64() * 1e3,
        peak_rss_kib: rss.context("no /proc status for the process")?,
        bench_ms: bench_time.as_secs_f64() * 1e3,
    })
}

/// Where the release binaries are: `CARGO_TARGET_DIR` or `target/`, `release/`.
pub fn release_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| workspace_root().join("target"), PathBuf::from)
        .join("release")
}

fn spec(name: &str, binary: &Path, args: Vec<String>, env: Vec<(String, String)>) -> FunctionSpec {
    FunctionSpec {
        name: name.to_owned(),
        binary: binary.to_path_buf(),
        args,
        environment: env,
        memory_mb: MEMORY_MB,
        timeout: TIMEOUT,
        region: REGION.to_owned(),
        account_id: ACCOUNT.to_owned(),
    }
}

/// The environment `template.yaml` gives the functions, pointed at the bench.
pub fn function_environment(scenario: &Scenario, images: &[&str]) -> Vec<(String, String)> {
    template_environment(
        &scenario.bench,
        &TemplateSettings {
            pipeline_arn: &scenario.pipeline.pipeline_arn,
            component_name: "prepull-cache",
            images: &images.join(","),
            runtime: "containerd",
            parameter: PARAMETER,
            groups: &GROUPS.join(","),
        },
    )
}

/// How many watched images every scenario has: as a small fleet's cache would hold.
pub const WATCHED_IMAGES: usize = 10;
/// The repositories they are in: ECR is read one call per repository.
pub const WATCHED_REPOSITORIES: usize = 2;

/// Watched image `n`: its repository and tag.
pub fn watched_image(n: usize) -> (String, String) {
    (
        format!("team/svc{}", n % WATCHED_REPOSITORIES),
        format!("live{n}"),
    )
}

/// The watched images of every scenario, as `repository:tag`.
pub fn watched_images() -> Vec<String> {
    (0..WATCHED_IMAGES)
        .map(|n| {
            let (repository, tag) = watched_image(n);
            format!("{repository}:{tag}")
        })
        .collect()
}

/// A bench seeded for every scenario: ten watched images, a pipeline distributing to two
/// regions, and two Auto Scaling groups.
pub async fn scenario() -> anyhow::Result<Scenario> {
    let images = watched_images();
    let refs: Vec<&str> = images.iter().map(String::as_str).collect();
    let seed = PipelineSeed {
        regions: REGIONS.iter().map(|r| (*r).to_owned()).collect(),
        ..PipelineSeed::default()
    };
    let scenario = Scenario::start(
        &refs,
        seed,
        &[
            ("PREPULL_AMI_PARAMETER", PARAMETER),
            ("PREPULL_RUNTIME", "containerd"),
        ],
    )
    .await?;
    let autoscaling = aws_sdk_autoscaling::Client::new(&scenario.bench.sdk_config().await);
    seed_fleet_template(&scenario.bench, PARAMETER).await?;
    for group in GROUPS {
        seed_group(&autoscaling, group).await?;
    }
    scenario.bench.emulator.clear_requests();
    Ok(scenario)
}

/// Every build still running ends AVAILABLE; returns the last one's EventBridge event.
pub async fn finish_running_builds(scenario: &Scenario) -> anyhow::Result<Option<Value>> {
    let mut building = Vec::new();
    let mut pages = scenario
        .imagebuilder
        .list_image_pipeline_images()
        .image_pipeline_arn(&scenario.pipeline.pipeline_arn)
        .into_paginator()
        .send();
    while let Some(page) = pages.next().await {
        for image in page?.image_summary_list() {
            let status = image.state().and_then(|s| s.status());
            if status.is_some_and(|s| s.as_str() == "BUILDING")
                && let Some(arn) = image.arn()
            {
                building.push(arn.to_owned());
            }
        }
    }
    let mut last = None;
    for arn in building {
        let event = scenario
            .bench
            .emulator
            .finish_image(&arn, "AVAILABLE", None)
            .map_err(|e| anyhow::anyhow!("finishing {arn}: {}", e.message))?;
        last = Some(event);
    }
    Ok(last)
}

/// Every group's refresh ends, as the fleet would once it rolled the AMI out; then the clock
/// moves to the next whole second (Auto Scaling's times are whole seconds).
pub async fn refreshes_succeed(scenario: &Scenario) -> anyhow::Result<()> {
    for group in GROUPS {
        // A group with no refresh running has nothing to finish.
        let _no_refresh = scenario
            .bench
            .emulator
            .finish_refresh(group, "Successful", None);
    }
    until_next_second().await;
    Ok(())
}

/// Pushes a new digest of watched image `n` and returns the push event.
pub async fn changed_push(scenario: &Scenario, n: usize, content: &str) -> anyhow::Result<Value> {
    let (repository, tag) = watched_image(n);
    let digest = scenario.push(&repository, &tag, content).await?;
    let time = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    Ok(push_event(
        &format!("push-{}", uuid::Uuid::new_v4()),
        &repository,
        &tag,
        &digest,
        &time,
    ))
}

/// Runs image-pushed in this process, as the bench's tests do, and returns its summary.
pub async fn image_pushed(scenario: &Scenario, events: &[Value]) -> anyhow::Result<Value> {
    let summary = prepull::image_pushed::handle(&scenario.common, sqs_batch(events)).await?;
    Ok(serde_json::to_value(summary)?)
}

fn field<'a>(answer: &'a Value, name: &str) -> &'a str {
    answer.get(name).and_then(Value::as_str).unwrap_or_default()
}

fn expect_outcome(answer: &Value, outcome: &str) -> anyhow::Result<()> {
    anyhow::ensure!(
        field(answer, "outcome") == outcome,
        "expected the outcome {outcome}"
    );
    Ok(())
}

/// What the cold-start measurement runs: `samples` cold processes of each subject.
pub struct ColdStartPlan {
    pub samples: usize,
    pub floor: PathBuf,
    pub functions: PathBuf,
    /// The Python interpreter with boto3 and awslambdaric.
    pub python: PathBuf,
}

/// CA bundles where Linux distributions keep them: Amazon Linux 2023's (Lambda's
/// `provided.al2023`) first.
const CA_BUNDLES: [&str; 3] = [
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/ssl/cert.pem",
];

/// The root certificates as Lambda's `provided.al2023` offers them: one bundle file, and a
/// certificate directory with no per-certificate files (`/etc/pki/tls/certs` holds only
/// bundles). The SDK's HTTPS client reads the system's roots at init (rustls-native-certs,
/// through `openssl-probe`'s paths); on a Debian host the directory holds a file per root, and
/// reading them all costs about 6 ms that Lambda never pays. The benchmark reports one run
/// with this host's own directory too.
fn lambda_like_roots() -> anyhow::Result<Vec<(String, String)>> {
    let bundle = CA_BUNDLES
        .iter()
        .find(|path| Path::new(path).is_file())
        .context("no CA bundle on this host")?;
    let empty = std::env::temp_dir().join("prepull-benchmark-no-ca-files");
    std::fs::create_dir_all(&empty)?;
    Ok(vec![
        ("SSL_CERT_FILE".to_owned(), (*bundle).to_owned()),
        ("SSL_CERT_DIR".to_owned(), empty.display().to_string()),
    ])
}

/// Measures every subject's cold start: the floor, prepull's three functions, and the Python
/// baseline, one fresh process per sample, on one bench.
pub async fn cold_starts(plan: &ColdStartPlan) -> anyhow::Result<Vec<ColdStart>> {
    let scenario = scenario().await?;
    let images = watched_images();
    let refs: Vec<&str> = images.iter().map(String::as_str).collect();
    let host_env = function_environment(&scenario, &refs);
    let mut env = host_env.clone();
    env.extend(lambda_like_roots()?);
    let binary = |name: &str| plan.functions.join(name);
    let mut results = Vec::new();
    let emulator = &scenario.bench.emulator;

    // The floor answers the same changed-push batch without calling anything.
    let push = sqs_batch(&[changed_push(&scenario, 0, "floor")
        .await
        .context("pushing")?]);
    let mut samples = Vec::new();
    for _ in 0..plan.samples {
        samples.push(
            cold_sample(
                spec("lambda-floor", &plan.floor, Vec::new(), Vec::new()),
                emulator,
                &push,
                |answer| {
                    anyhow::ensure!(answer["records"] == 1, "expected one record");
                    Ok(())
                },
            )
            .await?,
        );
    }
    results.push(ColdStart::from_samples(
        "floor: bare lambda_runtime",
        "changed push (SQS, 1 record)",
        &samples,
        0,
    ));

    // image-pushed: each process gets a push that changes the cache while no build runs.
    let image_pushed_with = |env: &[(String, String)]| {
        spec(
            "image-pushed",
            &binary("image-pushed"),
            Vec::new(),
            env.to_vec(),
        )
    };
    let built = |answer: &Value| expect_outcome(answer, "build-started");
    results.push(
        changed_push_cold_starts(
            &scenario,
            plan.samples,
            "prepull image-pushed",
            || image_pushed_with(&env),
            built,
        )
        .await?,
    );
    results.push(
        changed_push_cold_starts(
            &scenario,
            plan.samples,
            "prepull image-pushed, this host's CA directory",
            || image_pushed_with(&host_env),
            built,
        )
        .await?,
    );

    // build-finished: each process publishes a new AVAILABLE build in two regions and
    // refreshes two groups.
    let mut samples = Vec::new();
    let mut calls = 0;
    for run in 0..plan.samples {
        finish_running_builds(&scenario).await?;
        refreshes_succeed(&scenario).await?;
        let push = changed_push(&scenario, run % 10, &format!("available {run}")).await?;
        let pushed = image_pushed(&scenario, &[push]).await?;
        let event = finish_running_builds(&scenario)
            .await?
            .with_context(|| format!("the push started no build: {pushed}"))?;
        emulator.clear_requests();
        samples.push(
            cold_sample(
                spec(
                    "build-finished",
                    &binary("build-finished"),
                    Vec::new(),
                    env.clone(),
                ),
                emulator,
                &event,
                |answer| expect_outcome(answer, "published"),
            )
            .await?,
        );
        calls = emulator.requests().len();
    }
    refreshes_succeed(&scenario).await?;
    results.push(ColdStart::from_samples(
        "prepull build-finished",
        "AVAILABLE, 2 regions, 2 groups",
        &samples,
        calls,
    ));

    // patch-day: the daily scheduled run, with the cache up to date.
    let schedule = json!({"source": "schedule"});
    let mut samples = Vec::new();
    for _ in 0..plan.samples {
        emulator.clear_requests();
        samples.push(
            cold_sample(
                spec("patch-day", &binary("patch-day"), Vec::new(), env.clone()),
                emulator,
                &schedule,
                |answer| expect_outcome(answer, "up-to-date"),
            )
            .await?,
        );
        calls = emulator.requests().len();
    }
    results.push(ColdStart::from_samples(
        "prepull patch-day",
        "scheduled, up to date",
        &samples,
        calls,
    ));

    // The Python baseline: one StartImagePipelineExecution per push, boto3 client at import.
    let handler_dir = workspace_root().join("tests").join("baseline");
    let mut python_env = env.clone();
    python_env.push(("PYTHONPATH".to_owned(), handler_dir.display().to_string()));
    python_env.push(("PYTHONDONTWRITEBYTECODE".to_owned(), "1".to_owned()));
    results.push(
        changed_push_cold_starts(
            &scenario,
            plan.samples,
            "baseline: Python, boto3 + awslambdaric",
            || {
                spec(
                    "python-baseline",
                    &plan.python,
                    ["-m", "awslambdaric", "start_pipeline.handler"]
                        .map(str::to_owned)
                        .to_vec(),
                    python_env.clone(),
                )
            },
            |answer| {
                anyhow::ensure!(
                    field(answer, "imageBuildVersionArn").contains(":image/"),
                    "expected the started build's ARN"
                );
                Ok(())
            },
        )
        .await?,
    );
    Ok(results)
}

/// Cold starts on a changed push: before each sample, the running build ends and a watched
/// image gets a new digest, so every process finds the cache changed and no build running.
async fn changed_push_cold_starts(
    scenario: &Scenario,
    samples: usize,
    subject: &str,
    function: impl Fn() -> FunctionSpec,
    check: impl Fn(&Value) -> anyhow::Result<()> + Copy,
) -> anyhow::Result<ColdStart> {
    let emulator = &scenario.bench.emulator;
    let mut measured = Vec::new();
    let mut calls = 0;
    for run in 0..samples {
        finish_running_builds(scenario).await?;
        let event = changed_push(scenario, run % 10, &format!("{subject} {run}")).await?;
        emulator.clear_requests();
        measured.push(cold_sample(function(), emulator, &sqs_batch(&[event]), check).await?);
        calls = emulator.requests().len();
    }
    Ok(ColdStart::from_samples(
        subject,
        "changed push (SQS, 1 record)",
        &measured,
        calls,
    ))
}

/// A scenario's AWS calls, in order, beside the fewest it could make.
#[derive(Debug, Clone, Serialize)]
pub struct CallCount {
    pub scenario: String,
    pub calls: usize,
    pub floor: usize,
    pub operations: Vec<String>,
    /// Why each call above the floor is made, one entry per call.
    pub above_floor: Vec<String>,
    /// The handler call's exec → response, in process.
    pub response_ms: f64,
}

/// A scenario run again with every answer of the bench delayed as AWS's would be: how many of
/// its calls the handler waited for one after another, which is what a user waits for on AWS
/// and what the bench's millisecond answers hide.
#[derive(Debug, Clone, Serialize)]
pub struct RoundTrips {
    pub scenario: String,
    /// The calls of the delayed run.
    pub calls: usize,
    pub answer_delay_ms: f64,
    /// exec → response without the delay: the call-count run's.
    pub response_ms: f64,
    /// exec → response with the delay.
    pub delayed_response_ms: f64,
    /// `(delayed_response_ms − response_ms) / answer_delay_ms`, to one decimal: calls made side
    /// by side wait out one delay together.
    pub round_trips: f64,
    /// The most calls of the delayed run's log whose spans (arrival to answer) do not overlap:
    /// the calls made one after another, counted without a clock, to check `round_trips` by.
    pub calls_in_sequence: usize,
}

/// `(with − without) / delay`, to one decimal.
pub fn sequential_round_trips(with: f64, without: f64, delay: f64) -> f64 {
    ((with - without) / delay * 10.0).round() / 10.0
}

/// The most requests of which no two were in flight at once (taking the earliest answer first
/// finds the most, for intervals). With a delay, each of them waited it out alone, so the
/// handler waited at least that many delays one after another; unlike the timed figure, the
/// handler's own work neither adds to this count nor hides inside it.
pub fn calls_in_sequence(requests: &[RecordedRequest]) -> usize {
    let mut spans: Vec<(u64, u64)> = requests
        .iter()
        .map(|r| (r.received_us, r.answered_us))
        .collect();
    spans.sort_by_key(|&(_, answered)| answered);
    let mut count = 0;
    let mut free_from = 0;
    for (received, answered) in spans {
        if received >= free_from {
            count += 1;
            free_from = answered;
        }
    }
    count
}

/// One handler call as [`counted`] saw it.
struct Counted<T> {
    answer: T,
    requests: Vec<RecordedRequest>,
    response: Duration,
}

/// Runs one handler call with a cleared request log, every answer delayed by `answer_delay`,
/// and returns the requests it made and its exec → response.
async fn counted<F, T>(
    scenario: &Scenario,
    answer_delay: Duration,
    run: F,
) -> anyhow::Result<Counted<T>>
where
    F: std::future::Future<Output = anyhow::Result<T>>,
{
    let emulator = &scenario.bench.emulator;
    emulator.clear_requests();
    emulator.set_answer_delay(answer_delay);
    let start = Instant::now();
    let value = run.await;
    let response = start.elapsed();
    // Only the measured call is delayed: the setup between scenarios would take seconds more
    // and show nothing.
    emulator.set_answer_delay(Duration::ZERO);
    Ok(Counted {
        answer: value?,
        requests: emulator.requests(),
        response,
    })
}

fn fleet_settings() -> anyhow::Result<prepull::build_finished::FleetSettings> {
    let groups = GROUPS.join(",");
    Ok(prepull::build_finished::FleetSettings::from_lookup(
        |name| match name {
            "PREPULL_AMI_PARAMETER" => Some(PARAMETER.to_owned()),
            "PREPULL_ASG_NAMES" => Some(groups.clone()),
            "PREPULL_REFRESH_IN_PROGRESS" => Some("replace".to_owned()),
            _ => None,
        },
    )?)
}

async fn build_finished(scenario: &Scenario, event: Value) -> anyhow::Result<Value> {
    let summary = prepull::build_finished::handle(
        &scenario.common,
        &fleet_settings()?,
        event,
        Instant::now() + Duration::from_secs(60),
    )
    .await?;
    Ok(serde_json::to_value(summary)?)
}

async fn patch_day(scenario: &Scenario, event: Value) -> anyhow::Result<Value> {
    let images = watched_images();
    let refs: Vec<&str> = images.iter().map(String::as_str).collect();
    let env = function_environment(scenario, &refs);
    let settings = prepull::patch_day::PatchDaySettings::from_lookup(|name| {
        env.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
    })?;
    let summary = prepull::patch_day::handle(
        &scenario.common,
        settings,
        event,
        &uuid::Uuid::new_v4().to_string(),
        chrono::Utc::now(),
    )
    .await?;
    Ok(serde_json::to_value(summary)?)
}

/// Each scenario's calls on a bench where the previous one left it.
pub async fn call_counts() -> anyhow::Result<Vec<CallCount>> {
    Ok(calls_per_scenario(Duration::ZERO)
        .await?
        .into_iter()
        .map(|(count, _)| count)
        .collect())
}

/// The call-count scenarios again, on a fresh bench, with each handler call's answers delayed
/// by `answer_delay`; `without` is the call-count run, whose times are the undelayed ones.
pub async fn round_trips(
    answer_delay: Duration,
    without: &[CallCount],
) -> anyhow::Result<Vec<RoundTrips>> {
    let delay_ms = answer_delay.as_secs_f64() * 1e3;
    calls_per_scenario(answer_delay)
        .await?
        .into_iter()
        .map(|(delayed, in_sequence)| {
            let undelayed = without
                .iter()
                .find(|c| c.scenario == delayed.scenario)
                .with_context(|| format!("no undelayed run of {}", delayed.scenario))?;
            Ok(RoundTrips {
                round_trips: sequential_round_trips(
                    delayed.response_ms,
                    undelayed.response_ms,
                    delay_ms,
                ),
                scenario: delayed.scenario,
                calls: delayed.calls,
                answer_delay_ms: delay_ms,
                response_ms: undelayed.response_ms,
                delayed_response_ms: delayed.response_ms,
                calls_in_sequence: in_sequence,
            })
        })
        .collect()
}

/// Each scenario's calls, and how many of them ran one after another.
async fn calls_per_scenario(answer_delay: Duration) -> anyhow::Result<Vec<(CallCount, usize)>> {
    let scenario = scenario().await?;
    let mut counts = Vec::new();
    let mut record = |name: &str, run: Counted<Value>, floor: usize, why: &[&str]| {
        let operations: Vec<String> = run.requests.iter().map(|r| r.operation.clone()).collect();
        counts.push((
            CallCount {
                scenario: name.to_owned(),
                calls: operations.len(),
                floor,
                operations,
                above_floor: why.iter().map(|w| (*w).to_owned()).collect(),
                response_ms: run.response.as_secs_f64() * 1e3,
            },
            calls_in_sequence(&run.requests),
        ));
    };

    // A first build, finished and published, so every scenario starts from a steady state.
    let first = changed_push(&scenario, 0, "steady").await?;
    image_pushed(&scenario, &[first]).await?;
    let event = finish_running_builds(&scenario)
        .await?
        .context("no first build")?;
    build_finished(&scenario, event).await?;
    refreshes_succeed(&scenario).await?;

    let push = changed_push(&scenario, 1, "changed").await?;
    let run = counted(
        &scenario,
        answer_delay,
        image_pushed(&scenario, std::slice::from_ref(&push)),
    )
    .await?;
    expect_outcome(&run.answer, "build-started")?;
    // Every other watched image's pin is confirmed before the build: one read per repository.
    let changed_extra: Vec<&str> = CHANGED_PUSH_EXTRA
        .iter()
        .copied()
        .chain(std::iter::repeat_n(CONFIRM_DIGEST, WATCHED_REPOSITORIES))
        .collect();
    record("changed push", run, CHANGED_PUSH_FLOOR, &changed_extra);

    let run = counted(&scenario, answer_delay, image_pushed(&scenario, &[push])).await?;
    anyhow::ensure!(
        field(&run.answer, "outcome") != "build-started",
        "a duplicate built"
    );
    let duplicate_extra: Vec<&str> = DUPLICATE_PUSH_EXTRA
        .iter()
        .copied()
        .chain(std::iter::repeat_n(CONFIRM_DIGEST, WATCHED_REPOSITORIES))
        .collect();
    record(
        "duplicate push",
        run,
        DUPLICATE_PUSH_FLOOR,
        &duplicate_extra,
    );

    let event = finish_running_builds(&scenario)
        .await?
        .context("no build")?;
    let run = counted(&scenario, answer_delay, build_finished(&scenario, event)).await?;
    expect_outcome(&run.answer, "published")?;
    record(
        "AVAILABLE event (2 regions, 2 groups)",
        run,
        AVAILABLE_FLOOR,
        AVAILABLE_EXTRA,
    );
    refreshes_succeed(&scenario).await?;

    let mut burst = Vec::new();
    for n in 0..50 {
        burst.push(changed_push(&scenario, n % 10, &format!("burst {n}")).await?);
    }
    let run = counted(&scenario, answer_delay, image_pushed(&scenario, &burst)).await?;
    expect_outcome(&run.answer, "build-started")?;
    record("50-push burst", run, BURST_FLOOR, BURST_EXTRA);

    let event = finish_running_builds(&scenario)
        .await?
        .context("no build")?;
    build_finished(&scenario, event).await?;
    refreshes_succeed(&scenario).await?;
    let run = counted(
        &scenario,
        answer_delay,
        patch_day(&scenario, json!({"source": "schedule"})),
    )
    .await?;
    expect_outcome(&run.answer, "up-to-date")?;
    record(
        "scheduled run, up to date",
        run,
        UP_TO_DATE_FLOOR,
        UP_TO_DATE_EXTRA,
    );

    let run = counted(
        &scenario,
        answer_delay,
        patch_day(&scenario, json!({"force": true, "reason": "benchmark"})),
    )
    .await?;
    expect_outcome(&run.answer, "build-started")?;
    record("forced run", run, FORCED_FLOOR, FORCED_EXTRA);
    finish_running_builds(&scenario).await?;
    Ok(counts)
}

// The floors: the calls an implementation needs on AWS's APIs if every read saw every write at
// once and nothing ran beside it. Each call prepull makes above its floor is a defence against
// one of those two, named in the `*_WHY` text.

/// Reading the cache component's latest manifest: ListComponents names versions, not builds,
/// so ListComponentBuildVersions finds the build and GetComponent reads its document.
const READ_COMPONENT: usize = 3;
/// Which component version the pipeline's next build takes: GetImagePipeline for the recipe,
/// GetImageRecipe for its components.
const READ_RECIPE: usize = 2;
const PROBE: &str = "ListComponentBuildVersions probes the next version, which ListComponents lags behind after a write (two pushes moments apart would otherwise plan the same version)";
const VISIBLE: &str = "GetComponent waits until the new version resolves before the build starts (Image Builder's reads lag its writes; a build started at once could take the previous version)";
const PARENT: &str = "GetParameter reads the recipe's `ssm:` parent image, part of the build's identity (its client token)";
const RESOLVE: &str = "GetComponent resolves the build version the pipeline will take, part of the build's identity (its client token)";
const YIELD: &str = "ListImagePipelineImages after the start finds a build another invocation started at the same moment, so the later one yields";
const LATENCY_MANIFEST: &str = "GetComponent reads the manifest of the AMI published now (its component version's build `/1`; the builds are listed only when a concurrent writer made another): the pushes it lacks are the ones the new AMI brings (the `prepull:oldest-new-push` tag, where the push-to-AMI latency metric starts)";
const CONFIRM_DIGEST: &str = "BatchGetImage, one per repository beside the component read, reads every watched tag: a pin its tag still names is confirmed by it (a build pinning a deleted digest fails at its pull, and so would every later one); only a pin whose tag moved on is read again, by digest";
const LABEL_READ: &str = "GetParameter of `name:label` tells a retried event that its version exists (GetParameters could fold it into the current-value read, but that its answer names the selector is undocumented)";
const CONFIRM: &str = "GetParameter of the new version waits for Parameter Store's asynchronous `aws:ec2:image` validation to accept the AMI";

/// The component read, the write, the recipe, "is a build running", the start.
const CHANGED_PUSH_FLOOR: usize = READ_COMPONENT + 1 + READ_RECIPE + 1 + 1;
const CHANGED_PUSH_EXTRA: &[&str] = &[PROBE, VISIBLE, PARENT, LATENCY_MANIFEST, YIELD];
/// The component read shows the manifest unchanged; the recipe and the pipeline's builds show
/// whether that version was built (a run that stopped after writing it left it unbuilt). The
/// pins are confirmed as in a changed push (one read per repository, beside the pipeline
/// read): the run may yet start that unbuilt version.
const DUPLICATE_PUSH_FLOOR: usize = READ_COMPONENT + READ_RECIPE + 1;
const DUPLICATE_PUSH_EXTRA: &[&str] = &[PROBE];
/// GetImage, "is a newer build out", per region the current value, the write and the label,
/// the groups' launch templates (one DescribeAutoScalingGroups, then the one template version
/// the fleet's groups share), per group "is a refresh running" and the start, and the
/// component read that decides the follow-up.
const AVAILABLE_FLOOR: usize =
    1 + 1 + 3 * REGIONS.len() + 1 + 1 + 2 * GROUPS.len() + READ_COMPONENT;
const AVAILABLE_EXTRA: &[&str] = &[LABEL_READ, CONFIRM, LABEL_READ, CONFIRM, PROBE];
/// A changed push, plus BatchGetImage for the images pushed more than once within a second
/// (one call per repository): an event's time is whole seconds, so ECR's current digest
/// decides.
const BURST_FLOOR: usize = CHANGED_PUSH_FLOOR + WATCHED_REPOSITORIES;
const BURST_EXTRA: &[&str] = CHANGED_PUSH_EXTRA;
/// The component read, ECR's digests, the recipe, the pipeline's builds, the parent image.
const UP_TO_DATE_FLOOR: usize = READ_COMPONENT + WATCHED_REPOSITORIES + READ_RECIPE + 1 + 1;
const UP_TO_DATE_EXTRA: &[&str] = &[PROBE];
/// An up-to-date run's reads, then the start.
const FORCED_FLOOR: usize = UP_TO_DATE_FLOOR + 1;
const FORCED_EXTRA: &[&str] = &[PROBE, LATENCY_MANIFEST, RESOLVE, YIELD];

/// How one burst of pushes turned into builds.
#[derive(Debug, Clone, Serialize)]
pub struct Coalescing {
    pub case: String,
    pub pushes: usize,
    pub builds: usize,
    pub follow_ups: usize,
}

fn builds_started(scenario: &Scenario) -> usize {
    scenario
        .bench
        .emulator
        .requests_of("StartImagePipelineExecution")
        .iter()
        .filter(|r| r.error_code.is_none())
        .count()
}

/// Ends the running build AVAILABLE, runs build-finished on it, and counts the builds it
/// started: the follow-ups.
async fn follow_ups(scenario: &Scenario) -> anyhow::Result<usize> {
    let event = finish_running_builds(scenario)
        .await?
        .context("the pushes started no build")?;
    scenario.bench.emulator.clear_requests();
    build_finished(scenario, event).await?;
    Ok(builds_started(scenario))
}

/// Bursts of pushes in one batch, and pushes spread across a running build: each must make
/// exactly one build and at most one follow-up.
pub async fn coalescing() -> anyhow::Result<Vec<Coalescing>> {
    let mut results = Vec::new();
    for size in [1, 10, 50, 500] {
        let scenario = scenario().await?;
        let mut burst = Vec::new();
        for n in 0..size {
            burst.push(changed_push(&scenario, n % 10, &format!("burst {size} {n}")).await?);
        }
        scenario.bench.emulator.clear_requests();
        image_pushed(&scenario, &burst).await?;
        results.push(Coalescing {
            case: format!("{size} pushes in one batch"),
            pushes: size,
            builds: builds_started(&scenario),
            follow_ups: follow_ups(&scenario).await?,
        });
    }

    let scenario = scenario().await?;
    let first = changed_push(&scenario, 0, "spread 0").await?;
    scenario.bench.emulator.clear_requests();
    image_pushed(&scenario, &[first]).await?;
    let spread = 20;
    for n in 1..spread {
        let push = changed_push(&scenario, n % 10, &format!("spread {n}")).await?;
        image_pushed(&scenario, &[push]).await?;
    }
    results.push(Coalescing {
        case: format!("{spread} pushes, one per batch, while a build runs"),
        pushes: spread,
        builds: builds_started(&scenario),
        follow_ups: follow_ups(&scenario).await?,
    });
    Ok(results)
}

/// What the bench itself costs: the median round trip of one Image Builder call (the
/// emulator) and one SSM call (moto, behind the emulator), and of image-pushed's whole
/// changed push in this process with warm clients. A cold function's exec → response is its
/// init, these round trips, and its own work.
#[derive(Debug, Clone, Serialize)]
pub struct BenchLatency {
    pub emulator_call_ms: f64,
    pub moto_call_ms: f64,
    pub changed_push_in_process_ms: f64,
}

pub async fn bench_latency(samples: usize) -> anyhow::Result<BenchLatency> {
    let scenario = scenario().await?;
    let clients = &scenario.common.clients;
    let mut emulator = Vec::new();
    let mut moto = Vec::new();
    let mut handler = Vec::new();
    // One call first, so that every timed call finds its connection open.
    clients.imagebuilder().list_components().send().await?;
    clients.ssm().describe_parameters().send().await?;
    for run in 0..samples {
        let start = Instant::now();
        clients.imagebuilder().list_components().send().await?;
        emulator.push(start.elapsed().as_secs_f64() * 1e3);
        let start = Instant::now();
        clients.ssm().describe_parameters().send().await?;
        moto.push(start.elapsed().as_secs_f64() * 1e3);
        finish_running_builds(&scenario).await?;
        let event = changed_push(&scenario, run % 10, &format!("warm {run}")).await?;
        let start = Instant::now();
        let answer = image_pushed(&scenario, &[event]).await?;
        handler.push(start.elapsed().as_secs_f64() * 1e3);
        expect_outcome(&answer, "build-started")?;
    }
    Ok(BenchLatency {
        emulator_call_ms: median(emulator),
        moto_call_ms: median(moto),
        changed_push_in_process_ms: median(handler),
    })
}

/// The cache document's size for a number of typical images: a 20-character repository, a
/// 12-character tag, one registry, a push time each.
#[derive(Debug, Clone, Serialize)]
pub struct DocumentSize {
    pub images: usize,
    pub containerd: usize,
    pub docker: usize,
}

fn typical_manifest(count: usize) -> anyhow::Result<prepull::core::manifest::Manifest> {
    use prepull::core::image::{Digest, ImageRef, Registry};
    use prepull::core::manifest::PinnedImage;
    let registry = Registry::for_account("123456789012", "us-east-1")?;
    (0..count)
        .map(|n| {
            Ok(PinnedImage {
                image: ImageRef::parse(
                    &format!("platform/service-{n:03}:v1.2.3-lts{:02}", n % 100),
                    &registry,
                )?,
                digest: Digest::parse(&format!("sha256:{:064x}", n + 1))?,
                pushed_at: chrono::DateTime::from_timestamp(1_790_000_000 + i64::try_from(n)?, 0),
            })
        })
        .collect()
}

/// The document's size at 1, 10, 50 and 100 typical images, and at the most that fit.
pub fn document_sizes() -> anyhow::Result<Vec<DocumentSize>> {
    use prepull::core::document::{DocumentError, Runtime, render};
    let size = |count: usize, runtime: Runtime| -> anyhow::Result<usize> {
        Ok(render(&typical_manifest(count)?, runtime, "prepull-cache")?
            .chars()
            .count())
    };
    let most = |runtime: Runtime| -> anyhow::Result<usize> {
        match render(&typical_manifest(999)?, runtime, "prepull-cache") {
            Err(DocumentError::TooLarge { fit, .. }) => Ok(fit),
            Ok(_) => anyhow::bail!("999 images fit: the limit is gone"),
            Err(error) => Err(error.into()),
        }
    };
    let fit = most(Runtime::Containerd)?.min(most(Runtime::Docker)?);
    [1, 10, 50, 100, fit]
        .into_iter()
        .map(|images| {
            Ok(DocumentSize {
                images,
                containerd: size(images, Runtime::Containerd)?,
                docker: size(images, Runtime::Docker)?,
            })
        })
        .collect()
}
