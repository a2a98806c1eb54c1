//! Turns raw CSI requests into typed, checked requests. Every rejection names the field and says
//! what was expected, because kubelet shows the message in the pod's events.

use std::path::{Component, Path, PathBuf};

use sc_api::consts::{VOLUME_ATTR_EXEC_WRAPPER, VOLUME_ATTR_LAYER_OF, VOLUME_ATTR_SC_NAME};
use sc_proto::csi::{
    NodePublishVolumeRequest, NodeUnpublishVolumeRequest, VolumeCapability,
    volume_capability::{AccessType, access_mode::Mode},
};

use crate::cgroup::is_uid;

/// `volume_context` keys kubelet adds for inline volumes when the CSIDriver has `podInfoOnMount`.
pub mod context_keys {
    pub const EPHEMERAL: &str = "csi.storage.k8s.io/ephemeral";
    pub const POD_NAME: &str = "csi.storage.k8s.io/pod.name";
    pub const POD_NAMESPACE: &str = "csi.storage.k8s.io/pod.namespace";
    pub const POD_UID: &str = "csi.storage.k8s.io/pod.uid";
}

/// A request field that is missing or malformed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {field}: {problem}")]
pub struct InvalidField {
    pub field: &'static str,
    pub problem: String,
}

fn invalid(field: &'static str, problem: impl Into<String>) -> InvalidField {
    InvalidField { field, problem: problem.into() }
}

/// The pod kubelet is mounting the volume for, as it told us through `podInfoOnMount`.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PodRef {
    pub namespace: String,
    pub name: String,
    pub uid: String,
}

/// A checked `NodePublishVolume` for a consumer's inline rootfs volume.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PublishRequest {
    pub volume_id: String,
    pub target_path: PathBuf,
    pub pod: PodRef,
    /// The StoppableContainer the pod claims to be the consumer of (verified before use).
    pub sc_name: String,
}

/// A checked `NodePublishVolume` for a provider pod's inline exec-wrapper volume: the node's
/// `sc-exec`, read-only. It carries no StoppableContainer and needs no authorisation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExecWrapperRequest {
    pub volume_id: String,
    pub target_path: PathBuf,
}

/// A checked `NodePublishVolume` for a layer volume: the persistent layer (the overlay's upper
/// and the list of its opaque directories) of the StoppableContainer `sc_name`, read-only, for a
/// pod of the SC's own namespace (`kubectl sc diff`). Which SC and where its data is are decided
/// only from what the operator recorded (see [`crate::authorize::authorize_layer_reader`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LayerRequest {
    pub volume_id: String,
    pub target_path: PathBuf,
    /// The pod kubelet mounts the volume for (`podInfoOnMount`, checked against the target).
    pub pod: PodRef,
    /// The StoppableContainer the pod asks to read, looked up in the pod's own namespace only.
    pub sc_name: String,
}

/// A checked `NodeUnpublishVolume`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnpublishRequest {
    pub volume_id: String,
    pub target_path: PathBuf,
}

/// Where kubelet puts volume targets: only paths below `<kubelet_dir>/pods/` are ever mounted on.
#[derive(Clone, Debug)]
pub struct TargetPolicy {
    pub kubelet_dir: PathBuf,
}

impl TargetPolicy {
    fn check(&self, field: &'static str, target: &str) -> Result<PathBuf, InvalidField> {
        if target.is_empty() {
            return Err(invalid(field, "missing; kubelet always sends the directory to mount at"));
        }
        let path = Path::new(target);
        if !path.is_absolute() {
            return Err(invalid(field, format!("{target:?} is not an absolute path")));
        }
        if path.components().any(|component| matches!(component, Component::ParentDir | Component::CurDir)) {
            return Err(invalid(field, format!("{target:?} contains '.' or '..' components")));
        }
        let pods_dir = self.kubelet_dir.join("pods");
        if !path.starts_with(&pods_dir) || path == pods_dir {
            return Err(invalid(
                field,
                format!("{target:?} is outside {}; set --kubelet-dir to kubelet's root directory", pods_dir.display()),
            ));
        }
        if target.contains([',', ':', '\n']) {
            return Err(invalid(field, format!("{target:?} contains ',', ':' or a newline, which mount options cannot carry")));
        }
        Ok(path.components().collect())
    }

    /// The pod UID in a checked target `<kubelet-dir>/pods/<pod-uid>/volumes/...`.
    pub fn pod_uid_of<'a>(&self, target: &'a Path) -> Option<&'a str> {
        pod_uid_in_target(&self.kubelet_dir, target)
    }
}

/// The pod UID in kubelet's volume target `<kubelet-dir>/pods/<pod-uid>/volumes/...`: kubelet's
/// own word on which pod a volume is mounted for.
pub fn pod_uid_in_target<'a>(kubelet_dir: &Path, target: &'a Path) -> Option<&'a str> {
    let below = target.strip_prefix(kubelet_dir.join("pods")).ok()?;
    let mut components = below.components().map(|component| component.as_os_str().to_str());
    let uid = components.next()??;
    (components.next()?? == "volumes").then_some(uid)
}

/// Checks a `NodePublishVolume` request for an inline rootfs volume.
pub fn publish(request: &NodePublishVolumeRequest, policy: &TargetPolicy) -> Result<PublishRequest, InvalidField> {
    let volume_id = volume_id("volume_id", &request.volume_id)?;
    let target_path = policy.check("target_path", &request.target_path)?;
    if !request.staging_target_path.is_empty() {
        return Err(invalid("staging_target_path", "must be empty: this driver has no STAGE_UNSTAGE_VOLUME capability"));
    }
    check_capability(request.volume_capability.as_ref())?;
    if request.readonly {
        return Err(invalid(
            "readonly",
            "must be false: a container's root filesystem is always writable (remove readOnly from the volume)",
        ));
    }
    let context = &request.volume_context;
    let get = |key: &'static str| context.get(key).map(String::as_str).unwrap_or_default();
    if get(context_keys::EPHEMERAL) != "true" {
        return Err(invalid(
            "volume_context[csi.storage.k8s.io/ephemeral]",
            "must be \"true\": the rootfs volume exists only as an inline CSI volume in the consumer pod (persistent volumes are not supported)",
        ));
    }
    let pod = pod_of(context)?;
    let sc_name = get(VOLUME_ATTR_SC_NAME);
    let sc_name = match sc_api::names::check_sc_name(sc_name) {
        Ok(()) => sc_name.to_owned(),
        Err(_) if sc_name.is_empty() => {
            return Err(invalid(
                "volume_context[stoppablecontainer.xtlsoft.top/name]",
                "missing; the operator sets this volume attribute to the StoppableContainer's name",
            ));
        }
        Err(problem) => {
            return Err(invalid(
                "volume_context[stoppablecontainer.xtlsoft.top/name]",
                format!("{problem}; the operator sets this volume attribute to the StoppableContainer's name"),
            ));
        }
    };
    require_target_of_pod(policy, &target_path, &pod)?;
    Ok(PublishRequest { volume_id, target_path, pod, sc_name })
}

/// What kubelet says when the pod keys are missing or malformed.
const POD_INFO_HINT: &str = "the CSIDriver object must have podInfoOnMount: true";

/// The pod kubelet mounts the volume for, from the `podInfoOnMount` keys.
fn pod_of(context: &std::collections::HashMap<String, String>) -> Result<PodRef, InvalidField> {
    let get = |key: &'static str| context.get(key).map(String::as_str).unwrap_or_default();
    let namespace = dns_label(get(context_keys::POD_NAMESPACE), 63)
        .map_err(|problem| invalid("volume_context[csi.storage.k8s.io/pod.namespace]", format!("{problem} ({POD_INFO_HINT})")))?;
    let name = dns_subdomain(get(context_keys::POD_NAME))
        .map_err(|problem| invalid("volume_context[csi.storage.k8s.io/pod.name]", format!("{problem} ({POD_INFO_HINT})")))?;
    let uid = get(context_keys::POD_UID);
    if !is_uid(uid) {
        return Err(invalid("volume_context[csi.storage.k8s.io/pod.uid]", format!("{uid:?} is not a Kubernetes UID ({POD_INFO_HINT})")));
    }
    Ok(PodRef { namespace, name, uid: uid.to_owned() })
}

/// Defence in depth for a CSIDriver installed without podInfoOnMount (then the pod keys are the
/// pod author's words): kubelet's own target path names the pod it mounts for.
fn require_target_of_pod(policy: &TargetPolicy, target_path: &Path, pod: &PodRef) -> Result<(), InvalidField> {
    if policy.pod_uid_of(target_path) == Some(pod.uid.as_str()) {
        return Ok(());
    }
    Err(invalid(
        "target_path",
        format!(
            "{} is not a volume directory of pod UID {} (kubelet mounts at <kubelet-dir>/pods/<pod-uid>/volumes/...); the pod keys of the request do not match kubelet's target ({POD_INFO_HINT})",
            target_path.display(),
            pod.uid
        ),
    ))
}

/// Checks a `NodePublishVolume` request for the exec-wrapper volume: `None` when the request does
/// not carry [`VOLUME_ATTR_EXEC_WRAPPER`] (then it is a rootfs volume, see [`publish`]). The
/// volume is read-only whatever `readonly` says, so either value is accepted.
pub fn exec_wrapper(request: &NodePublishVolumeRequest, policy: &TargetPolicy) -> Result<Option<ExecWrapperRequest>, InvalidField> {
    const FIELD: &str = "volume_context[stoppablecontainer.xtlsoft.top/exec-wrapper]";
    let context = &request.volume_context;
    let Some(value) = context.get(VOLUME_ATTR_EXEC_WRAPPER) else { return Ok(None) };
    if value != "true" {
        return Err(invalid(FIELD, format!("{value:?} must be \"true\" (or the attribute left out, for a rootfs volume)")));
    }
    if context.contains_key(VOLUME_ATTR_SC_NAME) {
        return Err(invalid(
            FIELD,
            "cannot be set together with stoppablecontainer.xtlsoft.top/name: a volume is either the exec wrapper (provider pod) or a rootfs (consumer pod)",
        ));
    }
    let volume_id = volume_id("volume_id", &request.volume_id)?;
    let target_path = policy.check("target_path", &request.target_path)?;
    if !request.staging_target_path.is_empty() {
        return Err(invalid("staging_target_path", "must be empty: this driver has no STAGE_UNSTAGE_VOLUME capability"));
    }
    let capability = request.volume_capability.as_ref().ok_or_else(|| invalid("volume_capability", "missing"))?;
    match &capability.access_type {
        Some(AccessType::Mount(mount)) if mount.fs_type.is_empty() && mount.mount_flags.is_empty() => {}
        Some(AccessType::Mount(_)) => {
            return Err(invalid(
                "volume_capability.mount",
                "fsType and mount flags are not supported for the exec-wrapper volume; leave them out",
            ));
        }
        _ => return Err(invalid("volume_capability.access_type", "expected mount: the exec wrapper is a directory")),
    }
    if context.get(context_keys::EPHEMERAL).map(String::as_str) != Some("true") {
        return Err(invalid(
            "volume_context[csi.storage.k8s.io/ephemeral]",
            "must be \"true\": the exec-wrapper volume exists only as an inline CSI volume in the provider pod",
        ));
    }
    Ok(Some(ExecWrapperRequest { volume_id, target_path }))
}

/// Checks a `NodePublishVolume` request for a layer volume: `None` when the request does not
/// carry [`VOLUME_ATTR_LAYER_OF`] (then it is one of the other two kinds). The volume is
/// read-only, and the request must say so (`readOnly: true` on the pod's CSI volume), so that
/// nobody mounts it expecting to write the StoppableContainer's layer through it.
pub fn layer(request: &NodePublishVolumeRequest, policy: &TargetPolicy) -> Result<Option<LayerRequest>, InvalidField> {
    const FIELD: &str = "volume_context[stoppablecontainer.xtlsoft.top/layer-of]";
    let context = &request.volume_context;
    let Some(sc_name) = context.get(VOLUME_ATTR_LAYER_OF) else { return Ok(None) };
    for (other, kind) in [(VOLUME_ATTR_SC_NAME, "rootfs (consumer pod)"), (VOLUME_ATTR_EXEC_WRAPPER, "exec wrapper (provider pod)")] {
        if context.contains_key(other) {
            return Err(invalid(
                FIELD,
                format!(
                    "cannot be set together with {other}: a volume is the layer of a StoppableContainer (read-only, for a pod of its namespace) or the {kind}, never both"
                ),
            ));
        }
    }
    if let Err(problem) = sc_api::names::check_sc_name(sc_name) {
        return Err(invalid(FIELD, format!("{problem}; set it to the name of the StoppableContainer whose layer the pod reads")));
    }
    let volume_id = volume_id("volume_id", &request.volume_id)?;
    let target_path = policy.check("target_path", &request.target_path)?;
    if !request.staging_target_path.is_empty() {
        return Err(invalid("staging_target_path", "must be empty: this driver has no STAGE_UNSTAGE_VOLUME capability"));
    }
    let capability = request.volume_capability.as_ref().ok_or_else(|| invalid("volume_capability", "missing"))?;
    match &capability.access_type {
        Some(AccessType::Mount(mount)) if mount.fs_type.is_empty() && mount.mount_flags.is_empty() => {}
        Some(AccessType::Mount(_)) => {
            return Err(invalid(
                "volume_capability.mount",
                "fsType and mount flags are not supported for the layer volume; leave them out",
            ));
        }
        _ => return Err(invalid("volume_capability.access_type", "expected mount: the layer is a directory")),
    }
    if !request.readonly {
        return Err(invalid(
            "readonly",
            "must be true: the layer volume is read-only (a StoppableContainer's layer is written only through its rootfs); set readOnly: true on the pod's csi volume",
        ));
    }
    if context.get(context_keys::EPHEMERAL).map(String::as_str) != Some("true") {
        return Err(invalid(
            "volume_context[csi.storage.k8s.io/ephemeral]",
            "must be \"true\": the layer volume exists only as an inline CSI volume in the pod that reads it",
        ));
    }
    let pod = pod_of(context)?;
    require_target_of_pod(policy, &target_path, &pod)?;
    Ok(Some(LayerRequest { volume_id, target_path, pod, sc_name: sc_name.clone() }))
}

/// Checks a `NodeUnpublishVolume` request.
pub fn unpublish(request: &NodeUnpublishVolumeRequest, policy: &TargetPolicy) -> Result<UnpublishRequest, InvalidField> {
    Ok(UnpublishRequest {
        volume_id: volume_id("volume_id", &request.volume_id)?,
        target_path: policy.check("target_path", &request.target_path)?,
    })
}

fn check_capability(capability: Option<&VolumeCapability>) -> Result<(), InvalidField> {
    let capability = capability.ok_or_else(|| invalid("volume_capability", "missing"))?;
    match &capability.access_type {
        Some(AccessType::Mount(mount)) => {
            if !(mount.fs_type.is_empty() || mount.fs_type == "overlay") {
                return Err(invalid(
                    "volume_capability.mount.fs_type",
                    format!("{:?} is not supported; leave fsType empty", mount.fs_type),
                ));
            }
            if !mount.mount_flags.is_empty() {
                return Err(invalid("volume_capability.mount.mount_flags", "mount flags are not supported for a rootfs volume"));
            }
        }
        Some(AccessType::Block(_)) => {
            return Err(invalid("volume_capability.block", "block volumes are not supported; the rootfs is a mounted filesystem"));
        }
        None => return Err(invalid("volume_capability.access_type", "missing; expected mount")),
    }
    let mode = capability.access_mode.as_ref().map(|access| access.mode()).unwrap_or(Mode::Unknown);
    match mode {
        Mode::SingleNodeWriter | Mode::SingleNodeSingleWriter => Ok(()),
        other => Err(invalid(
            "volume_capability.access_mode",
            format!("{} is not supported; a rootfs is written by one pod on one node (SINGLE_NODE_WRITER)", other.as_str_name()),
        )),
    }
}

fn volume_id(field: &'static str, id: &str) -> Result<String, InvalidField> {
    let allowed = |byte: u8| byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.');
    if id.is_empty() {
        Err(invalid(field, "missing"))
    } else if id.len() > 128 || !id.bytes().all(allowed) || id.starts_with('.') {
        Err(invalid(field, format!("{id:?} must be 1-128 characters of [A-Za-z0-9._-], not starting with '.'")))
    } else {
        Ok(id.to_owned())
    }
}

/// An RFC 1123 label (namespaces): they become path components of the data root, so nothing
/// else may pass. StoppableContainer names follow [`sc_api::names::check_sc_name`].
pub fn dns_label(value: &str, max_len: usize) -> Result<String, String> {
    sc_api::names::check_dns_label(value, max_len).map(|()| value.to_owned())
}

fn dns_subdomain(value: &str) -> Result<String, String> {
    if value.is_empty() {
        return Err("missing".to_owned());
    }
    let valid = value.len() <= 253 && value.split('.').all(|label| dns_label(label, 63).is_ok());
    if valid { Ok(value.to_owned()) } else { Err(format!("{value:?} is not a DNS subdomain")) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sc_proto::csi::volume_capability::{AccessMode, BlockVolume, MountVolume};

    const UID: &str = "6d1c2b7e-43a1-4e5e-9d63-0c5a3f1b2e7d";
    const OTHER_UID: &str = "0b1c2b7e-43a1-4e5e-9d63-0c5a3f1b2e7d";

    fn policy() -> TargetPolicy {
        TargetPolicy { kubelet_dir: PathBuf::from("/var/lib/kubelet") }
    }

    fn target() -> String {
        format!("/var/lib/kubelet/pods/{UID}/volumes/kubernetes.io~csi/sc-rootfs/mount")
    }

    fn valid_request() -> NodePublishVolumeRequest {
        NodePublishVolumeRequest {
            volume_id: "csi-0123abcd".into(),
            target_path: target(),
            volume_capability: Some(VolumeCapability {
                access_type: Some(AccessType::Mount(MountVolume::default())),
                access_mode: Some(AccessMode { mode: Mode::SingleNodeWriter as i32 }),
            }),
            volume_context: [
                (context_keys::EPHEMERAL, "true"),
                (context_keys::POD_NAME, "dev"),
                (context_keys::POD_NAMESPACE, "team-a"),
                (context_keys::POD_UID, UID),
                (VOLUME_ATTR_SC_NAME, "dev"),
            ]
            .into_iter()
            .map(|(key, value)| (key.to_owned(), value.to_owned()))
            .collect(),
            ..Default::default()
        }
    }

    fn rejection(change: impl FnOnce(&mut NodePublishVolumeRequest)) -> String {
        let mut request = valid_request();
        change(&mut request);
        publish(&request, &policy()).expect_err("must be rejected").to_string()
    }

    #[test]
    fn accepts_what_kubelet_sends_for_an_inline_volume() {
        let request = publish(&valid_request(), &policy()).expect("valid");
        assert_eq!(request.pod, PodRef { namespace: "team-a".into(), name: "dev".into(), uid: UID.into() });
        assert_eq!(request.sc_name, "dev");
        assert_eq!(request.target_path, PathBuf::from(target()));
    }

    #[test]
    fn every_malformed_publish_names_its_field() {
        let cases: Vec<(String, &str)> = vec![
            (rejection(|r| r.volume_id.clear()), "invalid volume_id: missing"),
            (rejection(|r| r.volume_id = "../etc".into()), "invalid volume_id: \"../etc\" must be 1-128 characters"),
            (rejection(|r| r.volume_id = "x".repeat(129)), "invalid volume_id"),
            (rejection(|r| r.target_path.clear()), "invalid target_path: missing"),
            (rejection(|r| r.target_path = "relative/mount".into()), "is not an absolute path"),
            (rejection(|r| r.target_path = "/etc/mount".into()), "is outside /var/lib/kubelet/pods"),
            (rejection(|r| r.target_path = "/var/lib/kubelet/pods/../../../etc".into()), "contains '.' or '..'"),
            (rejection(|r| r.target_path = "/var/lib/kubelet/pods".into()), "is outside"),
            (rejection(|r| r.target_path.push_str(",upperdir=/x")), "contains ',', ':'"),
            (rejection(|r| r.staging_target_path = "/stage".into()), "invalid staging_target_path: must be empty"),
            (rejection(|r| r.volume_capability = None), "invalid volume_capability: missing"),
            (rejection(|r| r.volume_capability.as_mut().expect("set").access_type = None), "invalid volume_capability.access_type"),
            (
                rejection(|r| r.volume_capability.as_mut().expect("set").access_type = Some(AccessType::Block(BlockVolume {}))),
                "block volumes are not supported",
            ),
            (
                rejection(|r| {
                    r.volume_capability.as_mut().expect("set").access_type =
                        Some(AccessType::Mount(MountVolume { fs_type: "ext4".into(), ..Default::default() }))
                }),
                "invalid volume_capability.mount.fs_type: \"ext4\"",
            ),
            (
                rejection(|r| {
                    r.volume_capability.as_mut().expect("set").access_type =
                        Some(AccessType::Mount(MountVolume { mount_flags: vec!["ro".into()], ..Default::default() }))
                }),
                "mount flags are not supported",
            ),
            (
                rejection(|r| {
                    r.volume_capability.as_mut().expect("set").access_mode = Some(AccessMode { mode: Mode::MultiNodeMultiWriter as i32 })
                }),
                "MULTI_NODE_MULTI_WRITER is not supported",
            ),
            (rejection(|r| r.volume_capability.as_mut().expect("set").access_mode = None), "UNKNOWN is not supported"),
            (rejection(|r| r.readonly = true), "invalid readonly: must be false"),
            (
                rejection(|r| {
                    r.volume_context.remove(context_keys::EPHEMERAL);
                }),
                "ephemeral]: must be \"true\"",
            ),
            (
                rejection(|r| {
                    r.volume_context.remove(context_keys::POD_NAME);
                }),
                "pod.name]: missing (the CSIDriver object must have podInfoOnMount: true)",
            ),
            (
                rejection(|r| {
                    r.volume_context.insert(context_keys::POD_NAMESPACE.into(), "Team_A".into());
                }),
                "pod.namespace]: \"Team_A\" is not a DNS label",
            ),
            (
                rejection(|r| {
                    r.volume_context.insert(context_keys::POD_UID.into(), "1234".into());
                }),
                "pod.uid]: \"1234\" is not a Kubernetes UID",
            ),
            (
                rejection(|r| {
                    r.volume_context.remove(VOLUME_ATTR_SC_NAME);
                }),
                "stoppablecontainer.xtlsoft.top/name]: missing; the operator sets",
            ),
            (
                rejection(|r| {
                    r.volume_context.insert(VOLUME_ATTR_SC_NAME.into(), "../other".into());
                }),
                "\"../other\" is not a valid name for a StoppableContainer",
            ),
            (
                rejection(|r| {
                    r.volume_context.insert(VOLUME_ATTR_SC_NAME.into(), "a".repeat(58));
                }),
                "is 58 characters long; a StoppableContainer name may have at most 54",
            ),
            (
                rejection(|r| {
                    r.volume_context.insert(VOLUME_ATTR_SC_NAME.into(), "my.box".into());
                }),
                "dots are not allowed",
            ),
            (
                rejection(|r| r.target_path = format!("/var/lib/kubelet/pods/{OTHER_UID}/volumes/kubernetes.io~csi/sc-rootfs/mount")),
                "is not a volume directory of pod UID",
            ),
            (rejection(|r| r.target_path = format!("/var/lib/kubelet/pods/{UID}/plugins/x/mount")), "is not a volume directory of pod UID"),
        ];
        for (message, expected) in cases {
            assert!(message.contains(expected), "{message:?} should contain {expected:?}");
        }
    }

    /// What kubelet sends for the provider pod's exec-wrapper volume.
    fn exec_wrapper_request() -> NodePublishVolumeRequest {
        let mut request = valid_request();
        request.target_path = format!("/var/lib/kubelet/pods/{UID}/volumes/kubernetes.io~csi/sc-bin/mount");
        request.volume_context.remove(VOLUME_ATTR_SC_NAME);
        request.volume_context.insert(VOLUME_ATTR_EXEC_WRAPPER.into(), "true".into());
        request.readonly = true;
        request
    }

    #[test]
    fn the_exec_wrapper_attribute_makes_an_exec_wrapper_request() {
        let checked = exec_wrapper(&exec_wrapper_request(), &policy()).expect("valid").expect("an exec-wrapper request");
        assert_eq!(
            checked,
            ExecWrapperRequest {
                volume_id: "csi-0123abcd".into(),
                target_path: format!("/var/lib/kubelet/pods/{UID}/volumes/kubernetes.io~csi/sc-bin/mount").into()
            }
        );
        let mut writable = exec_wrapper_request();
        writable.readonly = false;
        assert!(exec_wrapper(&writable, &policy()).expect("valid").is_some(), "read-only either way");
        // Without the attribute the request is a rootfs one, for `publish`.
        assert_eq!(exec_wrapper(&valid_request(), &policy()), Ok(None));
    }

    #[test]
    fn a_malformed_exec_wrapper_request_names_its_field() {
        let rejection = |change: &dyn Fn(&mut NodePublishVolumeRequest)| {
            let mut request = exec_wrapper_request();
            change(&mut request);
            exec_wrapper(&request, &policy()).expect_err("must be rejected").to_string()
        };
        let cases: Vec<(String, &str)> = vec![
            (
                rejection(&|r| {
                    r.volume_context.insert(VOLUME_ATTR_SC_NAME.into(), "dev".into());
                }),
                "exec-wrapper]: cannot be set together with stoppablecontainer.xtlsoft.top/name",
            ),
            (
                rejection(&|r| {
                    r.volume_context.insert(VOLUME_ATTR_EXEC_WRAPPER.into(), "yes".into());
                }),
                "exec-wrapper]: \"yes\" must be \"true\"",
            ),
            (rejection(&|r| r.target_path = "/etc/mount".into()), "invalid target_path: \"/etc/mount\" is outside /var/lib/kubelet/pods"),
            (rejection(&|r| r.volume_id = "../x".into()), "invalid volume_id"),
            (rejection(&|r| r.staging_target_path = "/stage".into()), "invalid staging_target_path"),
            (rejection(&|r| r.volume_capability = None), "invalid volume_capability: missing"),
            (
                rejection(&|r| r.volume_capability.as_mut().expect("set").access_type = Some(AccessType::Block(BlockVolume {}))),
                "invalid volume_capability.access_type: expected mount",
            ),
            (
                rejection(&|r| {
                    r.volume_context.remove(context_keys::EPHEMERAL);
                }),
                "ephemeral]: must be \"true\"",
            ),
        ];
        for (message, expected) in cases {
            assert!(message.contains(expected), "{message:?} should contain {expected:?}");
        }
    }

    /// What kubelet sends for the `kubectl sc diff` pod's layer volume (`readOnly: true`).
    fn layer_request() -> NodePublishVolumeRequest {
        let mut request = valid_request();
        request.target_path = format!("/var/lib/kubelet/pods/{UID}/volumes/kubernetes.io~csi/sc-layer/mount");
        request.volume_context.remove(VOLUME_ATTR_SC_NAME);
        request.volume_context.insert(context_keys::POD_NAME.into(), "dev-diff-x7k2p".into());
        request.volume_context.insert(VOLUME_ATTR_LAYER_OF.into(), "dev".into());
        request.readonly = true;
        request
    }

    #[test]
    fn the_layer_attribute_makes_a_layer_request_of_the_pods_own_namespace() {
        let checked = layer(&layer_request(), &policy()).expect("valid").expect("a layer request");
        assert_eq!(
            checked,
            LayerRequest {
                volume_id: "csi-0123abcd".into(),
                target_path: format!("/var/lib/kubelet/pods/{UID}/volumes/kubernetes.io~csi/sc-layer/mount").into(),
                pod: PodRef { namespace: "team-a".into(), name: "dev-diff-x7k2p".into(), uid: UID.into() },
                sc_name: "dev".into(),
            }
        );
        // Without the attribute the request is one of the other kinds.
        assert_eq!(layer(&valid_request(), &policy()), Ok(None));
        assert_eq!(layer(&exec_wrapper_request(), &policy()), Ok(None));
    }

    #[test]
    fn each_malformed_layer_request_says_what_is_wrong() {
        let rejection = |change: &dyn Fn(&mut NodePublishVolumeRequest)| {
            let mut request = layer_request();
            change(&mut request);
            layer(&request, &policy()).expect_err("must be rejected").to_string()
        };
        let cases: Vec<(String, &str)> = vec![
            (
                rejection(&|r| {
                    r.volume_context.insert(VOLUME_ATTR_SC_NAME.into(), "dev".into());
                }),
                "invalid volume_context[stoppablecontainer.xtlsoft.top/layer-of]: cannot be set together with stoppablecontainer.xtlsoft.top/name: a volume is the layer of a StoppableContainer (read-only, for a pod of its namespace) or the rootfs (consumer pod), never both",
            ),
            (
                rejection(&|r| {
                    r.volume_context.insert(VOLUME_ATTR_EXEC_WRAPPER.into(), "true".into());
                }),
                "invalid volume_context[stoppablecontainer.xtlsoft.top/layer-of]: cannot be set together with stoppablecontainer.xtlsoft.top/exec-wrapper: a volume is the layer of a StoppableContainer (read-only, for a pod of its namespace) or the exec wrapper (provider pod), never both",
            ),
            (
                rejection(&|r| r.readonly = false),
                "invalid readonly: must be true: the layer volume is read-only (a StoppableContainer's layer is written only through its rootfs); set readOnly: true on the pod's csi volume",
            ),
            (
                rejection(&|r| {
                    r.volume_context.insert(VOLUME_ATTR_LAYER_OF.into(), "../other".into());
                }),
                "invalid volume_context[stoppablecontainer.xtlsoft.top/layer-of]: \"../other\" is not a valid name for a StoppableContainer",
            ),
            (
                rejection(&|r| {
                    r.volume_context.insert(VOLUME_ATTR_LAYER_OF.into(), String::new());
                }),
                "invalid volume_context[stoppablecontainer.xtlsoft.top/layer-of]: the name must not be empty; set it to the name of the StoppableContainer whose layer the pod reads",
            ),
            (rejection(&|r| r.target_path = "/etc/mount".into()), "invalid target_path: \"/etc/mount\" is outside /var/lib/kubelet/pods"),
            (rejection(&|r| r.volume_id = "../x".into()), "invalid volume_id: \"../x\" must be 1-128 characters"),
            (rejection(&|r| r.staging_target_path = "/stage".into()), "invalid staging_target_path: must be empty"),
            (rejection(&|r| r.volume_capability = None), "invalid volume_capability: missing"),
            (
                rejection(&|r| r.volume_capability.as_mut().expect("set").access_type = Some(AccessType::Block(BlockVolume {}))),
                "invalid volume_capability.access_type: expected mount: the layer is a directory",
            ),
            (
                rejection(&|r| {
                    r.volume_capability.as_mut().expect("set").access_type =
                        Some(AccessType::Mount(MountVolume { fs_type: "ext4".into(), ..Default::default() }))
                }),
                "invalid volume_capability.mount: fsType and mount flags are not supported for the layer volume; leave them out",
            ),
            (
                rejection(&|r| {
                    r.volume_capability.as_mut().expect("set").access_type =
                        Some(AccessType::Mount(MountVolume { mount_flags: vec!["rw".into()], ..Default::default() }))
                }),
                "invalid volume_capability.mount: fsType and mount flags are not supported",
            ),
            (
                rejection(&|r| {
                    r.volume_context.remove(context_keys::EPHEMERAL);
                }),
                "invalid volume_context[csi.storage.k8s.io/ephemeral]: must be \"true\": the layer volume exists only as an inline CSI volume",
            ),
            (
                rejection(&|r| {
                    r.volume_context.remove(context_keys::POD_NAMESPACE);
                }),
                "invalid volume_context[csi.storage.k8s.io/pod.namespace]: missing (the CSIDriver object must have podInfoOnMount: true)",
            ),
            (
                rejection(&|r| {
                    r.volume_context.insert(context_keys::POD_UID.into(), "1234".into());
                }),
                "invalid volume_context[csi.storage.k8s.io/pod.uid]: \"1234\" is not a Kubernetes UID",
            ),
            (
                // The pod keys name another pod than kubelet's target path (podInfoOnMount off,
                // the keys written by the pod's author): another namespace's SC is never reached.
                rejection(&|r| r.target_path = format!("/var/lib/kubelet/pods/{OTHER_UID}/volumes/kubernetes.io~csi/sc-layer/mount")),
                "is not a volume directory of pod UID 6d1c2b7e-43a1-4e5e-9d63-0c5a3f1b2e7d",
            ),
        ];
        for (message, expected) in cases {
            assert!(message.contains(expected), "{message:?} should contain {expected:?}");
        }
    }

    #[test]
    fn unpublish_checks_id_and_target() {
        let ok = NodeUnpublishVolumeRequest { volume_id: "csi-1".into(), target_path: target() };
        assert_eq!(unpublish(&ok, &policy()).expect("valid").volume_id, "csi-1");
        let bad = NodeUnpublishVolumeRequest { volume_id: String::new(), target_path: target() };
        assert_eq!(unpublish(&bad, &policy()).expect_err("no id").to_string(), "invalid volume_id: missing");
        let bad = NodeUnpublishVolumeRequest { volume_id: "csi-1".into(), target_path: "/tmp/x".into() };
        assert!(unpublish(&bad, &policy()).expect_err("outside").to_string().contains("outside /var/lib/kubelet/pods"));
    }
}
