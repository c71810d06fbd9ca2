//! A small Chrome DevTools Protocol client that drives Debian's headless Chromium from the tests.
//!
//! [`Browser::launch`] starts `chromium` on a fresh profile in a temp dir, reads the DevTools port from
//! `<profile>/DevToolsActivePort` and opens one WebSocket to the browser endpoint. Pages are targets
//! attached in flattened mode: every message for a page carries its `sessionId` on that one socket.
//!
//! Tasks and queues (all bounded):
//! - the writer task drains a bounded mpsc of outgoing frames into the socket;
//! - the reader task parses each incoming frame: a reply (`id`) completes the `oneshot` its command
//!   registered in [`Conn::pending`]; an event with a `sessionId` goes to that page's [`PageState`]
//!   (console ring of [`CONSOLE_RING`] lines, loader ids that reached `load`). When the socket closes,
//!   every pending command fails at once instead of waiting for its timeout, and so do a page's
//!   commands when its session detaches (Chromium never answers a command that reaches a session while
//!   its tab is being closed).
//!
//! Every command has a deadline ([`COMMAND_TIMEOUT`]) and its errors name the CDP method.
//!
//! Chromium flags: `--disable-background-networking`, `--disable-component-update` and `--disable-sync`
//! keep it from calling Google on this closed network (without them it floods it with connection
//! attempts); `--disable-quic` likewise. DevTools listens on 127.0.0.1 only, on a port the kernel picks.
//! The browser runs in its own process group, so that dropping [`Browser`] kills the renderer, GPU and
//! utility processes with it.

use std::collections::{HashMap, VecDeque};
use std::fs::File;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use base64::Engine as _;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;

use crate::{file_tail, try_wait_every, try_wait_until};

/// The Chromium binary: `$CHROMIUM_BIN`, else Debian's `/usr/bin/chromium`.
pub fn chromium_bin() -> PathBuf {
    std::env::var_os("CHROMIUM_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"))
}

/// How long [`Browser::launch`] waits for `DevToolsActivePort` (a cold start on a loaded 2-core machine).
pub const LAUNCH_TIMEOUT: Duration = Duration::from_secs(30);
/// Deadline of one CDP command, from queueing it to its reply.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(20);
/// How long [`Page::goto`] waits for the page's `load` event.
pub const LOAD_TIMEOUT: Duration = Duration::from_secs(15);
/// Console lines kept per page; older ones are dropped.
pub const CONSOLE_RING: usize = 500;
/// Outgoing frames queued for the writer task; a sender waits (within its command deadline) when full.
const OUT_QUEUE: usize = 64;
/// Loader ids that reached `load`, kept per page (only the current navigation's matters).
const LOADS_KEPT: usize = 32;
/// Console lines quoted in [`Page::wait_for`]'s timeout error.
const CONSOLE_TAIL_IN_ERRORS: usize = 20;

/// Locks a mutex, ignoring poisoning (a panicking test thread must not hide the browser's state).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

// ---------------------------------------------------------------------------------------------------------
// Connection
// ---------------------------------------------------------------------------------------------------------

/// The one DevTools WebSocket, shared by the [`Browser`] and its [`Page`]s.
struct Conn {
    /// Frames for the writer task.
    out: mpsc::Sender<Message>,
    /// Commands waiting for their reply, by id. A std mutex: never held across an `.await`.
    pending: Mutex<HashMap<u64, Pending>>,
    /// Set by the reader task when the socket ends (under `pending`'s lock, after draining it), so
    /// later commands fail at once.
    closed: AtomicBool,
    /// Attached pages, by CDP session id.
    sessions: Mutex<HashMap<String, Arc<PageState>>>,
    next_id: AtomicU64,
}

/// A command waiting for its reply.
struct Pending {
    /// The page session it was sent to: when that session detaches, the command fails at once.
    session: Option<String>,
    reply: oneshot::Sender<Value>,
}

impl Conn {
    /// Sends `method` (to the browser, or to a page's session) and returns its `result`.
    async fn call(
        &self,
        session: Option<(&str, &PageState)>,
        method: &str,
        params: Value,
    ) -> Result<Value> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let mut msg = json!({ "id": id, "method": method, "params": params });
        if let Some((s, _)) = session {
            msg["sessionId"] = Value::from(s);
        }
        let (tx, rx) = oneshot::channel();
        {
            let mut pending = lock(&self.pending);
            if self.closed.load(Ordering::Acquire) {
                bail!("CDP {method}: the DevTools connection is closed");
            }
            // Checked under `pending`'s lock: `detach` sets the flag before it drains the map.
            if session.is_some_and(|(_, st)| *st.detached.borrow()) {
                bail!("CDP {method}: the page is closed (its target detached)");
            }
            pending.insert(
                id,
                Pending {
                    session: session.map(|(s, _)| s.to_owned()),
                    reply: tx,
                },
            );
        }
        let exchange = async {
            self.out
                .send(Message::text(msg.to_string()))
                .await
                .map_err(|_| anyhow!("CDP {method}: the DevTools writer has stopped"))?;
            rx.await.map_err(|_| {
                anyhow!("CDP {method}: the DevTools connection closed before the reply")
            })
        };
        let reply = match tokio::time::timeout(COMMAND_TIMEOUT, exchange).await {
            Ok(r) => r?,
            Err(_) => {
                lock(&self.pending).remove(&id);
                bail!("CDP {method}: no reply within {COMMAND_TIMEOUT:?}");
            }
        };
        if let Some(err) = reply.get("error") {
            bail!("CDP {method} failed: {err}");
        }
        Ok(reply.get("result").cloned().unwrap_or(Value::Null))
    }

    /// Handles one frame from the socket: a reply or an event.
    fn dispatch(&self, text: &str) {
        let Ok(msg) = serde_json::from_str::<Value>(text) else {
            return;
        };
        if let Some(id) = msg.get("id").and_then(Value::as_u64) {
            if let Some(p) = lock(&self.pending).remove(&id) {
                let _ = p.reply.send(msg);
            }
            return;
        }
        let Some(method) = msg.get("method").and_then(Value::as_str) else {
            return;
        };
        let params = msg.get("params").unwrap_or(&Value::Null);
        let session = msg.get("sessionId").and_then(Value::as_str).or_else(|| {
            // Browser-level notice that a page session ended (closed or crashed).
            (method == "Target.detachedFromTarget")
                .then(|| params.get("sessionId").and_then(Value::as_str))
                .flatten()
        });
        let Some(session) = session else { return };
        if method == "Target.detachedFromTarget" {
            self.detach(session, params);
            return;
        }
        let state = lock(&self.sessions).get(session).cloned();
        if let Some(state) = state {
            state.on_event(method, params);
        }
    }

    /// A page session ended (closed or crashed): forget it and fail its pending commands now (Chromium
    /// does not answer commands that reach a session while its target is torn down).
    fn detach(&self, session: &str, params: &Value) {
        let state = lock(&self.sessions).remove(session);
        if let Some(state) = &state {
            state.on_event("Target.detachedFromTarget", params);
            state.detached.send_replace(true);
        }
        let mut pending = lock(&self.pending);
        let ids: Vec<u64> = pending
            .iter()
            .filter(|(_, p)| p.session.as_deref() == Some(session))
            .map(|(id, _)| *id)
            .collect();
        for id in ids {
            if let Some(p) = pending.remove(&id) {
                let _ = p.reply.send(json!({
                    "id": id,
                    "error": { "message": "the page's target detached before the reply (closed or crashed)" },
                }));
            }
        }
    }

    /// Called by the reader task when the socket ends: fail every pending command now.
    fn shut(&self) {
        let mut pending = lock(&self.pending);
        self.closed.store(true, Ordering::Release);
        pending.clear();
    }
}

// ---------------------------------------------------------------------------------------------------------
// Browser
// ---------------------------------------------------------------------------------------------------------

/// A headless Chromium process and its DevTools connection.
///
/// Dropping it kills the browser's process group, reaps the browser and removes the temp profile.
pub struct Browser {
    conn: Arc<Conn>,
    child: Child,
    stderr_path: PathBuf,
    reader: JoinHandle<()>,
    writer: JoinHandle<()>,
    /// The profile (`--user-data-dir`) and the stderr file; removed on drop, after the kill.
    _dir: tempfile::TempDir,
}

/// How [`Browser::launch_with`] starts Chromium. `Default`: as [`Browser::launch`].
#[derive(Debug, Clone, Default)]
pub struct LaunchOptions {
    /// `--ignore-certificate-errors`: accept any server certificate (the node's self-signed
    /// development certificate in the TLS tests). Chromium still negotiates TLS and ALPN as usual.
    pub ignore_certificate_errors: bool,
}

impl Browser {
    /// Starts Chromium ([`chromium_bin`]) and connects to its DevTools endpoint.
    pub async fn launch() -> Result<Browser> {
        Browser::launch_with(LaunchOptions::default()).await
    }

    /// [`Browser::launch`] with options.
    pub async fn launch_with(opts: LaunchOptions) -> Result<Browser> {
        let dir = tempfile::Builder::new()
            .prefix("hivecast-chromium-")
            .tempdir()
            .context("temp dir for the Chromium profile")?;
        let profile = dir.path().join("profile");
        std::fs::create_dir(&profile).context("create the profile dir")?;
        let stderr_path = dir.path().join("chromium.stderr");
        let stderr = File::create(&stderr_path).context("create chromium.stderr")?;
        let bin = chromium_bin();
        let mut cmd = Command::new(&bin);
        if opts.ignore_certificate_errors {
            cmd.arg("--ignore-certificate-errors");
        }
        let mut child = cmd
            .args([
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--no-default-browser-check",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--autoplay-policy=no-user-gesture-required",
                "--mute-audio",
                "--window-size=1280,800",
                "--remote-debugging-address=127.0.0.1",
                "--remote-debugging-port=0",
            ])
            .arg(format!("--user-data-dir={}", profile.display()))
            .arg("about:blank")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            // Its own process group, so drop can kill the helper processes too.
            .process_group(0)
            .spawn()
            .with_context(|| format!("spawn {}", bin.display()))?;

        let port_file = profile.join("DevToolsActivePort");
        let found = try_wait_until(LAUNCH_TIMEOUT, async || {
            if let Ok(Some(status)) = child.try_wait() {
                return Some(Err(anyhow!(
                    "chromium exited ({status}) before DevTools was up"
                )));
            }
            read_active_port(&port_file).map(Ok)
        })
        .await;
        let endpoint = match found {
            Ok(Ok(url)) => url,
            Ok(Err(e)) => {
                kill_group(&mut child);
                bail!("{e}; stderr:\n{}", file_tail(&stderr_path, 4096));
            }
            Err(waited) => {
                kill_group(&mut child);
                bail!(
                    "no {} after {waited:?}; chromium stderr:\n{}",
                    port_file.display(),
                    file_tail(&stderr_path, 4096)
                );
            }
        };
        let ws = match tokio_tungstenite::connect_async(endpoint.as_str()).await {
            Ok((ws, _resp)) => ws,
            Err(e) => {
                kill_group(&mut child);
                bail!("connect to {endpoint}: {e}");
            }
        };
        let (mut sink, mut stream) = ws.split();
        let (out, mut out_rx) = mpsc::channel::<Message>(OUT_QUEUE);
        let conn = Arc::new(Conn {
            out,
            pending: Mutex::new(HashMap::new()),
            closed: AtomicBool::new(false),
            sessions: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
        });
        let writer = tokio::spawn(async move {
            while let Some(m) = out_rx.recv().await {
                if sink.send(m).await.is_err() {
                    break;
                }
            }
        });
        let reader_conn = conn.clone();
        let reader = tokio::spawn(async move {
            while let Some(Ok(m)) = stream.next().await {
                match m {
                    Message::Text(t) => reader_conn.dispatch(t.as_str()),
                    Message::Close(_) => break,
                    _ => {}
                }
            }
            reader_conn.shut();
        });
        Ok(Browser {
            conn,
            child,
            stderr_path,
            reader,
            writer,
            _dir: dir,
        })
    }

    /// Opens a new tab on `about:blank`, attaches to it and enables the Page, Runtime and Log domains.
    pub async fn new_page(&self) -> Result<Page> {
        let created = self
            .conn
            .call(None, "Target.createTarget", json!({ "url": "about:blank" }))
            .await?;
        let target_id = str_field(&created, "targetId", "Target.createTarget")?;
        let attached = self
            .conn
            .call(
                None,
                "Target.attachToTarget",
                json!({ "targetId": target_id, "flatten": true }),
            )
            .await?;
        let session_id = str_field(&attached, "sessionId", "Target.attachToTarget")?;
        let state = Arc::new(PageState {
            console: Mutex::new(VecDeque::new()),
            loads: watch::Sender::new(VecDeque::new()),
            detached: watch::Sender::new(false),
        });
        lock(&self.conn.sessions).insert(session_id.clone(), state.clone());
        let page = Page {
            conn: self.conn.clone(),
            target_id,
            session_id,
            state,
        };
        page.call("Page.enable", json!({})).await?;
        page.call("Page.setLifecycleEventsEnabled", json!({ "enabled": true }))
            .await?;
        page.call("Runtime.enable", json!({})).await?;
        page.call("Log.enable", json!({})).await?;
        Ok(page)
    }

    /// The end of Chromium's stderr, for failure messages.
    pub fn stderr_tail(&self) -> String {
        file_tail(&self.stderr_path, 4096)
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        self.reader.abort();
        self.writer.abort();
        kill_group(&mut self.child);
        if std::thread::panicking() {
            eprintln!(
                "---- chromium stderr (tail) ----\n{}\n----",
                self.stderr_tail()
            );
        }
    }
}

/// Parses `DevToolsActivePort` ("PORT\n/devtools/browser/UUID") into the browser endpoint URL, or `None`
/// while the file is missing or not completely written.
fn read_active_port(path: &Path) -> Option<String> {
    let text = std::fs::read_to_string(path).ok()?;
    let mut lines = text.lines();
    let port: u16 = lines.next()?.trim().parse().ok()?;
    let ws_path = lines.next()?.trim();
    // The browser id is a 36-character UUID: a shorter path is a file caught half-written.
    let id = ws_path.strip_prefix("/devtools/browser/")?;
    (port != 0 && id.len() >= 36).then(|| format!("ws://127.0.0.1:{port}{ws_path}"))
}

/// SIGKILLs the browser's process group (browser, renderers, GPU and utility processes) and reaps the
/// browser; the helpers are reparented and reaped by init.
fn kill_group(child: &mut Child) {
    if let Ok(pid) = libc::pid_t::try_from(child.id()) {
        // SAFETY: kill(2) has no memory-safety preconditions; the group is our unreaped child's own
        // (spawned with process_group(0)), so its id cannot have been reused.
        unsafe { libc::kill(-pid, libc::SIGKILL) };
    }
    let _ = child.kill();
    let _ = child.wait();
}

/// A string field of a CDP result.
fn str_field(v: &Value, field: &str, method: &str) -> Result<String> {
    v.get(field)
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| anyhow!("CDP {method}: no {field} in {v}"))
}

// ---------------------------------------------------------------------------------------------------------
// Page
// ---------------------------------------------------------------------------------------------------------

/// What the reader task records for one page.
struct PageState {
    /// Console messages, exceptions and Log entries, oldest first, at most [`CONSOLE_RING`].
    console: Mutex<VecDeque<String>>,
    /// Loader ids whose main-frame document reached the `load` lifecycle event, newest last.
    loads: watch::Sender<VecDeque<String>>,
    /// Set once the session has detached (page closed or crashed); commands then fail at once.
    detached: watch::Sender<bool>,
}

impl PageState {
    fn on_event(&self, method: &str, params: &Value) {
        let line = match method {
            "Runtime.consoleAPICalled" => {
                let kind = params.get("type").and_then(Value::as_str).unwrap_or("log");
                let args = params
                    .get("args")
                    .and_then(Value::as_array)
                    .map(|a| a.iter().map(remote_object_text).collect::<Vec<_>>())
                    .unwrap_or_default();
                format!("console.{kind}: {}", args.join(" "))
            }
            "Runtime.exceptionThrown" => format!(
                "exception: {}",
                exception_text(params.get("exceptionDetails").unwrap_or(&Value::Null))
            ),
            "Log.entryAdded" => {
                let e = params.get("entry").unwrap_or(&Value::Null);
                let field = |k: &str| e.get(k).and_then(Value::as_str).unwrap_or("");
                let url = field("url");
                let at = if url.is_empty() {
                    String::new()
                } else {
                    format!(" ({url})")
                };
                format!(
                    "log {} {}: {}{at}",
                    field("level"),
                    field("source"),
                    field("text")
                )
            }
            "Inspector.targetCrashed" => "target crashed".to_owned(),
            "Target.detachedFromTarget" => "detached from target".to_owned(),
            "Page.lifecycleEvent" => {
                if params.get("name").and_then(Value::as_str) == Some("load") {
                    if let Some(loader) = params.get("loaderId").and_then(Value::as_str) {
                        self.loads.send_modify(|l| {
                            if l.len() == LOADS_KEPT {
                                l.pop_front();
                            }
                            l.push_back(loader.to_owned());
                        });
                    }
                }
                return;
            }
            _ => return,
        };
        let mut console = lock(&self.console);
        if console.len() == CONSOLE_RING {
            console.pop_front();
        }
        console.push_back(line);
    }
}

/// A tab attached over the browser's DevTools connection (a flattened CDP session).
pub struct Page {
    conn: Arc<Conn>,
    target_id: String,
    session_id: String,
    state: Arc<PageState>,
}

impl Page {
    async fn call(&self, method: &str, params: Value) -> Result<Value> {
        self.conn
            .call(Some((&self.session_id, &self.state)), method, params)
            .await
    }

    /// Navigates to `url` and waits (at most [`LOAD_TIMEOUT`]) for the new document's `load` event.
    pub async fn goto(&self, url: &str) -> Result<()> {
        let nav = self.call("Page.navigate", json!({ "url": url })).await?;
        if let Some(err) = nav.get("errorText").and_then(Value::as_str) {
            if !err.is_empty() {
                bail!("navigate to {url}: {err}");
            }
        }
        // A same-document navigation (fragment change) has no loader and no load event.
        let Some(loader) = nav.get("loaderId").and_then(Value::as_str) else {
            return Ok(());
        };
        let mut loads = self.state.loads.subscribe();
        let loaded = tokio::time::timeout(
            LOAD_TIMEOUT,
            loads.wait_for(|l| l.iter().any(|x| x == loader)),
        )
        .await
        .map(|r| r.map(|_| ()));
        match loaded {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => bail!("navigate to {url}: page state dropped"),
            Err(_) => bail!(
                "navigate to {url}: no load event within {LOAD_TIMEOUT:?}; console:\n{}",
                self.console_tail(CONSOLE_TAIL_IN_ERRORS)
            ),
        }
    }

    /// Evaluates `expr` in the page (awaiting a promise) and returns its value as JSON (`null` for
    /// `undefined`; `NaN`, `Infinity` and bigints as their text). A thrown exception is an `Err` with
    /// its message.
    pub async fn eval(&self, expr: &str) -> Result<Value> {
        let r = self
            .call(
                "Runtime.evaluate",
                json!({ "expression": expr, "returnByValue": true, "awaitPromise": true }),
            )
            .await?;
        if let Some(ex) = r.get("exceptionDetails") {
            bail!("eval {expr:?} threw: {}", exception_text(ex));
        }
        let obj = r.get("result").unwrap_or(&Value::Null);
        if let Some(v) = obj.get("value") {
            return Ok(v.clone());
        }
        Ok(obj
            .get("unserializableValue")
            .cloned()
            .unwrap_or(Value::Null))
    }

    /// Re-evaluates `expr` every 50 ms until its value is truthy (not null, false, 0 or ""), and returns
    /// it. Past `deadline`: an `Err` with the last value (or error) and the console's tail.
    pub async fn wait_for(&self, expr: &str, deadline: Duration) -> Result<Value> {
        let mut last: Result<Value> = Ok(Value::Null);
        let found = try_wait_every(Duration::from_millis(50), deadline, async || {
            last = self.eval(expr).await;
            match &last {
                Ok(v) if truthy(v) => Some(v.clone()),
                _ => None,
            }
        })
        .await;
        found.map_err(|waited| {
            let last = match last {
                Ok(v) => v.to_string(),
                Err(e) => format!("error: {e:#}"),
            };
            anyhow!(
                "waited {waited:?} for {expr:?} to be truthy; last value {last}; console:\n{}",
                self.console_tail(CONSOLE_TAIL_IN_ERRORS)
            )
        })
    }

    /// Throttles the page's network: extra `latency_ms` per request, and throughput caps in bytes/s.
    pub async fn emulate_network(
        &self,
        latency_ms: f64,
        download_bytes_per_s: f64,
        upload_bytes_per_s: f64,
    ) -> Result<()> {
        self.call("Network.enable", json!({})).await?;
        self.call(
            "Network.emulateNetworkConditions",
            json!({
                "offline": false,
                "latency": latency_ms,
                "downloadThroughput": download_bytes_per_s,
                "uploadThroughput": upload_bytes_per_s,
            }),
        )
        .await?;
        Ok(())
    }

    /// Removes the throttling of [`Page::emulate_network`] (-1: no limit).
    pub async fn clear_network_emulation(&self) -> Result<()> {
        self.call(
            "Network.emulateNetworkConditions",
            json!({ "offline": false, "latency": 0, "downloadThroughput": -1, "uploadThroughput": -1 }),
        )
        .await?;
        Ok(())
    }

    /// Writes a PNG screenshot of the viewport to `path`.
    pub async fn screenshot(&self, path: &Path) -> Result<()> {
        let r = self
            .call("Page.captureScreenshot", json!({ "format": "png" }))
            .await?;
        let data = str_field(&r, "data", "Page.captureScreenshot")?;
        let png = base64::engine::general_purpose::STANDARD
            .decode(data)
            .context("Page.captureScreenshot: data is not base64")?;
        std::fs::write(path, png).with_context(|| format!("write {}", path.display()))
    }

    /// Console messages, uncaught exceptions and Log entries seen so far (the last [`CONSOLE_RING`]).
    pub fn console(&self) -> Vec<String> {
        lock(&self.state.console).iter().cloned().collect()
    }

    /// The last `n` console lines, one per line.
    fn console_tail(&self, n: usize) -> String {
        let console = lock(&self.state.console);
        let skip = console.len().saturating_sub(n);
        let lines: Vec<&str> = console.iter().skip(skip).map(String::as_str).collect();
        lines.join("\n")
    }

    /// Closes the tab (the page sees `pagehide` and `unload`) and waits until its session has detached;
    /// later commands on this page fail at once.
    pub async fn close(&self) -> Result<()> {
        let mut detached = self.state.detached.subscribe();
        self.conn
            .call(
                None,
                "Target.closeTarget",
                json!({ "targetId": self.target_id }),
            )
            .await?;
        let gone = tokio::time::timeout(COMMAND_TIMEOUT, detached.wait_for(|d| *d))
            .await
            .map(|r| r.map(|_| ()));
        match gone {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => bail!("Target.closeTarget: page state dropped"),
            Err(_) => bail!(
                "Target.closeTarget: the page's session did not detach within {COMMAND_TIMEOUT:?}"
            ),
        }
    }
}

/// JavaScript truthiness of a JSON value (NaN arrives as the string "NaN" and counts as truthy here).
fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(_) | Value::Object(_) => true,
    }
}

/// A console argument as text: its value, else its description (objects, errors), else its type.
fn remote_object_text(o: &Value) -> String {
    match o.get("value") {
        Some(Value::String(s)) => s.clone(),
        Some(v) => v.to_string(),
        None => o
            .get("unserializableValue")
            .or_else(|| o.get("description"))
            .or_else(|| o.get("type"))
            .and_then(Value::as_str)
            .unwrap_or("?")
            .to_owned(),
    }
}

/// An exception's message: the thrown object's description (message and stack), else CDP's text.
fn exception_text(details: &Value) -> String {
    let text = details
        .get("text")
        .and_then(Value::as_str)
        .unwrap_or("exception");
    match details
        .get("exception")
        .and_then(|e| e.get("description").or_else(|| e.get("value")))
    {
        Some(Value::String(s)) => s.clone(),
        Some(v) => format!("{text} {v}"),
        None => text.to_owned(),
    }
}
