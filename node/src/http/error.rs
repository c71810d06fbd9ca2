//! `ApiError`: the one place that maps an error to an HTTP status and to
//! `{"error": CODE, "message": TEXT}`. Details of a 5xx are logged, not sent.
//!
//! Every error is `Cache-Control: no-store` (some CDNs cache error answers for seconds unless
//! told not to), except where a handler gives it another lifetime with
//! [`ApiError::with_cache`] (see `http::cache::unknown_stream`).

use axum::extract::rejection::{JsonRejection, PathRejection};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

/// Error codes (the `error` field).
pub mod code {
    /// 400
    pub const BAD_REQUEST: &str = "bad_request";
    /// 401
    pub const UNAUTHORIZED: &str = "unauthorized";
    /// 404
    pub const NOT_FOUND: &str = "not_found";
    /// 410
    pub const STREAM_ENDED: &str = "stream_ended";
    /// 503
    pub const UNAVAILABLE: &str = "unavailable";
    /// 500
    pub const INTERNAL: &str = "internal";
}

/// An API error.
#[derive(Debug)]
pub struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    /// `Cache-Control` of the answer; `None`: `no-store`.
    cache: Option<HeaderValue>,
}

impl ApiError {
    /// Build one.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            cache: None,
        }
    }
    /// The same error with `Cache-Control: cache` instead of `no-store`: for answers that are
    /// the same for every client for a while (an unknown or ended stream), never for errors
    /// that a retry a moment later may not get (a part not produced yet, 400, 503).
    pub fn with_cache(mut self, cache: HeaderValue) -> Self {
        self.cache = Some(cache);
        self
    }
    /// 400
    pub fn bad_request(m: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code::BAD_REQUEST, m)
    }
    /// 404
    pub fn not_found(m: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, code::NOT_FOUND, m)
    }
    /// 410
    pub fn ended(stream: &str) -> Self {
        Self::new(
            StatusCode::GONE,
            code::STREAM_ENDED,
            format!("stream {stream} has ended"),
        )
    }
    /// 401
    pub fn unauthorized() -> Self {
        Self::new(
            StatusCode::UNAUTHORIZED,
            code::UNAUTHORIZED,
            "missing or wrong admin token (Authorization: Bearer <token>)",
        )
    }
    /// 503
    pub fn unavailable(m: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, code::UNAVAILABLE, m)
    }
    /// 500: the detail is logged; the client gets a generic message.
    pub fn internal(detail: impl std::fmt::Display) -> Self {
        tracing::error!(error = %detail, "internal error");
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            code::INTERNAL,
            "internal error",
        )
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut r = (
            self.status,
            Json(json!({"error": self.code, "message": self.message})),
        )
            .into_response();
        r.headers_mut().insert(
            axum::http::header::CACHE_CONTROL,
            self.cache
                .unwrap_or_else(|| HeaderValue::from_static("no-store")),
        );
        r
    }
}

impl From<JsonRejection> for ApiError {
    fn from(r: JsonRejection) -> Self {
        Self::bad_request(r.body_text())
    }
}

impl From<PathRejection> for ApiError {
    fn from(r: PathRejection) -> Self {
        Self::bad_request(r.body_text())
    }
}

impl From<crate::storage::StorageError> for ApiError {
    fn from(e: crate::storage::StorageError) -> Self {
        Self::internal(e)
    }
}

impl From<hivecast_actors::registry::RegistryError> for ApiError {
    fn from(e: hivecast_actors::registry::RegistryError) -> Self {
        use hivecast_actors::registry::RegistryError as R;
        match e {
            // No leader reachable (an election, or this node is cut off): retry later.
            R::Storage(m) => Self::unavailable(m),
            other => Self::internal(other),
        }
    }
}

/// `Json` that rejects with [`ApiError`].
#[derive(Debug, axum::extract::FromRequest)]
#[from_request(via(axum::Json), rejection(ApiError))]
pub struct ApiJson<T>(pub T);

/// `Path` that rejects with [`ApiError`].
#[derive(Debug, axum::extract::FromRequestParts)]
#[from_request(via(axum::extract::Path), rejection(ApiError))]
pub struct ApiPath<T>(pub T);
