//! prepull's main job, end to end on one machine: the three real Lambda binaries, each under
//! a local Lambda Runtime API, against the bench, driven through the story of a fleet.
//!
//! `make demo` runs it through `prepull-demo`; the `demo_scenario` test runs the same
//! [`run`], so the demo cannot rot.

use std::fmt::Write as _;
use std::io::Write;
use std::time::Duration;

use anyhow::{Context, bail};
use chrono::{Datelike, Utc};
use serde_json::{Value, json};

use crate::bench::Bench;
use crate::cargo_lambda::CargoLambdaWatch;
use crate::moto::workspace_root;
use crate::runtime_api::{FunctionHost, FunctionSpec, Outcome, binary_dir};
use crate::scenario::{ensure_repository, push_event, push_image, sqs_batch};
use crate::seed::{
    PipelineSeed, ROOT_VOLUME_GIB, seed_group_with_template, seed_launch_template, seed_pipeline,
};

/// The images the demo watches unless told otherwise: an IIS site, a worker and an agent.
pub const DEFAULT_IMAGES: &str =
    "windows/web:ltsc2022,windows/worker:ltsc2022,windows/agent:ltsc2022";
/// Stands in for the public EKS-optimized Windows Server 2022 parameter, which only AWS can
/// write: the recipe's parent image is `ssm:` this.
pub const PARENT_PARAMETER: &str = "/prepull/demo/windows-server-2022-eks-ami";
pub const AMI_PARAMETER: &str = "/prepull/ami-id";
pub const GROUP: &str = "windows-nodes";
pub const LAUNCH_TEMPLATE: &str = "prepull-windows-nodes";

/// Memory and timeouts as `template.yaml` sets them.
const MEMORY_MB: u32 = 256;
const IMAGE_PUSHED_TIMEOUT: Duration = Duration::from_secs(60);
const PATCH_DAY_TIMEOUT: Duration = Duration::from_secs(120);
const BUILD_FINISHED_TIMEOUT: Duration = Duration::from_secs(300);

#[derive(Debug, Clone)]
pub struct Options {
    /// Watched images, `repository:tag`, as `PREPULL_IMAGES` takes them (in this account).
    pub images: Vec<String>,
    /// `containerd` or `docker`, as `PREPULL_RUNTIME` takes it.
    pub runtime: String,
    /// Print each function's log lines after its summary.
    pub show_logs: bool,
    /// Which Lambda Runtime API runs the functions.
    pub runtime_api: RuntimeApi,
}

/// Which Lambda Runtime API runs the functions' binaries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuntimeApi {
    /// `cargo lambda watch`, which builds and runs each function with `cargo run`.
    CargoLambda,
    /// [`crate::runtime_api`]: the built binaries, one process and one Runtime API each.
    Local,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            images: DEFAULT_IMAGES.split(',').map(str::to_owned).collect(),
            runtime: "containerd".to_owned(),
            show_logs: false,
            runtime_api: RuntimeApi::Local,
        }
    }
}

/// One step of the story and whether it did what it should.
#[derive(Debug, Clone)]
pub struct Step {
    pub name: &'static str,
    pub function: &'static str,
    pub expected: &'static str,
    pub observed: String,
    pub passed: bool,
    pub summary: Value,
}

#[derive(Debug, Clone, Default)]
pub struct Report {
    pub steps: Vec<Step>,
    /// The cache component's document as the last build used it.
    pub document: String,
    /// Each function's output lines (its JSON logs and its EMF metric lines).
    pub logs: Vec<(String, Vec<String>)>,
}

impl Report {
    pub fn passed(&self) -> bool {
        !self.steps.is_empty() && self.steps.iter().all(|s| s.passed)
    }

    /// The steps as a fixed-width table.
    pub fn table(&self) -> String {
        let width = |f: fn(&Step) -> usize, title: &str| {
            self.steps.iter().map(f).max().unwrap_or(0).max(title.len())
        };
        let name_width = width(|s| s.name.len(), "step");
        let function_width = width(|s| s.function.len(), "function");
        let observed_width = width(|s| s.observed.len(), "observed");
        let mut text = String::new();
        let _ = writeln!(
            text,
            "| # | {:name_width$} | {:function_width$} | {:observed_width$} | ok |",
            "step", "function", "observed"
        );
        let _ = writeln!(
            text,
            "|---|{}|{}|{}|----|",
            "-".repeat(name_width + 2),
            "-".repeat(function_width + 2),
            "-".repeat(observed_width + 2)
        );
        for (index, step) in self.steps.iter().enumerate() {
            let _ = writeln!(
                text,
                "| {} | {:name_width$} | {:function_width$} | {:observed_width$} | {} |",
                index + 1,
                step.name,
                step.function,
                step.observed,
                if step.passed { "ok" } else { "FAIL" }
            );
        }
        text
    }
}

#[derive(Debug, Clone, Copy)]
enum Function {
    ImagePushed,
    PatchDay,
    BuildFinished,
}

impl Function {
    const ALL: [Function; 3] = [
        Function::ImagePushed,
        Function::PatchDay,
        Function::BuildFinished,
    ];

    fn name(self) -> &'static str {
        match self {
            Function::ImagePushed => "image-pushed",
            Function::PatchDay => "patch-day",
            Function::BuildFinished => "build-finished",
        }
    }

    fn timeout(self) -> Duration {
        match self {
            Function::ImagePushed => IMAGE_PUSHED_TIMEOUT,
            Function::PatchDay => PATCH_DAY_TIMEOUT,
            Function::BuildFinished => BUILD_FINISHED_TIMEOUT,
        }
    }
}

/// Refuses to run a function binary older than any source it is built from (its own crate,
/// `prepull` and `prepull-core`): a stale binary would demonstrate old code. `make demo` and
/// `cargo test --workspace` build the binaries before running them; a bare `cargo test -p
/// prepull-tests` does not, and is told so.
fn ensure_fresh(binary: &std::path::Path, function: &str) -> anyhow::Result<()> {
    let built = std::fs::metadata(binary)
        .and_then(|m| m.modified())
        .with_context(|| {
            format!(
                "{} is not built: run `cargo build --workspace`",
                binary.display()
            )
        })?;
    let root = workspace_root();
    let sources = [
        root.join("functions").join(function),
        root.join("shared").join("src"),
        root.join("shared").join("core"),
        root.join("shared").join("Cargo.toml"),
        root.join("Cargo.toml"),
        root.join("Cargo.lock"),
    ];
    let mut newest: Option<(std::time::SystemTime, std::path::PathBuf)> = None;
    let mut pending: Vec<std::path::PathBuf> = sources.to_vec();
    while let Some(path) = pending.pop() {
        let metadata = std::fs::metadata(&path)?;
        if metadata.is_dir() {
            for entry in std::fs::read_dir(&path)? {
                pending.push(entry?.path());
            }
        } else {
            let modified = metadata.modified()?;
            if newest.as_ref().is_none_or(|(at, _)| modified > *at) {
                newest = Some((modified, path));
            }
        }
    }
    if let Some((changed, source)) = newest
        && changed > built
    {
        anyhow::bail!(
            "{} is older than {}: run `cargo build --workspace` (make demo does) so the demo runs today's code",
            binary.display(),
            source.display()
        );
    }
    Ok(())
}

/// The three functions, running under one of the Runtime APIs.
enum Functions {
    Local(Vec<FunctionHost>),
    CargoLambda(Box<CargoLambdaWatch>),
}

impl Functions {
    async fn start(
        bench: &Bench,
        runtime_api: RuntimeApi,
        environment: &[(String, String)],
    ) -> anyhow::Result<Self> {
        let dir = binary_dir()?;
        if runtime_api == RuntimeApi::CargoLambda {
            let venv_bin = workspace_root().join(".venv").join("bin");
            let watch = CargoLambdaWatch::start(Some(&venv_bin), environment).await?;
            return Ok(Functions::CargoLambda(Box::new(watch)));
        }
        let config = bench.emulator.config();
        let mut hosts = Vec::new();
        for function in Function::ALL {
            ensure_fresh(&dir.join(function.name()), function.name())?;
            hosts.push(
                FunctionHost::start(FunctionSpec {
                    name: function.name().to_owned(),
                    binary: dir.join(function.name()),
                    args: Vec::new(),
                    environment: environment.to_vec(),
                    memory_mb: MEMORY_MB,
                    timeout: function.timeout(),
                    region: config.region.clone(),
                    account_id: config.account_id.clone(),
                })
                .await?,
            );
        }
        Ok(Functions::Local(hosts))
    }

    async fn invoke(&mut self, function: Function, payload: &Value) -> anyhow::Result<Outcome> {
        match self {
            Functions::Local(hosts) => {
                let host = hosts
                    .iter_mut()
                    .find(|h| h.name() == function.name())
                    .context("the function is not running")?;
                host.invoke(payload).await
            }
            Functions::CargoLambda(watch) => {
                watch
                    .invoke(function.name(), payload, function.timeout())
                    .await
            }
        }
    }

    /// Each source of log lines with its lines.
    fn logs(&self) -> Vec<(String, Vec<String>)> {
        match self {
            Functions::Local(hosts) => hosts
                .iter()
                .map(|h| (h.name().to_owned(), h.logs()))
                .collect(),
            Functions::CargoLambda(watch) => vec![("cargo lambda watch".to_owned(), watch.logs())],
        }
    }

    async fn stop(self) {
        match self {
            Functions::Local(hosts) => {
                for host in hosts {
                    host.stop().await;
                }
            }
            Functions::CargoLambda(watch) => watch.stop().await,
        }
    }
}

/// What the story has learnt so far.
#[derive(Default)]
struct Story {
    first_build: String,
    follow_up_build: String,
    first_ami: String,
    component_build: String,
}

/// Runs the whole demo on `bench`, writing progress to `out`. Errors are for a demo that
/// could not run at all; a step that ran but did the wrong thing is a failed step in the
/// report.
pub async fn run(bench: &Bench, options: &Options, out: &mut dyn Write) -> anyhow::Result<Report> {
    if options.images.len() < 2 {
        bail!(
            "the demo needs at least two images (it pushes two in one burst), got {}",
            options.images.len()
        );
    }
    let images = options
        .images
        .iter()
        .map(|image| {
            image
                .split_once(':')
                .map(|(r, t)| (r.to_owned(), t.to_owned()))
                .with_context(|| {
                    format!(
                        "the demo's images are repository:tag in the bench's account, got {image:?}"
                    )
                })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;

    let sdk = bench.sdk_config().await;
    let ecr = aws_sdk_ecr::Client::new(&sdk);
    let ssm = aws_sdk_ssm::Client::new(&sdk);
    let imagebuilder = aws_sdk_imagebuilder::Client::new(&sdk);
    let autoscaling = aws_sdk_autoscaling::Client::new(&sdk);

    heading(out, "Seeding the bench as a user's account would look")?;
    for (repository, tag) in &images {
        ensure_repository(&ecr, repository).await?;
        let digest = push_image(&ecr, repository, tag, &format!("{repository}:{tag}#1")).await?;
        writeln!(out, "  ECR          {repository}:{tag} = {digest}")?;
    }
    // The parent image is an AMI EC2 knows: Parameter Store validates `aws:ec2:image` values.
    let parent_ami = bench
        .emulator
        .register_ami(
            &bench.emulator.config().region,
            "windows-server-2022-parent",
        )
        .await?;
    put_parameter(&ssm, PARENT_PARAMETER, &parent_ami, "text").await?;
    put_parameter(&ssm, AMI_PARAMETER, &parent_ami, "aws:ec2:image").await?;
    writeln!(
        out,
        "  SSM          {PARENT_PARAMETER} = {parent_ami} (the parent image), {AMI_PARAMETER} = {parent_ami}"
    )?;
    seed_launch_template(
        bench,
        LAUNCH_TEMPLATE,
        &format!("resolve:ssm:{AMI_PARAMETER}"),
        Some(ROOT_VOLUME_GIB),
    )
    .await?;
    seed_group_with_template(&autoscaling, GROUP, LAUNCH_TEMPLATE).await?;
    writeln!(
        out,
        "  EC2/ASG      launch template {LAUNCH_TEMPLATE} (ImageId resolve:ssm:{AMI_PARAMETER}), group {GROUP}"
    )?;
    let seed = PipelineSeed {
        parent_image: format!("ssm:{PARENT_PARAMETER}"),
        ..PipelineSeed::default()
    };
    let pipeline = seed_pipeline(&imagebuilder, &seed).await?;
    writeln!(
        out,
        "  Image Builder pipeline {} (recipe parent ssm:{PARENT_PARAMETER}, cache component {} x.x.x)",
        pipeline.pipeline_arn, seed.component_name
    )?;

    let environment = function_environment(bench, options, &pipeline.pipeline_arn, &seed);
    let mut functions = Functions::start(bench, options.runtime_api, &environment).await?;
    let result = story(bench, &images, &mut functions, out).await;
    let failed = result.as_ref().map_or(true, |(report, _)| !report.passed());
    let logs = functions.logs();
    if failed || options.show_logs {
        for (source, lines) in &logs {
            writeln!(out, "\n--- {source} logs ---")?;
            for line in lines {
                writeln!(out, "{line}")?;
            }
        }
    }
    functions.stop().await;
    let (mut report, component_build_arn) = result?;
    report.document = component_document(&imagebuilder, &component_build_arn).await?;
    report.logs = logs;
    Ok(report)
}

/// The variables `template.yaml` gives the functions, with this bench's values.
fn function_environment(
    bench: &Bench,
    options: &Options,
    pipeline_arn: &str,
    seed: &PipelineSeed,
) -> Vec<(String, String)> {
    template_environment(
        bench,
        &TemplateSettings {
            pipeline_arn,
            component_name: &seed.component_name,
            images: &options.images.join(","),
            runtime: &options.runtime,
            parameter: AMI_PARAMETER,
            groups: GROUP,
        },
    )
}

/// What a stack's parameters put into the functions' environment.
#[derive(Debug, Clone, Copy)]
pub struct TemplateSettings<'a> {
    pub pipeline_arn: &'a str,
    pub component_name: &'a str,
    /// `repository:tag`, comma-separated.
    pub images: &'a str,
    pub runtime: &'a str,
    pub parameter: &'a str,
    /// Auto Scaling group names, comma-separated.
    pub groups: &'a str,
}

/// The environment `template.yaml` gives the functions, pointed at `bench`, with the template's
/// defaults for the rest. The patch-day offset is chosen so that today is an ordinary day: a
/// scheduled run then rebuilds only for a reason of its own.
pub fn template_environment(bench: &Bench, settings: &TemplateSettings) -> Vec<(String, String)> {
    let mut environment = bench.env();
    environment.retain(|(name, _)| name != "PREPULL_BENCH_URL");
    let today = Utc::now().date_naive();
    let offset = (1..=14)
        .find(|offset| {
            prepull::core::schedule::patch_day(today.year(), today.month(), *offset) != Some(today)
        })
        .unwrap_or(1);
    environment.extend(
        [
            ("PREPULL_PIPELINE_ARN", settings.pipeline_arn.to_owned()),
            ("PREPULL_COMPONENT_NAME", settings.component_name.to_owned()),
            ("PREPULL_IMAGES", settings.images.to_owned()),
            ("PREPULL_RUNTIME", settings.runtime.to_owned()),
            ("PREPULL_PATCH_DAY_OFFSET_DAYS", offset.to_string()),
            ("PREPULL_MAX_IMAGE_AGE_DAYS", "35".to_owned()),
            ("PREPULL_AMI_PARAMETER", settings.parameter.to_owned()),
            ("PREPULL_ASG_NAMES", settings.groups.to_owned()),
            ("PREPULL_REFRESH_MIN_HEALTHY_PERCENT", "90".to_owned()),
            ("PREPULL_REFRESH_WARMUP_SECONDS", "300".to_owned()),
            ("PREPULL_REFRESH_IN_PROGRESS", "replace".to_owned()),
            ("RUST_LOG", "info".to_owned()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v)),
    );
    environment
}

async fn story(
    bench: &Bench,
    images: &[(String, String)],
    functions: &mut Functions,
    out: &mut dyn Write,
) -> anyhow::Result<(Report, String)> {
    let sdk = bench.sdk_config().await;
    let ecr = aws_sdk_ecr::Client::new(&sdk);
    let ssm = aws_sdk_ssm::Client::new(&sdk);
    let emulator = &bench.emulator;
    let mut report = Report::default();
    let mut story = Story::default();
    let now = || Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string();

    // 1. A burst: two pushes land in one SQS batch.
    heading(out, "1. Two images are pushed in one burst")?;
    let mut events = Vec::new();
    for (index, (repository, tag)) in images.iter().take(2).enumerate() {
        let digest = push_image(&ecr, repository, tag, &format!("{repository}:{tag}#2")).await?;
        writeln!(out, "  pushed {repository}:{tag} = {digest}")?;
        events.push(push_event(
            &format!("burst-{index}"),
            repository,
            tag,
            &digest,
            &now(),
        ));
    }
    emulator.clear_requests();
    let outcome = functions
        .invoke(Function::ImagePushed, &sqs_batch(&events))
        .await?;
    let summary = show(out, &outcome)?;
    let versions = emulator.requests_of("CreateComponent").len();
    let builds = emulator.requests_of("StartImagePipelineExecution").len();
    story.first_build = text(&summary, "image_build_version_arn");
    report.steps.push(Step {
        name: "burst of two pushes",
        function: "image-pushed",
        expected: "one component version, one build",
        observed: format!(
            "{}: {versions} version ({}), {builds} build",
            text(&summary, "outcome"),
            text(&summary, "component_version")
        ),
        passed: text(&summary, "outcome") == "build-started"
            && versions == 1
            && builds == 1
            && !story.first_build.is_empty()
            && summary["images"].as_array().map(Vec::len) == Some(images.len()),
        summary,
    });

    // 2. A third push while that build runs.
    heading(out, "2. A third push while the build runs")?;
    let (repository, tag) = &images[0];
    let digest = push_image(&ecr, repository, tag, &format!("{repository}:{tag}#3")).await?;
    writeln!(out, "  pushed {repository}:{tag} = {digest}")?;
    emulator.clear_requests();
    let event = push_event("third", repository, tag, &digest, &now());
    let outcome = functions
        .invoke(Function::ImagePushed, &sqs_batch(&[event]))
        .await?;
    let summary = show(out, &outcome)?;
    let builds = emulator.requests_of("StartImagePipelineExecution").len();
    story.component_build = text(&summary, "component_build_version_arn");
    report.steps.push(Step {
        name: "a push while the build runs",
        function: "image-pushed",
        expected: "queued: a new version, no second build",
        observed: format!(
            "{}: version {}, {builds} build started",
            text(&summary, "outcome"),
            text(&summary, "component_version")
        ),
        passed: text(&summary, "outcome") == "queued-behind-running-build" && builds == 0,
        summary,
    });

    // 3. The first build becomes AVAILABLE.
    heading(out, "3. The build becomes AVAILABLE")?;
    let event = emulator
        .finish_image(&story.first_build, "AVAILABLE", None)
        .map_err(|e| anyhow::anyhow!("finishing the first build: {e:?}"))?;
    let outcome = functions.invoke(Function::BuildFinished, &event).await?;
    let summary = show(out, &outcome)?;
    story.first_ami = summary["parameters"][0]["ami"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let published = parameter_value(&ssm, AMI_PARAMETER).await?;
    let follow_up = text(&summary, "follow_up");
    story.follow_up_build = follow_up
        .strip_prefix("started ")
        .unwrap_or_default()
        .to_owned();
    let refresh = text(&summary["refreshes"][0], "outcome");
    report.steps.push(Step {
        name: "the build becomes AVAILABLE",
        function: "build-finished",
        expected: "AMI published, refresh started, follow-up build started",
        observed: format!(
            "{}: {AMI_PARAMETER} = {published}, refresh {refresh}, follow-up {}",
            text(&summary, "outcome"),
            if story.follow_up_build.is_empty() {
                "none"
            } else {
                "started"
            }
        ),
        passed: text(&summary, "outcome") == "published"
            && !story.first_ami.is_empty()
            && published == story.first_ami
            && refresh == "started"
            && !story.follow_up_build.is_empty(),
        summary,
    });

    // 4. The first rollout and the follow-up build complete.
    heading(out, "4. The rollout and the follow-up build complete")?;
    finish_refresh(bench, out).await?;
    let event = if story.follow_up_build.is_empty() {
        Value::Null
    } else {
        emulator
            .finish_image(&story.follow_up_build, "AVAILABLE", None)
            .map_err(|e| anyhow::anyhow!("finishing the follow-up build: {e:?}"))?
    };
    let outcome = functions.invoke(Function::BuildFinished, &event).await?;
    let summary = show(out, &outcome)?;
    let second_ami = summary["parameters"][0]["ami"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let published = parameter_value(&ssm, AMI_PARAMETER).await?;
    let refresh = text(&summary["refreshes"][0], "outcome");
    report.steps.push(Step {
        name: "the follow-up build completes",
        function: "build-finished",
        expected: "newer AMI published, refresh started, nothing left to build",
        observed: format!(
            "{}: {AMI_PARAMETER} = {published}, refresh {refresh}, follow-up {}",
            text(&summary, "outcome"),
            text(&summary, "follow_up")
        ),
        passed: text(&summary, "outcome") == "published"
            && !second_ami.is_empty()
            && second_ami != story.first_ami
            && published == second_ami
            && refresh == "started"
            && text(&summary, "follow_up") == "not-needed",
        summary,
    });

    // 5. What an operator sees now.
    heading(out, "5. An operator asks for the status")?;
    finish_refresh(bench, out).await?;
    emulator.clear_requests();
    let outcome = functions
        .invoke(Function::BuildFinished, &json!({"action": "status"}))
        .await?;
    let summary = show(out, &outcome)?;
    let mutating = emulator.mutating_operations();
    let current = summary["manifest"]["value"].as_array().map_or(0, |images| {
        images
            .iter()
            .filter(|i| i["ecr"]["value"]["state"] == "current")
            .count()
    });
    let published_everywhere = summary["last_image"]["value"]["amis"]
        .as_array()
        .is_some_and(|amis| !amis.is_empty() && amis.iter().all(|a| a["in_parameter"] == true));
    let refresh = text(&summary["refreshes"][0]["value"], "status");
    report.steps.push(Step {
        name: "status",
        function: "build-finished",
        expected: "every image current, the AMI in SSM, no build running, no change",
        observed: format!(
            "{current} of {} images current, AMI {} SSM, build {}, refresh {refresh}, {} mutating calls",
            images.len(),
            if published_everywhere { "in" } else { "not in" },
            if summary["running_build"]["value"].is_null() { "none running" } else { "running" },
            mutating.len()
        ),
        passed: current == images.len()
            && published_everywhere
            && summary["running_build"]["value"].is_null()
            && refresh == "Successful"
            && mutating.is_empty(),
        summary,
    });

    // 6. The daily schedule on an ordinary day.
    heading(
        out,
        "6. The daily schedule runs on a day that is not patch day",
    )?;
    emulator.clear_requests();
    let outcome = functions
        .invoke(Function::PatchDay, &json!({"source": "schedule"}))
        .await?;
    let summary = show(out, &outcome)?;
    let mutating = emulator.mutating_operations();
    report.steps.push(Step {
        name: "scheduled run, not patch day",
        function: "patch-day",
        expected: "up to date, no change",
        observed: format!(
            "{}: {} conditions hold, {} mutating calls",
            text(&summary, "outcome"),
            summary["reasons"].as_array().map_or(0, Vec::len),
            mutating.len()
        ),
        passed: text(&summary, "outcome") == "up-to-date"
            && summary["reasons"].as_array().is_some_and(Vec::is_empty)
            && mutating.is_empty(),
        summary,
    });

    // 7. An operator's forced dry run.
    heading(out, "7. An operator forces a rebuild, as a dry run")?;
    emulator.clear_requests();
    let outcome = functions
        .invoke(
            Function::PatchDay,
            &json!({"force": true, "reason": "demo: new base layer", "dry_run": true}),
        )
        .await?;
    let summary = show(out, &outcome)?;
    let mutating = emulator.mutating_operations();
    writeln!(
        out,
        "  plan: {}",
        serde_json::to_string_pretty(&summary["plan"])?
    )?;
    report.steps.push(Step {
        name: "forced dry run",
        function: "patch-day",
        expected: "a plan with a build, no mutating call",
        observed: format!(
            "dry run: {}, {} mutating calls",
            if summary["plan"]["build"].is_null() {
                "the plan starts no build"
            } else {
                "the plan starts a build"
            },
            mutating.len()
        ),
        passed: summary["dry_run"] == json!(true)
            && text(&summary, "outcome") == "build-started"
            && !summary["plan"]["build"].is_null()
            && mutating.is_empty(),
        summary,
    });

    // 8. Rollback.
    heading(out, "8. An operator rolls back")?;
    let outcome = functions
        .invoke(Function::BuildFinished, &json!({"action": "rollback"}))
        .await?;
    let summary = show(out, &outcome)?;
    let published = parameter_value(&ssm, AMI_PARAMETER).await?;
    let refresh = text(&summary["refreshes"][0], "outcome");
    report.steps.push(Step {
        name: "rollback",
        function: "build-finished",
        expected: "previous AMI published again, refresh started",
        observed: format!(
            "{}: {AMI_PARAMETER} = {published}, refresh {refresh}",
            text(&summary, "outcome")
        ),
        passed: text(&summary, "outcome") == "rolled-back"
            && published == story.first_ami
            && refresh == "started",
        summary,
    });

    // 9. A hostile push.
    heading(out, "9. A push with a hostile tag arrives")?;
    emulator.clear_requests();
    let hostile = push_event(
        "hostile",
        repository,
        "latest';Remove-Item-C:\\",
        &digest,
        &now(),
    );
    let outcome = functions
        .invoke(Function::ImagePushed, &sqs_batch(&[hostile]))
        .await?;
    let summary = show(out, &outcome)?;
    let mutating = emulator.mutating_operations();
    let failures = summary["batchItemFailures"].as_array().map_or(0, Vec::len);
    report.steps.push(Step {
        name: "hostile tag",
        function: "image-pushed",
        expected: "rejected to the dead-letter queue, no call",
        observed: format!(
            "{}: {failures} batch item failure, {} mutating calls",
            text(&summary, "outcome"),
            mutating.len()
        ),
        passed: text(&summary, "outcome") == "rejected" && failures == 1 && mutating.is_empty(),
        summary,
    });

    Ok((report, story.component_build))
}

fn heading(out: &mut dyn Write, title: &str) -> std::io::Result<()> {
    writeln!(out, "\n== {title}")
}

/// Prints the function's answer and returns its JSON summary (or the error, as JSON).
fn show(out: &mut dyn Write, outcome: &Outcome) -> anyhow::Result<Value> {
    let summary = match outcome {
        Outcome::Response(value) => value.clone(),
        Outcome::Error {
            error_type,
            error_message,
        } => json!({"outcome": "error", "errorType": error_type, "errorMessage": error_message}),
        Outcome::Exited { status, init_error } => {
            json!({"outcome": "exited", "status": status, "initError": init_error})
        }
        Outcome::TimedOut => json!({"outcome": "timed-out"}),
    };
    writeln!(out, "{}", serde_json::to_string_pretty(&summary)?)?;
    Ok(summary)
}

fn text(value: &Value, field: &str) -> String {
    match &value[field] {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

async fn finish_refresh(bench: &Bench, out: &mut dyn Write) -> anyhow::Result<()> {
    bench
        .emulator
        .finish_refresh(GROUP, "Successful", None)
        .map_err(|e| anyhow::anyhow!("finishing the refresh on {GROUP}: {e:?}"))?;
    writeln!(out, "  (the instance refresh on {GROUP} finishes)")?;
    crate::bench::until_next_second().await;
    Ok(())
}

async fn put_parameter(
    ssm: &aws_sdk_ssm::Client,
    name: &str,
    value: &str,
    data_type: &str,
) -> anyhow::Result<()> {
    ssm.put_parameter()
        .name(name)
        .value(value)
        .r#type(aws_sdk_ssm::types::ParameterType::String)
        .data_type(data_type)
        .overwrite(true)
        .send()
        .await
        .with_context(|| format!("PutParameter {name}"))?;
    Ok(())
}

async fn parameter_value(ssm: &aws_sdk_ssm::Client, name: &str) -> anyhow::Result<String> {
    let parameter = ssm
        .get_parameter()
        .name(name)
        .send()
        .await
        .with_context(|| format!("GetParameter {name}"))?;
    Ok(parameter
        .parameter()
        .and_then(|p| p.value())
        .unwrap_or_default()
        .to_owned())
}

/// The document of the newest cache component version the story wrote.
async fn component_document(
    imagebuilder: &aws_sdk_imagebuilder::Client,
    component_build_arn: &str,
) -> anyhow::Result<String> {
    if component_build_arn.is_empty() {
        return Ok(String::new());
    }
    let component = imagebuilder
        .get_component()
        .component_build_version_arn(component_build_arn)
        .send()
        .await
        .context("GetComponent")?;
    Ok(component
        .component()
        .and_then(|c| c.data())
        .unwrap_or_default()
        .to_owned())
}
