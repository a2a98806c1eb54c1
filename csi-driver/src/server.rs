//! The CSI Identity and Node gRPC services: thin methods that validate, delegate to
//! [`NodeCore`], and map every error to one gRPC code (logged once, here).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use sc_api::consts::CSI_DRIVER_NAME;
use sc_proto::csi::{
    self, GetPluginCapabilitiesRequest, GetPluginCapabilitiesResponse, GetPluginInfoRequest, GetPluginInfoResponse,
    NodeExpandVolumeRequest, NodeExpandVolumeResponse, NodeGetCapabilitiesRequest, NodeGetCapabilitiesResponse, NodeGetInfoRequest,
    NodeGetInfoResponse, NodeGetVolumeStatsRequest, NodeGetVolumeStatsResponse, NodePublishVolumeRequest, NodePublishVolumeResponse,
    NodeServiceCapability, NodeStageVolumeRequest, NodeStageVolumeResponse, NodeUnpublishVolumeRequest, NodeUnpublishVolumeResponse,
    NodeUnstageVolumeRequest, NodeUnstageVolumeResponse, ProbeRequest, ProbeResponse, VolumeCondition, VolumeUsage,
    node_service_capability::{Rpc, rpc::Type as RpcType},
    volume_usage::Unit,
};
use tonic::{Code, Request, Response, Status};
use tracing::{info, warn};

use crate::cluster::{ClusterError, ClusterView};
use crate::node::{IoError, NodeCore, PublishError, StatsError, UnpublishError};
use crate::quota;
use crate::sys::System;
use crate::validate::{self, InvalidField, TargetPolicy};

/// How many rootfs volumes kubelet may place on one node (kubelet 1.20 logs an error for 0).
pub const MAX_VOLUMES_PER_NODE: i64 = 1000;

/// The Identity service. `ready` turns true once start-up recovery is done.
pub struct IdentityService {
    pub ready: Arc<AtomicBool>,
}

#[tonic::async_trait]
impl csi::identity_server::Identity for IdentityService {
    async fn get_plugin_info(&self, _: Request<GetPluginInfoRequest>) -> Result<Response<GetPluginInfoResponse>, Status> {
        Ok(Response::new(GetPluginInfoResponse {
            name: CSI_DRIVER_NAME.to_owned(),
            vendor_version: env!("CARGO_PKG_VERSION").to_owned(),
            manifest: HashMap::new(),
        }))
    }

    async fn get_plugin_capabilities(
        &self,
        _: Request<GetPluginCapabilitiesRequest>,
    ) -> Result<Response<GetPluginCapabilitiesResponse>, Status> {
        // A node-only plugin for inline volumes: no controller service, no topology constraints.
        Ok(Response::new(GetPluginCapabilitiesResponse { capabilities: Vec::new() }))
    }

    async fn probe(&self, _: Request<ProbeRequest>) -> Result<Response<ProbeResponse>, Status> {
        Ok(Response::new(ProbeResponse { ready: Some(self.ready.load(Ordering::Acquire)) }))
    }
}

/// The Node service.
pub struct NodeService<C, S> {
    pub core: Arc<NodeCore<C, S>>,
    pub node_id: String,
    pub policy: TargetPolicy,
}

#[tonic::async_trait]
impl<C: ClusterView, S: System> csi::node_server::Node for NodeService<C, S> {
    async fn node_stage_volume(&self, _: Request<NodeStageVolumeRequest>) -> Result<Response<NodeStageVolumeResponse>, Status> {
        Err(unimplemented("NodeStageVolume"))
    }

    async fn node_unstage_volume(&self, _: Request<NodeUnstageVolumeRequest>) -> Result<Response<NodeUnstageVolumeResponse>, Status> {
        Err(unimplemented("NodeUnstageVolume"))
    }

    async fn node_publish_volume(&self, request: Request<NodePublishVolumeRequest>) -> Result<Response<NodePublishVolumeResponse>, Status> {
        let raw = request.into_inner();
        // Three kinds of inline volume, told apart by their attributes (each refuses the others').
        let layer = validate::layer(&raw, &self.policy).map_err(|error| reject("NodePublishVolume", &raw.volume_id, error))?;
        if let Some(checked) = layer {
            self.core.publish_layer(&checked).await.map_err(|error| fail("NodePublishVolume", &raw.volume_id, error.into()))?;
            return Ok(Response::new(NodePublishVolumeResponse {}));
        }
        let exec_wrapper =
            validate::exec_wrapper(&raw, &self.policy).map_err(|error| reject("NodePublishVolume", &raw.volume_id, error))?;
        if let Some(checked) = exec_wrapper {
            self.core.publish_exec_wrapper(&checked).await.map_err(|error| fail("NodePublishVolume", &raw.volume_id, error.into()))?;
            return Ok(Response::new(NodePublishVolumeResponse {}));
        }
        let checked = validate::publish(&raw, &self.policy).map_err(|error| reject("NodePublishVolume", &raw.volume_id, error))?;
        self.core.publish(&checked).await.map_err(|error| fail("NodePublishVolume", &raw.volume_id, error.into()))?;
        Ok(Response::new(NodePublishVolumeResponse {}))
    }

    async fn node_unpublish_volume(
        &self,
        request: Request<NodeUnpublishVolumeRequest>,
    ) -> Result<Response<NodeUnpublishVolumeResponse>, Status> {
        let raw = request.into_inner();
        let checked = validate::unpublish(&raw, &self.policy).map_err(|error| reject("NodeUnpublishVolume", &raw.volume_id, error))?;
        self.core.unpublish(&checked).await.map_err(|error| fail("NodeUnpublishVolume", &raw.volume_id, error.into()))?;
        Ok(Response::new(NodeUnpublishVolumeResponse {}))
    }

    async fn node_get_volume_stats(
        &self,
        request: Request<NodeGetVolumeStatsRequest>,
    ) -> Result<Response<NodeGetVolumeStatsResponse>, Status> {
        let raw = request.into_inner();
        if raw.volume_id.is_empty() || raw.volume_path.is_empty() {
            let field = if raw.volume_id.is_empty() { "volume_id" } else { "volume_path" };
            return Err(reject("NodeGetVolumeStats", &raw.volume_id, InvalidField { field, problem: "missing".into() }));
        }
        let stats = self
            .core
            .stats(&raw.volume_id, &PathBuf::from(&raw.volume_path))
            .await
            .map_err(|error| fail("NodeGetVolumeStats", &raw.volume_id, error.into()))?;
        let saturate = |value: u64| i64::try_from(value).unwrap_or(i64::MAX);
        Ok(Response::new(NodeGetVolumeStatsResponse {
            usage: vec![
                VolumeUsage {
                    available: saturate(stats.bytes_available),
                    total: saturate(stats.bytes_total),
                    used: saturate(stats.bytes_used),
                    unit: Unit::Bytes as i32,
                },
                VolumeUsage {
                    available: saturate(stats.inodes_free),
                    total: saturate(stats.inodes_total),
                    used: saturate(stats.inodes_used),
                    unit: Unit::Inodes as i32,
                },
            ],
            volume_condition: Some(VolumeCondition {
                abnormal: stats.abnormal.is_some(),
                message: stats.abnormal.unwrap_or_else(|| "mounted".into()),
            }),
        }))
    }

    async fn node_expand_volume(&self, _: Request<NodeExpandVolumeRequest>) -> Result<Response<NodeExpandVolumeResponse>, Status> {
        Err(unimplemented("NodeExpandVolume"))
    }

    async fn node_get_capabilities(&self, _: Request<NodeGetCapabilitiesRequest>) -> Result<Response<NodeGetCapabilitiesResponse>, Status> {
        let capability =
            |kind: RpcType| NodeServiceCapability { r#type: Some(csi::node_service_capability::Type::Rpc(Rpc { r#type: kind as i32 })) };
        Ok(Response::new(NodeGetCapabilitiesResponse {
            capabilities: vec![capability(RpcType::GetVolumeStats), capability(RpcType::VolumeCondition)],
        }))
    }

    async fn node_get_info(&self, _: Request<NodeGetInfoRequest>) -> Result<Response<NodeGetInfoResponse>, Status> {
        Ok(Response::new(NodeGetInfoResponse {
            node_id: self.node_id.clone(),
            max_volumes_per_node: MAX_VOLUMES_PER_NODE,
            accessible_topology: None,
        }))
    }
}

fn unimplemented(rpc: &str) -> Status {
    Status::unimplemented(format!("{rpc} is not implemented: {CSI_DRIVER_NAME} only serves inline (ephemeral) volumes"))
}

fn reject(rpc: &str, volume_id: &str, error: InvalidField) -> Status {
    warn!(rpc, volume_id, %error, "rejected");
    Status::invalid_argument(error.to_string())
}

fn fail(rpc: &str, volume_id: &str, status: Status) -> Status {
    if status.code() == Code::Unavailable {
        info!(rpc, volume_id, error = status.message(), "not possible yet");
    } else {
        warn!(rpc, volume_id, code = ?status.code(), error = status.message(), "failed");
    }
    status
}

impl From<ClusterError> for Status {
    fn from(error: ClusterError) -> Self {
        let message = error.to_string();
        match error {
            ClusterError::Denied(_) => Status::permission_denied(message),
            ClusterError::NotNow(_) => Status::failed_precondition(message),
            ClusterError::Api(_) | ClusterError::StaticFile { .. } => Status::unavailable(message),
        }
    }
}

impl From<IoError> for Status {
    fn from(error: IoError) -> Self {
        Status::internal(error.to_string())
    }
}

/// The code of a failure of the rootfs's own filesystem: what waiting fixes is `Unavailable`
/// (kubelet retries), what an administrator or the user must fix is `FailedPrecondition`.
fn rootfs_status(error: &quota::QuotaError, message: String) -> Status {
    use quota::QuotaError;
    match error {
        QuotaError::GrowWhileInUse { .. } | QuotaError::NoFreeLoop { .. } => Status::unavailable(message),
        QuotaError::ToolNotFound { .. }
        | QuotaError::CannotShrink { .. }
        | QuotaError::InUse { .. }
        | QuotaError::BoundElsewhere { .. }
        | QuotaError::NotExt4 { .. }
        | QuotaError::StillAttached { .. } => Status::failed_precondition(message),
        QuotaError::ForeignMount { .. } => Status::already_exists(message),
        QuotaError::ToolFailed { .. } | QuotaError::NotMounted { .. } | QuotaError::Io { .. } | QuotaError::Mountinfo(_) => {
            Status::internal(message)
        }
    }
}

impl From<PublishError> for Status {
    fn from(error: PublishError) -> Self {
        let message = error.to_string();
        match error {
            PublishError::Cluster(cluster) => cluster.into(),
            PublishError::ProviderNotReady { .. }
            | PublishError::ProviderStuck { .. }
            | PublishError::ProviderProcessNotFound { .. }
            | PublishError::ProviderReplaced { .. }
            | PublishError::ClaimNotMounted { .. }
            | PublishError::LayerGone { .. } => Status::unavailable(message),
            PublishError::NoLayer { .. } | PublishError::OpaqueListTooLarge { .. } => Status::failed_precondition(message),
            PublishError::ClaimFilesystem { .. } | PublishError::ClaimDataDir { .. } => Status::failed_precondition(message),
            PublishError::LowerNotFound { .. } | PublishError::UnusableLower { .. } | PublishError::UpperInUse { .. } => {
                Status::failed_precondition(message)
            }
            PublishError::VolumeConflict { .. } | PublishError::ForeignMount { .. } => Status::already_exists(message),
            PublishError::ReadOnly(_) => Status::internal(message),
            PublishError::RootfsSize { .. } | PublishError::ExecWrapperSource { .. } => Status::failed_precondition(message),
            PublishError::Rootfs(quota) => rootfs_status(&quota, message),
            PublishError::Io(io) => io.into(),
        }
    }
}

impl From<UnpublishError> for Status {
    fn from(error: UnpublishError) -> Self {
        let message = error.to_string();
        match error {
            UnpublishError::Busy { .. } => Status::unavailable(message),
            UnpublishError::ForeignMount { .. } => Status::failed_precondition(message),
            UnpublishError::Io(io) => io.into(),
        }
    }
}

impl From<StatsError> for Status {
    fn from(error: StatsError) -> Self {
        let message = error.to_string();
        match error {
            StatsError::NotFound { .. } => Status::not_found(message),
            StatsError::Io(io) => io.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::layout::ScKey;
    use std::time::Duration;

    fn sc() -> ScKey {
        ScKey { namespace: "ns".into(), name: "dev".into(), uid: "u".into() }
    }

    fn io() -> IoError {
        IoError { action: "mounting", path: "/t".into(), source: std::io::ErrorKind::PermissionDenied.into() }
    }

    #[test]
    fn every_publish_error_has_its_code() {
        let cases: Vec<(PublishError, Code)> = vec![
            (ClusterError::Denied("no".into()).into(), Code::PermissionDenied),
            (ClusterError::NotNow("deleting".into()).into(), Code::FailedPrecondition),
            (ClusterError::StaticFile { path: "/f".into(), message: "gone".into() }.into(), Code::Unavailable),
            (
                PublishError::ProviderNotReady { sc: sc(), waited: Duration::from_secs(60), reason: "ContainerCreating".into() },
                Code::Unavailable,
            ),
            (PublishError::ProviderProcessNotFound { sc: sc(), container_id: "c".into() }, Code::Unavailable),
            (PublishError::ProviderReplaced { sc: sc(), container_id: "c".into() }, Code::Unavailable),
            (PublishError::ProviderStuck { sc: sc(), reason: "ImagePullBackOff".into() }, Code::Unavailable),
            (PublishError::LowerNotFound { sc: sc() }, Code::FailedPrecondition),
            (PublishError::UnusableLower { sc: sc() }, Code::FailedPrecondition),
            (PublishError::UpperInUse { sc: sc(), mounted_at: "/x".into() }, Code::FailedPrecondition),
            (
                PublishError::VolumeConflict {
                    volume_id: "v".into(),
                    existing: "/a".into(),
                    existing_sc: Box::new(sc()),
                    requested: "/b".into(),
                },
                Code::AlreadyExists,
            ),
            (PublishError::ForeignMount { target: "/t".into(), fs_type: "ext4".into(), device: "/dev/sda".into() }, Code::AlreadyExists),
            (PublishError::ReadOnly("/t/rootfs".into()), Code::Internal),
            (PublishError::RootfsSize { sc: sc(), problem: "200Gi is more than this node's maximum".into() }, Code::FailedPrecondition),
            (PublishError::ExecWrapperSource { dir: "/d".into(), problem: "it holds no sc-exec".into() }, Code::FailedPrecondition),
            (PublishError::NoLayer { sc: sc(), looked: "/claim/stoppablecontainer/upper".into() }, Code::FailedPrecondition),
            (PublishError::OpaqueListTooLarge { sc: sc(), bytes: 17 << 20, max: 16 << 20 }, Code::FailedPrecondition),
            (PublishError::LayerGone { target: "/t".into() }, Code::Unavailable),
            (ClusterError::NotNow("the layer is on node \"node-2\"".into()).into(), Code::FailedPrecondition),
            (
                PublishError::Rootfs(quota::QuotaError::GrowWhileInUse {
                    image: "i".into(),
                    in_use: "mounted".into(),
                    from: "1Gi".into(),
                    to: "2Gi".into(),
                }),
                Code::Unavailable,
            ),
            (
                PublishError::Rootfs(quota::QuotaError::CannotShrink { image: "i".into(), current: "2Gi".into(), requested: "1Gi".into() }),
                Code::FailedPrecondition,
            ),
            (PublishError::Rootfs(quota::QuotaError::NotMounted { fs_dir: "/f".into() }), Code::Internal),
            (
                PublishError::Rootfs(quota::QuotaError::BoundElsewhere {
                    fs_dir: "/f".into(),
                    directory: "/upper".into(),
                    bind: "/t/upper".into(),
                }),
                Code::FailedPrecondition,
            ),
            (PublishError::Io(io()), Code::Internal),
        ];
        for (error, code) in cases {
            let message = error.to_string();
            let status = Status::from(error);
            assert_eq!(status.code(), code, "{message}");
            assert_eq!(status.message(), message);
        }
    }

    #[test]
    fn unpublish_and_stats_errors_have_their_codes() {
        let busy = UnpublishError::Busy { target: "/t".into(), source: std::io::Error::from_raw_os_error(16) };
        assert_eq!(Status::from(busy).code(), Code::Unavailable);
        let foreign = UnpublishError::ForeignMount { target: "/t".into(), fs_type: "nfs".into(), device: "srv:/x".into() };
        assert_eq!(Status::from(foreign).code(), Code::FailedPrecondition);
        assert_eq!(Status::from(UnpublishError::Io(io())).code(), Code::Internal);
        let missing = StatsError::NotFound { volume_id: "v".into(), path: "/t".into() };
        assert_eq!(Status::from(missing).message(), "volume v is not published at /t on this node");
    }
}
