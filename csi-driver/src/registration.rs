//! Kubelet plugin registration (v1): lets the plugin register itself with kubelet where the
//! standard node-driver-registrar sidecar is not available. Kubelet watches
//! `<kubelet-dir>/plugins_registry`, calls `GetInfo` on every socket there, then tells the plugin
//! whether registration worked.

use sc_api::consts::CSI_DRIVER_NAME;
use sc_proto::registration::{InfoRequest, PluginInfo, RegistrationStatus, RegistrationStatusResponse, registration_server::Registration};
use tonic::{Request, Response, Status};
use tracing::{error, info};

/// CSI spec versions this plugin implements, as kubelet expects them listed.
pub const SUPPORTED_CSI_VERSIONS: &[&str] = &["1.0.0"];

/// The registration service.
pub struct RegistrationService {
    /// The CSI socket's path as kubelet sees it.
    pub csi_endpoint_path: String,
}

/// File name of the registration socket inside kubelet's `plugins_registry` directory.
pub fn registration_socket_name() -> String {
    format!("{CSI_DRIVER_NAME}-reg.sock")
}

#[tonic::async_trait]
impl Registration for RegistrationService {
    async fn get_info(&self, _: Request<InfoRequest>) -> Result<Response<PluginInfo>, Status> {
        Ok(Response::new(PluginInfo {
            r#type: "CSIPlugin".to_owned(),
            name: CSI_DRIVER_NAME.to_owned(),
            endpoint: self.csi_endpoint_path.clone(),
            supported_versions: SUPPORTED_CSI_VERSIONS.iter().map(|version| (*version).to_owned()).collect(),
        }))
    }

    async fn notify_registration_status(
        &self,
        request: Request<RegistrationStatus>,
    ) -> Result<Response<RegistrationStatusResponse>, Status> {
        let status = request.into_inner();
        if status.plugin_registered {
            info!("kubelet registered the plugin");
        } else {
            error!(error = %status.error, "kubelet refused to register the plugin");
        }
        Ok(Response::new(RegistrationStatusResponse {}))
    }
}
