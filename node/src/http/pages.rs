//! The web pages the node serves itself: the player (`GET /watch/{stream}`) and the operator
//! dashboard (`GET /dashboard`), with their scripts and style under `/assets/`.
//!
//! Our own files (`node/assets/*.html|js|css`) are compiled into the binary, so a node needs
//! nothing beside it to serve them and there is no build step: plain ES modules, no bundler.
//! Third-party browser code (hls.js) is never copied into the repository: `npm ci` installs it
//! from the lockfile into `<assets_dir>/node_modules` (scripts/setup does), and
//! `/assets/vendor/...` reads it from there once, on first request, and keeps the bytes. A node
//! without it still serves the pages, which then say that hls.js is missing.
//!
//! The pages consume only the public contract (DESIGN §4): `/v1/streams`, the WebSocket events,
//! `/v1/streams/{stream}/metrics`, `/v1/beacon` and the playlists; nothing here reads the store.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use bytes::Bytes;
use tokio::sync::OnceCell;

use super::api::stream_name;
use super::error::{ApiError, ApiPath};
use crate::app::App;

const HTML: &str = "text/html; charset=utf-8";
const JS: &str = "text/javascript; charset=utf-8";
const CSS: &str = "text/css; charset=utf-8";
const JSON: &str = "application/json";

/// Our own files change with the binary: a browser revalidates them on every load (the node
/// answers from memory, so that costs one small request each).
const OWN_CACHE: &str = "no-cache";
/// The installed library changes only with the lockfile and a restart.
const VENDOR_CACHE: &str = "public, max-age=3600";

const WATCH_HTML: &str = include_str!("../../assets/watch.html");
const DASHBOARD_HTML: &str = include_str!("../../assets/dashboard.html");

/// `/assets/{file}`: name, content type, bytes.
const EMBEDDED: &[(&str, &str, &str)] = &[
    ("watch.js", JS, include_str!("../../assets/watch.js")),
    (
        "dashboard.js",
        JS,
        include_str!("../../assets/dashboard.js"),
    ),
    ("style.css", CSS, include_str!("../../assets/style.css")),
];

/// What `npm ci` must have installed for the player (the message of the 404 says how).
const HLS_MISSING: &str =
    "hls.js is not installed: run `npm ci --prefix node/assets` (scripts/setup does)";

/// A file of an npm package under `<assets_dir>/node_modules`, read once and kept.
struct VendorFile {
    /// Path under `node_modules/`.
    path: &'static str,
    content_type: &'static str,
    /// Set on the first successful read only: a node started before `npm ci` serves the file
    /// as soon as it is installed, without a restart.
    bytes: OnceCell<Bytes>,
}

impl VendorFile {
    const fn new(path: &'static str, content_type: &'static str) -> Self {
        Self {
            path,
            content_type,
            bytes: OnceCell::const_new(),
        }
    }

    /// The file's bytes, read from `assets_dir` on the first call that finds it.
    async fn get(&self, assets_dir: &Path) -> Result<Bytes, ApiError> {
        self.bytes
            .get_or_try_init(|| async {
                let path = assets_dir.join("node_modules").join(self.path);
                match tokio::fs::read(&path).await {
                    Ok(v) => Ok(Bytes::from(v)),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                        tracing::debug!(path = %path.display(), "vendor file missing");
                        Err(ApiError::not_found(HLS_MISSING))
                    }
                    Err(e) => Err(ApiError::internal(format!("{}: {e}", path.display()))),
                }
            })
            .await
            .cloned()
    }
}

static HLS_JS: VendorFile = VendorFile::new("hls.js/dist/hls.min.js", JS);
/// Asked for by browser developer tools only (`//# sourceMappingURL` at the end of the file).
static HLS_JS_MAP: VendorFile = VendorFile::new("hls.js/dist/hls.min.js.map", JSON);

/// Routes of this module.
pub fn routes() -> Router<Arc<App>> {
    embedded().route("/assets/vendor/{file}", get(vendor))
}

/// The routes that need no state (everything but the installed libraries).
fn embedded<S: Clone + Send + Sync + 'static>() -> Router<S> {
    Router::new()
        .route("/watch/{stream}", get(watch))
        .route("/dashboard", get(|| async { page(DASHBOARD_HTML) }))
        .route("/assets/{file}", get(asset))
}

/// The directory holding `node_modules/` (config `http.assets_dir`; see [`resolve_assets_dir`]).
pub fn assets_dir(configured: &str) -> PathBuf {
    resolve_assets_dir(
        configured,
        std::env::var_os("HIVECAST_ASSETS_DIR"),
        Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/assets")),
    )
}

/// The configured directory if set; else `$HIVECAST_ASSETS_DIR` if set; else `built` (the
/// source tree the binary was built from) if it exists; else `./node/assets` (a binary run
/// from a checkout other than the one it was built in).
fn resolve_assets_dir(configured: &str, env: Option<OsString>, built: &Path) -> PathBuf {
    if !configured.is_empty() {
        return PathBuf::from(configured);
    }
    if let Some(dir) = env.filter(|d| !d.is_empty()) {
        return PathBuf::from(dir);
    }
    if built.is_dir() {
        return built.to_path_buf();
    }
    PathBuf::from("./node/assets")
}

fn page(html: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, HTML),
            (header::CACHE_CONTROL, OWN_CACHE),
        ],
        html,
    )
        .into_response()
}

/// `GET /watch/{stream}`: the page reads the stream from `location.pathname`; the name is
/// checked here so that a bad link gets the usual 400 rather than a page that cannot work.
async fn watch(ApiPath(stream): ApiPath<String>) -> Result<Response, ApiError> {
    stream_name(&stream)?;
    Ok(page(WATCH_HTML))
}

/// `GET /assets/{file}`: our own scripts and style, from the binary.
async fn asset(ApiPath(file): ApiPath<String>) -> Result<Response, ApiError> {
    let (_, content_type, body) = EMBEDDED
        .iter()
        .find(|(name, _, _)| *name == file)
        .ok_or_else(|| ApiError::not_found(format!("no asset {file}")))?;
    Ok((
        [
            (header::CONTENT_TYPE, *content_type),
            (header::CACHE_CONTROL, OWN_CACHE),
        ],
        *body,
    )
        .into_response())
}

/// `GET /assets/vendor/{file}`: hls.js as npm installed it.
async fn vendor(
    State(app): State<Arc<App>>,
    ApiPath(file): ApiPath<String>,
) -> Result<Response, ApiError> {
    let dir = assets_dir(&app.config.http.assets_dir);
    serve_vendor(&file, &dir, &HLS_JS, &HLS_JS_MAP).await
}

async fn serve_vendor(
    file: &str,
    dir: &Path,
    js: &VendorFile,
    map: &VendorFile,
) -> Result<Response, ApiError> {
    let vf = match file {
        "hls.min.js" => js,
        "hls.min.js.map" => map,
        _ => return Err(ApiError::not_found(format!("no vendor asset {file}"))),
    };
    let body = vf.get(dir).await?;
    Ok((
        [
            (header::CONTENT_TYPE, vf.content_type),
            (header::CACHE_CONTROL, VENDOR_CACHE),
        ],
        body,
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn assets_dir_precedence() {
        let tmp = tempfile::tempdir().unwrap();
        let built = tmp.path();
        let absent = tmp.path().join("absent");
        let env = || Some(OsString::from("/from/env"));
        assert_eq!(
            resolve_assets_dir("/conf", env(), built),
            PathBuf::from("/conf")
        );
        assert_eq!(
            resolve_assets_dir("", env(), built),
            PathBuf::from("/from/env")
        );
        // An empty variable is unset.
        assert_eq!(
            resolve_assets_dir("", Some(OsString::new()), built),
            built.to_path_buf()
        );
        assert_eq!(resolve_assets_dir("", None, built), built.to_path_buf());
        assert_eq!(
            resolve_assets_dir("", None, &absent),
            PathBuf::from("./node/assets")
        );
    }

    #[test]
    fn the_source_tree_has_the_assets() {
        // Built from this checkout: the fallback points at node/assets, whose lockfile pins hls.js.
        let dir = resolve_assets_dir(
            "",
            None,
            Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/assets")),
        );
        let lock = std::fs::read_to_string(dir.join("package-lock.json")).unwrap();
        assert!(lock.contains("\"node_modules/hls.js\""), "{lock}");
    }

    async fn body(r: Response) -> String {
        let b = axum::body::to_bytes(r.into_body(), usize::MAX)
            .await
            .unwrap();
        String::from_utf8(b.to_vec()).unwrap()
    }

    fn header_of(r: &Response, h: header::HeaderName) -> &str {
        r.headers().get(h).unwrap().to_str().unwrap()
    }

    #[tokio::test]
    async fn vendor_file_is_read_once_and_missing_is_a_404() {
        let tmp = tempfile::tempdir().unwrap();
        let js = VendorFile::new("hls.js/dist/hls.min.js", JS);
        let map = VendorFile::new("hls.js/dist/hls.min.js.map", JSON);

        let err = serve_vendor("hls.min.js", tmp.path(), &js, &map)
            .await
            .unwrap_err()
            .into_response();
        assert_eq!(err.status(), 404);
        assert!(body(err).await.contains("npm ci --prefix node/assets"));

        // Installed after start: served without a restart.
        let dist = tmp.path().join("node_modules/hls.js/dist");
        std::fs::create_dir_all(&dist).unwrap();
        std::fs::write(dist.join("hls.min.js"), "var Hls;").unwrap();
        let r = serve_vendor("hls.min.js", tmp.path(), &js, &map)
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(header_of(&r, header::CONTENT_TYPE), JS);
        assert_eq!(header_of(&r, header::CACHE_CONTROL), VENDOR_CACHE);
        assert_eq!(body(r).await, "var Hls;");

        // Kept in memory: a later change on disk is not re-read.
        std::fs::write(dist.join("hls.min.js"), "changed").unwrap();
        let r = serve_vendor("hls.min.js", tmp.path(), &js, &map)
            .await
            .unwrap();
        assert_eq!(body(r).await, "var Hls;");

        let other = serve_vendor("hls.js", tmp.path(), &js, &map)
            .await
            .unwrap_err()
            .into_response();
        assert_eq!(other.status(), 404);
    }

    /// The stateless routes over a real socket: paths, statuses, headers.
    #[tokio::test]
    async fn embedded_routes() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            axum::serve(listener, embedded::<()>().into_make_service())
                .await
                .unwrap();
        });
        let client = reqwest::Client::new();
        let get = |path: &str| client.get(format!("http://{addr}{path}")).send();

        let r = get("/watch/demo").await.unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["content-type"], HTML);
        assert_eq!(r.headers()["cache-control"], OWN_CACHE);
        assert!(r.text().await.unwrap().contains("/assets/watch.js"));

        let r = get("/watch/bad%20name").await.unwrap();
        assert_eq!(r.status(), 400);
        let v: serde_json::Value = r.json().await.unwrap();
        assert_eq!(v["error"], "bad_request");

        let r = get("/dashboard").await.unwrap();
        assert_eq!(r.status(), 200);
        assert!(r.text().await.unwrap().contains("/assets/dashboard.js"));

        for (file, ct) in [("watch.js", JS), ("dashboard.js", JS), ("style.css", CSS)] {
            let r = get(&format!("/assets/{file}")).await.unwrap();
            assert_eq!(r.status(), 200, "{file}");
            assert_eq!(r.headers()["content-type"], ct, "{file}");
            assert_eq!(r.headers()["cache-control"], OWN_CACHE, "{file}");
        }
        let r = get("/assets/nope.js").await.unwrap();
        assert_eq!(r.status(), 404);
        let v: serde_json::Value = r.json().await.unwrap();
        assert_eq!(v["error"], "not_found");

        server.abort();
    }
}
