//! Finding the provider container through the container runtime (CRI `ListContainers`, then
//! `ContainerStatus`) as soon as the runtime runs it, instead of waiting for kubelet to report it
//! in the pod's status: kubelet learns of a started container only at its next PLEG relist (up to
//! a second later) and then writes the status through the API server.
//!
//! Trust: the runtime's labels `io.kubernetes.pod.uid` and `io.kubernetes.container.name` are
//! written by kubelet from the pod it runs, never by the pod's author, and the pod UID asked for is
//! the one the operator recorded for its provider pod. The container is still checked the usual
//! way afterwards (its process through its cgroup, its root filesystem by identity).

use std::fmt;
use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::time::Duration;

use sc_proto::runtime::v1::{
    Container, ContainerFilter, ContainerState, ContainerStateValue, ContainerStatusRequest, ListContainersRequest,
};

use crate::cri::{CriError, RuntimeEndpoint, call_with_fallback};

/// The label kubelet gives every container of a pod: the pod's UID.
pub const POD_UID_LABEL: &str = "io.kubernetes.pod.uid";
/// The label kubelet gives every container: its name in the pod spec.
pub const CONTAINER_NAME_LABEL: &str = "io.kubernetes.container.name";

/// How long one question to the runtime may take while a publish waits: a runtime that does not
/// answer quickly leaves the wait to kubelet's status, as before.
pub const CONTAINER_QUERY_TIMEOUT: Duration = Duration::from_secs(1);

/// A running container as the runtime describes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RuntimeContainer {
    pub container_id: String,
    /// What kubelet reports as the container's `imageID` (the runtime's `ContainerStatus`
    /// `image_ref`): the operator matches the published image config against it.
    pub image_ref: String,
}

/// Boxed, so the trait can be used as an object in the node's settings.
pub type RuntimeFuture<'a> = Pin<Box<dyn Future<Output = Result<Option<RuntimeContainer>, CriError>> + Send + 'a>>;

/// The container runtime's view of running containers.
pub trait ContainerRuntime: Send + Sync + fmt::Debug {
    /// The running container `name` of the pod `pod_uid` on this node, if the runtime runs it.
    fn running_container<'a>(&'a self, pod_uid: &'a str, name: &'a str) -> RuntimeFuture<'a>;
}

/// Of a `ListContainers` answer, the running container `name` of pod `pod_uid` (the labels are
/// checked here too, not only by the runtime's filter). Two can run for a moment while a
/// restarted container replaces the old one: the newest is the one that stays.
pub fn running_container_of<'a>(containers: &'a [Container], pod_uid: &str, name: &str) -> Option<&'a Container> {
    containers
        .iter()
        .filter(|container| container.state == ContainerState::ContainerRunning as i32)
        .filter(|container| labelled(&container.labels, pod_uid, name))
        .max_by_key(|container| container.created_at)
}

fn labelled(labels: &std::collections::HashMap<String, String>, pod_uid: &str, name: &str) -> bool {
    labels.get(POD_UID_LABEL).is_some_and(|uid| uid == pod_uid) && labels.get(CONTAINER_NAME_LABEL).is_some_and(|label| label == name)
}

/// The runtime behind the node's CRI socket.
#[derive(Clone, Debug)]
pub struct CriContainerRuntime {
    pub endpoint: RuntimeEndpoint,
    pub timeout: Duration,
}

impl CriContainerRuntime {
    pub fn new(endpoint: RuntimeEndpoint) -> Self {
        Self { endpoint, timeout: CONTAINER_QUERY_TIMEOUT }
    }

    async fn find(&self, pod_uid: &str, name: &str) -> Result<Option<RuntimeContainer>, CriError> {
        let socket = self.endpoint.socket()?;
        let containers = list_running(&socket, pod_uid, name, self.timeout).await?;
        let Some(container) = running_container_of(&containers, pod_uid, name) else {
            return Ok(None);
        };
        // The status is what kubelet itself reads: its image_ref is the pod status's imageID.
        let status = container_status(&socket, &container.id, self.timeout).await?;
        let still_running = status
            .as_ref()
            .is_some_and(|status| status.state == ContainerState::ContainerRunning as i32 && labelled(&status.labels, pod_uid, name));
        Ok(status.filter(|_| still_running).map(|status| RuntimeContainer {
            container_id: container.id.clone(),
            image_ref: if status.image_ref.is_empty() { container.image_ref.clone() } else { status.image_ref },
        }))
    }
}

impl ContainerRuntime for CriContainerRuntime {
    fn running_container<'a>(&'a self, pod_uid: &'a str, name: &'a str) -> RuntimeFuture<'a> {
        Box::pin(self.find(pod_uid, name))
    }
}

async fn list_running(socket: &Path, pod_uid: &str, name: &str, timeout: Duration) -> Result<Vec<Container>, CriError> {
    let request = || ListContainersRequest {
        filter: Some(ContainerFilter {
            state: Some(ContainerStateValue { state: ContainerState::ContainerRunning as i32 }),
            label_selector: [(POD_UID_LABEL.to_owned(), pod_uid.to_owned()), (CONTAINER_NAME_LABEL.to_owned(), name.to_owned())].into(),
            ..ContainerFilter::default()
        }),
    };
    let answer = call_with_fallback(
        socket,
        "RuntimeService",
        "ListContainers",
        timeout,
        |channel| async move {
            sc_proto::runtime::v1::runtime_service_client::RuntimeServiceClient::new(channel).list_containers(request()).await
        },
        |channel| async move {
            sc_proto::runtime::v1alpha2::runtime_service_client::RuntimeServiceClient::new(channel).list_containers(request()).await
        },
    )
    .await?;
    Ok(answer.containers)
}

/// The container's status; None when the runtime no longer has it (it was removed in between).
async fn container_status(
    socket: &Path,
    container_id: &str,
    timeout: Duration,
) -> Result<Option<sc_proto::runtime::v1::ContainerStatus>, CriError> {
    let request = || ContainerStatusRequest { container_id: container_id.to_owned(), verbose: false };
    let answer = call_with_fallback(
        socket,
        "RuntimeService",
        "ContainerStatus",
        timeout,
        |channel| async move {
            sc_proto::runtime::v1::runtime_service_client::RuntimeServiceClient::new(channel).container_status(request()).await
        },
        |channel| async move {
            sc_proto::runtime::v1alpha2::runtime_service_client::RuntimeServiceClient::new(channel).container_status(request()).await
        },
    )
    .await;
    match answer {
        Ok(response) => Ok(response.status),
        Err(CriError::Failed { code: tonic::Code::NotFound, .. }) => Ok(None),
        Err(error) => Err(error),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    const POD: &str = "6d1c2b7e-43a1-4e5e-9d63-0c5a3f1b2e7d";

    fn container(id: &str, state: ContainerState, created_at: i64, labels: &[(&str, &str)]) -> Container {
        Container {
            id: id.into(),
            state: state as i32,
            created_at,
            labels: labels.iter().map(|(key, value)| ((*key).to_owned(), (*value).to_owned())).collect::<HashMap<_, _>>(),
            ..Container::default()
        }
    }

    fn of_provider(id: &str, state: ContainerState, created_at: i64) -> Container {
        container(id, state, created_at, &[(POD_UID_LABEL, POD), (CONTAINER_NAME_LABEL, "provider")])
    }

    #[test]
    fn the_running_provider_container_of_the_recorded_pod_is_found() {
        let containers =
            [of_provider("exited", ContainerState::ContainerExited, 1), of_provider("live", ContainerState::ContainerRunning, 2)];
        assert_eq!(running_container_of(&containers, POD, "provider").map(|c| c.id.as_str()), Some("live"));
    }

    #[test]
    fn while_a_restart_replaces_the_container_the_newest_running_one_is_taken() {
        let containers =
            [of_provider("new", ContainerState::ContainerRunning, 20), of_provider("old", ContainerState::ContainerRunning, 10)];
        assert_eq!(running_container_of(&containers, POD, "provider").map(|c| c.id.as_str()), Some("new"));
    }

    #[test]
    fn a_container_of_another_pod_or_name_or_not_running_is_never_taken() {
        // The runtime's filter is not trusted to have been applied: a runtime that ignores it
        // answers with every container.
        let containers = [
            container(
                "other-pod",
                ContainerState::ContainerRunning,
                5,
                &[(POD_UID_LABEL, "someone-else"), (CONTAINER_NAME_LABEL, "provider")],
            ),
            container("sidecar", ContainerState::ContainerRunning, 5, &[(POD_UID_LABEL, POD), (CONTAINER_NAME_LABEL, "debugger")]),
            container("unlabelled", ContainerState::ContainerRunning, 5, &[]),
            of_provider("created", ContainerState::ContainerCreated, 5),
            of_provider("unknown", ContainerState::ContainerUnknown, 5),
        ];
        assert_eq!(running_container_of(&containers, POD, "provider"), None);
    }

    #[tokio::test]
    async fn a_runtime_without_a_socket_is_an_error_not_a_container() {
        let runtime = CriContainerRuntime::new(RuntimeEndpoint::Socket("/nonexistent/cri.sock".into()));
        let error = runtime.running_container(POD, "provider").await.expect_err("no socket");
        assert!(matches!(error, CriError::Connect { .. }), "{error}");
    }
}
