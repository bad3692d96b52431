//! Starts the whole local AWS bench (the emulator in front of moto) and prints the
//! environment that points any AWS client at it. Runs until interrupted.
//!
//! ```text
//! eval "$(cargo run -q -p prepull-tests --bin prepull-bench -- --env-file .bench.env)"
//! ```

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use prepull_bench::bench::environment;
use prepull_bench::emulator::{Emulator, EmulatorConfig};
use prepull_bench::moto::MotoServer;

#[derive(Parser, Debug)]
#[command(
    about = "Run prepull's local AWS bench: Image Builder and Auto Scaling emulated, moto for SSM, ECR and EC2"
)]
struct Args {
    /// Address the emulator listens on; port 0 picks a free port.
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// The account id in the ARNs the emulator makes (moto's default account).
    #[arg(long, default_value = "123456789012")]
    account_id: String,
    #[arg(long, default_value = "us-east-1")]
    region: String,
    /// Also write the environment, as `export` lines, to this file.
    #[arg(long)]
    env_file: Option<PathBuf>,
    /// Milliseconds added to every AWS answer, as AWS's own round trip (0: none). Also set
    /// while running with `POST /_bench/answer-delay`.
    #[arg(long, default_value_t = 0)]
    answer_delay_ms: u64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter("warn")
        .init();
    let args = Args::parse();
    let moto = tokio::task::spawn_blocking(MotoServer::start).await??;
    let config = EmulatorConfig {
        account_id: args.account_id,
        region: args.region,
        moto_url: Some(moto.url().to_owned()),
    };
    let emulator = Emulator::start_on(args.listen, config).await?;
    emulator.set_answer_delay(Duration::from_millis(args.answer_delay_ms));
    let mut exports: Vec<String> = environment(&emulator.url(), emulator.config())
        .into_iter()
        .map(|(name, value)| format!("export {name}={value}"))
        .collect();
    exports.push(format!("export PREPULL_BENCH_MOTO_URL={}", moto.url()));
    let text = exports.join("\n") + "\n";
    if let Some(path) = &args.env_file {
        std::fs::write(path, &text)?;
    }
    print!("{text}");
    eprintln!(
        "prepull bench: emulator {} (moto pid {} at {}); Ctrl-C stops both",
        emulator.url(),
        moto.pid(),
        moto.url()
    );
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate.recv() => {}
    }
    emulator.stop().await;
    drop(moto);
    Ok(())
}
