//! The HTTP side: routers per concern, one `ApiError`, the shared middleware.

pub mod analytics;
pub mod api;
pub mod cache;
pub mod error;
pub mod pages;
pub mod playback;
pub mod route;
pub mod server;
pub mod ws;
pub mod zerocopy;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use tower_http::trace::TraceLayer;

use crate::app::App;

/// The whole router.
pub fn router(app: Arc<App>) -> Router {
    // Playlists negotiate gzip themselves (`cache::playlist`): a media playlist is compressed
    // once per version, not once per request.
    let playback = playback::routes().layer(cache::cors_layer(&app.config.cache));
    Router::new()
        .merge(api::routes())
        .merge(ws::routes())
        .merge(route::routes())
        .merge(playback)
        .merge(pages::routes())
        .merge(analytics::routes(&app))
        .fallback(|| async { error::ApiError::not_found("no such route") })
        .layer(TraceLayer::new_for_http())
        .layer(tower_http::timeout::TimeoutLayer::with_status_code(
            axum::http::StatusCode::REQUEST_TIMEOUT,
            Duration::from_secs(30),
        ))
        .with_state(app)
}
