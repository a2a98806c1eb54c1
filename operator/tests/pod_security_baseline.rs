//! Every pod the operator builds passes PodSecurity *baseline* whenever its template does: the
//! provider always, the consumer asking for exactly what its template asks (a template that needs
//! more than baseline makes a consumer that needs exactly that, and nothing more). The checker
//! itself ([`baseline`]) is tested first, one broken rule at a time.

mod baseline;
#[allow(dead_code, reason = "the builder tests use the rest of the shared fixture helpers")]
mod fixture_pods;

use baseline::{ALLOWED_ADDED_CAPABILITIES, Violation, baseline_violations};
use fixture_pods::{build, load};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use sc_operator::security::WRAPPER_CAPABILITIES;
use sc_operator::validate::Workload;
use serde_json::{Value, json};

/// A pod that breaks no rule, with a container, an init container and an ephemeral container.
fn compliant() -> Value {
    json!({
        "metadata": { "name": "p", "namespace": "team-a" },
        "spec": {
            "containers": [{ "name": "app", "image": "busybox", "ports": [{ "containerPort": 80 }] }],
            "initContainers": [{ "name": "init", "image": "busybox" }],
            "ephemeralContainers": [{ "name": "debug", "image": "busybox" }]
        }
    })
}

/// `pod` with the value at JSON pointer `pointer` set to `value` (objects on the way are created).
fn with(mut pod: Value, pointer: &str, value: Value) -> Value {
    let mut node = &mut pod;
    for key in pointer.trim_start_matches('/').split('/') {
        node = match key.parse::<usize>() {
            Ok(index) => &mut node[index],
            Err(_) => {
                if !node.is_object() {
                    *node = json!({});
                }
                &mut node[key]
            }
        };
    }
    *node = value;
    pod
}

fn pod(value: Value) -> Pod {
    serde_json::from_value(value).expect("a Pod")
}

fn listed(violations: &[Violation]) -> String {
    violations.iter().map(|violation| format!("\n  {violation}")).collect()
}

#[test]
fn a_pod_that_asks_for_nothing_special_breaks_no_rule() {
    assert_eq!(baseline_violations(&pod(compliant())), []);
}

#[test]
fn the_values_baseline_allows_pass() {
    let allowed = [
        ("/spec/hostNetwork", json!(false)),
        ("/spec/containers/0/securityContext/privileged", json!(false)),
        ("/spec/containers/0/securityContext/capabilities/add", json!(ALLOWED_ADDED_CAPABILITIES)),
        ("/spec/containers/0/securityContext/capabilities/drop", json!(["ALL", "NET_RAW"])),
        ("/spec/containers/0/ports/0/hostPort", json!(0)),
        ("/spec/containers/0/securityContext/procMount", json!("Default")),
        ("/spec/containers/0/securityContext/seccompProfile", json!({ "type": "RuntimeDefault" })),
        ("/spec/securityContext/seccompProfile", json!({ "type": "Localhost", "localhostProfile": "x.json" })),
        ("/spec/initContainers/0/securityContext/appArmorProfile", json!({ "type": "RuntimeDefault" })),
        ("/spec/securityContext/seLinuxOptions", json!({ "type": "container_t", "level": "s0:c1,c2" })),
        (
            "/spec/securityContext/sysctls",
            json!([{ "name": "net.ipv4.ping_group_range", "value": "0 1" }, { "name": "net.ipv4.tcp_rmem", "value": "4096 87380 6291456" }]),
        ),
        ("/spec/volumes", json!([{ "name": "scratch", "emptyDir": {} }])),
        (
            "/metadata/annotations",
            json!({
                "container.apparmor.security.beta.kubernetes.io/app": "localhost/my-profile",
                "seccomp.security.alpha.kubernetes.io/pod": "runtime/default"
            }),
        ),
        ("/spec/containers/0/readinessProbe", json!({ "httpGet": { "path": "/", "port": 80, "host": "" } })),
    ];
    for (pointer, value) in allowed {
        let violations = baseline_violations(&pod(with(compliant(), pointer, value.clone())));
        assert_eq!(violations, [], "{pointer} = {value}: allowed by baseline, yet{}", listed(&violations));
    }
}

#[test]
fn a_pod_breaking_each_rule_is_caught_with_the_rules_name_and_field() {
    let cases = [
        ("hostNamespaces", "spec.hostNetwork", "/spec/hostNetwork", json!(true)),
        ("hostNamespaces", "spec.hostPID", "/spec/hostPID", json!(true)),
        ("hostNamespaces", "spec.hostIPC", "/spec/hostIPC", json!(true)),
        ("privileged", "spec.containers[0].securityContext.privileged", "/spec/containers/0/securityContext/privileged", json!(true)),
        (
            "privileged",
            "spec.ephemeralContainers[0].securityContext.privileged",
            "/spec/ephemeralContainers/0/securityContext/privileged",
            json!(true),
        ),
        (
            "capabilities_baseline",
            "spec.containers[0].securityContext.capabilities.add",
            "/spec/containers/0/securityContext/capabilities/add",
            json!(["CHOWN", "NET_RAW"]),
        ),
        (
            "capabilities_baseline",
            "spec.initContainers[0].securityContext.capabilities.add",
            "/spec/initContainers/0/securityContext/capabilities/add",
            json!(["CAP_CHOWN"]),
        ),
        (
            "capabilities_baseline",
            "spec.ephemeralContainers[0].securityContext.capabilities.add",
            "/spec/ephemeralContainers/0/securityContext/capabilities/add",
            json!(["SYS_ADMIN"]),
        ),
        ("hostPathVolumes", "spec.volumes[0].hostPath", "/spec/volumes", json!([{ "name": "root", "hostPath": { "path": "/" } }])),
        ("hostPorts", "spec.containers[0].ports[0].hostPort", "/spec/containers/0/ports/0/hostPort", json!(8080)),
        (
            "appArmorProfile",
            "metadata.annotations[\"container.apparmor.security.beta.kubernetes.io/app\"]",
            "/metadata/annotations",
            json!({ "container.apparmor.security.beta.kubernetes.io/app": "unconfined" }),
        ),
        (
            "appArmorProfile",
            "spec.ephemeralContainers[0].securityContext.appArmorProfile.type",
            "/spec/ephemeralContainers/0/securityContext/appArmorProfile",
            json!({ "type": "Unconfined" }),
        ),
        (
            "appArmorProfile",
            "spec.securityContext.appArmorProfile.type",
            "/spec/securityContext/appArmorProfile",
            json!({ "type": "Unconfined" }),
        ),
        ("seLinuxOptions", "spec.securityContext.seLinuxOptions.type", "/spec/securityContext/seLinuxOptions", json!({ "type": "spc_t" })),
        (
            "seLinuxOptions",
            "spec.initContainers[0].securityContext.seLinuxOptions.user",
            "/spec/initContainers/0/securityContext/seLinuxOptions",
            json!({ "user": "system_u" }),
        ),
        (
            "seLinuxOptions",
            "spec.containers[0].securityContext.seLinuxOptions.role",
            "/spec/containers/0/securityContext/seLinuxOptions",
            json!({ "role": "system_r" }),
        ),
        ("procMount", "spec.containers[0].securityContext.procMount", "/spec/containers/0/securityContext/procMount", json!("Unmasked")),
        (
            "seccompProfile_baseline",
            "spec.securityContext.seccompProfile.type",
            "/spec/securityContext/seccompProfile",
            json!({ "type": "Unconfined" }),
        ),
        (
            "seccompProfile_baseline",
            "spec.initContainers[0].securityContext.seccompProfile.type",
            "/spec/initContainers/0/securityContext/seccompProfile",
            json!({ "type": "Unconfined" }),
        ),
        (
            "seccompProfile_baseline",
            "metadata.annotations[\"container.seccomp.security.alpha.kubernetes.io/app\"]",
            "/metadata/annotations",
            json!({ "container.seccomp.security.alpha.kubernetes.io/app": "unconfined" }),
        ),
        (
            "sysctls",
            "spec.securityContext.sysctls[1].name",
            "/spec/securityContext/sysctls",
            json!([{ "name": "kernel.shm_rmid_forced", "value": "1" }, { "name": "kernel.msgmax", "value": "65536" }]),
        ),
        (
            "windowsHostProcess",
            "spec.securityContext.windowsOptions.hostProcess",
            "/spec/securityContext/windowsOptions",
            json!({ "hostProcess": true }),
        ),
        (
            "hostProbesAndHostLifecycle",
            "spec.containers[0].livenessProbe.host",
            "/spec/containers/0/livenessProbe",
            json!({ "tcpSocket": { "port": 22, "host": "10.0.0.1" } }),
        ),
        (
            "hostProbesAndHostLifecycle",
            "spec.initContainers[0].lifecycle.preStop.host",
            "/spec/initContainers/0/lifecycle",
            json!({ "preStop": { "httpGet": { "path": "/", "port": 80, "host": "metadata.internal" } } }),
        ),
    ];
    for (rule, field, pointer, value) in cases {
        let violations = baseline_violations(&pod(with(compliant(), pointer, value.clone())));
        assert_eq!(violations.len(), 1, "{pointer} = {value}: one broken rule, got{}", listed(&violations));
        assert_eq!((violations[0].rule, violations[0].field.as_str()), (rule, field), "{pointer} = {value}");
        let message = violations[0].to_string();
        assert!(message.starts_with(&format!("{rule}: {field}: ")), "the message names the rule and the field: {message}");
    }
}

#[test]
fn the_capability_violation_names_each_forbidden_capability_only() {
    let violations = baseline_violations(&pod(with(
        compliant(),
        "/spec/containers/0/securityContext/capabilities/add",
        json!(["SETUID", "NET_ADMIN", "BPF"]),
    )));
    assert_eq!(violations.len(), 1);
    assert!(violations[0].detail.starts_with(r#"container "app" must not include ["NET_ADMIN", "BPF"]"#), "{}", violations[0]);
}

/// The pod a plain Kubernetes workload of this template would be: what the user wrote, checked by
/// the same rules, to compare the consumer with.
fn template_pod(workload: &Workload) -> Pod {
    Pod {
        metadata: ObjectMeta { annotations: Some(workload.annotations.clone()), ..ObjectMeta::default() },
        spec: Some(workload.pod_spec.clone()),
        status: None,
    }
}

#[test]
fn every_fixtures_provider_passes_baseline() {
    for (stem, sc) in fixture_pods::startable() {
        let provider = build(&sc).provider;
        let violations = baseline_violations(&provider);
        assert_eq!(violations, [], "{stem}: the provider pod breaks PodSecurity baseline:{}", listed(&violations));
    }
}

#[test]
fn every_fixtures_consumer_asks_for_exactly_what_its_template_asks() {
    let mut beyond_baseline = Vec::new();
    for (stem, sc) in fixture_pods::startable() {
        let built = build(&sc);
        let template = baseline_violations(&template_pod(&built.valid.workload));
        for consumer in [&built.consumer, &built.consumer_pinned] {
            let violations = baseline_violations(consumer);
            if template.is_empty() {
                assert_eq!(
                    violations,
                    [],
                    "{stem}: the template passes PodSecurity baseline, its consumer pod breaks it:{}",
                    listed(&violations)
                );
            } else {
                assert_eq!(
                    violations,
                    template,
                    "{stem}: the consumer must break exactly the rules its template breaks (template:{}\nconsumer:{})",
                    listed(&template),
                    listed(&violations)
                );
            }
        }
        if !template.is_empty() {
            beyond_baseline.push(stem);
        }
    }
    assert_eq!(beyond_baseline, ["net-admin"], "the fixtures whose templates ask for more than baseline");
}

#[test]
fn a_template_asking_for_net_admin_gets_a_consumer_that_adds_that_and_the_wrappers_baseline_capabilities() {
    let (_, sc) = load("fixtures").into_iter().find(|(stem, _)| stem == "net-admin").expect("fixture");
    let built = build(&sc);
    let consumer = &built.consumer.spec.as_ref().expect("spec").containers[0];
    let capabilities = consumer.security_context.as_ref().and_then(|context| context.capabilities.clone()).expect("capabilities");
    let added = capabilities.add.unwrap_or_default();
    let beyond: Vec<&str> = added.iter().map(String::as_str).filter(|name| !ALLOWED_ADDED_CAPABILITIES.contains(name)).collect();
    assert_eq!(beyond, ["NET_ADMIN", "NET_RAW"], "what the template asked beyond baseline, nothing more");
    let rest: Vec<&str> = added.iter().map(String::as_str).filter(|name| ALLOWED_ADDED_CAPABILITIES.contains(name)).collect();
    assert_eq!(rest, WRAPPER_CAPABILITIES, "plus only what sc-exec needs");
    assert_eq!(capabilities.drop, None, "the template drops nothing, so the consumer keeps the runtime's default set");
}
