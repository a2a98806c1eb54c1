//! The CustomResourceDefinitions, generated from the types and adjusted so that the oldest
//! supported API server (Kubernetes 1.20) accepts them as structural `apiextensions.k8s.io/v1`
//! schemas.

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;
use serde_json::Value;

use crate::{StoppableContainer, StoppableContainerInstance};

/// Both CRDs, ready to install: StoppableContainer first, then StoppableContainerInstance.
pub fn crds() -> Vec<CustomResourceDefinition> {
    vec![finish(StoppableContainer::crd()), finish(StoppableContainerInstance::crd())]
}

/// One CRD as a YAML document (what the chart ships in `crds/`).
pub fn crd_yaml(crd: &CustomResourceDefinition) -> Result<String, serde_yaml::Error> {
    serde_yaml::to_string(crd)
}

/// File name of a CRD in the chart's `crds/` directory: `<plural>.<group>.yaml`.
pub fn crd_file_name(crd: &CustomResourceDefinition) -> String {
    format!("{}.yaml", crd.metadata.name.as_deref().unwrap_or("unnamed"))
}

fn finish(mut crd: CustomResourceDefinition) -> CustomResourceDefinition {
    for version in &mut crd.spec.versions {
        let Some(validation) = version.schema.as_mut() else { continue };
        let Some(schema) = validation.open_api_v3_schema.as_mut() else { continue };
        // Round-trip through JSON: the typed JSONSchemaProps is awkward to walk generically.
        let Ok(mut value) = serde_json::to_value(&*schema) else { continue };
        require_a_workload_container(&mut value);
        make_list_map_keys_defaulted(&mut value);
        shorten_quantity_descriptions(&mut value);
        if let Ok(fixed) = serde_json::from_value(value) {
            *schema = fixed;
        }
    }
    crd
}

/// `template.spec.containers` needs at least one entry (the workload); the legacy
/// `template.container` shorthand lives elsewhere, so this does not reject it.
fn require_a_workload_container(schema: &mut Value) {
    let containers = schema.pointer_mut("/properties/spec/properties/template/properties/spec/properties/containers");
    if let Some(Value::Object(containers)) = containers {
        containers.insert("minItems".into(), 1.into());
    }
}

/// The upstream description of a resource quantity is 2.4 KB and appears at every `resources`
/// field; one line says what a user needs, and keeps the CRD well under etcd's object size limit.
fn shorten_quantity_descriptions(schema: &mut Value) {
    match schema {
        Value::Object(fields) => {
            let is_quantity = fields
                .get("description")
                .and_then(Value::as_str)
                .is_some_and(|text| text.starts_with("Quantity is a fixed-point representation of a number"));
            if is_quantity {
                fields.insert("description".into(), "A quantity: a number with an optional suffix, e.g. 500m, 2, 128Mi, 1Gi, 1e3.".into());
            }
            fields.values_mut().for_each(shorten_quantity_descriptions);
        }
        Value::Array(items) => items.iter_mut().for_each(shorten_quantity_descriptions),
        _ => {}
    }
}

/// The API server requires every `x-kubernetes-list-map-keys` field to be required or to have a
/// default. The upstream PodSpec marks `ports` as a map keyed by `containerPort` and `protocol`,
/// with `protocol` optional (the pod API server defaults it, a CRD has no such defaulting). Give
/// such keys the default the Pod API applies (`protocol: TCP`); any other optional key makes the
/// list atomic instead.
fn make_list_map_keys_defaulted(schema: &mut Value) {
    match schema {
        Value::Object(fields) => {
            let keys: Vec<String> = fields
                .get("x-kubernetes-list-map-keys")
                .and_then(Value::as_array)
                .map(|keys| keys.iter().filter_map(|key| key.as_str().map(str::to_owned)).collect())
                .unwrap_or_default();
            if !keys.is_empty()
                && let Some(items) = fields.get_mut("items").and_then(Value::as_object_mut)
            {
                let required: Vec<String> = items
                    .get("required")
                    .and_then(Value::as_array)
                    .map(|required| required.iter().filter_map(|key| key.as_str().map(str::to_owned)).collect())
                    .unwrap_or_default();
                let mut all_keys_usable = true;
                for key in &keys {
                    if required.contains(key) {
                        continue;
                    }
                    let property = items.get_mut("properties").and_then(|properties| properties.get_mut(key.as_str()));
                    match property.and_then(Value::as_object_mut) {
                        Some(property) if property.contains_key("default") => {}
                        Some(property) if key == "protocol" => {
                            property.insert("default".into(), "TCP".into());
                        }
                        _ => all_keys_usable = false,
                    }
                }
                if !all_keys_usable {
                    fields.remove("x-kubernetes-list-map-keys");
                    fields.insert("x-kubernetes-list-type".into(), "atomic".into());
                }
            }
            for child in fields.values_mut() {
                make_list_map_keys_defaulted(child);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(make_list_map_keys_defaulted),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::consts;

    fn schema_of(crd: &CustomResourceDefinition) -> Value {
        let schema = crd.spec.versions[0].schema.as_ref().and_then(|s| s.open_api_v3_schema.as_ref());
        serde_json::to_value(schema).expect("schema serializes")
    }

    /// Every place a 1.20 API server would refuse in a structural schema.
    fn structural_violations(path: &str, schema: &Value, found: &mut Vec<String>) {
        let Value::Object(fields) = schema else { return };
        for forbidden in ["x-kubernetes-validations", "$ref", "definitions", "$defs", "oneOf", "allOf"] {
            if fields.contains_key(forbidden) {
                found.push(format!("{path}: {forbidden}"));
            }
        }
        if let Some(any_of) = fields.get("anyOf") {
            // Allowed only as pure value validation (no types inside), e.g. int-or-string.
            if any_of.to_string().contains("\"type\"") && !fields.contains_key("x-kubernetes-int-or-string") {
                found.push(format!("{path}: anyOf with types"));
            }
        }
        let typed = fields.contains_key("type")
            || fields.contains_key("x-kubernetes-int-or-string")
            || fields.contains_key("x-kubernetes-preserve-unknown-fields");
        if !typed && !path.is_empty() {
            found.push(format!("{path}: no type"));
        }
        if let Some(Value::Object(properties)) = fields.get("properties") {
            for (name, child) in properties {
                structural_violations(&format!("{path}.{name}"), child, found);
            }
        }
        if let Some(items) = fields.get("items") {
            structural_violations(&format!("{path}[]"), items, found);
        }
        if let Some(additional @ Value::Object(_)) = fields.get("additionalProperties") {
            structural_violations(&format!("{path}{{}}"), additional, found);
        }
    }

    #[test]
    fn crds_name_the_contract_group_and_kinds() {
        let crds = crds();
        assert_eq!(crds.len(), 2);
        assert_eq!(crds[0].spec.group, consts::GROUP);
        assert_eq!(crds[0].spec.names.kind, consts::SC_KIND);
        assert_eq!(crds[1].spec.names.kind, consts::SCI_KIND);
        for crd in &crds {
            assert_eq!(crd.spec.scope, "Namespaced");
            assert_eq!(crd.spec.versions[0].name, consts::VERSION);
            assert!(crd.spec.versions[0].subresources.as_ref().and_then(|s| s.status.as_ref()).is_some());
        }
    }

    #[test]
    fn schemas_are_structural_for_kubernetes_1_20() {
        for crd in crds() {
            let mut found = Vec::new();
            structural_violations("", &schema_of(&crd), &mut found);
            assert!(found.is_empty(), "{}: {found:#?}", crd.spec.names.kind);
        }
    }

    #[test]
    fn printer_columns_match_the_earlier_release() {
        let names = |crd: &CustomResourceDefinition| -> Vec<String> {
            let columns = crd.spec.versions[0].additional_printer_columns.clone().unwrap_or_default();
            columns.into_iter().map(|column| column.name).collect()
        };
        let crds = crds();
        assert_eq!(names(&crds[0]), ["Running", "Phase", "Node", "Age"]);
        assert_eq!(names(&crds[1]), ["SC", "Running", "Phase", "Node", "Age"]);
    }

    #[test]
    fn running_defaults_to_false_and_containers_need_one_entry() {
        let schema = schema_of(&crds()[0]);
        assert_eq!(schema.pointer("/properties/spec/properties/running/default"), Some(&Value::Bool(false)));
        let containers = "/properties/spec/properties/template/properties/spec/properties/containers/minItems";
        assert_eq!(schema.pointer(containers), Some(&Value::from(1)));
        let legacy_required = "/properties/spec/properties/template/properties/container/required";
        assert_eq!(schema.pointer(legacy_required), None, "the shorthand's name is optional");
    }

    #[test]
    fn every_list_map_key_is_required_or_defaulted() {
        fn check(schema: &Value, found: &mut Vec<String>) {
            match schema {
                Value::Object(fields) => {
                    if let (Some(Value::Array(keys)), Some(items)) = (fields.get("x-kubernetes-list-map-keys"), fields.get("items")) {
                        for key in keys.iter().filter_map(Value::as_str) {
                            let required = items["required"].as_array().is_some_and(|r| r.iter().any(|k| k == key));
                            let defaulted = items["properties"][key].get("default").is_some();
                            if !required && !defaulted {
                                found.push(key.to_owned());
                            }
                        }
                    }
                    fields.values().for_each(|child| check(child, found));
                }
                Value::Array(items) => items.iter().for_each(|child| check(child, found)),
                _ => {}
            }
        }
        for crd in crds() {
            let mut found = Vec::new();
            check(&schema_of(&crd), &mut found);
            assert!(found.is_empty(), "{}: {found:?}", crd.spec.names.kind);
        }
    }
}
