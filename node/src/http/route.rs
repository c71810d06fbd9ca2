//! `GET /v1/route/{stream}`: send a viewer to a live node of its region with the least load.
//!
//! The viewer's region comes from the `X-Viewer-Region` header, else from `[[cluster.regions]]`
//! (the client address matched against CIDR ranges), else it is unknown and every region is a
//! candidate. Candidates are the members heard from within `cluster.dead_after_ms` (this node
//! included); the least loaded wins (CPU, then streams originated, then name for a stable
//! answer). The answer is a 302 to that node's CMAF master playlist (`?format=ts`: the
//! MPEG-TS one; `?format=dash`: the MPD), never cached. With `cdn.base_url` set, the URL is the
//! CDN's (`{base}/cmaf/{stream}/master.m3u8`).

use std::net::IpAddr;
use std::sync::Arc;

use axum::extract::{ConnectInfo, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;

use super::api::stream_name;
use super::error::{ApiError, ApiPath};
use crate::app::App;
use crate::config::RegionCidr;

/// Routes of this module.
pub fn routes() -> Router<Arc<App>> {
    Router::new().route("/v1/route/{stream}", get(route))
}

#[derive(Debug, Deserialize)]
struct RouteQuery {
    format: Option<String>,
}

/// The region of a viewer address, from the configured ranges (first match).
pub fn region_of(ip: IpAddr, ranges: &[RegionCidr]) -> Option<&str> {
    ranges.iter().find_map(|r| {
        let net: ipnet::IpNet = r.cidr.parse().ok()?;
        net.contains(&ip).then_some(r.region.as_str())
    })
}

async fn route(
    State(app): State<Arc<App>>,
    ConnectInfo(super::zerocopy::PeerAddr(peer)): ConnectInfo<super::zerocopy::PeerAddr>,
    headers: HeaderMap,
    ApiPath(stream): ApiPath<String>,
    Query(q): Query<RouteQuery>,
) -> Result<Response, ApiError> {
    let name = stream_name(&stream)?;
    let path = match q.format.as_deref() {
        None | Some("cmaf") | Some("ll-hls") => format!("/cmaf/{name}/master.m3u8"),
        Some("ts") | Some("hls") => format!("/hls/{name}/master.m3u8"),
        Some("dash") => format!("/cmaf/{name}/manifest.mpd"),
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "format must be cmaf, ts or dash, not {other:?}"
            )))
        }
    };
    match app.registry.stream(name.as_str()) {
        Some(rec) if rec.status().is_live() => {}
        Some(_) => return Err(ApiError::ended(name.as_str())),
        None => return Err(ApiError::not_found(format!("no stream {name}"))),
    }
    let region = headers
        .get("x-viewer-region")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|r| !r.is_empty() && r.len() <= 64)
        .map(str::to_owned)
        .or_else(|| region_of(peer.ip(), &app.config.cluster.regions).map(str::to_owned));
    let members = app.registry.live_members();
    let in_region: Vec<_> = members
        .iter()
        .filter(|(n, _)| region.as_deref() == Some(n.region.as_str()))
        .collect();
    let pool: Vec<_> = if in_region.is_empty() {
        members.iter().collect()
    } else {
        in_region
    };
    let Some((node, load)) = pool.into_iter().min_by(|(a, la), (b, lb)| {
        la.cpu_pct
            .total_cmp(&lb.cpu_pct)
            .then(la.streams.cmp(&lb.streams))
            .then(a.name.cmp(&b.name))
    }) else {
        return Err(ApiError::unavailable("no live node to route to"));
    };
    // Behind a CDN the viewer goes to the CDN (which reaches the origins itself); the answer
    // still names the node the cluster would have picked.
    let url = match &app.config.url_base() {
        Some(base) => format!("{base}{path}"),
        None => format!("{}{path}", node.http),
    };
    Ok((
        StatusCode::FOUND,
        [
            (header::LOCATION, url.clone()),
            (header::CACHE_CONTROL, "no-store".to_owned()),
        ],
        Json(json!({
            "stream": name.as_str(),
            "node": node.name,
            "region": node.region,
            "viewer_region": region,
            "load": load,
            "url": url,
        })),
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn regions_come_from_the_first_matching_range() {
        let ranges = vec![
            RegionCidr {
                cidr: "10.1.0.0/16".into(),
                region: "eu".into(),
            },
            RegionCidr {
                cidr: "10.0.0.0/8".into(),
                region: "us".into(),
            },
            RegionCidr {
                cidr: "2001:db8::/32".into(),
                region: "ap".into(),
            },
        ];
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(region_of(ip("10.1.2.3"), &ranges), Some("eu"));
        assert_eq!(region_of(ip("10.9.2.3"), &ranges), Some("us"));
        assert_eq!(region_of(ip("2001:db8::1"), &ranges), Some("ap"));
        assert_eq!(region_of(ip("192.168.1.1"), &ranges), None);
    }
}
