//! Apply: the executor. Carries out a plan's steps, one request each, and puts every response
//! where the next plan reads it. It decides nothing the responses do not say (a name already
//! taken, a pod already gone).

use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use kube::api::{DeleteParams, Patch, PatchParams, PostParams, Preconditions};
use kube::runtime::controller::Action;
use kube::runtime::events::EventType;
use sc_api::consts::OPERATOR_FIELD_MANAGER;
use sc_api::{StoppableContainer, StoppableContainerInstance, StoppableContainerInstanceStatus, StoppableContainerStatus};

use super::error::is_status;
use super::fetch::{Children, Facts};
use super::plan::{self, Object, PodDeletion, Step, Then, Why};
use super::report::{REQUEUE_IN_MOTION, report};
use super::teardown::{self, Stage};
use super::{Error, Reconciler};
use crate::data_report;
use crate::meta::{finalizer_patch, object_apply, status_apply};
use crate::ownership::{Role, recorded_uid};
use crate::status::detect_provider_loss;

/// Passes of plan and steps one reconcile makes at most. A start from nothing takes four (the
/// instance, the consumer pod, the provider, the report); more means the world keeps changing
/// under the reconcile, and the next reconcile goes on from there.
const MAX_PASSES: usize = 8;

/// What carrying out a plan's steps came to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Carried {
    /// Every step was carried out.
    All,
    /// A pod to create held its name already: the steps after it were not carried out, and the
    /// pod that holds the name is in the children now.
    NameTaken,
}

impl Reconciler<'_> {
    /// The lifecycle step for the current spec, then the status: plan and carry out until the
    /// plan has nothing more to do, then write the report.
    pub(super) async fn apply(&self) -> Result<Action, Error> {
        let previous = self.sc.status.clone();
        let mut sc = (*self.sc).clone();
        let mut children = self.fetch().await?;
        let mut data_node_exists = None;
        // Read once: a node lost now stays lost for the rest of this reconcile.
        let pod_nodes = self.fetch_pod_nodes(&sc, &children).await?;
        // Seen before anything is replaced: a lost provider is replaced in this very reconcile.
        let provider_loss = plan::wants_running(&sc, &children)
            .then(|| {
                detect_provider_loss(children.consumer(), children.recorded(Role::Provider), children.provider(), &self.provider_name())
            })
            .flatten();
        let mut settled = false;
        for _ in 0..MAX_PASSES {
            let usage = self.usage_configmap(children.usage_node(&sc));
            let mut facts = Facts {
                settings: &self.ctx.settings,
                data_node_exists,
                usage: usage.as_ref().and_then(|usage| usage.data.as_ref()),
                pod_nodes: Some(&pod_nodes),
            };
            if data_node_exists.is_none()
                && let Some(node) = plan::node_to_check(&sc, &children, &facts)
            {
                data_node_exists = Some(self.node_exists(node).await?);
                facts.data_node_exists = data_node_exists;
            }
            let plan = plan::plan(&sc, &children, &facts);
            let carried = self.carry_out(&mut sc, &mut children, plan.steps).await?;
            match (plan.then, carried) {
                (Then::Refetch, _) => children = self.fetch().await?,
                (Then::Replan, _) | (Then::Report, Carried::NameTaken) => {}
                (Then::Report, Carried::All) => {
                    settled = true;
                    break;
                }
            }
        }
        if !settled {
            tracing::warn!(sc = %self.key, passes = MAX_PASSES, "the reconcile did not settle; the status says where it stands and the next reconcile goes on");
        }
        let usage = self.usage_configmap(children.usage_node(&sc));
        let facts = Facts {
            settings: &self.ctx.settings,
            data_node_exists,
            usage: usage.as_ref().and_then(|usage| usage.data.as_ref()),
            pod_nodes: Some(&pod_nodes),
        };
        let report = report(&sc, previous.as_ref(), &children, &facts, provider_loss, Time(Timestamp::now()));
        for notice in &report.notices {
            let type_ = if notice.warning { EventType::Warning } else { EventType::Normal };
            self.event(type_, &notice.reason, "Reconcile", notice.note.clone()).await;
        }
        if sc.status.as_ref() != Some(&report.status) {
            self.scs
                .patch_status(&self.name, &apply_params(), &status_apply::<StoppableContainer>(&report.status))
                .await
                .map_err(|source| Error::WriteStatus { source })?;
        }
        self.ctx.health.metrics.phase_observed(&self.key, report.status.phase.unwrap_or_default());
        if let Some(wanted) = &report.instance_status {
            self.apply_instance_status(wanted).await.map_err(|source| Error::WriteInstanceStatus { source })?;
        }
        Ok(Action::requeue(report.requeue))
    }

    /// Deletion: the teardown plan's steps. Returns the action to wait with while something
    /// remains, None once only `SC_FINALIZER` is left.
    pub(super) async fn teardown(&self) -> Result<Option<Action>, Error> {
        let mut sc = (*self.sc).clone();
        let mut children = self.fetch().await?;
        let teardown = teardown::teardown(&sc, &children);
        self.carry_out(&mut sc, &mut children, teardown.steps).await?;
        match teardown.stage {
            Stage::Removing => Ok(Some(Action::requeue(REQUEUE_IN_MOTION))),
            Stage::DataRemains => {
                // Only the report of the node the status names counts (a status tenants cannot
                // write); `decide` checks that it names that node and this SC's UID, namespace,
                // name.
                let release = match data_report::data_node(&sc) {
                    None => data_report::decide(&sc, true, None),
                    Some(node) => {
                        let exists = self.node_exists(node).await?;
                        let report = self.data_report(node).await?;
                        data_report::decide(&sc, exists, report.as_ref())
                    }
                };
                let steps = teardown::release_data(release);
                self.carry_out(&mut sc, &mut children, steps).await?;
                Ok(Some(Action::requeue(REQUEUE_IN_MOTION)))
            }
            Stage::Done => {
                self.ctx.health.metrics.forget(&self.key);
                Ok(None)
            }
        }
    }

    /// Carries out `steps` in order; `sc` and `children` get every response.
    async fn carry_out(&self, sc: &mut StoppableContainer, children: &mut Children, steps: Vec<Step>) -> Result<Carried, Error> {
        for step in steps {
            match step {
                Step::SetFinalizer { on: Object::StoppableContainer, finalizer, present } => {
                    if let Some(patch) = finalizer_patch(sc, finalizer, present) {
                        *sc = self
                            .scs
                            .patch(&self.name, &PatchParams::default(), &patch)
                            .await
                            .map_err(|source| Error::SetFinalizer { finalizer, source })?;
                    }
                }
                Step::SetFinalizer { on: Object::Instance, finalizer, present } => {
                    if let Some(patch) = children.instance.as_ref().and_then(|instance| finalizer_patch(instance, finalizer, present)) {
                        let patched = self.instances.patch(&self.name, &PatchParams::default(), &patch).await;
                        children.instance = Some(patched.map_err(|source| Error::SetFinalizer { finalizer, source })?);
                    }
                }
                Step::ApplyInstance(desired) => {
                    let applied = self.instances.patch(&self.name, &apply_params(), &object_apply(desired.as_ref())).await;
                    children.instance = Some(applied.map_err(|source| Error::ApplyInstance { source })?);
                }
                Step::CreatePod { role, pod, starting } => {
                    if self.create_pod(children, role, &pod).await? == Carried::NameTaken {
                        return Ok(Carried::NameTaken);
                    }
                    if let Some(note) = starting {
                        self.ctx.health.metrics.start_began(&self.key);
                        self.event(EventType::Normal, "Starting", "Start", note).await;
                    }
                }
                Step::DeletePod(deletion) => self.delete_pod(deletion).await?,
                Step::RecordDataNode(node) => {
                    // The whole status as written plus the node: an apply that named only this
                    // field would drop the other status fields this manager owns until the
                    // report is written.
                    let recorded = StoppableContainerStatus { data_node_name: Some(node.clone()), ..sc.status.clone().unwrap_or_default() };
                    let patch = status_apply::<StoppableContainer>(&recorded);
                    let written = self.scs.patch_status(&self.name, &apply_params(), &patch).await;
                    *sc = written.map_err(|source| Error::RecordDataNode { node, source })?;
                }
                Step::StopBegan => self.ctx.health.metrics.stop_began(&self.key),
                Step::DeleteInstance => {
                    self.instances.delete(&self.name, &DeleteParams::default()).await.map_err(|source| Error::DeleteInstance { source })?;
                }
                Step::Event(event) => {
                    let type_ = if event.warning { EventType::Warning } else { EventType::Normal };
                    self.event(type_, &event.reason, event.action, event.note).await;
                }
                Step::Note(note) => tracing::info!(sc = %self.key, "{note}"),
                Step::CreateClaim { claim, instance } => {
                    if self.create_claim(children, &claim, *instance).await? == Carried::NameTaken {
                        return Ok(Carried::NameTaken);
                    }
                }
                Step::DeleteClaim { name, uid } => {
                    let params = DeleteParams {
                        preconditions: Some(Preconditions { uid: Some(uid), resource_version: None }),
                        ..DeleteParams::default()
                    };
                    match self.claims.delete(&name, &params).await {
                        Ok(_) => {
                            let note = format!("deleted the claim {name:?} with the StoppableContainer (whenDeleted: Delete)");
                            self.event(EventType::Normal, "ClaimDeleted", "Delete", note).await;
                        }
                        Err(error) if is_status(&error, 404) || is_status(&error, 409) => {}
                        Err(source) => return Err(Error::DeleteClaim { claim: name, source }),
                    }
                }
                Step::SetClaimOwners { name, owner_references, resource_version } => {
                    let patch = Patch::Merge(serde_json::json!({
                        "metadata": { "ownerReferences": owner_references, "resourceVersion": resource_version }
                    }));
                    let patched = self.claims.patch(&name, &PatchParams::default(), &patch).await;
                    children.claim = Some(patched.map_err(|source| Error::SetClaimOwners { claim: name, source })?);
                }
            }
        }
        Ok(Carried::All)
    }

    /// Creates `role`'s pod and at once records its UID (see [`Step::CreatePod`]). A pod that
    /// already holds the name (409) is read, never adopted: its UID is not recorded, so it is
    /// classified as unrecorded or foreign.
    async fn create_pod(&self, children: &mut Children, role: Role, pod: &Pod) -> Result<Carried, Error> {
        let name = pod.metadata.name.clone().unwrap_or_default();
        let params = PostParams { dry_run: false, field_manager: Some(OPERATOR_FIELD_MANAGER.into()) };
        match self.pods.create(&params, pod).await {
            Ok(created) => {
                self.event(EventType::Normal, "PodCreated", "Create", format!("created pod {name:?}")).await;
                if let Some(instance) = &children.instance {
                    // Every status field this manager owns (the status as last written) plus the
                    // new UID: an apply that named only the UID would drop the others.
                    let mut status = instance.status.clone().unwrap_or_default();
                    let uid = recorded_uid(children.recorded(role), children.pod(role), Some(&created));
                    role.record(&mut status, Some(name.clone()), uid);
                    let recorded = self.apply_instance_status(&status).await;
                    children.instance = Some(recorded.map_err(|source| Error::RecordPodUid { pod: name, source })?);
                }
                children.set_pod(role, Some(created));
                Ok(Carried::All)
            }
            Err(error) if is_status(&error, 409) => {
                children.set_pod(role, self.fetch_pod(&name).await?);
                Ok(Carried::NameTaken)
            }
            Err(source) => {
                let message = format!("creating pod {name:?} failed: {source}");
                self.event(EventType::Warning, "PodCreateFailed", "Create", message).await;
                Err(Error::CreatePod { pod: name, source })
            }
        }
    }

    /// Creates the claim and at once records its UID in the instance (see [`Step::CreateClaim`]).
    /// A claim that already holds the name (409) is read, never recorded: the next plan judges it.
    async fn create_claim(
        &self,
        children: &mut Children,
        claim: &PersistentVolumeClaim,
        mut instance: StoppableContainerInstance,
    ) -> Result<Carried, Error> {
        let name = claim.metadata.name.clone().unwrap_or_default();
        let params = PostParams { dry_run: false, field_manager: Some(OPERATOR_FIELD_MANAGER.into()) };
        match self.claims.create(&params, claim).await {
            Ok(created) => {
                self.event(EventType::Normal, "ClaimCreated", "Create", format!("created the claim {name:?} for the root filesystem"))
                    .await;
                if let Some(storage) = instance.spec.storage.as_mut() {
                    storage.claim.claim_uid = created.uid();
                }
                let recorded = self.instances.patch(&self.name, &apply_params(), &object_apply(&instance)).await;
                children.instance = Some(recorded.map_err(|source| Error::RecordClaimUid { claim: name, source })?);
                children.claim = Some(created);
                Ok(Carried::All)
            }
            Err(error) if is_status(&error, 409) => {
                children.claim = self.claims.get_opt(&name).await.map_err(Error::read(format!("the claim {name:?}")))?;
                Ok(Carried::NameTaken)
            }
            Err(source) => {
                let message = format!("creating the claim {name:?} failed: {source}");
                self.event(EventType::Warning, "ClaimCreateFailed", "Create", message).await;
                Err(Error::CreateClaim { claim: name, source })
            }
        }
    }

    /// Deletes a pod, preconditioned on the UID that was judged (so a pod recreated by someone
    /// else in between is never deleted), and says why once the delete is sent. A pod already
    /// gone, or replaced, needs nothing.
    async fn delete_pod(&self, deletion: PodDeletion) -> Result<(), Error> {
        let PodDeletion { role: _, name, uid, grace_period_seconds, why } = deletion;
        let params = DeleteParams {
            grace_period_seconds,
            preconditions: uid.clone().map(|uid| Preconditions { uid: Some(uid), resource_version: None }),
            ..DeleteParams::default()
        };
        match self.pods.delete(&name, &params).await {
            Ok(_) => {}
            Err(error) if is_status(&error, 404) || is_status(&error, 409) => return Ok(()),
            Err(source) => return Err(Error::DeletePod { pod: name, source }),
        }
        match why {
            Why::Lifecycle(why) => {
                tracing::info!(sc = %self.key, pod = %name, "deleting pod: {why}");
                self.event(EventType::Normal, "PodDeleted", "Delete", format!("deleted pod {name:?}: {why}")).await;
            }
            Why::Unrecorded(note) => {
                tracing::warn!(sc = %self.key, pod = %name, ?uid, "deleting a pod the operator did not create");
                self.event(EventType::Warning, "UnrecordedPod", "Delete", note).await;
            }
        }
        Ok(())
    }

    async fn apply_instance_status(&self, status: &StoppableContainerInstanceStatus) -> Result<StoppableContainerInstance, kube::Error> {
        self.instances.patch_status(&self.name, &apply_params(), &status_apply::<StoppableContainerInstance>(status)).await
    }
}

/// Server-side apply as the operator's field manager, taking over fields another manager set.
fn apply_params() -> PatchParams {
    PatchParams::apply(OPERATOR_FIELD_MANAGER).force()
}
