//! The chart ships the CRDs generated from the Rust types. This test fails when the checked-in
//! YAML differs from what the types generate; regenerate with
//! `UPDATE_CRDS=1 cargo test -p sc-api --test chart_crds_are_current`.

use std::path::PathBuf;

use sc_api::crd::{crd_file_name, crd_yaml, crds};

fn chart_crd_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../charts/stoppablecontainer/crds")
}

#[test]
fn chart_crds_match_the_types() {
    let update = std::env::var_os("UPDATE_CRDS").is_some_and(|value| value == "1");
    let mut stale = Vec::new();
    for crd in crds() {
        let path = chart_crd_dir().join(crd_file_name(&crd));
        let generated = crd_yaml(&crd).expect("CRD serializes to YAML");
        if update {
            std::fs::create_dir_all(chart_crd_dir()).expect("create the chart's crds/ directory");
            std::fs::write(&path, &generated).expect("write the CRD");
            continue;
        }
        let checked_in = std::fs::read_to_string(&path).unwrap_or_default();
        if checked_in != generated {
            stale.push(path.display().to_string());
        }
    }
    assert!(stale.is_empty(), "stale CRDs in the chart: {stale:?}; run `UPDATE_CRDS=1 cargo test -p sc-api --test chart_crds_are_current`");
}
