//! An nginx CDN edge in front of a node, for the CDN test and benchmark: the same config as
//! `scripts/cdn-edge` (it renders the same template, `scripts/nginx-cdn.conf`), Debian's
//! `/usr/sbin/nginx` (or `$HIVECAST_NGINX`) in the foreground on `127.0.0.1`, its prefix (config,
//! logs, cache) in a temp dir.
//!
//! What it owns: the nginx master process and, through it, its workers and cache manager; all of
//! them are killed (by pid) when the [`Edge`] drops. It reads the access log the template writes
//! ([`EdgeLogLine`]: one line per request, and per background update), which is how tests count
//! what reached the origin.
//!
//! What it does not do: configure anything the template does not (the template is the contract,
//! shared with the script), or talk to nginx in any way other than HTTP and its log.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};

use crate::{file_tail, free_port, try_wait_until, workspace_root};

/// How to start an [`Edge`].
#[derive(Debug, Clone)]
pub struct EdgeOpts {
    /// The origin (a node's HTTP address, or a delay proxy in front of it).
    pub origin: SocketAddr,
    /// Listen port on 127.0.0.1 (`None`: a free one).
    pub port: Option<u16>,
    /// `proxy_cache_lock_timeout` and `proxy_cache_lock_age`, seconds: at least 3 x T + 2.
    pub lock_s: u64,
    /// `inactive` of the playlist cache, seconds.
    pub playlist_inactive_s: u64,
    /// `worker_processes`.
    pub workers: usize,
}

impl EdgeOpts {
    /// The script's defaults for `origin` (T = 2 s: lock 8 s; playlists dropped after 2 s unasked).
    pub fn new(origin: SocketAddr) -> EdgeOpts {
        EdgeOpts {
            origin,
            port: None,
            lock_s: 8,
            playlist_inactive_s: 2,
            workers: 1,
        }
    }
}

/// A running nginx edge.
pub struct Edge {
    prefix: tempfile::TempDir,
    port: u16,
    child: Option<Child>,
}

/// The nginx binary: `$HIVECAST_NGINX`, else `/usr/sbin/nginx`, else `nginx` on the `PATH`.
pub fn nginx_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("HIVECAST_NGINX") {
        return PathBuf::from(p);
    }
    let debian = Path::new("/usr/sbin/nginx");
    if debian.exists() {
        return debian.to_path_buf();
    }
    PathBuf::from("nginx")
}

/// `scripts/nginx-cdn.conf` with its placeholders filled in.
pub fn render_config(template: &str, prefix: &Path, port: u16, opts: &EdgeOpts) -> Result<String> {
    // SAFETY: getuid(2) has no preconditions and cannot fail.
    let root = unsafe { libc::getuid() } == 0;
    let out = template
        .replace("@PREFIX@", &prefix.to_string_lossy())
        .replace("@PORT@", &port.to_string())
        .replace("@ORIGIN@", &opts.origin.to_string())
        .replace("@LOCK_S@", &opts.lock_s.to_string())
        .replace(
            "@PLAYLIST_INACTIVE_S@",
            &opts.playlist_inactive_s.to_string(),
        )
        .replace("@WORKERS@", &opts.workers.max(1).to_string())
        .replace("@DAEMON@", "off")
        .replace("@USER@", if root { "user root;" } else { "" });
    if let Some(i) = out.find('@') {
        let rest: String = out[i..].chars().take(40).collect();
        bail!("unfilled placeholder in nginx-cdn.conf: {rest}");
    }
    Ok(out)
}

impl Edge {
    /// Renders the template into a temp prefix, starts nginx in the foreground and waits until it
    /// accepts connections. `Err` (with nginx's error log) if it exits or does not listen in 10 s.
    pub async fn start(opts: EdgeOpts) -> Result<Edge> {
        let prefix = tempfile::Builder::new()
            .prefix("hivecast-edge-")
            .tempdir()
            .context("tempdir")?;
        let template_path = workspace_root().join("scripts").join("nginx-cdn.conf");
        let template = std::fs::read_to_string(&template_path)
            .with_context(|| format!("read {}", template_path.display()))?;
        let port = opts.port.unwrap_or_else(free_port);
        let config = render_config(&template, prefix.path(), port, &opts)?;
        std::fs::create_dir_all(prefix.path().join("cache"))?;
        let conf = prefix.path().join("nginx.conf");
        std::fs::write(&conf, config)?;
        let err_log = prefix.path().join("error.log");
        let child = Command::new(nginx_bin())
            .arg("-e")
            .arg(&err_log)
            .arg("-c")
            .arg(&conf)
            .arg("-p")
            .arg(prefix.path())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(prefix.path().join("stderr.log"))?)
            .spawn()
            .with_context(|| format!("spawn {}", nginx_bin().display()))?;
        let mut edge = Edge {
            prefix,
            port,
            child: Some(child),
        };
        let addr = edge.addr();
        let child = edge.child.as_mut().ok_or_else(|| anyhow!("no child"))?;
        let up = try_wait_until(Duration::from_secs(10), async || {
            if let Ok(Some(status)) = child.try_wait() {
                return Some(Err(status));
            }
            tokio::net::TcpStream::connect(addr)
                .await
                .ok()
                .map(|_| Ok(()))
        })
        .await;
        match up {
            Ok(Ok(())) => Ok(edge),
            Ok(Err(status)) => Err(anyhow!(
                "nginx exited ({status}) before listening:\n{}",
                edge.logs_tail()
            )),
            Err(_) => Err(anyhow!(
                "nginx not listening on {addr} after 10 s:\n{}",
                edge.logs_tail()
            )),
        }
    }

    /// `http://127.0.0.1:{port}`: what `cdn.base_url` should be.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The listen address.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// The prefix dir (config, logs, cache).
    pub fn prefix(&self) -> &Path {
        self.prefix.path()
    }

    /// The master's pid, while running.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The master and every process it started (workers, cache manager and loader).
    pub fn pids(&self) -> Vec<u32> {
        let Some(master) = self.pid() else {
            return Vec::new();
        };
        let mut out = vec![master];
        out.extend(children_of(master));
        out
    }

    /// The tails of nginx's error log and stderr.
    pub fn logs_tail(&self) -> String {
        format!(
            "---- nginx error.log (tail) ----\n{}\n---- nginx stderr ----\n{}\n----",
            file_tail(&self.prefix.path().join("error.log"), 4096),
            file_tail(&self.prefix.path().join("stderr.log"), 2048)
        )
    }

    /// The access log's path.
    pub fn access_log_path(&self) -> PathBuf {
        self.prefix.path().join("access.log")
    }

    /// The access log's size now: pass it to [`Edge::access_log_since`] to read only what follows.
    pub fn access_log_len(&self) -> u64 {
        std::fs::metadata(self.access_log_path()).map_or(0, |m| m.len())
    }

    /// Every access log line from byte `offset` on (whole lines only).
    pub fn access_log_since(&self, offset: u64) -> Vec<EdgeLogLine> {
        let Ok(bytes) = std::fs::read(self.access_log_path()) else {
            return Vec::new();
        };
        let start = usize::try_from(offset)
            .unwrap_or(usize::MAX)
            .min(bytes.len());
        String::from_utf8_lossy(&bytes[start..])
            .lines()
            .filter_map(EdgeLogLine::parse)
            .collect()
    }

    /// The whole access log.
    pub fn access_log(&self) -> Vec<EdgeLogLine> {
        self.access_log_since(0)
    }
}

impl Drop for Edge {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("edge {}:\n{}", self.url(), self.logs_tail());
        }
        let helpers = self.pid().map(children_of).unwrap_or_default();
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        // The workers do not exit with their master: end them by pid (they are not our children,
        // init reaps them).
        for pid in helpers {
            if let Ok(pid) = libc::pid_t::try_from(pid) {
                // SAFETY: kill(2) has no memory-safety preconditions; these pids were the nginx
                // master's children a moment ago.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
    }
}

/// The pids whose parent is `parent` (from `/proc/*/stat`).
fn children_of(parent: u32) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|s| {
                    // Fields after the command name: state, then ppid.
                    let rest = &s[s.rfind(')')? + 2..];
                    rest.split_whitespace().nth(1)?.parse::<u32>().ok()
                })
                == Some(parent)
        })
        .collect()
}

/// One access log line (`log_format cdn` in `scripts/nginx-cdn.conf`).
#[derive(Debug, Clone, PartialEq)]
pub struct EdgeLogLine {
    /// `$msec`: when the answer finished, Unix seconds.
    pub at: f64,
    /// `$status`.
    pub status: u16,
    /// `$upstream_cache_status`: `HIT`, `MISS`, `EXPIRED`, `STALE`, `UPDATING`, `REVALIDATED`,
    /// `BYPASS`; empty when the request did not use the cache.
    pub cache: String,
    /// `$upstream_addr`: set when this request (or background update) went to the origin.
    pub upstream: Option<String>,
    /// `$request_time`, seconds.
    pub request_time: f64,
    /// `$upstream_response_time`, seconds (`None` without an origin request).
    pub upstream_time: Option<f64>,
    /// `$body_bytes_sent`.
    pub bytes: u64,
    /// `$request_uri`: path and query as the client sent them.
    pub uri: String,
}

impl EdgeLogLine {
    /// Reads one line; `None` if it is not in the `cdn` format.
    pub fn parse(line: &str) -> Option<EdgeLogLine> {
        let f: Vec<&str> = line.split('\t').collect();
        if f.len() != 8 {
            return None;
        }
        let opt = |s: &str| (s != "-" && !s.is_empty()).then(|| s.to_owned());
        Some(EdgeLogLine {
            at: f[0].parse().ok()?,
            status: f[1].parse().ok()?,
            cache: opt(f[2]).unwrap_or_default(),
            upstream: opt(f[3]),
            request_time: f[4].parse().ok()?,
            // Several upstream tries are listed as "a, b": the sum is the time at the origin.
            upstream_time: opt(f[5]).map(|s| {
                s.split([',', ':'])
                    .filter_map(|x| x.trim().parse::<f64>().ok())
                    .sum()
            }),
            bytes: f[6].parse().ok()?,
            uri: f[7].to_owned(),
        })
    }

    /// Whether this line is a request to the origin: a miss, an expired entry refreshed in the
    /// foreground or in the background (a `log_subrequest` line), a revalidation, a bypass. A
    /// `STALE` or `UPDATING` answer itself did not go to the origin.
    pub fn origin_fetch(&self) -> bool {
        self.upstream.is_some()
    }

    /// The path without the query.
    pub fn path(&self) -> &str {
        self.uri.split('?').next().unwrap_or_default()
    }

    /// A part (`{epoch}-{msn}.{part}.m4s`) or segment (`{epoch}-{msn}.ts|.m4s`), not init.
    pub fn is_media(&self) -> bool {
        let p = self.path();
        let name = p.rsplit('/').next().unwrap_or_default();
        (name.ends_with(".m4s") || name.ends_with(".ts")) && !name.starts_with("init-")
    }
}

/// Origin requests per URI among `lines`.
pub fn origin_fetches_per_uri(lines: &[EdgeLogLine]) -> BTreeMap<String, u32> {
    let mut out = BTreeMap::new();
    for l in lines.iter().filter(|l| l.origin_fetch()) {
        *out.entry(l.uri.clone()).or_insert(0) += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_log_lines() {
        let l = EdgeLogLine::parse(
            "1795582801.577\t200\tMISS\t127.0.0.1:18080\t0.002\t0.001\t394\t/cmaf/demo/master.m3u8",
        )
        .unwrap();
        assert_eq!(l.status, 200);
        assert_eq!(l.cache, "MISS");
        assert!(l.origin_fetch());
        assert_eq!(l.upstream_time, Some(0.001));
        let h = EdgeLogLine::parse(
            "1795582801.599\t200\tHIT\t-\t0.000\t-\t394\t/cmaf/demo/source/3-7.2.m4s?x=1",
        )
        .unwrap();
        assert!(!h.origin_fetch() && h.is_media());
        assert_eq!(h.path(), "/cmaf/demo/source/3-7.2.m4s");
        assert!(
            !EdgeLogLine::parse("1\t200\t-\t-\t0\t-\t1\t/cmaf/d/source/init-3.mp4")
                .unwrap()
                .is_media()
        );
        assert_eq!(EdgeLogLine::parse("garbage"), None);
    }

    #[test]
    fn renders_every_placeholder_of_the_template() {
        let template =
            std::fs::read_to_string(workspace_root().join("scripts").join("nginx-cdn.conf"))
                .unwrap();
        let opts = EdgeOpts::new(SocketAddr::from(([127, 0, 0, 1], 9)));
        let conf = render_config(&template, Path::new("/tmp/x"), 1234, &opts).unwrap();
        assert!(conf.contains("listen 127.0.0.1:1234"));
        assert!(conf.contains("proxy_cache_lock_timeout 8s;"));
        assert!(conf.contains("daemon off;"));
        // The origin's headers drive the cache: no directive overrides them.
        let directives: Vec<&str> = conf
            .lines()
            .map(str::trim)
            .filter(|l| !l.starts_with('#'))
            .collect();
        assert!(directives
            .iter()
            .any(|l| l.starts_with("proxy_cache_lock on;")));
        assert!(!directives
            .iter()
            .any(|l| l.starts_with("proxy_ignore_headers") || l.starts_with("proxy_cache_valid")));
    }
}
