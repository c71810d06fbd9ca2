//! What the benchmark binaries (`bench_viewers`, `bench_cdn`, `soak`) share: their flag parser,
//! rounding, the machine description printed with every result, and key creation over the API.

use std::net::SocketAddr;

use anyhow::{bail, Context};
use serde_json::{json, Value};

/// `--name value` flags.
pub struct Args(pub Vec<String>);

impl Args {
    /// The process's arguments.
    pub fn from_env() -> Args {
        Args(std::env::args().collect())
    }
    /// The value after `name`.
    pub fn get(&self, name: &str) -> Option<String> {
        self.0
            .iter()
            .position(|a| a == name)
            .and_then(|i| self.0.get(i + 1).cloned())
    }
    /// The value after `name`, required.
    pub fn req(&self, name: &str) -> anyhow::Result<String> {
        self.get(name).with_context(|| format!("missing {name}"))
    }
    /// The value after `name` parsed, or `default` when absent.
    pub fn num<T: std::str::FromStr>(&self, name: &str, default: T) -> anyhow::Result<T> {
        match self.get(name) {
            Some(v) => v.parse().map_err(|_| anyhow::anyhow!("bad {name}: {v}")),
            None => Ok(default),
        }
    }
}

/// One decimal.
pub fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

/// Cores, CPU model and kernel of this machine.
pub fn machine() -> Value {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_owned())
        })
        .unwrap_or_default();
    json!({
        "cpus": std::thread::available_parallelism().map_or(0, |n| n.get()),
        "cpu": cpu,
        "kernel": std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim(),
    })
}

/// POST /v1/keys for `stream` with the admin token; the key.
pub async fn create_key(http: SocketAddr, token: &str, stream: &str) -> anyhow::Result<String> {
    let r = reqwest::Client::new()
        .post(format!("http://{http}/v1/keys"))
        .bearer_auth(token)
        .json(&json!({"stream": stream}))
        .send()
        .await?;
    let status = r.status();
    let v: Value = r.json().await?;
    if !status.is_success() {
        bail!("creating a key for {stream}: {status} {v}");
    }
    v["key"]
        .as_str()
        .map(str::to_owned)
        .context("no key in answer")
}
