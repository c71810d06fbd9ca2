//! The command line: `hivecast run`, `hivecast key create|list|revoke`, `hivecast token create`,
//! `hivecast cluster status`.
//! Key commands talk to the running node's HTTP API with the admin token.

use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};

use crate::config::Config;

/// hivecast: a live streaming node (RTMP in; HLS, LL-HLS and DASH out).
#[derive(Debug, Parser)]
#[command(name = "hivecast", version)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Start a node.
    Run {
        /// Configuration file (merged over the embedded default).
        #[arg(long, env = "HIVECAST_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Manage stream keys on a running node.
    Key {
        /// Which key operation.
        #[command(subcommand)]
        op: KeyOp,
        /// The node's configuration (for its address, token and data dir).
        #[arg(long, global = true, env = "HIVECAST_CONFIG")]
        config: Option<PathBuf>,
        /// The node's HTTP base URL (default: from the configuration, on 127.0.0.1).
        #[arg(long, global = true)]
        url: Option<String>,
    },
    /// Signed playback tokens (for streams in `playback.protected_streams`), from a running node.
    Token {
        /// Which token operation.
        #[command(subcommand)]
        op: TokenOp,
        /// The node's configuration (for its address and admin token).
        #[arg(long, global = true, env = "HIVECAST_CONFIG")]
        config: Option<PathBuf>,
        /// The node's HTTP base URL (default: from the configuration, on 127.0.0.1).
        #[arg(long, global = true)]
        url: Option<String>,
    },
    /// Cluster information from a running node.
    Cluster {
        /// Which cluster operation.
        #[command(subcommand)]
        op: ClusterOp,
        /// The node's configuration.
        #[arg(long, global = true, env = "HIVECAST_CONFIG")]
        config: Option<PathBuf>,
        /// The node's HTTP base URL.
        #[arg(long, global = true)]
        url: Option<String>,
    },
}

/// Key operations.
#[derive(Debug, Subcommand)]
pub enum KeyOp {
    /// Create a key for a stream; prints `{"key_id","key","stream"}`.
    Create {
        /// Stream name.
        #[arg(long)]
        stream: String,
    },
    /// List keys (never the keys themselves).
    List,
    /// Revoke a key by id.
    Revoke {
        /// Key id.
        id: String,
    },
}

/// Playback token operations.
#[derive(Debug, Subcommand)]
pub enum TokenOp {
    /// Create a token; prints `{"stream","token","expires_at","urls":{...}}`.
    Create {
        /// Stream name.
        #[arg(long)]
        stream: String,
        /// Validity: `90s`, `15m`, `1h`, `7d` (at most 30 days).
        #[arg(long, default_value = "1h")]
        ttl: String,
    },
}

/// Cluster operations.
#[derive(Debug, Subcommand)]
pub enum ClusterOp {
    /// Members, roles, health.
    Status,
}

/// The admin token a CLI call should use: env, config, or the file the node generated.
pub fn admin_token(cfg: &Config) -> anyhow::Result<String> {
    if !cfg.auth.admin_token.is_empty() {
        return Ok(cfg.auth.admin_token.clone());
    }
    let f = cfg.node.data_dir.join("admin_token");
    let t = std::fs::read_to_string(&f).with_context(|| {
        format!(
            "no admin token: set HIVECAST_ADMIN_TOKEN or auth.admin_token, or run where {} exists",
            f.display()
        )
    })?;
    Ok(t.trim().to_owned())
}

fn base_url(cfg: &Config, url: Option<String>) -> String {
    url.unwrap_or_else(|| format!("http://127.0.0.1:{}", cfg.http.listen.port()))
        .trim_end_matches('/')
        .to_owned()
}

async fn send(req: reqwest::RequestBuilder) -> anyhow::Result<String> {
    let resp = req.send().await.context("is the node running?")?;
    let status = resp.status();
    let body = resp.text().await?;
    if !status.is_success() {
        bail!("{status}: {body}");
    }
    Ok(body)
}

/// Run a key command.
pub async fn key(op: KeyOp, config: Option<PathBuf>, url: Option<String>) -> anyhow::Result<()> {
    let cfg = Config::load(config.as_deref())?;
    let token = admin_token(&cfg)?;
    let base = base_url(&cfg, url);
    let http = reqwest::Client::new();
    let body = match op {
        KeyOp::Create { stream } => {
            send(
                http.post(format!("{base}/v1/keys"))
                    .bearer_auth(&token)
                    .json(&serde_json::json!({ "stream": stream })),
            )
            .await?
        }
        KeyOp::List => send(http.get(format!("{base}/v1/keys")).bearer_auth(&token)).await?,
        KeyOp::Revoke { id } => {
            send(
                http.delete(format!("{base}/v1/keys/{id}"))
                    .bearer_auth(&token),
            )
            .await?;
            format!("{{\"revoked\":\"{id}\"}}")
        }
    };
    println!("{body}");
    Ok(())
}

/// Run a token command.
pub async fn token(
    op: TokenOp,
    config: Option<PathBuf>,
    url: Option<String>,
) -> anyhow::Result<()> {
    let cfg = Config::load(config.as_deref())?;
    let admin = admin_token(&cfg)?;
    let base = base_url(&cfg, url);
    match op {
        TokenOp::Create { stream, ttl } => {
            let Some(ttl_s) = crate::tokens::parse_ttl(&ttl) else {
                bail!("--ttl {ttl:?}: expected a number with s, m, h or d (90s, 15m, 1h, 7d)");
            };
            let body = send(
                reqwest::Client::new()
                    .post(format!("{base}/v1/playback-tokens"))
                    .bearer_auth(&admin)
                    .json(&serde_json::json!({ "stream": stream, "ttl_s": ttl_s })),
            )
            .await?;
            println!("{body}");
        }
    }
    Ok(())
}

/// Run a cluster command.
pub async fn cluster(
    op: ClusterOp,
    config: Option<PathBuf>,
    url: Option<String>,
) -> anyhow::Result<()> {
    let cfg = Config::load(config.as_deref())?;
    let base = base_url(&cfg, url);
    match op {
        ClusterOp::Status => {
            let body = send(reqwest::Client::new().get(format!("{base}/v1/cluster"))).await?;
            println!("{body}");
        }
    }
    Ok(())
}
