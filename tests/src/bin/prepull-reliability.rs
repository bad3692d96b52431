//! `make reliability`: prepull's guarantees, proved systematically and printed as figures.
//!
//! - Crash at every step: every mutating call of each scenario fails (retries exhausted) and,
//!   separately, is carried out with its answer lost (the process gone mid-invocation); every
//!   read fails. Each is re-run until it succeeds, and the state must equal an uninterrupted
//!   run's.
//! - Concurrency: invocations that race on the same account.
//! - Fuzzing: the event readers and the validators, for a time budget per target.
//! - The hostile corpus and the properties, which the suite checks, are counted here.
//!
//! Exits non-zero when any state was lost, anything was cancelled twice, or a fuzz target
//! failed. Results go to `bench/results/reliability.{json,md}`.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use clap::Parser;
use prepull_bench::fuzz::{self, FuzzRun, Grammar};
use prepull_bench::moto::workspace_root;
use prepull_bench::reliability::{
    self, Calls, ConcurrencyCase, CrashCase, CrashScenario, Interruption,
};
use serde::Serialize;

#[derive(Parser, Debug)]
#[command(about = "Crash prepull at every step, race it, fuzz it; print what survived")]
struct Args {
    /// Seconds each fuzz target runs.
    #[arg(long, default_value_t = 60)]
    fuzz_seconds: u64,
    /// Interrupt only the mutating calls, not every read (a quicker run).
    #[arg(long)]
    mutating_only: bool,
    /// Where the JSON and Markdown results go; nothing is written without it.
    #[arg(long)]
    results: Option<PathBuf>,
    /// Run only this scenario's crash points and print them as JSON (what the parent process
    /// runs in each child: one moto per process, so the scenarios run side by side).
    #[arg(long, value_enum)]
    scenario: Option<CrashScenario>,
    /// With `--scenario`: which of its calls to interrupt.
    #[arg(long, value_enum, default_value = "mutating")]
    calls: Calls,
}

/// Runs each scenario's crash points in a child process of its own (each with its own moto),
/// side by side: a run spends most of its time waiting on the bench, not on the CPU.
async fn crash_in_children(mutating_only: bool) -> anyhow::Result<Vec<CrashCase>> {
    let exe = std::env::current_exe()?;
    let parts: &[Calls] = if mutating_only {
        &[Calls::Mutating]
    } else {
        &[Calls::Mutating, Calls::Reads]
    };
    let jobs = CrashScenario::ALL
        .into_iter()
        .flat_map(|scenario| parts.iter().map(move |calls| (scenario, *calls)));
    let children = jobs.map(|(scenario, calls)| {
        let mut command = tokio::process::Command::new(&exe);
        command
            .arg("--calls")
            .arg(
                clap::ValueEnum::to_possible_value(&calls)
                    .map_or_else(String::new, |v| v.get_name().to_owned()),
            )
            .arg("--scenario")
            .arg(
                clap::ValueEnum::to_possible_value(&scenario)
                    .map_or_else(String::new, |v| v.get_name().to_owned()),
            )
            .stderr(std::process::Stdio::inherit())
            .kill_on_drop(true);
        async move {
            let output = command.output().await?;
            anyhow::ensure!(
                output.status.success(),
                "{}: the child process failed ({})",
                scenario.name(),
                output.status
            );
            let cases: Vec<CrashCase> = serde_json::from_slice(&output.stdout)
                .with_context(|| format!("{}: the child's JSON", scenario.name()))?;
            Ok::<_, anyhow::Error>(cases)
        }
    });
    let mut cases = Vec::new();
    for result in futures_util::future::join_all(children).await {
        cases.extend(result?);
    }
    Ok(cases)
}

#[derive(Debug, Serialize)]
struct Report {
    crash_cases: Vec<CrashCase>,
    concurrency: Vec<ConcurrencyCase>,
    fuzz: Vec<FuzzRun>,
    hostile_cases: Vec<(String, usize)>,
    properties: Vec<(&'static str, &'static str)>,
    seconds: f64,
}

/// The properties the suite checks with proptest (and their files), for the table.
const PROPERTIES: [(&str, &str); 4] = [
    (
        "any manifest that fits renders a document AWSTOE accepts, names each image once per phase, renders deterministically and reads back",
        "tests/tests/suite/awstoe_documents.rs",
    ),
    (
        "every rendered script parses as PowerShell, and no name, tag or digest changes its syntax tree",
        "tests/tests/suite/awstoe_documents.rs",
    ),
    (
        "the validators never accept a character outside ECR's grammar",
        "tests/tests/suite/fuzzing.rs",
    ),
    (
        "the event readers never panic",
        "tests/tests/suite/fuzzing.rs",
    ),
];

fn hostile_cases() -> anyhow::Result<Vec<(String, usize)>> {
    let dir = workspace_root()
        .join("tests")
        .join("fixtures")
        .join("hostile");
    let mut counts = Vec::new();
    for function in ["image-pushed", "patch-day", "build-finished"] {
        let path = dir.join(format!("{function}.json"));
        let cases: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(&path).with_context(|| path.display().to_string())?,
        )?;
        let count = cases
            .as_array()
            .or_else(|| cases["cases"].as_array())
            .map_or(0, Vec::len);
        counts.push((function.to_owned(), count));
    }
    Ok(counts)
}

fn run_fuzz(budget: Duration) -> anyhow::Result<Vec<FuzzRun>> {
    let fixtures = fuzz::reader_fixtures()?;
    let grammar = Grammar::load()?;
    Ok(vec![
        fuzz::fuzz(
            "event readers (arbitrary and mutated events)",
            fuzz::reader_input(fixtures),
            budget,
            |input| fuzz::readers_never_panic(&input),
        ),
        fuzz::fuzz(
            "validators (repository, tag, digest)",
            fuzz::hostile_string(),
            budget,
            |value| grammar.check(&value),
        ),
    ])
}

fn markdown(report: &Report) -> String {
    let mut out = String::from("# prepull reliability\n\n");
    out.push_str("| scenario | interruption | crash points | state lost | cancelled twice | most re-runs |\n|---|---|---|---|---|---|\n");
    for scenario in CrashScenario::ALL {
        for interruption in [
            Interruption::Fails,
            Interruption::AnswerLost,
            Interruption::ProcessKilled,
            Interruption::ReadFails,
        ] {
            let cases: Vec<&CrashCase> = report
                .crash_cases
                .iter()
                .filter(|c| c.scenario == scenario && c.interruption == interruption)
                .collect();
            if cases.is_empty() {
                continue;
            }
            let lost = cases.iter().filter(|c| !c.state_kept).count();
            let twice = cases.iter().filter(|c| c.cancelled_twice).count();
            let reruns = cases.iter().map(|c| c.reruns).max().unwrap_or(0);
            let label = match interruption {
                Interruption::Fails => "mutating call fails",
                Interruption::AnswerLost => "mutating call done, answer lost",
                Interruption::ProcessKilled => "mutating call done, the binary killed",
                Interruption::ReadFails => "read fails",
            };
            out.push_str(&format!(
                "| {} | {label} | {} | {lost} | {twice} | {reruns} |\n",
                scenario.name(),
                cases.len()
            ));
        }
    }
    out.push_str("\n| concurrency case | runs at once | state lost |\n|---|---|---|\n");
    for case in &report.concurrency {
        out.push_str(&format!(
            "| {} | {} | {} |\n",
            case.case,
            case.runs,
            u8::from(!case.state_kept)
        ));
    }
    out.push_str("\n| fuzz target | cases | seconds | failure |\n|---|---|---|---|\n");
    for run in &report.fuzz {
        out.push_str(&format!(
            "| {} | {} | {:.0} | {} |\n",
            run.target,
            run.cases,
            run.seconds,
            run.failure.as_deref().unwrap_or("none")
        ));
    }
    let hostile: usize = report.hostile_cases.iter().map(|(_, n)| n).sum();
    let faults = report.crash_cases.len();
    let lost = report.crash_cases.iter().filter(|c| !c.state_kept).count()
        + report.concurrency.iter().filter(|c| !c.state_kept).count();
    out.push_str(&format!(
        "\n| total | |\n|---|---|\n| faults injected (crash points) | {faults} |\n| concurrent runs | {} |\n| hostile cases (checked by the suite) | {hostile} ({}) |\n| properties checked | {} |\n| fuzz time | {:.0} s, {} cases |\n| **state lost** | **{lost}** |\n",
        report.concurrency.iter().map(|c| c.runs).sum::<usize>(),
        report
            .hostile_cases
            .iter()
            .map(|(f, n)| format!("{f} {n}"))
            .collect::<Vec<_>>()
            .join(", "),
        report.properties.len() + report.fuzz.len(),
        report.fuzz.iter().map(|r| r.seconds).sum::<f64>(),
        report.fuzz.iter().map(|r| r.cases).sum::<u64>(),
    ));
    out
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let start = Instant::now();
    if let Some(scenario) = args.scenario {
        let cases = reliability::crash_everywhere(scenario, args.calls)
            .await
            .with_context(|| scenario.name())?;
        eprintln!(
            "reliability: {}: {} crash points, {} lost",
            scenario.name(),
            cases.len(),
            cases.iter().filter(|c| !c.state_kept).count()
        );
        println!("{}", serde_json::to_string(&cases)?);
        return Ok(());
    }
    let fuzz_budget = Duration::from_secs(args.fuzz_seconds);
    let fuzz = tokio::task::spawn_blocking(move || run_fuzz(fuzz_budget));
    let crashes = crash_in_children(args.mutating_only);
    let races = async {
        let baseline = reliability::baseline(CrashScenario::BuildFinished).await?;
        Ok::<_, anyhow::Error>(vec![
            reliability::patch_day_beside_image_pushed().await?,
            reliability::rollback_beside_a_late_event().await?,
            reliability::same_build_event_twice(&baseline.snapshot).await?,
            reliability::two_builds_at_once().await?,
        ])
    };
    let (crash_cases, concurrency) = tokio::join!(crashes, races);
    let (crash_cases, concurrency) = (crash_cases?, concurrency?);
    let fuzz = fuzz.await??;
    let report = Report {
        crash_cases,
        concurrency,
        fuzz,
        hostile_cases: hostile_cases()?,
        properties: PROPERTIES.to_vec(),
        seconds: start.elapsed().as_secs_f64(),
    };
    let table = markdown(&report);
    println!("{table}");
    for case in report
        .crash_cases
        .iter()
        .filter(|c| !c.state_kept || c.cancelled_twice)
    {
        eprintln!(
            "LOST: {} {:?} step {} ({}): {}",
            case.scenario.name(),
            case.interruption,
            case.step,
            case.operation,
            case.difference.as_deref().unwrap_or("cancelled twice")
        );
    }
    for case in report.concurrency.iter().filter(|c| !c.state_kept) {
        eprintln!(
            "LOST: {}: {}",
            case.case,
            case.difference.as_deref().unwrap_or("")
        );
    }
    if let Some(results) = &args.results {
        std::fs::create_dir_all(results)?;
        std::fs::write(
            results.join("reliability.json"),
            serde_json::to_string_pretty(&report)?,
        )?;
        std::fs::write(results.join("reliability.md"), &table)?;
    }
    let failed = report
        .crash_cases
        .iter()
        .any(|c| !c.state_kept || c.cancelled_twice)
        || report.concurrency.iter().any(|c| !c.state_kept)
        || report.fuzz.iter().any(|r| r.failure.is_some());
    anyhow::ensure!(
        !failed,
        "state was lost, or a fuzz target failed: see above"
    );
    Ok(())
}
