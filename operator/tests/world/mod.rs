//! [`World`]: the API server, the scheduler and kubelet, played as plainly as the apiserver
//! tests do, for the plan tests: it carries each step out on a StoppableContainer's objects and
//! hands them back to the next plan.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{ContainerState, ContainerStateWaiting, ContainerStatus, Pod, PodCondition, PodStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use sc_api::StoppableContainer;
use sc_api::consts::PROVIDER_CONTAINER_NAME;
use sc_operator::controller::fetch::{Children, Facts};
use sc_operator::controller::plan::{Object, Step, Then, Why, plan};
use sc_operator::ownership::Role;
use sc_operator::settings::PodSettings;
use sc_operator::storage::node_loss::NodeState;

use crate::fixture_pods::{NODE, SCI_UID};

pub const OTHER_NODE: &str = "worker-2";
pub const IMAGE_ID: &str = "registry.test/app@sha256:1111";

/// A StoppableContainer's objects as the API server holds them, and what the plans did to them.
pub struct World {
    pub sc: StoppableContainer,
    pub children: Children,
    pub data_node_exists: Option<bool>,
    pub usage: Option<BTreeMap<String, String>>,
    /// The state of the nodes pods are bound to (spec.storage's node loss), as the executor reads it.
    pub pod_nodes: BTreeMap<String, NodeState>,
    pub created: u32,
}

impl World {
    pub fn new(mut sc: StoppableContainer, running: bool) -> Self {
        sc.spec.running = running;
        World { sc, children: Children::default(), data_node_exists: None, usage: None, pod_nodes: BTreeMap::new(), created: 0 }
    }

    /// One reconcile: plans and carries out each pass's steps until a plan reports; returns
    /// every step, in order.
    pub fn reconcile(&mut self) -> Vec<Step> {
        let settings = PodSettings::for_tests();
        let mut steps = Vec::new();
        for _ in 0..8 {
            let facts = Facts {
                settings: &settings,
                data_node_exists: self.data_node_exists,
                usage: self.usage.as_ref(),
                pod_nodes: Some(&self.pod_nodes),
            };
            let plan = plan(&self.sc, &self.children, &facts);
            plan.steps.iter().for_each(|step| self.carry_out(step));
            steps.extend(plan.steps);
            if plan.then == Then::Report {
                return steps;
            }
        }
        panic!("the reconcile did not settle: {steps:#?}");
    }

    /// A reconcile that must do nothing.
    pub fn settled(&mut self) {
        let steps = self.reconcile();
        assert_eq!(steps, [], "a steady state plans nothing");
    }

    pub fn carry_out(&mut self, step: &Step) {
        match step {
            Step::SetFinalizer { on: Object::StoppableContainer, finalizer, present } => {
                toggle(self.sc.finalizers_mut(), finalizer, *present)
            }
            Step::SetFinalizer { on: Object::Instance, finalizer, present } => {
                let instance = self.children.instance.as_mut().expect("an instance to change");
                toggle(instance.finalizers_mut(), finalizer, *present);
            }
            Step::ApplyInstance(desired) => {
                let status = self.children.instance.take().and_then(|instance| instance.status);
                let mut applied = (**desired).clone();
                applied.metadata.uid = Some(SCI_UID.into());
                applied.status = status;
                self.children.instance = Some(applied);
            }
            Step::CreatePod { role, pod, .. } => {
                assert!(self.children.pod(*role).is_none(), "a pod is created only where the name is free: {pod:?}");
                self.created += 1;
                let mut created = (**pod).clone();
                created.metadata.uid = Some(format!("uid-{}", self.created));
                let instance = self.children.instance.as_mut().expect("pods are created for an instance");
                role.record(instance.status.get_or_insert_default(), created.metadata.name.clone(), created.uid());
                self.children.set_pod(*role, Some(created));
            }
            Step::DeletePod(deletion) => {
                let pod = self.children.pod(deletion.role).expect("a pod to delete");
                assert_eq!((pod.name_any(), pod.uid()), (deletion.name.clone(), deletion.uid.clone()), "the delete names the pod judged");
                // The API server removes an unscheduled pod, or one deleted with no grace, at once.
                let at_once = deletion.grace_period_seconds == Some(0) || node_of(pod).is_none();
                if at_once {
                    self.children.set_pod(deletion.role, None);
                } else {
                    let mut terminating = pod.clone();
                    terminating.metadata.deletion_timestamp = Some(epoch());
                    self.children.set_pod(deletion.role, Some(terminating));
                }
            }
            Step::RecordDataNode(node) => self.sc.status.get_or_insert_default().data_node_name = Some(node.clone()),
            Step::DeleteInstance => {
                self.children.instance.as_mut().expect("an instance to delete").metadata.deletion_timestamp = Some(epoch());
            }
            Step::StopBegan | Step::Event(_) | Step::Note(_) => {}
            Step::CreateClaim { claim, instance } => {
                assert!(self.children.claim.is_none(), "a claim is created only where the name is free: {claim:?}");
                self.created += 1;
                let mut created = (**claim).clone();
                created.metadata.uid = Some(format!("claim-uid-{}", self.created));
                created.metadata.creation_timestamp = Some(epoch());
                let mut recorded = (**instance).clone();
                recorded.spec.storage.as_mut().expect("the instance names the claim").claim.claim_uid = created.uid();
                recorded.metadata.uid = Some(SCI_UID.into());
                recorded.status = self.children.instance.take().and_then(|instance| instance.status);
                self.children.instance = Some(recorded);
                self.children.claim = Some(created);
            }
            Step::DeleteClaim { name, uid } => {
                let claim = self.children.claim.as_mut().expect("a claim to delete");
                assert_eq!((claim.name_any(), claim.uid()), (name.clone(), Some(uid.clone())), "the delete names the claim judged");
                claim.metadata.deletion_timestamp = Some(epoch());
            }
            Step::SetClaimOwners { owner_references, .. } => {
                self.children.claim.as_mut().expect("a claim to change").metadata.owner_references = Some(owner_references.clone());
            }
        }
    }

    pub fn pod_mut(&mut self, role: Role) -> &mut Pod {
        match role {
            Role::Consumer => self.children.consumer.as_mut(),
            Role::Provider => self.children.provider.as_mut(),
        }
        .expect("the pod exists")
    }

    /// The scheduler: binds `role`'s pod to `node`.
    pub fn bind(&mut self, role: Role, node: &str) {
        self.pod_mut(role).spec.get_or_insert_default().node_name = Some(node.into());
    }

    /// Kubelet: `role`'s pod runs and is ready (the provider with its image's ID).
    pub fn ready(&mut self, role: Role) {
        let pod = self.pod_mut(role);
        pod.status = Some(PodStatus {
            phase: Some("Running".into()),
            conditions: Some(vec![PodCondition { type_: "Ready".into(), status: "True".into(), ..PodCondition::default() }]),
            container_statuses: Some(vec![ContainerStatus {
                name: PROVIDER_CONTAINER_NAME.into(),
                image_id: IMAGE_ID.into(),
                container_id: Some("containerd://1".into()),
                ..ContainerStatus::default()
            }]),
            ..PodStatus::default()
        });
    }

    /// Kubelet: a container of `role`'s pod waits for `reason`, never having been created.
    pub fn waiting(&mut self, role: Role, reason: &str) {
        let pod = self.pod_mut(role);
        pod.status = Some(PodStatus {
            phase: Some("Pending".into()),
            container_statuses: Some(vec![ContainerStatus {
                name: if role == Role::Provider { PROVIDER_CONTAINER_NAME.into() } else { "main".into() },
                state: Some(ContainerState {
                    waiting: Some(ContainerStateWaiting { reason: Some(reason.into()), message: Some("kubelet's words".into()) }),
                    ..ContainerState::default()
                }),
                ..ContainerStatus::default()
            }]),
            ..PodStatus::default()
        });
    }

    /// Kubelet: a terminating pod is gone.
    pub fn gone(&mut self, role: Role) {
        assert!(self.children.pod(role).is_some_and(|pod| pod.metadata.deletion_timestamp.is_some()), "{role:?} is terminating");
        self.children.set_pod(role, None);
    }

    /// A stop of an SC on a claim played through: the consumer pod goes, then the provider pod
    /// (with `spec.storage` a stopped SC holds no pod).
    pub fn stopped_on_claim(&mut self) {
        self.sc.spec.running = false;
        self.reconcile();
        self.gone(Role::Consumer);
        self.reconcile();
        self.gone(Role::Provider);
    }

    /// A first start played through until both pods are ready on [`NODE`].
    pub fn running(sc: StoppableContainer) -> Self {
        let mut world = World::new(sc, true);
        world.reconcile();
        world.bind(Role::Consumer, NODE);
        world.reconcile();
        world.bind(Role::Provider, NODE);
        world.ready(Role::Provider);
        world.ready(Role::Consumer);
        world.settled();
        world
    }

    /// A stop of a running StoppableContainer played through until its consumer pod is gone.
    pub fn stopped(sc: StoppableContainer) -> Self {
        let mut world = World::running(sc);
        world.sc.spec.running = false;
        world.reconcile();
        world.gone(Role::Consumer);
        world.settled();
        world
    }
}

pub fn toggle(finalizers: &mut Vec<String>, finalizer: &str, present: bool) {
    finalizers.retain(|f| f != finalizer);
    if present {
        finalizers.push(finalizer.to_owned());
    }
}

pub fn epoch() -> Time {
    Time(Timestamp::UNIX_EPOCH)
}

pub fn node_of(pod: &Pod) -> Option<&str> {
    pod.spec.as_ref().and_then(|spec| spec.node_name.as_deref())
}

pub fn created(steps: &[Step]) -> Vec<(Role, &Pod, Option<&str>)> {
    steps
        .iter()
        .filter_map(|step| match step {
            Step::CreatePod { role, pod, starting } => Some((*role, pod.as_ref(), starting.as_deref())),
            _ => None,
        })
        .collect()
}

pub fn deleted(steps: &[Step]) -> Vec<(Role, &Why)> {
    steps
        .iter()
        .filter_map(|step| match step {
            Step::DeletePod(deletion) => Some((deletion.role, &deletion.why)),
            _ => None,
        })
        .collect()
}

pub fn events(steps: &[Step]) -> Vec<(bool, &str)> {
    steps
        .iter()
        .filter_map(|step| match step {
            Step::Event(event) => Some((event.warning, event.reason.as_str())),
            _ => None,
        })
        .collect()
}

pub fn lifecycle_why(why: &Why) -> &str {
    match why {
        Why::Lifecycle(why) => why,
        Why::Unrecorded(note) => panic!("a lifecycle deletion, not an unrecorded pod's: {note}"),
    }
}

impl World {
    pub fn steps_done(&mut self, steps: &[Step]) {
        steps.iter().for_each(|step| self.carry_out(step));
    }
}
