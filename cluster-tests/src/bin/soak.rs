//! `soak`: the load behind `scripts/soak` (see [`cluster_tests::soak`]): streams whose
//! publishers reconnect, viewers that come and go with them, and the node's resources sampled
//! over the run. Prints one JSON object on stdout; exits 1 when the run had errors, stalls or
//! failed publishes, or when memory, descriptors or tasks grew past `--tolerance-pct`.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use cluster_tests::load::cli::{machine, Args};
use cluster_tests::load::publish::read_flv;
use cluster_tests::soak::{soak, SoakConfig};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let a = Args::from_env();
    let secs = |name: &str, default: f64| -> anyhow::Result<Duration> {
        Ok(Duration::from_secs_f64(a.num(name, default)?))
    };
    let cfg = SoakConfig {
        http: a.req("--http")?.parse()?,
        rtmp: a.req("--rtmp")?,
        admin_token: a.req("--admin-token")?,
        node_pid: a.req("--node-pid")?.parse()?,
        streams: a.num("--streams", 10)?,
        viewers: a.num("--viewers", 1000)?,
        duration: secs("--duration", 3600.0)?,
        republish_every: secs("--republish-every", 180.0)?,
        sample_every: secs("--sample-every", 10.0)?,
        warmup: secs("--warmup", 300.0)?,
        tags: Arc::new(read_flv(Path::new(&a.req("--flv")?))?),
    };
    let tolerance: f64 = a.num("--tolerance-pct", 5.0)?;
    let r = soak(cfg).await;
    let mut out = r.json.clone();
    out["bench"] = "soak".into();
    out["machine"] = machine();
    out["tolerance_pct"] = tolerance.into();
    let grew = [
        ("memory", r.memory_growth_pct),
        ("open_fds", r.fds_growth_pct),
        ("tokio_tasks", r.tasks_growth_pct),
    ]
    .into_iter()
    .filter(|(_, g)| *g > tolerance)
    .map(|(n, _)| n)
    .collect::<Vec<_>>();
    let pass = r.errors == 0
        && r.viewers_with_stall == 0
        && r.viewers_never_started == 0
        && r.publish_failures == 0
        && grew.is_empty();
    out["grew_past_tolerance"] = grew.into();
    out["pass"] = pass.into();
    println!("{}", serde_json::to_string_pretty(&out)?);
    if !pass {
        std::process::exit(1);
    }
    Ok(())
}
