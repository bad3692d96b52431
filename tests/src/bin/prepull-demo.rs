//! prepull's main job end to end on this machine: the three real Lambda binaries under a local
//! Lambda Runtime API, against the local AWS bench, through a fleet's story. Prints each step's
//! JSON summary, then a table of steps and the rendered cache component. Exits non-zero when a
//! step did not do what it should.
//!
//! ```text
//! make demo
//! make demo DEMO_ARGS="--images team/web:v1,team/api:v2 --runtime docker"
//! ```

use std::process::ExitCode;

use clap::Parser;
use prepull_bench::bench::Bench;
use prepull_bench::demo::{self, DEFAULT_IMAGES, Options, RuntimeApi};

#[derive(Parser, Debug)]
#[command(about = "Run prepull end to end on the local AWS bench")]
struct Args {
    /// The watched images, comma-separated `repository:tag` (at least two), as
    /// PREPULL_IMAGES takes them.
    #[arg(long, default_value = DEFAULT_IMAGES, value_delimiter = ',')]
    images: Vec<String>,
    /// The container runtime the cache is written for, as PREPULL_RUNTIME takes it.
    #[arg(long, default_value = "containerd", value_parser = ["containerd", "docker"])]
    runtime: String,
    /// Print every function's JSON log lines at the end (they are printed anyway on failure).
    #[arg(long)]
    logs: bool,
    /// The Lambda Runtime API: `local` (the built binaries, one process and one Runtime API
    /// each, as the test suite runs them) or `cargo-lambda` (`cargo lambda watch`, which
    /// builds each function again with `cargo run`, in a target directory of its own).
    #[arg(long, default_value = "local", value_parser = ["local", "cargo-lambda"])]
    runtime_api: String,
}

#[tokio::main]
async fn main() -> anyhow::Result<ExitCode> {
    let args = Args::parse();
    let options = Options {
        images: args.images,
        runtime: args.runtime,
        show_logs: args.logs,
        runtime_api: if args.runtime_api == "local" {
            RuntimeApi::Local
        } else {
            RuntimeApi::CargoLambda
        },
    };
    let bench = Bench::start().await?;
    let mut out = std::io::stdout().lock();
    let report = demo::run(&bench, &options, &mut out).await?;
    drop(out);
    println!("\n== The rendered cache component (newest version)\n");
    println!("{}", report.document);
    println!("== Report\n");
    print!("{}", report.table());
    if report.passed() {
        println!("\nEvery step did what it should.");
        Ok(ExitCode::SUCCESS)
    } else {
        for (index, step) in report.steps.iter().enumerate().filter(|(_, s)| !s.passed) {
            println!(
                "step {} ({}) expected: {}",
                index + 1,
                step.name,
                step.expected
            );
        }
        println!(
            "\nSome steps did not do what they should; the functions' logs are printed above."
        );
        Ok(ExitCode::FAILURE)
    }
}
