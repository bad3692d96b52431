//! The standalone `prepull-bench` command: starts both servers, prints the environment, and
//! leaves nothing running when stopped.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;

fn process_alive(pid: u32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| s.contains(") Z "))
}

#[tokio::test]
async fn the_command_prints_a_working_environment_and_stops_cleanly() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_prepull-bench"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut env = std::collections::BTreeMap::new();
    while env.len() < 12 {
        let line = lines
            .next()
            .expect("the bench prints its environment")
            .unwrap();
        let (name, value) = line
            .strip_prefix("export ")
            .unwrap()
            .split_once('=')
            .unwrap();
        env.insert(name.to_owned(), value.to_owned());
    }
    let url = env["PREPULL_BENCH_URL"].clone();
    for name in [
        "AWS_ENDPOINT_URL_IMAGEBUILDER",
        "AWS_ENDPOINT_URL_AUTO_SCALING",
        "AWS_ENDPOINT_URL_SSM",
        "AWS_ENDPOINT_URL_ECR",
    ] {
        assert_eq!(env[name], url, "{name}");
    }
    assert_eq!(
        (
            env["AWS_REGION"].as_str(),
            env["AWS_ACCESS_KEY_ID"].as_str()
        ),
        ("us-east-1", "testing")
    );

    let config = prepull_bench::bench::sdk_config_for(&url, "us-east-1").await;
    aws_sdk_ssm::Client::new(&config)
        .describe_parameters()
        .send()
        .await
        .expect("moto answers through the command's emulator");
    let health: Value = reqwest::get(format!("{url}/_bench/health"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(health["status"], "ok");

    let moto_port = env["PREPULL_BENCH_MOTO_URL"]
        .rsplit(':')
        .next()
        .unwrap()
        .to_owned();
    let moto_pid = find_listener_pid(&moto_port).expect("moto listens");
    assert!(process_alive(moto_pid));

    // SIGTERM, as `kill` or a CI runner would send.
    Command::new("kill")
        .arg(child.id().to_string())
        .status()
        .unwrap();
    assert!(
        child.wait().unwrap().success(),
        "the bench exits cleanly on SIGTERM"
    );
    for _ in 0..100 {
        if !process_alive(moto_pid) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("moto (pid {moto_pid}) outlived the bench");
}

/// The pid of the process listening on a loopback TCP port, from /proc.
fn find_listener_pid(port: &str) -> Option<u32> {
    let port_hex = format!(":{:04X}", port.parse::<u16>().ok()?);
    let tcp = std::fs::read_to_string("/proc/net/tcp").ok()?;
    let inode = tcp
        .lines()
        .find(|l| {
            l.split_whitespace()
                .nth(1)
                .is_some_and(|a| a.ends_with(&port_hex))
                && l.split_whitespace().nth(3) == Some("0A")
        })?
        .split_whitespace()
        .nth(9)?
        .to_owned();
    let socket = format!("socket:[{inode}]");
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(fds) = std::fs::read_dir(entry.path().join("fd")) else {
            continue;
        };
        if fds
            .flatten()
            .any(|fd| std::fs::read_link(fd.path()).is_ok_and(|t| t.to_string_lossy() == socket))
        {
            return Some(pid);
        }
    }
    None
}
