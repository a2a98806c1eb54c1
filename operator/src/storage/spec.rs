//! What `spec.storage` may say: its own rules (`sc_api::storage::resolve`), what it excludes
//! (`rootfsSize`, the operator's volume and mount path for the claim), and the refusal of a
//! change against what the operator set up.

use sc_api::StoppableContainer;
use sc_api::StoppableContainerInstance;
use sc_api::storage::{ResolvedStorage, STORAGE_VOLUME_MOUNT_PATH, STORAGE_VOLUME_NAME, StorageSpec, refuse_change, resolve};

use crate::validate::{SpecProblem, Workload, container_mounts, normalize_mount_path};

/// The field the refusal of a change concerns.
const STORAGE_FIELD: &str = "spec.storage";

/// `spec.storage` checked, with its defaults applied (None: node-local); `workload` is the
/// template as checked (None when it has problems of its own). Every problem says what to do.
pub fn check(sc: &StoppableContainer, workload: Option<&Workload>) -> Result<Option<ResolvedStorage>, Vec<SpecProblem>> {
    let Some(storage) = &sc.spec.storage else { return Ok(None) };
    let mut problems: Vec<SpecProblem> = match resolve(storage) {
        Ok(_) => Vec::new(),
        Err(problems) => problems.iter().map(|problem| spec_problem(problem)).collect(),
    };
    if sc.spec.rootfs_size.is_some() {
        problems.push(SpecProblem::new(
            "spec.rootfsSize",
            "is not used with spec.storage: the claim's size (spec.storage.size) is the limit; remove rootfsSize",
        ));
    }
    if let Some(workload) = workload {
        reserved_names(workload, &mut problems);
    }
    match resolve(storage) {
        Ok(resolved) if problems.is_empty() => Ok(Some(resolved)),
        _ => Err(problems),
    }
}

/// `resolve`'s words (`spec.storage.size: ...`) as a problem of the field they name.
fn spec_problem(problem: &str) -> SpecProblem {
    match problem.split_once(": ") {
        Some((field, message)) if field.starts_with(STORAGE_FIELD) => SpecProblem::new(field, message),
        _ => SpecProblem::new(STORAGE_FIELD, problem),
    }
}

/// The consumer pod gets a volume [`STORAGE_VOLUME_NAME`] mounted at [`STORAGE_VOLUME_MOUNT_PATH`]
/// for the claim: the template may use neither (a second volume of that name makes an invalid
/// pod; a mount there would shadow the claim the node plugin looks for).
fn reserved_names(workload: &Workload, problems: &mut Vec<SpecProblem>) {
    let spec_field = "spec.template.spec";
    for (index, volume) in workload.pod_spec.volumes.iter().flatten().enumerate() {
        if volume.name == STORAGE_VOLUME_NAME {
            problems.push(SpecProblem::new(
                format!("{spec_field}.volumes[{index}].name"),
                format!(
                    "{STORAGE_VOLUME_NAME:?} is reserved with spec.storage for the claim that holds the root filesystem; rename the volume"
                ),
            ));
        }
    }
    for (field, mounts) in container_mounts(&workload.pod_spec, spec_field, &format!("{spec_field}.containers[0]")) {
        for (index, mount) in mounts.iter().enumerate() {
            let below =
                |path: &str| path.strip_prefix(STORAGE_VOLUME_MOUNT_PATH).is_some_and(|rest| rest.is_empty() || rest.starts_with('/'));
            if normalize_mount_path(&mount.mount_path).is_ok_and(|path| below(&path)) {
                problems.push(SpecProblem::new(
                    format!("{field}.volumeMounts[{index}].mountPath"),
                    format!(
                        "{:?} is reserved with spec.storage ({STORAGE_VOLUME_MOUNT_PATH}, the claim); mount the volume elsewhere",
                        mount.mount_path
                    ),
                ));
            }
        }
    }
}

/// What the operator set up, which `spec.storage` may not change: Some(the `spec.storage` the
/// claim was created with) once a claim is recorded, Some(None) once the root filesystem is on
/// a node (`status.dataNodeName`), None while nothing exists yet (anything may be asked for).
pub fn fixed<'a>(sc: &'a StoppableContainer, instance: Option<&'a StoppableContainerInstance>) -> Option<Option<&'a StorageSpec>> {
    if let Some(storage) = instance.and_then(|instance| instance.spec.storage.as_ref()) {
        return Some(Some(&storage.requested));
    }
    if sc.status.as_ref().is_some_and(|status| status.storage.as_ref().is_some_and(|storage| storage.claim.claim_uid.is_some())) {
        // The instance went (deleted by hand) and the claim stays: the spec as written now is
        // all that is known of what it was created with; adding or removing it is still refused.
        return Some(sc.spec.storage.as_ref().or(Some(&ABSENT_RECORD)));
    }
    if sc.status.as_ref().is_some_and(|status| status.data_node_name.is_some()) {
        return Some(None);
    }
    None
}

/// Stands for a claim whose `spec.storage` is not known, only that there was one.
static ABSENT_RECORD: StorageSpec = StorageSpec {
    size: k8s_openapi::apimachinery::pkg::api::resource::Quantity(String::new()),
    storage_class_name: None,
    access_modes: Vec::new(),
    when_deleted: None,
};

/// The refusal of `sc`'s `spec.storage` against what was set up ([`fixed`]), as a problem of the
/// spec (`SpecValid` False with these words; nothing new is made from the changed spec).
pub fn refusal(sc: &StoppableContainer, instance: Option<&StoppableContainerInstance>) -> Option<SpecProblem> {
    let recorded = fixed(sc, instance)?;
    refuse_change(recorded, sc.spec.storage.as_ref()).map(|message| SpecProblem::new(STORAGE_FIELD, message))
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
    use sc_api::storage::{ClaimRecord, InstanceStorage};
    use sc_api::{StoppableContainerSpec, StoppableContainerStatus};

    use super::*;

    fn storage(size: &str) -> StorageSpec {
        StorageSpec { size: Quantity(size.into()), ..StorageSpec::default() }
    }

    fn sc(requested: Option<StorageSpec>, data_node: Option<&str>) -> StoppableContainer {
        let mut sc = StoppableContainer::new("dev", StoppableContainerSpec { storage: requested, ..StoppableContainerSpec::default() });
        sc.status = Some(StoppableContainerStatus { data_node_name: data_node.map(Into::into), ..StoppableContainerStatus::default() });
        sc
    }

    fn instance_with(recorded: StorageSpec) -> StoppableContainerInstance {
        let mut instance = crate::instance_builder::build_instance(&sc(None, None), None, true);
        instance.spec.storage = Some(InstanceStorage {
            requested: recorded,
            claim: ClaimRecord { claim_name: "dev-rootfs".into(), claim_uid: Some("c1".into()) },
            pinned_image: None,
        });
        instance
    }

    #[test]
    fn before_anything_exists_anything_may_be_asked_for() {
        assert_eq!(refusal(&sc(Some(storage("1Gi")), None), None), None);
        assert_eq!(refusal(&sc(None, None), None), None);
    }

    #[test]
    fn node_local_data_refuses_storage_and_a_claim_refuses_a_change_against_its_record() {
        let added = refusal(&sc(Some(storage("1Gi")), Some("n1")), None).expect("refused");
        assert_eq!(added.field, "spec.storage");
        assert!(added.message.starts_with("cannot be added"), "{added:?}");
        let instance = instance_with(storage("1Gi"));
        assert_eq!(refusal(&sc(Some(storage("1Gi")), None), Some(&instance)), None);
        let grown = refusal(&sc(Some(storage("2Gi")), None), Some(&instance)).expect("refused");
        assert!(grown.message.starts_with("cannot change after creation"), "{grown:?}");
        let removed = refusal(&sc(None, None), Some(&instance)).expect("refused");
        assert!(removed.message.starts_with("cannot be removed"), "{removed:?}");
    }
}
