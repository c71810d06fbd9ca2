//! Raft RPCs over the QUIC transport: the client side ([`RaftNetworkFactory`]) and the
//! encoding shared with the server side (`Cluster::handle`).
//!
//! A Raft body is the postcard encoding of openraft's request, carried in
//! [`RequestV1::Raft`]; the answer is the postcard encoding of
//! `Result<Response, RaftError>`. A peer that cannot be reached is reported as
//! `Unreachable`, so openraft backs off instead of spinning.

use std::net::SocketAddr;
use std::sync::Arc;

use hivecast_proto::peer::{PeerRequest, PeerResponse, RaftRpc, RequestV1, ResponseV1};
use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::state::{NodeId, PeerNode, TypeConfig};
use super::transport::Transport;

/// Why a peer's answer could not be used.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct PeerCallError(pub String);

/// Send one request and decode the answer.
pub async fn call(
    transport: &Transport,
    peer: SocketAddr,
    req: RequestV1,
    timeout: std::time::Duration,
) -> Result<ResponseV1, PeerCallError> {
    let bytes = transport
        .request(peer, &PeerRequest::V1(req).encode(), timeout)
        .await
        .map_err(|e| PeerCallError(e.to_string()))?;
    match PeerResponse::decode(&bytes).map_err(|e| PeerCallError(e.to_string()))? {
        PeerResponse::V1(r) => Ok(r),
    }
}

/// postcard, for Raft bodies and forwarded commands.
pub fn to_body<T: Serialize>(v: &T) -> Vec<u8> {
    postcard::to_allocvec(v).unwrap_or_default()
}

/// Decode a Raft body or forwarded command.
pub fn from_body<T: DeserializeOwned>(b: &[u8]) -> Result<T, PeerCallError> {
    postcard::from_bytes(b).map_err(|e| PeerCallError(format!("bad body: {e}")))
}

/// Makes one [`PeerClient`] per target.
#[derive(Clone)]
pub struct Network {
    /// The node's transport (`None` on a standalone node, whose one-voter group never sends).
    pub transport: Option<Arc<Transport>>,
}

impl RaftNetworkFactory<TypeConfig> for Network {
    type Network = PeerClient;

    async fn new_client(&mut self, target: NodeId, node: &PeerNode) -> PeerClient {
        PeerClient {
            transport: self.transport.clone(),
            target,
            addr: node.quic.parse().ok(),
        }
    }
}

/// Raft RPCs to one peer.
pub struct PeerClient {
    transport: Option<Arc<Transport>>,
    target: NodeId,
    addr: Option<SocketAddr>,
}

impl PeerClient {
    async fn rpc<Req, Resp, E>(
        &self,
        rpc: RaftRpc,
        req: &Req,
        option: &RPCOption,
    ) -> Result<Resp, RPCError<NodeId, PeerNode, RaftError<NodeId, E>>>
    where
        Req: Serialize,
        Resp: DeserializeOwned,
        E: std::error::Error + DeserializeOwned,
    {
        let (Some(addr), Some(transport)) = (self.addr, &self.transport) else {
            return Err(RPCError::Unreachable(Unreachable::new(&PeerCallError(
                "peer has no valid QUIC address, or this node has no transport".into(),
            ))));
        };
        let answer = call(
            transport,
            addr,
            RequestV1::Raft {
                rpc,
                body: to_body(req),
            },
            option.hard_ttl(),
        )
        .await
        .map_err(|e| RPCError::Unreachable(Unreachable::new(&e)))?;
        let body = match answer {
            ResponseV1::Raft { body } => body,
            other => {
                return Err(RPCError::Network(NetworkError::new(&PeerCallError(
                    format!("unexpected answer to a Raft RPC: {other:?}"),
                ))))
            }
        };
        let result: Result<Resp, RaftError<NodeId, E>> =
            from_body(&body).map_err(|e| RPCError::Network(NetworkError::new(&e)))?;
        result.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
    }
}

impl RaftNetwork<TypeConfig> for PeerClient {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<NodeId>, RPCError<NodeId, PeerNode, RaftError<NodeId>>> {
        self.rpc(RaftRpc::AppendEntries, &rpc, &option).await
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<NodeId>,
        RPCError<NodeId, PeerNode, RaftError<NodeId, InstallSnapshotError>>,
    > {
        self.rpc(RaftRpc::InstallSnapshot, &rpc, &option).await
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<NodeId>,
        option: RPCOption,
    ) -> Result<VoteResponse<NodeId>, RPCError<NodeId, PeerNode, RaftError<NodeId>>> {
        self.rpc(RaftRpc::Vote, &rpc, &option).await
    }
}
