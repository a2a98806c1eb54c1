//! Unit tests of the reconcile's plan over the fixture StoppableContainers: every lifecycle rule
//! that `reconcile_apiserver.rs` checks against a real API server, decided here with no server.
//! [`World`] plays the API server, the scheduler and kubelet.

#[allow(dead_code, reason = "the builder tests use the rest of the shared fixture helpers")]
mod fixture_pods;
#[allow(dead_code, reason = "the storage plan tests use the rest of the world")]
mod world;

use fixture_pods::{NODE, load};
use k8s_openapi::api::core::v1::{Container, EmptyDirVolumeSource, Pod, Volume, VolumeMount};
use kube::ResourceExt;
use sc_api::consts::{LABEL_INSTANCE, LABEL_MANAGED_BY, MANAGED_BY_VALUE, NODE_DATA_FINALIZER, SCI_FINALIZER};
use sc_api::stoppable_container::ImageStatus;
use sc_api::{Phase, StoppableContainer, StoppableContainerStatus};
use sc_operator::consumer_pod::pinned_node;
use sc_operator::controller::fetch::{Children, Facts};
use sc_operator::controller::plan::{Object, Step, Why};
use sc_operator::controller::report::{REQUEUE_IN_MOTION, REQUEUE_STEADY, report};
use sc_operator::controller::teardown::{Stage, release_data, teardown};
use sc_operator::data_report::{DataRelease, ReleaseReason};
use sc_operator::ownership::Role;
use sc_operator::provider_pod::provider_node;
use sc_operator::settings::PodSettings;

use world::*;

fn fixtures() -> Vec<(String, StoppableContainer)> {
    load("fixtures")
}

fn change_image(sc: &mut StoppableContainer) {
    let template = &mut sc.spec.template;
    match template.spec.as_mut() {
        Some(spec) => spec.containers[0].image = Some("registry.test/changed:2".into()),
        None => template.container.as_mut().expect("a shorthand container").0.image = Some("registry.test/changed:2".into()),
    }
}

#[test]
fn a_start_makes_the_instance_then_the_consumer_pod_and_the_provider_once_it_is_bound() {
    for (stem, sc) in fixtures() {
        let mut world = World::new(sc, true);
        let steps = world.reconcile();
        assert!(
            matches!(
                &steps[..2],
                [
                    Step::SetFinalizer { on: Object::StoppableContainer, finalizer: NODE_DATA_FINALIZER, present: true },
                    Step::ApplyInstance(_)
                ]
            ),
            "{stem}: the data finalizer, then the instance: {steps:#?}"
        );
        let instance = world.children.instance.as_ref().expect("the instance");
        assert_eq!(instance.finalizers(), [SCI_FINALIZER], "{stem}");
        assert!(instance.spec.rootfs_size_bytes.is_some(), "{stem}: the size is resolved at the start");
        let pods = created(&steps);
        assert_eq!(pods.len(), 1, "{stem}: only the consumer pod before it has a node");
        let (role, consumer, starting) = pods[0];
        assert_eq!((role, starting), (Role::Consumer, Some("starting the workload")), "{stem}");
        assert_eq!((node_of(consumer), pinned_node(consumer)), (None, None), "{stem}: the first start is placed by the scheduler");
        assert_eq!(events(&steps), [], "{stem}: Starting is said by the executor once the pod exists");
        world.settled();

        // Bound: the data node is recorded before the provider exists, which goes to that node.
        world.bind(Role::Consumer, NODE);
        let steps = world.reconcile();
        assert_eq!(steps.first(), Some(&Step::RecordDataNode(NODE.into())), "{stem}");
        assert_eq!(events(&steps), [(false, "DataNodeAssigned")], "{stem}");
        let pods = created(&steps);
        assert_eq!(pods.len(), 1, "{stem}");
        assert_eq!((pods[0].0, provider_node(pods[0].1).as_deref()), (Role::Provider, Some(NODE)), "{stem}");
        assert_eq!(world.children.recorded(Role::Provider), world.children.provider.as_ref().and_then(|pod| pod.metadata.uid.as_deref()));
        world.settled();
    }
}

#[test]
fn a_stop_deletes_the_consumer_pod_only_and_keeps_the_provider() {
    for (stem, sc) in fixtures() {
        let mut world = World::running(sc);
        world.sc.spec.running = false;
        let steps = world.reconcile();
        assert_eq!(steps[0], Step::StopBegan, "{stem}");
        assert_eq!(events(&steps), [(false, "Stopping")], "{stem}");
        let deletions = deleted(&steps);
        assert_eq!(deletions.len(), 1, "{stem}");
        assert_eq!((deletions[0].0, lifecycle_why(deletions[0].1)), (Role::Consumer, "running is false"), "{stem}");
        assert!(matches!(steps.last(), Some(Step::ApplyInstance(instance)) if !instance.spec.running), "{stem}: the instance says stopped");
        // Waiting for the pod to terminate asks for nothing more; once gone, still nothing.
        world.settled();
        world.gone(Role::Consumer);
        world.settled();
        assert!(world.children.provider.is_some(), "{stem}: the stop keeps the provider");
    }
}

#[test]
fn a_start_after_a_stop_is_pinned_and_reuses_the_kept_provider() {
    for (stem, sc) in fixtures() {
        let mut world = World::stopped(sc);
        world.sc.spec.running = true;
        world.data_node_exists = Some(true);
        let steps = world.reconcile();
        assert_eq!(deleted(&steps), [], "{stem}: the kept provider is what this start builds");
        let pods = created(&steps);
        assert_eq!(pods.len(), 1, "{stem}: only the consumer pod");
        assert_eq!(
            pods[0].2,
            Some(format!("starting the workload, pinned to node {NODE:?}, reusing the provider pod kept by the stop").as_str())
        );
        assert_eq!(pinned_node(pods[0].1).as_deref(), Some(NODE), "{stem}: pinned to the data node");
    }
}

/// A provider kept by the stop of an operator that installed `sc-exec` with an init container
/// into an emptyDir: it is not what this operator builds (the node plugin's exec-wrapper volume),
/// so the start replaces it, and the new one has no init container.
#[test]
fn a_kept_provider_with_the_older_operators_init_container_is_replaced_at_the_start() {
    for (stem, sc) in fixtures() {
        let mut world = World::stopped(sc);
        let spec = world.pod_mut(Role::Provider).spec.as_mut().expect("a spec");
        spec.init_containers = Some(vec![Container {
            name: "install-sc-exec".into(),
            image: Some("stoppablecontainer/exec-wrapper:0.1".into()),
            command: Some(vec!["/.sc-bin/sc-exec".into(), "install".into(), "/sc-bin".into()]),
            volume_mounts: Some(vec![VolumeMount { name: "sc-bin".into(), mount_path: "/sc-bin".into(), ..VolumeMount::default() }]),
            ..Container::default()
        }]);
        spec.volumes = Some(vec![Volume { name: "sc-bin".into(), empty_dir: Some(EmptyDirVolumeSource::default()), ..Volume::default() }]);
        world.sc.spec.running = true;
        world.data_node_exists = Some(true);
        let steps = world.reconcile();
        let deletions = deleted(&steps);
        assert_eq!(deletions.len(), 1, "{stem}");
        assert_eq!(deletions[0].0, Role::Provider, "{stem}");
        assert!(lifecycle_why(deletions[0].1).contains("made by an older operator"), "{stem}");
        assert_eq!(created(&steps).len(), 0, "{stem}: no consumer pod while the old provider is in the way");
        world.settled();
        world.gone(Role::Provider);
        let steps = world.reconcile();
        let pods = created(&steps);
        assert_eq!(pods.iter().map(|(role, ..)| *role).collect::<Vec<_>>(), [Role::Consumer, Role::Provider], "{stem}");
        assert!(pods[1].1.spec.as_ref().is_some_and(|spec| spec.init_containers.is_none()), "{stem}: the new provider starts at once");
    }
}

#[test]
fn a_template_changed_while_stopped_replaces_the_provider_before_the_consumer_pod() {
    for (stem, sc) in fixtures() {
        let mut world = World::running(sc);
        // While running: nothing is applied.
        change_image(&mut world.sc);
        world.settled();
        world.sc.spec.running = false;
        world.reconcile();
        world.gone(Role::Consumer);
        world.sc.spec.running = true;
        let steps = world.reconcile();
        assert!(
            matches!(&steps[0], Step::ApplyInstance(instance) if instance.spec.base_image.as_deref() == Some("registry.test/changed:2")),
            "{stem}: a fresh snapshot: {steps:#?}"
        );
        let deletions = deleted(&steps);
        assert_eq!(deletions.len(), 1, "{stem}");
        assert_eq!(deletions[0].0, Role::Provider, "{stem}");
        assert!(lifecycle_why(deletions[0].1).starts_with("a start needs a provider built from the new snapshot"), "{stem}");
        assert_eq!(created(&steps).len(), 0, "{stem}: no consumer pod while the old provider is in the way");
        world.settled();
        world.gone(Role::Provider);
        let steps = world.reconcile();
        let pods = created(&steps);
        assert_eq!(
            pods.iter().map(|(role, ..)| *role).collect::<Vec<_>>(),
            [Role::Consumer, Role::Provider],
            "{stem}: both from the new snapshot"
        );
        assert_eq!(pinned_node(pods[0].1).as_deref(), Some(NODE), "{stem}: the consumer pod is pinned");
        assert_eq!(provider_node(pods[1].1).as_deref(), Some(NODE), "{stem}: the provider is made at once on the data node");
        assert!(
            pods[1].1.spec.as_ref().is_some_and(|spec| spec.containers[0].image.as_deref() == Some("registry.test/changed:2")),
            "{stem}"
        );
    }
}

#[test]
fn a_start_on_a_data_node_that_is_gone_makes_nothing() {
    let (_, sc) = fixtures().remove(0);
    let mut world = World::stopped(sc);
    world.sc.spec.running = true;
    world.data_node_exists = Some(false);
    let steps = world.reconcile();
    assert_eq!(created(&steps).len(), 0);
    assert_eq!(deleted(&steps).len(), 1, "the kept provider cannot be reused on a node that is gone");
}

#[test]
fn a_provider_lost_while_the_workload_runs_is_replaced_at_once() {
    for (stem, sc) in fixtures() {
        // Deleted by someone: the recorded UID names no pod any more.
        let mut world = World::running(sc.clone());
        world.children.provider = None;
        let pods = created(&world.reconcile()).into_iter().map(|(role, pod, _)| (role, provider_node(pod))).collect::<Vec<_>>();
        assert_eq!(pods, [(Role::Provider, Some(NODE.to_owned()))], "{stem}");

        // Evicted: it goes at once (no grace), and its replacement follows in the same reconcile.
        let mut world = World::running(sc);
        world.pod_mut(Role::Provider).status.get_or_insert_default().phase = Some("Failed".into());
        let steps = world.reconcile();
        let deletion =
            steps.iter().find_map(|step| if let Step::DeletePod(deletion) = step { Some(deletion) } else { None }).expect("deleted");
        assert_eq!((deletion.role, deletion.grace_period_seconds), (Role::Provider, Some(0)), "{stem}");
        assert_eq!(created(&steps).len(), 1, "{stem}: replaced at once");

        // On another node than the workload's: deleted (with its grace period), then made again.
        let mut world = World::running(fixtures().remove(0).1);
        world.bind(Role::Consumer, OTHER_NODE);
        world.sc.status.get_or_insert_default().data_node_name = Some(OTHER_NODE.into());
        let steps = world.reconcile();
        assert_eq!(deleted(&steps).iter().map(|(role, _)| *role).collect::<Vec<_>>(), [Role::Provider], "{stem}");
        world.gone(Role::Provider);
        assert_eq!(
            created(&world.reconcile()).iter().map(|(_, pod, _)| provider_node(pod)).collect::<Vec<_>>(),
            [Some(OTHER_NODE.to_owned())]
        );
    }
}

/// A pod named `name`, with the operator's labels: it claims to be the operator's.
fn claiming(name: &str, sc_name: &str) -> Pod {
    let mut pod = Pod::default();
    pod.metadata.name = Some(name.into());
    pod.metadata.uid = Some("uid-forged".into());
    pod.metadata.labels =
        Some([(LABEL_MANAGED_BY.to_owned(), MANAGED_BY_VALUE.to_owned()), (LABEL_INSTANCE.to_owned(), sc_name.to_owned())].into());
    pod
}

#[test]
fn pods_that_claim_to_be_ours_without_a_recorded_uid_are_deleted_and_replaced_running_or_not() {
    for (stem, sc) in fixtures() {
        let name = sc.name_any();
        for running in [true, false] {
            // The instance exists (a start began) and records other UIDs than theirs.
            let mut world = World::new(sc.clone(), true);
            world.reconcile();
            world.sc.spec.running = running;
            world.children.consumer = Some(claiming(&name, &name));
            world.children.provider = Some(claiming(&format!("{name}-provider"), &name));
            let steps = world.reconcile();
            let unrecorded: Vec<Role> = steps
                .iter()
                .filter_map(|step| match step {
                    Step::DeletePod(deletion) if matches!(deletion.why, Why::Unrecorded(_)) => Some(deletion.role),
                    _ => None,
                })
                .collect();
            assert_eq!(unrecorded, [Role::Consumer, Role::Provider], "{stem}, running {running}: never adopted");
            // Unscheduled, they are gone at once, and a start makes its own pods in the same reconcile.
            let ours = created(&steps).iter().map(|(role, ..)| *role).collect::<Vec<_>>();
            assert_eq!(ours, if running { vec![Role::Consumer] } else { vec![] }, "{stem}, running {running}");
        }
    }
}

#[test]
fn a_foreign_pod_or_instance_is_reported_and_never_touched() {
    for (stem, sc) in fixtures() {
        let name = sc.name_any();
        let mut world = World::new(sc.clone(), true);
        world.reconcile();
        // A stranger's pod took the consumer pod's name (unlabelled, controlled by nothing of ours).
        let mut stranger = Pod::default();
        stranger.metadata.name = Some(name.clone());
        stranger.metadata.uid = Some("uid-stranger".into());
        world.children.consumer = Some(stranger);
        let steps = world.reconcile();
        assert_eq!(deleted(&steps), [], "{stem}");
        assert_eq!(created(&steps).len(), 0, "{stem}");
        assert_eq!(events(&steps), [(true, "NameConflict")], "{stem}");

        // An instance of our name that this StoppableContainer does not control.
        let mut world = World::new(sc, true);
        let mut leftover = fixture_pods::instance_of(&world.sc);
        leftover.metadata.owner_references = None;
        world.children = Children::sorted(Some(leftover), fixture_pods::SC_UID, None, None);
        let steps = world.reconcile();
        assert_eq!(events(&steps), [(true, "NameConflict")], "{stem}");
        assert!(steps.iter().all(|step| matches!(step, Step::Event(_))), "{stem}: nothing is created or changed: {steps:#?}");
    }
}

#[test]
fn a_start_stuck_on_an_image_is_made_again_once_the_template_changed() {
    for (stem, sc) in fixtures() {
        let mut world = World::new(sc, true);
        world.reconcile();
        world.bind(Role::Consumer, NODE);
        world.reconcile();
        world.bind(Role::Provider, NODE);
        world.waiting(Role::Provider, "ErrImageNeverPull");
        // Kubelet retries by itself while the template stays.
        world.settled();
        change_image(&mut world.sc);
        let steps = world.reconcile();
        let deletions = deleted(&steps);
        assert_eq!(
            deletions.iter().map(|(role, _)| *role).collect::<Vec<_>>(),
            [Role::Consumer, Role::Provider],
            "{stem}: the provider never had a container"
        );
        assert!(lifecycle_why(deletions[0].1).starts_with("the start never got going (the provider pod is in ErrImageNeverPull"), "{stem}");
    }
}

#[test]
fn an_image_that_cannot_run_as_templated_gets_no_consumer_pod() {
    let (_, sc) = load("fixtures").into_iter().find(|(stem, _)| stem == "no-command").expect("the no-command fixture");
    let mut world = World::running(sc);
    // The image the provider runs has neither ENTRYPOINT nor CMD, and the template no command.
    world.sc.status.get_or_insert_default().image = Some(ImageStatus { image_ref: IMAGE_ID.into(), ..ImageStatus::default() });
    world.pod_mut(Role::Consumer).status = None;
    world.bind(Role::Consumer, NODE);
    let steps = world.reconcile();
    let deletions = deleted(&steps);
    assert_eq!(deletions.len(), 1);
    assert!(lifecycle_why(deletions[0].1).contains("no command specified"), "{:?}", deletions[0].1);
    world.gone(Role::Consumer);
    // Not made again until the template changes; the provider stays.
    world.settled();
    assert!(world.children.provider.is_some());
    // A ready workload proves it ran: never stopped for the operator's reading of its image.
    let mut ready = World::running(load("fixtures").into_iter().find(|(stem, _)| stem == "no-command").expect("fixture").1);
    ready.sc.status.get_or_insert_default().image = Some(ImageStatus { image_ref: IMAGE_ID.into(), ..ImageStatus::default() });
    ready.settled();
}

#[test]
fn a_deleted_instance_takes_the_kept_provider_and_is_then_released() {
    for (stem, sc) in fixtures() {
        let mut world = World::stopped(sc);
        world.children.instance.as_mut().expect("instance").metadata.deletion_timestamp = Some(epoch());
        let steps = world.reconcile();
        assert_eq!(deleted(&steps).iter().map(|(role, _)| *role).collect::<Vec<_>>(), [Role::Provider], "{stem}");
        world.gone(Role::Provider);
        let steps = world.reconcile();
        assert_eq!(steps, [Step::SetFinalizer { on: Object::Instance, finalizer: SCI_FINALIZER, present: false }], "{stem}");
        // Running again: a deleted instance takes its pods with it, and no start begins on it.
        world.sc.spec.running = true;
        assert_eq!(created(&world.reconcile()).len(), 0, "{stem}");
    }
}

#[test]
fn a_deletion_goes_consumer_pod_then_provider_then_instance_then_data() {
    for (stem, sc) in fixtures() {
        let mut world = World::running(sc);
        let order = |world: &World| teardown(&world.sc, &world.children);
        let first = order(&world);
        assert_eq!(
            (first.stage, deleted(&first.steps).iter().map(|(role, _)| *role).collect::<Vec<_>>()),
            (Stage::Removing, vec![Role::Consumer]),
            "{stem}"
        );
        world.steps_done(&first.steps);
        assert_eq!(order(&world).steps, [], "{stem}: the provider waits while the consumer pod terminates");
        world.gone(Role::Consumer);
        let second = order(&world);
        assert_eq!(deleted(&second.steps).iter().map(|(role, _)| *role).collect::<Vec<_>>(), [Role::Provider], "{stem}");
        world.steps_done(&second.steps);
        world.gone(Role::Provider);
        let third = order(&world);
        assert_eq!(
            third.steps,
            [Step::SetFinalizer { on: Object::Instance, finalizer: SCI_FINALIZER, present: false }, Step::DeleteInstance],
            "{stem}"
        );
        world.children.instance = None;
        assert_eq!(order(&world).stage, Stage::DataRemains, "{stem}: the data finalizer waits for the node plugin");
        let released = release_data(DataRelease::Release(ReleaseReason::NeverPlaced));
        assert!(
            matches!(&released[0], Step::SetFinalizer { on: Object::StoppableContainer, finalizer: NODE_DATA_FINALIZER, present: false }),
            "{stem}"
        );
        assert!(matches!(release_data(DataRelease::Wait("waiting".into()))[..], [Step::Note(_)]), "{stem}");
        world.steps_done(&released);
        assert_eq!(order(&world).stage, Stage::Done, "{stem}");
    }
}

#[test]
fn a_never_started_sc_is_deleted_with_nothing_to_wait_for_and_a_stopped_one_provisions_nothing() {
    for (stem, sc) in fixtures() {
        let mut world = World::new(sc, false);
        world.settled();
        assert!(world.sc.finalizers().is_empty(), "{stem}: a stopped SC needs no data finalizer");
        assert_eq!(teardown(&world.sc, &world.children).stage, Stage::Done, "{stem}");
        assert_eq!(world.sc.status, None::<StoppableContainerStatus>, "{stem}");
    }
}

#[test]
fn the_phase_is_stopping_until_the_consumer_pod_is_gone_and_a_kept_provider_does_not_count() {
    let settings = PodSettings::for_tests();
    for (stem, sc) in fixtures() {
        let mut world = World::running(sc);
        let phase = |world: &World| {
            let facts =
                Facts { settings: &settings, data_node_exists: world.data_node_exists, usage: world.usage.as_ref(), pod_nodes: None };
            let report = report(&world.sc, world.sc.status.as_ref(), &world.children, &facts, None, epoch());
            (report.status.phase, report.requeue)
        };
        assert_eq!(phase(&world), (Some(Phase::Running), REQUEUE_STEADY), "{stem}");
        world.sc.spec.running = false;
        world.reconcile();
        assert_eq!(phase(&world), (Some(Phase::Stopping), REQUEUE_IN_MOTION), "{stem}: the workload may still be writing");
        world.gone(Role::Consumer);
        assert_eq!(phase(&world), (Some(Phase::Stopped), REQUEUE_STEADY), "{stem}: with the provider kept");
        assert!(world.children.provider.is_some(), "{stem}");
    }
}
